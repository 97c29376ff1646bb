"""A whole model is priced through the same ladder as one kernel: ops whose kernel call the
user measured are priced from the measurement, the rest by the efficiency model."""

import numpy as np
import pytest

import hwsim
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost, prefill_cost
from hwsim.perf.ladder import kernel_time, price_op
from hwsim.perf.measured import Measurement, MeasurementSet, write_csv
from hwsim.perf.roofline import time_op

# Llama-2-7B's fused QKV projection at tp=1: k = d_model, n = (32 + 2 x 32) x 128
QKV = {"n": 12288, "k": 4096, "dtype": "bf16"}


def gemm_rows(times_by_m: dict[int, float]) -> list[Measurement]:
    return [
        Measurement("gemm", "torch.mm", {"m": m, **QKV}, t, 0.9 * t, 1.2 * t, 0.2 * t, repeats=20)
        for m, t in times_by_m.items()
    ]


def qkv(cost):
    (t,) = [t for t in cost.op_times if t.op.name == "attn.qkv_proj"]
    return t


def test_a_measured_projection_replaces_the_model_time_and_only_that():
    measured = MeasurementSet(gemm_rows({1: 2e-4, 64: 2e-4}), source="test")
    plain = make_deployment("llama-2-7b", "a100-80gb-sxm")
    with_meas = make_deployment("llama-2-7b", "a100-80gb-sxm", measurements=measured)
    base, meas = decode_step_cost(plain, 8, 1000), decode_step_cost(with_meas, 8, 1000)
    assert qkv(meas).rung == "measured" and float(qkv(meas).time_s) == pytest.approx(2e-4)
    assert qkv(base).rung == "datasheet"
    extra = (2e-4 - float(qkv(base).time_s)) * qkv(base).op.count
    assert float(meas.time_s - base.time_s) == pytest.approx(extra, rel=1e-9)
    others = [t.rung for t in meas.op_times if t.op.name != "attn.qkv_proj"]
    assert set(others) == {"datasheet"}


def test_a_shape_outside_the_measured_range_falls_back_to_the_model():
    measured = MeasurementSet(gemm_rows({1: 2e-4, 64: 2e-4}), source="test")
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm", measurements=measured)
    assert qkv(decode_step_cost(dep, 128, 1000)).rung == "datasheet"  # m = 128 > 64
    assert qkv(prefill_cost(dep, 1, 512)).rung == "datasheet"  # m = 512 tokens


def test_the_engine_and_kernel_time_agree_on_a_measured_shape():
    """One op, one shape, one set of measurements: the same seconds from both doors."""
    measured = MeasurementSet(gemm_rows({1: 1e-4, 64: 6.4e-3}), source="test")
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm", measurements=measured)
    engine_s = float(qkv(decode_step_cost(dep, 8, 1000)).time_s)
    kernel_s = kernel_time("a100-80gb-sxm", "gemm", measurements=measured, m=8, **QKV).time_s
    assert engine_s == pytest.approx(kernel_s, rel=1e-12)
    # log-log interpolation between (1, 1e-4) and (64, 6.4e-3): linear in m here
    assert engine_s == pytest.approx(8e-4, rel=1e-9)


def test_a_sweep_interpolates_each_measured_size():
    measured = MeasurementSet(gemm_rows({1: 1e-4, 64: 6.4e-3}), source="test")
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm", measurements=measured)
    batch = np.array([1.0, 4.0, 64.0])
    got = np.asarray(qkv(decode_step_cost(dep, batch, 1000.0)).time_s)
    np.testing.assert_allclose(got, 1e-4 * batch, rtol=1e-9)


def test_price_op_without_measurements_is_time_op():
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm")
    op = qkv(decode_step_cost(dep, 8, 1000)).op
    assert float(price_op(dep.hardware, op).time_s) == float(time_op(dep.hardware, op).time_s)


def test_estimate_reads_a_measurements_folder_and_reports_its_band(tmp_path):
    folder = tmp_path / "dev" / "gemm" / "torch@test"
    write_csv(folder / "measurements.csv", gemm_rows({1: 2e-4, 64: 2e-4}))
    plain = hwsim.estimate("llama-2-7b", "a100-80gb-sxm", batch=8, prompt_len=1000, gen_len=8)
    est = hwsim.estimate(
        "llama-2-7b", "a100-80gb-sxm", batch=8, prompt_len=1000, gen_len=8, measurements=tmp_path
    )
    assert est.latency.tpot_s > plain.latency.tpot_s  # 0.2 ms measured vs ~0.15 ms modelled
    assert est.latency.tpot_low_s < est.latency.tpot_s < est.latency.tpot_high_s
    assert "measured kernels" in est.latency.band
    assert "measured" not in plain.latency.band and "transfer band" in plain.latency.band
