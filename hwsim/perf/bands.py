"""Calibration residual bands: how far a calibrated profile's time for one op may be off.

A calibrated hardware profile carries quantiles of log(measured / predicted) per calibration
group ('<kernel>/<dtype>/<bound>', more general keys as fallbacks). :func:`residual_band`
finds an op's band; where the profile also has the kernel's per-call overhead key, the fixed
part of the time (launch, F_half, B_half) is scaled by that key and the size-proportional part
by the group's (:func:`time_parts`). :func:`calibrated_band` turns a band into seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.errors import RungRefused
from hwsim.model.ops import Op
from hwsim.perf.corrections import (  # noqa: F401 - the keys are re-exported for validation/
    group_key,
    op_residuals,
    overhead_key,
    residual_keys,
    shape_factor,
)
from hwsim.perf.roofline import (
    BOUNDS,
    OpTime,
    Seconds,
    efficiency_times_s,
    overlapped_s,
    roofline_floor_s,
    time_op,
)
from hwsim.perf.transfer import band_factors, lodo_factors, op_groups
from hwsim.profiles.hardware import HardwareProfile, ResidualBand

TINY = np.finfo(float).tiny


@dataclass(frozen=True)
class OpBand:
    """log(measured / time_op) quantiles for one op (arrays where the op's sizes are) that has
    an overhead key: the blend :func:`residual_band` describes, each quantile computed when it
    is first asked for (a phase band needs only p10 and p90)."""

    work: Seconds  # size-proportional seconds (time_parts)
    fixed: Seconds  # fixed per-call seconds
    group: ResidualBand
    overhead: ResidualBand

    @property
    def n_points(self) -> int:
        return self.group.n_points

    def _blend(self, q: str) -> Seconds:
        """work exp(p_group) + fixed exp(p_overhead) at quantile ``q`` (seconds)."""
        return self.work * math.exp(getattr(self.group, q)) + self.fixed * math.exp(
            getattr(self.overhead, q)
        )

    def factor(self, q: str) -> np.ndarray:
        """exp(quantile ``q``): the blend over work + fixed."""
        return self._blend(q) / np.maximum(self.work + self.fixed, TINY)

    def ratios(self, low: str, mid: str, high: str) -> tuple[Seconds, Seconds]:
        """(factor(low) / factor(mid), factor(high) / factor(mid)); work + fixed cancels, so
        a sweep pays one shared denominator instead of three normalised factors."""
        den = self._blend(mid)
        den = (den if den > TINY else TINY) if type(den) is float else np.maximum(den, TINY)
        return self._blend(low) / den, self._blend(high) / den

    @property
    def p10(self) -> np.ndarray:
        return np.log(self.factor("p10"))

    @property
    def p50(self) -> np.ndarray:
        return np.log(self.factor("p50"))

    @property
    def p90(self) -> np.ndarray:
        return np.log(self.factor("p90"))


def residual_band(
    hw: HardwareProfile, op: Op, bound: str, time_s: np.ndarray | None = None
) -> ResidualBand | OpBand | None:
    """The calibration residuals of log(measured / time_op) for ``op``: the most specific key
    the profile has (:func:`residual_keys`). Where it also has the kernel's
    :func:`overhead_key`, that key prices the fixed per-call part of the time and the group key
    the size-proportional part (:func:`time_parts`): time_op exp(p) = work exp(p_group) +
    fixed exp(p_overhead), quantile by quantile. ``time_s``: time_op's time of ``op`` where the
    caller has it already."""
    compute, memory, overhead = op_residuals(hw, op)
    band = compute if bound == "compute" else memory
    if band is None or overhead is None:
        return band
    work, fixed = time_parts(hw, op, time_s)
    return OpBand(work, fixed, band, overhead)


def time_parts(
    hw: HardwareProfile, op: Op, time_s: Seconds | None = None
) -> tuple[Seconds, Seconds]:
    """(work, fixed) seconds of the fitted curves' time (:func:`~hwsim.perf.roofline.time_op`
    without corrections): ``work`` the size-proportional time, max(C, M) + (1 - overlap)
    min(C, M) without F_half and B_half; ``fixed`` the rest (F_half, B_half and the launch
    overhead), so work + fixed is that time (``time_s``, computed here unless given)."""
    curve = hw.efficiency.for_class(op.op_class)
    compute, memory = efficiency_times_s(hw, op, with_half=False)
    work = overlapped_s(compute, memory, curve.overlap)
    if time_s is None:
        time_s = time_op(hw, op, corrected=False).time_s
    if type(work) is float and type(time_s) is float:  # one op of a scalar call
        rest = time_s - work
        return work, rest if rest > 0.0 else 0.0
    total = np.asarray(time_s, dtype=float)
    return work, np.maximum(total - work, 0.0)


def calibrated_band(hw: HardwareProfile, op: Op) -> tuple[np.ndarray, Seconds, Seconds]:
    """(time, low, high) in seconds per execution of ``op`` on a calibrated profile: the
    corrected time_op (:mod:`hwsim.perf.corrections`) and its p10-p90 band (:func:`band_edges_s`);
    never below the speed of light. Raises :class:`RungRefused` where the calibration does
    not cover the op (:func:`calibration_refusal`)."""
    reason = calibration_refusal(hw, op)
    if reason is not None:
        raise RungRefused(reason)
    t = time_op(hw, op)
    lo, hi = band_edges_s(hw, t)
    return np.asarray(t.time_s, dtype=float), lo, hi


def op_band_s(hw: HardwareProfile, t: OpTime) -> tuple[Seconds, Seconds]:
    """(p10, p90) seconds of one op (all its executions), by the rung that priced it: a
    measured op's measured spread, a calibrated op's residual band (:func:`band_edges_s`), a
    datasheet op's (communication included) transfer band from the published set
    (:func:`transfer_band_s`); zero width where none applies."""
    if t.band_s is not None:  # measured: the measurement's own spread
        return t.band_s[0] * t.op.count, t.band_s[1] * t.op.count
    if t.rung == "datasheet" or t.op.op_class == "communication":
        return transfer_band_s(hw, t)
    lo, hi = band_edges_s(hw, t)
    lo, hi = lo * t.op.count, hi * t.op.count
    # the transfer bands of a fitted curve (published rows, leave-one-device-out) both scale
    # the op's time, so their union is one scaled band: the lower factor, the higher one
    published = band_factors(op_groups(t.op, "calibrated"))
    lodo = lodo_factors(t.op.op_class)
    low_f = min(published[0] if published else 1.0, lodo[0] if lodo else 1.0)
    high_f = max(published[1] if published else 1.0, lodo[1] if lodo else 1.0)
    t_lo, t_hi = scaled_band_s(hw, t, (low_f, high_f))
    if type(lo) is float and type(t_lo) is float:
        return min(lo, t_lo), max(hi, t_hi)
    return np.minimum(lo, t_lo), np.maximum(hi, t_hi)


def transfer_band_s(
    hw: HardwareProfile, t: OpTime, rung: str = "datasheet"
) -> tuple[Seconds, Seconds]:
    """(p10, p90) seconds of an op (all its executions) from the published set: its time times
    the p10 and p90 factors of its class at ``rung`` (:mod:`hwsim.perf.transfer`), the low
    edge never below the speed of light; the point value where the shipped file has no band.
    A datasheet op's whole band; a calibrated op's band is the union of this and its
    calibration residuals' (the fit's own spread and how far engines were from it)."""
    factors = band_factors(op_groups(t.op, rung))
    return scaled_band_s(hw, t, None if factors is None else factors[:2])


def scaled_band_s(
    hw: HardwareProfile, t: OpTime, factors: tuple[float, float] | None
) -> tuple[Seconds, Seconds]:
    """An op's time (all its executions) times the (p10, p90) ``factors``, the low edge never
    below the speed of light; the point value without factors."""
    total = t.total_s
    if factors is None:
        return total, total
    floor = roofline_floor_s(hw, t.op) * t.op.count
    low = total * factors[0]
    if type(low) is float and type(floor) is float:
        return (low if low > floor else floor), total * factors[1]
    return np.maximum(low, floor), total * factors[1]


def band_source(t: OpTime) -> str:
    """Where an op's band comes from, in words (what a user should read it as)."""
    if t.band_s is not None:
        return "measured spread (p10-p90 of the repeats)"
    if t.rung == "datasheet" or t.op.op_class == "communication":
        factors = band_factors(op_groups(t.op))
        if factors is None:
            return "none (no transfer band shipped)"
        return (
            f"transfer band: p10-p90 of published measurements vs hwsim's datasheet rung "
            f"({factors[2]!r} rows of validation/published; hwsim.perf.transfer)"
        )
    factors = band_factors(op_groups(t.op, "calibrated"))
    text = "calibration residuals (held-out p10-p90 of this profile's fit)"
    if factors is not None:
        text += (
            f" united with the transfer band of published measurements vs the calibrated rung "
            f"({factors[2]!r} rows of validation/published)"
        )
    return text


