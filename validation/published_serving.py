"""Serving rows of the published set: the row's engine, flags, model and lengths turned into a
deployment, its runtime and traffic, simulated with ``hwsim``'s serving simulator and read as
the row's metric. Split from :mod:`validation.published_eval` (the driver)."""

from __future__ import annotations

import csv
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.profiles.hardware import HardwareProfile
from validation.published_prediction import (
    _DTYPES,
    MODEL_SUBSTITUTES,
    NO_BAND_SERVING,
    SEED,
    SHAREGPT_LENGTHS,
    SHAREGPT_SOURCE,
    NotPredictable,
    Prediction,
    _dtype,
    _profile_kind,
)
from validation.published_set import PublishedRow


def _engine_settings(row: PublishedRow) -> dict[str, float]:
    """Engine memory settings the row states (in its notes), by engine."""
    notes = row.notes or ""
    out: dict[str, float] = {}
    if row.engine == "SGLang" and (
        m := re.search(r"--mem-frac(?:tion-static)?\s+(\d+(?:\.\d+)?)", notes)
    ):
        out["sglang_mem_fraction"] = float(m.group(1))
    if row.engine == "TensorRT-LLM" and (
        m := re.search(r"kv_cache_free_gpu_mem_fraction\s+(\d+(?:\.\d+)?)", notes)
    ):
        out["trt_kv_free_fraction"] = float(m.group(1))
    return out


# vLLM engine flags, as the row's notes quote the source's command line -> hwsim settings
_VLLM_FLAGS = {
    "kv_dtype": r"--kv-cache-dtype\s+(fp8\w*|bf16|fp16|auto)",
    "memory_utilization": r"--gpu-memory-utilization\s+(\d+(?:\.\d+)?)",
    "max_num_batched_tokens": r"--max-num-batched-tokens\s+(\d+)",
    "max_num_seqs": r"--max-num-seqs\s+(\d+)",
    "chunked_prefill": r"--enable-chunked-prefill\s+(false|true)",
}


def _vllm_settings(row: PublishedRow) -> dict[str, Any]:
    """The vLLM launch flags the row's notes quote, as hwsim deployment settings (only the
    ones given; a value the notes leave symbolic, such as ``{from config}``, is skipped)."""
    if row.engine != "vLLM":
        return {}
    notes = row.notes or ""
    out: dict[str, Any] = {}
    for name, pattern in _VLLM_FLAGS.items():
        m = re.search(pattern, notes)
        if m is None:
            continue
        raw = m.group(1)
        if name == "kv_dtype":
            if raw != "auto":  # auto: the model dtype, hwsim's default already
                out[name] = _DTYPES.get(raw, raw)
        elif name == "memory_utilization":
            out[name] = float(raw)
        elif name == "chunked_prefill":
            out[name] = raw == "true"
        else:
            out[name] = int(raw)
    return out


# vLLM V0 (0.5 to 0.7; V1 is the default from 0.8.0, vllm-project/vllm#13726): arg_utils.py leaves
# enable_chunked_prefill off unless max_model_len > 32K ("Chunked prefill is enabled by default
# for models with max_model_len > 32K", and only on some platforms and features), and
# vllm/config.py SchedulerConfig sets max_num_batched_tokens = max(max_model_len, 2048)
# without chunked prefill ("If max_model_len is too short, use 2048 as the default value for
# higher throughput"), 512 with it (unless multi-step: then max(max_model_len, 2048) again; a
# 0.7 V0 log: "Chunked prefill is enabled with max_num_batched_tokens=512")
V0_AUTO_CHUNKED_ABOVE_TOKENS = 32 * 1024
V0_MIN_UNCHUNKED_BUDGET_TOKENS = 2048
V0_CHUNKED_BUDGET_TOKENS = 512
V0_SOURCE = "vLLM V0 defaults (arg_utils.py EngineArgs, config.py SchedulerConfig, 0.5-0.7)"


