"""Tests written to kill mutants of ``hwsim/inference/engine.py`` and ``capacity.py`` that
survived a mutation-testing run (docs/mutation-testing.md, last section). Each expected value
comes from a hand count, a brute-force search or an invariant, never from the code's output."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hwsim.inference.capacity import (
    MAX_BATCH,
    MAX_CONTEXT_SEARCH_TOKENS,
    _linear_cache,
    _max_context_bisect,
    capacity_section,
    free_bytes_for_cache,
    max_batch,
    max_context,
    prefill_workspace_bytes,
    slo_batch,
)
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import PhaseCost, _Sum, decode_step_cost, make_forward, pricing_label
from hwsim.inference.memory import cache_bytes_per_sequence_per_gpu, weight_bytes_per_gpu
from hwsim.model.ops import Op
from hwsim.perf.roofline import BOUNDS, OpTime

CAP = MAX_CONTEXT_SEARCH_TOKENS  # 2^30 tokens


# --- engine.py: PhaseCost.bound -------------------------------------------------------------
def _phase(compute, memory, comm) -> PhaseCost:
    z = np.zeros(np.shape(compute))
    times = tuple(np.asarray(x, dtype=float) for x in (compute, memory, comm))
    return PhaseCost(z, z, z, times, ())  # type: ignore[arg-type]


def test_phase_bound_is_the_first_largest_share_as_argmax_picks_it():
    """The bound is the kind of op holding most of the time, the first of (compute, memory,
    communication) on a tie (the comment's argmax convention): every triple over {0, 1, 2}
    seconds, ties of two and of three included, against np.argmax."""
    triples = np.array(list(itertools.product([0.0, 1.0, 2.0], repeat=3)))
    got = _phase(triples[:, 0], triples[:, 1], triples[:, 2]).bound
    want = [BOUNDS[i] for i in np.argmax(triples, axis=1)]
    assert got.tolist() == want
    # the ties the convention is about, spelled out
    assert str(_phase(1.0, 1.0, 0.0).bound) == "compute"
    assert str(_phase(0.0, 1.0, 1.0).bound) == "memory"
    assert str(_phase(1.0, 0.0, 1.0).bound) == "compute"
    assert str(_phase(0.0, 0.0, 0.0).bound) == "compute"


# --- engine.py: _lengths ------------------------------------------------------------------
def test_one_length_reaches_the_op_builders_as_a_python_float_and_a_sweep_as_an_array():
    """make_forward hands the builders Python floats for single values (cheaper arithmetic
    than numpy scalars or 0-d arrays, the docstring's point) and float arrays for sweeps,
    1-d ones included."""
    dep = make_deployment("llama-2-7b", "h100-sxm")
    one = make_forward(dep, "decode", 3, 1, 100)
    for x in (one.batch, one.new_tokens, one.context):
        assert type(x) is float
    assert float(one.batch) == 3.0 and float(one.context) == 100.0
    sweep = make_forward(dep, "decode", [1, 2, 4], 1.0, np.array([[10], [20]]))
    assert isinstance(sweep.batch, np.ndarray) and sweep.batch.dtype == np.float64
    assert sweep.batch.tolist() == [1.0, 2.0, 4.0]
    assert isinstance(sweep.context, np.ndarray) and sweep.context.shape == (2, 1)


# --- engine.py: _Sum ----------------------------------------------------------------------
def test_a_sum_of_several_shapes_is_a_pure_query():
    """_Sum.value() returns the broadcast total and leaves the sum as it was: asking twice,
    or adding more afterwards, gives the total of everything added (numpy's own broadcast
    sum is the reference)."""
    row, grid = np.array([1.0, 2.0, 3.0]), np.arange(6.0).reshape(2, 3)
    s = _Sum()
    s.add(row)
    s.add(grid)
    s.add(0.5)
    want = row + grid + 0.5
    first = s.value()
    np.testing.assert_array_equal(first, want)
    np.testing.assert_array_equal(s.value(), want)
    s.add(grid)
    np.testing.assert_array_equal(s.value(), want + grid)
    np.testing.assert_array_equal(first, want)  # an earlier total is not changed either
    # two shapes and no scalar; one shape with a scalar
    two = _Sum()
    two.add(row)
    two.add(grid)
    np.testing.assert_array_equal(two.value(), row + grid)
    np.testing.assert_array_equal(two.value(), row + grid)
    one = _Sum()
    one.add(row)
    one.add(2.0)
    np.testing.assert_array_equal(one.value(), row + 2.0)
    np.testing.assert_array_equal(one.value(), row + 2.0)
    # the largest part need not have the most dimensions: (4,) and (3, 1) broadcast to (3, 4)
    wide = _Sum()
    wide.add(np.arange(4.0))
    wide.add(np.array([[10.0], [20.0], [30.0]]))
    np.testing.assert_array_equal(wide.value(), np.arange(4.0) + np.array([[10.0], [20.0], [30.0]]))
    # masked adds: only where the mask holds
    m = _Sum()
    m.add(row, where=np.array([True, False, True]))
    m.add(4.0, where=False)
    m.add(1.0, where=True)
    np.testing.assert_array_equal(m.value(), [2.0, 1.0, 4.0])
    assert float(_Sum().value()) == 0.0


# --- engine.py: pricing_label -------------------------------------------------------------
def _cost(rung_seconds) -> PhaseCost:
    """A phase whose ops took the given seconds (scalars or equal-shape arrays) on the given
    rungs."""
    times = []
    for i, (rung, s) in enumerate(rung_seconds):
        s = np.asarray(s, dtype=float)
        z = np.zeros_like(s)
        times.append(OpTime(Op(f"op{i}", "matmul"), s, z, z, np.zeros(s.shape, int), rung))
    total = np.sum([np.asarray(s, dtype=float) for _, s in rung_seconds], axis=0)
    z = np.zeros_like(total)
    return PhaseCost(total, z, z, (total, z, z), tuple(times))


def test_pricing_label_leaves_out_rungs_that_took_no_time():
    """A rung that priced ops taking 0 s has no share to report (30% / 70% by hand)."""
    cost = _cost([("calibrated", 0.7), ("measured", 0.0), ("datasheet", 0.3)])
    assert pricing_label(cost) == "calibrated 70%, datasheet 30%"


def test_pricing_label_of_one_sweep_point_uses_that_point_only():
    """``index`` picks one point of a sweep: at point 0 the datasheet rung took 3 of 4 s
    (75% / 25%), at point 1 the only second was calibrated, and the whole sweep is 3 s of
    datasheet against 2 s calibrated (60% / 40%)."""
    cost = _cost([("datasheet", [3.0, 0.0]), ("calibrated", [1.0, 1.0])])
    assert pricing_label(cost, 0) == "datasheet 75%, calibrated 25%"
    assert pricing_label(cost, 1) == "calibrated"
    assert pricing_label(cost) == "datasheet 60%, calibrated 40%"


def test_pricing_label_never_prints_a_share_that_rounds_to_nothing():
    """Finding 6: 0.995 s and 0.005 s print as 100% and 0% (Python rounds 99.5 up and 0.5 to
    even), so the label is the first rung alone; a third rung of 0.3% of the time is left out
    of a mixed label for the same reason."""
    assert pricing_label(_cost([("calibrated", 0.995), ("datasheet", 0.005)])) == "calibrated"
    mixed = _cost([("calibrated", 0.6), ("datasheet", 0.397), ("measured", 0.003)])
    assert pricing_label(mixed) == "calibrated 60%, datasheet 40%"


# --- capacity.py: max_context's closed form -------------------------------------------------
@pytest.fixture(scope="module")
def jamba():
    """Jamba 1.5 Mini: a linear cache with a floor, its Mamba layers' state at context 0 plus
    16,384 B a token (4 attention layers x 2 x 8 KV heads x 128 x 2 B)."""
    dep = make_deployment("jamba-1.5-mini", "h100-sxm")
    state = float(cache_bytes_per_sequence_per_gpu(dep, 0.0))
    assert state > 0
    per_token = 4 * 2 * 8 * 128 * 2
    assert float(cache_bytes_per_sequence_per_gpu(dep, 1000.0)) == state + 1000 * per_token
    return dep


def _largest_fitting(dep, b, free, near):
    """Brute force: the largest k in near - 3 .. near + 3 with b x cache(k) <= free (the
    cache grows with k), 0 if none does, at most the 2^30 search cap."""
    ks = np.clip(near[..., None] + np.arange(-3.0, 4.0), 0.0, CAP)
    fits = b[..., None] * cache_bytes_per_sequence_per_gpu(dep, ks) <= free[..., None]
    return np.where(fits, ks, 0.0).max(axis=-1)


@pytest.mark.parametrize("model", ["jamba-1.5-mini", "deepseek-v3", "llama-2-7b"])
def test_max_context_lands_on_the_exact_boundary_where_rounding_misleads_the_closed_form(model):
    """free set to (one ulp either side of) b x cache(c) for random c up to 2^30 and fractional
    batches: floor((free / b - base) / slope) is then off by one token in both directions for
    some points, and max_context must still return the largest context whose cache fits."""
    dep = make_deployment(model, "h100-sxm")
    rng = np.random.default_rng(7)
    c = np.concatenate([np.floor(rng.uniform(0, CAP, 1500)), np.floor(rng.uniform(0, 3000, 500))])
    c = np.tile(c, 3)
    b = np.repeat([0.3, 1.7, 12345.678], 2000)
    exact = b * cache_bytes_per_sequence_per_gpu(dep, c)
    base = float(cache_bytes_per_sequence_per_gpu(dep, 0.0))
    slope = float(cache_bytes_per_sequence_per_gpu(dep, 1.0)) - base
    low = high = False
    for free in (exact, np.nextafter(exact, -np.inf), np.nextafter(exact, np.inf)):
        want = _largest_fitting(dep, b, free, c)
        np.testing.assert_array_equal(max_context(dep, b, free), want)
        naive = np.clip(np.floor((free / b - base) / slope), 0.0, CAP)
        low, high = low or bool(np.any(naive < want)), high or bool(np.any(naive > want))
    assert low and high  # the points do exercise both corrections of the closed form


def test_max_context_of_a_linear_cache_stops_at_the_search_cap():
    """Llama 2 7B, 524,288 B a token: 1e15 B would hold 1.9e9 tokens, more than the 2^30-token
    search cap, which max_context reports (as the bisection does), one token not more."""
    dep = make_deployment("llama-2-7b", "h100-sxm")
    assert float(cache_bytes_per_sequence_per_gpu(dep, CAP + 1)) == (CAP + 1) * 524_288 < 1e15
    free = np.array([1e15, CAP * 524_288, CAP * 524_288 - 1])
    np.testing.assert_array_equal(max_context(dep, 1.0, free), [CAP, CAP, CAP - 1])
    np.testing.assert_array_equal(_max_context_bisect(dep, 1.0, free), [CAP, CAP, CAP - 1])


def test_max_context_is_zero_when_not_even_the_state_fits(jamba):
    """Jamba's cache is state + 16,384 B a token: with less free memory than the state no
    context fits (0, as the bisection reports), also 1 .. 16,384 B short of it (where one token
    less than none would fit); exactly the state fits context 0, one token more context 1."""
    state = float(cache_bytes_per_sequence_per_gpu(jamba, 0.0))
    free = np.array([0.0, 1e6, state - 16_385, state - 16_384, state - 1, state, state + 16_383])
    np.testing.assert_array_equal(max_context(jamba, 1.0, free), np.zeros(7))
    np.testing.assert_array_equal(max_context(jamba, 1.0, state + 16_384), 1.0)
    np.testing.assert_array_equal(max_context(jamba, 2.0, 2 * (state + 5 * 16_384)), 5.0)
    np.testing.assert_array_equal(_max_context_bisect(jamba, 1.0, free), np.zeros(7))


@pytest.mark.parametrize("model", ["mamba-2.8b", "rwkv-7"])
def test_a_cache_that_does_not_grow_fits_every_context_or_none(model):
    """A pure state model holds the same bytes at every context: if that fits (exactly,
    included), any context does (the 2^30 cap); one byte less and none does."""
    dep = make_deployment(model, "h100-sxm")
    contexts = np.array([0.0, 1.0, 4096.0, CAP])
    state = cache_bytes_per_sequence_per_gpu(dep, contexts)
    assert np.all(state == state[0]) and state[0] > 0
    s = float(state[0])
    with np.errstate(all="raise"):
        got = max_context(dep, 1.0, np.array([s, s - 1, 2 * s, 1e12, 0.0]))
    np.testing.assert_array_equal(got, [CAP, 0.0, CAP, CAP, 0.0])
    np.testing.assert_array_equal(max_context(dep, 2.0, 2 * s), CAP)


# --- capacity.py: the bisection, for caches that are not linear ---------------------------
MISTRAL_KV = 2 * 32 * 8 * 128 * 2  # 131,072 B a token: 32 layers, 8 KV heads of 128, bf16


@pytest.fixture(scope="module")
def mistral():
    """Mistral 7B v0.1: a 4096-token sliding window, so its cache stops growing there and
    max_context bisects."""
    dep = make_deployment("mistral-7b", "h100-sxm")
    assert _linear_cache(dep) is None
    assert float(cache_bytes_per_sequence_per_gpu(dep, 1000.0)) == 1000 * MISTRAL_KV
    return dep


def test_the_bisection_admits_a_context_whose_cache_fills_memory_exactly(mistral):
    """Below the window the cache is c x 131,072 B: with exactly k tokens' worth free, k
    tokens fit ("fits": <=), one byte less k - 1; two sequences need twice the bytes."""
    k = np.array([1.0, 2.0, 3.0, 1000.0, 2047.0, 4095.0])
    np.testing.assert_array_equal(max_context(mistral, 1.0, k * MISTRAL_KV), k)
    np.testing.assert_array_equal(max_context(mistral, 1.0, k * MISTRAL_KV - 1), k - 1)
    np.testing.assert_array_equal(max_context(mistral, 2.0, 2 * k * MISTRAL_KV), k)
    np.testing.assert_array_equal(max_context(mistral, 3.0, 3 * k * MISTRAL_KV - 1), k - 1)


def test_capacity_reports_the_max_context_of_one_sequence_for_a_windowed_cache(mistral):
    """max_context_tokens is for one sequence: with weights sized to leave 2288.5 tokens'
    worth of memory free (under the 4096-token window) floor(2288.5) = 2288 tokens fit, and
    with more than the whole window (4096 x 131,072 B = 512 MiB) any context does (the 2^30
    cap)."""
    no_weights = float(free_bytes_for_cache(mistral, 1000.0, 0.0))
    for free, want in ((2288.5 * MISTRAL_KV, 2288.0), (600e6, CAP)):
        cap = capacity_section(mistral, 1000.0, 24.0, no_weights - free, None)
        assert float(cap.max_context_tokens) == want


# --- capacity.py: encoders and prefill-only points -----------------------------------------
# BigBird-RoBERTa-large: d_model 1024, vocab 50,358, 4096 learned positions. Its largest op is
# the LM head over every token: bf16 hidden states in (1024 x 2 B), fp32 logits out (4 B each,
# the vocabulary split over the TP ranks): 203,480 B a token at tp = 1, 102,764 at tp = 2.
BIGBIRD_HEAD = {1: 1024 * 2 + 50_358 * 4, 2: 1024 * 2 + 50_358 // 2 * 4}


@pytest.mark.parametrize("tp", [1, 2])
def test_an_encoder_holds_the_workspace_of_its_whole_sequence(tp):
    """An encoder's bidirectional forward takes the whole sequence at once: no 8192-token
    chunks, so 16,384 tokens hold four times the workspace of 4096."""
    dep = make_deployment("bigbird-roberta-large", "h100-sxm", tp=tp)
    s = np.array([1.0, 4096.0, 16_384.0])
    np.testing.assert_array_equal(prefill_workspace_bytes(dep, s), s * BIGBIRD_HEAD[tp])


def test_encoder_capacity_is_the_sequences_whose_forwards_fit_side_by_side():
    """An encoder keeps nothing between requests: max batch = floor((usable - weights) /
    workspace of one sequence's forward). At tp = 2 (two GPUs a replica), 4096 tokens:
    W = 4096 x 102,764 B; with room for exactly 3 W three fit (1.5 users per GPU), exactly W
    one, a byte less none, and weights beyond the device none. The context is the prompt and
    the longest context the 4096-row position table allows."""
    dep = make_deployment("bigbird-roberta-large", "h100-sxm", tp=2)
    assert dep.usable_bytes == 72e9 and dep.gpus_per_replica == 2
    w = 4096 * BIGBIRD_HEAD[2]
    none = "memory (not even one sequence fits)"
    cases = [(3 * w, 3.0, "memory"), (w, 1.0, "memory"), (w - 1, 0.0, none)]
    for room, batch, binding in cases:
        cap = capacity_section(dep, 4096.0, 0.0, 72e9 - room, None)
        assert float(cap.max_batch) == batch
        assert float(cap.users_per_gpu) == batch / 2
        assert str(cap.binding_constraint) == binding
        assert float(cap.context_tokens) == 4096.0
        assert float(cap.max_context_tokens) == 4096.0
    over = capacity_section(dep, 4096.0, 0.0, 72e9 + 5 * w, None)
    assert float(over.max_batch) == 0.0
    assert str(over.binding_constraint) == none
    # a workspace given by the caller is the one used: twice W halves the batch
    given = capacity_section(dep, 4096.0, 0.0, 72e9 - 4 * w, None, workspace_bytes=2.0 * w)
    assert float(given.max_batch) == 2.0


def test_a_prefill_only_point_is_not_held_to_the_tpot_slo():
    """gen_len 0 has no decode step, so an unreachable 1 ns TPOT SLO leaves memory binding;
    gen_len 1 does decode, and nothing meets 1 ns. Llama 2 7B on one H100: free = 72e9 - the
    weights - the 1000-token prompt's SwiGLU workspace (1000 x 3 x 11008 x 2 B), and one
    sequence of c tokens caches c x 524,288 B."""
    dep = make_deployment("llama-2-7b", "h100-sxm")
    weights = 6_738_415_616 * 2
    free = 72e9 - weights - 1000 * 3 * 11008 * 2
    cap = capacity_section(dep, 1000.0, np.array([0.0, 1.0]), weights, 1e-9)
    fit = np.floor(free / (np.array([1000.0, 1001.0]) * 524_288))
    np.testing.assert_array_equal(cap.max_batch, fit)
    assert fit[0] > 1
    np.testing.assert_array_equal(cap.users_per_gpu, [fit[0], 0.0])
    assert cap.binding_constraint.tolist() == ["memory", "tpot_slo (unreachable even at batch 1)"]


def test_sum_of_parts_that_only_broadcast_together():
    """Finding 7: parts of shapes (4, 1) and (1, 3) sum to a (4, 3) total."""
    s = _Sum()
    s.add(np.ones((4, 1)))
    s.add(np.full((1, 3), 2.0))
    np.testing.assert_array_equal(s.value(), np.full((4, 3), 3.0))


# --- capacity.py ----------------------------------------------------------------------------
# Llama 2 7B bf16 on one H100 SXM: usable = 80 GB x 0.9 = 72e9 B, weights 6,738,415,616 x 2 B;
# its cache grows by 524,288 B a token (2 x 32 layers x 32 heads x 128 x 2 B).
LLAMA_KV = 524_288
LLAMA_WEIGHTS = 6_738_415_616 * 2


@pytest.fixture(scope="module")
def llama():
    dep = make_deployment("llama-2-7b", "h100-sxm")
    assert dep.usable_bytes == 72e9 and weight_bytes_per_gpu(dep) == LLAMA_WEIGHTS
    return dep


def test_free_memory_reserves_the_workspace_of_one_prefill_chunk(llama):
    """A prompt longer than the 8192-token chunk (vLLM's default max_num_batched_tokens) is
    prefilled 8192 new tokens at a time, one sequence at a time; the largest op of such a chunk
    is the SwiGLU activation, 8192 x 3 x 11008 x 2 B = 541,065,216 B, whatever the prompt
    length (the attention core holds less up to ~24.8k tokens). A 1000-token prompt is one
    chunk: 1000 x 3 x 11008 x 2 B."""
    prompts = np.array([1000.0, 8192.0, 10000.0, 20000.0])
    free = free_bytes_for_cache(llama, prompts, LLAMA_WEIGHTS)
    chunk = np.array([1000.0, 8192.0, 8192.0, 8192.0])
    np.testing.assert_array_equal(free, 72e9 - LLAMA_WEIGHTS - chunk * 3 * 11008 * 2)


def test_free_memory_is_zero_not_negative_when_the_weights_fill_the_device(llama):
    free = free_bytes_for_cache(llama, np.array([1.0, 4096.0]), weights_bytes=80e9)
    np.testing.assert_array_equal(free, [0.0, 0.0])


def test_max_context_is_the_largest_context_whose_cache_fits(llama):
    """Full attention: the cache of one sequence at c tokens is c x 524,288 B, so the largest
    context that fits is floor(free / 524,288), checked against cache(c) <= free < cache(c+1)
    and exactly at the boundary (free a whole number of tokens: that many fit)."""
    free = np.array([0.0, 1.0, 1e9, 5e10, 1000 * LLAMA_KV, 123_457 * LLAMA_KV])
    got = max_context(llama, 1.0, free)
    want = np.floor(free / LLAMA_KV)
    np.testing.assert_array_equal(got, want)
    assert np.all(cache_bytes_per_sequence_per_gpu(llama, got) <= free)
    assert np.all(cache_bytes_per_sequence_per_gpu(llama, got + 1) > free)
    # four sequences share the memory
    np.testing.assert_array_equal(max_context(llama, 4.0, free), np.floor(free / 4 / LLAMA_KV))


def test_a_bounded_cache_that_fits_whole_fits_any_context():
    """Mistral 7B v0.1 holds at most its 4096-token window: 4096 x 2 x 32 layers x 8 KV heads
    x 128 x 2 B = 536,870,912 B. If that fits (even exactly), max_context reports the 2^30-token
    cap of the search (docstring); if not, the largest context whose buffer fits."""
    dep = make_deployment("mistral-7b", "h100-sxm")
    full = 4096 * 2 * 32 * 8 * 128 * 2
    assert float(cache_bytes_per_sequence_per_gpu(dep, 1e9)) == full
    got = max_context(dep, 1.0, np.array([full, 1e12, 5e8]))
    np.testing.assert_array_equal(got, [2.0**30, 2.0**30, np.floor(5e8 / (full / 4096))])


# 0 free / 0 bytes per sequence: max_batch divides before it masks (docs/mutation-testing.md)
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
def test_a_model_that_caches_nothing_is_only_capped_by_max_batch():
    """An encoder keeps no KV cache: per-sequence cache bytes are 0, memory does not limit the
    batch (0 free bytes included) and max_batch is the MAX_BATCH cap."""
    dep = make_deployment("bigbird-roberta-large", "h100-sxm")
    assert float(cache_bytes_per_sequence_per_gpu(dep, 4096.0)) == 0.0
    got = max_batch(dep, 4096.0, np.array([0.0, 1e9]))
    np.testing.assert_array_equal(got, [MAX_BATCH, MAX_BATCH])


def brute_slo_batch(dep, context, limit, slo):
    """Largest b in 1..limit with step(b) <= slo, else 0, by trying every batch."""
    times = decode_step_cost(dep, np.arange(1.0, limit + 1), context).time_s
    ok = np.nonzero(times <= slo)[0]
    return float(ok[-1] + 1) if ok.size else 0.0


def test_slo_batch_equals_brute_force_including_exact_ties(llama):
    """The decode step at 2000 keys grows strictly with batch (each sequence reads its own
    ~1 GB of KV), so the largest batch under the SLO is unique; an SLO equal to a batch's
    step time admits that batch ("meets": <=)."""
    ctx, limit = 2000.0, 64
    times = decode_step_cost(llama, np.arange(1.0, limit + 1), ctx).time_s
    assert np.all(np.diff(times) > 0)
    slos = [
        times[0] / 2,
        times[0],
        (times[0] + times[1]) / 2,
        times[1],
        times[36],
        times[36] * 1.001,
        times[-1],
        1.0,
    ]
    for slo in slos:
        got = float(slo_batch(llama, ctx, limit, float(slo)))
        assert got == brute_slo_batch(llama, ctx, limit, float(slo)), slo
    assert float(slo_batch(llama, ctx, limit, float(times[0]))) == 1.0
    assert float(slo_batch(llama, ctx, limit, float(times[36]))) == 37.0


def test_slo_batch_over_every_limit_and_threshold_up_to_64(llama):
    """The bisection against its specification for every memory limit 1..64 and every SLO
    equal to one batch's step time (an exact tie: that batch meets it): min(T, limit)."""
    ctx = 2000.0
    times = decode_step_cost(llama, np.arange(1.0, 65.0), ctx).time_s
    limits = np.arange(1.0, 65.0)
    for t in range(1, 65):
        got = slo_batch(llama, ctx, limits, float(times[t - 1]))
        np.testing.assert_array_equal(got, np.minimum(t, limits), err_msg=f"T={t}")


def test_slo_batch_with_room_for_exactly_one_sequence(llama):
    # memory allows one sequence and the SLO is generous: one user, not zero
    assert float(slo_batch(llama, 2000.0, 1.0, 1.0)) == 1.0
    assert float(slo_batch(llama, 2000.0, 0.0, 1.0)) == 0.0


def capacity_for(dep, prompt, gen, free_target, slo=None):
    """capacity_section with weights sized so that exactly ``free_target`` bytes stay free."""
    no_weights = float(free_bytes_for_cache(dep, prompt, 0.0))
    return capacity_section(dep, prompt, gen, no_weights - free_target, slo)


def test_binding_constraint_at_one_and_zero_sequences(llama):
    """Context 1000 + 24 = 1024 tokens: one sequence holds 1024 x 524,288 B = 512 MiB. With
    room for 1.5 of them one fits (memory binds); with 0.5, none does."""
    per_seq = 1024 * LLAMA_KV
    one = capacity_for(llama, 1000.0, 24.0, 1.5 * per_seq)
    assert float(one.max_batch) == 1.0 and str(one.binding_constraint) == "memory"
    none = capacity_for(llama, 1000.0, 24.0, 0.5 * per_seq)
    assert float(none.max_batch) == 0.0
    assert str(none.binding_constraint) == "memory (not even one sequence fits)"
    # max_context_tokens is for one sequence: floor(1.5 x 1024) = 1536 tokens fit
    assert float(one.max_context_tokens) == 1536.0


def test_a_loose_slo_does_not_bind_and_users_are_per_gpu():
    """With a 1 s TPOT SLO memory binds; at tp=2 the replica's users are shared by 2 GPUs."""
    dep = make_deployment("llama-2-7b", "h100-sxm", tp=2)
    cap = capacity_section(dep, 1000.0, 24.0, weight_bytes_per_gpu(dep), 1.0)
    assert str(cap.binding_constraint) == "memory"
    assert float(cap.max_batch) > 1
    assert float(cap.users_per_gpu) == float(cap.max_batch) / 2


# --- model/mixers/sliding_window.py ---------------------------------------------------------
