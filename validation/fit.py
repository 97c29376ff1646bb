"""Fit a hardware profile's efficiency curves to measurements; held-out error; error bands.

The model is hwsim's own (:func:`hwsim.predict.time_op`, see ``EfficiencyCurve``)::

    C = (F + F_half) / (peak * compute_fraction)
    M = (B + B_half) / (bandwidth * memory_fraction)
    t = max(C, M) + (1 - overlap) * min(C, M) + kernels * launch_overhead_s

fitted per op class by least squares in log-time space (scipy ``least_squares``, soft-L1
loss, a few starts), with ``compute_fraction`` and ``memory_fraction`` bounded to (0, 1] and
``overlap`` to [0, 1] so the fitted curve never beats the roofline. The five sizes are fitted
as log10; ``overlap`` as itself. One curve per op class cannot tell a bf16 GEMM
from an fp32 one, nor a prefill kernel from a decode kernel, so the time is split in two
(:func:`hwsim.kernels.time_parts`): ``work``, the size-proportional part, and ``fixed``, what
F_half, B_half and the launch overhead add (a library's per-call cost: host dispatch, launch,
setup kernels), and each part gets its own log-time offset::

    t = work * exp(b[group] + h[shape factor]) + fixed * exp(a[kernel])

``group`` is '<op name>/<dtype>/<roofline bound>' (e.g. 'gemm/fp32/compute'), ``kernel``
'<op name>/<dtype>/overhead' (e.g. 'gemm/fp8/overhead': fp8 GEMMs pay twice the per-call cost
of bf16 ones on an H100 at the same throughput, which one offset per group could not fit at
small and large shapes at once), and the shape factor 'head_dim=<d>' for compute-bound
attention (:func:`hwsim.kernels.shape_factor`), shared by all of the class's groups. One
reference per bound, one kernel's overhead and one head_dim are pinned at 0, which pins the
curve. Every other offset is its kernel's (shared by its dtypes) plus its dtype's deviation,
each shrunk towards 0 (:data:`OFFSET_SHRINK`), so groups of two points do not fit noise.

The offsets and the spread of out-of-fold residuals become the profile's calibration residuals
(``p50`` = the offset plus the residuals' median, ``p10``/``p90`` its band) under the group
keys, '<group>/head_dim=<d>' and the overhead keys, read back by
:func:`hwsim.kernels.residual_band` and :func:`hwsim.kernels.calibrated_band`.

Honesty rules: a deterministic 70/30 split by a hash of the shape keeps a held-out set the
fit never sees; every band comes from 5-fold cross-validation inside the training set (never
in-sample residuals), as predictive quantiles (:func:`_quantiles`), and a group with few
out-of-fold points borrows the spread of its pool (:func:`_pooled_band`), so its coverage on
the held-out set is an honest check. Peaks are only raised, never lowered, and only when a
training GEMM (matrix peak) or copy (bandwidth) beats them: the base profile's number was then
wrong.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.optimize import least_squares

from hwsim.errors import HwsimError
from hwsim.kernels import (
    calibrated_band,
    group_key,
    kernel_op,
    overhead_key,
    roofline_bound,
    shape_factor,
)
from hwsim.measured import Measurement, best_per_shape
from hwsim.predict import overlapped_s, peak_flops_per_s, time_op
from hwsim.profiles.hardware import HardwareProfile

HELDOUT_FRACTION = 0.3
FOLDS = 5
FIT_CLASSES = ("matmul", "attention", "elementwise")
# Parameters: log10 of compute_fraction, memory_fraction, F_half, B_half and launch overhead,
# then overlap itself (not a log: 0 and 1 are both meaningful).
_LOWER = np.array([-3.0, -3.0, 0.0, 0.0, -8.0, 0.0])
_UPPER = np.array([0.0, 0.0, 14.0, 11.0, -1.5, 1.0])
_START_GRID = [(-1.0, -0.05), (-1.0, -0.05), (2.0, 8.0), (2.0, 6.0), (-6.0, -4.0), (0.3, 0.9)]
_OFFSET_BOUND = 4.0  # |log-time offset| of a group: a factor of e^4 ~ 55 either way
LOSS_SCALE = 0.05  # soft-L1 loss: residuals beyond ~5% count linearly, not quadratically
OFFSET_SHRINK = 0.5  # pull of each free offset towards 0 (see fit_curve)
BAND_PRIOR_POINTS = 10  # a group's band: its own spread weighted n : 10 against its class's


# -- split -----------------------------------------------------------------------------------
def shape_hash(m: Measurement) -> float:
    """A number in [0, 1) fixed by the kernel and its parameters (not the implementation)."""
    text = "|".join([m.kernel, *(f"{k}={v}" for k, v in sorted(m.params.items()))])
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16**12


def is_heldout(m: Measurement, fraction: float = HELDOUT_FRACTION) -> bool:
    return shape_hash(m) < fraction


def split(rows, fraction: float = HELDOUT_FRACTION) -> tuple[list, list]:
    """(train, held-out): a deterministic split by shape hash, the same on every run."""
    train = [r for r in rows if not is_heldout(r, fraction)]
    return train, [r for r in rows if is_heldout(r, fraction)]


# -- features --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Points:
    """Measurements of one op class as arrays of the model's inputs."""

    rows: tuple[Measurement, ...]
    flops: np.ndarray
    nbytes: np.ndarray
    peak: np.ndarray
    bandwidth: float
    kernels: np.ndarray
    log_t: np.ndarray
    groups: tuple[str, ...]
    overhead_groups: tuple[str, ...] = ()
    factors: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, mask: np.ndarray) -> Points:
        idx = np.flatnonzero(mask)
        return Points(
            tuple(self.rows[i] for i in idx),
            self.flops[idx],
            self.nbytes[idx],
            self.peak[idx],
            self.bandwidth,
            self.kernels[idx],
            self.log_t[idx],
            tuple(self.groups[i] for i in idx),
            tuple(self.overhead_groups[i] for i in idx),
            tuple(self.factors[i] for i in idx),
        )


