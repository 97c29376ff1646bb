"""Position limits per variant (issue 17): bounded distances are not extrapolation, a learned
table cannot be run past, every RoPE scaling type says what it asks of the weights; and the
`context` sweep's "does not fit" flag and cost per 1M tokens."""

from __future__ import annotations

import typing

import numpy as np
import pytest
from typer.testing import CliRunner

from hwsim import estimate
from hwsim.cli.main import app
from hwsim.errors import InfeasibleError
from hwsim.inference.context import context_sweep
from hwsim.model.load import load_model
from hwsim.model.mixers import build_mixer
from hwsim.model.mixers.masks import mask_for
from hwsim.model.positions import (
    SCALING_NOTES,
    max_query_key_distance,
    position_note,
    position_status,
)
from hwsim.planner.plan import plan
from hwsim.profiles.model import RopeScaling

HW = "h100-sxm"
runner = CliRunner()


def _rows(model, lengths, **kw):
    sweep = context_sweep(model, HW, lengths, **kw)
    return sweep.select(sweep.variants[0])


# -- distances, brute force -------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "sliding_window", "window": 7},
        {"kind": "streaming", "n_sink": 2, "window": 5},
        {"kind": "longformer", "window": 6, "dilation": 2, "causal": False},
        {"kind": "longformer", "window": 4, "causal": True},
    ],
    ids=lambda s: s["kind"],
)
def test_bounded_distance_is_the_widest_pair_of_the_mask(spec):
    """The largest |i - j| of the mask's pairs, once the sequence is long enough to show it.
    StreamingLLM's distance is in cache positions (§3.2): sink + window slots, so the
    brute-force count is over slots, min(i+1, T) keys from 0 to T-1."""
    mixer = build_mixer(spec, where="test")
    n = 64
    if spec["kind"] == "streaming":
        widest = spec["n_sink"] + spec["window"] - 1  # the cache's first slot to its last
    else:
        i, j = np.nonzero(mask_for(mixer, n))
        widest = int(np.abs(i - j).max())
    assert mixer.max_query_key_distance() == widest


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "attention", "causal": True},
        {"kind": "longformer", "window": 4, "n_global": 1},
        {"kind": "sparse_strided", "stride": 4},
        {"kind": "bigbird", "block_size": 2},
    ],
    ids=lambda s: s["kind"],
)
def test_unbounded_patterns_reach_farther_as_the_sequence_grows(spec):
    mixer = build_mixer(spec, where="test")

    def widest(n: int) -> int:
        i, j = np.nonzero(mask_for(mixer, n))
        return int(np.abs(i - j).max())

    assert widest(32) < widest(64) < widest(128)  # no window caps the distance
    assert mixer.max_query_key_distance() == float("inf")


# -- statuses of shipped models ----------------------------------------------------------------


def test_a_window_on_every_layer_is_bounded_past_the_supported_context():
    """Mistral 7B: 4,096-key window on all 32 layers, 32,768 positions (config.json)."""
    m = load_model("mistral-7b")
    assert max_query_key_distance(m) == 4095
    assert position_status(m, [32768, 32769, 1_000_000]).tolist() == [
        "within",
        "bounded",
        "bounded",
    ]
    est = estimate(m, HW, prompt_len=100_000, gen_len=8)
    assert est.context.position_status == "bounded" and not est.context.extrapolation


def test_one_global_layer_makes_a_window_model_extrapolate():
    """Gemma 2: local 4,096 and global layers alternate, 8,192 positions."""
    m = load_model("gemma-2-9b")
    assert position_status(m, [8192, 8193]).tolist() == ["within", "extrapolation"]


def test_streaming_variant_of_llama_is_bounded_at_a_million_tokens():
    r = context_sweep(
        "llama-2-7b", HW, [4096, 1_000_000], variants=["streaming:window=1020,n_sink=4"]
    )
    base, stream = (r.select(v) for v in r.variants)
    assert base["position_status"].tolist() == ["within", "extrapolation"]
    assert stream["position_status"].tolist() == ["within", "bounded"]
    assert not stream["extrapolation"].any()
    assert "1,023 apart" in stream["position_note"][0]  # 4 sinks + 1,020 recent, minus 1


def test_recurrent_layers_are_not_bounded():
    """Mamba's state carries the whole prefix: past its trained length is still untested."""
    m = load_model("mamba-2.8b")
    assert max_query_key_distance(m) == float("inf")
    assert position_status(m, [m.max_context_tokens + 1]).tolist() == ["extrapolation"]


