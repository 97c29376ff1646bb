"""Prediction bands: an estimate on a calibrated profile carries p10-p90 latency bands."""

import math

import numpy as np
import pytest

import hwsim
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import prefill_cost
from hwsim.perf.roofline import roofline_floor_s
from hwsim.profiles.hardware import Calibration, ResidualBand
from hwsim.profiles.loader import load_hardware

LOW, HIGH = 0.9, 1.2


def calibrated(hw_id: str, low: float = LOW, high: float = HIGH):
    """A shipped profile with a synthetic calibration: every op class off by [low, high]."""
    band = ResidualBand(p10=math.log(low), p50=0.0, p90=math.log(high), n_points=20)
    cal = Calibration(
        calibrated_from="synthetic test residuals",
        date="2026-11-26",
        device_name="test device",
        heldout_band_coverage=0.8,
        residuals={c: band for c in ("matmul", "attention", "elementwise")},
    )
    return load_hardware(hw_id).model_copy(update={"calibration": cal})


def test_uncalibrated_profile_reports_no_band():
    est = hwsim.estimate(model="llama-2-7b", hardware="h100-sxm", batch=4, prompt_len=512)
    assert est.latency.ttft_low_s is None and est.latency.tpot_high_s is None
    assert est.latency.band is None


def test_band_scales_each_op_by_its_residual_quantiles():
    hw = calibrated("h100-sxm")
    est = hwsim.estimate(model="llama-2-7b", hardware=hw, batch=4, prompt_len=512, gen_len=64)
    lat = est.latency
    # tp=1: no communication ops, and 0.9x the model stays above every op's roofline floor.
    assert lat.ttft_low_s == pytest.approx(LOW * lat.ttft_s, rel=1e-9)
    assert lat.ttft_high_s == pytest.approx(HIGH * lat.ttft_s, rel=1e-9)
    assert lat.tpot_low_s == pytest.approx(LOW * lat.tpot_s, rel=1e-9)
    assert lat.e2e_high_s == pytest.approx(lat.ttft_high_s + 63 * lat.tpot_high_s, rel=1e-9)
    assert "coverage 80%" in lat.band


def test_band_low_end_never_beats_the_roofline():
    hw = calibrated("h100-sxm", low=0.01, high=1.5)  # an absurdly optimistic p10
    dep = make_deployment("llama-2-7b", hw)
    cost = prefill_cost(dep, 4, 2048)
    floor = sum(np.asarray(roofline_floor_s(hw, t.op)) * t.op.count for t in cost.op_times)
    low, high = cost.band_s
    assert float(low) >= float(floor) * (1 - 1e-12)
    assert float(low) <= float(cost.time_s) <= float(high)


def test_communication_ops_keep_their_point_value():
    hw = calibrated("h100-sxm")
    dep = make_deployment("llama-2-70b", hw, tp=4)
    cost = prefill_cost(dep, 1, 1024)
    comm = sum(t.total_s for t in cost.op_times if t.op.op_class == "communication")
    assert float(comm) > 0
    low, high = cost.band_s
    assert float(high) == pytest.approx(HIGH * (float(cost.time_s) - float(comm)) + float(comm))


def test_band_in_the_table():
    from rich.console import Console

    hw = calibrated("h100-sxm")
    est = hwsim.estimate(model="llama-2-7b", hardware=hw, batch=1, prompt_len=256)
    console = Console(record=True, width=140)
    console.print(est)
    assert "p10-p90" in console.export_text()
