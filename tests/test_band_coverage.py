"""``hwsim validate --published`` band coverage: on a hand-made published set of four GEMM
rows (one inside the calibrated prediction's p10-p90 band, one below, one above, one on a
datasheet profile, not scored: its band is built from the set), the per-group counts,
coverage and width are right, in the JSON and in the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hwsim.cli.main import app
from validation import published_eval as pe
from validation.published_set import DEFAULT_FOLDER, PublishedRow, value_digits

runner = CliRunner()

CALIBRATED_ROW = "gemm-azure-h100-fp8-8192x8192x8192"  # h100-sxm: a calibrated sibling ships


def _template() -> dict:
    doc = yaml.safe_load((DEFAULT_FOLDER / "kernels.yaml").read_text(encoding="utf-8"))
    return next(r for r in doc["rows"] if r["id"] == CALIBRATED_ROW)


def _row(template: dict, rid: str, value: float, **over) -> dict:
    row = json.loads(json.dumps(template)) | over
    row["id"], row["value"] = rid, value
    row["quote"] = f"| 8192 | 8192 | 8192 | {value_digits(value)} |"
    return row


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> tuple[Path, dict]:
    """Four rows priced like the shipped one: in, below and above its band; one datasheet."""
    template = _template()
    pred = pe.evaluate_row(PublishedRow.model_validate(template))
    assert pred.ok and pred.low is not None and pred.high is not None, pred
    assert pred.low < pred.predicted < pred.high
    values = {
        "inside": round(pred.predicted, 1),
        "below": round(pred.low * 0.5, 1),
        "above": round(pred.high * 2.0, 1),
    }
    rows = [_row(template, f"tiny-{name}", v) for name, v in values.items()]
    rows.append(_row(template, "tiny-datasheet", 300.0, hardware_profile="a100-80gb-sxm",
                     workload={"dtype": "bf16", "m": 8192, "n": 8192, "k": 8192}))  # fmt: skip
    folder = tmp_path_factory.mktemp("published")
    (folder / "tiny.yaml").write_text(
        yaml.safe_dump({"description": "band coverage test", "rows": rows}), encoding="utf-8"
    )
    return folder, {"pred": pred, **values}


def test_prediction_carries_a_rate_band_from_the_kernel_band(tiny_set):
    _, v = tiny_set
    pred = v["pred"]
    assert pred.rung == "calibrated" and pred.band is None
    # a rate band: the slow edge (high_s) gives the low rate
    assert pred.low < pred.predicted < pred.high


def test_coverage_counts_inside_below_above_and_no_band(tiny_set):
    folder, v = tiny_set
    out = pe.report(folder, max_requests=4)
    by_id = {r["id"]: r for r in out["rows"]}
    assert by_id["tiny-inside"]["low"] <= v["inside"] <= by_id["tiny-inside"]["high"]
    assert v["below"] < by_id["tiny-below"]["low"]
    assert v["above"] > by_id["tiny-above"]["high"]
    ds = by_id["tiny-datasheet"]
    assert ds["status"] == "predicted" and ds["rung"] == "datasheet"
    assert ds["low"] is None and ds["high"] is None and ds["band"] == pe.NO_BAND_DATASHEET

    groups = {s["group"]: s for s in out["summary"]}
    h100 = groups["gemm x h100-sxm"]
    assert (h100["n_band"], h100["n_in_band"], h100["n_below_band"], h100["n_above_band"]) == (
        3,
        1,
        1,
        1,
    )
    assert h100["n_no_band"] == 0
    assert h100["band_coverage"] == pytest.approx(1 / 3)
    width = v["pred"].high / v["pred"].low - 1.0
    assert h100["median_band_width"] == pytest.approx(width)  # same shape: same band width
    a100 = groups["gemm x a100-80gb-sxm"]
    assert (a100["n_band"], a100["n_no_band"]) == (0, 1)
    assert a100["band_coverage"] is None and a100["median_band_width"] is None
    everything = groups["all"]
    assert (everything["n_band"], everything["n_in_band"], everything["n_no_band"]) == (3, 1, 1)
    assert "datasheet-rung prediction's band is the transfer band" in out["band_note"]


def test_cli_json_and_table_show_coverage(tiny_set):
    folder, _ = tiny_set
    res = runner.invoke(app, ["validate", "--published", str(folder), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    groups = {s["group"]: s for s in data["summary"]}
    assert groups["all"]["band_coverage"] == pytest.approx(1 / 3)
    assert {"low", "high", "band"} <= set(data["rows"][0])

    res = runner.invoke(app, ["validate", "--published", str(folder)], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "in band" in res.output and "no band" in res.output
    assert "33.3% (1 / 1)" in res.output  # coverage (below / above)
    assert "datasheet-rung prediction's band is the transfer band" in " ".join(res.output.split())


def test_a_not_predictable_row_has_no_band():
    p = pe.Prediction(
        "x", "gemm", None, None, "gemm_tflops", "TFLOP/s", 1.0, status="not predictable: x"
    )
    assert p.in_band is None
    assert pe.band_coverage([p])["n_band"] == 0 and pe.band_coverage([p])["n_no_band"] == 0
