"""Leave one device out (validation.lodo) and the fitted curves' transfer band it ships."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hwsim.perf.bands as bands
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost
from hwsim.perf.bands import op_band_s
from hwsim.perf.kernels import kernel_op
from hwsim.perf.roofline import roofline_floor_s, time_op
from hwsim.perf.transfer import LODO_PATH, lodo_factors
from hwsim.profiles.loader import load_hardware
from validation import lodo


def test_a_transplanted_profile_keeps_its_peaks_and_takes_the_fitted_curves():
    fitted = load_hardware("h100-sxm-calibrated").model_dump(mode="json", exclude_none=True)
    target = load_hardware("h200-sxm")
    moved = lodo.transplant(fitted, target, "h100-sxm")
    assert moved.bandwidth_bytes_per_s == target.bandwidth_bytes_per_s
    assert moved.capacity_bytes == target.capacity_bytes
    assert moved.matrix_peak_flops_per_s("bf16") == target.matrix_peak_flops_per_s("bf16")
    for cls in ("matmul", "attention", "elementwise"):
        got = moved.efficiency.for_class(cls).compute_fraction
        want = load_hardware("h100-sxm-calibrated").efficiency.for_class(cls).compute_fraction
        assert got == want
    assert moved.calibration is not None and moved.calibration.residuals


def test_a_calibrated_op_band_holds_the_lodo_band(monkeypatch):
    """With a (made-up, wide) transfer factor of 0.5x-3x for matmuls, every calibrated
    projection's band reaches 3x its time and down to max(0.5x, its speed of light)."""
    monkeypatch.setattr(bands, "lodo_factors", lambda cls: (0.5, 3.0) if cls == "matmul" else None)
    hw = load_hardware("h100-sxm-calibrated")
    cost = decode_step_cost(make_deployment("llama-3.1-8b", hw), 8, 2000)
    mats = [t for t in cost.op_times if t.op.op_class == "matmul" and t.rung == "calibrated"]
    assert mats
    for t in mats:
        lo, hi = op_band_s(hw, t)
        floor = float(roofline_floor_s(hw, t.op)) * t.op.count
        assert float(hi) >= 3.0 * float(t.total_s) * (1 - 1e-12)
        assert float(lo) <= max(0.5 * float(t.total_s), floor) * (1 + 1e-12)


def test_the_shipped_lodo_file_has_a_band_per_fitted_class():
    table = json.loads(LODO_PATH.read_text())["classes"]
    assert set(table) == {"matmul", "attention", "elementwise"}
    for cls, band in table.items():
        lo, hi = lodo_factors(cls)
        assert lo < 1.0 < hi and band["rows"] >= 50
        assert np.log(lo) <= band["p50"] <= np.log(hi)


@pytest.mark.slow
def test_transfer_beats_the_datasheet_and_the_shipped_file_is_current():
    """Fitting on the H100 and predicting the H200 (never fitted) beats the H200's own
    datasheet fractions; the shipped lodo_bands.json is what the runs give today."""
    results = lodo.run()
    forward = results[0]
    assert forward["predict"] == "cuda-nvidia-h200"
    moved = forward["transferred"]["all"]["median_abs_error"]
    assert moved < forward["own_datasheet"]["all"]["median_abs_error"]
    assert json.loads(LODO_PATH.read_text()) == lodo.lodo_table(results)


def _with_curves(hw, **curves):
    """``hw`` with the given op classes' efficiency curves replaced (fields as dicts)."""
    from hwsim.profiles.hardware import EfficiencyCurve

    update = {cls: EfficiencyCurve(source="test", **c) for cls, c in curves.items()}
    return hw.model_copy(update={"efficiency": hw.efficiency.model_copy(update=update)})


