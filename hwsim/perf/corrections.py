"""Calibration corrections: the residual keys of an op, and the per-side factors they give.

A calibrated profile's residuals are quantiles of log(measured / fitted curve) per group
('<kernel>/<dtype>/<bound>', then more general keys). Their p50 is part of the fitted model:
the fit's per-group offsets (a dtype's, a head dim's) plus the out-of-fold median
(``validation.bands``). :func:`side_factors` turns an op's p50s into factors on the two sides of
its time, so every path that prices an op with :func:`hwsim.perf.roofline.time_op` (a kernel
call, a model's forward pass, the serving simulator's step model) applies them alike:

    C = (F exp(p50_compute) + F_half exp(p50_overhead)) / (peak x compute_fraction)
    M = (B exp(p50_memory) + B_half exp(p50_overhead)) / (bandwidth x memory_fraction)
    t = max(C, M) + (1 - overlap) min(C, M) + launches x exp(p50_overhead)

where p50_compute / p50_memory come from the op's most specific key for that bound and
p50_overhead from its '<kernel>/<dtype>/overhead' key (0 without one); a side's factor is at
least the curve's fraction for it, so no side beats its peak (nor, then, the op the speed of
light). While one side binds
this is the bound group's correction of the size-proportional time and the overhead key's of
the fixed per-call part, as :func:`hwsim.perf.bands.residual_band` blends them.
"""

from __future__ import annotations

import math

from hwsim.model.ops import Op
from hwsim.perf.kernels import calibration_name
from hwsim.profiles.hardware import Calibration, HardwareProfile, ResidualBand

NO_CORRECTION = (1.0, 1.0, 1.0)


def group_key(op: Op, bound: str) -> str:
    """'<kernel>/<dtype>/<bound>', e.g. 'gemm/bf16/memory': the calibration group of ``op``
    (a model op that is a kernel call is keyed by its kernel: :func:`calibration_name`)."""
    return f"{calibration_name(op)}/{op.compute_dtype}/{bound}"


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
    keys = (group, f"{calibration_name(op)}/{d}", f"{op.op_class}/{d}", op.op_class)
    return (f"{group}/{factor}", *keys) if factor else keys


def overhead_key(op: Op) -> str:
    """Calibration residual key of the fixed per-call cost of ``op``'s kernel (launch and
    dispatch, the curve's F_half and B_half): '<kernel>/<dtype>/overhead'. A library's per-call
    overhead is its own number, not its throughput's; one log offset for both cannot fit a
    kernel's small and large shapes at once."""
    return f"{calibration_name(op)}/{op.compute_dtype}/overhead"


def op_residuals(
    hw: HardwareProfile, op: Op
) -> tuple[ResidualBand | None, ResidualBand | None, ResidualBand | None]:
    """(compute band, memory band, overhead band) of ``op``: the most specific residual key
    for each bound (:func:`residual_keys`) and its overhead key; None where the profile has
    none. Looked up once per calibration and kernel family (scalar calls price thousands)."""
    cal = hw.calibration
    if cal is None or not cal.residuals or op.op_class == "communication":
        return (None, None, None)
    mine = op.__dict__.get("_residuals")  # an op is priced, banded and ranked: look up once
    if mine is not None and mine[0] is cal:
        return mine[1]
    key = (id(cal), calibration_name(op), op.compute_dtype, op.op_class, shape_factor(op))
    hit = _BANDS.get(key)
    if hit is not None and hit[0] is cal:
        op.__dict__["_residuals"] = hit
        return hit[1]
    res = cal.residuals
    compute, memory = (
        next((res[k] for k in residual_keys(op, bound) if k in res), None)
        for bound in ("compute", "memory")
    )
    found = (compute, memory, res.get(overhead_key(op)))
    if len(_BANDS) > 4096:
        _BANDS.clear()
    _BANDS[key] = op.__dict__["_residuals"] = (cal, found)  # holding cal: its id stays taken
    return found


_BANDS: dict[tuple, tuple[Calibration, tuple]] = {}


def side_factors(hw: HardwareProfile, op: Op) -> tuple[float, float, float]:
    """(compute, memory, overhead) factors exp(p50) of ``op`` on ``hw`` (module docstring);
    all 1.0 on an uncalibrated profile, for collectives, and where no key covers the op."""
    compute, memory, overhead = op_residuals(hw, op)
    if compute is None and memory is None and overhead is None:
        return NO_CORRECTION
    # a correction never takes a side past its peak: F f / (peak x fraction) >= F / peak
    curve = hw.efficiency.for_class(op.op_class)
    return (
        max(math.exp(compute.p50), curve.compute_fraction) if compute is not None else 1.0,
        max(math.exp(memory.p50), curve.memory_fraction) if memory is not None else 1.0,
        math.exp(overhead.p50) if overhead is not None else 1.0,
    )
