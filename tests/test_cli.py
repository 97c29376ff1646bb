"""CLI through typer's CliRunner: output, JSON contract, every error path exits 2 cleanly."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwsim.cli.main import app

runner = CliRunner()

JSON_CONTRACT = [
    "memory.weights_bytes",
    "memory.kv_cache_bytes_per_token",
    "memory.kv_cache_bytes",
    "memory.total_bytes",
    "memory.capacity_bytes",
    "prefill.flops",
    "prefill.time_s",
    "prefill.bound",
    "decode.flops_per_token",
    "decode.time_per_token_s",
    "decode.bound",
    "latency.ttft_s",
    "latency.tpot_s",
    "latency.e2e_s",
    "throughput.output_tokens_per_s",
    "capacity.max_batch",
    "capacity.users_per_gpu",
    "capacity.binding_constraint",
    "attention.pairs_per_head_per_layer",
    "attention.score_matrix_elements_per_head_per_layer",
    "attention.score_matrix_bytes",
    "memory.state_bytes_per_sequence",
    "context.max_trained_tokens",
    "context.extrapolation",
]


def _run(*args):
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_plan_without_a_file_prints_tables():
    result = _run("plan", "--model", "llama-2-7b", "--hardware", "a100-80gb-sxm")
    assert result.exit_code == 0, result.output
    for text in ("Memory per GPU", "prefill (TTFT)", "users per GPU", "13.48 GB"):
        assert text in result.output


def test_plan_json_has_the_stable_keys():
    result = _run("plan", "--model", "llama-2-7b", "--hardware", "a100-80gb-sxm", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    for key in JSON_CONTRACT:
        section, field = key.split(".")
        assert field in data[section], key
    assert data["memory"]["kv_cache_bytes_per_token"] == 524288
    assert data["prefill"]["bound"] in ("compute", "memory", "communication")


def test_plan_scenario_file_and_flag_override(tmp_path):
    result = _run("plan", "examples/llama2-7b-a100.yaml", "--json", "--batch", "4")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["config"]["batch"] == 4
    assert data["config"]["tpot_slo_s"] == pytest.approx(0.05)


def test_plan_own_hardware_yaml_relative_to_scenario(tmp_path):
    hw = Path("hardware_profiles/h100-sxm.yaml").read_text().replace("id: h100-sxm", "id: my-gpu")
    (tmp_path / "my-gpu.yaml").write_text(hw)
    (tmp_path / "s.yaml").write_text("model: llama-2-7b\nhardware: my-gpu.yaml\n")
    result = _run("plan", str(tmp_path / "s.yaml"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["config"]["hardware"] == "my-gpu"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["plan", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--tp", "3"],
            "does not divide",
        ),
        (["plan", "--model", "llama-2-70b", "--hardware", "l4"], "weights need"),
        (["plan", "--model", "lama-2-7b", "--hardware", "h100-sxm"], "did you mean"),
        (
            ["plan", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--prompt-len", "-3"],
            "prompt_len",
        ),
        (
            ["plan", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--kv-dtype", "fp4"],
            "KV-cache dtype",
        ),
        (["plan", "missing.yaml"], "not found"),
        (["plan"], "give a scenario file"),
        (["plan", "--model", "./nope/config.json", "--hardware", "h100-sxm"], "No such file"),
        (["profiles", "show", "nonexistent-thing"], "unknown"),
    ],
)
def test_errors_exit_2_with_a_message(args, fragment):
    result = _run(*args)
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output


def test_bad_yaml_names_file_field_value_and_rule(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: llama-2-7b\nhardware: h100-sxm\nworkload: {batch: zero}\n")
    result = _run("plan", str(bad))
    assert result.exit_code == 2
    assert "bad.yaml" in result.output and "workload.batch" in result.output
    assert "'zero'" in result.output
    hw = Path("hardware_profiles/h100-sxm.yaml").read_text().replace("3.35 TB/s", "3.35 TB")
    (tmp_path / "gpu.yaml").write_text(hw)
    result = _run("plan", "--model", "llama-2-7b", "--hardware", str(tmp_path / "gpu.yaml"))
    assert result.exit_code == 2
    assert "memory.bandwidth_bytes_per_s" in result.output and "gpu.yaml" in result.output
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    result = _run("plan", str(tmp_path / "broken.yaml"))
    assert result.exit_code == 2 and "not valid YAML" in result.output


def test_unknown_field_is_rejected(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("model: llama-2-7b\nhardware: h100-sxm\nworklaod: {batch: 2}\n")
    result = _run("plan", str(bad))
    assert result.exit_code == 2 and "worklaod" in result.output


def test_profiles_list_and_show():
    result = _run("profiles", "list")
    assert result.exit_code == 0
    assert "h100-sxm" in result.output and "llama-3.1-405b" in result.output
    result = _run("profiles", "show", "h100-sxm")
    assert result.exit_code == 0 and "source" in result.output


@pytest.mark.parametrize(
    "example",
    sorted(
        p.name
        for p in (Path(__file__).parents[1] / "examples").glob("*.yaml")
        # a plan's own search, a RAG comparison, a closed-loop benchmark (hwsim.simulate), a
        # training layout (hwsim train) or a speculative-decoding comparison
        if not any(
            k in p.read_text() for k in ("candidates:", "rag:", "kind: concurrency", "training:")
        )
    ),
)
def test_every_single_deployment_example_runs(example):
    path = Path(__file__).parents[1] / "examples" / example
    result = CliRunner().invoke(app, ["plan", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["latency"]["ttft_s"] > 0