def group_of(hw: HardwareProfile, m: Measurement) -> str:
    """The group of a measurement, '<op name>/<dtype>/<roofline bound>' (causal prefill has its
    own op name). A dtype's compute rate and its memory traffic need not be off by the same
    factor."""
    op = kernel_op(m.kernel, **m.params)
    return group_key(op, str(roofline_bound(hw, op)))


def factor_of(hw: HardwareProfile, op) -> str:
    """The shape factor (:func:`hwsim.kernels.shape_factor`, e.g. 'head_dim=64') of a
    compute-bound op, else ''. Only compute-bound attention pays the softmax's exponentials
    at a rate that depends on head_dim; memory-bound attention moves bytes."""
    if str(roofline_bound(hw, op)) != "compute":
        return ""
    return shape_factor(op) or ""


def points(hw: HardwareProfile, rows: list[Measurement]) -> Points:
    ops = [kernel_op(r.kernel, **r.params) for r in rows]
    return Points(
        tuple(rows),
        np.array([float(op.flops) for op in ops]),
        np.array([float(op.hbm_bytes) for op in ops]),
        np.array([peak_flops_per_s(hw, op) for op in ops]),
        hw.bandwidth_bytes_per_s,
        np.array([op.kernels for op in ops], dtype=float),
        np.log([r.median_s for r in rows]),
        tuple(group_of(hw, r) for r in rows),
        tuple(overhead_key(op) for op in ops),
        tuple(factor_of(hw, op) for op in ops),
    )


# -- the curve -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurveFit:
    compute_fraction: float
    memory_fraction: float
    compute_half_flops: float
    memory_half_bytes: float
    launch_overhead_s: float
    offsets: dict[str, float]
    reference_groups: tuple[str, ...]
    cost: float
    overlap: float = 1.0

    @property
    def vector(self) -> np.ndarray:
        """The fit's parameter vector: log10 of the five sizes, then overlap."""
        values = (
            self.compute_fraction,
            self.memory_fraction,
            max(self.compute_half_flops, 1.0),
            max(self.memory_half_bytes, 1.0),
            max(self.launch_overhead_s, 1e-8),
        )
        return np.append(np.log10(np.array(values)), min(max(self.overlap, 0.0), 1.0))

    def curve_fields(self) -> dict[str, float]:
        """The ``EfficiencyCurve`` fields of the fit (all but ``source``)."""
        return {k: getattr(self, k) for k in CURVE_FIELDS}


CURVE_FIELDS = (
    "compute_fraction",
    "memory_fraction",
    "compute_half_flops",
    "memory_half_bytes",
    "launch_overhead_s",
    "overlap",
)
"""The fitted ``EfficiencyCurve`` fields, written into the calibrated profile."""


