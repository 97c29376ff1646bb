"""Acceptance of speculated tokens: a rate (i.i.d. per position) or a per-position curve, the
published values with their sources, and the expected tokens per verify step (Leviathan et al.
2023, arXiv 2211.17192, eq. 1; the curve form as EAGLE reports acceptance per position).
Used by :mod:`hwsim.inference.speculative`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.errors import InfeasibleError


@dataclass(frozen=True)
class PublishedAcceptance:
    """An acceptance rate (one value: i.i.d. alpha) or a per-position curve, with its source."""

    name: str
    curve: tuple[float, ...]
    source: str

    @property
    def iid(self) -> bool:
        return len(self.curve) == 1


# Every value quoted from the paper's table. Leviathan's alpha is E[min(p, q)] measured on the
# task (Corollary 3.6); EAGLE's n-alpha is the acceptance of the (n+1)-th draft token given the
# earlier ones were accepted, i.e. the conditional curve above.
PUBLISHED_ACCEPTANCE: dict[str, PublishedAcceptance] = {
    p.name: p
    for p in (
        PublishedAcceptance(
            "leviathan-t5xxl-t5small-ende-greedy",
            (0.75,),
            "Leviathan et al. 2023 (arXiv 2211.17192) Table 2: T5-XXL target, T5-small draft, "
            "WMT EnDe, temperature 0, gamma 7: alpha 0.75, walltime speed-up 3.4x (TPU-v4, "
            "batch 1)",
        ),
        PublishedAcceptance(
            "leviathan-t5xxl-t5small-ende-t1",
            (0.62,),
            "Leviathan et al. 2023 Table 2: T5-XXL / T5-small, WMT EnDe, temperature 1, gamma 7: "
            "alpha 0.62, speed-up 2.6x",
        ),
        PublishedAcceptance(
            "leviathan-lamda137b-8b-greedy",
            (0.75,),
            "Leviathan et al. 2023 Table 3: LaMDA 137B target, LaMDA 8B draft, temperature 0: "
            "alpha 0.75 (alpha only; no walltime run)",
        ),
        PublishedAcceptance(
            "leviathan-lamda137b-2b-greedy",
            (0.71,),
            "Leviathan et al. 2023 Table 3: LaMDA 137B / LaMDA 2B, temperature 0: alpha 0.71",
        ),
        PublishedAcceptance(
            "leviathan-lamda137b-100m-greedy",
            (0.61,),
            "Leviathan et al. 2023 Table 3: LaMDA 137B / LaMDA 100M, temperature 0: alpha 0.61",
        ),
        PublishedAcceptance(
            "eagle-llama2chat70b-mtbench",
            (0.75, 0.69, 0.65, 0.64),
            "Li et al. 2024, EAGLE (arXiv 2401.15077), acceptance table: LLaMA2-Chat 70B, "
            "MT-bench, temperature 0: 0-alpha 0.75, 1-alpha 0.69, 2-alpha 0.65, 3-alpha 0.64 "
            "(mean acceptance length tau 3.81 with its draft tree)",
        ),
        PublishedAcceptance(
            "eagle-vicuna7b-mtbench",
            (0.79, 0.74, 0.72, 0.73),
            "Li et al. 2024, EAGLE, acceptance table: Vicuna 7B, MT-bench, temperature 0: "
            "0.79, 0.74, 0.72, 0.73 (tau 3.94 with its draft tree)",
        ),
    )
}

Acceptance = float | Sequence[float] | str | PublishedAcceptance


def acceptance_curve(acceptance: Acceptance, k: int) -> tuple[float, ...]:
    """The conditional acceptance of proposals 1 .. k: alpha repeated k times (a number, i.i.d.
    per position, 0 <= alpha < 1), the first k values of a curve (each in [0, 1]), or a name
    in :data:`PUBLISHED_ACCEPTANCE`."""
    k = check_k(k)
    if isinstance(acceptance, str):
        if acceptance not in PUBLISHED_ACCEPTANCE:
            known = ", ".join(sorted(PUBLISHED_ACCEPTANCE))
            raise InfeasibleError(f"unknown acceptance {acceptance!r}; published ones: {known}")
        acceptance = PUBLISHED_ACCEPTANCE[acceptance]
    if isinstance(acceptance, PublishedAcceptance):
        acceptance = acceptance.curve[0] if acceptance.iid else acceptance.curve
    if isinstance(acceptance, (int, float)) and not isinstance(acceptance, bool):
        alpha = float(acceptance)
        if not (math.isfinite(alpha) and 0.0 <= alpha < 1.0):
            raise InfeasibleError(
                f"acceptance rate alpha must be in [0, 1), got {acceptance!r} (alpha = 1 would "
                "accept every proposal forever: give a curve to model certain acceptance)"
            )
        return (alpha,) * k
    try:
        curve = tuple(float(a) for a in acceptance)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InfeasibleError(
            "acceptance must be a number in [0, 1), a sequence of per-position acceptances in "
            f"[0, 1] or a published name, got {acceptance!r}"
        ) from None
    bad = [a for a in curve if not (math.isfinite(a) and 0.0 <= a <= 1.0)]
    if bad:
        raise InfeasibleError(f"per-position acceptances must be in [0, 1], got {bad[0]!r}")
    if len(curve) < k:
        raise InfeasibleError(
            f"the acceptance curve covers {len(curve)} positions, fewer than k = {k}; give a "
            "longer curve, a smaller k or one i.i.d. rate"
        )
    return curve[:k]


def tokens_per_step(acceptance: Acceptance, k: int) -> float:
    """Expected tokens one verify step yields: (1 - alpha^(k+1)) / (1 - alpha) for an i.i.d.
    rate (Leviathan et al. 2023 eq. 1), 1 + sum_i prod_{j<=i} a_j for a curve."""
    curve = acceptance_curve(acceptance, k)
    if isinstance(acceptance, (int, float)) and not isinstance(acceptance, bool):
        alpha = float(acceptance)
        return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)
    total, survive = 1.0, 1.0
    for a in curve:
        survive *= a
        total += survive
    return total


def check_k(k: Any) -> int:
    whole = isinstance(k, (int, np.integer)) or (isinstance(k, float) and k.is_integer())
    if isinstance(k, bool) or not whole:
        raise InfeasibleError(f"k (proposed tokens per step) must be a whole number, got {k!r}")
    if k < 0:
        raise InfeasibleError(f"k (proposed tokens per step) must be >= 0, got {k}")
    return int(k)