def _major_minor(row: PublishedRow) -> tuple[int, int] | None:
    """The row's engine version as (major, minor), where its engine_version states one
    (its first X.Y: '0.6.0', '0.17.post1.dev', '... (vLLM 0.6.7 development build)')."""
    m = re.search(r"(?<![\d.])(\d+)\.(\d+)(?![\d])", row.engine_version or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _vllm_v0_defaults(row: PublishedRow, stated: dict[str, Any]) -> dict[str, Any]:
    """A V0 vLLM's own scheduling defaults for what the row's flags leave out: with a stated
    ``--max-model-len`` of at most 32K, no chunked prefill and a token budget of
    max(max_model_len, 2048); chunked prefill stated on without a budget (and without
    multi-step scheduling), 512. Nothing for
    V1 versions, unknown versions, or an unstated or longer max_model_len (where V0 turns
    chunked prefill on by platform and feature)."""
    version = _major_minor(row)
    if row.engine != "vLLM" or version is None or version >= (0, 8):
        return {}
    out: dict[str, Any] = {}
    steps = re.search(r"--num-scheduler-steps[\s=]+(\d+)", row.notes or "")
    multi_step = steps is not None and int(steps.group(1)) > 1
    if stated.get("chunked_prefill") and "max_num_batched_tokens" not in stated and not multi_step:
        out["max_num_batched_tokens"] = V0_CHUNKED_BUDGET_TOKENS
    m = re.search(r"--max[-_]model[-_]len[\s=]+(\d+)", row.notes or "")
    if "chunked_prefill" in stated or m is None:
        return out
    max_model_len = int(m.group(1))
    if max_model_len > V0_AUTO_CHUNKED_ABOVE_TOKENS:
        return out
    out["chunked_prefill"] = False
    if "max_num_batched_tokens" not in stated:
        out["max_num_batched_tokens"] = max(max_model_len, V0_MIN_UNCHUNKED_BUDGET_TOKENS)
    return out


# The row's engine -> hwsim's runtime model (hwsim.profiles.runtime: each engine's defaults,
# every one with its source); the flags a row's notes quote for its own engine override them.
_RUNTIME_ENGINES = {"vLLM": "vllm", "SGLang": "sglang", "TensorRT-LLM": "trtllm"}
_RUNTIME_FLAGS = {
    "vLLM": {
        "num_scheduler_steps": r"--num-scheduler-steps[\s=]+(\d+)",
        "cuda_graphs": r"(--enforce-eager)\b",  # eager mode: no CUDA graphs
        "custom_all_reduce": r"(--disable-custom-all-reduce)\b",
    },
    "SGLang": {
        "cuda_graphs": r"(--disable-cuda-graph)\b",
        "custom_all_reduce": r"(--disable-custom-all-reduce)\b",
        "prefill_first": r"(--enable-mixed-chunk)\b",  # prefill chunks share the decodes' batch
    },
}


# TensorRT-LLM before 1.0 ran its TensorRT backend; hwsim's trtllm CUDA-graph default is the
# PyTorch backend's (1.0 on, hwsim.profiles.runtime), and the older backend's is not
# established, so such a row keeps hwsim's per-kernel launch model (cuda_graphs False). The
# version is the row's engine_version, else a 'tensorrt_llm==X.Y' pin its notes quote; a row
# measured with benchmarks/python/benchmark.py (a tool that runs built TensorRT engines) is
# the TensorRT backend whatever its version.
TRTLLM_PYTORCH_BACKEND_DEFAULT_FROM = (1, 0)


def _trtllm_before_pytorch_backend(row: PublishedRow) -> bool:
    """Whether a TensorRT-LLM row states (or its notes pin) a version before 1.0."""
    if row.engine != "TensorRT-LLM":
        return False
    if "benchmarks/python/benchmark.py" in (row.notes or ""):
        return True
    version = _major_minor(row)
    if version is None:
        m = re.search(r"tensorrt_llm==(\d+)\.(\d+)", row.notes or "")
        version = (int(m.group(1)), int(m.group(2))) if m else None
    return version is not None and version < TRTLLM_PYTORCH_BACKEND_DEFAULT_FROM


def _runtime(row: PublishedRow, out: Prediction) -> dict[str, Any]:
    """The ``runtime:`` section for the row: its engine's defaults, with the runtime flags the
    row's notes quote for that engine (a note naming another engine's flag is skipped: only
    the row's own engine's flags are looked for)."""
    engine = _RUNTIME_ENGINES.get(row.engine or "")
    if engine is None:
        return {}
    runtime: dict[str, Any] = {"engine": engine}
    notes = row.notes or ""
    for name, pattern in _RUNTIME_FLAGS.get(row.engine or "", {}).items():
        m = re.search(pattern, notes)
        if m is None:
            continue
        runtime[name] = int(m.group(1)) if name == "num_scheduler_steps" else False
    if _trtllm_before_pytorch_backend(row):
        runtime["cuda_graphs"] = False
    stated = {k: v for k, v in runtime.items() if k != "engine"}
    out.notes.append(
        f"runtime: {engine} defaults"
        + (" with " + ", ".join(f"{k}={v}" for k, v in sorted(stated.items())) if stated else "")
        + " (hwsim.profiles.runtime)"
    )
    return runtime


def _model(row: PublishedRow, out: Prediction) -> str:
    if row.model_profile:
        return row.model_profile
    sub = MODEL_SUBSTITUTES.get(row.model_published or "")
    if sub is None:
        raise NotPredictable(f"no hwsim model profile for {row.model_published!r}")
    out.notes.append(f"model {row.model_published!r} priced as {sub} (same layer shapes)")
    return sub


def _lengths(row: PublishedRow, out: Prediction) -> tuple[int, int]:
    w = row.workload
    if w.input_len_tokens and w.output_len_tokens:
        return w.input_len_tokens, w.output_len_tokens
    if (w.dataset or "").lower() == "sharegpt":
        out.notes.append(SHAREGPT_SOURCE)
        prompt, output = SHAREGPT_LENGTHS["prompt_tokens"], SHAREGPT_LENGTHS["output_tokens"]
        if w.mean_output_len_tokens:
            # the source's own mean output length for its run (the row's notes say how it
            # follows from the published numbers) replaces the paper's mean
            output = max(1, round(w.mean_output_len_tokens))
            out.notes.append(
                f"output length {output} tokens: the run's own mean "
                f"({w.mean_output_len_tokens:g}, see the row's notes), not the paper's"
            )
        return prompt, output
    raise NotPredictable("input/output lengths (or a dataset with published lengths) not stated")


def _deployment(
    row: PublishedRow, model: str, hw: HardwareProfile, out: Prediction
) -> dict[str, Any]:
    from hwsim.inference.deployment import make_deployment
    from hwsim.inference.memory import weight_bytes_per_gpu

    w = row.workload
    dep: dict[str, Any] = {"tp": w.tp or row.num_devices}
    dep["weight_dtype"] = _dtype(w.dtype, "bf16")
    if w.dtype is None:
        out.notes.append("dtype not stated: bf16 (the model default)")
    if w.client_mode == "fixed_batch":
        if w.batch_size is None:
            raise NotPredictable("fixed batch without a batch size")
        dep["max_num_seqs"] = w.batch_size
    settings = _engine_settings(row)
    if vllm := _vllm_settings(row):
        dep.update(vllm)
        out.notes.append(
            "vLLM flags from the row's notes: "
            + ", ".join(f"{k}={v}" for k, v in sorted(vllm.items()))
        )
    if v0 := _vllm_v0_defaults(row, vllm):
        dep.update(v0)
        out.notes.append(f"{V0_SOURCE}: " + ", ".join(f"{k}={v}" for k, v in sorted(v0.items())))
    if "sglang_mem_fraction" in settings:
        # SGLang's mem_fraction_static: the share of memory for weights and KV cache
        dep["memory_utilization"] = settings["sglang_mem_fraction"]
        out.notes.append(f"SGLang --mem-frac {settings['sglang_mem_fraction']}")
    if "trt_kv_free_fraction" in settings:
        # TensorRT-LLM's kv_cache_free_gpu_mem_fraction: the share of the memory left after
        # the weights that the KV cache may take; as a share of all memory:
        # (W + f (M - W)) / M, with the runtime's other buffers neglected
        f = settings["trt_kv_free_fraction"]
        weights = weight_bytes_per_gpu(make_deployment(model, hw, **dep))
        cap = hw.capacity_bytes
        dep["memory_utilization"] = min(1.0, (weights + f * (cap - weights)) / cap)
        out.notes.append(
            f"TensorRT-LLM kv_cache_free_gpu_mem_fraction {f} -> memory_utilization "
            f"{dep['memory_utilization']:.3f}"
        )
    if runtime := _runtime(row, out):
        dep["runtime"] = runtime
    return dep


def _serving(row: PublishedRow, hw: HardwareProfile, out: Prediction, max_requests: int) -> None:
    import hwsim

    w = row.workload
    model = _model(row, out)
    mode = w.client_mode
    if mode is None:
        raise NotPredictable("client mode (request rate / concurrency / offline) not stated")
    if mode == "fixed_concurrency" and not _has_closed_loop_clients():
        raise NotPredictable("needs closed-loop clients (fixed concurrency)")
    if mode == "fixed_concurrency" and w.concurrency is None:
        raise NotPredictable("fixed-concurrency client without a concurrency")
    prompt, output = _lengths(row, out)
    if mode == "fixed_batch":
        n = w.batch_size or 0
    else:
        n = min(w.num_requests or max_requests, max_requests)
        if w.num_requests and w.num_requests > n:
            out.notes.append(f"{n} of the row's {w.num_requests} requests simulated")
    deployment = _deployment(row, model, hw, out)
    scenario: dict[str, Any] = {"model": model, "hardware": hw.id, "deployment": deployment}
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "request_rate":
            if w.request_rate_per_s is None:
                raise NotPredictable("request-rate client without a rate")
            scenario["traffic"] = {
                "arrivals": {
                    "kind": "poisson",
                    "rate": {"kind": "constant", "rate_per_s": w.request_rate_per_s},
                },
                "prompt_tokens": prompt,
                "output_tokens": output,
            }
        elif mode == "fixed_concurrency":  # closed loop: a client sends when its answer is in
            scenario["traffic"] = {
                "arrivals": {"kind": "concurrency", "clients": w.concurrency, "requests": n},
                "prompt_tokens": prompt,
                "output_tokens": output,
            }
        else:  # offline_all_at_once / fixed_batch: every request at t = 0
            trace = Path(tmp) / "requests.csv"
            with trace.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["arrival_s", "prompt_tokens", "output_tokens"])
                writer.writerows([0.0, prompt, output] for _ in range(n))
            scenario["traffic"] = {"arrivals": {"kind": "trace", "file": str(trace)}}
        result, summary = hwsim.simulate(scenario, n_requests=n, seed=SEED)
        if row.metric == "median_tpot":  # the scenario's trace file lives until here
            out.op_shares = decode_step_shares(scenario, result.trace, prompt + output / 2)
    rec = result.records
    done = rec.completed
    if not done.any():
        raise NotPredictable(f"no request completed in the simulation ({summary.rejected})")
    if summary.rejected:
        out.notes.append(f"simulation rejected {summary.rejected}")
    if summary.overloaded:
        out.notes.append(f"simulation overloaded: {summary.overload_reason}")
    out.predicted = _serving_metric(row, rec, summary)
    out.rung = _profile_kind(hw)
    out.band = NO_BAND_SERVING


