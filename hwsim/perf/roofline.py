"""Turn op cost descriptors into seconds on a device: roofline x efficiency, alpha-beta links.

Roofline (Williams, Waterman & Patterson 2009): t = max(F / pi, B / beta). hwsim scales the
peaks by the profile's efficiency curve for the op class (see EfficiencyCurve), adds the part
of the shorter of compute and memory time the curve's ``overlap`` does not hide
(t = max(C, M) + (1 - overlap) min(C, M); overlap 1 is the plain max) and the kernel launch
overhead. :func:`roofline_floor_s` stays the bare max at peak rates, which no curve beats.
Collectives use NCCL's cost model (:mod:`hwsim.perf.collectives`): per (algorithm, protocol) a
latency plus bytes over an algorithm bandwidth, the fastest wins (profiles without an NCCL
block keep the alpha-beta ring of formulas.md's collectives section).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwsim.lean import cached_attribute, direct_init
from hwsim.model.ops import Op
from hwsim.perf.collectives import collective_model
from hwsim.perf.corrections import NO_CORRECTION, side_factors
from hwsim.perf.custom_allreduce import custom_all_reduce_s
from hwsim.profiles.hardware import HardwareProfile

BOUNDS = ("compute", "memory", "communication")
Seconds = np.ndarray | float  # one op of a scalar call is priced in Python floats


@direct_init
@dataclass(frozen=True)
class OpTime:
    """Predicted time of one op (per execution) and what bounds it."""

    op: Op
    time_s: Seconds  # Python floats for an op of a scalar call, else arrays
    compute_s: Seconds
    memory_s: Seconds
    bound: np.ndarray | int  # 0 compute, 1 memory, 2 communication (index into BOUNDS)
    rung: str = "datasheet"  # ladder rung that priced it (hwsim.perf.ladder): time_op's own is
    # 'datasheet'; the ladder renames it 'calibrated' where calibration covers the op
    band_s: tuple[np.ndarray, np.ndarray] | None = None  # (p10, p90) per execution, measured

    @cached_attribute
    def total_s(self) -> Seconds:
        """Seconds of all ``op.count`` executions (computed once)."""
        return self.time_s * self.op.count


def peak_flops_per_s(hw: HardwareProfile, op: Op) -> float:
    """The peak rate ``op`` runs against: the vector units' fp32 rate, or the matrix units' at
    its compute dtype; looked up once per (immutable) profile, units and dtype (an op is priced,
    banded and floored, and a forward pass has dozens)."""
    held = _PEAKS.get(id(hw))
    if held is None or held[0] is not hw:
        if len(_PEAKS) >= PEAK_CACHE_SIZE:
            _PEAKS.clear()
        held = _PEAKS[id(hw)] = (hw, {})  # holding hw: its id stays taken while cached
    key = "vector" if op.on_vector_units else op.compute_dtype
    rate = held[1].get(key)
    if rate is None:
        if op.on_vector_units:
            rate = hw.vector_peak_flops_per_s("fp32")
        else:
            rate = hw.matrix_peak_flops_per_s(op.compute_dtype)
        held[1][key] = rate
    return rate


PEAK_CACHE_SIZE = 64
_PEAKS: dict[int, tuple[HardwareProfile, dict[str, float]]] = {}


def overlapped_s(compute_s, memory_s, overlap: float) -> Seconds:
    """Compute and memory time combined: max(C, M) + (1 - overlap) * min(C, M).

    ``overlap`` 1 is the roofline's max(C, M) (the shorter fully hidden), 0 the serial C + M;
    either way the result is at least max(C, M)."""
    if type(compute_s) is float and type(memory_s) is float:  # one op of a scalar call
        longer, shorter = (compute_s, memory_s) if compute_s >= memory_s else (memory_s, compute_s)
        if math.isnan(shorter):
            return math.nan
        return longer if overlap >= 1.0 else longer + (1.0 - overlap) * shorter
    c, m = np.asarray(compute_s, dtype=float), np.asarray(memory_s, dtype=float)
    if overlap >= 1.0:  # the common, uncalibrated case: skip a pass over sweep-sized arrays
        return np.maximum(c, m)
    return np.maximum(c, m) + (1.0 - overlap) * np.minimum(c, m)


def efficiency_times_s(
    hw: HardwareProfile,
    op: Op,
    *,
    with_half: bool = True,
    factors: tuple[float, float, float] = NO_CORRECTION,
) -> tuple[Seconds, Seconds]:
    """(compute, memory) seconds of ``op`` at the efficiency curve's fractions of peak.

    ``with_half``: include the curve's F_half / B_half ramp (the fixed cost of a small call);
    without it only the size-proportional part remains (:func:`hwsim.perf.bands.time_parts`).
    ``factors``: the calibration's (compute, memory, overhead) corrections
    (:func:`hwsim.perf.corrections.side_factors`) on F, B and the ramps."""
    curve = hw.efficiency.for_class(op.op_class)
    if _is_scalar(op.flops) and _is_scalar(op.hbm_bytes):
        return _efficiency_times_scalar_s(hw, op, curve, with_half, factors)
    flops, nbytes = _floats(op.flops), _floats(op.hbm_bytes)
    f_compute, f_memory, f_overhead = factors
    if f_compute != 1.0:
        flops = flops * f_compute
    if hw.on_chip.matrix_unit is not None:
        flops = flops * tile_padding(hw, op)
    if f_memory != 1.0:
        nbytes = nbytes * f_memory
    if with_half and curve.compute_half_flops:  # (a zero ramp adds nothing: skip the pass)
        flops = flops + curve.compute_half_flops * f_overhead * (flops > 0)
    if with_half and curve.memory_half_bytes:
        nbytes = nbytes + curve.memory_half_bytes * f_overhead * (nbytes > 0)
    compute_s = flops / (peak_flops_per_s(hw, op) * curve.compute_fraction)
    memory_s = nbytes / (hw.bandwidth_bytes_per_s * curve.memory_fraction)
    return compute_s, memory_s


def _is_scalar(x) -> bool:
    """One number (a Python float or int, or a numpy scalar), not an array of them."""
    return type(x) is float or type(x) is int or isinstance(x, np.generic)


def _efficiency_times_scalar_s(
    hw: HardwareProfile, op: Op, curve, with_half: bool, factors: tuple[float, float, float]
) -> tuple[float, float]:
    """:func:`efficiency_times_s` of an op whose sizes are single numbers, in Python floats
    (a numpy scalar's arithmetic and ufuncs cost several times more): the same operations in
    the same order, so the same IEEE results."""
    flops, nbytes = float(op.flops), float(op.hbm_bytes)
    f_compute, f_memory, f_overhead = factors
    if f_compute != 1.0:
        flops = flops * f_compute
    if hw.on_chip.matrix_unit is not None:
        flops = flops * tile_padding(hw, op)
    if f_memory != 1.0:
        nbytes = nbytes * f_memory
    if with_half and curve.compute_half_flops and flops > 0:
        flops = flops + curve.compute_half_flops * f_overhead
    if with_half and curve.memory_half_bytes and nbytes > 0:
        nbytes = nbytes + curve.memory_half_bytes * f_overhead
    compute_s = flops / (peak_flops_per_s(hw, op) * curve.compute_fraction)
    memory_s = nbytes / (hw.bandwidth_bytes_per_s * curve.memory_fraction)
    return compute_s, memory_s


def tile_padding(hw: HardwareProfile, op: Op) -> float:
    """Padded over real FLOPs of a GEMM on a weight-stationary systolic unit (TPU MXU): the
    weight tile k x n is rounded up to multiples of the unit's size, while the m rows stream
    through the array (their rounding to 8 sublanes only matters for a few rows, where the
    GEMM is memory-bound: ignored); 1 for every other op and on devices without a unit.
    Constant per op (k and n are the weights'), so the compiled step model folds it."""
    unit = hw.on_chip.matrix_unit
    if unit is None or op.kernel is None or op.kernel[0] != "gemm":
        return 1.0
    factor = 1.0
    for dim in ("n", "k"):
        x = float(np.max(op.kernel[1][dim]))
        if x > 0:
            factor *= math.ceil(x / unit.size) * unit.size / x
    return factor


def _floats(x) -> np.ndarray:
    """``x`` as float64: a numpy scalar stays a scalar (cheaper than a 0-d array)."""
    if isinstance(x, np.ndarray):
        return x if x.dtype == np.float64 else x.astype(float)
    return np.float64(x)


def time_op(
    hw: HardwareProfile, op: Op, *, corrected: bool = True, rung: str = "datasheet"
) -> OpTime:
    """Roofline x efficiency time of one execution of ``op`` (module docstring), with a
    calibrated profile's per-group corrections (:mod:`hwsim.perf.corrections`; ``corrected``
    False: the fitted curves alone); a correction never takes a side past its peak.
    ``rung``: the ladder's name for the result (:mod:`hwsim.perf.ladder`). An op whose sizes
    are single numbers is priced in Python floats (the same operations, the same results)."""
    if op.op_class == "communication":
        return _time_collective(hw, op)
    curve = hw.efficiency.for_class(op.op_class)
    factors = side_factors(hw, op) if corrected else NO_CORRECTION
    compute_s, memory_s = efficiency_times_s(hw, op, factors=factors)
    time_s = overlapped_s(compute_s, memory_s, curve.overlap)
    if curve.launch_overhead_s:
        time_s = time_s + op.kernels * curve.launch_overhead_s * factors[2]
    if type(compute_s) is float:
        return OpTime(op, time_s, compute_s, memory_s, int(compute_s < memory_s), rung)
    bound = np.less(compute_s, memory_s).view(np.int8)  # 0 compute (C >= M), 1 memory
    return OpTime(op, time_s, compute_s, memory_s, bound, rung)


def _collective_s(hw: HardwareProfile, op: Op, ideal: bool = False) -> np.ndarray:
    """NCCL's cost-model time of a collective (:mod:`hwsim.perf.collectives`); ``ideal``: the
    ring's bytes per link at the full link rate and no latency."""
    model = collective_model(hw, op.collective or "p2p", op.ranks)
    if ideal:
        return model.ideal_seconds(op.comm_bytes)
    return model.seconds_array(op.comm_bytes)


def _time_collective(hw: HardwareProfile, op: Op) -> OpTime:
    time_s = _collective_s(hw, op)
    if op.meta.get("custom_all_reduce"):  # an engine's kernel where it applies and is faster
        time_s = np.fmin(time_s, custom_all_reduce_s(hw, op.ranks, op.comm_bytes))
    zero = np.zeros_like(time_s)
    return OpTime(op, time_s, zero, zero, np.full(np.shape(time_s), 2))


def peak_times_s(hw: HardwareProfile, op: Op) -> tuple[Seconds, Seconds]:
    """(F / peak, B / bandwidth) seconds: the two sides of the bare roofline."""
    if _is_scalar(op.flops) and _is_scalar(op.hbm_bytes):
        return (
            float(op.flops) / peak_flops_per_s(hw, op),
            float(op.hbm_bytes) / hw.bandwidth_bytes_per_s,
        )
    compute = np.asarray(op.flops, dtype=float) / peak_flops_per_s(hw, op)
    memory = np.asarray(op.hbm_bytes, dtype=float) / hw.bandwidth_bytes_per_s
    return compute, memory


def roofline_floor_s(hw: HardwareProfile, op: Op) -> Seconds:
    """Speed of light for an op: peak rates, no efficiency, no overhead (for a collective:
    the ring's bytes at the full link rate, no latency)."""
    mine = op.__dict__.get("_floor")  # an op is floored by its band and its phase's: once
    if mine is not None and mine[0] is hw:
        return mine[1]
    floor = _floor_s(hw, op)
    op.__dict__["_floor"] = (hw, floor)  # per execution, so Op.times' copies may share it
    return floor


def _floor_s(hw: HardwareProfile, op: Op) -> Seconds:
    """:func:`roofline_floor_s`, computed."""
    if op.op_class == "communication":
        return _collective_s(hw, op, ideal=True)
    compute, memory = peak_times_s(hw, op)
    if type(compute) is float and type(memory) is float and not math.isnan(compute + memory):
        return compute if compute >= memory else memory
    return np.maximum(compute, memory)


def roofline_bound(hw: HardwareProfile, op: Op) -> np.ndarray:
    """'compute', 'memory' (per element, by the bare roofline) or 'communication'."""
    if op.op_class == "communication":
        return np.full(np.shape(op.comm_bytes), "communication")
    compute, memory = peak_times_s(hw, op)
    return np.where(compute >= memory, "compute", "memory")
