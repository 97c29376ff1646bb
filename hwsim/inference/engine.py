"""Price a forward pass: build its ops, time each on the device, add them up by phase.

Everything broadcasts: batch, new_tokens and context may be numpy arrays.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from hwsim.inference.deployment import Deployment
from hwsim.labels import label_array
from hwsim.lean import cached_attribute, direct_init
from hwsim.model.forward import Forward
from hwsim.model.graph import forward_ops
from hwsim.model.ops import Op
from hwsim.perf.bands import op_band_s
from hwsim.perf.ladder import price_op
from hwsim.perf.measured import MeasurementSet
from hwsim.perf.roofline import BOUNDS, OpTime, roofline_floor_s
from hwsim.perf.transfer import band_factors, op_correlation, phase_groups
from hwsim.profiles.hardware import HardwareProfile

Band = tuple[Any, Any]  # (p10, p90) seconds, floats or arrays

# TPOT is the mean decode-step time over the generated tokens; it is evaluated at this many
# midpoints of the context range [S, S + G] (exact for step times linear in context).
DECODE_SAMPLES = 4


@direct_init
@dataclass(frozen=True)
class PhaseCost:
    """A forward pass priced on one GPU of the group (all pipeline stages in sequence)."""

    time_s: np.ndarray
    flops: np.ndarray  # executed across the TP group
    hbm_bytes: np.ndarray  # per GPU
    time_by_bound_s: tuple[np.ndarray, np.ndarray, np.ndarray]  # compute, memory, comm
    op_times: Sequence[OpTime]  # a tuple, or LazyOpTimes where only tables need them
    # the (p10, p90) band, or what computes it on first read (:attr:`band_s`); None: no band
    band: Band | Callable[[], Band | None] | None = None

    @cached_attribute
    def band_s(self) -> Band | None:
        """(p10, p90) seconds, or None where no rung gives a band; computed on first read (a
        sweep or a call that reads only point values never pays for it)."""
        band = self.band
        return band() if callable(band) else band

    @property
    def bound(self) -> np.ndarray:
        """Which kind of op holds most of the time: 'compute', 'memory' or 'communication'."""
        compute, memory, comm = self.time_by_bound_s
        # the first of the three on a tie, as argmax over (compute, memory, comm) would pick
        if all(np.ndim(x) == 0 and not math.isnan(x) for x in (compute, memory, comm)):
            c, m, k = float(compute), float(memory), float(comm)  # one point: no array passes
            return label_array(0 if c >= max(m, k) else 1 if m >= k else 2, BOUNDS)
        index = np.where(compute >= np.maximum(memory, comm), 0, np.where(memory >= comm, 1, 2))
        return label_array(index, BOUNDS)


class LazyOpTimes(Sequence[OpTime]):
    """Per-op times computed on first use: the decode mean's per-op averages feed only op
    tables and plots, so a sweep or a scalar call that reads no table never builds them.
    ``compute`` must be picklable (a partial of a module-level function)."""

    def __init__(self, compute: Callable[[], tuple[OpTime, ...]]):
        self._compute = compute
        self._value: tuple[OpTime, ...] | None = None

    def _times(self) -> tuple[OpTime, ...]:
        if self._value is None:
            self._value = self._compute()
        return self._value

    def __getitem__(self, index):
        return self._times()[index]

    def __len__(self) -> int:
        return len(self._times())


def _lengths(x) -> Any:  # np.ndarray | float: the builders take either
    """Floats for the op builders: a Python float for one value (its arithmetic is several
    times cheaper than a numpy scalar's, and far cheaper than a 0-d array's), float arrays
    for sweeps."""
    arr = np.asarray(x, dtype=float)
    return float(arr) if arr.ndim == 0 else arr


def make_forward(dep: Deployment, phase: str, batch, new_tokens, context) -> Forward:
    return Forward(
        phase=phase,  # type: ignore[arg-type]
        model=dep.model,
        batch=_lengths(batch),
        new_tokens=_lengths(new_tokens),
        context=_lengths(context),
        weight=dep.weight,
        kv=dep.kv,
        act=dep.act,
        compute_dtype=dep.compute_dtype,
        tp=dep.tp,
        attention_impl=dep.attention_impl,
        sram_bytes=dep.hardware.sram_per_core_bytes,
        custom_all_reduce=dep.spec.runtime.custom_all_reduce,
    )


def price_forward(dep: Deployment, fw: Forward) -> PhaseCost:
    return price_ops(dep, forward_ops(fw, dep.pp), fw.phase)


def _priced(hw: HardwareProfile, op: Op, measured: MeasurementSet | None) -> OpTime:
    """``price_op(hw, op, measured)``, kept on the op where it is one number: the context-free
    ops of scalar forwards are shared between calls (:func:`hwsim.model.graph.forward_ops`),
    and so their prices."""
    held = op.__dict__.get("_priced")
    if held is not None and held[0] is hw and held[1] is measured and held[2].op is op:
        return held[2]
    t = price_op(hw, op, measured)
    if type(t.time_s) is float:  # a sweep's op holds arrays: keeping its times costs memory
        op.__dict__["_priced"] = (hw, measured, t)
    return t


def price_ops(dep: Deployment, ops: Sequence[Op], phase: str | None = None) -> PhaseCost:
    """Price ``ops`` on ``dep``'s device and sum them into a phase (arrays broadcast);
    ``phase`` (prefill or decode) picks the published metric of its whole-model band."""
    hw, measured = dep.hardware, dep.measurements
    times = tuple(_priced(hw, op, measured) for op in ops)
    total, comm, compute, flops, hbm = (_Sum() for _ in range(5))
    # Python floats (the ops of a scalar call) add up here, in order; arrays in the _Sums
    f_total = f_comm = f_compute = f_flops = f_hbm = 0.0
    for t in times:
        op, op_s = t.op, t.total_s
        op_flops = op.flops * op.count * (1 if op.op_class == "elementwise" else dep.tp)
        op_hbm = op.hbm_bytes * op.count
        if isinstance(op_s, float):  # (np.float64 is one)
            f_total += op_s
            if op.op_class == "communication":
                f_comm += op_s
            if t.bound == 0:
                f_compute += op_s
        else:
            total.add(op_s)
            if op.op_class == "communication":
                comm.add(op_s)
            compute.add(op_s, where=t.bound == 0)
        if isinstance(op_flops, (float, int)):
            f_flops += op_flops
        else:
            flops.add(op_flops)
        if isinstance(op_hbm, (float, int)):
            f_hbm += op_hbm
        else:
            hbm.add(op_hbm)
    for acc, value in ((total, f_total), (comm, f_comm), (compute, f_compute)):
        acc.add(value)
    flops.add(f_flops)
    hbm.add(f_hbm)
    total_s, compute_s = total.value(), compute.value()
    comm_s = comm.value() + 0.0 * total_s
    by_bound = (compute_s, total_s - compute_s - comm_s, comm_s)  # communication ops: bound 2
    band = partial(phase_band_s, hw, times, total_s, phase)
    return PhaseCost(total_s, flops.value(), hbm.value(), by_bound, times, band)


def shifted_band(cost: PhaseCost, seconds) -> Callable[[], Band | None]:
    """``cost``'s band with ``seconds`` added to both edges, computed when it is read."""
    return mapped_band(cost, partial(operator.add, seconds))


def mapped_band(cost: PhaseCost, fn: Callable[[Any], Any]) -> Callable[[], Band | None]:
    """``cost``'s band with ``fn`` applied to each edge, computed when it is read."""
    return partial(_mapped_band, cost, fn)


def _mapped_band(cost: PhaseCost, fn) -> Band | None:
    band = cost.band_s
    return None if band is None else (fn(band[0]), fn(band[1]))


class _Sum:
    """A sum of arrays of a few distinct shapes (a decode step's context-free ops are (n,),
    its attention (samples, n)): each shape adds up in place in its own accumulator (one
    value: a float), and they are broadcast together once at the end, not every op at the
    largest shape."""

    def __init__(self) -> None:
        self._scalar = 0.0
        self._by_shape: dict[tuple[int, ...], np.ndarray] = {}

    def add(self, x, where=None) -> None:
        if type(x) is float:  # one op of a scalar call: the common case first
            if where is None or where:
                self._scalar += x
            return
        shape = getattr(x, "shape", ())
        if not shape:
            if where is None or where:
                self._scalar += float(x)
            return
        held = self._by_shape.get(shape)
        if held is None:
            held = self._by_shape[shape] = np.zeros(shape)
        if where is None:
            held += x
        else:
            np.add(held, x, out=held, where=where)

    def value(self) -> np.ndarray:
        """The total, in the broadcast shape of everything added (0.0 if nothing was)."""
        parts = sorted(self._by_shape.values(), key=np.size)
        if not parts:
            return np.asarray(self._scalar)
        out = parts[-1]
        if len(parts) > 1 or self._scalar:
            out = out.copy()
        for part in parts[:-1]:
            fits = out.shape == np.broadcast_shapes(out.shape, part.shape)
            out = np.add(out, part, out=out) if fits else out + part
        if self._scalar:
            out += self._scalar
        return out


