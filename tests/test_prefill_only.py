"""Prefill-only jobs (gen_len 0: embedding, scoring, reranking) and encoders through `estimate`,
`plan` and `context` (issue 17), and max context capped by what positions allow."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from hwsim import estimate
from hwsim.cli.main import app
from hwsim.errors import HwsimError
from hwsim.inference.context import context_sweep

HW = "h100-sxm"
runner = CliRunner()


def test_gen_len_zero_is_the_prefill_alone():
    none = estimate("llama-3.1-8b", HW, batch=4, prompt_len=2048, gen_len=0)
    one = estimate("llama-3.1-8b", HW, batch=4, prompt_len=2048, gen_len=1)
    assert none.latency.ttft_s == one.latency.ttft_s  # the same prefill
    assert math.isnan(none.latency.tpot_s) and math.isnan(none.decode.flops_per_token)
    assert none.latency.e2e_s == none.latency.ttft_s
    assert none.throughput.output_tokens_per_s == 0
    assert none.throughput.prompt_tokens_per_s == pytest.approx(4 * 2048 / none.latency.ttft_s)
    # its KV is held for the prompt only: 4 x 2,048 tokens x 131,072 B (Llama 3.1 8B, bf16)
    assert none.memory.kv_cache_bytes == 4 * 2048 * 131_072


def test_a_sweep_mixes_prefill_only_and_decoding_points():
    g = np.array([0, 1, 64])
    sweep = estimate("llama-3.1-8b", HW, prompt_len=1000, gen_len=g, tpot_slo_s=0.05)
    for i, gi in enumerate(g):
        one = estimate("llama-3.1-8b", HW, prompt_len=1000, gen_len=int(gi), tpot_slo_s=0.05)
        for got, want in (
            (sweep.latency.tpot_s[i], one.latency.tpot_s),
            (sweep.latency.e2e_s[i], one.latency.e2e_s),
            (sweep.capacity.users_per_gpu[i], one.capacity.users_per_gpu),
        ):
            np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.isnan(sweep.latency.tpot_s[0]) and np.isfinite(sweep.latency.tpot_s[1:]).all()


def test_an_encoder_is_priced_as_one_forward():
    """No cache; each sequence of the batch holds the workspace of its own forward, so max
    batch = floor((usable - weights) / that workspace)."""
    one = estimate("bigbird-roberta-large", HW, batch=1, prompt_len=4096, gen_len=0)
    eight = estimate("bigbird-roberta-large", HW, batch=8, prompt_len=4096, gen_len=0)
    per_seq = one.memory.activation_workspace_bytes
    assert eight.memory.kv_cache_bytes == 0
    assert eight.memory.activation_workspace_bytes == pytest.approx(8 * per_seq, rel=1e-12)
    room = one.memory.usable_bytes - one.memory.weights_bytes
    assert one.capacity.max_batch == math.floor(room / per_seq)
    assert eight.latency.ttft_s > one.latency.ttft_s
    assert one.capacity.max_context_tokens == 4096  # its learned position table


def test_an_encoders_workspace_is_its_whole_sequence():
    """Bidirectional attention cannot be prefilled in chunks: the workspace keeps growing past
    the 8,192-token chunk a decoder's prefill is cut into."""
    from hwsim.inference.capacity import PREFILL_CHUNK_TOKENS, prefill_workspace_bytes
    from hwsim.inference.deployment import make_deployment
    from hwsim.model.load import load_model

    base = load_model("longformer-large")
    long = base.model_copy(update={"max_position_embeddings": 65536, "id": "longformer-64k"})
    dep = make_deployment(long, HW)
    at_chunk, at_twice = prefill_workspace_bytes(dep, np.array([1.0, 2.0]) * PREFILL_CHUNK_TOKENS)
    assert at_twice >= 1.9 * at_chunk


def test_an_encoder_with_decode_is_refused_with_the_fix():
    with pytest.raises(HwsimError, match="gen_len 0"):
        estimate("longformer-large", HW, prompt_len=1024, gen_len=16)


