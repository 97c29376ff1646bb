"""Leave one device out (validation.lodo) and the fitted curves' transfer band it ships."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hwsim.perf.bands as bands
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost
from hwsim.perf.bands import op_band_s
from hwsim.perf.roofline import roofline_floor_s
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
