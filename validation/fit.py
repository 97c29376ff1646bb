"""Fit a hardware profile's efficiency curves to measurements; held-out error; error bands.

The model is hwsim's own (:func:`hwsim.predict.time_op`, see ``EfficiencyCurve``)::

    C = (F + F_half) / (peak * compute_fraction)
    M = (B + B_half) / (bandwidth * memory_fraction)
    t = max(C, M) + (1 - overlap) * min(C, M) + kernels * launch_overhead_s

fitted per op class by least squares in log-time space (scipy ``least_squares``, soft-L1
loss, a few starts), with ``compute_fraction`` and ``memory_fraction`` bounded to (0, 1] and
``overlap`` to [0, 1] so the fitted curve never beats the roofline. The five sizes are fitted
as log10; ``overlap`` as itself. One curve per op class cannot tell a bf16 GEMM
from an fp32 one, nor a prefill kernel from a decode kernel, so each group
'<op name>/<dtype>/<roofline bound>' (e.g. 'gemm/fp32/compute') also gets a log-time offset,
except one reference group per bound, which pins the two fractions. The offsets and the spread
of out-of-fold residuals become the profile's calibration residuals (``p50`` = the group's
offset, ``p10``/``p90`` its band), read back by :func:`hwsim.kernels.calibrated_band`.

Honesty rules: a deterministic 70/30 split by a hash of the shape keeps a held-out set the
fit never sees; the band comes from 5-fold cross-validation inside the training set, so its
coverage on the held-out set is an honest check. Peaks are only raised, never lowered, and
only when a training GEMM (matrix peak) or copy (bandwidth) beats them: the base profile's
number was then wrong.
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
from hwsim.kernels import calibrated_band, kernel_op, residual_keys, roofline_bound
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
_OFFSET_BOUND = 4.0
MIN_GROUP_BAND_POINTS = 8  # |log-time offset| of a group: a factor of e^4 ~ 55 either way


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
        )


def group_of(hw: HardwareProfile, m: Measurement) -> str:
    """The residual key of a measurement, '<op name>/<dtype>/<roofline bound>', the most
    specific one :func:`hwsim.kernels.residual_band` looks up (causal prefill has its own
    op name). A dtype's compute rate and its memory traffic need not be off by the same factor."""
    op = kernel_op(m.kernel, **m.params)
    return residual_keys(op, str(roofline_bound(hw, op)))[0]


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


def model_log_t(x: np.ndarray, p: Points) -> np.ndarray:
    """log seconds of hwsim's efficiency model; ``x`` holds the log10 of its five sizes and
    then ``overlap`` of compute and memory time (1: the roofline's max(C, M); 0: C + M, no
    overlap at all); without a sixth entry overlap is 1."""
    cf, mf, f_half, b_half, launch = 10.0 ** np.asarray(x[:5])
    overlap = float(x[5]) if len(x) > 5 else 1.0
    compute = (p.flops + f_half * (p.flops > 0)) / (p.peak * cf)
    memory = (p.nbytes + b_half * (p.nbytes > 0)) / (p.bandwidth * mf)
    return np.log(overlapped_s(compute, memory, overlap) + p.kernels * launch)


