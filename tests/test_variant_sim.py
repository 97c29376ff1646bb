"""Speculative and expert-parallel candidates in the serving simulator
(hwsim.planner.variant_sim): rounds per request by hand, the surcharges against direct pricing,
a lone request's TPOT against the round time it is made of, and the planner replaying them."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost
from hwsim.inference.speculative import speculative_round
from hwsim.planner.decode_variants import CandidatePricing
from hwsim.planner.plan import plan
from hwsim.planner.spec import Candidate, SpeculativeSpec
from hwsim.planner.step_model import EngineStepModel
from hwsim.planner.variant_sim import (
    ExpertParallelStepModel,
    SpeculativeStepModel,
    replay_for,
    rounds_for,
)
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.serving import SchedulerConfig
from hwsim.serving import simulate as run_simulation
from hwsim.serving.traffic import Requests

MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"


def pricing(acceptance: float = 0.8, k: int = 4) -> CandidatePricing:
    spec = SpeculativeSpec(draft="eagle", k=k, acceptance=acceptance)
    deployment = DeploymentSpec(max_num_seqs=16)
    dep = make_deployment(MODEL, HARDWARE, deployment)
    return CandidatePricing(dep, Candidate(HARDWARE, deployment, speculative=spec))


def test_rounds_by_hand():
    # E = 2.5: 100 tokens are the prefill's first + ceil(99 / 2.5) = 40 rounds
    got = rounds_for(np.array([0, 1, 2, 3, 100]), 2.5)
    assert got.tolist() == [0, 1, 2, 2, 41]
    # E = 1 (nothing accepted): one token per round, the plain count
    assert rounds_for(np.array([1, 7, 250]), 1.0).tolist() == [1, 7, 250]


def test_tokens_per_round_is_leviathans_expectation():
    p = pricing(acceptance=0.8, k=4)
    step = SpeculativeStepModel(EngineStepModel(p.dep), p, 4096)
    assert step.tokens_per_round == pytest.approx((1 - 0.8**5) / (1 - 0.8), rel=1e-12)


@pytest.mark.parametrize(("n", "q"), [(1, 16), (1, 1000), (9, 3000), (16, 1500)])
def test_surcharge_is_the_round_over_a_plain_step(n, q):
    p = pricing()
    step = SpeculativeStepModel(EngineStepModel(p.dep), p, 8192)
    spec = speculative_round(p.dep, "eagle", 4, 0.8, float(n), float(q))
    want = float(spec.time_s) - float(decode_step_cost(p.dep, float(n), float(q)).time_s)
    assert want > 0
    # exact on a grid point (q = 16), within the log-grid interpolation's error elsewhere
    assert step.surcharge_s(n, q) == pytest.approx(want, rel=1e-9 if q == 16 else 0.01)


def test_a_lone_request_takes_its_rounds_at_the_round_time():
    p = pricing(acceptance=0.8)
    prompt, output = 800, 301
    requests = Requests.from_arrays(np.array([0.0]), np.array([prompt]), np.array([output]))
    config = SchedulerConfig(kv_capacity_tokens=200_000, max_num_seqs=16)
    replay = replay_for(p, requests, config)
    result = replay.real_result(run_simulation(replay.requests, replay.step_model, replay.config))
    rec = result.records
    assert rec.output_tokens.tolist() == [output]  # the real count, for TPOT
    step = replay.step_model
    assert isinstance(step, SpeculativeStepModel)
    rounds = int(rounds_for(np.array([output]), step.tokens_per_round)[0]) - 1
    # every round of the lone sequence, at the contexts the simulator gives it
    base = EngineStepModel(p.dep)
    want = sum(
        base.iteration_time_s(np.array([1]), np.array([prompt + 1 + i]))
        + step.surcharge_s(1, prompt + 1 + i)
        for i in range(rounds)
    )
    decode_s = float(rec.finish_s[0] - rec.first_token_s[0])
    assert decode_s == pytest.approx(want, rel=0.02)
    assert float(rec.tpot_s[0]) == pytest.approx(decode_s / (output - 1), rel=1e-12)
    # fewer iterations than tokens: E > 1 tokens per round
    assert rounds < output - 1


def planned(model: str, rate_per_s: float, output: int, tpot: str, **candidates) -> dict:
    """A small plan scenario: 500-token prompts, the cheapest candidate simulated."""
    return {
        "model": model,
        "hardware": HARDWARE,
        "traffic": {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": rate_per_s}},
            "prompt_tokens": 500,
            "output_tokens": output,
        },
        "slo": {"ttft_p95_s": "2 s", "tpot_p95_s": tpot},
        "candidates": {"hardware": [HARDWARE], "tp": [1], **candidates},
        "serving": {"simulate_top": 1, "n_requests": 200},
    }


def test_the_planner_replays_the_cheapest_speculative_candidate():
    spec = {"draft": "eagle", "k": 4, "acceptance": 0.8}
    sc = planned(MODEL, 2, 200, "50 ms", speculative=[spec])
    result = plan(sc, workers=1)
    best = result.feasible[0]
    assert best.candidate.speculative is not None
    sim = best.simulated
    assert sim and sim["n_requests"] == 200 and not sim["overloaded"]
    # at 2 req/s the batch is small: the simulated TPOT sits near a round over E tokens
    spec = speculative_round(best_dep(), "eagle", 4, 0.8, 1.0, 600.0)
    per_token = float(spec.time_s) / spec.tokens_per_step
    assert per_token * 0.8 < sim["tpot_p95_s"] < per_token * 3


def best_dep():
    return make_deployment(MODEL, HARDWARE, DeploymentSpec())


MOE = "mixtral-8x7b"


def ep_pricing(ep: int = 2, imbalance: float = 1.3) -> CandidatePricing:
    deployment = DeploymentSpec(max_num_seqs=32, max_num_batched_tokens=2048)
    dep = make_deployment(MOE, HARDWARE, deployment)
    return CandidatePricing(dep, Candidate(HARDWARE, deployment, ep=ep, ep_imbalance=imbalance))


@pytest.mark.parametrize("tokens", [1, 8, 300, 2048])
def test_ep_surcharge_is_the_ep_step_over_the_plain_one(tokens):
    from hwsim.inference.expert_parallel import ep_phase_cost

    p = ep_pricing()
    step = ExpertParallelStepModel(EngineStepModel(p.dep), p)
    want = float(ep_phase_cost(p.dep, 2, "decode", float(tokens), 1.0, 1.3).time_s) - float(
        decode_step_cost(p.dep, float(tokens), 1.0).time_s
    )
    got = step.surcharge_s(0, 0, tokens)
    # exact on a grid point (1 token), within the log-grid interpolation's error elsewhere
    assert got == pytest.approx(want, rel=1e-9 if tokens == 1 else 0.02, abs=1e-7)


def test_ep_iterations_are_the_plain_ones_plus_the_surcharge_at_their_tokens():
    p = ep_pricing()
    base = EngineStepModel(p.dep)
    step = ExpertParallelStepModel(base, p)
    new = np.array([1, 1, 1, 700])
    ctx = np.array([900, 1200, 40, 700])
    want = base.iteration_time_s(new, ctx) + step.surcharge_s(3, 0, 703)
    assert step.iteration_time_s(new, ctx) == pytest.approx(want, rel=1e-12)
    got = step.split_iteration_time_s(new, ctx, 3, 900 + 1200 + 40)
    assert got == pytest.approx(
        base.split_iteration_time_s(new, ctx, 3, 2140) + step.surcharge_s(3, 0, 703), rel=1e-12
    )


def test_the_planner_replays_an_ep_group_as_one_attention_replica():
    sc = planned(MOE, 8, 100, "60 ms", ep=[2])
    result = plan(sc, workers=1)
    best = result.feasible[0]
    assert best.candidate.ep == 2
    sim = best.simulated
    assert sim and sim["n_requests"] == 200
    # two attention replicas share the group's rate
    assert sim["rate_per_s"] == pytest.approx(best.load_rate_per_s / 2, rel=1e-12)
