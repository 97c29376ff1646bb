"""EngineStepModel's fast path against its reference (the op builders merged and priced by
``time_op`` every iteration): random iterations on every kind of shipped model, datasheet and
calibrated hardware, tp and pp; the exact per-chunk fallback; the declines to the reference."""

import math
import zlib

import numpy as np
import pytest

import hwsim.planner.compiled_step as compiled_step
import hwsim.planner.step_fit as step_fit
from hwsim.errors import InfeasibleError
from hwsim.inference.deployment import make_deployment
from hwsim.planner.step_model import CONTEXT_QUANTUM, EngineStepModel
from hwsim.serving import SchedulerConfig, TrafficSpec, sample_requests, simulate

RTOL = 1e-3  # the contract: the fast path's iteration times equal the reference's to 0.1%

MODELS = [
    "llama-3.1-8b",  # dense GQA
    "mixtral-8x7b",  # MoE
    "deepseek-v3",  # MLA + MoE (the decode and prefill op lists differ in length)
    "mistral-7b",  # sliding window
    "gemma-2-9b",  # local / global
    "gemma-3-27b",
    "jamba-1.5-mini",  # attention + Mamba hybrid, MoE
    "mamba-2.8b",  # state space
    "mamba2-2.7b",  # SSD (chunked scan)
    "rwkv-7",
    "falcon-40b",  # parallel attention + MLP
]
HARDWARE = ["h100-sxm", "h100-sxm-calibrated", "mi300x"]
PARALLEL = [{}, {"tp": 2}, {"pp": 2}]


def random_iterations(rng: np.random.Generator, n: int):
    """(new_tokens, context_after) int64 arrays: decode-only, prefill-only and mixed, chunks
    of 2..~8k tokens, new prompts (context == chunk) and chunked-prefill continuations
    (context > chunk), the odd 1-token chunk (a decode to the model), shuffled."""
    for i in range(n):
        kind = i % 3  # 0 decode only, 1 prefill only, 2 mixed
        n_dec = 0 if kind == 1 else int(rng.integers(1, 257))
        k = 0 if kind == 0 else int(rng.integers(1, 4))
        chunk = np.round(np.exp(rng.uniform(math.log(2), math.log(8192), k))).astype(np.int64)
        if k and rng.random() < 0.1:
            chunk[0] = 1
        cont = rng.random(k) < 0.5
        ctx = chunk + np.where(cont, rng.integers(1, 60_000, k), 0)
        dec_ctx = rng.integers(1, 40_000, n_dec)
        new = np.concatenate([np.ones(n_dec, dtype=np.int64), chunk])
        after = np.concatenate([dec_ctx, ctx]).astype(np.int64)
        order = rng.permutation(len(new))
        yield new[order], after[order]


def max_relative_difference(model: EngineStepModel, iterations) -> float:
    worst = 0.0
    for new, after in iterations:
        fast = model.iteration_time_s(new, after)
        ref = model._reference_iteration_time_s(new, after)
        assert math.isfinite(fast) and fast > 0
        worst = max(worst, abs(fast - ref) / ref)
    return worst


def deployment_or_skip(model: str, hardware: str, parallel: dict):
    try:
        return make_deployment(model, hardware, **parallel)
    except InfeasibleError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("parallel", PARALLEL, ids=["tp1", "tp2", "pp2"])
@pytest.mark.parametrize("hardware", HARDWARE)
@pytest.mark.parametrize("model", MODELS)
def test_fast_path_equals_reference(model, hardware, parallel):
    dep = deployment_or_skip(model, hardware, parallel)
    sm = EngineStepModel(dep)
    assert sm.fast_path_active, sm.fast_path_note
    seed = zlib.crc32(f"{model} {hardware} {parallel}".encode())
    worst = max_relative_difference(sm, random_iterations(np.random.default_rng(seed), 48))
    assert worst <= RTOL  # observed: ~1e-13 (floating-point order only)


@pytest.mark.parametrize(
    "model", ["bigbird-roberta-large", "longformer-large", "sparse-transformer-enwik8"]
)
def test_other_attention_patterns(model):
    sm = EngineStepModel(make_deployment(model, "h100-sxm-calibrated"))
    assert sm.fast_path_active, sm.fast_path_note
    assert max_relative_difference(sm, random_iterations(np.random.default_rng(3), 18)) <= RTOL


def test_exact_fallback_when_no_field_fits(monkeypatch):
    """With no feature combination accepted, every varying field is evaluated exactly (prefill
    per chunk by the op builders, the decode part from the reference's decode ops)."""
    monkeypatch.setattr(step_fit, "_fit", lambda *args: None)
    for name, hardware in (("gemma-2-9b", "h100-sxm-calibrated"), ("jamba-1.5-mini", "mi300x")):
        sm = EngineStepModel(make_deployment(name, hardware, tp=2))
        assert sm.fast_path_active, sm.fast_path_note
        fast = sm._fast
        assert not fast.decode_fitted and fast.mixed.exact and not fast.mixed.folded
        rng = np.random.default_rng(11)
        assert max_relative_difference(sm, random_iterations(rng, 18)) <= RTOL


def test_same_chunk_twice_and_repeated_shapes():
    sm = EngineStepModel(make_deployment("mixtral-8x7b", "h100-sxm", tp=2))
    new = np.array([1, 1, 1, 700, 700, 1], dtype=np.int64)
    after = np.array([300, 5000, 64, 700, 4000, 2], dtype=np.int64)
    for _ in range(3):  # memoised decode parts give the same answer
        assert sm.iteration_time_s(new, after) == pytest.approx(
            sm._reference_iteration_time_s(new, after), rel=1e-12
        )


