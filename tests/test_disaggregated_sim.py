"""The serving simulator on disaggregated candidates (hwsim.planner.disaggregated_sim): the
hand-over interpolation against the transfer model, the per-request timeline's invariants,
and an under-provisioned pool caught as overload."""

from __future__ import annotations

from dataclasses import replace as dc_replace

import numpy as np
import pytest

from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import prefill_cost
from hwsim.inference.kv_transfer import kv_transfer
from hwsim.planner.disaggregated import is_disaggregated
from hwsim.planner.disaggregated_sim import (
    TRANSFER_GRID_POINTS,
    confirm_disaggregated,
    confirmation_text,
    exposed_transfer_by_prompt,
)
from hwsim.planner.plan import as_scenario, candidates_of, plan, serving_of, traffic_of
from hwsim.planner.spec import DisaggregationSpec
from tests.test_disaggregated import small


@pytest.mark.parametrize("overlap", ["layerwise", "none"])
def test_exposed_transfer_interpolation_matches_the_transfer_model(overlap):
    pre = make_deployment("llama-3.1-70b", "h100-sxm", tp=4)
    dec = make_deployment("llama-3.1-70b", "h100-sxm", tp=8)
    spec = DisaggregationSpec(kv_overlap=overlap)
    rng = np.random.default_rng(3)
    prompts = np.sort(rng.integers(100, 20_000, size=12)).astype(float)
    got = exposed_transfer_by_prompt(pre, dec, prompts, spec)
    for x, value in zip(prompts, got):
        t_pf = float(np.ravel(prefill_cost(pre, 1.0, x).time_s)[0])
        want = kv_transfer(pre, dec, x, overlap=overlap, prefill_compute_s=t_pf).exposed_s
        assert value == pytest.approx(want, rel=0.02)  # a 33-point geometric grid
    ends = exposed_transfer_by_prompt(pre, dec, prompts[[0, -1]], spec)
    for x, value in zip(prompts[[0, -1]], ends):  # grid end points are exact
        t_pf = float(np.ravel(prefill_cost(pre, 1.0, x).time_s)[0])
        want = kv_transfer(pre, dec, x, overlap=overlap, prefill_compute_s=t_pf).exposed_s
        assert value == pytest.approx(want, rel=1e-12)
    assert TRANSFER_GRID_POINTS >= 16


def _planned(first_token_from: str, rate: float = 10.0):
    sc = small(
        traffic={
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": rate}},
            "prompt_tokens": {"kind": "lognormal", "mean": 1024, "p95": 2048},
            "output_tokens": {"kind": "lognormal", "mean": 128, "p95": 256},
        },
        candidates={"disaggregation": {"first_token_from": first_token_from}},
        serving={"simulate_top": 1, "n_requests": 300},
    )
    result = plan(sc)
    best = next(r for r in result.feasible if is_disaggregated(r))
    return sc, best


@pytest.mark.parametrize("first_token_from", ["decode", "prefill"])
def test_the_simulated_timeline_is_causal(first_token_from):
    sc, best = _planned(first_token_from)
    sim = best.simulated
    assert sim["n_requests"] >= 200 and not sim["overloaded"]
    assert sim["n_requests_prefill"] >= sim["n_requests"] * best.decode_replicas * 0.9
    assert sim["ttft_p50_s"] <= sim["ttft_p95_s"] <= sim["ttft_p99_s"]
    if first_token_from == "prefill":  # the prefill instance's token is the first one
        assert sim["ttft_p95_s"] == pytest.approx(sim["prefill_done_p95_s"], rel=1e-9)
    else:  # the first token also waits for the hand-over and a decode step
        assert sim["ttft_p95_s"] > sim["prefill_done_p95_s"]
    assert sim["tpot_p95_s"] > 0 and sim["e2e_p95_s"] > sim["ttft_p95_s"]
    assert best.confirmation.startswith("simulated (both pools)")


def test_an_under_provisioned_prefill_pool_is_overload():
    sc, best = _planned("decode", rate=10.0)
    short = dc_replace(best, prefill_replicas=1)
    scenario = as_scenario(sc)
    traffic = traffic_of(scenario).at_rate(40.0)  # one prefill replica at 4x the planned peak
    sim = confirm_disaggregated(
        scenario, short, traffic, serving_of(scenario), candidates_of(scenario).disaggregation
    )
    assert sim["overloaded"] and sim["overload"].startswith("prefill pool")
    assert not sim["meets_slo"]


def test_closed_loop_clients_leave_a_disaggregated_candidate_analytic():
    sc, best = _planned("decode")
    scenario = as_scenario(sc)
    open_loop = traffic_of(scenario)
    fields = open_loop.model_dump() | {
        "arrivals": {"kind": "concurrency", "clients": 8, "requests": 64}
    }
    closed = type(open_loop).model_validate(fields)
    sim = confirm_disaggregated(
        scenario, best, closed, serving_of(scenario), candidates_of(scenario).disaggregation
    )
    assert "not_simulated" in sim and not sim.get("overloaded")
    assert confirmation_text(sim).startswith("analytic (not simulated: closed-loop")
