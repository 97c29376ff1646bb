"""``hwsim train`` through a typer app built here (hwsim/cli/main.py lists the module)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hwsim.cli.train import register

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # keeps `train` a sub-command
        pass

    return app


def run(app, *args):
    return CliRunner().invoke(app, ["train", *args])


GPT3 = [
    "--model",
    "gpt-3-175b",
    "--hardware",
    "a100-80gb-sxm",
    "--gpus",
    "64",
    "--tp",
    "8",
    "--pp",
    "8",
    "--global-batch",
    "64",
    "--seq-len",
    "2048",
]


def test_table_by_default(app):
    r = run(app, *GPT3, "--recompute", "selective", "--sequence-parallel")
    assert r.exit_code == 0, r.output
    assert "memory / GPU" in r.output and "MFU" in r.output


def test_json_has_the_issue_keys(app):
    r = run(app, *GPT3, "--recompute", "full", "--zero", "1", "--json", "--total-tokens", "1e9")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["layout"]["recompute"] == "full" and d["layout"]["zero"] == 1
    assert {"params_bytes", "fits", "capacity_bytes"} <= set(d["memory"])
    assert d["run"]["cost_usd"] > 0 and 0 < d["throughput"]["mfu"] < 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tp", "7"], "does not divide the 96 attention heads"),
        (["--dp", "3"], "gpus=64 != tp x cp x pp x dp"),
        (["--global-batch", "3", "--pp", "4"], "not a multiple of micro_batch x dp"),
        (["--recompute", "sometimes"], "recompute"),
    ],
)
def test_impossible_layouts_exit_2(app, extra, message):
    r = run(app, *GPT3, *extra)
    assert r.exit_code == 2
    assert message in r.output


def test_unsupported_family_exits_2(app):
    r = run(app, "--model", "mamba-2.8b", "--hardware", "h100-sxm")
    assert r.exit_code == 2 and "mamba" in r.output


@pytest.mark.parametrize("name", ["train-gpt3-175b-a100.yaml", "train-llama31-8b-h100.yaml"])
def test_example_scenarios_run_and_flags_override(app, name):
    path = str(ROOT / "examples" / name)
    r = run(app, path, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["memory"]["fits"] and d["run"]["time_s"] > 0
    r2 = run(app, path, "--json", "--recompute", "full")
    assert json.loads(r2.output)["layout"]["recompute"] == "full"


def test_scenario_with_unknown_key_is_refused(app, tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("model: gpt-3-175b\nhardware: a100-80gb-sxm\nnodes: 8\n")
    r = run(app, str(bad))
    assert r.exit_code == 2 and "unknown key" in r.output


def test_search_ranks_fitting_layouts_and_explains_pruned(app):
    r = run(
        app,
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "h100-sxm",
        "--gpus",
        "8",
        "--global-batch",
        "32",
        "--seq-len",
        "4096",
        "--search",
        "--json",
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    times = [c["step_time_s"] for c in d["fitting"]]
    assert times and times == sorted(times)
    assert d["pruned"] and all(c["reason"] for c in d["pruned"])
    assert any("GB per GPU" in c["reason"] for c in d["pruned"])
    table = run(
        app,
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "h100-sxm",
        "--gpus",
        "8",
        "--global-batch",
        "32",
        "--seq-len",
        "4096",
        "--search",
        "--top",
        "3",
    )
    assert table.exit_code == 0 and "ranked by step time" in table.output