def test_inputs_outside_the_fast_path_go_to_the_reference():
    sm = EngineStepModel(make_deployment("llama-3.1-8b", "h100-sxm"))
    ref = sm._reference_iteration_time_s
    cases = [
        ([1, 1, 512], [900, 17, 512]),  # lists
        (np.array([1.0, 300.0]), np.array([20.0, 300.0])),  # floats
        (np.array([1, 1], dtype=np.int32), np.array([40, 4000], dtype=np.int32)),
        (np.array([1, 1 << 18]), np.array([5, 1 << 18])),  # a chunk beyond the probed range
        (np.array([1, 0, 3]), np.array([10, 5, 3])),  # a 0-token entry
    ]
    for new, after in cases:
        assert sm.iteration_time_s(new, after) == pytest.approx(ref(new, after), rel=1e-12)
    assert sm.iteration_time_s(np.array([], dtype=np.int64), np.array([], dtype=np.int64)) == 0.0


def test_decode_only_is_the_memoised_reference_step():
    sm = EngineStepModel(make_deployment("mistral-7b", "h100-sxm-calibrated"))
    ctx = np.array([4090, 4100, 4111, 9], dtype=np.int64)
    q = max(CONTEXT_QUANTUM, round(ctx.mean() / CONTEXT_QUANTUM) * CONTEXT_QUANTUM)
    windowed = round(np.minimum(ctx, 4096).mean() / CONTEXT_QUANTUM) * CONTEXT_QUANTUM
    assert sm.decode_contexts(ctx) == (q, (windowed,))
    want = sm._decode_time(len(ctx), q, (windowed,))
    assert sm.iteration_time_s(np.ones(4, dtype=np.int64), ctx) == pytest.approx(want, rel=1e-12)


def test_failed_self_check_leaves_the_reference(monkeypatch):
    monkeypatch.setattr(compiled_step, "SELF_CHECK_RTOL", -1.0)
    sm = EngineStepModel(make_deployment("llama-3.1-8b", "h100-sxm"))
    assert not sm.fast_path_active and "self-check" in sm.fast_path_note
    new, after = np.array([1, 1, 300]), np.array([50, 60, 300])
    assert sm.iteration_time_s(new, after) == sm._reference_iteration_time_s(new, after)
    off = EngineStepModel(make_deployment("llama-3.1-8b", "h100-sxm"), fast=False)
    assert not off.fast_path_active
    assert off.iteration_time_s(new, after) == sm._reference_iteration_time_s(new, after)


def test_simulation_with_fast_and_reference_step_models_agree():
    dep = make_deployment("gemma-2-9b", "h100-sxm-calibrated")
    spec = TrafficSpec.model_validate(
        {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 8.0}},
            "prompt_tokens": {"kind": "lognormal", "mean": 1500, "p95": 4000},
            "output_tokens": {"kind": "lognormal", "mean": 60, "p95": 150},
        }
    )
    requests = sample_requests(spec, 150, seed=4)
    config = SchedulerConfig(kv_capacity_tokens=200_000, max_num_batched_tokens=2048)
    fast = simulate(requests, EngineStepModel(dep), config)
    ref = simulate(requests, EngineStepModel(dep, fast=False), config)
    assert len(fast.trace) == len(ref.trace)
    np.testing.assert_allclose(fast.trace.duration_s, ref.trace.duration_s, rtol=1e-9)
    np.testing.assert_allclose(fast.records.finish_s, ref.records.finish_s, rtol=1e-9)


@pytest.mark.parametrize("model", ["llama-3.1-8b", "mixtral-8x7b", "gemma-2-9b"])
def test_the_decode_only_entry_equals_the_split_one(model):
    """decode_only_time_s(n, sum) is split_iteration_time_s of n decodes alone; a model with
    windowed layers (gemma-2) offers none: its decode part needs the contexts."""
    sm = EngineStepModel(make_deployment(model, "h100-sxm"))
    if sm.windows:
        assert sm.decode_only_time_s is None
        return
    assert sm.decode_only_time_s is not None
    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(1, 257))
        after = rng.integers(2, 30_000, n)
        got = sm.decode_only_time_s(n, int(after.sum()))
        assert got == sm.split_iteration_time_s(np.ones(n, np.int64), after, n, int(after.sum()))


@pytest.mark.parametrize("model", ["llama-3.1-8b", "mixtral-8x7b", "gemma-2-9b"])
def test_split_iteration_time_equals_iteration_time(model):
    """The simulator's entry point (decodes first, their context sum given) returns exactly
    what iteration_time_s returns, 1-token chunks (decodes to the model) included."""
    sm = EngineStepModel(make_deployment(model, "h100-sxm"))
    rng = np.random.default_rng(11)
    for new, after in random_iterations(rng, 60):
        order = np.argsort(new != 1, kind="stable")  # the decodes first, as the engine has them
        new, after = new[order], after[order]
        first_chunk = int(np.argmax(new != 1)) if np.any(new != 1) else len(new)
        if rng.random() < 0.3:  # a 1-token chunk after the decodes
            new[first_chunk:] = np.where(
                rng.random(len(new) - first_chunk) < 0.3, 1, new[first_chunk:]
            )
        n_dec = first_chunk
        dec_sum = int(after[:n_dec].sum())
        assert sm.split_iteration_time_s(new, after, n_dec, dec_sum) == sm.iteration_time_s(
            new, after
        )
