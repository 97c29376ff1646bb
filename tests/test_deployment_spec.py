"""DeploymentSpec: one object for how a model is deployed, honoured by every entry point."""

import pytest
from typer.testing import CliRunner

import hwsim
from hwsim.cli.main import app
from hwsim.errors import InfeasibleError, ProfileError
from hwsim.inference.deployment import make_deployment
from hwsim.planner.plan import plan
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.loader import validate
from hwsim.profiles.scenario import Scenario

runner = CliRunner()


def capacity_scenario(**over):
    base = {
        "model": "llama-3.1-8b",
        "hardware": "h100-sxm",
        "traffic": {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 20}},
            "prompt_tokens": 2000,
            "output_tokens": 200,
        },
        "slo": {"tpot_p95_s": "50 ms", "ttft_p95_s": "2 s"},
        "candidates": {"hardware": ["h100-sxm"], "tp": [1]},
        "serving": {"simulate_top": 0},
    }
    base.update(over)
    return base


def test_memory_utilization_changes_planned_kv_capacity():
    """Regression: the planner used to drop memory_utilization (same KV capacity at 0.5 and
    0.9). KV capacity = (capacity x utilisation - weights - workspace) / KV bytes per token, so
    the difference between the two is exactly 0.4 x capacity / KV bytes per token."""
    low = plan(capacity_scenario(memory_utilization=0.5)).best
    high = plan(capacity_scenario(memory_utilization=0.9)).best
    hw = hwsim.load_hardware("h100-sxm")
    per_token = 131_072  # Llama-3.1-8B: 32 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes
    assert high.kv_capacity_tokens - low.kv_capacity_tokens == pytest.approx(
        0.4 * hw.capacity_bytes / per_token, rel=1e-9
    )
    assert low.kv_capacity_tokens < high.kv_capacity_tokens


def test_memory_utilization_in_the_deployment_section_equals_the_top_level_key():
    old = validate(Scenario, capacity_scenario(memory_utilization=0.6), "test")
    new = validate(Scenario, capacity_scenario(deployment={"memory_utilization": 0.6}), "test")
    assert old.deployment == new.deployment
    assert old.deployment.memory_utilization == 0.6


def test_legacy_sections_fold_into_the_deployment():
    sc = validate(
        Scenario,
        {
            "model": "llama-2-7b",
            "hardware": "a100-80gb-sxm",
            "parallel": {"tp": 2, "dp": 3},
            "precision": {"weights": "fp8", "kv": "fp8", "activations": "fp16"},
            "attention_impl": "naive",
        },
        "test",
    )
    d = sc.deployment
    assert (d.tp, d.pp, d.dp) == (2, 1, 3)
    assert (d.weight_dtype, d.kv_dtype, d.activation_dtype) == ("fp8", "fp8", "fp16")
    assert d.attention_impl == "naive"


def test_a_setting_given_twice_in_a_scenario_is_an_error():
    data = capacity_scenario(parallel={"tp": 2}, deployment={"tp": 4})
    with pytest.raises(ProfileError, match="already given as deployment.tp"):
        validate(Scenario, data, "test")


def test_unknown_key_in_a_legacy_section_names_what_is_allowed():
    with pytest.raises(ProfileError, match="parallel.tpp: unknown field.*allowed: tp, pp, dp"):
        validate(Scenario, capacity_scenario(parallel={"tpp": 2}), "test")


def test_candidates_carry_attention_impl_and_activation_dtype():
    sc = capacity_scenario(
        candidates={"hardware": ["h100-sxm"], "attention_impl": ["flash", "naive"]},
        deployment={"activation_dtype": "fp16"},
    )
    result = plan(sc)
    every = result.feasible + result.pruned
    impls = sorted(r.candidate.deployment.attention_impl for r in every)
    assert impls == ["flash", "naive"]
    assert {r.candidate.deployment.activation_dtype for r in every} == {"fp16"}
    by_impl = {r.candidate.deployment.attention_impl: r for r in result.feasible}
    # naive attention materialises the scores: a 2000-token prefill can only be slower
    assert by_impl["naive"].ttft_p95_s > by_impl["flash"].ttft_p95_s


def test_unknown_candidate_field_is_a_clear_error():
    sc = capacity_scenario(candidates={"hardware": ["h100-sxm"], "tensor_parallel": [2]})
    with pytest.raises(ProfileError, match="tensor_parallel: unknown field.*allowed: hardware"):
        plan(sc)


