"""Results as tables (issue 16): to_records / to_frame / _repr_html_ on every result type, CSV
and Parquet, `hwsim sweep`, hwsim.plan on a single-deployment scenario, the example notebook."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import hwsim
from hwsim.errors import HwsimError
from hwsim.tables import broadcast_records, csv_cell, flatten, html_table, to_csv

ROOT = Path(__file__).resolve().parent.parent
SINGLE = ROOT / "examples" / "llama2-7b-a100.yaml"
BATCH, PROMPT = np.array([1, 8, 64])[:, None], np.array([512, 4096])


@pytest.fixture(scope="module")
def grid():
    return hwsim.estimate("llama-3.1-8b", "h100-sxm", batch=BATCH, prompt_len=PROMPT)


@pytest.fixture(scope="module")
def scalar():
    return hwsim.estimate("llama-3.1-8b", "h100-sxm", batch=8, prompt_len=1024, gen_len=64)


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


# -- Estimate.to_records -----------------------------------------------------------------------


def test_records_of_a_grid_equal_the_arrays_point_by_point(grid):
    records = grid.to_records()
    assert grid.shape == (3, 2) and len(records) == 6
    flat = grid.flat()
    for record, index in zip(records, np.ndindex(*grid.shape)):
        for key, value in flat.items():
            if isinstance(value, np.ndarray):
                expected = np.broadcast_to(value, grid.shape)[index].item()
            elif isinstance(value, list):
                expected = "+".join(map(str, value))
            else:
                expected = value
            assert same(record[key], expected), (key, index)
        # the point's own inputs
        assert record["config.batch"] == BATCH[index[0], 0]
        assert record["config.prompt_len"] == PROMPT[index[1]]


def test_record_columns_are_the_dotted_keys_with_plain_values(grid):
    records = grid.to_records()
    keys = list(records[0])
    assert keys == list(grid.flat())
    assert all(list(r) == keys for r in records)
    for key in (
        "config.model",
        "config.deployment.tp",
        "config.batch",
        "config.prompt_len",
        "config.gen_len",
        "latency.ttft_s",
        "latency.tpot_s",
        "memory.kv_cache_bytes",
        "capacity.binding_constraint",
        "prefill.bound",
    ):
        assert key in keys
    plain = (type(None), bool, int, float, str)
    assert all(isinstance(v, plain) for r in records for v in r.values())


def test_a_scalar_estimate_is_one_record(scalar):
    (record,) = scalar.to_records()
    assert scalar.shape == () and not scalar.is_sweep
    assert record["latency.ttft_s"] == scalar.latency.ttft_s
    assert record["config.batch"] == 8 and record["config.layers_per_stage"] == "32"


def test_broadcast_records_repeat_scalars_and_refuse_mismatched_shapes():
    rows = broadcast_records({"a": np.arange(3), "b": "x", "c": np.float64(2.0)})
    assert rows == [{"a": i, "b": "x", "c": 2.0} for i in range(3)]
    assert broadcast_records({"a": 1}) == [{"a": 1}]
    with pytest.raises(HwsimError, match="do not broadcast"):
        broadcast_records({"a": np.arange(3), "b": np.arange(2)})
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}


# -- frames and CSV ----------------------------------------------------------------------------


def test_to_frame_has_one_row_per_point_and_one_column_per_key(grid, scalar):
    pd = pytest.importorskip("pandas")
    frame = grid.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == (6, len(grid.flat()))
    assert list(frame.columns) == list(grid.flat())
    assert np.allclose(frame["latency.tpot_s"].to_numpy(), grid.latency.tpot_s.ravel())
    assert scalar.to_frame().shape == (1, len(scalar.flat()))
    # what the issue reports failing: a frame straight from the dotted keys
    assert pd.DataFrame(grid.to_records()).shape == frame.shape


def test_to_frame_without_pandas_says_how_to_install_it(grid, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install pandas.*hwsim\[notebook\]"):
        grid.to_frame()


def test_csv_parses_back_to_the_records(grid):
    records = grid.to_records()
    parsed = list(csv.DictReader(io.StringIO(to_csv(records))))
    assert len(parsed) == len(records)
    for row, record in zip(parsed, records):
        assert list(row) == list(record)
        assert row == {k: csv_cell(v) for k, v in record.items()}
        for key, value in record.items():
            if isinstance(value, float):  # floats are written exactly
                assert same(float(row[key]), value), key
            elif value is None:
                assert row[key] == ""


# -- notebook views ----------------------------------------------------------------------------


def test_html_of_a_scalar_and_an_array_estimate(scalar, grid):
    assert "<table" in scalar._repr_html_()
    text = grid._repr_html_()  # the README's array sweep raised a TypeError here
    assert "<table" in text and text.count("<tr>") == 1 + 6
    assert "3x2 points" in text


def test_html_of_a_large_sweep_is_capped(monkeypatch):
    big = hwsim.estimate("llama-3.1-8b", "h100-sxm", batch=np.arange(1, 121))
    text = big._repr_html_()
    assert text.count("<tr>") == 1 + 50 and "first 50 of 120 rows" in text
    assert len(big.to_records()) == 120


def test_rich_view_of_an_array_estimate(grid):
    from rich.console import Console

    console = Console(width=250, record=True, file=io.StringIO())
    console.print(grid)
    assert "ttft_s" in console.export_text()


def test_context_sweep_records_frame_and_html():
    ctx = hwsim.context_sweep("llama-3.1-8b", "h100-sxm", [1_000, 32_000], variants=["mamba-2.8b"])
    records = ctx.to_records()
    assert len(records) == 4  # variants x lengths
    assert [r["variant"] for r in records] == list(ctx.variant)
    assert [r["ttft_s"] for r in records] == ctx.ttft_s.tolist()
    assert records[0]["hardware"] == "h100-sxm" and records[0]["deployment.tp"] == 1
    text = ctx._repr_html_()
    assert "<table" in text and "mamba-2.8b" in text
    pd = pytest.importorskip("pandas")
    assert isinstance(ctx.to_frame(), pd.DataFrame) and ctx.to_frame().shape[0] == 4


def test_kernel_time_records_frame_and_html():
    kt = hwsim.kernel_time("h100-sxm", "gemm", m=4096, n=4096, k=4096, dtype="bf16")
    (record,) = kt.to_records()
    assert record["time_s"] == kt.time_s and record["params.m"] == 4096
    assert record["rung"] == kt.rung and "refused.measured" in record
    assert "<table" in kt._repr_html_()
    pytest.importorskip("pandas")
    assert kt.to_frame().shape == (1, len(record))


def small_plan_scenario() -> dict:
    return {
        "name": "tables",
        "model": "llama-3.1-70b",
        "hardware": "h100-sxm",
        "traffic": {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 5}},
            "prompt_tokens": {"kind": "fixed", "value": 1000},
            "output_tokens": {"kind": "fixed", "value": 200},
        },
        "slo": {"tpot_p95_s": "50 ms"},
        "candidates": {"hardware": ["h100-sxm"], "tp": [1, 4]},
        "serving": {"simulate_top": 0},
    }


def test_plan_result_has_one_row_per_candidate_with_the_reason():
    result = hwsim.plan(small_plan_scenario(), workers=1)
    records = result.to_records()
    assert len(records) == len(result.feasible) + len(result.pruned) == 2
    feasible, pruned = records
    assert feasible["rank"] == 1 and feasible["feasible"] and feasible["candidate.tp"] == 4
    assert feasible["gpus"] == result.best.gpus
    assert pruned["rank"] is None and not pruned["feasible"]
    assert "weights do not fit" in pruned["reason"]
    text = result._repr_html_()
    assert "<table" in text and "weights do not fit" in text
    pytest.importorskip("pandas")
    assert result.to_frame().shape[0] == 2


# -- hwsim.plan on one deployment --------------------------------------------------------------


def test_plan_of_a_single_deployment_scenario_gives_the_cli_numbers():
    from hwsim.cli.common import to_jsonable
    from hwsim.cli.main import app
    from hwsim.planner.plan import DeploymentPlan, PlanResult

    result = hwsim.plan(SINGLE)
    assert isinstance(result, DeploymentPlan)
    assert isinstance(result, PlanResult) and result.best is None
    cli = CliRunner().invoke(app, ["plan", str(SINGLE), "--json"])
    assert cli.exit_code == 0, cli.output
    printed = json.loads(cli.stdout)
    assert printed["latency"]["ttft_s"] == result.estimate.latency.ttft_s
    assert printed["latency"]["tpot_s"] == result.latency.tpot_s  # reads through
    assert printed["capacity"]["users_per_gpu"] == result.capacity.users_per_gpu
    printed.pop("schema_version")
    assert to_jsonable(result.to_dict()) == printed
    assert "<table" in result._repr_html_()
    assert result.to_records() == result.estimate.to_records()


def test_plan_of_a_single_deployment_refuses_planning_options():
    with pytest.raises(HwsimError, match="only apply to capacity planning"):
        hwsim.plan(SINGLE, simulate_top=2)


# -- hwsim sweep -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app():
    from hwsim.cli import sweep

    app = typer.Typer()
    sweep.register(app)

    @app.callback()
    def _root() -> None:  # a group, so the command is invoked by name as under `hwsim`
        pass

    return app


GRID = [
    "sweep",
    "--model", "llama-3.1-8b,mistral-7b",
    "--hardware", "h100-sxm,mi300x",
    "--tp", "1,3",
    "--batch", "1,8",
    "--prompt-len", "512,4k",
    "--gen-len", "128",
]  # fmt: skip


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_sweep_writes_one_row_per_point_and_error_rows(app, tmp_path):
    out = tmp_path / "sweep.csv"
    result = CliRunner().invoke(app, [*GRID, "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_csv(out.read_text())
    assert len(rows) == 2 * 2 * 2 * 2 * 2 * 1  # models x hardware x tp x batch x prompt x gen
    columns = list(rows[0])
    assert columns[:3] == ["model", "hardware", "layout"] and columns[-1] == "error"
    assert {"config.batch", "latency.ttft_s", "config.deployment.tp"} <= set(columns)
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 16 and all(r["config.deployment.tp"] == "3" for r in bad)
    assert all("does not divide" in r["error"] and r["latency.ttft_s"] == "" for r in bad)
    # a priced row equals the scalar estimate of its point
    row = next(
        r
        for r in rows
        if (r["model"], r["hardware"], r["config.deployment.tp"]) == ("mistral-7b", "mi300x", "1")
        and (r["config.batch"], r["config.prompt_len"]) == ("8.0", "4000.0")
    )
    est = hwsim.estimate("mistral-7b", "mi300x", batch=8, prompt_len=4000, gen_len=128)
    assert float(row["latency.ttft_s"]) == pytest.approx(est.latency.ttft_s, rel=1e-12)
    assert float(row["memory.total_bytes"]) == pytest.approx(est.memory.total_bytes, rel=1e-12)
    assert row["layout"] == "tp1 pp1 w:bf16 kv:bf16" and row["error"] == ""


def test_sweep_rows_for_weights_that_do_not_fit_and_points_that_cannot_run(app):
    args = ["sweep", "--model", "llama-3.1-70b,gpt-3-175b", "--hardware", "h100-sxm"]
    args += ["--tp", "1,8", "--prompt-len", "512,4096", "--gen-len", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {(r["model"], r["config.deployment.tp"], r["config.prompt_len"]): r for r in read_csv(
        result.stdout
    )}  # fmt: skip
    assert len(rows) == 8
    assert "weights need" in rows["llama-3.1-70b", "1", "512.0"]["error"]
    assert rows["llama-3.1-70b", "8", "4096.0"]["error"] == ""
    # gpt-3's learned positions stop at 2,048: the 512-token point runs, the 4,096 one cannot
    assert rows["gpt-3-175b", "8", "512.0"]["error"] == ""
    assert "cannot run" in rows["gpt-3-175b", "8", "4096.0"]["error"]


def test_sweep_dtypes_multiply_the_layouts(app):
    args = ["sweep", "--model", "llama-3.1-8b", "--hardware", "h100-sxm"]
    args += ["--weight-dtype", "bf16,fp8", "--kv-dtype", "bf16,fp8", "--gen-len", "0,16"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = read_csv(result.stdout)
    assert len(rows) == 2 * 2 * 2
    assert {r["layout"] for r in rows} == {
        f"tp1 pp1 w:{w} kv:{k}" for w in ("bf16", "fp8") for k in ("bf16", "fp8")
    }
    assert {r["config.gen_len"] for r in rows} == {"0.0", "16.0"}


def test_sweep_refuses_to_overwrite_without_force(app, tmp_path):
    out = tmp_path / "sweep.csv"
    out.write_text("keep me\n")
    args = ["sweep", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--out", str(out)]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "already exists" in refused.output
    assert out.read_text() == "keep me\n"
    forced = CliRunner().invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert len(read_csv(out.read_text())) == 1


def test_sweep_refuses_unknown_suffixes_and_bad_lists(app, tmp_path):
    base = ["sweep", "--model", "llama-3.1-8b", "--hardware", "h100-sxm"]
    bad = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "x.xlsx")])
    assert bad.exit_code == 2 and ".csv or .parquet" in bad.output
    bad = CliRunner().invoke(app, [*base, "--batch", "0"])
    assert bad.exit_code == 2 and "--batch" in bad.output
    bad = CliRunner().invoke(app, [*base, "--kv-dtype", "fp7"])
    assert bad.exit_code == 2 and "fp7" in bad.output
    # a typo is the user's mistake, not a row with an error
    bad = CliRunner().invoke(app, ["sweep", "--model", "llama-3.1-8bx", "--hardware", "h100-sxm"])
    assert bad.exit_code == 2 and "llama-3.1-8bx" in bad.output


def test_sweep_parquet_needs_pyarrow(app, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    out = tmp_path / "sweep.parquet"
    args = ["sweep", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "pip install pyarrow" in result.output
    assert not out.exists()


def test_sweep_writes_parquet(app, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    out = tmp_path / "sweep.parquet"
    result = CliRunner().invoke(app, [*GRID, "--out", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert frame.shape[0] == 32 and frame["error"].notna().sum() == 16
    assert list(frame.columns)[-1] == "error"


def test_html_table_escapes_and_formats():
    text = html_table([{"a_s": 0.002, "b": "<x>", "c_bytes": 2e9, "ok": True}], notes=["n<1"])
    assert "2.00 ms" in text and "&lt;x&gt;" in text and "2.00 GB" in text and "yes" in text
    assert "n&lt;1" in text


# -- the example notebook ----------------------------------------------------------------------


def test_the_example_notebook_runs_without_errors():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(ROOT / "examples" / "notebook.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError on a failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(shown) >= 4 and all("<table" in o["data"]["text/html"] for o in shown)
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot
