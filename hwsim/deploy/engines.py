"""Engine launch commands that realise a hwsim deployment, flag by flag.

Every flag an emitter writes is in its engine's table below with where it is documented;
``tests/test_launch_artifacts.py`` parses the emitted commands and checks each flag against
these tables. Versions checked:

=========  ====================================================================================
engine     command and the version its flags were checked against
=========  ====================================================================================
vLLM       ``vllm serve MODEL``, vLLM 0.8.5 - 0.10: ``vllm/engine/arg_utils.py`` (EngineArgs,
           argparse), docs.vllm.ai/en/v0.8.5/serving/engine_args.html. Booleans are
           ``--flag`` / ``--no-flag`` (argparse BooleanOptionalAction, 0.8.5 on; 0.6 - 0.8.4
           took ``--enable-chunked-prefill [True|False]``).
SGLang     ``python3 -m sglang.launch_server``, SGLang 0.5: ``python/sglang/srt/server_args.py``,
           docs/advanced_features/server_arguments.md (docs.sglang.io).
TRT-LLM    ``trtllm-serve MODEL``, TensorRT-LLM 1.0 - 1.2: ``tensorrt_llm/commands/serve.py``
           (click options), nvidia.github.io/TensorRT-LLM/commands/trtllm-serve.html; the
           settings without a flag go in the ``--extra_llm_api_options`` YAML (LlmArgs,
           KvCacheConfig: ``tensorrt_llm/llmapi/llm_args.py``).
=========  ====================================================================================

hwsim values map to engine values explicitly (:data:`TORCH_DTYPE`, the per-engine KV and
weight mappings). What an engine cannot express raises a :class:`~hwsim.errors.HwsimError`
naming the engine and the value; what needs a pre-quantised checkpoint (int4/int8 weights, and
fp8 weights on TensorRT-LLM) becomes a note in the artifact, never a wrong flag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hwsim.deploy.target import SET_MODEL, LaunchTarget
from hwsim.errors import HwsimError

# hwsim activation / 16-bit weight dtype -> the name PyTorch-based engines take for --dtype.
TORCH_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}

VLLM_DOC = "vllm/engine/arg_utils.py; docs.vllm.ai/en/v0.8.5/serving/engine_args.html"
SGLANG_DOC = "python/sglang/srt/server_args.py; docs/advanced_features/server_arguments.md"
TRTLLM_DOC = "tensorrt_llm/commands/serve.py; docs commands/trtllm-serve.html"

# flag -> where it is documented (and the values hwsim writes).
VLLM_FLAGS: dict[str, str] = {
    "--tensor-parallel-size": f"{VLLM_DOC} (ParallelConfig, -tp)",
    "--pipeline-parallel-size": f"{VLLM_DOC} (ParallelConfig, -pp)",
    "--dtype": f"{VLLM_DOC}: auto, half, float16, bfloat16, float, float32",
    "--quantization": f"{VLLM_DOC}: fp8 = dynamic FP8 weights from a 16-bit checkpoint",
    "--kv-cache-dtype": f"{VLLM_DOC}: auto, fp8, fp8_e5m2, fp8_e4m3",
    "--max-num-seqs": f"{VLLM_DOC} (SchedulerConfig)",
    "--max-num-batched-tokens": f"{VLLM_DOC} (SchedulerConfig)",
    "--enable-chunked-prefill": f"{VLLM_DOC} (SchedulerConfig, BooleanOptionalAction)",
    "--no-enable-chunked-prefill": f"{VLLM_DOC} (SchedulerConfig, BooleanOptionalAction)",
    "--enable-prefix-caching": f"{VLLM_DOC} (CacheConfig, BooleanOptionalAction)",
    "--no-enable-prefix-caching": f"{VLLM_DOC} (CacheConfig, BooleanOptionalAction)",
    "--gpu-memory-utilization": f"{VLLM_DOC} (CacheConfig; share of the whole device)",
    "--max-model-len": f"{VLLM_DOC} (ModelConfig)",
    "--num-scheduler-steps": f"{VLLM_DOC} (SchedulerConfig; V0 engine, 0.6 - 0.8)",
    "--enforce-eager": f"{VLLM_DOC} (ModelConfig; no CUDA graphs)",
    "--disable-custom-all-reduce": f"{VLLM_DOC} (ParallelConfig; NCCL for every all-reduce)",
    "--host": "vllm/entrypoints/openai/cli_args.py (make_arg_parser)",
    "--port": "vllm/entrypoints/openai/cli_args.py (make_arg_parser; default 8000)",
    "--kv-transfer-config": "docs/features/nixl_connector_usage.md (vLLM V1: NixlConnector, "
    "kv_role kv_both on the prefill and the decode instance)",
}
# vLLM's NixlConnector (docs/features/nixl_connector_usage.md): the same JSON on both pools'
# instances, a NIXL handshake port per worker (base + tp_rank on a host), a proxy in front
NIXL_KV_TRANSFER = {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
NIXL_SIDE_CHANNEL_BASE_PORT = 5600  # the guide's default VLLM_NIXL_SIDE_CHANNEL_PORT

SGLANG_FLAGS: dict[str, str] = {
    "--model-path": f"{SGLANG_DOC} (alias --model)",
    "--tp-size": f"{SGLANG_DOC} (alias --tensor-parallel-size)",
    "--pp-size": f"{SGLANG_DOC} (alias --pipeline-parallel-size)",
    "--dtype": f"{SGLANG_DOC}: auto, half, float16, bfloat16, float, float32",
    "--quantization": f"{SGLANG_DOC}: fp8 = FP8 weights from a 16-bit checkpoint",
    "--kv-cache-dtype": f"{SGLANG_DOC}: auto, fp8_e5m2, fp8_e4m3 (auto = the model dtype)",
    "--mem-fraction-static": f"{SGLANG_DOC}: share of memory for weights + KV pool",
    "--max-running-requests": SGLANG_DOC,
    "--chunked-prefill-size": f"{SGLANG_DOC}: tokens per prefill chunk; -1 disables chunking",
    "--max-prefill-tokens": f"{SGLANG_DOC}: tokens in one prefill batch",
    "--context-length": SGLANG_DOC,
    "--disable-radix-cache": f"{SGLANG_DOC} (RadixAttention prefix cache off)",
    "--disable-cuda-graph": SGLANG_DOC,
    "--enable-mixed-chunk": f"{SGLANG_DOC} (prefill chunks share a batch with the decodes)",
    "--disable-custom-all-reduce": f"{SGLANG_DOC} (NCCL for every all-reduce)",
    "--host": SGLANG_DOC,
    "--port": f"{SGLANG_DOC} (default 30000)",
}

TRTLLM_FLAGS: dict[str, str] = {
    "--backend": f"{TRTLLM_DOC}: pytorch (default from 1.0), tensorrt, _autodeploy",
    "--tp_size": f"{TRTLLM_DOC} (alias of --tensor_parallel_size)",
    "--pp_size": f"{TRTLLM_DOC} (alias of --pipeline_parallel_size)",
    "--max_batch_size": f"{TRTLLM_DOC}: requests the engine schedules at once",
    "--max_num_tokens": f"{TRTLLM_DOC}: batched input tokens per iteration",
    "--max_seq_len": f"{TRTLLM_DOC}: prompt + output of one request",
    "--kv_cache_free_gpu_memory_fraction": f"{TRTLLM_DOC}: share of memory free after weights",
    "--extra_llm_api_options": f"{TRTLLM_DOC}: YAML of LlmArgs fields (alias --config)",
    "--host": TRTLLM_DOC,
    "--port": f"{TRTLLM_DOC} (default 8000)",
}

# TensorRT-LLM settings without a flag: key of the --extra_llm_api_options YAML -> source.
TRTLLM_EXTRA_OPTIONS: dict[str, str] = {
    "dtype": "tensorrt_llm/llmapi/llm_args.py LlmArgs.dtype: auto, float16, bfloat16, float32",
    "enable_chunked_prefill": "tensorrt_llm/llmapi/llm_args.py LlmArgs.enable_chunked_prefill",
    "kv_cache_config.dtype": "llm_args.py KvCacheConfig.dtype: auto or fp8 "
    "(docs features/quantization.html, FP8 KV cache)",
    "kv_cache_config.enable_block_reuse": "llm_args.py KvCacheConfig.enable_block_reuse "
    "(KV reuse across requests sharing a prefix)",
    "kv_cache_config.free_gpu_memory_fraction": "llm_args.py KvCacheConfig."
    "free_gpu_memory_fraction (repeated here: the YAML's kv_cache_config replaces the flag's)",
    "cuda_graph_config": "tensorrt_llm/llmapi/llm_args.py TorchLlmArgs.cuda_graph_config "
    "(default CudaGraphConfig(): decode-only batches replay CUDA graphs; null turns them off)",
}

PREQUANTISED = {
    "int4": "int4 weights: load a pre-quantised 4-bit checkpoint (AWQ or GPTQ, group size 128); "
    "the engine reads the method from its quantization_config, so no flag is written",
    "int8": "int8 weights: load a pre-quantised W8A8 int8 checkpoint (e.g. compressed-tensors "
    "or SmoothQuant); the engine reads the method from its config, so no flag is written",
}


@dataclass(frozen=True)
class Engine:
    """An inference engine's launch surface."""

    name: str
    title: str
    version: str
    entry: tuple[str, ...]  # the executable part of the command; the rest are its arguments
    port: int
    health_path: str
    health_source: str
    flags: dict[str, str]
    images: dict[str, str]  # vendor -> container image