def decode_step_shares(
    scenario: dict[str, Any], trace: Any, context: float
) -> list[tuple[str, str, float]]:
    """(op name, its kind (:func:`hwsim.perf.transfer.kind_of_class`), share of the step's
    time) of every distinct op of one decode step (the executions of one op, e.g. every
    layer's QKV projection, share one shape and so one error), at the median batch of the
    simulation's decode-only iterations and ``context`` keys (the run's mean)."""
    from hwsim.inference.deployment import make_deployment
    from hwsim.inference.engine import decode_step_cost
    from hwsim.perf.transfer import kind_of_class
    from hwsim.planner.plan import as_scenario

    decode_only = trace.num_tokens == trace.num_seqs
    seqs = trace.num_seqs[decode_only] if decode_only.any() else trace.num_seqs
    batch = max(1.0, float(np.median(seqs)))
    sc = as_scenario(scenario)
    cost = decode_step_cost(make_deployment(sc.model, sc.hardware, sc.deployment), batch, context)
    by_op: dict[str, list] = {}
    for t in cost.op_times:
        entry = by_op.setdefault(t.op.name, [kind_of_class(t.op.op_class), 0.0])
        entry[1] += float(t.total_s)
    total = sum(seconds for _kind, seconds in by_op.values())
    return [(name, kind, seconds / total) for name, (kind, seconds) in sorted(by_op.items())]


