"""The elementwise time model (copy, norm) that calibration fits and leave-one-device-out
transfers: hwsim.perf.roofline.time_op with the class's EfficiencyCurve,

    C = (F + F_half) / (vector peak x compute_fraction)     (F_half only where F > 0)
    M = (B + B_half) / (bandwidth x memory_fraction)        (B_half / (bw mf): a latency)
    t = max(C, M) + (1 - overlap) min(C, M) + kernels x launch_overhead_s

A golden value by hand on a small curve, and the invariants every fitted or transplanted
profile keeps: never below the bandwidth roofline, never faster for more bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.perf.kernels import kernel_op
from hwsim.perf.roofline import roofline_floor_s, time_op
from hwsim.profiles.hardware import EfficiencyCurve
from hwsim.profiles.loader import load_hardware
from validation import lodo

H100 = load_hardware("h100-sxm")
CURVE = EfficiencyCurve(
    compute_fraction=0.5,
    memory_fraction=0.8,
    compute_half_flops=1e8,
    memory_half_bytes=2e6,
    launch_overhead_s=4e-6,
    source="test",
)
TINY = H100.model_copy(
    update={"efficiency": H100.efficiency.model_copy(update={"elementwise": CURVE})}
)


def test_golden_copy_and_norm_times_by_hand():
    """H100 datasheet: 3.35 TB/s, 66.9 TFLOP/s fp32 vector.
    copy of 1 MiB: B = 2 MiB = 2,097,152; no FLOPs, so no F_half:
        M = (2,097,152 + 2e6) / (3.35e12 x 0.8) = 1.528788e-6 s; t = M + 4e-6 = 5.528788e-6 s.
    RMSNorm 16 x 4096 bf16: F = 4 x 65,536 = 262,144; B = 8,192 + 2 x 131,072 = 270,336:
        C = (262,144 + 1e8) / (66.9e12 x 0.5) = 2.997374e-6 s,
        M = (270,336 + 2e6) / 2.68e12 = 8.471403e-7 s; t = max(C, M) + 4e-6 = 6.997374e-6 s."""
    copy = time_op(TINY, kernel_op("copy", bytes=2**20))
    assert float(copy.time_s) == pytest.approx(5.528788e-6, rel=1e-6)
    norm = time_op(TINY, kernel_op("norm", tokens=16, hidden=4096))
    assert float(norm.compute_s) == pytest.approx(2.997374e-6, rel=1e-6)
    assert float(norm.memory_s) == pytest.approx(8.471403e-7, rel=1e-6)
    assert float(norm.time_s) == pytest.approx(6.997374e-6, rel=1e-6)


def _profiles():
    cal = load_hardware("h100-sxm-calibrated")
    data = cal.model_dump(mode="json", exclude_none=True)
    moved = lodo.transplant(data, load_hardware("h200-sxm"), "h100-sxm")
    return [TINY, H100, cal, load_hardware("h200-sxm-calibrated"), moved]


PROFILES = _profiles()
ELEMENTS = st.integers(min_value=1, max_value=2**31)  # bf16 elements of a copy


@settings(max_examples=60, deadline=None)
@given(n=ELEMENTS, more=st.integers(min_value=1, max_value=2**31))
def test_copy_time_is_above_the_roofline_and_monotone_in_bytes(n, more):
    for hw in PROFILES:
        small, big = kernel_op("copy", bytes=2 * n), kernel_op("copy", bytes=2 * (n + more))
        t_small, t_big = float(time_op(hw, small).time_s), float(time_op(hw, big).time_s)
        assert t_small >= float(roofline_floor_s(hw, small)) * (1 - 1e-12)
        assert t_small >= float(small.hbm_bytes) / hw.bandwidth_bytes_per_s * (1 - 1e-12)
        assert t_big >= t_small


@settings(max_examples=60, deadline=None)
@given(
    tokens=st.integers(min_value=1, max_value=65536),
    more=st.integers(min_value=1, max_value=65536),
    hidden=st.sampled_from([1024, 2048, 4096, 8192, 16384]),
)
def test_norm_time_is_above_the_roofline_and_monotone_in_tokens(tokens, more, hidden):
    for hw in PROFILES:
        small = kernel_op("norm", tokens=tokens, hidden=hidden)
        big = kernel_op("norm", tokens=tokens + more, hidden=hidden)
        t_small, t_big = float(time_op(hw, small).time_s), float(time_op(hw, big).time_s)
        assert t_small >= float(roofline_floor_s(hw, small)) * (1 - 1e-12)
        assert t_big >= t_small
