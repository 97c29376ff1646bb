"""Parse quantities with units at the edge; inside hwsim everything is SI base units.

Decimal prefixes are powers of 1000 (GB = 1e9 B), binary prefixes powers of 1024
(GiB = 2**30 B). A bare number is taken to already be in the field's base unit.
"""

from __future__ import annotations

import re

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "h": 3600.0, "min": 60.0}

# Dimension name -> accepted unit stems (after the prefix).
_STEMS = {
    "bytes": ("B", "byte", "bytes"),
    "bytes_per_s": ("B/s", "Bps", "byte/s", "bytes/s"),
    "flops_per_s": ("FLOP/s", "FLOPS", "flop/s", "OPS", "OP/s"),
    "flops": ("FLOP", "flop", "FLOPs"),
}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATTERN = re.compile(rf"^\s*(?P<num>{_NUMBER})\s*(?P<unit>\S*)\s*$")


class UnitError(ValueError):
    """A quantity string that cannot be read as the expected dimension."""


def allowed_units(dimension: str) -> str:
    """Human-readable list of accepted unit spellings for a dimension."""
    if dimension == "s":
        return ", ".join(_TIME)
    stems = _STEMS[dimension]
    return f"a number in base units, or e.g. 3.35 T{stems[0]}, 80 G{stems[0]}, 80 Gi{stems[0]}"


def parse_quantity(value: float | int | str, dimension: str) -> float:
    """Return ``value`` in SI base units of ``dimension`` ('bytes', 'bytes_per_s', 'flops_per_s',
    'flops', 's'). Raises :class:`UnitError` naming what is allowed."""
    if isinstance(value, bool):
        raise UnitError(f"expected a quantity, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    match = _PATTERN.match(str(value))
    if not match:
        raise UnitError(f"cannot read {value!r} as a quantity; allowed: {allowed_units(dimension)}")
    number, unit = float(match["num"]), match["unit"]
    if unit == "":
        return number
    if dimension == "s":
        if unit in _TIME:
            return number * _TIME[unit]
        raise UnitError(f"unknown time unit {unit!r} in {value!r}; allowed: {allowed_units('s')}")
    for stem in sorted(_STEMS[dimension], key=len, reverse=True):
        if unit.endswith(stem):
            prefix = unit[: -len(stem)]
            if prefix in _BINARY:
                return number * _BINARY[prefix]
            if prefix in _DECIMAL:
                return number * _DECIMAL[prefix]
            raise UnitError(f"unknown prefix {prefix!r} in {value!r}")
    raise UnitError(
        f"unit {unit!r} in {value!r} is not a {dimension} unit; allowed: {allowed_units(dimension)}"
    )


def dimension_of_field(name: str) -> str | None:
    """Infer the dimension from a field's unit suffix (``capacity_bytes`` -> 'bytes')."""
    for suffix in ("bytes_per_s", "flops_per_s", "bytes", "flops"):
        if name.endswith(suffix):
            return suffix
    if name.endswith("_s"):
        return "s"
    return None