ENGINES: dict[str, Engine] = {
    "vllm": Engine(
        "vllm",
        "vLLM",
        "vLLM 0.8.5 - 0.10",
        ("vllm", "serve"),
        8000,
        "/health",
        "vllm/entrypoints/openai/api_server.py (GET /health)",
        VLLM_FLAGS,
        {"nvidia": "vllm/vllm-openai:v0.8.5", "amd": "rocm/vllm:latest"},
    ),
    "sglang": Engine(
        "sglang",
        "SGLang",
        "SGLang 0.5",
        ("python3", "-m", "sglang.launch_server"),
        30000,
        "/health",
        "python/sglang/srt/entrypoints/http_server.py (GET /health)",
        SGLANG_FLAGS,
        {"nvidia": "lmsysorg/sglang:latest", "amd": "lmsysorg/sglang:latest"},
    ),
    "trtllm": Engine(
        "trtllm",
        "TensorRT-LLM",
        "TensorRT-LLM 1.0 - 1.2",
        ("trtllm-serve",),
        8000,
        "/health",
        "tensorrt_llm/serve/openai_server.py (register_routes: GET /health)",
        TRTLLM_FLAGS,
        {"nvidia": "nvcr.io/nvidia/tensorrt-llm/release:1.0.0"},
    ),
}


