"""The planner's speculative and expert-parallel axes (hwsim.planner.decode_variants): the
steady state recomputed by hand from the scalar APIs, the memory they cost, the grid and its
errors, and the launch flags they emit."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import yaml

from hwsim.deploy.engines import engine_command
from hwsim.deploy.target import from_plan
from hwsim.errors import HwsimError
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import prefill_cost
from hwsim.inference.expert_parallel import ep_phase_cost, expert_parallel_step
from hwsim.inference.runtime_terms import runtime_terms
from hwsim.inference.speculative import speculative_decode
from hwsim.planner.analytic import Workload, evaluate
from hwsim.planner.plan import plan
from hwsim.planner.spec import Candidate, CandidatesSection, SpeculativeSpec
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.scenario import SLO

WORK = Workload(
    peak_rate_per_s=20.0, prompt_mean=1000.0, prompt_p95=2000.0, output_mean=200.0,
    prefill_mean=1000.0,
)  # fmt: skip
LOOSE = SLO(ttft_p95_s=5.0, tpot_p95_s=0.2, headroom_fraction=0.2)
EAGLE4 = SpeculativeSpec(draft="eagle", k=4, acceptance=0.7)


def _hand_rate_and_tpot(dep, b, step_s, tokens, prefill_s):
    """The analytic model's module docstring, term by term."""
    rt = runtime_terms(dep)
    t_pf = prefill_s + rt.prefill_overhead_s
    t_dec = rt.decode_step_s(step_s, b)
    lam = b / (WORK.output_mean / tokens * t_dec + b * t_pf)
    rho = lam * t_pf
    return lam, t_dec / tokens / (1 - rho)


def test_speculative_candidate_by_hand():
    cand = Candidate("h100-sxm", DeploymentSpec(), EAGLE4)
    r = evaluate("llama-3.1-8b", cand, WORK, LOOSE, {})
    assert r.feasible, r.reason
    b, ctx = r.batch_at_slo, int(WORK.prompt_mean + WORK.output_mean / 2)
    s = speculative_decode("llama-3.1-8b", "eagle", "h100-sxm", 4, 0.7, batch=b, context=ctx)
    dep = make_deployment("llama-3.1-8b", "h100-sxm")
    e = (1 - 0.7**5) / (1 - 0.7)
    assert s.tokens_per_step == pytest.approx(e)
    prefill = float(prefill_cost(dep, 1.0, WORK.prefill_mean).time_s)
    lam, tpot = _hand_rate_and_tpot(dep, b, s.t_draft_total_s + s.t_verify_s, e, prefill)
    assert r.tpot_s == pytest.approx(tpot, rel=1e-9)
    assert r.per_replica_rate_per_s == pytest.approx(lam * (1 - LOOSE.headroom_fraction))
    assert r.replicas == math.ceil(WORK.peak_rate_per_s / r.per_replica_rate_per_s)


def test_zero_acceptance_never_beats_plain_decoding():
    plain = evaluate("llama-3.1-8b", Candidate("h100-sxm", DeploymentSpec()), WORK, LOOSE, {})
    spec = SpeculativeSpec(draft="eagle", k=3, acceptance=0.0)  # E = 1: drafting is waste
    r = evaluate("llama-3.1-8b", Candidate("h100-sxm", DeploymentSpec(), spec), WORK, LOOSE, {})
    assert r.per_replica_rate_per_s <= plain.per_replica_rate_per_s
    assert r.gpus >= plain.gpus


@pytest.mark.parametrize("low, high", [(0.0, 0.3), (0.3, 0.6), (0.6, 0.9)])
def test_more_acceptance_never_costs_more(low, high):
    rates = []
    for a in (low, high):
        spec = SpeculativeSpec(draft="eagle", k=4, acceptance=a)
        r = evaluate("llama-3.1-8b", Candidate("h100-sxm", DeploymentSpec(), spec), WORK, LOOSE, {})
        assert r.feasible, r.reason
        rates.append(r.per_replica_rate_per_s)
    assert rates[1] > rates[0]