def _has_closed_loop_clients() -> bool:
    """Whether this hwsim's traffic model has ``arrivals: {kind: concurrency}``."""
    import hwsim.serving

    return hasattr(hwsim.serving, "ConcurrencyArrivals")


def _serving_metric(row: PublishedRow, rec: Any, summary: Any) -> float:
    done = rec.completed
    duration = summary.duration_s
    metric = row.metric
    if metric == "median_ttft":
        value_s = float(np.nanmedian(rec.ttft_s[done]))
    elif metric == "median_tpot":
        value_s = float(np.nanmedian(rec.tpot_s[done]))
    elif metric == "output_token_throughput":
        return float(rec.output_tokens[done].sum()) / duration
    elif metric == "token_throughput_input_plus_output":
        return float(rec.prompt_tokens[done].sum() + rec.output_tokens[done].sum()) / duration
    elif metric == "batch_latency":
        # vLLM benchmark_latency.py: the wall time of one generate() call on a fixed batch,
        # start to last token of the last request (every request arrives at t = 0)
        if row.workload.client_mode != "fixed_batch":
            raise NotPredictable("batch latency is defined for a fixed batch only")
        if not done.all():
            raise NotPredictable("not every request of the batch completed")
        value_s = float(np.max(rec.e2e_s[done]))
    else:
        raise NotPredictable(f"metric {metric!r} has no definition here")
    if row.unit != "ms":
        raise NotPredictable(f"unit {row.unit} for a latency")
    return value_s * 1e3
