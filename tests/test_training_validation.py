"""Published training runs vs hwsim: loaded strictly, compared, median error reported.

The median error is reported (``-s`` prints the table), not asserted against a target:
nothing in hwsim is fitted to these rows.
"""

from __future__ import annotations

import math

import pytest
import yaml

from validation.published_training import (
    ACTIVATION_METRICS,
    FILE,
    MEMORY_METRICS,
    STEP_METRICS,
    TOTAL_MEMORY_METRICS,
    UTIL_METRICS,
    TrainingRow,
    compare,
    load_training_rows,
    median_abs_error,
)


def test_sourced_rows_from_several_papers():
    rows = load_training_rows()
    assert all((r.source.arxiv or r.source.url) and r.quote and r.assumed for r in rows)
    compared = [r for r in rows if not r.excluded]
    assert len(compared) >= 20
    papers = {r.source.arxiv or r.source.url for r in compared}
    assert {"2205.05198", "2407.21783", "1910.02054", "2201.11990"} <= papers
    assert len(papers) >= 7
    metrics = {m for r in compared for m in r.published}
    assert metrics & set(MEMORY_METRICS), "no memory rows"
    # memory is compared beyond model states: stored activations and the total per GPU
    assert metrics & set(ACTIVATION_METRICS), "no activation-memory rows"
    assert metrics & set(TOTAL_MEMORY_METRICS), "no total-memory rows"
    compared_metrics = {c.metric for c in compare()}
    assert compared_metrics & set(ACTIVATION_METRICS)
    assert compared_metrics & set(TOTAL_MEMORY_METRICS)
    # rows whose numbers also stand in a table reserved for independent evaluation are kept,
    # with the reason, but never compared
    excluded = [r for r in rows if r.excluded]
    assert all("reserved" in r.excluded for r in excluded)
    assert not {c.row_id for c in compare()} & {r.id for r in excluded}


def _raw_rows() -> list[dict]:
    return yaml.safe_load(FILE.read_text())["rows"]


def test_loader_is_strict():
    row = next(r for r in _raw_rows() if isinstance(r["model"], dict))
    TrainingRow.model_validate(row)  # the row as stored is valid
    source = row["source"]
    gpt = row["model"]["gpt"]
    bad = [
        {**row, "unexpected": 1},
        {**row, "published": {"speed": 1.0}},
        {**row, "published": {}},
        {**row, "published": {"activations_gb_per_gpu": -1.0}},
        {**row, "quote": ""},
        {**row, "source": {k: v for k, v in source.items() if k != "arxiv"}},  # no arxiv, no url
        {**row, "source": {**source, "doi": "10.1/x"}},
        {**row, "source": {**source, "url": "http://insecure.example"}},
        {**row, "model": {"gpt": {**gpt, "ffn": 4}}},
        {**row, "model": {"gpt": {**gpt, "positions": "rope"}}},
        {**row, "model": {"llama": gpt}},
    ]
    for data in bad:
        with pytest.raises(ValueError):
            TrainingRow.model_validate(data)
    # a URL may stand for the arXiv id (blogs, READMEs, model pages)
    no_arxiv = {k: v for k, v in source.items() if k != "arxiv"}
    url = {**no_arxiv, "url": "https://example.org/page"}
    assert TrainingRow.model_validate({**row, "source": url}).source.url == url["url"]


def test_loader_rejects_duplicate_ids(tmp_path):
    rows = _raw_rows()
    path = tmp_path / "runs.yaml"
    path.write_text(yaml.safe_dump({"rows": [rows[0], rows[0]]}))
    with pytest.raises(ValueError, match="duplicate"):
        load_training_rows(path)


def test_report_median_error():
    comparisons = compare()
    assert comparisons
    print(f"\n{'row':30s} {'metric':24s} {'published':>10s} {'hwsim':>10s} {'error':>8s}")
    for c in comparisons:
        print(
            f"{c.row_id:30s} {c.metric:24s} {c.published:10.3f} {c.predicted:10.3f} {c.error:+8.1%}"
        )
    memory = median_abs_error(comparisons, MEMORY_METRICS)
    step = median_abs_error(comparisons, STEP_METRICS)
    util = median_abs_error(comparisons, UTIL_METRICS)
    acts = median_abs_error(comparisons, ACTIVATION_METRICS)
    total = median_abs_error(comparisons, TOTAL_MEMORY_METRICS)
    rows = len({c.row_id for c in comparisons})
    print(
        f"median |error| over {rows} compared rows: memory {memory:.1%} (activations "
        f"{acts:.1%}, total {total:.1%}), step time {step:.1%}, MFU/HFU/TFLOP/s {util:.1%} "
        f"({FILE.name})"
    )
    for value in (memory, step, util, acts, total):
        assert math.isfinite(value)