def model_parts(x: np.ndarray, p: Points) -> tuple[np.ndarray, np.ndarray]:
    """(work, fixed) seconds of hwsim's efficiency model (:func:`hwsim.kernels.time_parts`):
    ``work`` the size-proportional time, ``fixed`` what F_half, B_half and the launch overhead
    add to it. ``x`` holds the log10 of the five sizes and then ``overlap`` of compute and memory
    time (1: the roofline's max(C, M); 0: C + M, no overlap at all); without a sixth entry
    overlap is 1."""
    cf, mf, f_half, b_half, launch = 10.0 ** np.asarray(x[:5])
    overlap = float(x[5]) if len(x) > 5 else 1.0
    compute, memory = p.flops / (p.peak * cf), p.nbytes / (p.bandwidth * mf)
    work = overlapped_s(compute, memory, overlap)
    total = overlapped_s(
        compute + f_half * (p.flops > 0) / (p.peak * cf),
        memory + b_half * (p.nbytes > 0) / (p.bandwidth * mf),
        overlap,
    )
    return work, total - work + p.kernels * launch


def model_log_t(x: np.ndarray, p: Points) -> np.ndarray:
    """log seconds of hwsim's efficiency model (the curve alone, no group offsets)."""
    work, fixed = model_parts(x, p)
    return np.log(work + fixed)


def _combine(work, fixed, work_offset, fixed_offset) -> np.ndarray:
    """log(work e^b + fixed e^a): each part of the time scaled by its own group offset."""
    return np.log(work * np.exp(work_offset) + fixed * np.exp(fixed_offset))


def parent_key(group: str) -> str:
    """'<op>/<dtype>/<part>' -> '<op>/*/<part>': the offset a kernel's dtypes share."""
    name, _dtype, part = group.split("/")
    return f"{name}/*/{part}"


def _reference(counts: dict[str, int], candidates: list[str]) -> str:
    return max(candidates, key=lambda g: (counts[g], "/bf16/" in g, g))