@dataclass
class EngineCommand:
    """One replica's launch command: ``argv`` (entry + arguments), the notes to print beside
    it, and for TensorRT-LLM the ``--extra_llm_api_options`` YAML content and path."""

    engine: Engine
    argv: list[str]
    notes: list[str] = field(default_factory=list)
    extra_options: dict[str, Any] | None = None
    extra_options_path: str | None = None

    @property
    def args(self) -> list[str]:
        return self.argv[len(self.engine.entry) :]


def _cannot(engine: Engine, what: str, value: str, allowed: str) -> HwsimError:
    return HwsimError(f"{engine.title} cannot express {what} {value!r} (it takes {allowed})")


def _act_dtype(engine: Engine, t: LaunchTarget) -> str:
    return TORCH_DTYPE[t.spec.activation_dtype]


def _unquantised_dtype(engine: Engine, t: LaunchTarget) -> str:
    """--dtype for 16/32-bit weights: one dtype for weights and activations in these engines."""
    s = t.spec
    if s.weight_dtype != s.activation_dtype:
        raise HwsimError(
            f"{engine.title} runs unquantised weights and activations in one dtype (--dtype); "
            f"weights {s.weight_dtype} with activations {s.activation_dtype} cannot be expressed"
        )
    return TORCH_DTYPE[s.weight_dtype]


def _kv_follows_model(engine: Engine, t: LaunchTarget, allowed: str) -> None:
    s = t.spec
    if s.kv_dtype != s.activation_dtype:
        raise _cannot(
            engine,
            f"a {s.kv_dtype} KV cache with {s.activation_dtype} activations; KV-cache dtype",
            s.kv_dtype,
            allowed,
        )


