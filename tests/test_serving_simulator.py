"""Continuous-batching simulator: conservation, determinism, exact low-load latencies, KV
bounds, preemption, rejection, chunked prefill, and agreement with a slow reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hwsim.errors import HwsimError
from hwsim.serving import (
    Requests,
    SchedulerConfig,
    TrafficSpec,
    littles_law_check,
    sample_requests,
    simulate,
    summarize,
)

try:
    from serving_support import LinearStepTimeModel, reference_simulate
except ImportError:  # tests/ imported as a package
    from tests.serving_support import LinearStepTimeModel, reference_simulate

MODEL = LinearStepTimeModel(fixed_s=5e-3, per_new_token_s=3e-5, per_context_token_s=4e-8)


def traffic(rate: float, prompt_mean=600.0, output_mean=150.0) -> TrafficSpec:
    return TrafficSpec.model_validate(
        {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": rate}},
            "prompt_tokens": {"kind": "lognormal", "mean": prompt_mean, "p95": 2.5 * prompt_mean},
            "output_tokens": {"kind": "lognormal", "mean": output_mean, "p95": 3 * output_mean},
        }
    )


def assert_each_served_once(result, requests):
    rec, trace = result.records, result.trace
    done = rec.completed
    assert done.sum() + (rec.status != "completed").sum() == len(requests)
    assert np.all(np.isfinite(rec.finish_s[done])) and np.all(np.isnan(rec.finish_s[~done]))
    assert np.all(rec.arrival_s[done] <= rec.admitted_s[done])
    assert np.all(rec.admitted_s[done] < rec.first_token_s[done])
    assert np.all(rec.first_token_s[done] <= rec.finish_s[done])
    one_token = done & (rec.output_tokens == 1)
    np.testing.assert_array_equal(rec.first_token_s[one_token], rec.finish_s[one_token])
    # Work conservation: every prompt token not cached is prefilled and every output token but
    # the last enters a decode, exactly once without preemption; recomputes only add work.
    needed = (rec.prompt_tokens - rec.cached_prefix_tokens + rec.output_tokens - 1)[done].sum()
    processed = trace.num_tokens.sum()
    if rec.preemptions.sum() == 0:
        assert processed == needed
    else:
        assert processed > needed
    assert np.all(trace.kv_blocks_used <= trace.kv_blocks_total)
    assert np.all(trace.num_seqs <= result.config.max_num_seqs)


# --- conservation -----------------------------------------------------------------------
@pytest.mark.parametrize("chunked", [True, False])
def test_every_request_completes_exactly_once(chunked):
    req = sample_requests(traffic(rate=8.0), 3_000, seed=1)
    cfg = SchedulerConfig(kv_capacity_tokens=300_000, chunked_prefill=chunked)
    res = simulate(req, MODEL, cfg)
    assert res.records.completed.all()
    assert_each_served_once(res, req)
    if chunked:
        assert res.trace.num_tokens.max() <= cfg.max_num_batched_tokens


@pytest.mark.parametrize("chunked", [True, False])
def test_heavy_preemption_loses_and_duplicates_nothing(chunked):
    req = sample_requests(traffic(rate=20.0, prompt_mean=200, output_mean=300), 1_500, seed=2)
    cfg = SchedulerConfig(
        kv_capacity_tokens=4_000,
        max_num_seqs=64,
        max_num_batched_tokens=2048,
        chunked_prefill=chunked,
    )
    # an overloaded queue on purpose: run it to the end to check the bookkeeping
    res = simulate(req, MODEL, cfg, stop_on_overload=False)
    rec = res.records
    assert rec.preemptions.sum() > 100  # the scenario really thrashes
    assert_each_served_once(res, req)
    assert res.trace.kv_blocks_used.max() == cfg.kv_capacity_blocks  # memory really is full
    assert (~rec.completed).sum() == np.count_nonzero(
        np.ceil((rec.prompt_tokens + rec.output_tokens) / 16) + 1 > cfg.kv_capacity_blocks
    )


# --- determinism ------------------------------------------------------------------------
def test_same_seed_identical_different_seed_different():
    cfg = SchedulerConfig(kv_capacity_tokens=20_000, max_num_seqs=32)
    a, b, c = (simulate(sample_requests(traffic(6.0), 800, seed=s), MODEL, cfg) for s in (4, 4, 5))
    for name in ("admitted_s", "first_token_s", "finish_s", "preemptions"):
        np.testing.assert_array_equal(getattr(a.records, name), getattr(b.records, name))
    np.testing.assert_array_equal(a.trace.duration_s, b.trace.duration_s)
    assert not np.array_equal(a.records.finish_s, c.records.finish_s)


# --- vanishing load: latencies are exactly the step model's times -------------------------
@pytest.mark.parametrize("chunked", [True, False])
def test_isolated_requests_get_exact_prefill_and_decode_times(chunked):
    prompt = np.array([100, 1000, 37, 4000])
    output = np.array([50, 2, 300, 17])
    arrival = 1000.0 * np.arange(1, 5)  # far longer apart than any request takes
    req = Requests.from_arrays(arrival, prompt, output)
    cfg = SchedulerConfig(kv_capacity_tokens=100_000, chunked_prefill=chunked)
    rec = simulate(req, MODEL, cfg).records
    m = MODEL
    prefill = m.fixed_s + m.per_new_token_s * prompt + m.per_context_token_s * prompt
    # Equal up to float rounding of absolute times (arrivals are ~1e3 s, latencies ~1e-2 s).
    np.testing.assert_allclose(rec.ttft_s, prefill, rtol=1e-9)
    np.testing.assert_allclose(rec.queue_delay_s, 0.0, atol=0)
    # Decode k (k = 1..O-1) has context_after = P + k; the mean of P + k is P + O / 2.
    decode = m.fixed_s + m.per_new_token_s + m.per_context_token_s * (prompt + output / 2)
    np.testing.assert_allclose(rec.tpot_s, decode, rtol=1e-9)


def test_isolated_request_with_constant_decode_time():
    flat = LinearStepTimeModel(fixed_s=0.01, per_new_token_s=1e-4, per_context_token_s=0.0)
    req = Requests.from_arrays([0.0, 500.0], [256, 64], [129, 3])
    rec = simulate(req, flat, SchedulerConfig(kv_capacity_tokens=10_000)).records
    np.testing.assert_allclose(rec.ttft_s, [0.01 + 256e-4, 0.01 + 64e-4], rtol=1e-9)
    np.testing.assert_allclose(rec.tpot_s, 0.01 + 1e-4, rtol=1e-9)


# --- queueing consistency ---------------------------------------------------------------
def test_littles_law_holds_on_a_long_stable_run():
    req = sample_requests(traffic(rate=10.0), 20_000, seed=9)
    res = simulate(req, MODEL, SchedulerConfig(kv_capacity_tokens=400_000))
    s = summarize(res)
    assert s.requests_per_s == pytest.approx(10.0, rel=0.03)  # stable: throughput = load
    check = littles_law_check(res.records)
    assert check.relative_error < 0.02
    assert check.mean_in_system > 5  # a real queueing system, not a trivial one


def test_overload_grows_the_queue():
    req = sample_requests(traffic(rate=40.0), 4_000, seed=9)
    config = SchedulerConfig(kv_capacity_tokens=400_000)
    res = simulate(req, MODEL, config, stop_on_overload=False)
    delay = res.records.queue_delay_s
    assert delay[-500:].mean() > 10 * max(delay[:500].mean(), 1e-3)
    # ... and the default run notices it and stops with the rate it sustained
    early = simulate(req, MODEL, config)
    assert early.overload is not None
    assert early.overload.sustained_rate_per_s < early.overload.arrival_rate_per_s / 1.05


# --- rejection --------------------------------------------------------------------------
def test_requests_that_can_never_fit_are_rejected_not_looped_on():
    req = Requests.from_arrays([0.0, 0.1, 0.2], [100, 5000, 100], [50, 10, 50])
    cfg = SchedulerConfig(kv_capacity_tokens=1024, max_num_seqs=4, max_num_batched_tokens=512)
    res = simulate(req, MODEL, cfg)
    assert res.records.status.tolist() == ["completed", "rejected_kv_capacity", "completed"]
    assert summarize(res).rejected == {"rejected_kv_capacity": 1}
    unchunked = cfg.model_copy(update={"chunked_prefill": False, "kv_capacity_tokens": 10**6})
    res = simulate(req, MODEL, unchunked)
    assert res.records.status.tolist() == ["completed", "rejected_token_budget", "completed"]
    chunked_big = cfg.model_copy(update={"kv_capacity_tokens": 10**6})
    assert simulate(req, MODEL, chunked_big).records.completed.all()  # chunking serves it


def test_preempted_sequence_over_budget_resumes_alone_without_chunking():
    # Two long generations share a tiny cache: the newer one is preempted and its recompute
    # prompt (prompt + generated) grows past the 600-token budget.
    req = Requests.from_arrays([0.0, 0.0], [500, 500], [600, 600])
    cfg = SchedulerConfig(
        kv_capacity_tokens=1700, max_num_seqs=2, max_num_batched_tokens=600, chunked_prefill=False
    )
    res = simulate(req, MODEL, cfg)
    assert res.records.completed.all() and res.records.preemptions.sum() >= 1
    assert res.trace.num_tokens.max() > cfg.max_num_batched_tokens


# --- prefix caching ---------------------------------------------------------------------
def test_prefix_caching_skips_compute_but_not_memory():
    req = Requests.from_arrays(
        1000.0 * np.arange(3),
        [3000, 3000, 3000],
        [10, 10, 10],
        cached_prefix_tokens=[0, 2000, 2999],
    )
    off = simulate(req, MODEL, SchedulerConfig(kv_capacity_tokens=50_000))
    on = simulate(req, MODEL, SchedulerConfig(kv_capacity_tokens=50_000, prefix_caching=True))
    assert on.trace.num_tokens.sum() == off.trace.num_tokens.sum() - 2000 - 2999
    assert on.records.ttft_s[0] == pytest.approx(off.records.ttft_s[0])
    assert np.all(on.records.ttft_s[1:] < off.records.ttft_s[1:])
    np.testing.assert_array_equal(on.trace.kv_blocks_used.max(), off.trace.kv_blocks_used.max())


# --- chunked prefill vs prefill-only iterations -------------------------------------------
def test_chunked_prefill_cuts_decode_stalls_and_costs_ttft():
    """Long prompts arriving among long generations: without chunking every arrival stalls all
    decodes for a whole-prompt prefill iteration; with chunking the prompt is spread over
    iterations that keep decoding. Documented direction: TPOT tail down, TTFT up."""
    spec = TrafficSpec.model_validate(
        {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 2.0}},
            "prompt_tokens": {"kind": "uniform", "low": 6000, "high": 8000},
            "output_tokens": {"kind": "uniform", "low": 200, "high": 400},
        }
    )
    req = sample_requests(spec, 600, seed=3)
    base = {"kv_capacity_tokens": 2_000_000, "max_num_seqs": 128}
    whole_cfg = SchedulerConfig(**base, max_num_batched_tokens=8192, chunked_prefill=False)
    chunked_cfg = SchedulerConfig(**base, max_num_batched_tokens=512, chunked_prefill=True)
    whole_run, chunked_run = simulate(req, MODEL, whole_cfg), simulate(req, MODEL, chunked_cfg)
    whole, chunked = summarize(whole_run), summarize(chunked_run)
    # The longest iteration is the longest time every running decode waits for its next token.
    assert chunked_run.trace.duration_s.max() < whole_run.trace.duration_s.max() / 3
    assert chunked.tpot.p99_s < 0.9 * whole.tpot.p99_s
    assert chunked.ttft.p50_s > whole.ttft.p50_s
    assert chunked.requests_per_s == pytest.approx(whole.requests_per_s, rel=0.01)  # same load


# --- step model and config contracts ----------------------------------------------------
class _BadModel:
    def __init__(self, value):
        self.value = value

    def iteration_time_s(self, new_tokens, context_after):
        return self.value


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_step_time_is_an_error(value):
    req = Requests.from_arrays([0.0], [10], [5])
    with pytest.raises(HwsimError, match="iteration time"):
        simulate(req, _BadModel(value), SchedulerConfig(kv_capacity_tokens=1000))


def test_config_validation():
    with pytest.raises(ValidationError, match="at least 2"):
        SchedulerConfig(kv_capacity_tokens=20)
    with pytest.raises(ValidationError, match="max_num_seqs"):
        SchedulerConfig(kv_capacity_tokens=10_000, max_num_seqs=512, max_num_batched_tokens=256)
    SchedulerConfig(
        kv_capacity_tokens=10_000,
        max_num_seqs=512,
        max_num_batched_tokens=256,
        chunked_prefill=False,
    )
    assert SchedulerConfig(kv_capacity_tokens=100, block_size_tokens=16).kv_capacity_blocks == 6


def test_step_model_sees_decodes_and_chunks():
    seen = []

    class Recorder(LinearStepTimeModel):
        def iteration_time_s(self, new_tokens, context_after):
            seen.append((new_tokens.copy(), context_after.copy()))
            return super().iteration_time_s(new_tokens, context_after)

    req = Requests.from_arrays([0.0, 0.0], [10, 25], [3, 2])
    cfg = SchedulerConfig(kv_capacity_tokens=1000, max_num_seqs=4, max_num_batched_tokens=20)
    simulate(req, Recorder(), cfg)
    as_lists = [(sorted(zip(n.tolist(), c.tolist()))) for n, c in seen]
    assert as_lists == [
        [(10, 10), (10, 10)],  # A's whole prompt, first 10 of B's
        [(1, 11), (15, 25)],  # A decodes; B finishes its prefill (first token)
        [(1, 12), (1, 26)],  # A's last decode, B's only decode: both finish
    ]


@pytest.mark.parametrize(
    "extra",
    [{}, {"chunked_prefill": False}, {"num_scheduler_steps": 4}, {"max_num_batched_tokens": 300}],
)
def test_split_step_model_is_told_the_decodes_and_their_context_sum(extra):
    """A SplitStepTimeModel gets the decodes first and their exact context sum, preemptions
    and multi-step blocks included, and the run is the one iteration_time_s gives."""
    calls = []

    class Split(LinearStepTimeModel):
        def split_iteration_time_s(self, new_tokens, context_after, n_dec, decode_context_sum):
            assert (new_tokens[:n_dec] == 1).all()
            assert decode_context_sum == int(context_after[:n_dec].sum())
            calls.append(n_dec)
            return self.iteration_time_s(new_tokens, context_after)

    req = sample_requests(traffic(rate=20.0, prompt_mean=200, output_mean=300), 600, seed=3)
    cfg = SchedulerConfig(
        **{"kv_capacity_tokens": 6_000, "max_num_seqs": 64, "max_num_batched_tokens": 2048, **extra}
    )
    split = simulate(req, Split(), cfg, stop_on_overload=False)
    plain = simulate(req, LinearStepTimeModel(), cfg, stop_on_overload=False)
    assert len(calls) == len(plain.trace) and max(calls) > 0
    assert split.records.preemptions.sum() > 0
    np.testing.assert_array_equal(split.trace.duration_s, plain.trace.duration_s)
    np.testing.assert_array_equal(split.records.finish_s, plain.records.finish_s)


def test_decode_only_iterations_take_the_decode_only_entry_with_the_exact_sum():
    """A model's decode_only_time_s is called for the iterations of decodes alone, told their
    exact context sum, and the run is the one iteration_time_s gives."""
    seen = []

    class Split(LinearStepTimeModel):
        def split_iteration_time_s(self, new_tokens, context_after, n_dec, decode_context_sum):
            assert len(new_tokens) > n_dec  # decodes alone take the other entry
            return self.iteration_time_s(new_tokens, context_after)

        def decode_only_time_s(self, n_dec, decode_context_sum):
            seen.append((n_dec, decode_context_sum))
            # the linear model's iteration time of n decodes whose contexts add up to the sum
            return (
                self.fixed_s
                + self.per_new_token_s * float(n_dec)
                + self.per_context_token_s * float(decode_context_sum)
                + self.per_seq_s * n_dec
            )

    req = sample_requests(traffic(rate=20.0, prompt_mean=200, output_mean=300), 400, seed=4)
    cfg = SchedulerConfig(kv_capacity_tokens=6_000, max_num_seqs=64, max_num_batched_tokens=2048)
    split = simulate(req, Split(), cfg, stop_on_overload=False)
    plain = simulate(req, LinearStepTimeModel(), cfg, stop_on_overload=False)
    assert len(seen) > len(plain.trace) // 2
    np.testing.assert_allclose(split.trace.duration_s, plain.trace.duration_s, rtol=1e-12)
    np.testing.assert_allclose(split.records.finish_s, plain.records.finish_s, rtol=1e-12)


# --- cross-check against a slow reference implementation of the same policy -------------
POLICY_NAMES = ("chunked", "unchunked", "prefill_first")


def assert_matches_reference(req, cfg, model):
    res = simulate(req, model, cfg, stop_on_overload=False)  # the reference runs to the end
    ref = reference_simulate(req, model, cfg)
    for name in ("admitted_s", "first_token_s", "finish_s", "preemptions"):
        np.testing.assert_array_equal(getattr(res.records, name), ref[name], err_msg=name)
    np.testing.assert_array_equal(res.records.completed, ref["servable"])
    tr = res.trace
    for ours, theirs in (
        (tr.start_s, "start"),
        (tr.duration_s, "dt"),
        (tr.kv_blocks_used, "used"),
        (tr.num_seqs, "seqs"),
        (tr.num_tokens, "tokens"),
        (tr.num_waiting, "waiting"),
    ):
        np.testing.assert_array_equal(ours, ref["trace"][theirs], err_msg=theirs)
    return res


@pytest.mark.parametrize("policy", POLICY_NAMES)
@pytest.mark.parametrize("prefix_caching", [True, False])
def test_matches_reference_under_heavy_preemption(policy, prefix_caching):
    req = sample_requests(traffic(rate=50.0, prompt_mean=60, output_mean=80), 150, seed=6)
    cached = np.minimum(req.prompt_tokens - 1, 20)
    req = Requests.from_arrays(
        req.arrival_s, req.prompt_tokens, req.output_tokens, cached_prefix_tokens=cached
    )
    cfg = SchedulerConfig(
        kv_capacity_tokens=600,
        block_size_tokens=8,
        max_num_seqs=12,
        max_num_batched_tokens=96,
        policy=policy,
        prefix_caching=prefix_caching,
    )
    res = assert_matches_reference(req, cfg, MODEL)
    assert res.records.preemptions.sum() > 20


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 30),
    policy=st.sampled_from(POLICY_NAMES),
    prefix_caching=st.booleans(),
    max_seqs=st.integers(1, 6),
    budget=st.integers(6, 300),
    blocks=st.integers(2, 120),
    block_size=st.sampled_from([1, 4, 16]),
    gap_scale=st.sampled_from([0.001, 0.05, 1.0]),
)
def test_matches_reference_simulator(
    seed, n, policy, prefix_caching, max_seqs, budget, blocks, block_size, gap_scale
):
    rng = np.random.default_rng(seed)
    prompt = rng.integers(1, 150, n)
    req = Requests.from_arrays(
        np.cumsum(rng.exponential(gap_scale, n)),
        prompt,
        rng.integers(1, 80, n),
        cached_prefix_tokens=rng.integers(0, prompt) * rng.integers(0, 2, n),
    )
    cfg = SchedulerConfig(
        kv_capacity_tokens=blocks * block_size,
        block_size_tokens=block_size,
        max_num_seqs=max_seqs,
        max_num_batched_tokens=budget,
        policy=policy,
        prefix_caching=prefix_caching,
    )
    model = LinearStepTimeModel(fixed_s=1e-3, per_new_token_s=1e-5, per_context_token_s=1e-7)
    assert_matches_reference(req, cfg, model)