def test_a_draft_model_costs_weights_and_kv_capacity():
    base = DeploymentSpec(tp=4)
    spec = SpeculativeSpec(draft="llama-3.1-8b", k=4, acceptance=0.75)
    plain = evaluate("llama-3.1-70b", Candidate("h100-sxm", base), WORK, LOOSE, {})
    r = evaluate("llama-3.1-70b", Candidate("h100-sxm", base, spec), WORK, LOOSE, {})
    draft = make_deployment("llama-3.1-8b", "h100-sxm", tp=4)
    from hwsim.inference.memory import kv_bytes_per_token_per_gpu, weight_bytes_per_gpu

    assert r.weights_bytes == pytest.approx(plain.weights_bytes + weight_bytes_per_gpu(draft))
    target_kv = kv_bytes_per_token_per_gpu(make_deployment("llama-3.1-70b", "h100-sxm", tp=4))
    share = target_kv / (target_kv + kv_bytes_per_token_per_gpu(draft))
    free_plain = plain.kv_capacity_tokens * target_kv
    free_spec = (free_plain - weight_bytes_per_gpu(draft)) * share
    assert r.kv_capacity_tokens == pytest.approx(free_spec / target_kv, rel=1e-9)


def test_ep_phase_cost_matches_the_scalar_ep_step():
    dep = make_deployment("mixtral-8x7b", "h100-sxm", tp=2)
    batches = np.array([1.0, 7.0, 64.0, 200.0])
    vector = ep_phase_cost(dep, 8, "decode", batches, 1500.0, 1.3)
    for i, b in enumerate(batches):
        scalar = expert_parallel_step(
            "mixtral-8x7b", "h100-sxm", 8, int(b), 1500, imbalance=1.3, tp=2
        )
        assert vector.time_s[i] == pytest.approx(scalar.time_s, rel=1e-12)
    prefill = ep_phase_cost(dep, 8, "prefill", 1.0, 3000.0, 1.3)
    scalar = expert_parallel_step("mixtral-8x7b", "h100-sxm", 8, 1, 3000, "prefill", 1.3, tp=2)
    assert float(np.ravel(prefill.time_s)[0]) == pytest.approx(scalar.time_s, rel=1e-12)


def test_expert_parallel_candidate_by_hand():
    cand = Candidate("h100-sxm", DeploymentSpec(tp=2), None, 8, 1.2)
    r = evaluate("mixtral-8x7b", cand, WORK, LOOSE, {})
    assert r.feasible, r.reason
    replicas_inside = 8 // 2
    b = r.batch_at_slo // replicas_inside
    dep = make_deployment("mixtral-8x7b", "h100-sxm", tp=2)
    ctx = WORK.prompt_mean + WORK.output_mean / 2
    step = float(ep_phase_cost(dep, 8, "decode", float(b), ctx, 1.2).time_s)
    prefill = float(np.ravel(ep_phase_cost(dep, 8, "prefill", 1.0, 1000.0, 1.2).time_s)[0])
    lam, tpot = _hand_rate_and_tpot(dep, b, step, 1.0, prefill)
    assert r.tpot_s == pytest.approx(tpot, rel=1e-9)
    rate = replicas_inside * lam * (1 - LOOSE.headroom_fraction)
    assert r.per_replica_rate_per_s == pytest.approx(rate, rel=1e-9)
    assert r.gpus == r.replicas * 8
    assert r.users_per_gpu == pytest.approx(r.batch_at_slo / 8)


@pytest.mark.parametrize(
    "model, tp, ep, match",
    [
        ("llama-3.1-8b", 1, 8, "no mixture-of-experts"),
        ("mixtral-8x7b", 4, 2, "not a multiple of tp"),
        ("mixtral-8x7b", 1, 3, "does not divide the 8 experts"),
    ],
)
def test_impossible_ep_candidates_are_pruned_with_the_reason(model, tp, ep, match):
    r = evaluate(model, Candidate("h100-sxm", DeploymentSpec(tp=tp), None, ep), WORK, LOOSE, {})
    assert not r.feasible
    assert match in r.reason


def _scenario(**candidates):
    return {
        "name": "variants",
        "model": "llama-3.1-8b",
        "hardware": "h100-sxm",
        "traffic": {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 5}},
            "prompt_tokens": {"kind": "lognormal", "mean": 1000, "p95": 2000},
            "output_tokens": {"kind": "lognormal", "mean": 200, "p95": 400},
        },
        "slo": {"ttft_p95_s": "2 s", "tpot_p95_s": "15 ms"},
        "candidates": {"hardware": ["h100-sxm"], **candidates},
        "serving": {"simulate_top": 1, "n_requests": 200},
    }


