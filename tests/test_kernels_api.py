"""hwsim.perf.kernels: op descriptors, parameter checks, the pricing ladder."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsim.errors import HwsimError, RungRefused
from hwsim.perf.bands import calibrated_band
from hwsim.perf.kernels import KERNELS, kernel_op, kernel_params, register_kernel
from hwsim.perf.ladder import kernel_time
from hwsim.perf.measured import Measurement, MeasurementSet
from hwsim.perf.roofline import time_op
from hwsim.perf.transfer import band_factors
from hwsim.profiles.hardware import Calibration, ResidualBand
from hwsim.profiles.loader import load_hardware

H100 = load_hardware("h100-sxm")


def calibrated(hw, residuals: dict[str, tuple[float, float, float]]):
    bands = {
        k: ResidualBand(p10=a, p50=b, p90=c, n_points=10) for k, (a, b, c) in residuals.items()
    }
    cal = Calibration(calibrated_from="test", date="2026-01-01", residuals=bands)
    return hw.model_copy(update={"calibration": cal})


# -- op descriptors --------------------------------------------------------------------------
def test_gemm_op_counts_flops_and_bytes():
    op = kernel_op("gemm", m=64, n=4096, k=1024, dtype="bf16")
    assert op.flops == 2 * 64 * 4096 * 1024
    assert op.weight_bytes == 4096 * 1024 * 2
    assert op.act_read_bytes == 64 * 1024 * 2
    assert op.act_write_bytes == 64 * 4096 * 2
    assert op.op_class == "matmul" and op.compute_dtype == "bf16"


def test_fp8_gemm_writes_bf16():
    op = kernel_op("gemm", m=16, n=32, k=64, dtype="fp8")
    assert op.act_write_bytes == 16 * 32 * 2 and op.weight_bytes == 32 * 64


def test_attention_prefill_causal_counts_half_the_pairs_plus_diagonal():
    kw = dict(batch=2, heads=8, kv_heads=2, seq_len=1024, head_dim=128, dtype="bf16")
    full = kernel_op("attention_prefill", causal=False, **kw)
    causal = kernel_op("attention_prefill", causal=True, **kw)
    assert full.flops == 4 * 2 * 8 * 128 * 1024 * 1024
    assert causal.flops == pytest.approx(full.flops * (1024 + 1) / (2 * 1024))
    # GQA: K and V have kv_heads heads; Q and O have heads.
    assert full.kv_read_bytes == 2 * 2 * 2 * 1024 * 128 * 2
    assert full.act_read_bytes == full.act_write_bytes == 2 * 8 * 1024 * 128 * 2


def test_attention_decode_reads_the_whole_cache():
    op = kernel_op(
        "attention_decode",
        batch=4,
        heads=32,
        kv_heads=8,
        context_len=8192,
        head_dim=128,
        dtype="bf16",
    )
    assert op.kv_read_bytes == 2 * 4 * 8 * 8192 * 128 * 2
    assert op.flops == 4 * 4 * 32 * 128 * 8192


def test_copy_reads_and_writes_the_buffer():
    op = kernel_op("copy", bytes=2**30)
    assert op.hbm_bytes == 2 * 2**30 and op.flops == 0


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"m": 0, "n": 1, "k": 1}, "positive integer"),
        ({"m": 1.5, "n": 1, "k": 1}, "positive integer"),
        ({"m": 1, "n": 1}, "'k' is required"),
        ({"m": 1, "n": 1, "k": 1, "dtype": "fp7"}, "unknown dtype"),
        ({"m": 1, "n": 1, "k": 1, "q": 3}, "unknown parameter"),
    ],
)
def test_bad_parameters_name_the_field(params, fragment):
    with pytest.raises(HwsimError, match=fragment):
        kernel_params("gemm", params)


def test_unknown_kernel_lists_the_known_ones():
    with pytest.raises(HwsimError, match="allowed: gemm"):
        kernel_op("conv2d", n=1)


def test_gqa_heads_must_divide():
    with pytest.raises(HwsimError, match="multiple of kv_heads"):
        kernel_op("attention_decode", batch=1, heads=6, kv_heads=4, context_len=8, head_dim=64)


def test_duplicate_registration_is_an_error():
    with pytest.raises(RuntimeError, match="registered twice"):
        register_kernel("gemm", axis="m", variant="x")(lambda m: None)
    assert set(KERNELS) >= {"gemm", "attention_prefill", "attention_decode", "copy", "norm"}


# -- the ladder ------------------------------------------------------------------------------
def test_speed_of_light_is_asked_for_by_name():
    t = kernel_time("h100-sxm", "gemm", rung="speed_of_light", m=4096, n=4096, k=4096)
    assert t.rung == "speed_of_light" and t.bound == "compute"
    assert t.time_s == pytest.approx(2 * 4096**3 / 989.4e12)
    assert t.low_s == t.high_s == t.time_s and "a bound" in t.band  # not an estimate
    old_name = kernel_time("h100-sxm", "gemm", rung="roofline", m=4096, n=4096, k=4096)
    assert old_name.rung == "speed_of_light" and old_name.time_s == t.time_s


def test_a_datasheet_profile_prices_with_its_efficiency_block_not_the_speed_of_light():
    t = kernel_time("h100-sxm", "gemm", m=4096, n=4096, k=4096, dtype="bf16")
    assert t.rung == "datasheet" and "calibration" in t.refused["calibrated"]
    curve = load_hardware("h100-sxm").efficiency.for_class("matmul")
    # compute-bound: 2 m n k at the curve's fraction of the 989.4 TFLOP/s dense bf16 peak
    expected = 2 * 4096**3 / (989.4e12 * curve.compute_fraction) + curve.launch_overhead_s
    assert curve.compute_fraction < 1 and t.time_s == pytest.approx(expected)
    # no calibration: the transfer band of published GEMM rows against the datasheet rung
    lo, hi, group = band_factors(("gemm/datasheet", "gemm", "kernel"))
    assert group.startswith("gemm") and lo < 1 < hi
    assert t.high_s == pytest.approx(hi * t.time_s)
    assert t.low_s == pytest.approx(max(lo * t.time_s, 2 * 4096**3 / 989.4e12))
    assert "transfer band" in t.band and group in t.band


def test_copy_speed_of_light_uses_bandwidth():
    t = kernel_time(H100, "copy", rung="speed_of_light", bytes=2**30)
    assert t.bound == "memory"
    assert t.time_s == pytest.approx(2 * 2**30 / 3.35e12)


def _by_hand(hw, op, f_compute: float, f_memory: float, f_overhead: float = 1.0) -> float:
    """hwsim.perf.corrections' formula written out: each side's work times its correction,
    the curve's ramps and launches times the overhead correction."""
    c = hw.efficiency.for_class(op.op_class)
    peak = hw.matrix_peak_flops_per_s(op.compute_dtype)
    compute = (op.flops * f_compute + c.compute_half_flops * f_overhead) / (
        peak * c.compute_fraction
    )
    memory = (op.hbm_bytes * f_memory + c.memory_half_bytes * f_overhead) / (
        hw.bandwidth_bytes_per_s * c.memory_fraction
    )
    shorter = min(compute, memory) * (1 - c.overlap)
    return max(compute, memory) + shorter + op.kernels * c.launch_overhead_s * f_overhead