def fit_curve(
    p: Points,
    starts: list[np.ndarray] | None = None,
    offsets_start: dict[str, float] | None = None,
    fit_overlap: bool = True,
    shrink: float | None = None,
) -> CurveFit:
    """Least squares in log time: one curve for the class, a log offset per group on the
    size-proportional part of the time and one per kernel ('<op>/<dtype>/overhead') on its fixed
    per-call part, plus one per shape factor level (e.g. 'head_dim=64', see :func:`factor_of`)
    shared by the groups of the class; ``fit_overlap=False`` pins overlap to 1 (the plain
    roofline max).

    A group's offset is its kernel's ('<op>/*/<part>', shared by the kernel's dtypes) plus the
    dtype's deviation from it. Every free offset also pays ``shrink * offset`` as a residual: a
    prior that a dtype behaves like its kernel's other dtypes, and a kernel like the reference,
    until the points say otherwise, so a group of two points, or an overhead no point is small
    enough to see, stays near its prior instead of fitting noise. ``offsets`` of the result
    holds each group's whole offset and each kernel's and shape factor's."""
    if len(p) < 3:
        raise HwsimError(f"need at least 3 measurements to fit a curve, got {len(p)}")
    shrink = OFFSET_SHRINK if shrink is None else shrink
    counts = defaultdict(int)
    for g in (*p.groups, *p.overhead_groups):
        counts[g] += 1
    # One reference group per bound (offset 0) pins compute_fraction to a compute-bound group
    # and memory_fraction to a memory-bound one, and one kernel's overhead pins the curve's
    # fixed costs, so the curve alone stays meaningful.
    references = []
    for bound in ("compute", "memory"):
        mine = [g for g in sorted(set(p.groups)) if g.endswith("/" + bound)]
        if mine:
            references.append(_reference(counts, mine))
    if p.overhead_groups:
        references.append(_reference(counts, sorted(set(p.overhead_groups))))
    levels = sorted({f for f in p.factors if f})
    for f in p.factors:
        counts[f] += 1
    if levels:
        references.append(_reference(counts, levels))
    # bf16 and fp16 run the same kernels, fp8 and tf32 may not: only the points can tell.
    groups = sorted({*p.groups, *p.overhead_groups})
    pinned = {*references, *(parent_key(g) for g in references if g not in levels)}
    free = [
        *sorted({parent_key(g) for g in groups} - pinned),
        *(g for g in groups if g not in pinned),
        *(f for f in levels if f not in pinned),
    ]

    def index(keys) -> np.ndarray:
        return np.array([free.index(g) if g in free else -1 for g in keys] or [-1] * len(p))

    work_index, fixed_index = index(p.groups), index(p.overhead_groups)
    work_parent = index([parent_key(g) for g in p.groups])
    fixed_parent = index([parent_key(g) for g in p.overhead_groups])
    factor_index = index(p.factors)
    n = 6 if fit_overlap else 5

    def residuals(v: np.ndarray) -> np.ndarray:
        offsets = np.append(v[n:], 0.0)
        work, fixed = model_parts(v[:n], p)
        work_offset = offsets[work_parent] + offsets[work_index] + offsets[factor_index]
        fixed_offset = offsets[fixed_parent] + offsets[fixed_index]
        fit = _combine(work, fixed, work_offset, fixed_offset) - p.log_t
        return np.concatenate([fit, shrink * v[n:]])

    lower = np.concatenate([_LOWER[:n], np.full(len(free), -_OFFSET_BOUND)])
    upper = np.concatenate([_UPPER[:n], np.full(len(free), _OFFSET_BOUND)])
    if starts is None:
        starts = [np.array(s) for s in itertools.product(*_START_GRID[:n])]
    known = offsets_start or {}
    off0 = [
        known.get(g, 0.0) - (known.get(parent_key(g), 0.0) if g in groups else 0.0) for g in free
    ]
    best = None
    for start in starts:
        x0 = np.clip(np.concatenate([start[:n], off0]), lower + 1e-9, upper - 1e-9)
        sol = least_squares(
            residuals, x0, bounds=(lower, upper), loss="soft_l1", f_scale=LOSS_SCALE, x_scale="jac"
        )
        if best is None or sol.cost < best.cost:
            best = sol
    x = best.x
    values = {**dict.fromkeys(pinned, 0.0), **{g: float(x[n + i]) for i, g in enumerate(free)}}
    # offsets: each group's whole offset (kernel + dtype), the kernels' and the shape factors'
    offsets = {
        **{g: values[g] + values[parent_key(g)] for g in groups},
        **{k: v for k, v in values.items() if k not in groups},
    }
    cf, mf, f_half, b_half, launch = (float(v) for v in 10.0 ** x[:5])
    overlap = float(np.clip(x[5], 0.0, 1.0)) if fit_overlap else 1.0
    return CurveFit(
        min(cf, 1.0),
        min(mf, 1.0),
        f_half,
        b_half,
        launch,
        offsets,
        tuple(references),
        float(best.cost),
        overlap,
    )


def _parts_offsets(fit: CurveFit, p: Points) -> tuple[np.ndarray, ...]:
    """(work, fixed, work offset, fixed offset) per point: NaN offset for a group the fit has
    not seen; a kernel whose overhead it has not seen scales both parts by the group offset
    (what :func:`hwsim.kernels.calibrated_band` does without an overhead key)."""
    work, fixed = model_parts(fit.vector, p)
    b = np.array([fit.offsets.get(g, np.nan) for g in p.groups])
    if p.factors:  # a shape factor the fit has not seen: the reference's (the plain group key)
        b = b + np.array([fit.offsets.get(f, 0.0) if f else 0.0 for f in p.factors])
    overheads = p.overhead_groups or (None,) * len(p)
    a = np.array([fit.offsets.get(g, bi) if g else bi for g, bi in zip(overheads, b)])
    return work, fixed, b, a


def _predict_log(fit: CurveFit, p: Points) -> np.ndarray:
    return _combine(*_parts_offsets(fit, p))


def overhead_share(fit: CurveFit, p: Points) -> np.ndarray:
    """The fixed per-call part's share of each point's predicted time, in [0, 1]."""
    work, fixed, b, a = _parts_offsets(fit, p)
    scaled = fixed * np.exp(np.nan_to_num(a))
    return scaled / (work * np.exp(np.nan_to_num(b)) + scaled)