def band_edges_s(hw: HardwareProfile, t: OpTime) -> tuple[Seconds, Seconds]:
    """(p10, p90) seconds per execution around a calibrated op's corrected time: the time
    times exp(p10 - p50) and exp(p90 - p50) of the band of the bound each element has (the
    p50 is in the time already), blended with the overhead key where there is one
    (:func:`residual_band`); never below the speed of light; the time itself where the
    calibration has no band for the op."""
    if type(t.bound) is int:  # one op of a scalar call: Python floats throughout
        return _scalar_band_edges_s(hw, t)
    bounds = np.asarray(t.bound)
    present = (int(bounds),) if bounds.ndim == 0 else [i for i in (0, 1) if np.any(bounds == i)]
    factors: dict[int, tuple[Any, Any]] = {}
    for i in present:  # a bound no element has is never looked up
        band = residual_band(hw, t.op, BOUNDS[i])
        if band is None:
            factors[i] = (1.0, 1.0)
            continue
        if isinstance(band, OpBand):
            factors[i] = band.ratios("p10", "p50", "p90")
        else:
            factors[i] = (math.exp(band.p10 - band.p50), math.exp(band.p90 - band.p50))
    if len(factors) < 2:  # one bound throughout (or none): no per-element choice
        lo, hi = next(iter(factors.values()), (1.0, 1.0))
    else:  # mixed bounds: per element
        compute = bounds == 0
        lo = np.where(compute, factors[0][0], factors[1][0])
        hi = np.where(compute, factors[0][1], factors[1][1])
    floor = np.asarray(roofline_floor_s(hw, t.op), dtype=float)
    return np.maximum(floor, t.time_s * lo), np.maximum(floor, t.time_s * hi)