def _common_notes(engine: Engine, t: LaunchTarget) -> list[str]:
    notes = [f"flags checked against {engine.version}; table in hwsim/deploy/engines.py"]
    if not t.model_id_known:
        notes.append(f"{SET_MODEL}: {t.model_id!r} is the hwsim profile id, not a checkpoint")
    if t.spec.weight_dtype in PREQUANTISED:
        notes.append(PREQUANTISED[t.spec.weight_dtype])
    if t.spec.attention_impl == "naive":
        notes.append("hwsim priced naive (materialised-score) attention; engines run fused kernels")
    if t.gpus_per_replica > t.devices_per_node:
        notes.append(
            f"one replica needs {t.gpus_per_replica} GPUs but a {t.hardware.id} node has "
            f"{t.devices_per_node}: run it across nodes (the engine's multi-node mode)"
        )
    return notes + list(t.notes)


def _dtype_args(engine: Engine, t: LaunchTarget) -> list[str]:
    """--dtype (and --quantization fp8 for fp8 weights), the same flags in vLLM and SGLang;
    int8/int4 weights come pre-quantised in the checkpoint, so only --dtype is set."""
    s = t.spec
    if s.weight_dtype == "fp8":
        return ["--dtype", _act_dtype(engine, t), "--quantization", "fp8"]
    if s.weight_dtype in PREQUANTISED:
        return ["--dtype", _act_dtype(engine, t)]
    return ["--dtype", _unquantised_dtype(engine, t)]


