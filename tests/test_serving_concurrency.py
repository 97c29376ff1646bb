"""Closed-loop (benchmark-style) clients: ``arrivals: {kind: concurrency}``, the simulator's
client pool, token timelines and the vLLM benchmark_serving metrics."""

from pathlib import Path

import numpy as np
import pytest

import hwsim
from hwsim.errors import HwsimError
from hwsim.profiles.loader import validate
from hwsim.serving import (
    ClosedLoopRequests,
    IterationTrace,
    RequestRecords,
    Requests,
    SchedulerConfig,
    SimulationResult,
    TokenTimeline,
    TrafficSpec,
    benchmark_summary,
    sample_requests,
    simulate,
)
from hwsim.serving.benchmark import inter_token_gaps, latency_of, weighted_percentile

try:
    from serving_support import LinearStepTimeModel
except ImportError:  # tests/ imported as a package
    from tests.serving_support import LinearStepTimeModel

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "benchmark-concurrency.yaml"
MODEL = LinearStepTimeModel(fixed_s=5e-3, per_new_token_s=3e-5, per_context_token_s=4e-8)
BIG = SchedulerConfig(kv_capacity_tokens=10_000_000, max_num_batched_tokens=8192)


class ConstantStepModel:
    """An iteration with any prefill work takes ``prefill_s``; a decode-only one ``decode_s``."""

    def __init__(self, prefill_s: float, decode_s: float):
        self.prefill_s, self.decode_s = prefill_s, decode_s

    def iteration_time_s(self, new_tokens: np.ndarray, context_after: np.ndarray) -> float:
        return self.prefill_s if new_tokens.max() > 1 else self.decode_s


def closed_spec(clients: int, think="0 s", dist="fixed", sessions=None, **lengths) -> TrafficSpec:
    arrivals = {
        "kind": "concurrency",
        "clients": clients,
        "think_time_s": think,
        "think_time_distribution": dist,
    }
    data = {
        "arrivals": arrivals,
        "prompt_tokens": lengths.get("prompt", {"kind": "uniform", "low": 50, "high": 900}),
        "output_tokens": lengths.get("output", {"kind": "uniform", "low": 1, "high": 300}),
    }
    if sessions is not None:
        data["sessions"] = sessions
    return TrafficSpec.model_validate(data)


def in_flight_max(rec: RequestRecords) -> int:
    """Most requests between send and finish at once (a finish at t frees before a send at t)."""
    events = sorted([(t, 1) for t in rec.arrival_s] + [(t, -1) for t in rec.finish_s])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


# --- exact timings ---------------------------------------------------------------------------
def test_two_clients_completion_times_by_hand():
    """Tp = 0.1 s per iteration with prefill work, Td = 0.01 s per decode-only one; requests
    of 2 and 4 output tokens alternate, 2 clients, no think time:
    t=0: r0, r1 sent; [0, Tp] both prefill (token 1); [Tp, Tp+Td] decode: r0 done (2 tokens),
    r2 sent. [Tp+Td, 2Tp+Td] r2 prefill + r1 decode (token 3); [.., 2Tp+2Td] decode: r1 token 4
    and r2 token 2, both done, r3 and r4 sent; they prefill together, then r4 is done after
    one decode and r3 (4 tokens) after three, alone for the last two."""
    tp, td = 0.1, 0.01
    req = ClosedLoopRequests.from_arrays(np.full(5, 64), np.array([2, 4, 2, 4, 2]), clients=2)
    res = simulate(req, ConstantStepModel(tp, td), BIG)
    rec = res.records
    c = 2 * tp + 2 * td  # one full cycle
    np.testing.assert_allclose(rec.arrival_s, [0, 0, tp + td, c, c], rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        rec.first_token_s, [tp, tp, 2 * tp + td, c + tp, c + tp], rtol=0, atol=1e-15
    )
    np.testing.assert_allclose(
        rec.finish_s, [tp + td, c, c, c + tp + 3 * td, c + tp + td], rtol=0, atol=1e-15
    )
    assert res.clients == 2 and res.overload is None


def test_fixed_lengths_cycle_and_think_time_idles_the_engine():
    """N clients, all prompts fit one prefill iteration, O tokens: every round is Tp + (O-1) Td
    of work then think time idle; request k of a round finishes at (k + 1) rounds minus think."""
    tp, td, think, n, out = 0.05, 0.004, 0.3, 3, 5
    spec = closed_spec(n, think=think, prompt=100, output=out)
    req = sample_requests(spec, 4 * n)
    res = simulate(req, ConstantStepModel(tp, td), BIG)
    round_s = tp + (out - 1) * td
    expected_finish = np.repeat(np.arange(1, 5) * round_s + np.arange(4) * think, n)
    np.testing.assert_allclose(res.records.finish_s, expected_finish, rtol=1e-12)
    idle = np.diff(res.trace.start_s) - res.trace.duration_s[:-1]
    np.testing.assert_allclose(idle[idle > 1e-12], think, rtol=1e-9)


def test_concurrency_one_is_strictly_sequential():
    think = 0.25
    req = sample_requests(closed_spec(1, think=think), 60, seed=3)
    res = simulate(req, MODEL, BIG)
    rec = res.records
    assert rec.arrival_s[0] == 0.0
    np.testing.assert_array_equal(rec.arrival_s[1:], rec.finish_s[:-1] + think)
    assert np.all(res.trace.num_seqs == 1)  # each request ran alone
    assert in_flight_max(rec) == 1


def test_sends_follow_completions_in_order():
    """After the first N, send k goes out at the k-th completion (in time) + think time."""
    n, think = 6, 0.05
    req = sample_requests(closed_spec(n, think=think), 300, seed=1)
    rec = simulate(req, MODEL, BIG).records
    assert np.all(rec.arrival_s[:n] == 0.0)
    np.testing.assert_array_equal(rec.arrival_s[n:], np.sort(rec.finish_s)[: len(rec) - n] + think)


@pytest.mark.parametrize("clients", [1, 4, 32])
def test_never_more_than_n_in_flight_and_n_reached(clients):
    req = sample_requests(closed_spec(clients, think="20 ms", dist="exponential"), 400, seed=2)
    res = simulate(req, MODEL, SchedulerConfig(kv_capacity_tokens=40_000))
    rec = res.records
    assert rec.completed.all()
    assert in_flight_max(rec) == clients
    assert res.trace.num_seqs.max() <= clients and res.trace.num_waiting.max() <= clients


def test_littles_law_closed_loop():
    """N = X (W + Z): throughput x (mean E2E + think) = clients, up to the drain at the end."""
    for think in (0.0, 0.2):
        n = 16
        req = sample_requests(closed_spec(n, think=think), 3000, seed=4)
        s = benchmark_summary(simulate(req, MODEL, BIG))
        little = s.request_throughput_per_s * (s.e2el.mean_s + think)
        assert little == pytest.approx(n, rel=0.03)
        assert little < n  # the last round drains with fewer clients busy


def test_many_clients_equal_open_loop_arrivals_at_zero():
    """With clients >= requests every request is sent at t = 0: same as open-loop arrivals
    at 0, the two arrival paths of the engine agree record for record."""
    prompt, output = np.arange(20, 60), np.arange(1, 41)
    closed = simulate(ClosedLoopRequests.from_arrays(prompt, output, clients=100), MODEL, BIG)
    opened = simulate(Requests.from_arrays(np.zeros(40), prompt, output), MODEL, BIG)
    for field in ("arrival_s", "first_token_s", "finish_s", "admitted_s"):
        a, b = getattr(closed.records, field), getattr(opened.records, field)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(closed.trace.duration_s, opened.trace.duration_s)


# --- sessions ------------------------------------------------------------------------------
def test_session_turns_wait_for_the_previous_answer():
    sessions = {"turns": {"kind": "uniform", "low": 1, "high": 5}, "think_time_s": "0.5 s"}
    sessions["think_time_distribution"] = "fixed"
    spec = closed_spec(4, think="0.1 s", sessions=sessions, prompt=200, output=50)
    req = sample_requests(spec, 200, seed=5)
    rec = simulate(req, MODEL, BIG).records
    sid = req.session_id
    later = np.flatnonzero(sid[1:] == sid[:-1]) + 1
    assert len(later) > 50
    np.testing.assert_array_equal(rec.arrival_s[later], rec.finish_s[later - 1] + 0.5)
    # a turn re-sends the history: previous prompt + previous output + its own 200 tokens
    np.testing.assert_array_equal(req.prompt_tokens[later], req.prompt_tokens[later - 1] + 50 + 200)
    # at most 4 sessions are open at once (a client holds one session at a time)
    first, last = {}, {}
    for r, s in enumerate(sid):
        first.setdefault(s, rec.arrival_s[r])
        last[s] = rec.finish_s[r]
    opens = sorted([(first[s], 1) for s in first] + [(last[s], -1) for s in last])
    assert max(np.cumsum([d for _, d in opens])) <= 4


