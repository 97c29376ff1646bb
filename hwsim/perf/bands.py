"""Calibration residual bands: how far a calibrated profile's time for one op may be off.

A calibrated hardware profile carries quantiles of log(measured / predicted) per calibration
group ('<kernel>/<dtype>/<bound>', more general keys as fallbacks). :func:`residual_band`
finds an op's band; where the profile also has the kernel's per-call overhead key, the fixed
part of the time (launch, F_half, B_half) is scaled by that key and the size-proportional part
by the group's (:func:`time_parts`). :func:`calibrated_band` turns a band into seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.errors import RungRefused
from hwsim.model.ops import Op
from hwsim.perf.roofline import (
    efficiency_times_s,
    overlapped_s,
    roofline_bound,
    roofline_floor_s,
    time_op,
)
from hwsim.profiles.hardware import HardwareProfile, ResidualBand


def group_key(op: Op, bound: str) -> str:
    """'<kernel>/<dtype>/<bound>', e.g. 'gemm/bf16/memory': the calibration group of ``op``."""
    return f"{op.name}/{op.compute_dtype}/{bound}"


def shape_factor(op: Op) -> str | None:
    """A shape parameter the calibration may key on beyond FLOPs and bytes: 'head_dim=<d>' for
    attention built here. FlashAttention-style kernels run the softmax exponentials on the
    special-function units (about 3.9 T exp/s against 989 TFLOP/s of bf16 MMA on an H100), one
    per score whatever the head dim, so a head dim of 64 reaches a lower fraction of matrix
    peak than 128 (Shah et al. 2024, FlashAttention-3, arXiv 2407.08608)."""
    d = op.meta.get("head_dim")
    return f"head_dim={d}" if d is not None else None


def residual_keys(op: Op, bound: str) -> tuple[str, ...]:
    """Calibration residual keys for ``op``, most specific first: '<kernel>/<dtype>/<bound>'
    (e.g. 'gemm/bf16/memory'), preceded by '<kernel>/<dtype>/<bound>/<shape factor>' where
    :func:`shape_factor` has one, then '<kernel>/<dtype>', '<op class>/<dtype>', '<op class>'."""
    d, group, factor = op.compute_dtype, group_key(op, bound), shape_factor(op)
    keys = (group, f"{op.name}/{d}", f"{op.op_class}/{d}", op.op_class)
    return (f"{group}/{factor}", *keys) if factor else keys


def overhead_key(op: Op) -> str:
    """Calibration residual key of the fixed per-call cost of ``op``'s kernel (launch and
    dispatch, the curve's F_half and B_half): '<kernel>/<dtype>/overhead'. A library's per-call
    overhead is its own number, not its throughput's; one log offset for both cannot fit a
    kernel's small and large shapes at once."""
    return f"{op.name}/{op.compute_dtype}/overhead"


@dataclass(frozen=True)
class OpBand:
    """log(measured / time_op) quantiles for one op (arrays where the op's sizes are) that has
    an overhead key: the blend :func:`residual_band` describes, each quantile computed when it
    is first asked for (a phase band needs only p10 and p90)."""

    work: np.ndarray  # size-proportional seconds (time_parts)
    fixed: np.ndarray  # fixed per-call seconds
    group: ResidualBand
    overhead: ResidualBand

    @property
    def n_points(self) -> int:
        return self.group.n_points

    def factor(self, q: str) -> np.ndarray:
        """exp(quantile ``q``): work exp(p_group) + fixed exp(p_overhead), over work + fixed."""
        total = np.maximum(self.work + self.fixed, np.finfo(float).tiny)
        return (
            self.work * np.exp(getattr(self.group, q))
            + self.fixed * np.exp(getattr(self.overhead, q))
        ) / total

    @property
    def p10(self) -> np.ndarray:
        return np.log(self.factor("p10"))

    @property
    def p50(self) -> np.ndarray:
        return np.log(self.factor("p50"))

    @property
    def p90(self) -> np.ndarray:
        return np.log(self.factor("p90"))


def band_factor(band: ResidualBand | OpBand, q: str) -> np.ndarray | float:
    """exp(quantile ``q``) of a band: the factor time_op's time is scaled by."""
    return band.factor(q) if isinstance(band, OpBand) else np.exp(getattr(band, q))


def residual_band(
    hw: HardwareProfile, op: Op, bound: str, time_s: np.ndarray | None = None
) -> ResidualBand | OpBand | None:
    """The calibration residuals of log(measured / time_op) for ``op``: the most specific key
    the profile has (:func:`residual_keys`). Where it also has the kernel's
    :func:`overhead_key`, that key prices the fixed per-call part of the time and the group key
    the size-proportional part (:func:`time_parts`): time_op exp(p) = work exp(p_group) +
    fixed exp(p_overhead), quantile by quantile. ``time_s``: time_op's time of ``op`` where the
    caller has it already."""
    res = hw.calibration.residuals if hw.calibration else {}
    band = next((res[k] for k in residual_keys(op, bound) if k in res), None)
    overhead = res.get(overhead_key(op))
    if band is None or overhead is None:
        return band
    work, fixed = time_parts(hw, op, time_s)
    return OpBand(work, fixed, band, overhead)


def time_parts(
    hw: HardwareProfile, op: Op, time_s: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(work, fixed) seconds of :func:`~hwsim.perf.roofline.time_op`: ``work`` the size-proportional
    time, max(C, M) + (1 - overlap) min(C, M) without F_half and B_half; ``fixed`` the rest
    (F_half, B_half and the launch overhead), so work + fixed is time_op's time (``time_s``,
    computed here unless the caller has it)."""
    curve = hw.efficiency.for_class(op.op_class)
    compute, memory = efficiency_times_s(hw, op, with_half=False)
    work = overlapped_s(compute, memory, curve.overlap)
    total = np.asarray(time_op(hw, op).time_s if time_s is None else time_s, dtype=float)
    return work, np.maximum(total - work, 0.0)


def calibrated_band(hw: HardwareProfile, op: Op) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time, low, high) in seconds per execution of ``op`` on a calibrated profile: time_op
    times exp(p50), exp(p10), exp(p90) of :func:`residual_band`; never below the roofline.
    Raises :class:`RungRefused` without residuals for the op class."""
    if hw.calibration is None:
        raise RungRefused(f"profile {hw.id!r} has no calibration block")
    bound = roofline_bound(hw, op)
    base = np.asarray(time_op(hw, op).time_s, dtype=float)
    bands = {b: residual_band(hw, op, b, base) for b in np.unique(bound)}
    if any(band is None for band in bands.values()):
        raise RungRefused(f"profile {hw.id!r} has no calibration residuals for {op.op_class!r}")
    floor = np.asarray(roofline_floor_s(hw, op), dtype=float)

    def scaled(q: str) -> np.ndarray:
        log_factor = sum(np.where(bound == b, getattr(band, q), 0.0) for b, band in bands.items())
        return np.maximum(floor, base * np.exp(log_factor))

    return scaled("p50"), scaled("p10"), scaled("p90")