def out_of_fold(
    p: Points, full: CurveFit, folds: int = FOLDS, fit_overlap: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-validated residuals (measured - predicted, log) of every training point:
    corrected (with the group offsets) and raw (the curve alone)."""
    order = np.argsort([shape_hash(r) for r in p.rows])
    fold = np.empty(len(p), dtype=int)
    fold[order] = np.arange(len(p)) % folds
    corrected, raw = np.full(len(p), np.nan), np.full(len(p), np.nan)
    for k in range(folds):
        test = fold == k
        train = p.subset(~test)
        if len(train) < 3 or not test.any():
            continue
        fit = fit_curve(
            train, starts=[full.vector], offsets_start=full.offsets, fit_overlap=fit_overlap
        )
        held = p.subset(test)
        corrected[test] = held.log_t - _predict_log(fit, held)
        raw[test] = held.log_t - model_log_t(fit.vector, held)
    return corrected, raw


# -- calibration -----------------------------------------------------------------------------
@dataclass
class ClassReport:
    op_class: str
    n_train: int
    n_heldout: int
    curve: dict[str, float]
    offsets: dict[str, float]
    band_log: tuple[float, float, float]
    heldout: dict[str, float] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)


@dataclass
class Calibrated:
    profile: HardwareProfile
    classes: dict[str, ClassReport]
    overall: dict[str, float]
    baseline_overall: dict[str, float]
    raised: list[str]
    heldout_rows: list[dict[str, Any]]


ROOF_KERNELS = {"gemm": "matrix", "copy": "bandwidth"}
"""The kernels allowed to move a roof: big GEMMs the matrix peaks, streaming copies the memory
bandwidth (STREAM-style). Other kernels can sit above a roof through cache reuse."""


def raise_peaks(hw: HardwareProfile, rows: list[Measurement], note: str) -> tuple[dict, list[str]]:
    """The base profile as a dict, with any peak a GEMM or copy beats raised to that
    measurement (a bound the device beats is wrong); and a line per raised peak."""
    data = hw.model_dump(mode="python", exclude_none=True)
    raised = []
    best_matrix: dict[str, float] = {}
    best_bw = 0.0
    for r in rows:
        op = kernel_op(r.kernel, **r.params)
        if ROOF_KERNELS.get(r.kernel) == "bandwidth":
            best_bw = max(best_bw, float(op.hbm_bytes) / r.median_s)
        elif ROOF_KERNELS.get(r.kernel) == "matrix":
            rate = float(op.flops) / r.median_s
            best_matrix[op.compute_dtype] = max(best_matrix.get(op.compute_dtype, 0.0), rate)
    for dtype, rate in sorted(best_matrix.items()):
        old = hw.matrix_peak_flops_per_s(dtype)
        if rate > old:
            source = (
                f"measured ({note}): a {dtype} GEMM reached {rate / 1e12:.4g} TFLOP/s, above the "
                f"base profile's {old / 1e12:.4g} TFLOP/s, so the peak is raised to it"
            )
            data["matrix_flops_per_s"][dtype] = {"value": rate, "source": source}
            raised.append(f"matrix {dtype}: {old / 1e12:.4g} -> {rate / 1e12:.4g} TFLOP/s")
    if best_bw > hw.bandwidth_bytes_per_s:
        old = hw.bandwidth_bytes_per_s
        source = (
            f"measured ({note}): a copy moved {best_bw / 1e9:.4g} GB/s, above the base "
            f"profile's {old / 1e9:.4g} GB/s, so the bandwidth is raised to it"
        )
        data["memory"]["bandwidth_bytes_per_s"] = {"value": best_bw, "source": source}
        raised.append(f"memory bandwidth: {old / 1e9:.4g} -> {best_bw / 1e9:.4g} GB/s")
    return data, raised


def _quantiles(values: np.ndarray) -> tuple[float, float, float]:
    """p10, p50, p90 of ``values`` as predictive quantiles: the Weibull plotting position
    p (n + 1), so the p10-p90 range of n points covers a new point from the same spread 80% of
    the time on average (numpy's default interpolation covers only (n - 1) / (n + 1) * 80%,
    e.g. 65% with ten points)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0.0, 0.0, 0.0
    if v.size < 3:
        return float(v.min()), float(np.median(v)), float(v.max())
    q10, q50, q90 = np.percentile(v, [10, 50, 90], method="weibull")
    return float(q10), float(q50), float(q90)


def _mad(v: np.ndarray) -> float:
    return float(np.median(np.abs(v - np.median(v))))


def _pooled_band(mine: np.ndarray, pool: np.ndarray) -> tuple[float, float, float]:
    """A group's residual (p10, p50, p90): the class pool's p10-p90 spread around its median,
    moved to the group's median and scaled by the group's robust spread (median absolute
    deviation) against the pool's, both shrunk towards the pool with weight n : n +
    :data:`BAND_PRIOR_POINTS`. Three points do not make a band, nor does one outlier in eight
    (the plain p90 of eight points is their maximum)."""
    mine, pool = mine[np.isfinite(mine)], pool[np.isfinite(pool)]
    q10, center, q90 = _quantiles(pool)
    n = mine.size
    w = n / (n + BAND_PRIOR_POINTS)
    loc = w * float(np.median(mine)) + (1 - w) * center if n else center
    scale = 1.0
    if n >= 3 and _mad(pool) > 0:
        scale = float(np.exp(w * np.log(max(_mad(mine), 1e-6) / _mad(pool))))
    return loc - (center - q10) * scale, loc, loc + (q90 - center) * scale


def error_summary(errors: list[float], inside: list[bool] | None = None) -> dict[str, float]:
    e = np.asarray(errors, dtype=float)
    out = {"n": int(e.size)}
    if e.size:
        out["median_abs_error"] = float(np.median(e))
        out["p90_abs_error"] = float(np.percentile(e, 90))
    if inside is not None and len(inside):
        out["band_coverage"] = float(np.mean(inside))
    return out


@dataclass(frozen=True)
class ClassFit:
    """One op class fitted: the curve, its points, their out-of-fold residuals (with the
    group offsets, and of the curve alone) and which of them the fixed per-call part of the
    time dominates (by the full fit)."""

    op_class: str
    fit: CurveFit
    points: Points
    corrected: np.ndarray
    raw: np.ndarray
    overhead_bound: np.ndarray

    @property
    def overhead_residuals(self) -> np.ndarray:
        return self.corrected[self.overhead_bound & np.isfinite(self.corrected)]


def fit_class(hw: HardwareProfile, rows: list[Measurement]) -> ClassFit:
    """Fit one op class and cross-validate it (:func:`out_of_fold`)."""
    p = points(hw, rows)
    fit = fit_curve(p)
    corrected, raw = out_of_fold(p, fit)
    op_class = kernel_op(rows[0].kernel, **rows[0].params).op_class
    return ClassFit(op_class, fit, p, corrected, raw, overhead_share(fit, p) >= 0.5)


def class_bands(cf: ClassFit, overhead_pool: np.ndarray) -> dict[str, dict]:
    """Residual bands by key from out-of-fold residuals only.

    Each point counts towards the band of the part of its time that dominates it: the group's
    key when the size-proportional part does, the kernel's overhead key when the fixed
    per-call part does. The two scatter differently (achieved bandwidth or FLOP rate against
    host dispatch jitter), so each borrows from its own pool: the class's size-dominated
    points, and ``overhead_pool``, the overhead-dominated points of every class (dispatch
    jitter is the host's and the framework's, not the op class's). A pool of fewer than
    :data:`BAND_PRIOR_POINTS` falls back to all the class's points."""
    fit, p, corrected, raw = cf.fit, cf.points, cf.corrected, cf.raw
    ok = np.isfinite(corrected)
    work_regime, overhead_regime = ~cf.overhead_bound, cf.overhead_bound
    work_pool = corrected[work_regime & ok]
    pools = {
        "work": work_pool if work_pool.size >= BAND_PRIOR_POINTS else corrected[ok],
        "overhead": overhead_pool if overhead_pool.size >= BAND_PRIOR_POINTS else corrected[ok],
    }
    combos = tuple(f"{g}/{f}" if f else g for g, f in zip(p.groups, p.factors))
    offset_of = {g: fit.offsets.get(g, 0.0) for g in (*p.groups, *p.overhead_groups)}
    for combo, g, f in zip(combos, p.groups, p.factors):
        offset_of[combo] = fit.offsets.get(g, 0.0) + (fit.offsets.get(f, 0.0) if f else 0.0)
    residuals: dict[str, dict] = {}
    for keys, regime, pool in (
        (p.groups, work_regime, pools["work"]),
        (combos, work_regime, pools["work"]),
        (p.overhead_groups, overhead_regime, pools["overhead"]),
    ):
        keys = np.array(keys)
        for g in sorted(set(keys) - set(residuals)):
            mine = corrected[(keys == g) & regime & ok]
            a, b, c = _pooled_band(mine, pool)
            off = offset_of[g]
            residuals[g] = {
                "p10": off + a,
                "p50": off + b,
                "p90": off + c,
                # the group's own points; none: the band is its pool's
                "n_points": int(mine.size or pool.size or 1),
            }
    # Coarser keys, for ops the groups do not cover: the curve alone, no group offset.
    coarse = defaultdict(list)
    for g, r in zip(p.groups, raw):
        name, dtype, _bound = g.split("/")
        coarse[f"{name}/{dtype}"].append(r)
        coarse[f"{cf.op_class}/{dtype}"].append(r)
    for key, values in coarse.items():
        a, b, c = _quantiles(np.array(values))
        residuals[key] = {"p10": a, "p50": b, "p90": c, "n_points": len(values)}
    a, b, c = _quantiles(raw)
    residuals[cf.op_class] = {"p10": a, "p50": b, "p90": c, "n_points": max(int(ok.sum()), 1)}
    return residuals


def fit_profile(
    base: HardwareProfile, train: list[Measurement], note: str
) -> tuple[dict, dict[str, ClassReport], list[str]]:
    """Fit ``base`` to ``train``: (profile data with fitted curves and residuals, reports,
    raised peaks). The calibration block has only ``residuals``; the caller adds the rest."""
    data, raised = raise_peaks(base, train, note)
    hw = HardwareProfile.model_validate(data)
    fits = []
    for op_class in FIT_CLASSES:
        cls_train = [r for r in train if kernel_op(r.kernel, **r.params).op_class == op_class]
        if len(cls_train) >= 3:
            fits.append(fit_class(hw, cls_train))
    overhead_pool = np.concatenate([cf.overhead_residuals for cf in fits] or [np.zeros(0)])
    residuals: dict[str, dict] = {}
    reports: dict[str, ClassReport] = {}
    for cf in fits:
        residuals.update(class_bands(cf, overhead_pool))
        data["efficiency"][cf.op_class] = {
            **cf.fit.curve_fields(),
            "source": f"fitted ({note}): least squares in log time on {len(cf.points)} "
            "training shapes",
        }
        reports[cf.op_class] = ClassReport(
            cf.op_class,
            len(cf.points),
            0,
            cf.fit.curve_fields(),
            cf.fit.offsets,
            _quantiles(cf.corrected),
        )
    data["calibration"] = {"calibrated_from": note, "date": "", "residuals": residuals}
    return data, reports, raised


def calibrate(
    base: HardwareProfile,
    measurements: list[Measurement],
    *,
    profile_id: str,
    calibrated_from: str,
    device_name: str | None = None,
    date: str | None = None,
) -> Calibrated:
    """Fit ``base`` to ``measurements`` (the fastest variant of each shape); a new profile."""
    date = date or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    rows = [
        r
        for r in best_per_shape(measurements)
        if kernel_op(r.kernel, **r.params).op_class in FIT_CLASSES
    ]
    train, heldout = split(rows)
    if not train or not heldout:
        raise HwsimError(f"too few measurements to split into train and held-out ({len(rows)})")
    note = f"hwsim calibrate, {date[:10]}, {device_name or calibrated_from}"
    data, reports, raised = fit_profile(base, train, note)
    if not reports:
        raise HwsimError("no op class had the 3 training measurements a fit needs")
    data["calibration"].update(calibrated_from=calibrated_from, date=date, device_name=device_name)
    data["id"], data["name"] = profile_id, f"{base.name} (calibrated: {device_name or 'measured'})"
    profile = HardwareProfile.model_validate(data)
    table, overall, baseline_overall = evaluate(profile, base, heldout, reports)
    data["calibration"].update(
        heldout_median_abs_error=overall.get("median_abs_error"),
        heldout_p90_abs_error=overall.get("p90_abs_error"),
        heldout_band_coverage=overall.get("band_coverage"),
    )
    data["notes"] = _notes(base, reports, overall, raised)
    return Calibrated(
        HardwareProfile.model_validate(data), reports, overall, baseline_overall, raised, table
    )


def evaluate(profile, base, heldout, reports):
    """Held-out errors and band coverage of ``profile`` and, for contrast, of ``base``."""
    per_class: dict[str, tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
    table = []
    for r in heldout:
        op = kernel_op(r.kernel, **r.params)
        if op.op_class not in reports:
            continue
        t, lo, hi = (float(v) for v in calibrated_band(profile, op))
        t_base = float(time_op(base, op).time_s)
        err, err_base = abs(t - r.median_s) / r.median_s, abs(t_base - r.median_s) / r.median_s
        inside = lo <= r.median_s <= hi
        errs, inside_list, base_errs = per_class[op.op_class]
        errs.append(err)
        inside_list.append(inside)
        base_errs.append(err_base)
        table.append(
            {
                "kernel": r.kernel,
                "variant": r.variant,
                "params": r.params,
                "measured_s": r.median_s,
                "predicted_s": t,
                "low_s": lo,
                "high_s": hi,
                "error": err,
                "inside_band": inside,
                "uncalibrated_s": t_base,
            }
        )
    all_err, all_in, all_base = [], [], []
    for op_class, (errs, inside_list, base_errs) in per_class.items():
        reports[op_class].n_heldout = len(errs)
        reports[op_class].heldout = error_summary(errs, inside_list)
        reports[op_class].baseline = error_summary(base_errs)
        all_err += errs
        all_in += inside_list
        all_base += base_errs
    return table, error_summary(all_err, all_in), error_summary(all_base)


def _notes(base, reports, overall, raised) -> str:
    parts = [f"Calibrated from base profile {base.id!r}."]
    for c, rep in reports.items():
        h = rep.heldout
        if h.get("n"):
            parts.append(
                f"{c}: {rep.n_train} train / {h['n']} held-out shapes, held-out median |error| "
                f"{h['median_abs_error']:.1%}, p90 {h['p90_abs_error']:.1%}, "
                f"p10-p90 band covers {h.get('band_coverage', float('nan')):.0%}."
            )
    if overall.get("n"):
        parts.append(
            f"Overall held-out median {overall['median_abs_error']:.1%}, p90 "
            f"{overall['p90_abs_error']:.1%}, band coverage {overall['band_coverage']:.0%}."
        )
    if raised:
        parts.append("Raised peaks: " + "; ".join(raised) + ".")
    return " ".join(parts)


# -- writing ---------------------------------------------------------------------------------
def shipped_profile_paths() -> set[Path]:
    from hwsim.profiles.loader import shipped_dir

    out = set()
    for folder in {
        shipped_dir("hardware"),
        Path(__file__).resolve().parent.parent / "hardware_profiles",
    }:
        if folder.is_dir():
            out |= {p.resolve() for p in folder.glob("*.y*ml")}
            out.add(folder.resolve())
    return out


def check_writable(path: str | Path, force: bool = False) -> Path:
    """Refuse to overwrite a shipped profile (ever) or an existing file (unless ``force``)."""
    path = Path(path).expanduser()
    resolved = path.resolve()
    shipped = shipped_profile_paths()
    if resolved in shipped or resolved.parent in shipped:
        raise HwsimError(
            f"{path}: refusing to write into the shipped hardware profiles; "
            "choose another --out path"
        )
    if path.suffix not in (".yaml", ".yml"):
        raise HwsimError(f"{path}: the calibrated profile must be a .yaml file")
    if path.exists() and not force:
        raise HwsimError(f"{path} already exists; refusing to overwrite it (pass --force)")
    return path


def write_profile(result: Calibrated, path: str | Path, force: bool = False) -> tuple[Path, Path]:
    """Write the calibrated profile YAML and a JSON report beside it."""
    import json

    path = check_writable(path, force)
    data = result.profile.model_dump(mode="json", exclude_none=True)
    cal = result.profile.calibration
    header = (
        f"# Calibrated hardware profile written by `hwsim calibrate` on {cal.date}\n"
        f"# from {cal.calibrated_from}. Re-run calibrate rather than editing by hand.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, width=100))
    report_path = path.with_suffix(".calibration.json")
    report = {
        "profile": str(path),
        "overall_heldout": result.overall,
        "uncalibrated_overall_heldout": result.baseline_overall,
        "raised_peaks": result.raised,
        "classes": {c: vars(r) for c, r in result.classes.items()},
        "heldout_points": result.heldout_rows,
    }
    report_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path, report_path
