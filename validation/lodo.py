"""Leave one device out: fit the efficiency curves on one device's measurements, predict
another's untouched, per op class (issue 10: does the device model transfer?).

    python -m validation.lodo            # both directions on the shipped H100 / H200 results
    python -m validation.lodo --write    # also write hwsim/perf/lodo_bands.json (shipped)

For each direction the fitted device's curves (fractions of peak, half-saturation sizes,
launch costs, overlap; and its residual bands) are put into the predicted device's datasheet
profile, whose peaks and bandwidth stay its own: what hwsim would do for a GPU nobody
measured, given a sibling of the same family that somebody did. The half-saturation sizes
travel as the latencies they stand for (:func:`carried_curves`: B_half scales with the
bandwidth, F_half with the peak), since a sibling with the same memory latency and more
bandwidth needs more bytes in flight to reach it (Little's law). Every shape of the predicted
device is scored (none was used to fit), against two references: its own datasheet profile
(the flat fractions an unmeasured profile carries) and its own calibration (fitted on its
training split, scored on its held-out split). A row's residual is log(measured / predicted).

The transferred residuals of both directions, pooled per op class, are what hwsim ships as the
transfer band of a fitted curve (``hwsim/perf/lodo_bands.json``, read by
:func:`hwsim.perf.transfer.lodo_factors`): a calibrated op's band holds it beside its own fit's
residuals and the published rows' band (:func:`hwsim.perf.bands.op_band_s`), since a profile
calibrated on one machine prices others of its kind.

Both devices ran the same harness (eager PyTorch, validation.suite), so this says how well the
fit transfers between devices under that harness; how far an engine is from the harness is
the published set's question (validation.published_bands).

The report splits attention into prefill and decode kernels and gives median and p90 of
|predicted / measured - 1| per class (:func:`summary`); the shipped band stays per op class.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.perf.bands import calibrated_band
from hwsim.perf.kernels import kernel_op
from hwsim.perf.measured import Measurement, best_per_shape
from hwsim.perf.roofline import time_op
from hwsim.profiles.hardware import OP_CLASSES, HardwareProfile
from hwsim.profiles.loader import load_hardware
from validation.curve import split
from validation.fit import FIT_CLASSES, fit_profile
from validation.results import load

RESULTS = Path(__file__).with_name("results")
# measured device folder -> its datasheet profile
DEVICES = {
    "cuda-nvidia-h100-80gb-hbm3": "h100-sxm",
    "cuda-nvidia-h200": "h200-sxm",
}


def device_rows(folder: str) -> list[Measurement]:
    """The fastest variant of every fitted-class shape measured on one device."""
    measured, _meta = load(RESULTS / folder)
    return [
        r
        for r in best_per_shape(measured.rows)
        if kernel_op(r.kernel, **r.params).op_class in FIT_CLASSES
    ]


def fitted_profile(base: HardwareProfile, rows: list[Measurement], note: str) -> dict:
    """``base``'s profile data with curves and residual bands fitted to ``rows``."""
    data, _reports, _raised = fit_profile(base, rows, note)
    return data


def carried_curves(fitted: HardwareProfile, target: HardwareProfile) -> dict[str, Any]:
    """``fitted``'s efficiency block as ``target`` runs it: fractions, overlap and launch
    overheads as they are; the half-saturation sizes carried as the latencies they stand for.

    A curve's fixed memory cost B_half / (bandwidth x memory_fraction) is a latency: by
    Little's law the bytes a device must keep in flight to reach its bandwidth are latency x
    bandwidth (the bandwidth-delay product), so a sibling with the same memory latency and
    another bandwidth needs B_half scaled by the bandwidth ratio, not the same B_half.
    F_half likewise scales with the peak rate the class runs against (the matrix units' bf16
    rate, or the vector units' fp32 rate for elementwise ops; the default curve as matmul)."""
    data = fitted.model_dump(mode="json", exclude_none=True)["efficiency"]
    bw = target.bandwidth_bytes_per_s / fitted.bandwidth_bytes_per_s
    for cls in ("default", *OP_CLASSES):
        curve = data.get(cls)
        if curve is None:
            continue
        vector = cls == "elementwise"
        peak = (
            target.vector_peak_flops_per_s() / fitted.vector_peak_flops_per_s()
            if vector
            else target.matrix_peak_flops_per_s("bf16") / fitted.matrix_peak_flops_per_s("bf16")
        )
        curve["memory_half_bytes"] = curve.get("memory_half_bytes", 0.0) * bw
        curve["compute_half_flops"] = curve.get("compute_half_flops", 0.0) * peak
    return data