def fit_curve(
    p: Points,
    starts: list[np.ndarray] | None = None,
    offsets_start: dict[str, float] | None = None,
    fit_overlap: bool = True,
) -> CurveFit:
    """Least squares in log time: one curve for the class plus an offset per group.
    ``fit_overlap=False`` pins overlap to 1 (the plain roofline max)."""
    if len(p) < 3:
        raise HwsimError(f"need at least 3 measurements to fit a curve, got {len(p)}")
    counts = defaultdict(int)
    for g in p.groups:
        counts[g] += 1
    # One reference group per bound (offset 0) pins compute_fraction to a compute-bound group
    # and memory_fraction to a memory-bound one, so the curve alone stays meaningful.
    references = []
    for bound in ("compute", "memory"):
        mine = [g for g in sorted(counts) if g.endswith("/" + bound)]
        if mine:
            references.append(max(mine, key=lambda g: (counts[g], "/bf16/" in g)))
    others = sorted(g for g in counts if g not in references)
    index = np.array([others.index(g) if g in others else -1 for g in p.groups])
    n = 6 if fit_overlap else 5

    def residuals(v: np.ndarray) -> np.ndarray:
        offsets = np.append(v[n:], 0.0)[index]
        return model_log_t(v[:n], p) + offsets - p.log_t

    lower = np.concatenate([_LOWER[:n], np.full(len(others), -_OFFSET_BOUND)])
    upper = np.concatenate([_UPPER[:n], np.full(len(others), _OFFSET_BOUND)])
    if starts is None:
        starts = [np.array(s) for s in itertools.product(*_START_GRID[:n])]
    best = None
    for start in starts:
        off0 = [(offsets_start or {}).get(g, 0.0) for g in others]
        x0 = np.clip(np.concatenate([start[:n], off0]), lower + 1e-9, upper - 1e-9)
        sol = least_squares(
            residuals, x0, bounds=(lower, upper), loss="soft_l1", f_scale=0.05, x_scale="jac"
        )
        if best is None or sol.cost < best.cost:
            best = sol
    x = best.x
    offsets = {
        **dict.fromkeys(references, 0.0),
        **{g: float(x[n + i]) for i, g in enumerate(others)},
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


def _predict_log(fit: CurveFit, p: Points) -> np.ndarray:
    offsets = np.array([fit.offsets.get(g, np.nan) for g in p.groups])
    return model_log_t(fit.vector, p) + offsets


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
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0.0, 0.0, 0.0
    q10, q50, q90 = np.percentile(v, [10, 50, 90])
    return float(q10), float(q50), float(q90)


def error_summary(errors: list[float], inside: list[bool] | None = None) -> dict[str, float]:
    e = np.asarray(errors, dtype=float)
    out = {"n": int(e.size)}
    if e.size:
        out["median_abs_error"] = float(np.median(e))
        out["p90_abs_error"] = float(np.percentile(e, 90))
    if inside is not None and len(inside):
        out["band_coverage"] = float(np.mean(inside))
    return out


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
    data, raised = raise_peaks(base, train, note)
    hw = HardwareProfile.model_validate(data)
    residuals: dict[str, dict] = {}
    reports: dict[str, ClassReport] = {}
    for op_class in FIT_CLASSES:
        cls_train = [r for r in train if kernel_op(r.kernel, **r.params).op_class == op_class]
        if len(cls_train) < 3:
            continue
        p = points(hw, cls_train)
        fit = fit_curve(p)
        corrected, raw = out_of_fold(p, fit)
        q10, q50, q90 = _quantiles(corrected)
        n = int(np.isfinite(corrected).sum())
        groups = np.array(p.groups)
        for g, off in fit.offsets.items():
            mine = corrected[(groups == g) & np.isfinite(corrected)]
            # A group's own spread once it has enough out-of-fold points, else the class's.
            a, b, c = _quantiles(mine) if mine.size >= MIN_GROUP_BAND_POINTS else (q10, q50, q90)
            residuals[g] = {
                "p10": off + a,
                "p50": off + b,
                "p90": off + c,
                "n_points": int(mine.size) if mine.size >= MIN_GROUP_BAND_POINTS else n,
            }
        # Coarser keys, for ops the groups do not cover: the curve alone, no group offset.
        coarse = defaultdict(list)
        for g, r in zip(p.groups, raw):
            name, dtype, _bound = g.split("/")
            coarse[f"{name}/{dtype}"].append(r)
            coarse[f"{op_class}/{dtype}"].append(r)
        for key, values in coarse.items():
            a, b, c = _quantiles(np.array(values))
            residuals[key] = {"p10": a, "p50": b, "p90": c, "n_points": len(values)}
        a, b, c = _quantiles(raw)
        residuals[op_class] = {"p10": a, "p50": b, "p90": c, "n_points": n}
        data["efficiency"][op_class] = {
            **fit.curve_fields(),
            "source": f"fitted ({note}): least squares in log time on {len(p)} training shapes",
        }
        reports[op_class] = ClassReport(
            op_class, len(p), 0, fit.curve_fields(), fit.offsets, (q10, q50, q90)
        )
    if not reports:
        raise HwsimError("no op class had the 3 training measurements a fit needs")
    data["calibration"] = {
        "calibrated_from": calibrated_from,
        "date": date,
        "device_name": device_name,
        "residuals": residuals,
    }
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