def test_from_settings_none_keeps_base_and_unknown_names_are_refused():
    base = DeploymentSpec(tp=2, kv_dtype="fp8")
    spec = DeploymentSpec.from_settings(base, tp=None, weight_dtype="fp8")
    assert (spec.tp, spec.kv_dtype, spec.weight_dtype) == (2, "fp8", "fp8")
    with pytest.raises(InfeasibleError, match="unknown deployment setting.*'tensor_parallel'"):
        DeploymentSpec.from_settings(base, tensor_parallel=2)
    with pytest.raises(InfeasibleError, match="weight_dtype.*unknown weight dtype 'fp7'"):
        DeploymentSpec.from_settings(weight_dtype="fp7")
    with pytest.raises(InfeasibleError, match="memory_utilization"):
        DeploymentSpec.from_settings(memory_utilization=1.5)


def test_estimate_keywords_and_spec_object_agree():
    spec = DeploymentSpec(tp=2, weight_dtype="fp8", memory_utilization=0.7)
    a = hwsim.estimate("llama-3.1-8b", "h100-sxm", spec, batch=8)
    b = hwsim.estimate(
        "llama-3.1-8b", "h100-sxm", tp=2, weight_dtype="fp8", memory_utilization=0.7, batch=8
    )
    assert a.model_dump() == b.model_dump()
    assert a.memory.usable_bytes == pytest.approx(
        0.7 * hwsim.load_hardware("h100-sxm").capacity_bytes
    )


def test_estimate_capacity_shrinks_with_memory_utilization():
    hi = hwsim.estimate("llama-2-7b", "a100-80gb-sxm", memory_utilization=0.9)
    lo = hwsim.estimate("llama-2-7b", "a100-80gb-sxm", memory_utilization=0.5)
    assert lo.capacity.max_batch < hi.capacity.max_batch


def test_cli_deployment_flags_reach_the_estimate():
    out = runner.invoke(
        app, ["plan", "--model", "llama-2-7b", "--hardware", "a100-80gb-sxm", "--tp", "2", "--json"]
    )
    assert out.exit_code == 0, out.output
    assert '"tp": 2' in out.output
    bad = runner.invoke(
        app, ["plan", "--model", "llama-2-7b", "--hardware", "a100-80gb-sxm", "--kv-dtype", "fp7"]
    )
    assert bad.exit_code == 2
    assert "kv_dtype" in bad.output and "allowed" in bad.output


def test_deployment_with_settings_rechecks_the_layout():
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm", tp=2)
    assert dep.with_settings(tp=1).tp == 1
    with pytest.raises(InfeasibleError, match="does not divide the 32 attention heads"):
        dep.with_settings(tp=3)


@pytest.mark.parametrize("pp", [1, 2, 3, 5, 7, 32])
def test_layers_per_stage_cover_every_layer_and_match_the_memory_split(pp):
    est = hwsim.estimate("llama-2-7b", "a100-80gb-sxm", pp=pp)
    stages = est.config.layers_per_stage
    assert len(stages) == pp and sum(stages) == 32
    assert max(stages) - min(stages) <= 1
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm", pp=pp)
    assert max(stages) / 32 == pytest.approx(dep.stage_layer_fraction)


def test_repeated_resolutions_are_reused_and_never_confused(tmp_path):
    """make_deployment and DeploymentSpec.from_settings memoise; the memo must tell settings,
    profiles and an edited profile file apart."""
    a = make_deployment("llama-3.1-8b", "h100-sxm", tp=2)
    assert make_deployment("llama-3.1-8b", "h100-sxm", tp=2) is a
    assert make_deployment("llama-3.1-8b", "h100-sxm", tp=4).tp == 4
    assert make_deployment("llama-3.1-8b", "h200-sxm", tp=2).hardware.id == "h200-sxm"
    on = DeploymentSpec.from_settings(chunked_prefill=True)
    off = DeploymentSpec.from_settings(chunked_prefill=False)
    assert on.chunked_prefill is True and off.chunked_prefill is False
    assert DeploymentSpec.from_settings(on, tp=2).chunked_prefill is True
    assert DeploymentSpec.from_settings(off, tp=2).chunked_prefill is False
    import os

    import yaml

    from hwsim.profiles.loader import shipped_dir

    data = yaml.safe_load((shipped_dir("hardware") / "h100-sxm.yaml").read_text())
    path = tmp_path / "my-gpu.yaml"
    path.write_text(yaml.safe_dump(data))
    first = make_deployment("llama-3.1-8b", str(path))
    assert data["memory"]["capacity_bytes"]["value"] == "80 GB"
    data["memory"]["capacity_bytes"]["value"] = "160 GB"
    path.write_text(yaml.safe_dump(data))
    os.utime(path, (1e9, 2e9))  # a different mtime, however fast the rewrite was
    second = make_deployment("llama-3.1-8b", str(path))
    assert second is not first
    assert second.hardware.capacity_bytes == 2 * first.hardware.capacity_bytes
