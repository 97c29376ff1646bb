"""A mixed decode batch priced per sequence: each windowed layer group's keys are
sum_i min(c_i, W), full attention's sum_i c_i (EngineStepModel's reference and fast path).

Hand example: two sequences at contexts 1,000 and 15,000 on a 4,096-token window read
1,000 + 4,096 = 5,096 keys per layer; the batch's mean (8,000) would price 2 x 4,096 = 8,192."""

import math

import numpy as np
import pytest

from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import make_forward
from hwsim.model.graph import forward_ops
from hwsim.planner.step_model import CONTEXT_QUANTUM, EngineStepModel
from hwsim.profiles.loader import load_model_profile
from hwsim.profiles.model import ModelProfile


def streaming_llama():
    """Llama 3.1 8B with StreamingLLM attention: 4 sinks + 2,044 recent tokens (2,048 kept)."""
    d = load_model_profile("llama-3.1-8b").model_dump(exclude_none=True)
    d.update(id="llama-3.1-8b-streaming", mixer={"kind": "streaming", "n_sink": 4, "window": 2044})
    return ModelProfile.model_validate(d)


def total(ops, field: str) -> float:
    """A field summed over a forward's ops, each times how often it runs."""
    return sum(float(np.sum(getattr(op, field))) * op.count for op in ops)


def step_ops(sm: EngineStepModel, contexts) -> list:
    """The decode ops the step model prices a decode-only batch at these contexts with."""
    q, windowed = sm.decode_contexts(contexts)
    return sm._decode_ops(len(contexts), q, windowed)


def per_sequence_ops(dep, contexts) -> list:
    """The decode ops of one sequence per entry, each at its own context (unquantised): the
    per-sequence definition, summed by ``total``."""
    c = np.asarray(contexts, dtype=float)
    return forward_ops(make_forward(dep, "decode", np.ones(c.size), 1.0, c), dep.pp)


def decodes(contexts) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(contexts, dtype=np.int64)
    return np.ones(c.size, dtype=np.int64), c


# -- the hand example ----------------------------------------------------------------------
def test_sliding_window_hand_example():
    dep = make_deployment("mistral-7b", "h100-sxm")  # 32 layers, 8 KV heads x 128, bf16 KV
    sm = EngineStepModel(dep)
    assert sm.windows == (4096,)
    per_key = 32 * 2 * 8 * 128 * 2  # a key's K and V over all layers: 131,072 bytes
    # contexts whose means sit on the quantum: exact
    assert total(step_ops(sm, [992, 15_008]), "kv_read_bytes") == per_key * (992 + 4096)
    # the brief's 1,000 / 15,000: sum_i min(c_i, 4096) = 5,096 keys, to the quantum
    kv = total(step_ops(sm, [1000, 15_000]), "kv_read_bytes")
    assert kv == per_key * 2 * 2544  # mean of min 2,548 rounded to 16
    assert abs(kv / per_key - 5096) <= 2 * CONTEXT_QUANTUM / 2
    assert total(per_sequence_ops(dep, [1000, 15_000]), "kv_read_bytes") == per_key * 5096
    # ... where the mean context prices 8,192 keys, 61% too many
    at_mean = forward_ops(make_forward(dep, "decode", 2.0, 1.0, 8000.0), dep.pp)
    assert total(at_mean, "kv_read_bytes") == per_key * 8192
    assert total(at_mean, "kv_read_bytes") / (per_key * 5096) - 1 == pytest.approx(0.61, abs=0.01)
    # and the iteration time is that of the windowed keys (every layer of Mistral is windowed)
    fast = sm.iteration_time_s(*decodes([1000, 15_000]))
    assert fast == pytest.approx(sm._reference_iteration_time_s(*decodes([1000, 15_000])))
    assert fast == pytest.approx(sm.iteration_time_s(*decodes([1000, 4096])), rel=1e-12)
    assert fast < sm._decode_time(2, 8000, None) - sm.graph_saving_s


def test_local_global_hand_example():
    """Gemma 2 9B: 21 local layers (window 4,096) and 21 global, 8 KV heads x 256, 16 query
    heads: keys and FLOPs per group from each sequence's own context."""
    dep = make_deployment("gemma-2-9b", "h100-sxm")
    sm = EngineStepModel(dep)
    assert sm.windows == (4096,)
    ctx = [992, 15_008]  # mean 8,000, mean of min 2,544: both on the quantum
    local, global_ = 992 + 4096, 992 + 15_008
    ops = step_ops(sm, ctx)
    assert total(ops, "kv_read_bytes") == 2 * 8 * 256 * 2 * 21 * (local + global_)
    core = [op for op in ops if op.name == "attn.core"]
    assert sum(float(op.flops) * op.count for op in core) == 4 * 16 * 256 * 21 * (local + global_)
    assert total(per_sequence_ops(dep, ctx), "kv_read_bytes") == total(ops, "kv_read_bytes")
    # the mean-context price: the local layers read 2 x 4,096
    mean_kv = total(
        forward_ops(make_forward(dep, "decode", 2.0, 1.0, 8000.0), dep.pp), "kv_read_bytes"
    )
    assert mean_kv == 2 * 8 * 256 * 2 * 21 * (2 * 4096 + global_)


def test_streaming_hand_example():
    dep = make_deployment(streaming_llama(), "h100-sxm")
    sm = EngineStepModel(dep)
    assert sm.windows == (2048,) and sm.fast_path_active, sm.fast_path_note
    per_key = 32 * 2 * 8 * 128 * 2
    ctx = [1024, 3000, 50_000, 2048]  # sum of min(c, 2048): 1024 + 3 x 2048 = 7,168 (mean 1,792)
    assert total(step_ops(sm, ctx), "kv_read_bytes") == per_key * (1024 + 3 * 2048)
    assert total(per_sequence_ops(dep, ctx), "kv_read_bytes") == per_key * (1024 + 3 * 2048)


# -- full attention: per sequence == mean --------------------------------------------------
def test_full_attention_per_sequence_equals_mean_context():
    dep = make_deployment("llama-3.1-8b", "h100-sxm")
    sm = EngineStepModel(dep)
    assert sm.windows == ()
    assert sm.decode_contexts([1000, 15_000]) == (8000, ())
    # linear in context: the mean is exact, here to the byte and the second
    exact = total(per_sequence_ops(dep, [1000, 15_000]), "kv_read_bytes")
    assert total(step_ops(sm, [1000, 15_000]), "kv_read_bytes") == exact
    t = sm.iteration_time_s(*decodes([1000, 15_000]))
    assert t == pytest.approx(sm._decode_time(2, 8000, ()) - sm.graph_saving_s, rel=1e-12)
    assert t == sm.iteration_time_s(*decodes([8000, 8000]))
    # random batches: to the quantum (at most half a quantum of mean context per sequence)
    rng = np.random.default_rng(0)
    per_key = 32 * 2 * 8 * 128 * 2
    for _ in range(20):
        ctx = rng.integers(1, 60_000, int(rng.integers(1, 200)))
        got = total(step_ops(sm, ctx), "kv_read_bytes")
        want = total(per_sequence_ops(dep, ctx), "kv_read_bytes")
        assert abs(got - want) <= per_key * ctx.size * CONTEXT_QUANTUM / 2


@pytest.mark.parametrize("model", ["mistral-7b", "gemma-2-9b", "gemma-3-27b"])
def test_windowed_keys_match_the_per_sequence_sum(model):
    """Random batches straddling the window: KV bytes and FLOPs to the quantum of the
    per-sequence sums, and never above the mean-context price (min is concave)."""
    dep = make_deployment(model, "h100-sxm")
    sm = EngineStepModel(dep)
    (w,) = sm.windows
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(1, 120))
        ctx = np.where(rng.random(n) < 0.5, rng.integers(1, w, n), rng.integers(w, 8 * w, n))
        q, _ = sm.decode_contexts(ctx)
        mean_ops = forward_ops(make_forward(dep, "decode", float(n), 1.0, float(q)), dep.pp)
        got_ops, want_ops = step_ops(sm, ctx), per_sequence_ops(dep, ctx)
        for field in ("kv_read_bytes", "flops"):
            got, want = total(got_ops, field), total(want_ops, field)
            # one more token of context for one sequence adds at most this (every layer's keys)
            slope = total(per_sequence_ops(dep, [2.0]), field) - total(
                per_sequence_ops(dep, [1.0]), field
            )
            assert abs(got - want) <= n * slope * CONTEXT_QUANTUM / 2 * (1 + 1e-9)
            assert got <= total(mean_ops, field) * (1 + 1e-12)


