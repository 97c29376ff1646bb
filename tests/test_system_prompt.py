"""A shared system prompt in the traffic (``system_prompt_tokens``): every prompt starts with
it, every request after the first reports it as a cached prefix, and an engine with prefix
caching skips its prefill; the reusable share of prompt tokens follows from the traffic."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from hwsim.planner.plan import summarise_workload
from hwsim.serving import SchedulerConfig
from hwsim.serving.simulator import simulate
from hwsim.serving.traffic import TrafficSpec, reusable_prefix_fraction, sample_requests
from tests.serving_support import LinearStepTimeModel

POISSON = {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 4}}


def spec(**extra) -> TrafficSpec:
    return TrafficSpec.model_validate(
        {"arrivals": POISSON, "prompt_tokens": 500, "output_tokens": 50, **extra}
    )


def test_every_prompt_carries_the_system_prompt_and_later_requests_reuse_it():
    plain = sample_requests(spec(), 200, seed=3)
    with_sys = sample_requests(spec(system_prompt_tokens=1500), 200, seed=3)
    np.testing.assert_array_equal(with_sys.prompt_tokens, plain.prompt_tokens + 1500)
    np.testing.assert_array_equal(with_sys.arrival_s, plain.arrival_s)
    assert with_sys.cached_prefix_tokens[0] == 0
    assert np.all(with_sys.cached_prefix_tokens[1:] == 1500)
    # reusable share by hand: 199 x 1500 of 200 x 2000 prompt tokens
    assert reusable_prefix_fraction(with_sys) == pytest.approx(199 * 1500 / (200 * 2000))


def test_sessions_reuse_history_and_the_system_prompt():
    s = spec(
        system_prompt_tokens=1000,
        sessions={"turns": 3, "think_time_s": 5, "prefix_caching": True},
    )
    req = sample_requests(s, 300, seed=1)
    plain = sample_requests(
        spec(sessions={"turns": 3, "think_time_s": 5, "prefix_caching": True}), 300, seed=1
    )
    np.testing.assert_array_equal(req.prompt_tokens, plain.prompt_tokens + 1000)
    np.testing.assert_array_equal(
        req.cached_prefix_tokens[1:], plain.cached_prefix_tokens[1:] + 1000
    )


def test_the_analytic_workload_prefills_less_with_a_system_prompt():
    work = summarise_workload(spec(system_prompt_tokens=1500))
    assert work.prompt_mean == pytest.approx(2000)
    n = 20_000  # the planner's seeded sample (WORKLOAD_SAMPLE)
    assert work.prefill_mean == pytest.approx(2000 - 1500 * (n - 1) / n, rel=1e-3)


def test_prefix_caching_engine_answers_sooner():
    req = sample_requests(spec(system_prompt_tokens=3000), 300, seed=0)
    model = LinearStepTimeModel()
    off = simulate(req, model, SchedulerConfig(kv_capacity_tokens=2_000_000))
    on = simulate(req, model, SchedulerConfig(kv_capacity_tokens=2_000_000, prefix_caching=True))
    assert np.median(on.records.ttft_s) < np.median(off.records.ttft_s)


def test_a_trace_with_a_system_prompt_is_refused(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,100,10\n0.5,200,20\n")
    TrafficSpec.model_validate({"arrivals": {"kind": "trace", "file": str(trace)}})
    with pytest.raises(ValidationError, match="system_prompt_tokens"):
        TrafficSpec.model_validate(
            {"arrivals": {"kind": "trace", "file": str(trace)}, "system_prompt_tokens": 10}
        )


def test_an_engine_without_prefix_caching_prefills_whole_prompts():
    """The planner's workload skips cached prefixes only for candidates with prefix caching."""
    work = summarise_workload(spec(system_prompt_tokens=1500))
    assert work.for_engine(True) is work
    off = work.for_engine(False)
    assert off.prefill_mean == work.prompt_mean == pytest.approx(2000)
    assert off.prefill_scv == pytest.approx(work.prompt_scv)
    plain = summarise_workload(spec())
    assert plain.for_engine(False) is plain  # nothing cacheable: nothing changes