def phase_band_s(
    hw: HardwareProfile, times: tuple[OpTime, ...], total_s=None, phase: str | None = None
):
    """The p10-p90 band of a forward pass (None where no rung gives one).

    On a calibrated (or measured) profile each op's band is its own (calibration residual
    quantiles, a measurement's spread; datasheet-priced ops such as collectives their
    transfer band), and the ops' bands combine with the correlation of different ops' errors
    estimated from the published TPOT rows (:func:`hwsim.perf.transfer.op_correlation`;
    :func:`combine_op_bands_s`), the plain sum of the edges at rho = 1; united with the
    published whole-model band of the calibrated rung. On a datasheet profile
    the band is the published whole-model band (:func:`hwsim.perf.transfer.phase_groups`)
    applied to the phase's time (``total_s``): those rows measure whole forward passes, so
    they hold whatever correlation the ops' errors have; the low edge never below the ops'
    speed of light."""
    calibrated = hw.calibration is not None and bool(hw.calibration.residuals)
    if not calibrated and all(t.band_s is None for t in times):
        return _whole_model_band_s(hw, times, total_s, "datasheet", phase)
    band = combine_op_bands_s(hw, times, op_correlation())
    whole = _whole_model_band_s(hw, times, total_s, "calibrated", phase) if calibrated else None
    if whole is None:
        return band
    return np.minimum(band[0], whole[0]), np.maximum(band[1], whole[1])


def combine_op_bands_s(hw: HardwareProfile, times: tuple[OpTime, ...], rho: float):
    """The ops' bands added into one with correlation ``rho`` between different ops.

    Each op's band [lo, hi] around its time t splits into a point p = t clipped into the band
    (a band wholly on one side of t is a systematic offset: it adds as it is) and the
    deviations below and above it, p - lo and hi - p; each side combines on its own,
    sqrt((1 - rho) sum d^2 + rho (sum d)^2) (asymmetric uncertainties added side by side),
    which is the plain sum of the edges at rho = 1."""
    linear, squares = rho > 0.0, rho < 1.0  # the sums each side needs
    point, below, below_sq, above, above_sq = _Sum(), _Sum(), _Sum(), _Sum(), _Sum()
    for t in times:
        lo, hi = op_band_s(hw, t)
        total = t.total_s
        p: Any
        if type(total) is float and type(lo) is float and type(hi) is float:
            p = hi if total > hi else lo if total < lo else total  # one op of a scalar call
        else:
            p = np.minimum(np.maximum(total, lo), hi)
        down, up = p - lo, hi - p
        point.add(p)
        if linear:
            below.add(down)
            above.add(up)
        if squares:
            below_sq.add(down * down)
            above_sq.add(up * up)
    centre = point.value()
    return centre - _side(below, below_sq, rho), centre + _side(above, above_sq, rho)


def _side(total: _Sum, squares: _Sum, rho: float):
    """One side of a combined band: sqrt((1 - rho) sum d^2 + rho (sum d)^2)."""
    if rho >= 1.0:
        return total.value()
    if rho <= 0.0:
        return np.sqrt(squares.value())
    s = total.value()
    return np.sqrt((1.0 - rho) * squares.value() + rho * s * s)