def vllm_command(t: LaunchTarget) -> EngineCommand:
    engine = ENGINES["vllm"]
    s = t.spec
    argv = [*engine.entry, t.model_id]
    argv += ["--tensor-parallel-size", str(s.tp), "--pipeline-parallel-size", str(s.pp)]
    argv += _dtype_args(engine, t)
    kv_allowed = "auto (the model dtype), fp8, fp8_e5m2, fp8_e4m3"
    if s.kv_dtype == "fp8":
        argv += ["--kv-cache-dtype", "fp8"]
    elif s.kv_dtype in TORCH_DTYPE:
        _kv_follows_model(engine, t, kv_allowed)
        argv += ["--kv-cache-dtype", "auto"]
    else:
        raise _cannot(engine, "KV-cache dtype", s.kv_dtype, kv_allowed)
    argv += ["--max-num-seqs", str(s.max_num_seqs)]
    argv += ["--max-num-batched-tokens", str(s.max_num_batched_tokens)]
    argv += ["--enable-chunked-prefill" if s.chunked_prefill else "--no-enable-chunked-prefill"]
    argv += ["--enable-prefix-caching" if s.prefix_caching else "--no-enable-prefix-caching"]
    argv += ["--gpu-memory-utilization", f"{s.memory_utilization:g}"]
    argv += ["--max-model-len", str(t.max_model_len)]
    runtime = s.runtime
    if runtime.num_scheduler_steps > 1:
        argv += ["--num-scheduler-steps", str(runtime.num_scheduler_steps)]
    if not runtime.cuda_graphs and runtime.engine == "vllm":
        argv += ["--enforce-eager"]
    if not runtime.custom_all_reduce and runtime.engine == "vllm" and s.tp > 1:
        argv += ["--disable-custom-all-reduce"]
    spec_argv, spec_notes = _vllm_speculative(t)
    argv += spec_argv
    if t.ep > 1:  # vLLM expert parallelism: EP spans TP x DP ranks, attention data-parallel
        argv += ["--enable-expert-parallel", "--data-parallel-size", str(t.ep // s.tp)]
    if t.pool is not None:  # one pool of a disaggregated plan: the KV moves over NIXL
        argv += ["--kv-transfer-config", json.dumps(NIXL_KV_TRANSFER, separators=(",", ":"))]
    argv += ["--host", "0.0.0.0", "--port", str(engine.port)]
    notes = _common_notes(engine, t) + spec_notes
    notes += _prefill_first_note(engine, t)
    if runtime.num_scheduler_steps > 1:
        notes.append(
            "--num-scheduler-steps is the V0 engine's multi-step scheduling (vLLM 0.6 - 0.8; "
            "run with VLLM_USE_V1=0): the plan priced it"
        )
    if not s.chunked_prefill:
        notes.append(
            "vLLM's V1 engine always chunks prefill; --no-enable-chunked-prefill takes "
            "effect on the V0 engine (VLLM_USE_V1=0)"
        )
    return EngineCommand(engine, argv, notes)


EAGLE_HEAD = "set EAGLE_HEAD to the EAGLE checkpoint trained for this target"


def _vllm_speculative(t: LaunchTarget) -> tuple[list[str], list[str]]:
    """``--speculative-config`` for a speculative candidate (vLLM's speculative decoding
    docs: a JSON object with ``method``, ``model``, ``num_speculative_tokens`` and
    ``draft_tensor_parallel_size``)."""
    spec = t.speculative
    if spec is None:
        return [], []
    config: dict[str, Any] = {"num_speculative_tokens": spec.k}
    notes = []
    if spec.draft in ("eagle", "medusa"):
        config = {"method": spec.draft, "model": "EAGLE_HEAD", **config}
        notes.append(f"{EAGLE_HEAD} (or the Medusa heads) in --speculative-config")
    else:
        from hwsim.deploy.target import model_checkpoint
        from hwsim.model.load import load_model

        draft_id, known = model_checkpoint(spec.draft, load_model(spec.draft))
        config = {"model": draft_id, **config}
        config["draft_tensor_parallel_size"] = spec.draft_tp or t.spec.tp
        if not known:
            notes.append(f"set the draft model's checkpoint: {draft_id!r} is its profile id")
        notes.append(
            "a separate draft model needs a vLLM release whose V1 engine runs draft models "
            "(vLLM 0.10 shipped EAGLE / Medusa / n-gram only)"
        )
    return ["--speculative-config", json.dumps(config, separators=(",", ":"))], notes


def _one_pool_only(engine: Engine, t: LaunchTarget) -> None:
    """SGLang and TensorRT-LLM artifacts cover plain replicas; speculative, EP and
    disaggregated candidates are emitted for vLLM."""
    what = f"speculative decoding ({t.speculative.label})" if t.speculative is not None else None
    if what is None and t.ep > 1:
        what = f"expert parallelism (ep={t.ep})"
    if what is None and t.pool is not None:
        what = "a disaggregated plan's pools (the KV connector between them)"
    if what is not None:
        raise HwsimError(
            f"launch artifacts for {what} are written for vLLM only; emit vllm "
            f"(--emit vllm) or pick a plain candidate with --rank ({engine.title} not covered)"
        )


def _prefill_first_note(engine: Engine, t: LaunchTarget) -> list[str]:
    """A note where the plan was priced with prefill-only iterations that ``engine`` (vLLM,
    TensorRT-LLM) has no setting for."""
    if not (t.spec.runtime.prefill_first and t.spec.chunked_prefill):
        return []
    return [
        f"the plan was priced with prefill-only iterations (runtime.prefill_first, SGLang's "
        f"scheduler); {engine.title} mixes prefill chunks and decodes in one iteration and has "
        "no setting for it, so its decode latencies will differ from the plan's"
    ]


def sglang_command(t: LaunchTarget) -> EngineCommand:
    engine = ENGINES["sglang"]
    _one_pool_only(engine, t)
    s = t.spec
    argv = [*engine.entry, "--model-path", t.model_id]
    argv += ["--tp-size", str(s.tp), "--pp-size", str(s.pp)]
    argv += _dtype_args(engine, t)
    kv_allowed = "auto (the model dtype), fp8_e5m2, fp8_e4m3"
    if s.kv_dtype == "fp8":
        argv += ["--kv-cache-dtype", "fp8_e4m3"]  # OCP FP8 E4M3, the format hwsim's fp8 means
    elif s.kv_dtype in TORCH_DTYPE:
        _kv_follows_model(engine, t, kv_allowed)
        argv += ["--kv-cache-dtype", "auto"]
    else:
        raise _cannot(engine, "KV-cache dtype", s.kv_dtype, kv_allowed)
    argv += ["--mem-fraction-static", f"{s.memory_utilization:g}"]
    argv += ["--max-running-requests", str(s.max_num_seqs)]
    if s.chunked_prefill:
        argv += ["--chunked-prefill-size", str(s.max_num_batched_tokens)]
    else:
        argv += ["--chunked-prefill-size", "-1"]
        argv += ["--max-prefill-tokens", str(s.max_num_batched_tokens)]
    if not s.prefix_caching:
        argv += ["--disable-radix-cache"]
    argv += ["--context-length", str(t.max_model_len)]
    if not s.runtime.cuda_graphs and s.runtime.engine == "sglang":
        argv += ["--disable-cuda-graph"]
    if not s.runtime.custom_all_reduce and s.runtime.engine == "sglang" and s.tp > 1:
        argv += ["--disable-custom-all-reduce"]
    if s.chunked_prefill and not s.runtime.prefill_first and s.runtime.engine == "sglang":
        argv += ["--enable-mixed-chunk"]  # the mixed iterations the plan was priced with
    argv += ["--host", "0.0.0.0", "--port", str(engine.port)]
    notes = _common_notes(engine, t)
    notes.append(
        "--mem-fraction-static covers weights and the KV pool; activations come out of the "
        "rest (hwsim's memory_utilization includes a prefill workspace)"
    )
    return EngineCommand(engine, argv, notes)


TRTLLM_EXTRA_PATH = "/tmp/hwsim-trtllm-extra-llm-api-options.yaml"
TRTLLM_EXTRA_MOUNT = "/etc/hwsim/extra-llm-api-options.yaml"


def trtllm_command(t: LaunchTarget, extra_options_path: str = TRTLLM_EXTRA_PATH) -> EngineCommand:
    engine = ENGINES["trtllm"]
    _one_pool_only(engine, t)
    s = t.spec
    if t.vendor != "nvidia":
        raise HwsimError(
            f"TensorRT-LLM runs on NVIDIA GPUs only; {t.hardware.id} is {t.hardware.vendor}"
        )
    notes = _common_notes(engine, t) + _prefill_first_note(engine, t)
    if s.weight_dtype == "fp8":
        notes.append(
            "fp8 weights: TensorRT-LLM's PyTorch backend runs FP8 from a pre-quantised "
            "checkpoint (NVIDIA ModelOpt, e.g. an nvidia/...-FP8 repository); set MODEL to one"
        )
        dtype = _act_dtype(engine, t)
    elif s.weight_dtype in PREQUANTISED:
        dtype = _act_dtype(engine, t)
    else:
        dtype = _unquantised_dtype(engine, t)
    kv_allowed = "auto (the model dtype) or fp8"
    if s.kv_dtype == "fp8":
        kv = "fp8"
    elif s.kv_dtype in TORCH_DTYPE:
        _kv_follows_model(engine, t, kv_allowed)
        kv = "auto"
    else:
        raise _cannot(engine, "KV-cache dtype", s.kv_dtype, kv_allowed)
    fraction = t.trtllm_free_memory_fraction
    extra = {
        "dtype": dtype,
        "enable_chunked_prefill": s.chunked_prefill,
        "kv_cache_config": {
            "dtype": kv,
            "enable_block_reuse": s.prefix_caching,
            "free_gpu_memory_fraction": fraction,
        },
    }
    if not s.runtime.cuda_graphs and s.runtime.engine == "trtllm":
        extra["cuda_graph_config"] = None  # eager decode, as the plan was priced
    argv = [*engine.entry, t.model_id, "--backend", "pytorch"]
    argv += ["--tp_size", str(s.tp), "--pp_size", str(s.pp)]
    argv += ["--max_batch_size", str(s.max_num_seqs)]
    argv += ["--max_num_tokens", str(s.max_num_batched_tokens)]
    argv += ["--max_seq_len", str(t.max_model_len)]
    argv += ["--kv_cache_free_gpu_memory_fraction", f"{fraction:g}"]
    argv += ["--extra_llm_api_options", extra_options_path]
    argv += ["--host", "0.0.0.0", "--port", str(engine.port)]
    notes.append(
        f"--kv_cache_free_gpu_memory_fraction {fraction:g}: hwsim's memory_utilization "
        f"{s.memory_utilization:g} of the device, re-expressed as a share of the memory left "
        "after the weights"
    )
    return EngineCommand(engine, argv, notes, extra, extra_options_path)


BUILDERS = {"vllm": vllm_command, "sglang": sglang_command, "trtllm": trtllm_command}


def engine_command(engine: str, target: LaunchTarget, **options: Any) -> EngineCommand:
    """The launch command of ``engine`` (vllm, sglang or trtllm) for ``target``."""
    try:
        build = BUILDERS[engine]
    except KeyError:
        raise HwsimError(f"unknown engine {engine!r}; allowed: {', '.join(BUILDERS)}") from None
    if engine != "trtllm":
        target.gpu_resource  # noqa: B018 - raises for a device no engine image serves
    return build(target, **options)