def _scalar_band_edges_s(hw: HardwareProfile, t: OpTime) -> tuple[float, float]:
    """:func:`band_edges_s` of an op priced in Python floats (one bound, one time)."""
    band = residual_band(hw, t.op, BOUNDS[t.bound])
    lo: Any
    hi: Any
    if band is None:
        lo = hi = 1.0
    elif isinstance(band, OpBand):
        lo, hi = band.ratios("p10", "p50", "p90")
    else:
        lo, hi = math.exp(band.p10 - band.p50), math.exp(band.p90 - band.p50)
    floor = float(roofline_floor_s(hw, t.op))
    low, high = t.time_s * lo, t.time_s * hi
    return (low if low > floor else floor), (high if high > floor else floor)


def calibration_refusal(hw: HardwareProfile, op: Op) -> str | None:
    """Why the calibrated rung cannot price ``op`` on ``hw`` (None: it can): the profile has no
    calibration, or its residuals cover no key of the op (its class was not measured)."""
    cal = hw.calibration
    if cal is None or not cal.residuals:
        return f"profile {hw.id!r} has no calibration block"
    if op.op_class == "communication":
        return f"profile {hw.id!r} has no calibration residuals for collectives"
    if all(band is None for band in op_residuals(hw, op)):
        return f"profile {hw.id!r} has no calibration residuals for {op.op_class!r}"
    return None