@pytest.mark.calibration_only
def test_calibrated_rung_applies_the_residual_median_and_band():
    hw = calibrated(H100, {"matmul": (-0.1, 0.05, 0.3)})
    t = kernel_time(hw, "gemm", m=4096, n=4096, k=4096, dtype="bf16")
    op = kernel_op("gemm", m=4096, n=4096, k=4096, dtype="bf16")
    assert t.rung == "calibrated"
    # the point carries the fitted p50 (on both sides: 'matmul' is not split by bound)
    assert t.time_s == pytest.approx(_by_hand(hw, op, math.exp(0.05), math.exp(0.05)), rel=1e-12)
    assert t.time_s > float(time_op(hw, op, corrected=False).time_s)
    # the band is the residuals' spread around that median
    assert t.low_s < t.time_s < t.high_s
    assert t.high_s / t.time_s == pytest.approx(math.exp(0.25))
    assert t.low_s / t.time_s == pytest.approx(math.exp(-0.15))


def test_most_specific_residual_key_wins():
    hw = calibrated(H100, {"matmul": (0, 0, 0), "gemm/bf16": (0.5, 0.6, 0.7)})
    op = kernel_op("gemm", m=512, n=512, k=512, dtype="bf16")
    t, lo, hi = calibrated_band(hw, op)
    op16 = kernel_op("gemm", m=512, n=512, k=512, dtype="fp16")
    t16, _, _ = calibrated_band(hw, op16)
    assert float(t) == pytest.approx(_by_hand(hw, op, math.exp(0.6), math.exp(0.6)), rel=1e-12)
    assert float(t16) == pytest.approx(_by_hand(hw, op16, 1.0, 1.0), rel=1e-12)


