"""Published training runs vs hwsim: loaded strictly, compared, median error reported.

The median error is reported (``-s`` prints the table), not asserted against a target:
nothing in hwsim is fitted to these rows.
"""

from __future__ import annotations

import math

import pytest

from validation.published_training import (
    FILE,
    TrainingRow,
    compare,
    load_training_rows,
    median_abs_error,
)


def test_at_least_ten_sourced_rows():
    rows = load_training_rows()
    assert len(rows) >= 10
    assert all(r.source.arxiv and r.quote and r.assumed for r in rows)
    papers = {r.source.arxiv for r in rows}
    assert {"2104.04473", "2205.05198", "2407.21783"} <= papers


def test_loader_is_strict():
    row = load_training_rows()[0].model_dump()
    with pytest.raises(ValueError):
        TrainingRow.model_validate({**row, "unexpected": 1})
    with pytest.raises(ValueError):
        TrainingRow.model_validate({**row, "published": {"speed": 1.0}})


def test_report_median_error():
    comparisons = compare()
    assert comparisons
    print(f"\n{'row':26s} {'metric':24s} {'published':>10s} {'hwsim':>10s} {'error':>8s}")
    for c in comparisons:
        print(
            f"{c.row_id:26s} {c.metric:24s} {c.published:10.3f} {c.predicted:10.3f} {c.error:+8.1%}"
        )
    util = median_abs_error(comparisons, ("mfu", "hfu"))
    tflops = median_abs_error(comparisons, ("model_tflops_per_gpu", "hardware_tflops_per_gpu"))
    print(f"median |error|: MFU/HFU {util:.1%}, TFLOP/s per GPU {tflops:.1%} ({FILE.name})")
    assert math.isfinite(util) and math.isfinite(tflops)
