"""``hwsim train --report``: the sweep's points are the API's, the step parts add up to the step,
activations obey the recomputation order, and existing files are never overwritten."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hwsim.cli.main import app
from hwsim.training import train
from hwsim.training.report import memory_sweep, seq_len_sweep, step_parts_s

SETTINGS = dict(tp=2, micro_batch=1, global_batch=16, seq_len=2048, attention="naive")


def test_sweep_lengths_are_powers_of_two_with_the_runs_own_length():
    lengths = seq_len_sweep(3000)
    assert 3000 in lengths and lengths[0] == 512 and lengths[-1] == 1 << 16
    assert np.all(np.diff(lengths) > 0)


def test_each_sweep_point_is_the_training_estimate_at_that_length_and_policy():
    r = train("llama-3.1-8b", "h100-sxm", 16, **SETTINGS)
    sweep = memory_sweep("llama-3.1-8b", "h100-sxm", 16, r.layout)
    i = int(np.flatnonzero(sweep.seq_lens == 4096)[0])
    direct = train("llama-3.1-8b", "h100-sxm", 16, **{**SETTINGS, "seq_len": 4096,
                                                      "recompute": "full"})  # fmt: skip
    assert sweep.activations_bytes["full"][i] == direct.memory.activations_bytes
    # naive attention stores the score matrices: full <= selective <= none, strictly here
    none, sel, full = (sweep.activations_bytes[p] for p in ("none", "selective", "full"))
    assert np.all(full < sel) and np.all(sel < none)
    # model states do not depend on the sequence length
    assert np.ptp(sweep.model_states_bytes["none"]) == 0.0


def test_step_parts_add_up_to_the_step_time():
    r = train("llama-3.1-70b", "h100-sxm", 64, tp=8, pp=4, micro_batch=1, global_batch=64,
              seq_len=4096, recompute="selective", sequence_parallel=True)  # fmt: skip
    parts = dict(step_parts_s(r))
    assert sum(parts.values()) == pytest.approx(r.step.time_s, rel=1e-12)
    assert parts["pipeline bubble"] == pytest.approx(r.step.bubble_s)
    assert parts["forward"] == pytest.approx(r.step.forward_s * r.step.micro_batches)


def test_report_writes_its_files_and_never_overwrites_without_force(tmp_path):
    out = tmp_path / "rep"
    args = [
        "train",
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "h100-sxm",
        "--gpus",
        "8",
        "--tp",
        "2",
        "--global-batch",
        "8",
        "--seq-len",
        "2048",
        "--report",
        str(out),
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    data = json.loads((out / "training.json").read_text())
    assert data["result"]["step"]["time_s"] > 0
    assert (out / "memory_vs_seq_len.png").read_bytes()[:4] == b"\x89PNG"
    before = (out / "training.json").read_bytes()
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "would overwrite" in again.output
    assert (out / "training.json").read_bytes() == before
    forced = CliRunner().invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