def test_learned_table_cannot_run_even_with_a_window():
    r = context_sweep("gpt-3-175b", HW, [4096], variants=["sliding_window:window=512"], tp=8)
    for v in r.variants:
        assert r.select(v)["position_status"].tolist() == ["cannot_run"]


@pytest.mark.parametrize("kind", typing.get_args(RopeScaling.model_fields["type"].annotation))
def test_every_scaling_type_has_a_note_with_a_source(kind):
    note = SCALING_NOTES[kind]
    assert "arXiv" in note and ("fine-tun" in note or "trained" in note)


def test_position_note_names_the_scaling_and_its_fine_tuning():
    note = position_note(load_model("gemma-3-27b"))  # linear x8 of 32,768 (Gemma 3 report)
    assert "x8 'linear' scaling of 32,768 trained tokens" in note
    assert "fine-tuning" in note


# -- refusals ----------------------------------------------------------------------------------


def test_estimate_refuses_a_request_past_the_learned_table():
    assert estimate("gpt-3-175b", HW, tp=8, prompt_len=1920, gen_len=128).memory.fits
    with pytest.raises(InfeasibleError, match="2,049 tokens.*2,048 positions"):
        estimate("gpt-3-175b", HW, tp=8, prompt_len=1921, gen_len=128)
    with pytest.raises(InfeasibleError, match="cannot run"):
        estimate("gpt-3-175b", HW, tp=8, prompt_len=np.array([100, 3000]), gen_len=1)


def test_cli_plan_exits_2_past_the_learned_table():
    argv = ["plan", "--model", "gpt-3-175b", "--hardware", HW, "--tp", "8"]
    ok = runner.invoke(app, [*argv, "--prompt-len", "1000"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, [*argv, "--prompt-len", "4000"])
    assert bad.exit_code == 2
    assert "cannot run" in bad.output and "Traceback" not in bad.output


def test_capacity_plan_refuses_traffic_past_the_learned_table():
    scenario = {
        "model": "gpt-3-175b",
        "hardware": HW,
        "deployment": {"tp": 8},
        "traffic": {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 1}},
            "prompt_tokens": {"kind": "fixed", "value": 2000},
            "output_tokens": {"kind": "fixed", "value": 100},
        },
        "slo": {"ttft_p95_s": 5, "tpot_p95_s": 0.2},
    }
    with pytest.raises(InfeasibleError, match="2,100 tokens"):
        plan(scenario)


# -- context: does not fit, cost per 1M tokens ------------------------------------------------


def test_context_flags_lengths_that_do_not_fit_as_estimate_does():
    """One capacity definition: the sweep's `fits` is `estimate`'s memory.fits at the same
    batch, prompt and generated tokens. By hand: 131,072 B of KV per token (32 layers x 8 KV
    heads x 128 x 2 x 2 B); 8 x 100,016 tokens hold 104.9 GB, past 72 GB usable."""
    lengths = [1000, 100_000, 1_000_000]
    r = _rows("llama-3.1-8b", lengths, batch=8, gen_len=16)
    est = estimate("llama-3.1-8b", HW, batch=8, prompt_len=np.array(lengths), gen_len=16)
    assert r["fits"].tolist() == est.memory.fits.tolist() == [True, False, False]
    np.testing.assert_allclose(r["memory_bytes_per_gpu"], est.memory.total_bytes, rtol=1e-12)


def test_cost_per_million_tokens_by_hand():
    """$2.50 per H100 GPU-hour (profile): a prefill of n tokens at batch b over tp GPUs costs
    2.5 x tp x TTFT / 3600 dollars for b x n tokens; an output token 2.5 x tp x TPOT / 3600 / b."""
    r = _rows("llama-3.1-8b", [8000], batch=2, tp=2)
    prompt = 2.5 * 2 * r["ttft_s"][0] / 3600 / (2 * 8000) * 1e6
    output = 2.5 * 2 * r["tpot_s"][0] / 3600 / 2 * 1e6
    assert r["cost_per_million_prompt_tokens_usd"][0] == pytest.approx(prompt, rel=1e-12)
    assert r["cost_per_million_output_tokens_usd"][0] == pytest.approx(output, rel=1e-12)


def test_context_table_says_does_not_fit_and_cannot_run():
    out = runner.invoke(
        app,
        ["context", "--model", "llama-3.1-8b", "--hardware", HW, "--lengths", "1k,1M"],
    )
    assert out.exit_code == 0, out.output
    assert "does not fit" in out.output and "$ per 1M" in out.output
    out = runner.invoke(
        app,
        ["context", "--model", "gpt-3-175b", "--hardware", HW, "--tp", "8", "--lengths", "4k"],
    )
    assert out.exit_code == 0, out.output
    assert "cannot run" in out.output
