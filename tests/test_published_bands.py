"""Transfer bands from the published set (validation/published_bands.py): residual signs,
source identity, held-out construction and the unseen-source band, on hand-made residuals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from validation.published_bands import (
    Residual,
    band_for,
    coverage_table,
    group_keys,
    held_out_bands,
    source_band,
    source_of,
    time_residual,
)


def _res(i: int, source: str, r: float, kind: str = "gemm", rung: str = "datasheet"):
    return Residual(f"row-{i}", kind, "m", rung, source, r)


def test_a_residual_says_how_much_longer_the_real_thing_took():
    # a rate predicted 25% high: the real kernel took 1.25x the predicted time
    assert time_residual(100.0, 125.0, "TFLOP/s") == pytest.approx(math.log(1.25))
    # a time predicted 20% low (TPOT 40 ms published, 32 ms predicted): also longer
    assert time_residual(40.0, 32.0, "ms") == pytest.approx(math.log(1.25))


def test_a_fork_of_a_repository_is_the_same_source_and_sites_split_by_first_segment():
    a = "https://github.com/Azure/AI-benchmarking-guide/blob/3bb6/README.md#x"
    b = "https://github.com/samuel-bohman/AI-benchmarking-guide/blob/26d1/README.md"
    assert source_of(a) == source_of(b) == "github:ai-benchmarking-guide"
    assert source_of("https://rocm.blogs.amd.com/software-tools/part2/README.html") == (
        "rocm.blogs.amd.com/software-tools"
    )


def test_groups_go_from_kernel_class_and_rung_to_every_kernel():
    assert group_keys("gemm", "calibrated") == ("gemm/calibrated", "gemm", "kernel")
    assert group_keys("serving", "datasheet") == ("serving/datasheet", "serving")
    assert group_keys("serving", "calibrated", "median_tpot") == (
        "serving/median_tpot/calibrated",
        "serving/median_tpot",
        "serving/calibrated",
        "serving",
    )  # a decode step is banded by the TPOT rows; a TTFT holds the queue: every serving row
    assert group_keys("serving", "datasheet", "median_ttft") == ("serving/datasheet", "serving")


def test_a_held_out_source_never_contributes_to_its_own_band():
    rng = np.random.default_rng(0)
    res = [_res(i, f"s{i % 4}", float(rng.normal())) for i in range(40)]
    res.append(_res(99, "outlier", 50.0))  # its own value would widen any band it entered
    held = {h["id"]: h for h in held_out_bands(res, "pooled")}
    others = [r.residual for r in res if r.source != "outlier"]
    lo, hi = np.quantile(others, [0.1, 0.9], method="weibull")  # plotting positions p (n + 1)
    assert held["row-99"]["low"] == pytest.approx(lo) and held["row-99"]["high"] == pytest.approx(
        hi
    )
    assert held["row-99"]["inside"] is False
    # every other row's pool: the 30 rows of the three other sources plus the outlier
    assert all(h["train_rows"] == 31 for k, h in held.items() if k != "row-99")


def test_a_small_group_borrows_the_broader_groups_band():
    res = [_res(i, f"s{i % 3}", 0.1 * i, kind="allreduce") for i in range(20)]
    res += [_res(100 + i, "s0", 0.0, kind="bandwidth") for i in range(3)]
    group, _lo, _hi, n = band_for(group_keys("bandwidth", "datasheet"), res, "pooled")
    assert group == "kernel" and n == 23


def test_the_unseen_source_band_is_mean_of_means_plus_t_times_the_two_variances():
    # two sources, offsets -1 and +1, within-source values +-0.5 (four rows each)
    res = [_res(i, "a", -1.0 + (0.5 if i % 2 else -0.5)) for i in range(4)]
    res += [_res(10 + i, "b", 1.0 + (0.5 if i % 2 else -0.5)) for i in range(4)]
    lo, hi = source_band(res)
    sigma2 = (8 * 0.25) / (8 - 2)  # pooled within-source variance
    tau2 = 2.0 - sigma2 * 0.25  # var of the means (ddof 1) = 2, less sigma^2 / n
    half = 3.0776835 * math.sqrt(tau2 * 1.5 + sigma2)  # t(0.9, 1 dof)
    assert lo == pytest.approx(-half, rel=1e-6) and hi == pytest.approx(half, rel=1e-6)


def test_one_source_gives_the_plain_quantiles():
    res = [_res(i, "only", float(i)) for i in range(11)]
    assert source_band(res) == pytest.approx((1.0, 9.0))


def test_coverage_counts_inside_below_and_above():
    held = [
        {"id": "x", "kind": "gemm", "metric": "m", "rung": "d", "source": "s", "residual": r,
         "low": -1.0, "high": 1.0, "train_rows": 9, "inside": -1.0 <= r <= 1.0}
        for r in (-2.0, 0.0, 0.5, 3.0)
    ]  # fmt: skip
    kernels = next(t for t in coverage_table(held) if t["group"] == "kernels")
    assert (kernels["coverage"], kernels["below"], kernels["above"]) == (0.5, 1, 1)


def test_the_published_report_carries_both_held_out_tables():
    from types import SimpleNamespace

    from validation.published_eval import _transfer_bands
    from validation.published_prediction import Prediction

    preds, rows = [], []
    for i in range(12):
        url = f"https://github.com/org{i % 3}/repo{i % 3}/blob/x/README.md"
        rows.append(SimpleNamespace(id=f"r{i}", source=SimpleNamespace(url=url)))
        preds.append(Prediction(f"r{i}", "gemm", "h100", None, "tflops", "TFLOP/s", 100.0,
                                predicted=100.0 + i, rung="datasheet"))  # fmt: skip
    out = _transfer_bands(preds, rows)
    for method in ("unseen_source", "pooled"):
        kernels = next(t for t in out[method] if t["group"] == "kernels")
        assert kernels["banded"] == 12 and kernels["sources"] == 3


def test_prediction_interval_takes_plotting_positions_by_hand():
    """Hyndman & Fan definition 6: the p-quantile sits at position p (n + 1). Nine values:
    positions 1 and 9, the extremes; nineteen: positions 2 and 18; eleven: 1.2 and 10.8."""
    from validation.published_bands import prediction_interval

    assert prediction_interval(list(range(1, 10))) == (1.0, 9.0)
    assert prediction_interval(list(range(1, 20))) == (2.0, 18.0)
    lo, hi = prediction_interval([float(v) for v in range(1, 12)])
    assert lo == pytest.approx(1.2) and hi == pytest.approx(10.8)


@pytest.mark.slow
def test_the_shipped_transfer_bands_are_those_of_the_shipped_published_set():
    """hwsim/perf/transfer_bands.json must be regenerated (python -m validation.published_bands
    --write) whenever a published row or a prediction it depends on changes."""
    import json

    from hwsim.perf.transfer import BANDS_PATH
    from validation.published_bands import evaluate, shipped_table

    res, _held = evaluate()
    shipped = json.loads(BANDS_PATH.read_text())
    assert shipped == json.loads(json.dumps(shipped_table(res))), (
        "transfer_bands.json is stale: run python -m validation.published_bands --write"
    )
