"""MXU tile padding on TPUs (issue 17): a GEMM's k and n round up to the systolic unit's size
(128 on v4/v5, 256 on v6e), so small or odd shapes pay for the padding; GPUs do not."""

from __future__ import annotations

import numpy as np
import pytest
from test_step_model import RTOL, max_relative_difference, random_iterations

from hwsim.inference.deployment import make_deployment
from hwsim.perf.kernels import kernel_op
from hwsim.perf.roofline import roofline_floor_s, tile_padding, time_op
from hwsim.planner.step_model import EngineStepModel
from hwsim.profiles.loader import load_hardware


def _without_unit(name: str):
    hw = load_hardware(name)
    return hw.model_copy(update={"on_chip": hw.on_chip.model_copy(update={"matrix_unit": None})})


@pytest.mark.parametrize(
    ("hardware", "n", "k", "factor"),
    [
        ("tpu-v6e", 4100, 4096, 4352 / 4100),  # n: 17 tiles of 256
        ("tpu-v5e", 4100, 4096, 4224 / 4100),  # n: 33 tiles of 128
        ("tpu-v6e", 4096, 64, 4.0),  # a 64-wide contraction fills a quarter of a 256 tile
        ("tpu-v5e", 4096, 64, 2.0),
        ("tpu-v4", 4096, 4096, 1.0),  # aligned: no waste
        ("h100-sxm", 4100, 64, 1.0),  # no systolic tile on a GPU profile
    ],
)
def test_compute_time_pays_for_the_padding(hardware, n, k, factor):
    op = kernel_op("gemm", m=4096, n=n, k=k)
    hw = load_hardware(hardware)
    assert tile_padding(hw, op) == pytest.approx(factor, rel=1e-12)
    padded = time_op(hw, op).compute_s
    plain = time_op(_without_unit(hardware), op).compute_s
    assert float(padded) == pytest.approx(float(plain) * factor, rel=1e-12)
    assert float(time_op(hw, op).total_s) >= float(roofline_floor_s(hw, op))  # never beaten


def test_only_gemms_pad():
    hw = load_hardware("tpu-v6e")
    for name, params in (
        ("attention_decode", dict(batch=1, heads=8, kv_heads=8, context_len=100, head_dim=64)),
        ("norm", dict(tokens=7, hidden=100)),
    ):
        assert tile_padding(hw, kernel_op(name, **params)) == 1.0


def test_the_compiled_step_model_folds_the_padding():
    """The planner's fast path gives the reference's iteration times on a padded TPU too."""
    dep = make_deployment("llama-3.1-8b", "tpu-v6e", tp=2)
    sm = EngineStepModel(dep)
    assert sm.fast_path_active, sm.fast_path_note
    assert max_relative_difference(sm, random_iterations(np.random.default_rng(5), 24)) <= RTOL
