"""EfficiencyCurve.overlap: how much of the shorter of compute and memory time hides under the
longer one. time = max(C, M) + (1 - overlap) * min(C, M) + kernels * launch_overhead_s."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hwsim.model.ops import Op
from hwsim.perf.roofline import roofline_floor_s, time_op
from hwsim.profiles.hardware import EfficiencyCurve, HardwareProfile
from hwsim.profiles.loader import load_hardware

CPU = load_hardware("cpu")
PEAK = CPU.matrix_peak_flops_per_s("bf16")
BW = CPU.bandwidth_bytes_per_s


def with_matmul_curve(**curve) -> HardwareProfile:
    eff = CPU.efficiency.model_copy(update={"matmul": EfficiencyCurve(source="test", **curve)})
    return CPU.model_copy(update={"efficiency": eff})


def op(flops: float, nbytes: float, kernels: int = 1) -> Op:
    return Op("hand", "matmul", flops=flops, act_read_bytes=nbytes, kernels=kernels)


CURVE = dict(
    compute_fraction=0.5,
    memory_fraction=0.8,
    compute_half_flops=1e6,
    memory_half_bytes=2e4,
    launch_overhead_s=1e-5,
)


@pytest.mark.parametrize("kernels", [1, 3])
def test_overlap_one_is_the_max_and_zero_the_sum(kernels):
    f, b = 4e9, 6e7
    c = (f + 1e6) / (PEAK * 0.5)
    m = (b + 2e4) / (BW * 0.8)
    assert 0.2 < c / m < 5  # neither term negligible
    launch = kernels * 1e-5
    for overlap, want in ((1.0, max(c, m) + launch), (0.0, c + m + launch)):
        t = time_op(with_matmul_curve(**CURVE, overlap=overlap), op(f, b, kernels))
        assert float(t.time_s) == pytest.approx(want, rel=1e-12)
        assert float(t.compute_s) == pytest.approx(c, rel=1e-12)
        assert float(t.memory_s) == pytest.approx(m, rel=1e-12)
    half = time_op(with_matmul_curve(**CURVE, overlap=0.25), op(f, b, kernels))
    assert float(half.time_s) == pytest.approx(max(c, m) + 0.75 * min(c, m) + launch, rel=1e-12)


def test_default_overlap_is_one_so_shipped_profiles_keep_the_roofline_max():
    curve = EfficiencyCurve(compute_fraction=0.5, memory_fraction=0.5, source="x")
    assert curve.overlap == 1.0
    assert EfficiencyCurve.model_fields["overlap"].description
    t = time_op(CPU, op(4e9, 6e7))
    assert float(t.time_s) == pytest.approx(
        max(float(t.compute_s), float(t.memory_s)) + CPU.efficiency.matmul.launch_overhead_s
    )


@pytest.mark.parametrize("bad", [-0.01, 1.01])
def test_overlap_outside_zero_one_is_rejected(bad):
    with pytest.raises(ValidationError, match="overlap"):
        EfficiencyCurve(compute_fraction=0.5, memory_fraction=0.5, overlap=bad, source="x")


def test_overlap_round_trips_through_yaml():
    hw = with_matmul_curve(**CURVE, overlap=0.37)
    text = yaml.safe_dump(hw.model_dump(mode="json", exclude_none=True))
    again = HardwareProfile.model_validate(yaml.safe_load(text))
    assert again.efficiency.matmul.overlap == 0.37


@given(
    flops=st.floats(0, 1e15),
    nbytes=st.floats(0, 1e12),
    cf=st.floats(0.01, 1.0),
    mf=st.floats(0.01, 1.0),
    f_half=st.floats(0, 1e10),
    b_half=st.floats(0, 1e8),
    launch=st.floats(0, 1e-3),
    overlaps=st.lists(st.floats(0, 1), min_size=2, max_size=2),
)
def test_time_is_non_increasing_in_overlap_and_never_below_the_roofline(
    flops, nbytes, cf, mf, f_half, b_half, launch, overlaps
):
    lo, hi = sorted(overlaps)
    curve = dict(
        compute_fraction=cf,
        memory_fraction=mf,
        compute_half_flops=f_half,
        memory_half_bytes=b_half,
        launch_overhead_s=launch,
    )
    o = op(flops, nbytes)
    t_lo = float(time_op(with_matmul_curve(**curve, overlap=lo), o).time_s)
    t_hi = float(time_op(with_matmul_curve(**curve, overlap=hi), o).time_s)
    floor = float(roofline_floor_s(CPU, o))
    assert t_lo >= t_hi * (1 - 1e-12)
    assert t_hi >= floor * (1 - 1e-12)


def test_roofline_floor_stays_the_bare_max_at_peak_rates():
    hw = with_matmul_curve(**CURVE, overlap=0.0)
    o = op(np.array([1e6, 4e9, 1e12]), np.array([1e9, 6e7, 1e3]))
    want = np.maximum(o.flops / PEAK, o.hbm_bytes / BW)
    np.testing.assert_allclose(roofline_floor_s(hw, o), want, rtol=1e-12)
    assert np.all(time_op(hw, o).time_s > roofline_floor_s(hw, o))
