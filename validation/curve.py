"""One op class's efficiency curve fitted to measurements, and cross-validated.

The model is hwsim's own (:func:`hwsim.perf.roofline.time_op`, see ``EfficiencyCurve``)::
    C = (F + F_half) / (peak * compute_fraction)
    M = (B + B_half) / (bandwidth * memory_fraction)
    t = max(C, M) + (1 - overlap) * min(C, M) + kernels * launch_overhead_s

fitted per op class by least squares in log-time space (scipy ``least_squares``, soft-L1
loss, a few starts), with ``compute_fraction`` and ``memory_fraction`` bounded to (0, 1] and
``overlap`` to [0, 1] so the fitted curve never beats the roofline. The five sizes are fitted
as log10; ``overlap`` as itself. One curve per op class cannot tell a bf16 GEMM
from an fp32 one, nor a prefill kernel from a decode kernel, so the time is split in two
(:func:`hwsim.perf.bands.time_parts`): ``work``, the size-proportional part, and ``fixed``, what
F_half, B_half and the launch overhead add (a library's per-call cost: host dispatch, launch,
setup kernels), and each part gets its own log-time offset::

    t = work * exp(b[group] + h[shape factor]) + fixed * exp(a[kernel])

``group`` is '<op name>/<dtype>/<roofline bound>' (e.g. 'gemm/fp32/compute'), ``kernel``
'<op name>/<dtype>/overhead' (e.g. 'gemm/fp8/overhead': fp8 GEMMs pay twice the per-call cost
of bf16 ones on an H100 at the same throughput, which one offset per group could not fit at
small and large shapes at once), and the shape factor 'head_dim=<d>' for compute-bound
attention (:func:`hwsim.perf.bands.shape_factor`), shared by all of the class's groups. One
reference per bound, one kernel's overhead and one head_dim are pinned at 0, which pins the
curve. Every other offset is its kernel's (shared by its dtypes) plus its dtype's deviation,
each shrunk towards 0 (:data:`OFFSET_SHRINK`), so groups of two points do not fit noise.

Also here: the deterministic train / held-out split by a hash of the shape (:func:`split`)
and the 5-fold cross-validation inside the training set (:func:`out_of_fold`) whose
residuals the bands (:mod:`validation.bands`) are made of.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from hwsim.errors import HwsimError
from hwsim.perf.bands import group_key, overhead_key, shape_factor
from hwsim.perf.kernels import kernel_op
from hwsim.perf.measured import Measurement
from hwsim.perf.roofline import overlapped_s, peak_flops_per_s, roofline_bound
from hwsim.profiles.hardware import HardwareProfile

HELDOUT_FRACTION = 0.3
FOLDS = 5
# Parameters: log10 of compute_fraction, memory_fraction, F_half, B_half and launch overhead,
# then overlap itself (not a log: 0 and 1 are both meaningful).
_LOWER = np.array([-3.0, -3.0, 0.0, 0.0, -8.0, 0.0])
_UPPER = np.array([0.0, 0.0, 14.0, 11.0, -1.5, 1.0])
_START_GRID = [(-1.0, -0.05), (-1.0, -0.05), (2.0, 8.0), (2.0, 6.0), (-6.0, -4.0), (0.3, 0.9)]
_OFFSET_BOUND = 4.0  # |log-time offset| of a group: a factor of e^4 ~ 55 either way
LOSS_SCALE = 0.05  # soft-L1 loss: residuals beyond ~5% count linearly, not quadratically
OFFSET_SHRINK = 0.5  # pull of each free offset towards 0 (see fit_curve)
ANALYTIC_JACOBIAN = True  # exact in the offsets (see fit_curve); False: scipy's differences
_FD_STEP = float(np.finfo(float).eps ** 0.5)  # scipy's '2-point' relative step


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
    """The shape factor (:func:`hwsim.perf.bands.shape_factor`, e.g. 'head_dim=64') of a
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
    """(work, fixed) seconds of hwsim's efficiency model (:func:`hwsim.perf.bands.time_parts`):
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


def _offset_layout(p: Points) -> tuple[list[str], list[str], set[str], list[str]]:
    """Which offsets :func:`fit_curve` fits: (references, groups, pinned, free).

    One reference group per bound (offset 0) pins compute_fraction to a compute-bound group
    and memory_fraction to a memory-bound one, and one kernel's overhead pins the curve's fixed
    costs, so the curve alone stays meaningful; every other group, each kernel's shared offset
    ('<op>/*/<part>') and each other shape-factor level is free. bf16 and fp16 run the same
    kernels, fp8 and tf32 may not: only the points can tell."""
    counts = defaultdict(int)
    for g in (*p.groups, *p.overhead_groups):
        counts[g] += 1
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
    groups = sorted({*p.groups, *p.overhead_groups})
    pinned = {*references, *(parent_key(g) for g in references if g not in levels)}
    free = [
        *sorted({parent_key(g) for g in groups} - pinned),
        *(g for g in groups if g not in pinned),
        *(f for f in levels if f not in pinned),
    ]
    return references, groups, pinned, free


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
    references, groups, pinned, free = _offset_layout(p)

    def index(keys) -> np.ndarray:
        return np.array([free.index(g) if g in free else -1 for g in keys] or [-1] * len(p))

    work_index, fixed_index = index(p.groups), index(p.overhead_groups)
    work_parent = index([parent_key(g) for g in p.groups])
    fixed_parent = index([parent_key(g) for g in p.overhead_groups])
    factor_index = index(p.factors)
    n = 6 if fit_overlap else 5

    def part_offsets(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        offsets = np.append(v[n:], 0.0)
        work_offset = offsets[work_parent] + offsets[work_index] + offsets[factor_index]
        return work_offset, offsets[fixed_parent] + offsets[fixed_index]

    def residuals(v: np.ndarray) -> np.ndarray:
        work, fixed = model_parts(v[:n], p)
        fit = _combine(work, fixed, *part_offsets(v)) - p.log_t
        return np.concatenate([fit, shrink * v[n:]])

    lower = np.concatenate([_LOWER[:n], np.full(len(free), -_OFFSET_BOUND)])
    upper = np.concatenate([_UPPER[:n], np.full(len(free), _OFFSET_BOUND)])
    # d(work offset)/d(free offsets) and d(fixed offset)/d(free offsets): 0/1 per point
    work_onehot, fixed_onehot = np.zeros((len(p), len(free))), np.zeros((len(p), len(free)))
    for onehot, columns in (
        (work_onehot, (work_parent, work_index, factor_index)),
        (fixed_onehot, (fixed_parent, fixed_index)),
    ):
        for col in columns:
            rows = np.flatnonzero(col >= 0)
            np.add.at(onehot, (rows, col[rows]), 1.0)
    shrink_rows = np.hstack([np.zeros((len(free), n)), shrink * np.eye(len(free))])

    def jacobian(v: np.ndarray) -> np.ndarray:
        """The residuals' Jacobian: exact in the offsets (log(work e^b + fixed e^a) moves by
        the work's or the fixed part's share of the time), forward differences in the curve's
        n parameters (scipy's '2-point' step), so a step costs n + 1 evaluations of the
        curve instead of one full residual evaluation per parameter."""
        b, a = part_offsets(v)
        work, fixed = model_parts(v[:n], p)
        scaled_work = work * np.exp(b)
        total = scaled_work + fixed * np.exp(a)
        base = np.log(total)
        share = scaled_work / total
        curve = np.empty((len(p), n))
        for k in range(n):
            h = _FD_STEP * max(1.0, abs(v[k]))
            if v[k] + h > upper[k]:
                h = -h
            x = v[:n].copy()
            x[k] += h
            h = x[k] - v[k]
            w, f = model_parts(x, p)
            curve[:, k] = (np.log(w * np.exp(b) + f * np.exp(a)) - base) / h
        offsets = share[:, None] * work_onehot + (1.0 - share)[:, None] * fixed_onehot
        return np.vstack([np.hstack([curve, offsets]), shrink_rows])

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
            residuals,
            x0,
            jac=jacobian if ANALYTIC_JACOBIAN else "2-point",
            bounds=(lower, upper),
            loss="soft_l1",
            f_scale=LOSS_SCALE,
            x_scale="jac",
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
    (what :func:`hwsim.perf.bands.calibrated_band` does without an overhead key)."""
    work, fixed = model_parts(fit.vector, p)
    b = np.array([fit.offsets.get(g, np.nan) for g in p.groups])
    if p.factors:  # a shape factor the fit has not seen: the reference's (the plain group key)
        b = b + np.array([fit.offsets.get(f, 0.0) if f else 0.0 for f in p.factors])
    overheads = p.overhead_groups or (None,) * len(p)
    a = np.array([fit.offsets.get(g, bi) if g else bi for g, bi in zip(overheads, b)])
    return work, fixed, b, a


def predict_log(fit: CurveFit, p: Points) -> np.ndarray:
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
        corrected[test] = held.log_t - predict_log(fit, held)
        raw[test] = held.log_t - model_log_t(fit.vector, held)
    return corrected, raw


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