def test_a_bound_split_key_corrects_only_its_own_side():
    hw = calibrated(H100, {"matmul": (0, 0, 0), "gemm/bf16/memory": (-0.2, -0.1, 0.0)})
    op = kernel_op("gemm", m=8, n=8192, k=8192, dtype="bf16")  # decode-like: memory-bound
    t = kernel_time(hw, "gemm", m=8, n=8192, k=8192, dtype="bf16")
    assert t.time_s == pytest.approx(_by_hand(hw, op, 1.0, math.exp(-0.1)), rel=1e-12)
    # exp(-0.8) would beat the 0.8 memory fraction's peak: the side stops at B / bandwidth
    fast = calibrated(H100, {"matmul": (0, 0, 0), "gemm/bf16/memory": (-0.9, -0.8, -0.7)})
    t = kernel_time(fast, "gemm", m=8, n=8192, k=8192, dtype="bf16")
    assert t.time_s == pytest.approx(_by_hand(hw, op, 1.0, 0.8), rel=1e-12)


def test_calibrated_rung_never_beats_the_roofline():
    hw = calibrated(H100, {"matmul": (-5.0, -4.0, -3.0)})
    t = kernel_time(hw, "gemm", m=8192, n=8192, k=8192)
    floor = kernel_time(H100, "gemm", rung="speed_of_light", m=8192, n=8192, k=8192).time_s
    launch = H100.efficiency.for_class("matmul").launch_overhead_s
    # a correction of exp(-4) would beat the peak: the compute side stops at F / peak
    assert t.time_s == pytest.approx(floor + launch, rel=1e-12)
    assert t.low_s == pytest.approx(floor)


def test_calibrated_rung_refuses_an_op_class_it_has_no_residuals_for():
    hw = calibrated(H100, {"matmul": (0, 0, 0)})
    t = kernel_time(hw, "copy", bytes=2**20)
    assert t.rung == "datasheet" and "no calibration residuals" in t.refused["calibrated"]
    with pytest.raises(RungRefused):
        kernel_time(hw, "copy", rung="calibrated", bytes=2**20)


def _measured_gemm_set() -> MeasurementSet:
    rows = []
    for m, t in ((16, 1e-4), (64, 2e-4), (256, 8e-4)):
        rows.append(
            Measurement(
                "gemm",
                "torch.mm",
                {"m": m, "n": 1024, "k": 1024, "dtype": "bf16"},
                t,
                t * 0.9,
                t * 1.1,
                t * 0.1,
                20,
            )
        )
    rows.append(
        Measurement(
            "gemm",
            "slow.mm",
            {"m": 64, "n": 1024, "k": 1024, "dtype": "bf16"},
            9e-4,
            8e-4,
            1e-3,
            1e-4,
            20,
        )
    )
    return MeasurementSet(rows, source="test")