def transplant(fitted: dict, target: HardwareProfile, note: str) -> HardwareProfile:
    """``target``'s datasheet profile carrying ``fitted``'s curves (:func:`carried_curves`)
    and residual bands."""
    data = target.model_dump(mode="json", exclude_none=True)
    data["efficiency"] = carried_curves(HardwareProfile.model_validate(fitted), target)
    data["calibration"] = {**fitted["calibration"], "calibrated_from": note}
    data["id"] = f"{target.id}-from-{note}"
    return HardwareProfile.model_validate(data)


REPORT_CLASSES = (
    "all",
    "matmul",
    "attention",
    "attention prefill",
    "attention decode",
    "elementwise",
)
"""The rows of the report: every shape, each op class, and attention split by phase (a prefill
kernel is compute-bound, a decode kernel reads the KV cache: two regimes one curve prices)."""


def report_class(kernel: str, op_class: str) -> str:
    """'attention prefill' / 'attention decode' for attention (by the kernel measured), else
    the op class."""
    if op_class != "attention":
        return op_class
    return "attention decode" if kernel.startswith("attention_decode") else "attention prefill"


def score(hw: HardwareProfile, rows: list[Measurement], banded: bool) -> list[dict[str, Any]]:
    """Per row: op class, report class (:func:`report_class`), log(measured / predicted), and
    whether the p10-p90 band holds it."""
    out = []
    for r in rows:
        op = kernel_op(r.kernel, **r.params)
        if banded:
            t, lo, hi = (float(v) for v in calibrated_band(hw, op))
            inside: bool | None = lo <= r.median_s <= hi
        else:
            t, inside = float(time_op(hw, op).time_s), None
        out.append(
            {
                "op_class": op.op_class,
                "report_class": report_class(r.kernel, op.op_class),
                "residual": math.log(r.median_s / t),
                "inside": inside,
            }
        )
    return out


