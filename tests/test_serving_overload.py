"""Overload: a run whose arrivals outrun service stops early and says what it could sustain."""

import time

import numpy as np
import pytest
from serving_support import LinearStepTimeModel

import hwsim
from hwsim.serving import SchedulerConfig, TrafficSpec, sample_requests, simulate, summarize
from hwsim.serving.overload import MARGIN, OverloadMonitor
from hwsim.serving.scheduler import NOT_SERVED_OVERLOAD

# one sequence at a time, 10 ms per token: a request of 1 prompt + 20 output tokens takes
# ~0.2 s, so the replica serves about 5 requests/s
MODEL = LinearStepTimeModel(fixed_s=1e-2, per_new_token_s=0.0, per_context_token_s=0.0)
CONFIG = SchedulerConfig(kv_capacity_tokens=10_000, max_num_seqs=1, max_num_batched_tokens=64)


def traffic(rate: float) -> TrafficSpec:
    return TrafficSpec.model_validate(
        {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": rate}},
            "prompt_tokens": {"kind": "fixed", "value": 1},
            "output_tokens": {"kind": "fixed", "value": 20},
        }
    )


def test_twice_the_capacity_is_called_overloaded_with_the_sustained_rate():
    requests = sample_requests(traffic(10.0), 20_000, seed=1)
    result = simulate(requests, MODEL, CONFIG)
    ov = result.overload
    assert ov is not None
    # service: 20 iterations of 10 ms per request = 5 requests/s exactly
    assert ov.sustained_rate_per_s == pytest.approx(5.0, rel=0.02)
    assert ov.arrival_rate_per_s == pytest.approx(10.0, rel=0.25)
    served = result.records.completed.sum()
    assert served < len(requests) / 2  # it stopped early
    assert (result.records.status == NOT_SERVED_OVERLOAD).sum() == len(requests) - served
    summary = summarize(result)
    assert summary.overloaded and "overloaded" in summary.overload_reason
    assert summary.sustained_rate_per_s == ov.sustained_rate_per_s


def test_half_the_capacity_runs_to_the_end():
    requests = sample_requests(traffic(2.5), 3_000, seed=1)
    result = simulate(requests, MODEL, CONFIG)
    assert result.overload is None
    assert result.records.completed.all()


def test_stop_on_overload_false_serves_everything():
    requests = sample_requests(traffic(10.0), 600, seed=1)
    result = simulate(requests, MODEL, CONFIG, stop_on_overload=False)
    assert result.overload is None and result.records.completed.all()


def test_the_monitor_needs_growth_at_every_sample():
    m = OverloadMonitor(windows=3, min_growth=5)
    samples = [(0.0, 0, 0, 0), (1.0, 10, 2, 8), (2.0, 20, 4, 7), (3.0, 30, 6, 30)]
    assert all(m.sample(*s) is None for s in samples)  # the queue shrank once
    m = OverloadMonitor(windows=3, min_growth=5)
    rising = [(0.0, 0, 0, 0), (1.0, 10, 2, 8), (2.0, 20, 4, 16), (3.0, 30, 6, 24)]
    results = [m.sample(*s) for s in rising]
    assert results[:3] == [None, None, None]
    assert results[3].arrival_rate_per_s == pytest.approx(10.0)
    assert results[3].sustained_rate_per_s == pytest.approx(2.0)


def test_a_queue_that_grows_while_service_keeps_up_is_not_overload():
    m = OverloadMonitor(windows=2, min_growth=1)
    # arrivals only MARGIN - 1% above completions: growth, but within the margin
    rate = MARGIN * 0.99
    out = [m.sample(float(t), int(100 * rate * t), 100 * t, t) for t in range(1, 4)]
    assert out == [None, None, None]


def test_chat_service_single_replica_at_40_per_s_stops_quickly_with_a_reason():
    """Regression: hwsim.simulate on the example's own single replica ran for minutes."""
    t0 = time.process_time()
    result, summary = hwsim.simulate("examples/chat-service.yaml", n_requests=4000, seed=0)
    cpu_s = time.process_time() - t0
    assert summary.overloaded
    assert summary.sustained_rate_per_s < 40
    assert "overloaded" in summary.overload_reason
    assert cpu_s < 60  # far from the minutes it took; a loose bound on a shared machine
    assert np.isnan(result.records.finish_s[result.records.status == NOT_SERVED_OVERLOAD]).all()


def test_the_planner_prunes_a_candidate_the_simulator_finds_overloaded(monkeypatch):
    """If the analytic model is optimistic, the simulated replica falls behind: the planner
    must not recommend it."""
    from hwsim.planner import plan as plan_module

    def fake_confirm(sc, r, traffic, serving):
        return {"overloaded": True, "overload": "overloaded: test", "meets_slo": False}

    monkeypatch.setattr(plan_module, "confirm_with_simulator", fake_confirm)
    scenario = {
        "model": "llama-2-7b",
        "hardware": "a100-80gb-sxm",
        "traffic": {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 5}},
            "prompt_tokens": 64,
            "output_tokens": 64,
        },
        "slo": {"tpot_p95_s": "100 ms"},
        "candidates": {"hardware": ["a100-80gb-sxm", "h100-sxm"]},
        "serving": {"simulate_top": 1},
    }
    result = plan_module.plan(scenario)
    pruned = {r.candidate.label: r.reason for r in result.pruned}
    assert any(reason == "simulator: overloaded: test" for reason in pruned.values())
    assert result.best is not None and result.best.candidate.label not in pruned