# -- fast path == reference ----------------------------------------------------------------
def mixed_iterations(rng: np.random.Generator, n: int, windows: tuple[int, ...]):
    """Decode-only, prefill-only and mixed iterations whose decode contexts straddle the
    windows (just below, at, just above, far beyond), shuffled."""
    edges = np.array([w + d for w in windows for d in (-17, -1, 0, 1, 16, 3 * w)])
    for i in range(n):
        kind = i % 3  # 0 decode only, 1 prefill only, 2 mixed
        n_dec = 0 if kind == 1 else int(rng.integers(1, 300))
        k = 0 if kind == 0 else int(rng.integers(1, 4))
        dec = rng.integers(1, 40_000, n_dec)
        near = rng.random(n_dec) < 0.3
        dec[near] = rng.choice(edges, int(near.sum()))
        chunk = np.round(np.exp(rng.uniform(math.log(2), math.log(8192), k))).astype(np.int64)
        ctx = chunk + np.where(rng.random(k) < 0.5, rng.integers(1, 60_000, k), 0)
        new = np.concatenate([np.ones(n_dec, dtype=np.int64), chunk])
        after = np.concatenate([dec, ctx]).astype(np.int64)
        order = rng.permutation(len(new))
        yield new[order], after[order]


@pytest.mark.parametrize(
    "model, hardware, parallel",
    [
        ("mistral-7b", "h100-sxm", {}),
        ("gemma-2-9b", "h100-sxm-calibrated", {"tp": 2}),
        ("gemma-3-27b", "mi300x", {"pp": 2}),
        ("streaming", "h100-sxm", {}),
    ],
)
def test_fast_path_equals_reference_on_mixed_contexts(model, hardware, parallel):
    profile = streaming_llama() if model == "streaming" else model
    sm = EngineStepModel(make_deployment(profile, hardware, **parallel))
    assert sm.fast_path_active and sm.windows, sm.fast_path_note
    assert set(sm._fast.decode_slots.tolist()) == {0, 1}
    worst = 0.0
    for new, after in mixed_iterations(np.random.default_rng(5), 60, sm.windows):
        for _ in range(2):  # the second from the memos
            fast = sm.iteration_time_s(new, after)
            ref = sm._reference_iteration_time_s(new, after)
            worst = max(worst, abs(fast - ref) / ref)
    assert worst <= 1e-9  # the contract is 1e-3; observed ~1e-14


def test_memo_still_hits_on_consecutive_decode_steps():
    """Decode steps of one batch, every context one longer each step: the mean and the windowed
    mean move by at most one token a step, so a quantum of steps shares one memo entry."""
    sm = EngineStepModel(make_deployment("gemma-2-9b", "h100-sxm"))
    fast = sm._fast
    ctx = np.random.default_rng(2).integers(100, 12_000, 64)
    before = len(fast.decode_only)
    steps = 160
    for s in range(steps):
        sm.iteration_time_s(*decodes(ctx + s))
    assert len(fast.decode_only) - before <= 2 * steps // CONTEXT_QUANTUM + 2


# -- invariants ----------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["mistral-7b", "gemma-2-9b", "gemma-3-27b", "streaming"])
def test_more_context_for_one_sequence_never_costs_less(model):
    profile = streaming_llama() if model == "streaming" else model
    sm = EngineStepModel(make_deployment(profile, "h100-sxm"))
    rng = np.random.default_rng(9)
    (w,) = sm.windows
    for new, after in mixed_iterations(rng, 45, sm.windows):
        dec = np.flatnonzero(new == 1)
        if dec.size == 0:
            continue
        base_fast = sm.iteration_time_s(new, after)
        base_ref = sm._reference_iteration_time_s(new, after)
        for _ in range(3):
            i = int(rng.choice(dec))
            more = after.copy()
            more[i] += int(rng.choice([1, 16, 300, w, 10 * w]))
            assert sm.iteration_time_s(new, more) >= base_fast * (1 - 1e-12)
            assert sm._reference_iteration_time_s(new, more) >= base_ref * (1 - 1e-12)


def test_growth_beyond_the_window_costs_nothing_on_an_all_windowed_model():
    sm = EngineStepModel(make_deployment("mistral-7b", "h100-sxm"))
    t = sm.iteration_time_s(*decodes([1000, 5000, 15_000]))
    assert sm.iteration_time_s(*decodes([1000, 9000, 90_000])) == t
    assert sm.iteration_time_s(*decodes([1000, 4096, 4096])) == t
    assert sm.iteration_time_s(*decodes([1100, 9000, 90_000])) > t


def test_naive_kernel_is_not_window_capped():
    """A materialising kernel's score traffic grows with the whole context, so its windowed
    layers are priced at the mean context (as the op builders count it)."""
    sm = EngineStepModel(make_deployment("mistral-7b", "h100-sxm", attention_impl="naive"))
    assert sm.windows == () and sm.fast_path_active, sm.fast_path_note