def test_measured_rung_interpolates_log_log_inside_the_range():
    ms = _measured_gemm_set()
    exact = kernel_time(H100, "gemm", measurements=ms, m=64, n=1024, k=1024, dtype="bf16")
    assert exact.rung == "measured" and exact.time_s == pytest.approx(2e-4)  # fastest variant
    mid = kernel_time(H100, "gemm", measurements=ms, m=32, n=1024, k=1024, dtype="bf16")
    assert mid.time_s == pytest.approx(math.sqrt(1e-4 * 2e-4))  # log-log midpoint
    assert mid.low_s < mid.time_s < mid.high_s
    slow = kernel_time(H100, "gemm", measurements=ms, variant="slow.mm", m=64, n=1024, k=1024)
    assert slow.time_s == pytest.approx(9e-4)


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"m": 1024, "n": 1024, "k": 1024}, "outside the measured range"),
        ({"m": 64, "n": 2048, "k": 1024}, "no gemm measurements with"),
        ({"m": 64, "n": 1024, "k": 1024, "dtype": "fp16"}, "no gemm measurements with"),
    ],
)
def test_measured_rung_refuses_outside_its_domain(params, why):
    t = kernel_time(H100, "gemm", measurements=_measured_gemm_set(), **params)
    assert t.rung == "datasheet" and why in t.refused["measured"]
    with pytest.raises(RungRefused, match=why):
        kernel_time(H100, "gemm", measurements=_measured_gemm_set(), rung="measured", **params)


def test_missing_measurements_directory_is_an_error(tmp_path):
    with pytest.raises(HwsimError, match="not found"):
        kernel_time(H100, "gemm", measurements=tmp_path / "nope", m=1, n=1, k=1)


def test_unknown_rung_is_an_error():
    with pytest.raises(HwsimError, match="unknown rung"):
        kernel_time(H100, "gemm", rung="exact", m=1, n=1, k=1)


@given(m=st.integers(1, 8192), n=st.integers(1, 8192), k=st.integers(1, 8192))
def test_roofline_is_monotonic_in_m(m, n, k):
    a = kernel_time(H100, "gemm", m=m, n=n, k=k).time_s
    b = kernel_time(H100, "gemm", m=m + 1, n=n, k=k).time_s
    assert b >= a > 0


def test_to_dict_is_plain():
    d = kernel_time(H100, "norm", tokens=16, hidden=4096).to_dict()
    assert d["rung"] == "datasheet" and d["params"]["dtype"] == "bf16"
    assert np.isfinite(d["time_s"])


# -- the calibration's keys and corrections (hwsim.perf.corrections) ----------------------------
def test_a_class_and_dtype_key_wins_over_the_class_key():
    hw = calibrated(H100, {"matmul": (0, 0, 0), "matmul/bf16": (0.1, 0.2, 0.3)})
    op = kernel_op("gemm", m=512, n=4096, k=4096, dtype="bf16")
    t = kernel_time(hw, "gemm", m=512, n=4096, k=4096, dtype="bf16")
    assert t.time_s == pytest.approx(_by_hand(hw, op, math.exp(0.2), math.exp(0.2)), rel=1e-12)


