"""The op-error correlation: its estimate from whole-model rows (validation.op_correlation)
and how op bands add with it (hwsim.inference.engine.combine_op_bands_s)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from hwsim.inference.engine import combine_op_bands_s
from hwsim.perf.kernels import kernel_op
from hwsim.perf.roofline import OpTime
from hwsim.profiles.loader import load_hardware
from validation.op_correlation import Z90, estimate_correlation, kind_sigma, row_moments


@dataclass
class Row:
    residual: float
    shares: tuple
    rung: str = "datasheet"


def bands_of(sigmas: dict[str, float], rows: int = 10) -> dict:
    return {g: {"p10": -Z90 * s, "p90": Z90 * s, "rows": rows} for g, s in sigmas.items()}


BANDS = bands_of({"gemm/datasheet": 0.4, "bandwidth": 0.1, "kernel": 0.3})
SHARES = (("up", "gemm", 0.5), ("down", "gemm", 0.3), ("norm", "bandwidth", 0.2))


def test_kind_sigma_takes_the_most_specific_group_with_enough_rows():
    assert kind_sigma(BANDS, "gemm", "datasheet", 8) == pytest.approx(0.4)
    # 'gemm/calibrated' is absent and 'gemm' too: every kernel row
    assert kind_sigma(BANDS, "gemm", "calibrated", 8) == pytest.approx(0.3)
    assert kind_sigma(BANDS, "gemm", "datasheet", 11) is None  # no group has 11 rows


def test_moments_and_estimate_by_hand():
    """S1 = 0.5^2 0.4^2 + 0.3^2 0.4^2 + 0.2^2 0.1^2 = 0.0548; S2 = (0.2 + 0.12 + 0.02)^2 =
    0.1156. Residuals -x, 0, x have sample variance x^2 = 0.08, so
    rho = (0.08 - 0.0548) / (0.1156 - 0.0548) = 0.41447."""
    s1, s2 = row_moments(SHARES, "datasheet", BANDS, 8)
    assert (s1, s2) == pytest.approx((0.0548, 0.1156))
    x = math.sqrt(0.08)
    rows = [Row(r, SHARES) for r in (-x, 0.0, x)]
    got = estimate_correlation(rows, BANDS, 8)
    assert got["rho"] == pytest.approx(0.0252 / 0.0608, abs=1e-4)
    assert got["observed_sd"] == pytest.approx(x, abs=1e-4)
    assert got["independent_sd"] == pytest.approx(math.sqrt(0.0548), abs=1e-4)
    assert got["together_sd"] == pytest.approx(0.34, abs=1e-4)


def test_estimate_is_clipped_to_zero_and_one():
    small = estimate_correlation([Row(r, SHARES) for r in (-0.1, 0.0, 0.1)], BANDS, 8)
    assert small["rho_unclipped"] < 0 and small["rho"] == 0.0
    big = estimate_correlation([Row(r, SHARES) for r in (-1.0, 0.0, 1.0)], BANDS, 8)
    assert big["rho_unclipped"] > 1 and big["rho"] == 1.0
    assert estimate_correlation([Row(0.1, SHARES)], BANDS, 8)["rho"] is None


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_estimate_recovers_the_correlation_of_simulated_rows(rho):
    """Rows whose op errors are drawn with correlation rho (each op at its kind's sigma) and
    whose residual is the share-weighted sum: the estimate finds rho again."""
    rng = np.random.default_rng(7)
    sigma = np.array([0.4, 0.4, 0.1])
    cov = rho * np.outer(sigma, sigma) + (1 - rho) * np.diag(sigma**2)
    rows = []
    for _ in range(6000):
        w = rng.dirichlet([2.0, 2.0, 1.0])
        e = rng.multivariate_normal(np.zeros(3), cov)
        shares = tuple((n, k, float(x)) for (n, k, _), x in zip(SHARES, w))
        rows.append(Row(float(w @ e), shares))
    assert estimate_correlation(rows, BANDS, 8)["rho"] == pytest.approx(rho, abs=0.08)


def measured_op_time(seconds: float, sigma: float) -> OpTime:
    """An op measured at ``seconds`` with a normal spread ``sigma`` (p10/p90 at -/+ Z90 sigma)."""
    op = kernel_op("gemm", m=64, n=4096, k=4096)
    band = (np.float64(seconds - Z90 * sigma), np.float64(seconds + Z90 * sigma))
    return OpTime(op, seconds, seconds, seconds, 0, rung="measured", band_s=band)


@pytest.mark.parametrize("rho", [0.0, 0.3, 1.0])
def test_combined_band_is_the_p10_p90_of_correlated_op_errors(rho):
    """Normal op errors with correlation rho: the p10 and p90 of the summed time, sampled,
    are where the combination puts the band's edges (exact for normal errors)."""
    hw = load_hardware("a100-80gb-sxm")
    seconds, sigma = np.array([1.0, 2.0, 0.5, 3.0]), np.array([0.1, 0.3, 0.05, 0.2])
    times = tuple(measured_op_time(float(t), float(s)) for t, s in zip(seconds, sigma))
    low, high = combine_op_bands_s(hw, times, rho)
    cov = rho * np.outer(sigma, sigma) + (1 - rho) * np.diag(sigma**2)
    draws = np.random.default_rng(3).multivariate_normal(seconds, cov, 200_000).sum(axis=1)
    p10, p90 = np.quantile(draws, [0.1, 0.9])
    assert float(low) == pytest.approx(p10, rel=2e-3)
    assert float(high) == pytest.approx(p90, rel=2e-3)


def test_a_band_wholly_above_its_point_adds_as_an_offset():
    """An op band [1.2, 1.4] s around a point of 1 s: 0.2 s of it is an offset that adds as it
    is; the deviations from the clipped point (0 below, 0.2 above) combine."""
    hw = load_hardware("a100-80gb-sxm")
    op = kernel_op("gemm", m=64, n=4096, k=4096)
    shifted = OpTime(op, 1.0, 1.0, 1.0, 0, rung="measured", band_s=(1.2, 1.4))
    plain = measured_op_time(1.0, 0.1)
    low, high = combine_op_bands_s(hw, (shifted, plain), 0.0)
    d = Z90 * 0.1
    assert float(low) == pytest.approx(2.2 - d)
    assert float(high) == pytest.approx(2.2 + math.hypot(0.2, d))
