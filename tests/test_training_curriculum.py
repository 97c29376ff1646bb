"""A training run in stages (``curriculum:``): each stage is the single-layout estimate with its
own settings and tokens, the run adds them up; bad stages are clear errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hwsim.cli.train import register
from hwsim.errors import HwsimError
from hwsim.training import train
from hwsim.training.curriculum import train_curriculum
from hwsim.training.spec import TrainingSpec

ROOT = Path(__file__).resolve().parent.parent
BASE = dict(tp=2, attention="flash", dropout=False)
STAGES = [
    {"tokens": 1e9, "seq_len": 4096, "global_batch": 64},
    {"name": "long", "tokens": 2e8, "seq_len": 32768, "cp": 4, "global_batch": 8, "gpus": 32},
]


def test_each_stage_is_the_single_layout_estimate_and_the_run_their_sum():
    spec = TrainingSpec.from_settings(None, **BASE)
    run = train_curriculum("llama-3.1-8b", "h100-sxm", 16, spec, stages=STAGES)
    first = train("llama-3.1-8b", "h100-sxm", 16, total_tokens=1e9, seq_len=4096,
                  global_batch=64, **BASE)  # fmt: skip
    second = train("llama-3.1-8b", "h100-sxm", 32, total_tokens=2e8, seq_len=32768, cp=4,
                   global_batch=8, **BASE)  # fmt: skip
    assert run.stages[0].run.time_s == pytest.approx(first.run.time_s, rel=1e-12)
    assert run.stages[1].run.time_s == pytest.approx(second.run.time_s, rel=1e-12)
    assert run.time_s == pytest.approx(first.run.time_s + second.run.time_s, rel=1e-12)
    assert run.gpu_hours == pytest.approx(first.run.gpu_hours + second.run.gpu_hours)
    assert run.cost_usd == pytest.approx(first.run.cost_usd + second.run.cost_usd)
    assert run.total_tokens == 1.2e9 and run.names == ["stage 1", "long"]


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"seq_len": 4096}, "tokens"),
        ({"tokens": -1}, "tokens"),
        ({"tokens": 1e9, "nodes": 2}, "nodes"),
    ],
)
def test_a_bad_stage_is_named(stage, message):
    with pytest.raises(HwsimError, match=rf"curriculum\[0\].*{message}"):
        train_curriculum("llama-3.1-8b", "h100-sxm", 8, stages=[stage])


def _app():
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        pass

    return app


def test_the_example_curriculum_runs_from_the_cli():
    path = ROOT / "examples" / "train-llama31-405b-curriculum.yaml"
    r = CliRunner().invoke(_app(), ["train", str(path), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert [s["layout"]["cp"] for s in d["stages"]] == [1, 16]
    assert d["run"]["time_s"] == pytest.approx(sum(s["run"]["time_s"] for s in d["stages"]))


def test_total_tokens_and_a_curriculum_together_are_refused(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text(
        "model: llama-3.1-8b\nhardware: h100-sxm\ngpus: 8\ntotal_tokens: 1e12\n"
        "curriculum:\n  - {tokens: 1e12, seq_len: 4096}\n"
    )
    r = CliRunner().invoke(_app(), ["train", str(bad)])
    assert r.exit_code == 2 and "run.yaml" in r.output and "not both" in r.output
