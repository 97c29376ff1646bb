"""Calibrate a hardware profile: fit each op class (:mod:`validation.curve`), band its
residuals (:mod:`validation.bands`), raise any peak a measurement beats, and score the new
profile on held-out shapes the fit never saw.

Peaks are only raised, never lowered, and only when a training GEMM (matrix peak) or copy
(bandwidth) beats them: the base profile's number was then wrong.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwsim.errors import HwsimError
from hwsim.perf.bands import calibrated_band
from hwsim.perf.kernels import kernel_op
from hwsim.perf.measured import Measurement, best_per_shape
from hwsim.perf.roofline import time_op
from hwsim.profiles.hardware import HardwareProfile
from validation.bands import class_bands, error_summary, quantiles
from validation.curve import fit_class, split

FIT_CLASSES = ("matmul", "attention", "elementwise")


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
            quantiles(cf.corrected),
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
    data.pop("match", None)  # a device maps to its datasheet profile, not to a calibration of it
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
