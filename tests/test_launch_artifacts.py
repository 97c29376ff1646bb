"""Launch artifacts (`hwsim plan --emit`): every emitted flag is in its engine's documented
table, the values are the plan's, the Kubernetes manifest runs exactly that command with the
plan's replicas and GPUs, and files are written like every report (no links, no overwrite)."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hwsim.cli.main import app
from hwsim.deploy import (
    EMIT_CHOICES,
    ENGINES,
    engine_command,
    from_plan,
    from_scenario,
    launch_script,
    manifest,
    parse_emit,
)
from hwsim.deploy.engines import TRTLLM_EXTRA_OPTIONS
from hwsim.deploy.target import model_checkpoint
from hwsim.errors import HwsimError
from hwsim.model.load import load_model
from hwsim.planner.plan import plan
from hwsim.profiles.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
CHAT = str(ROOT / "examples" / "chat-service.yaml")
SINGLE = str(ROOT / "examples" / "llama2-7b-a100.yaml")
FAST = ["--simulate-top", "0", "--workers", "1"]  # the analytic plan only: about a second
runner = CliRunner()


@pytest.fixture(scope="module")
def chat_plan():
    return plan(CHAT, simulate_top=0, workers=1)


@pytest.fixture(scope="module")
def best(chat_plan):
    return from_plan(chat_plan, 1)


@pytest.fixture(scope="module")
def nvidia_target(chat_plan):
    """The cheapest feasible candidate on NVIDIA hardware (TensorRT-LLM runs only there)."""
    for rank in range(1, len(chat_plan.feasible) + 1):
        target = from_plan(chat_plan, rank)
        if target.vendor == "nvidia":
            return target
    pytest.fail("chat-service has no feasible NVIDIA candidate")


def exec_argv(script: str) -> list[str]:
    """The command a launch script execs, split as the shell would."""
    lines = script.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("exec "))
    words = shlex.split("\n".join(lines[start:]).replace("\\\n", " "))
    assert words[0] == "exec"
    return words[1:]


def options(argv: list[str], engine: str) -> dict[str, str | None]:
    """flag -> value (None for a bare switch), after the entry and positionals."""
    entry = ENGINES[engine].entry
    assert tuple(argv[: len(entry)]) == entry
    rest = argv[len(entry) :]
    while rest and not rest[0].startswith("--"):
        rest = rest[1:]
    out: dict[str, str | None] = {}
    i = 0
    while i < len(rest):
        flag = rest[i]
        assert flag.startswith("--"), f"{engine}: stray word {flag!r}"
        if i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            out[flag] = rest[i + 1]
            i += 2
        else:
            out[flag] = None
            i += 1
    return out


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_every_flag_is_documented_and_the_values_are_the_plan(best, engine):
    argv = exec_argv(launch_script(best, engine))
    assert argv == engine_command(engine, best).argv  # the script runs the command as built
    opts = options(argv, engine)
    undocumented = sorted(set(opts) - set(ENGINES[engine].flags))
    assert undocumented == []
    s = best.spec
    tp_flag, pp_flag = {"vllm": ("--tensor-parallel-size", "--pipeline-parallel-size")}.get(
        engine, ("--tp-size", "--pp-size")
    )
    assert int(opts[tp_flag]) == s.tp and int(opts[pp_flag]) == s.pp
    assert opts["--dtype"] == "bfloat16"
    if engine == "vllm":
        assert argv[2] == "meta-llama/Llama-3.1-8B"
        assert int(opts["--max-num-seqs"]) == s.max_num_seqs
        assert int(opts["--max-num-batched-tokens"]) == s.max_num_batched_tokens
        assert float(opts["--gpu-memory-utilization"]) == s.memory_utilization
        assert int(opts["--max-model-len"]) == best.max_model_len
        assert ("--enable-chunked-prefill" in opts) == s.chunked_prefill
        assert opts.get("--quantization") == ("fp8" if s.weight_dtype == "fp8" else None)
        assert opts["--kv-cache-dtype"] == ("fp8" if s.kv_dtype == "fp8" else "auto")
        assert opts["--port"] == "8000"
    else:
        assert opts["--model-path"] == "meta-llama/Llama-3.1-8B"
        assert int(opts["--max-running-requests"]) == s.max_num_seqs
        assert int(opts["--chunked-prefill-size"]) == s.max_num_batched_tokens
        assert float(opts["--mem-fraction-static"]) == s.memory_utilization
        assert int(opts["--context-length"]) == best.max_model_len
        assert opts["--kv-cache-dtype"] == ("fp8_e4m3" if s.kv_dtype == "fp8" else "auto")


def test_the_recommendation_is_what_the_plan_says(chat_plan, best):
    r = chat_plan.best
    assert best.spec == r.candidate.deployment
    assert best.replicas == r.replicas
    assert best.hardware.id == r.candidate.hardware
    assert best.summary == chat_plan.recommendation_sentence()
    assert 1 <= best.max_model_len <= load_model("llama-3.1-8b").max_position_embeddings


def test_trtllm_flags_and_extra_options_are_documented(nvidia_target):
    script = launch_script(nvidia_target, "trtllm")
    argv = exec_argv(script)
    opts = options(argv, "trtllm")
    assert sorted(set(opts) - set(ENGINES["trtllm"].flags)) == []
    s = nvidia_target.spec
    assert int(opts["--tp_size"]) == s.tp and int(opts["--pp_size"]) == s.pp
    assert int(opts["--max_batch_size"]) == s.max_num_seqs
    assert int(opts["--max_num_tokens"]) == s.max_num_batched_tokens
    assert int(opts["--max_seq_len"]) == nvidia_target.max_model_len
    assert opts["--backend"] == "pytorch"
    fraction = float(opts["--kv_cache_free_gpu_memory_fraction"])
    assert 0 < fraction < 1
    # the heredoc the script writes is the YAML the command points at, every key documented
    heredoc = script.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    extra = yaml.safe_load(heredoc)
    keys = {k for k in extra if k != "kv_cache_config"}
    keys |= {f"kv_cache_config.{k}" for k in extra["kv_cache_config"]}
    assert keys <= set(TRTLLM_EXTRA_OPTIONS)
    assert extra["kv_cache_config"]["free_gpu_memory_fraction"] == fraction
    assert extra["kv_cache_config"]["dtype"] == ("fp8" if s.kv_dtype == "fp8" else "auto")
    assert extra["enable_chunked_prefill"] is s.chunked_prefill
    if s.weight_dtype == "fp8":  # a pre-quantised checkpoint, never a wrong flag
        assert "pre-quantised" in script and "--quantization" not in opts


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_the_manifest_runs_the_command_with_the_plans_replicas_and_gpus(best, engine):
    docs = list(yaml.safe_load_all(manifest(best, engine)))
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    dep, svc = docs
    assert dep["apiVersion"] == "apps/v1" and svc["apiVersion"] == "v1"
    assert dep["spec"]["replicas"] == best.replicas
    pod = dep["spec"]["template"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert container["command"] + container["args"] == engine_command(engine, best).argv
    resource = {"amd": "amd.com/gpu", "nvidia": "nvidia.com/gpu"}[best.vendor]
    gpus = best.spec.tp * best.spec.pp
    assert container["resources"]["limits"] == {resource: gpus}
    assert container["resources"]["requests"] == {resource: gpus}
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == ENGINES[engine].health_path and probe["port"] == "http"
    assert container["ports"] == [{"name": "http", "containerPort": ENGINES[engine].port}]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_chat_service_recommends_amd_so_the_manifest_asks_for_amd_gpus(best):
    if best.vendor != "amd":
        pytest.skip(f"the recommendation moved to {best.hardware.id}")
    container = next(iter(yaml.safe_load_all(manifest(best))))["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert "amd.com/gpu" in container["resources"]["limits"]


def test_trtllm_manifest_mounts_its_options(nvidia_target):
    docs = list(yaml.safe_load_all(manifest(nvidia_target, "trtllm")))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment", "Service"]
    config, dep, _ = docs
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    argv = container["command"] + container["args"]
    path = argv[argv.index("--extra_llm_api_options") + 1]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "extra-options")
    assert path == f"{mount['mountPath']}/{next(iter(config['data']))}"
    assert yaml.safe_load(next(iter(config["data"].values())))["kv_cache_config"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": nvidia_target.spec.gpus}


def _with(target, **settings):
    return dataclasses.replace(target, spec=target.spec.replace(**settings))


def test_values_an_engine_cannot_express_fail_naming_engine_and_value(best, nvidia_target):
    for engine, kv in (("vllm", "int8"), ("sglang", "int4"), ("vllm", "fp6")):
        with pytest.raises(HwsimError, match=rf"{ENGINES[engine].title}.*'{kv}'"):
            engine_command(engine, _with(best, kv_dtype=kv))
    mixed = _with(best, weight_dtype="fp16", kv_dtype="bf16", activation_dtype="bf16")
    with pytest.raises(HwsimError, match="vLLM.*fp16"):
        engine_command("vllm", mixed)
    with pytest.raises(HwsimError, match="TensorRT-LLM.*fp16"):
        engine_command("trtllm", _with(nvidia_target, kv_dtype="fp16"))
    if best.vendor != "nvidia":
        with pytest.raises(HwsimError, match="TensorRT-LLM runs on NVIDIA GPUs only"):
            engine_command("trtllm", best)


@pytest.mark.parametrize("weights", ["int4", "int8"])
def test_integer_weights_ask_for_a_prequantised_checkpoint_not_a_flag(best, weights):
    target = _with(best, weight_dtype=weights)
    for engine in ("vllm", "sglang"):
        cmd = engine_command(engine, target)
        assert "--quantization" not in cmd.argv
        assert any("pre-quantised" in n for n in cmd.notes)
        assert "pre-quantised" in launch_script(target, engine)


def test_no_chunked_prefill_maps_per_engine(best):
    target = _with(best, chunked_prefill=False, prefix_caching=True)
    v = options(engine_command("vllm", target).argv, "vllm")
    assert "--no-enable-chunked-prefill" in v and "--enable-prefix-caching" in v
    g = options(engine_command("sglang", target).argv, "sglang")
    assert g["--chunked-prefill-size"] == "-1"
    assert int(g["--max-prefill-tokens"]) == target.spec.max_num_batched_tokens
    assert "--disable-radix-cache" not in g


def test_model_checkpoint_ids():
    assert model_checkpoint("llama-3.1-8b", load_model("llama-3.1-8b")) == (
        "meta-llama/Llama-3.1-8B",
        True,
    )
    assert (
        model_checkpoint("deepseek-v3", load_model("deepseek-v3"))[0] == "deepseek-ai/DeepSeek-V3"
    )
    assert model_checkpoint("gpt-3-175b", load_model("gpt-3-175b")) == ("gpt-3-175b", False)
    local = "/models/llama/config.json"
    assert model_checkpoint(local, load_model("llama-3.1-8b")) == ("/models/llama", True)


def test_a_profile_without_a_checkpoint_says_to_set_model():
    sc = load_scenario(SINGLE).model_copy(update={"model": "gpt-3-175b"})
    sc = sc.model_copy(update={"deployment": sc.deployment.replace(tp=8), "hardware": "h200-sxm"})
    script = launch_script(from_scenario(sc), "vllm")
    assert "set MODEL to your checkpoint" in script
    assert exec_argv(script)[2] == "gpt-3-175b"


def test_a_single_deployment_runs_dp_replicas():
    sc = load_scenario(SINGLE)
    sc = sc.model_copy(update={"deployment": sc.deployment.replace(tp=2, dp=3)})
    target = from_scenario(sc)
    dep = next(iter(yaml.safe_load_all(manifest(target))))
    assert dep["spec"]["replicas"] == 3
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 2}
    with pytest.raises(HwsimError, match="only --rank 1"):
        from_scenario(sc, 2)


def test_parse_emit():
    req = parse_emit(["vllm,k8s", "sglang"])
    assert req.engines == ("vllm", "sglang") and req.k8s
    assert req.file_names() == [
        "launch-vllm.sh",
        "launch-sglang.sh",
        "deployment-vllm.yaml",
        "deployment-sglang.yaml",
    ]
    assert parse_emit(["k8s"]).file_names() == ["deployment.yaml"]
    assert parse_emit(["trtllm"]).file_names() == ["launch-trtllm.sh"]
    with pytest.raises(HwsimError, match="allowed: vllm, sglang, trtllm, k8s"):
        parse_emit(["tgi"])
    assert set(EMIT_CHOICES) == {"vllm", "sglang", "trtllm", "k8s"}


# -- the command line ----------------------------------------------------------------------


def _plan(*args: str):
    result = runner.invoke(app, ["plan", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_cli_emit_vllm_prints_the_serve_command():
    result = _plan(CHAT, *FAST, "--emit", "vllm")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("#!/usr/bin/env bash")
    argv = exec_argv(result.stdout)
    assert argv[:2] == ["vllm", "serve"]
    assert set(options(argv, "vllm")) <= set(ENGINES["vllm"].flags)


def test_cli_emit_k8s_stdout_is_one_yaml_stream():
    result = _plan(CHAT, *FAST, "--emit", "k8s")
    assert result.exit_code == 0, result.output
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout)]
    assert kinds == ["Deployment", "Service"]


def test_cli_out_writes_files_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "launch"
    result = _plan(CHAT, *FAST, "--emit", "vllm", "--emit", "k8s", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["deployment.yaml", "launch-vllm.sh"]
    assert exec_argv((out / "launch-vllm.sh").read_text())[:2] == ["vllm", "serve"]
    assert "feasible candidates" in result.stdout  # the plan's summary still prints
    again = _plan(CHAT, *FAST, "--emit", "vllm,k8s", "--out", str(out))
    assert again.exit_code == 2
    assert "--force" in again.output and "already exists" in again.output
    forced = _plan(CHAT, *FAST, "--emit", "vllm,k8s", "--out", str(out), "--force")
    assert forced.exit_code == 0, forced.output


def test_cli_out_refuses_symbolic_links(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    victim = tmp_path / "victim.sh"
    victim.write_text("keep me\n")
    (real / "launch-vllm.sh").symlink_to(victim)
    result = _plan(CHAT, *FAST, "--emit", "vllm", "--out", str(real), "--force")
    assert result.exit_code == 2 and "symbolic link" in result.output
    assert victim.read_text() == "keep me\n"
    linked = tmp_path / "linked"
    linked.symlink_to(real, target_is_directory=True)
    result = _plan(CHAT, *FAST, "--emit", "k8s", "--out", str(linked))
    assert result.exit_code == 2 and "symbolic link" in result.output


def test_cli_unknown_emit_exits_2_with_the_allowed_list():
    result = _plan(CHAT, *FAST, "--emit", "tgi")
    assert result.exit_code == 2
    assert "vllm, sglang, trtllm, k8s" in result.output


def test_cli_rank_beyond_the_feasible_list_exits_2():
    result = _plan(CHAT, *FAST, "--emit", "vllm", "--rank", "9999")
    assert result.exit_code == 2
    assert "feasible" in result.output


def test_cli_rank_picks_that_candidate(chat_plan):
    result = _plan(CHAT, *FAST, "--emit", "sglang", "--rank", "2")
    assert result.exit_code == 0, result.output
    second = chat_plan.feasible[1].candidate.deployment
    assert int(options(exec_argv(result.stdout), "sglang")["--tp-size"]) == second.tp


def test_cli_out_and_rank_need_emit(tmp_path):
    for extra in (["--out", str(tmp_path / "x")], ["--rank", "2"]):
        result = _plan(CHAT, *FAST, *extra)
        assert result.exit_code == 2 and "--emit" in result.output


def test_cli_single_deployment_emits_its_deployment(tmp_path):
    result = _plan(SINGLE, "--tp", "2", "--dp", "2", "--emit", "k8s")
    assert result.exit_code == 0, result.output
    dep = next(iter(yaml.safe_load_all(result.stdout)))
    assert dep["spec"]["replicas"] == 2
    limits = dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": 2}
    written = _plan(SINGLE, "--emit", "sglang", "--out", str(tmp_path))
    assert written.exit_code == 0, written.output
    assert (tmp_path / "launch-sglang.sh").is_file()
    assert "prefill (TTFT)" in written.stdout  # the estimate still prints with --out


def test_the_runtime_section_reaches_the_engine_flags():
    """A plan priced with multi-step scheduling or without CUDA graphs launches that way."""
    from hwsim.deploy.engines import SGLANG_FLAGS, VLLM_FLAGS, engine_command
    from hwsim.deploy.target import from_scenario
    from hwsim.profiles.scenario import Scenario

    def argv(engine: str, runtime: dict) -> list[str]:
        sc = Scenario.model_validate(
            {
                "model": "llama-3.1-8b",
                "hardware": "h100-sxm",
                "deployment": {"runtime": runtime},
            }
        )
        return engine_command(engine, from_scenario(sc)).argv

    multi = argv("vllm", {"engine": "vllm", "num_scheduler_steps": 8})
    assert multi[multi.index("--num-scheduler-steps") + 1] == "8"
    assert "--enforce-eager" not in multi  # vLLM captures CUDA graphs by default
    eager = argv("vllm", {"engine": "vllm", "cuda_graphs": False})
    assert "--enforce-eager" in eager and "--num-scheduler-steps" not in eager
    no_graphs = argv("sglang", {"engine": "sglang", "cuda_graphs": False})
    assert "--disable-cuda-graph" in no_graphs
    assert "--enable-mixed-chunk" not in no_graphs  # SGLang's default: prefill first

    def trt_extra(runtime: dict) -> dict:
        sc = Scenario.model_validate(
            {"model": "llama-3.1-8b", "hardware": "h100-sxm", "deployment": {"runtime": runtime}}
        )
        return engine_command("trtllm", from_scenario(sc)).extra_options or {}

    assert trt_extra({"engine": "trtllm", "cuda_graphs": False})["cuda_graph_config"] is None
    assert "cuda_graph_config" not in trt_extra({"engine": "trtllm"})  # TRT-LLM's default
    for engine, flags in (("vllm", VLLM_FLAGS), ("sglang", SGLANG_FLAGS)):
        nccl = {"engine": engine, "custom_all_reduce": False}
        assert "--disable-custom-all-reduce" in flags
        assert "--disable-custom-all-reduce" not in argv(engine, nccl)  # tp 1: no all-reduce
        sc = Scenario.model_validate(
            {"model": "llama-3.1-8b", "hardware": "h100-sxm",
             "deployment": {"tp": 2, "runtime": nccl}}
        )  # fmt: skip
        assert "--disable-custom-all-reduce" in engine_command(engine, from_scenario(sc)).argv
        sc = sc.model_copy(update={"deployment": sc.deployment.replace(runtime={"engine": engine})})
        assert "--disable-custom-all-reduce" not in engine_command(engine, from_scenario(sc)).argv
    mixed = argv("sglang", {"engine": "sglang", "prefill_first": False})
    assert "--enable-mixed-chunk" in mixed and "--enable-mixed-chunk" in SGLANG_FLAGS
    for flag in ("--num-scheduler-steps", "--enforce-eager"):
        assert flag in VLLM_FLAGS
    assert "--disable-cuda-graph" in SGLANG_FLAGS
