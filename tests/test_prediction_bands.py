"""Prediction bands: an estimate on a calibrated profile carries p10-p90 latency bands."""

import math

import numpy as np
import pytest

import hwsim
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost, prefill_cost
from hwsim.perf.bands import band_edges_s, op_band_s, scaled_band_s, transfer_band_s
from hwsim.perf.roofline import roofline_floor_s
from hwsim.perf.transfer import band_factors, lodo_factors, phase_groups
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


def test_uncalibrated_profile_reports_the_transfer_band():
    """A datasheet profile: each phase's band is the published whole-model band (serving rows
    against the datasheet rung) times the phase's time, the low edge never below the ops'
    speed of light."""
    est = hwsim.estimate(model="llama-2-7b", hardware="h100-sxm", batch=4, prompt_len=512)
    lo, hi, group = band_factors(phase_groups("datasheet", "prefill"))
    assert group.startswith("serving") and "tpot" not in group and lo < 1 < hi
    d_lo, d_hi, d_group = band_factors(phase_groups("datasheet", "decode"))
    assert "median_tpot" in d_group  # a decode step takes the TPOT rows' band
    lat = est.latency
    assert lat.ttft_high_s == pytest.approx(hi * lat.ttft_s, rel=1e-9)
    assert lat.tpot_high_s == pytest.approx(d_hi * lat.tpot_s, rel=1e-9)
    dep = make_deployment("llama-2-7b", "h100-sxm")
    cost = decode_step_cost(dep, 4, 512 + 64)
    floor = sum(float(roofline_floor_s(dep.hardware, t.op)) * t.op.count for t in cost.op_times)
    low = float(cost.band_s[0])
    assert low == pytest.approx(max(d_lo * float(cost.time_s), floor), rel=1e-9)
    assert "transfer band" in lat.band


@pytest.mark.calibration_only
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


def test_communication_ops_carry_the_published_collective_band():
    """Calibration never measures collectives: they take the transfer band of the published
    all-reduce rows against the datasheet rung (hwsim.perf.transfer); the phase band holds
    every op's band and the published whole-model band of the calibrated rung."""
    hw = calibrated("h100-sxm")
    dep = make_deployment("llama-2-70b", hw, tp=4)
    cost = prefill_cost(dep, 1, 1024)
    comms = [t for t in cost.op_times if t.op.op_class == "communication"]
    assert comms and all(float(t.total_s) > 0 for t in comms)
    lo, hi, group = band_factors(("allreduce/datasheet", "allreduce", "kernel"))
    assert group.startswith("allreduce")
    for t in comms:
        floor = float(roofline_floor_s(hw, t.op)) * t.op.count
        band = op_band_s(hw, t)
        assert float(band[1]) == pytest.approx(hi * float(t.total_s))
        assert float(band[0]) == pytest.approx(max(lo * float(t.total_s), floor))
    low, high = cost.band_s
    assert float(high) >= sum(float(op_band_s(hw, t)[1]) for t in cost.op_times) * (1 - 1e-12)
    w_lo, w_hi, _ = band_factors(phase_groups("calibrated"))
    assert float(high) >= w_hi * float(cost.time_s) * (1 - 1e-12)
    assert float(low) <= min(w_lo * float(cost.time_s), float(cost.time_s))


def test_a_calibrated_op_band_holds_its_residual_and_its_transfer_band():
    hw = calibrated("h100-sxm")
    dep = make_deployment("llama-2-7b", hw)
    cost = decode_step_cost(dep, 8, 2048)
    for t in cost.op_times:
        if t.rung != "calibrated":
            continue
        lo, hi = op_band_s(hw, t)
        cal_lo, cal_hi = band_edges_s(hw, t)
        t_lo, t_hi = transfer_band_s(hw, t, "calibrated")
        l_lo, l_hi = scaled_band_s(hw, t, lodo_factors(t.op.op_class))  # fit moved across GPUs
        lows = (float(cal_lo) * t.op.count, float(t_lo), float(l_lo))
        assert float(lo) == pytest.approx(min(lows))
        assert float(hi) == pytest.approx(max(float(cal_hi) * t.op.count, float(t_hi), float(l_hi)))


def test_band_in_the_table():
    from rich.console import Console

    hw = calibrated("h100-sxm")
    est = hwsim.estimate(model="llama-2-7b", hardware=hw, batch=1, prompt_len=256)
    console = Console(record=True, width=140)
    console.print(est)
    assert "p10-p90" in console.export_text()
