"""Price a forward pass: build its ops, time each on the device, add them up by phase.

Everything broadcasts: batch, new_tokens and context may be numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hwsim.inference.deployment import Deployment
from hwsim.model.forward import Forward
from hwsim.model.graph import forward_ops
from hwsim.perf.bands import residual_band
from hwsim.perf.ladder import price_op
from hwsim.perf.roofline import BOUNDS, OpTime, roofline_floor_s
from hwsim.profiles.hardware import HardwareProfile

# TPOT is the mean decode-step time over the generated tokens; it is evaluated at this many
# midpoints of the context range [S, S + G] (exact for step times linear in context).
DECODE_SAMPLES = 4


@dataclass(frozen=True)
class PhaseCost:
    """A forward pass priced on one GPU of the group (all pipeline stages in sequence)."""

    time_s: np.ndarray
    flops: np.ndarray  # executed across the TP group
    hbm_bytes: np.ndarray  # per GPU
    time_by_bound_s: tuple[np.ndarray, np.ndarray, np.ndarray]  # compute, memory, comm
    op_times: tuple[OpTime, ...]
    band_s: tuple[np.ndarray, np.ndarray] | None = None  # (p10, p90); None if uncalibrated

    @property
    def bound(self) -> np.ndarray:
        """Which kind of op holds most of the time: 'compute', 'memory' or 'communication'."""
        return np.asarray(BOUNDS)[
            np.argmax(np.stack(np.broadcast_arrays(*self.time_by_bound_s)), 0)
        ]


def make_forward(dep: Deployment, phase: str, batch, new_tokens, context) -> Forward:
    return Forward(
        phase=phase,  # type: ignore[arg-type]
        model=dep.model,
        batch=np.asarray(batch, dtype=float),
        new_tokens=np.asarray(new_tokens, dtype=float),
        context=np.asarray(context, dtype=float),
        weight=dep.weight,
        kv=dep.kv,
        act=dep.act,
        compute_dtype=dep.compute_dtype,
        tp=dep.tp,
        attention_impl=dep.attention_impl,
        sram_bytes=dep.hardware.sram_per_core_bytes,
    )


def price_forward(dep: Deployment, fw: Forward) -> PhaseCost:
    hw, measured = dep.hardware, dep.measurements
    times = tuple(price_op(hw, op, measured) for op in forward_ops(fw, dep.pp))
    total = _sum(t.total_s for t in times)
    comm = _sum(t.total_s for t in times if t.op.op_class == "communication") + 0.0 * total
    compute = _sum(np.where(t.bound == 0, t.total_s, 0.0) for t in times)
    by_bound = (compute, total - compute - comm, comm)  # communication ops are bound 2
    flops = _sum(
        np.asarray(t.op.flops) * t.op.count * (dep.tp if t.op.op_class != "elementwise" else 1)
        for t in times
    )
    hbm = _sum(np.asarray(t.op.hbm_bytes) * t.op.count for t in times)
    return PhaseCost(total, flops, hbm, by_bound, times, phase_band_s(hw, times))


def _sum(parts) -> np.ndarray:
    """Sum of broadcastable arrays (0.0 for none), as an array."""
    return np.asarray(sum(parts, np.float64(0.0)))


def op_band_s(hw: HardwareProfile, t: OpTime) -> tuple[np.ndarray, np.ndarray]:
    """(p10, p90) seconds of one op (all its executions) from the profile's calibration
    residuals; the low end never beats the roofline. Communication ops and op classes the
    calibration did not measure keep a zero-width band (their point value)."""
    if t.op.op_class == "communication":
        return t.total_s, t.total_s
    if t.band_s is not None:  # measured: the measurement's own spread
        return t.band_s[0] * t.op.count, t.band_s[1] * t.op.count
    lo, hi = np.ones_like(t.total_s), np.ones_like(t.total_s)
    for i, bound in enumerate(BOUNDS[:2]):
        band = residual_band(hw, t.op, bound, t.time_s)
        if band is not None:
            mine = np.asarray(t.bound) == i
            lo = np.where(mine, np.exp(band.p10), lo)
            hi = np.where(mine, np.exp(band.p90), hi)
    floor = np.asarray(roofline_floor_s(hw, t.op), dtype=float) * t.op.count
    return np.maximum(floor, t.total_s * lo), np.maximum(floor, t.total_s * hi)


def phase_band_s(hw: HardwareProfile, times: tuple[OpTime, ...]):
    """The p10-p90 band of a forward pass on a calibrated profile, else None.

    Each op's band is its calibration residual quantiles (held-out log(measured/predicted)
    for its class, dtype and bound); the phase band adds the ops' low ends and their high
    ends, i.e. assumes the errors of the ops move together. That is the conservative
    choice: ops of one class share one fitted curve, so their errors are correlated."""
    calibrated = hw.calibration is not None and bool(hw.calibration.residuals)
    if not calibrated and all(t.band_s is None for t in times):
        return None
    bands = [op_band_s(hw, t) for t in times]
    return sum(b[0] for b in bands), sum(b[1] for b in bands)


def prefill_cost(dep: Deployment, batch, prompt_len) -> PhaseCost:
    return price_forward(dep, make_forward(dep, "prefill", batch, prompt_len, prompt_len))


def decode_step_cost(dep: Deployment, batch, context) -> PhaseCost:
    """One decode step: every sequence adds one token at ``context`` keys (itself included)."""
    return price_forward(dep, make_forward(dep, "decode", batch, 1.0, context))


def decode_contexts(
    prompt_len, gen_len, samples: int = DECODE_SAMPLES, shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """Midpoints of the contexts seen by the G - 1 decode steps (step i sees S + i keys),
    stacked on a new leading axis of length ``samples``. ``shape``: the broadcast shape of the
    whole sweep (batch included), so the sample axis never lines up with a sweep axis."""
    s, g = np.asarray(prompt_len, dtype=float), np.asarray(gen_len, dtype=float)
    shape = np.broadcast_shapes(np.shape(s), np.shape(g), shape or ())
    steps = np.maximum(g - 1.0, 1.0)
    j = np.arange(samples, dtype=float).reshape((samples,) + (1,) * len(shape))
    return np.broadcast_to(s + 0.5 + (j + 0.5) * steps / samples, (samples, *shape))


def mean_decode_cost(dep: Deployment, batch, prompt_len, gen_len) -> PhaseCost:
    """Decode cost averaged over the generated tokens as context grows from S to S + G.

    The sample contexts ride on a leading axis, so ops that do not depend on context
    (projections, FFN) are priced once and only attention is priced per sample."""
    shape = np.broadcast_shapes(np.shape(batch), np.shape(prompt_len), np.shape(gen_len))
    contexts = decode_contexts(prompt_len, gen_len, shape=shape)
    cost = decode_step_cost(dep, batch, contexts)

    def mean(x):
        x = np.asarray(x, dtype=float)
        if x.ndim > len(shape):
            return x.mean(axis=0)
        return np.broadcast_to(x, shape) if x.ndim < len(shape) else x

    return PhaseCost(
        time_s=mean(cost.time_s),
        flops=mean(cost.flops),
        hbm_bytes=mean(cost.hbm_bytes),
        time_by_bound_s=tuple(mean(t) for t in cost.time_by_bound_s),
        op_times=tuple(_mean_op_time(t, mean) for t in cost.op_times),
        band_s=None if cost.band_s is None else (mean(cost.band_s[0]), mean(cost.band_s[1])),
    )


def _mean_op_time(t: OpTime, mean) -> OpTime:
    op = t.op
    fields = (
        "flops",
        "weight_bytes",
        "act_read_bytes",
        "act_write_bytes",
        "kv_read_bytes",
        "kv_write_bytes",
        "comm_bytes",
    )
    averaged = replace(op, **{f: mean(getattr(op, f)) for f in fields})
    bound = np.rint(mean(t.bound)).astype(int)
    band = None if t.band_s is None else (mean(t.band_s[0]), mean(t.band_s[1]))
    times = (mean(t.time_s), mean(t.compute_s), mean(t.memory_s))
    return OpTime(averaged, *times, bound, t.rung, band)
