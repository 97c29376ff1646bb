"""FP8 training (Transformer Engine's recipe): GEMMs at the FP8 rate, everything else in bf16,
model states 2 + 1 (cached FP8 weights) + 2 + 12 bytes per parameter, MFU against bf16 peak."""

from __future__ import annotations

import pytest

from hwsim.errors import HwsimError
from hwsim.model.load import load_model
from hwsim.profiles.loader import load_hardware
from hwsim.training import train
from hwsim.training.spec import TrainingSpec
from hwsim.training.step import forward_profile

KW = dict(tp=8, pp=2, global_batch=32, seq_len=8192, attention="flash", dropout=False,
          sequence_parallel=True)  # fmt: skip


def test_fp8_model_states_are_seventeen_bytes_per_parameter_without_zero():
    bf16 = train("llama-3.1-70b", "h100-sxm", 64, precision="bf16", **KW).memory
    fp8 = train("llama-3.1-70b", "h100-sxm", 64, precision="fp8", **KW).memory
    params = bf16.params_bytes / 2.0  # bf16 weights: 2 bytes per parameter
    assert fp8.params_bytes == pytest.approx(3.0 * params, rel=1e-12)
    assert fp8.grads_bytes == pytest.approx(bf16.grads_bytes, rel=1e-12)
    assert fp8.optimizer_bytes == pytest.approx(bf16.optimizer_bytes, rel=1e-12)
    assert fp8.activations_bytes == pytest.approx(bf16.activations_bytes, rel=1e-12)


def test_only_the_gemms_speed_up():
    m, hw = load_model("llama-3.1-70b"), load_hardware("h100-sxm")
    spec = TrainingSpec.from_settings(None, **KW)
    bf16 = forward_profile(m, hw, spec, 1, 8192)
    fp8 = forward_profile(m, hw, spec.replace(precision="fp8"), 1, 8192)
    assert fp8.attention_core_s == pytest.approx(bf16.attention_core_s, rel=1e-12)
    assert bf16.layers_s / 2 < fp8.layers_s < bf16.layers_s  # GEMMs at most 2x faster
    a = train("llama-3.1-70b", "h100-sxm", 64, precision="bf16", **KW)
    b = train("llama-3.1-70b", "h100-sxm", 64, precision="fp8", **KW)
    assert a.step.time_s / 2 < b.step.time_s < a.step.time_s
    # MFU against the bf16 peak in both: the FP8 run's is higher by the speed-up
    assert b.throughput.peak_tflops_per_gpu == a.throughput.peak_tflops_per_gpu
    assert b.throughput.mfu / a.throughput.mfu == pytest.approx(a.step.time_s / b.step.time_s)


def test_fp8_on_a_device_without_an_fp8_rate_is_a_clear_error():
    with pytest.raises(HwsimError, match="lists no FP8 matrix rate"):
        train("llama-3.1-8b", "a100-80gb-sxm", 8, precision="fp8")