def _whole_model_band_s(
    hw: HardwareProfile, times: tuple[OpTime, ...], total_s, rung: str, phase: str | None
):
    """The published whole-model band at ``rung`` on the phase's time, the low edge never
    below the ops' speed of light (None without a shipped band)."""
    factors = band_factors(phase_groups(rung, phase))
    if factors is None or total_s is None:
        return None
    lo, hi, _group = factors
    floor = _Sum()
    for t in times:
        floor.add(roofline_floor_s(hw, t.op) * t.op.count)
    return np.maximum(total_s * lo, floor.value()), total_s * hi


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
    if s.ndim == 0 and g.ndim == 0 and not shape and not math.isnan(g):  # one point
        return _point_contexts(float(s), float(g), samples)
    shape = np.broadcast_shapes(np.shape(s), np.shape(g), shape or ())
    steps = np.maximum(g - 1.0, 1.0)
    j = np.arange(samples, dtype=float).reshape((samples,) + (1,) * len(shape))
    return np.broadcast_to(s + 0.5 + (j + 0.5) * steps / samples, (samples, *shape))


def _point_contexts(s: float, g: float, samples: int) -> np.ndarray:
    """:func:`decode_contexts` of one point: the same operations in Python floats."""
    steps = g - 1.0 if g - 1.0 >= 1.0 else 1.0
    return np.array([s + 0.5 + (j + 0.5) * steps / samples for j in range(samples)])


def mean_decode_cost(dep: Deployment, batch, prompt_len, gen_len) -> PhaseCost:
    """Decode cost averaged over the generated tokens as context grows from S to S + G.

    The sample contexts ride on a leading axis, so ops that do not depend on context
    (projections, FFN) are priced once and only attention is priced per sample."""
    shape = np.broadcast_shapes(np.shape(batch), np.shape(prompt_len), np.shape(gen_len))
    contexts = decode_contexts(prompt_len, gen_len, shape=shape)
    cost = decode_step_cost(dep, batch, contexts)
    mean = partial(_sample_mean, shape=shape)
    return PhaseCost(
        time_s=mean(cost.time_s),
        flops=mean(cost.flops),
        hbm_bytes=mean(cost.hbm_bytes),
        time_by_bound_s=tuple(mean(t) for t in cost.time_by_bound_s),  # type: ignore[arg-type]
        op_times=LazyOpTimes(partial(_mean_op_times, cost.op_times, mean)),
        band=mapped_band(cost, mean),
    )


def _sample_mean(x, shape: tuple[int, ...]) -> np.ndarray:
    """Mean over the leading decode-sample axis where ``x`` has one, else ``x`` at ``shape``."""
    x = np.asarray(x, dtype=float)
    if x.ndim > len(shape):  # x.mean(axis=0) without its dispatch: the same sum and division
        return np.add.reduce(x, axis=0) / x.shape[0]
    return np.broadcast_to(x, shape) if x.ndim < len(shape) else x


def _mean_op_times(times: Sequence[OpTime], mean) -> tuple[OpTime, ...]:
    return tuple(_mean_op_time(t, mean) for t in times)


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


def pricing_label(cost: PhaseCost, index: int | None = None) -> str:
    """Which ladder rungs priced a forward pass, by share of its time: 'calibrated',
    'datasheet', or e.g. 'calibrated 96%, datasheet 4%' (``index``: one point of a sweep)."""
    shares: dict[str, float] = {}
    for t in cost.op_times:
        seconds = np.ravel(np.broadcast_to(t.total_s, np.shape(cost.time_s)))
        share = float(seconds[index] if index is not None else seconds.sum())
        shares[t.rung] = shares.get(t.rung, 0.0) + share
    total = sum(shares.values())
    ranked = sorted(((s, r) for r, s in shares.items() if s > 0), reverse=True)
    if not ranked or total <= 0:
        return "-"
    shown = [(rung, f"{share / total:.0%}") for share, rung in ranked]
    shown = [(rung, pct) for rung, pct in shown if pct != "0%"]  # what rounds away is noise
    if len(shown) == 1 or shown[0][1] == "100%":
        return shown[0][0]
    return ", ".join(f"{rung} {pct}" for rung, pct in shown)