def test_the_grid_crosses_speculative_options_and_json_names_them():
    options = ["none", {"draft": "eagle", "k": 3, "acceptance": "eagle-vicuna7b-mtbench"}]
    result = plan(_scenario(tp=[1, 2], speculative=options))
    data = result.to_dict()
    labels = [c["candidate"]["label"] for c in data["candidates"]]
    assert len(labels) == 4 and len(set(labels)) == 4
    specs = [c["candidate"]["speculative"] for c in data["candidates"]]
    assert sum(s is None for s in specs) == 2
    assert {s["k"] for s in specs if s is not None} == {3}
    assert all(c["candidate"]["ep"] == 1 for c in data["candidates"])
    # the cheapest feasible candidates are replayed, speculative ones too (one round per
    # iteration, hwsim.planner.variant_sim)
    feasible = [c for c in data["candidates"] if c["feasible"]]
    replayed = [c["candidate"]["label"] for c in feasible if c["simulated"]]
    assert replayed == [c["candidate"]["label"] for c in feasible[:1]]  # simulate_top 1
    assert any("Speculative candidates" in note for note in data["assumptions"])


@pytest.mark.parametrize(
    "speculative, match",
    [
        ({"draft": "no-such-model", "k": 4, "acceptance": 0.7}, "draft"),
        ({"draft": "eagle", "k": 4, "acceptance": 1.5}, "acceptance"),
        ({"draft": "eagle", "k": 0, "acceptance": 0.7}, "k"),
        ({"draft": "eagle", "k": 4, "acceptance": 0.7, "tree": 2}, "tree"),
        ({"draft": "eagle", "k": 4, "acceptance": "no-such-paper"}, "published ones"),
    ],
)
def test_bad_speculative_options_are_clear_errors(speculative, match):
    with pytest.raises(Exception, match=match):
        CandidatesSection.model_validate(
            {"candidates": {"hardware": ["h100-sxm"], "speculative": [speculative]}}
        )


def test_a_bad_option_in_a_file_exits_cleanly(tmp_path):
    from typer.testing import CliRunner

    from hwsim.cli.main import app

    sc = _scenario(speculative=[{"draft": "eagle", "k": 4, "acceptance": 2}])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(sc))
    out = CliRunner().invoke(app, ["plan", str(path)])
    assert out.exit_code != 0
    assert "Traceback" not in out.output
    assert "candidates.speculative" in out.output and "acceptance" in out.output


def test_launch_flags_for_speculative_and_ep_candidates():
    sc = _scenario(speculative=[{"draft": "eagle", "k": 4, "acceptance": 0.7}])
    target = from_plan(plan(sc, simulate_top=0))
    argv = engine_command("vllm", target).argv
    config = argv[argv.index("--speculative-config") + 1]
    assert '"num_speculative_tokens":4' in config and '"method":"eagle"' in config
    with pytest.raises(HwsimError, match="vLLM only"):
        engine_command("sglang", target)
    moe = copy.deepcopy(_scenario(tp=[2], ep=[8]))
    moe["model"] = "mixtral-8x7b"
    moe["slo"] = {"ttft_p95_s": "3 s", "tpot_p95_s": "100 ms"}
    target = from_plan(plan(moe, simulate_top=0))
    argv = engine_command("vllm", target).argv
    assert "--enable-expert-parallel" in argv
    assert argv[argv.index("--data-parallel-size") + 1] == "4"
    assert target.gpus_per_replica == 8


@pytest.mark.parametrize(
    "name, best_is",
    [("speculative-chat.yaml", "speculative"), ("moe-expert-parallel.yaml", None)],
)
def test_the_variant_examples_plan(name, best_is):
    from pathlib import Path

    result = plan(Path(__file__).parent.parent / "examples" / name)
    assert result.best is not None
    kinds = {r.candidate.speculative is not None or r.candidate.ep > 1 for r in result.feasible}
    assert kinds == {True, False}  # both kinds priced and feasible
    if best_is == "speculative":  # a 20 ms TPOT at 70B: drafting buys the batch back
        assert result.best.candidate.speculative is not None
        assert "speculative decoding" in result.recommendation_sentence()