def test_the_overhead_key_scales_the_ramps_and_the_launches_only():
    hw = calibrated(H100, {"matmul": (0, 0, 0), "gemm/bf16/overhead": (0.4, 0.5, 0.6)})
    curve = H100.efficiency.for_class("matmul")
    assert curve.launch_overhead_s > 0
    for m in (1, 4096):
        op = kernel_op("gemm", m=m, n=1024, k=1024, dtype="bf16")
        t = kernel_time(hw, "gemm", m=m, n=1024, k=1024, dtype="bf16")
        assert t.time_s == pytest.approx(_by_hand(hw, op, 1.0, 1.0, math.exp(0.5)), rel=1e-12)
    # ... and with fitted ramps (F_half, B_half), those too
    ramped = hw.model_copy(
        update={
            "efficiency": hw.efficiency.model_copy(
                update={
                    "matmul": curve.model_copy(
                        update={"memory_half_bytes": 4e6, "compute_half_flops": 3e9}
                    )
                }
            )
        }
    )
    for m in (8, 8192):  # memory-bound, then compute-bound: each side's ramp
        op = kernel_op("gemm", m=m, n=1024, k=1024, dtype="bf16")
        t = kernel_time(ramped, "gemm", m=m, n=1024, k=1024, dtype="bf16")
        assert t.time_s == pytest.approx(_by_hand(ramped, op, 1.0, 1.0, math.exp(0.5)), rel=1e-12)


def test_a_memory_only_key_leaves_the_compute_side_alone():
    hw = calibrated(H100, {"gemm/bf16/memory": (-0.2, -0.1, 0.0)})
    op = kernel_op("gemm", m=8192, n=8192, k=8192, dtype="bf16")  # compute-bound
    t = kernel_time(hw, "gemm", m=8192, n=8192, k=8192, dtype="bf16")
    assert t.time_s == pytest.approx(_by_hand(hw, op, 1.0, math.exp(-0.1)), rel=1e-12)
    assert t.time_s == pytest.approx(float(time_op(hw, op, corrected=False).time_s), rel=1e-12)


def test_a_compute_only_key_leaves_the_memory_side_alone():
    hw = calibrated(H100, {"gemm/bf16/compute": (0.1, 0.2, 0.3)})
    op = kernel_op("gemm", m=8, n=8192, k=8192, dtype="bf16")  # memory-bound
    t = kernel_time(hw, "gemm", m=8, n=8192, k=8192, dtype="bf16")
    assert t.time_s == pytest.approx(_by_hand(hw, op, math.exp(0.2), 1.0), rel=1e-12)
    assert t.time_s == pytest.approx(float(time_op(hw, op, corrected=False).time_s), rel=1e-12)


def test_collectives_are_never_corrected():
    hw = calibrated(H100, {"communication": (1.0, 2.0, 3.0), "all_reduce": (1.0, 2.0, 3.0)})
    for size in (2**14, 2**30):
        t = kernel_time(hw, "all_reduce", bytes=size, ranks=8)
        assert t.rung == "datasheet"
        assert t.time_s == kernel_time(H100, "all_reduce", bytes=size, ranks=8).time_s


def test_a_head_dim_key_prices_a_models_attention_and_the_kernel_alike():
    from hwsim.inference.deployment import make_deployment
    from hwsim.inference.engine import prefill_cost

    key = "attention_prefill_causal/bf16/compute/head_dim=128"
    base = {"attention": (0, 0, 0)}
    hw = calibrated(H100, {**base, key: (0.2, 0.3, 0.4)})
    plain = calibrated(H100, base)
    cost = prefill_cost(make_deployment("llama-3.1-8b", hw), 1, 8192)
    ref = prefill_cost(make_deployment("llama-3.1-8b", plain), 1, 8192)
    core = next(t for t in cost.op_times if t.op.name == "attn.core")
    core_ref = next(t for t in ref.op_times if t.op.name == "attn.core")
    # the compute side carries the head-dim group's correction (whichever side binds)
    assert float(core.compute_s) == pytest.approx(float(core_ref.compute_s) * math.exp(0.3))
    kw = dict(batch=1, heads=32, kv_heads=8, head_dim=128, seq_len=8192, causal=True)
    k = kernel_time(hw, "attention_prefill", **kw)
    k_ref = kernel_time(plain, "attention_prefill", **kw)
    assert k.time_s > k_ref.time_s * 1.2