def test_carried_curves_move_the_half_sizes_as_latencies():
    """Hand-computed: an H100 curve with B_half = 1 MB and F_half = 1 GFLOP carried to the
    H200 (4.8 vs 3.35 TB/s; bf16 989.4 vs 989.4 TFLOP/s; fp32 67 vs 66.9 TFLOP/s) has
    B_half = 1e6 x 4.8 / 3.35 = 1.4328e6 bytes, the same 1e6 / (3.35e12 x 0.8) = 0.373 us of
    memory latency; fractions, launch and overlap stay as fitted."""
    curve = dict(
        compute_fraction=0.6,
        memory_fraction=0.8,
        compute_half_flops=1e9,
        memory_half_bytes=1e6,
        launch_overhead_s=3e-6,
        overlap=0.9,
    )
    fitted = _with_curves(load_hardware("h100-sxm"), matmul=curve, elementwise=curve)
    target = load_hardware("h200-sxm")
    carried = lodo.carried_curves(fitted, target)
    mm, ew = carried["matmul"], carried["elementwise"]
    assert mm["memory_half_bytes"] == pytest.approx(1e6 * 4.8 / 3.35, rel=1e-12)
    assert mm["compute_half_flops"] == pytest.approx(1e9, rel=1e-12)  # same bf16 peak
    assert ew["compute_half_flops"] == pytest.approx(1e9 * 67 / 66.9, rel=1e-12)  # fp32 peak
    latency = 1e6 / (3.35e12 * 0.8)
    assert mm["memory_half_bytes"] / (4.8e12 * mm["memory_fraction"]) == pytest.approx(latency)
    for key in ("compute_fraction", "memory_fraction", "launch_overhead_s", "overlap"):
        assert mm[key] == curve[key] and ew[key] == curve[key]


def test_a_memory_bound_op_keeps_its_fitted_latency_on_the_sibling():
    """A memory-bound op on the transplanted profile costs its bytes at the target's bandwidth
    plus the fitted device's latency and launch, in seconds: B / (bw_t mf) + B_half / (bw_f mf)
    + launch."""
    curve = dict(compute_fraction=1.0, memory_fraction=0.9, memory_half_bytes=2e7,
                 launch_overhead_s=2e-6)  # fmt: skip
    h100 = _with_curves(load_hardware("h100-sxm"), elementwise=curve)
    data = h100.model_dump(mode="json", exclude_none=True)
    data["calibration"] = {"calibrated_from": "test", "date": "", "residuals": {}}
    moved = lodo.transplant(data, load_hardware("h200-sxm"), "h100-sxm")
    op = kernel_op("copy", bytes=2**26)  # 64 MiB read, 64 MiB written
    want = 2**27 / (4.8e12 * 0.9) + 2e7 / (3.35e12 * 0.9) + 2e-6
    assert float(time_op(moved, op).time_s) == pytest.approx(want, rel=1e-12)


def test_the_report_splits_attention_by_phase_and_gives_p90():
    rows = [
        {"op_class": "attention", "report_class": "attention prefill", "residual": r,
         "inside": True}
        for r in (0.0, 0.1, -0.2)
    ] + [
        {"op_class": "attention", "report_class": "attention decode", "residual": r,
         "inside": False}
        for r in (0.05, 0.05)
    ]  # fmt: skip
    s = lodo.summary(rows)
    assert list(s) == ["all", "attention", "attention prefill", "attention decode"]
    assert s["attention prefill"]["rows"] == 3 and s["attention decode"]["rows"] == 2
    errs = np.abs(np.expm1(-np.array([0.0, 0.1, -0.2])))  # |predicted / measured - 1|
    assert s["attention prefill"]["median_abs_error"] == round(float(np.median(errs)), 4)
    assert s["attention prefill"]["p90_abs_error"] == round(float(np.quantile(errs, 0.9)), 4)
    assert s["attention"]["band_coverage"] == 0.6
    assert lodo.report_class("attention_decode", "attention") == "attention decode"
    assert lodo.report_class("attention_prefill", "attention") == "attention prefill"
    assert lodo.report_class("gemm", "matmul") == "matmul"