def test_closed_loop_sampling_order_and_counts():
    spec = TrafficSpec.model_validate(
        {
            "arrivals": {"kind": "concurrency", "clients": 3, "requests": 70, "think_time_s": 2},
            "prompt_tokens": 10,
            "output_tokens": 5,
            "sessions": {"turns": 3, "think_time_s": 7, "think_time_distribution": "fixed"},
        }
    )
    req = sample_requests(spec, seed=0)
    assert len(req) == 70 and req.clients == 3  # the spec's requests (--num-prompts)
    assert len(sample_requests(spec, 12)) == 12  # an explicit count overrides it
    np.testing.assert_array_equal(req.session_id, np.arange(70) // 3)  # turns consecutive
    np.testing.assert_array_equal(req.think_s, np.tile([2.0, 7.0, 7.0], 24)[:70])
    again = sample_requests(spec, seed=0)
    np.testing.assert_array_equal(again.prompt_tokens, req.prompt_tokens)


# --- rejections and overload ----------------------------------------------------------------
def test_rejected_request_fails_at_once_and_the_client_moves_on():
    cfg = SchedulerConfig(kv_capacity_tokens=2000, max_num_batched_tokens=512)
    prompt = np.array([100, 5000, 100, 100])  # r1 can never fit the KV cache
    req = ClosedLoopRequests.from_arrays(prompt, np.full(4, 3), clients=1, think_s=0.5)
    rec = simulate(req, MODEL, cfg).records
    assert rec.status.tolist() == ["completed", "rejected_kv_capacity", "completed", "completed"]
    assert rec.arrival_s[1] == rec.finish_s[0] + 0.5
    assert rec.arrival_s[2] == rec.arrival_s[1] + 0.5
    assert rec.arrival_s[3] == rec.finish_s[2] + 0.5


def test_closed_loop_never_stops_for_overload():
    """200 clients on a slow engine: the queue is long but bounded, so the run completes;
    the same lengths sent open loop much faster than served do trip the monitor."""
    slow = LinearStepTimeModel(fixed_s=0.02, per_new_token_s=2e-4)
    cfg = SchedulerConfig(kv_capacity_tokens=50_000, max_num_seqs=16)
    spec = closed_spec(200, prompt=500, output=100)
    res = simulate(sample_requests(spec, 4000), slow, cfg)
    assert res.overload is None and res.records.completed.all()
    assert res.trace.num_waiting.max() <= 200
    fast = sample_requests(spec.at_rate(200.0), 4000)
    assert simulate(fast, slow, cfg).overload is not None


# --- token timeline and metrics ---------------------------------------------------------------
@pytest.mark.parametrize("policy", ["chunked", "unchunked"])
def test_token_timeline_is_exact_with_preemptions(policy):
    cfg = SchedulerConfig(kv_capacity_tokens=6000, policy=policy, max_num_batched_tokens=1024)
    req = sample_requests(closed_spec(32, output={"kind": "uniform", "low": 1, "high": 600}), 300)
    res = simulate(req, MODEL, cfg)
    rec, tl = res.records, res.timeline
    assert rec.preemptions.sum() > 20  # the test must exercise stints cut by preemption
    gaps = []
    for r in range(len(rec)):
        t = tl.token_times_s(r)
        assert len(t) == rec.output_tokens[r]
        assert t[0] == rec.first_token_s[r] and t[-1] == rec.finish_s[r]
        assert np.all(np.diff(t) > 0)
        gaps.append(np.diff(t))
    pooled = np.concatenate(gaps)
    itl = latency_of(*inter_token_gaps(tl))
    assert itl.count == len(pooled) == (rec.output_tokens - 1).sum()
    assert itl.mean_s == pytest.approx(pooled.mean(), rel=1e-12)
    assert itl.median_s == pytest.approx(np.median(pooled), rel=1e-12)
    assert itl.p99_s == pytest.approx(np.percentile(pooled, 99), rel=1e-12)
    assert itl.std_s == pytest.approx(np.std(pooled), rel=1e-9)


def test_weighted_percentile_matches_numpy_on_the_repeat():
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.normal(size=rng.integers(1, 30))
        c = rng.integers(1, 6, size=len(v))
        for q in (0.0, 13.0, 50.0, 99.0, 100.0):
            expected = np.percentile(np.repeat(v, c), q)
            assert weighted_percentile(v, c, q) == pytest.approx(expected, abs=1e-12)


def hand_result() -> SimulationResult:
    """r0: sent 0, tokens 1.0, 1.5, 2.5. r1: sent 0.5, one token at 2.0. r2: sent 1.0, tokens
    1.5, 2.5, preempted, re-prefill token 3.5, then 4.0. r3: rejected when sent at 4.5.
    Decode steps end at 1.5, 2.5, 4.0."""
    nan = np.nan
    records = RequestRecords(
        arrival_s=np.array([0.0, 0.5, 1.0, 4.5]),
        admitted_s=np.array([0.0, 0.5, 1.0, nan]),
        first_token_s=np.array([1.0, 2.0, 1.5, nan]),
        finish_s=np.array([2.5, 2.0, 4.0, nan]),
        prompt_tokens=np.array([10, 20, 30, 99_999]),
        output_tokens=np.array([3, 1, 4, 7]),
        cached_prefix_tokens=np.zeros(4, dtype=int),
        preemptions=np.array([0, 0, 1, 0]),
        status=np.array(["completed"] * 3 + ["rejected_kv_capacity"]),
    )
    timeline = TokenTimeline(
        decode_step_end_s=np.array([1.5, 2.5, 4.0]),
        stint_request=np.array([2, 0, 1, 2]),
        stint_start_s=np.array([1.5, 1.0, 2.0, 3.5]),
        stint_first_step=np.array([1, 0, 2, 2]),
        stint_decodes=np.array([1, 2, 0, 1]),
    )
    empty = np.zeros(0)
    trace = IterationTrace(empty, empty, empty, empty, empty, empty, kv_blocks_total=10)
    cfg = SchedulerConfig(kv_capacity_tokens=1000)
    return SimulationResult(records, trace, cfg, timeline=timeline, clients=2)


def test_benchmark_metrics_on_hand_made_records():
    res = hand_result()
    np.testing.assert_array_equal(res.timeline.token_times_s(2), [1.5, 2.5, 3.5, 4.0])
    s = benchmark_summary(res)
    assert (s.successful_requests, s.failed_requests, s.max_concurrency) == (3, 1, 2)
    assert s.duration_s == 4.5  # first send (0) to the rejection at 4.5
    assert (s.total_input_tokens, s.total_output_tokens) == (60, 8)
    assert s.request_throughput_per_s == pytest.approx(3 / 4.5)
    assert s.output_token_throughput_per_s == pytest.approx(8 / 4.5)
    assert s.total_token_throughput_per_s == pytest.approx(68 / 4.5)
    # TTFT 1.0, 1.5, 0.5; E2EL 2.5, 1.5, 3.0; TPOT (e2e - ttft) / (O - 1): 0.75, 2.5 / 3
    assert (s.ttft.mean_s, s.ttft.median_s) == (1.0, 1.0)
    assert s.ttft.p99_s == pytest.approx(1.0 + 0.98 * 0.5)
    assert s.e2el.mean_s == pytest.approx(7.0 / 3) and s.e2el.median_s == 2.5
    assert s.tpot.count == 2 and s.tpot.mean_s == pytest.approx((0.75 + 2.5 / 3) / 2)
    # ITL pooled: r0 0.5, 1.0; r2 1.0, 1.0 (across the preemption), 0.5
    assert s.itl.count == 5
    assert s.itl.mean_s == pytest.approx(0.8) and s.itl.median_s == 1.0 and s.itl.p99_s == 1.0
    assert s.itl.std_s == pytest.approx(np.sqrt(0.06))
    table = s.table()
    for label in (
        "Successful requests:                     3",
        "Benchmark duration (s):                  4.50",
        "Request throughput (req/s):              0.67",
        "Output token throughput (tok/s):         1.78",
        "Total Token throughput (tok/s):          15.11",
        "Mean TTFT (ms):                          1000.00",
        "P99 ITL (ms):                            1000.00",
        "Median E2EL (ms):                        2500.00",
    ):
        assert label in table
    out = s.vllm_result()
    assert out["mean_itl_ms"] == pytest.approx(800.0) and out["completed"] == 3
    assert out["max_concurrency"] == 2


# --- spec and the scenario path ---------------------------------------------------------------
def test_yaml_errors_name_field_value_and_rule():
    base = {"prompt_tokens": 100, "output_tokens": 10}
    too_few = r"arrivals\.concurrency\.clients.*greater than or equal to 1 \(got 0\)"
    with pytest.raises(HwsimError, match=too_few):
        validate(TrafficSpec, {"arrivals": {"kind": "concurrency", "clients": 0}, **base}, "s")
    bad_kind = {"arrivals": {"kind": "concurrent", "clients": 4}, **base}
    with pytest.raises(HwsimError, match="'poisson', 'trace', 'concurrency'"):
        validate(TrafficSpec, bad_kind, "s")
    bad_dist = {"kind": "concurrency", "clients": 4, "think_time_distribution": "gamma"}
    with pytest.raises(HwsimError, match="'fixed' or 'exponential'.*got 'gamma'"):
        validate(TrafficSpec, {"arrivals": bad_dist, **base}, "s")
    with pytest.raises(HwsimError, match="concurrency arrivals need prompt_tokens"):
        validate(TrafficSpec, {"arrivals": {"kind": "concurrency", "clients": 4}}, "s")
    spec = validate(TrafficSpec, {"arrivals": {"kind": "concurrency", "clients": 4}, **base}, "s")
    with pytest.raises(HwsimError, match="needs a request count"):
        sample_requests(spec)
    with pytest.raises(HwsimError, match="no arrival rate"):
        spec.peak_rate_per_s  # noqa: B018


def test_per_replica_splits_clients_and_requests():
    spec = TrafficSpec.model_validate(
        {
            "arrivals": {"kind": "concurrency", "clients": 10, "requests": 101},
            "prompt_tokens": 10,
            "output_tokens": 5,
        }
    )
    share = spec.per_replica(4).arrivals
    assert (share.clients, share.requests) == (3, 26)
    assert spec.at_rate(5.0).arrivals.kind == "poisson"


def test_example_scenario_runs_as_a_benchmark():
    result, _ = hwsim.simulate(EXAMPLE)
    s = benchmark_summary(result)
    assert s.successful_requests == 500 and s.max_concurrency == 16
    assert in_flight_max(result.records) == 16
    assert s.total_input_tokens == 500 * 1024 and s.total_output_tokens == 500 * 128
    assert 0 < s.ttft.median_s < s.e2el.median_s
    assert s.tpot.mean_s == pytest.approx(s.itl.mean_s, rel=1e-9)  # all outputs 128 long