def summary(scored: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per report class (:data:`REPORT_CLASSES`, those with rows): rows, median and p90 of
    |error| (|predicted / measured - 1|), p10 / p90 of the log residual, band coverage where a
    band was given."""
    by: dict[str, list] = defaultdict(list)
    for s in scored:
        by["all"].append(s)
        by[s["op_class"]].append(s)
        if s["report_class"] != s["op_class"]:
            by[s["report_class"]].append(s)
    out = {}
    for cls in REPORT_CLASSES:
        items = by.get(cls)
        if not items:
            continue
        res = np.array([s["residual"] for s in items])
        err = np.abs(np.expm1(-res))
        inside = [s["inside"] for s in items if s["inside"] is not None]
        out[cls] = {
            "rows": len(items),
            "median_abs_error": round(float(np.median(err)), 4),
            "p90_abs_error": round(float(np.quantile(err, 0.9)), 4),
            "p10": round(float(np.quantile(res, 0.1)), 4),
            "p90": round(float(np.quantile(res, 0.9)), 4),
            "band_coverage": round(sum(inside) / len(inside), 3) if inside else None,
        }
    return out


def direction(fit_on: str, predict: str) -> dict[str, Any]:
    """Fit on device folder ``fit_on``, predict ``predict``; with both references."""
    fit_rows, target_rows = device_rows(fit_on), device_rows(predict)
    fit_base, target = load_hardware(DEVICES[fit_on]), load_hardware(DEVICES[predict])
    moved = transplant(fitted_profile(fit_base, fit_rows, fit_on), target, DEVICES[fit_on])
    train, heldout = split(target_rows)
    own = HardwareProfile.model_validate(fitted_profile(target, train, predict))
    return {
        "fit_on": fit_on,
        "predict": predict,
        "transferred": summary(score(moved, target_rows, banded=True)),
        "own_datasheet": summary(score(target, target_rows, banded=False)),
        "own_calibration_heldout": summary(score(own, heldout, banded=True)),
        "residuals": score(moved, target_rows, banded=True),
    }


def run() -> list[dict[str, Any]]:
    a, b = DEVICES
    return [direction(a, b), direction(b, a)]


def lodo_table(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per op class, p10 / p50 / p90 of the transferred residuals of every direction
    (plotting positions p (n + 1), as the published bands), and their rows."""
    by: dict[str, list[float]] = defaultdict(list)
    for d in results:
        for r in d["residuals"]:
            by[r["op_class"]].append(r["residual"])
    classes = {}
    for cls, values in sorted(by.items()):
        p10, p50, p90 = np.quantile(values, [0.1, 0.5, 0.9], method="weibull")
        classes[cls] = {
            "p10": round(float(p10), 4),
            "p50": round(float(p50), 4),
            "p90": round(float(p90), 4),
            "rows": len(values),
        }
    return {
        "description": (
            "p10/p50/p90 of log(measured / predicted) when one device's fitted efficiency "
            "curves price another device's measurements (leave one device out, both "
            "directions: "
            + ", ".join(f"{d['fit_on']} -> {d['predict']}" for d in results)
            + "). Written by python -m validation.lodo --write; read by hwsim.perf.transfer."
        ),
        "classes": classes,
    }


def write_shipped(results: list[dict[str, Any]]) -> str:
    from hwsim.perf.transfer import LODO_PATH

    LODO_PATH.write_text(json.dumps(lodo_table(results), indent=1, sort_keys=True) + "\n")
    return str(LODO_PATH)


def print_table(results: list[dict[str, Any]]) -> None:
    """Per direction and report class: median and p90 |error| of the transferred curves (and
    their band coverage), of the predicted device's datasheet profile, and of its own fit on
    its held-out split."""
    for d in results:
        print(f"\nfit on {d['fit_on']}, predict {d['predict']}")
        print("(|error| median / p90, p10-p90 band coverage)")
        print(f"{'op class':<19}{'rows':>5}{'transferred':>15}{'cover':>7}"
              f"{'datasheet':>15}{'own fit':>15}{'cover':>7}")  # fmt: skip
        for cls, t in d["transferred"].items():
            ds = d["own_datasheet"].get(cls, {})
            own = d["own_calibration_heldout"].get(cls, {})
            cover = "-" if t["band_coverage"] is None else f"{t['band_coverage']:.0%}"
            own_cover = own.get("band_coverage")
            own_cover_s = "-" if own_cover is None else f"{own_cover:.0%}"
            print(f"{cls:<19}{t['rows']:>5}{_pair(t):>15}{cover:>7}{_pair(ds):>15}"
                  f"{_pair(own):>15}{own_cover_s:>7}")  # fmt: skip


def _pair(s: dict[str, Any]) -> str:
    """'median / p90' of a summary row's |error|, '-' where it has none."""
    if not s:
        return "-"
    return f"{s['median_abs_error']:.1%} / {s['p90_abs_error']:.1%}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON")
    parser.add_argument(
        "--write", action="store_true", help="write hwsim/perf/lodo_bands.json (shipped)"
    )
    args = parser.parse_args(argv)
    results = run()
    print_table(results)
    if args.write:
        print(f"wrote {write_shipped(results)}")
    if args.json:
        print(json.dumps([{k: v for k, v in d.items() if k != "residuals"} for d in results]))


if __name__ == "__main__":
    main()