def test_cli_plan_prices_prefill_only_and_encoders():
    argv = ["plan", "--hardware", HW, "--prompt-len", "1024", "--gen-len", "0"]
    for model in ("llama-3.1-8b", "longformer-large"):
        out = runner.invoke(app, [*argv, "--model", model])
        assert out.exit_code == 0, out.output
        assert "prefill only" in out.output
    bad = runner.invoke(app, ["plan", "--model", "longformer-large", "--hardware", HW])
    assert bad.exit_code == 2 and "gen_len 0" in bad.output


def test_context_with_gen_len_zero_matches_estimate():
    lengths = [1000, 8000]
    r = context_sweep("llama-3.1-8b", HW, lengths, gen_len=0, batch=4)
    est = estimate("llama-3.1-8b", HW, batch=4, prompt_len=np.array(lengths), gen_len=0)
    assert np.isnan(r.tpot_s).all()
    np.testing.assert_allclose(r.users_per_gpu, est.capacity.users_per_gpu, rtol=1e-12)
    np.testing.assert_allclose(r.memory_bytes_per_gpu, est.memory.total_bytes, rtol=1e-12)


@pytest.mark.parametrize(
    ("model", "tp", "cap"),
    [
        ("llama-3.1-70b", 8, 131_072),  # issue 16: printed 1.32e6 before, past its context
        ("gpt-3-175b", 8, 2048),  # learned table
    ],
)
def test_max_context_is_capped_by_what_positions_allow(model, tp, cap):
    assert estimate(model, HW, tp=tp).capacity.max_context_tokens == cap


def test_a_bounded_model_is_capped_by_memory_only():
    """Mistral 7B's 4,096-key windows hold at most 4,096 tokens a layer: memory never runs out,
    and positions never exceed the window, so the cap is the search's 2^30 tokens."""
    assert estimate("mistral-7b", HW).capacity.max_context_tokens == 2.0**30


EMBEDDING_TRAFFIC = {
    "model": "llama-3.1-8b",
    "hardware": HW,
    "traffic": {
        "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 20}},
        "prompt_tokens": {"kind": "lognormal", "mean": 1000, "p95": 2000},
        "output_tokens": 0,
    },
    "slo": {"ttft_p95_s": 0.5},
    "candidates": {"hardware": [HW], "tp": [1]},
    "serving": {"simulate_top": 1},
}


def test_a_capacity_plan_sizes_a_prefill_only_service():
    """output_tokens 0: each request is one prefill, the replica an M/G/1 prefill server;
    the simulator (which finishes such requests at their prefill) agrees on TTFT p95."""
    from hwsim.planner.plan import plan

    result = plan(EMBEDDING_TRAFFIC)
    best = result.best
    assert best is not None and best.replicas == 1
    assert math.isnan(best.tpot_s)
    assert best.e2e_s == best.ttft_p95_s
    # at the planned rate the prefill server is below saturation: rho = lambda t_pf < 1
    t_pf = estimate("llama-3.1-8b", HW, prompt_len=1000, gen_len=0).latency.ttft_s
    assert best.per_replica_rate_per_s * t_pf < 1
    simulated = best.simulated["ttft_p95_s"]
    assert simulated == pytest.approx(best.ttft_p95_at_load_s, rel=0.15)


def test_simulate_finishes_prefill_only_requests_at_their_prefill():
    from hwsim.planner.plan import simulate

    result, _summary = simulate(EMBEDDING_TRAFFIC, 300)
    records = result.records
    assert (records.output_tokens == 0).all()
    assert np.allclose(records.finish_s, records.first_token_s)
    assert np.isnan(records.tpot_s).all()


def test_a_prompt_of_zero_tokens_is_refused():
    from hwsim.errors import ProfileError
    from hwsim.planner.plan import plan

    bad = {**EMBEDDING_TRAFFIC, "traffic": {**EMBEDDING_TRAFFIC["traffic"], "prompt_tokens": 0}}
    with pytest.raises(ProfileError, match="prompt has at least 1 token"):
        plan(bad)
