"""Human units for tables (decimal: 1 GB = 1e9 B; times in s/ms/us)."""

from __future__ import annotations

import math
from typing import Any

# A number to show: a float, an int, a 0-d numpy array or numpy scalar; None or NaN shows '-'.
Shown = Any


def fmt_bytes(b: Shown) -> str:
    if b is None or not math.isfinite(b):
        return "-"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(b) >= scale:
            return f"{b / scale:,.2f} {unit}"
    return f"{b:,.0f} B"


def fmt_time(s: Shown) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    if s >= 1:
        return f"{s:,.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:,.2f} ms"
    return f"{s * 1e6:,.1f} us"


def fmt_flops(f: Shown) -> str:
    if f is None or not math.isfinite(f):
        return "-"
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if abs(f) >= scale:
            return f"{f / scale:,.2f} {unit}"
    return f"{f:,.0f} FLOP"


def fmt_count(x: Shown) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    if x >= 1e6:
        return f"{x:,.3g}"
    return f"{x:,.1f}".rstrip("0").rstrip(".")


def fmt_range(low: Shown, high: Shown) -> str:
    """'38.3-50.7 us': a band's two ends in the unit of the upper one."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if high >= scale or unit == "us":
            return f"{low / scale:.3g}-{high / scale:.3g} {unit}"
    return "-"  # pragma: no cover


def fmt_band(low: Shown, high: Shown) -> str:
    """' (p10-p90 a-b unit)' for a calibrated prediction's band, '' when there is none."""
    if low is None or high is None:
        return ""
    return f" (p10-p90 {fmt_range(low, high)})"
