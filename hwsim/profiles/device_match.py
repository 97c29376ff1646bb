"""Which shipped hardware profile a measured device is: the profiles' ``match:`` lists.

A calibration run knows its device by kind ('cuda', 'cpu') and the name the driver reports
('NVIDIA H100 80GB HBM3'). Each shipped profile lists name fragments; the longest fragment
found in the name (case-insensitive) wins, so 'H100 PCIe' beats 'H100' and 'L40S' beats 'L4'.
'*' matches any device of the profile's kind and loses to every real fragment.
"""

from __future__ import annotations

from hwsim.errors import HwsimError
from hwsim.profiles.loader import load_hardware, shipped_ids

# a measuring device's kind -> the profile kind it can be
DEVICE_KINDS = {"cuda": "gpu", "cpu": "cpu"}


def profile_for_device(kind: str, name: str) -> str:
    """The id of the shipped profile whose ``match:`` best fits device ``name`` of ``kind``."""
    profile_kind = DEVICE_KINDS.get(kind)
    if profile_kind is None:
        raise HwsimError(f"unknown device kind {kind!r}; allowed: {', '.join(DEVICE_KINDS)}")
    scored: list[tuple[int, str]] = []
    for pid in shipped_ids("hardware"):
        hw = load_hardware(pid)
        if hw.kind != profile_kind:
            continue
        for fragment in hw.match:
            if fragment == "*":
                scored.append((0, pid))
            elif fragment.lower() in name.lower():
                scored.append((len(fragment), pid))
    if not scored:
        raise HwsimError(
            f"no shipped hardware profile matches {kind} device {name!r}; pass --base-profile "
            "(or add the device's name to a profile's `match:` list)"
        )
    best = max(score for score, _ in scored)
    winners = sorted({pid for score, pid in scored if score == best})
    if len(winners) > 1:
        raise HwsimError(f"device {name!r} matches several profiles equally: {winners}")
    return winners[0]
