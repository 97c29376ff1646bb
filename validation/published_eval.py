"""Predict every row of the published, independent validation set and compare (``hwsim
validate --published``).

The rows (``validation/published/*.yaml``, loaded by :mod:`validation.published_set`) are
numbers other people measured and published. They are **reserved for evaluation**: this module
only predicts and compares; nothing here fits, tunes or adjusts any hwsim parameter or profile.

Each row is priced through hwsim's public paths, for exactly the workload the row states:

- ``gemm``: ``hwsim.kernel_time(hw, "gemm", m, n, k, dtype)``; TFLOP/s = 2 m n k / time.
  ``k`` is the reduction dimension. For the stas00 mamf-finder rows that is the script's own
  convention: its ``benchmark_mm`` builds ``A = randn(m, k)`` and ``B = randn(n, k).t()`` and
  its ``--k`` help reads "The shared (reduction) dimension" (stas00/ml-engineering,
  ``compute/accelerator/benchmarks/mamf-finder.py``, the cache-resetting version that reports
  the mean over 100 iterations after 50 warmups, which is the version the v2 tables used).
  The mag-/gpu_benchmark rows already store the middle number as k. cuBLASLt and
  hipblaslt-bench m/n/k put the reduction in k too.
- ``bandwidth``: the ``copy`` kernel. BabelStream counts the bytes each kernel moves as arrays
  of ``ARRAY_SIZE`` elements: Copy ``c[i] = a[i]`` moves 2 arrays (one read, one write), Triad
  ``a[i] = b[i] + s * c[i]`` moves 3 (two reads, one write), and the rate is those bytes over
  the kernel time. The defaults are ``ARRAY_SIZE = 2^25`` ("Default size of 2^25") and
  decimal MB/s "as per STREAM" (UoB-HPC/BabelStream ``src/main.cpp``). hwsim's copy kernel of
  ``bytes`` reads and writes ``bytes`` each, so a BabelStream kernel that moves A arrays is
  priced as a copy of A/2 arrays' worth of bytes and reported as A arrays over that time.
- ``allreduce``: the ``all_reduce`` kernel at the row's message size and rank count. nccl-tests
  (NVIDIA/nccl-tests ``doc/PERFORMANCE.md``) defines algbw = S / t and, for all-reduce,
  busbw = algbw * 2 (n - 1) / n. stas00's all_reduce_bench.py reports busbw the same way. With
  more ranks than the profile's ``devices_per_node``, hwsim prices a ring over the profile's
  inter-node link.
- ``serving``: :func:`hwsim.simulate` (the planner's serving simulator) with the row's model,
  hardware, tp, dtype, the engine settings the row states, and its client mode: request rate
  -> Poisson arrivals at that rate; fixed concurrency -> closed-loop clients (``arrivals:
  {kind: concurrency}``, where this hwsim has it); offline / fixed batch -> every request at
  t = 0 (a trace).
  The vLLM launch flags a row's notes quote (``--kv-cache-dtype``, ``--gpu-memory-utilization``,
  ``--max-num-batched-tokens``, ``--max-num-seqs``, ``--enable-chunked-prefill``) become the
  matching deployment settings. The row's engine picks the deployment's ``runtime:`` section
  (:mod:`hwsim.profiles.runtime`: multi-step scheduling, host overheads, CUDA graphs, each
  engine's sourced defaults); the runtime flags its notes quote for that engine
  (vLLM ``--num-scheduler-steps``, ``--enforce-eager``; SGLang ``--disable-cuda-graph``)
  override the defaults. A ShareGPT row prices fixed lengths at the paper's means
  below, except that a row's ``mean_output_len_tokens`` (the run's own mean, from the
  source's numbers) replaces the output mean.
  At most ``max_requests`` requests (default 1000) are simulated per row. The metrics follow
  sglang.bench_serving / vLLM benchmark_serving: median TTFT, and median TPOT where TPOT =
  (e2e - TTFT) / (output tokens - 1) over requests with more than one output token. Output
  throughput = output tokens / (first arrival to last finish); "input plus output" throughput
  counts prompt tokens too.

Every prediction names what priced it: the kernel rung (``KernelTime.rung``) or, for a
simulation, whether the hardware profile is calibrated or datasheet. Rows hwsim cannot
express are kept, with status ``not predictable: <reason>``.

Band coverage: where the kernel rung that priced a row gives a p10-p90 band (``calibrated``:
the calibration's residual band; ``measured``: the measurement's spread), the band becomes the
row's unit (``low``/``high``: the rate at the slow and the fast edge) and the row is counted
inside, below or above it (:func:`band_coverage`, per group). A datasheet-rung prediction has
no band today, nor has a serving row (the simulator's medians are point values): they count as
"no band" with the reason in ``band``.
"""

from __future__ import annotations

import csv
import math
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import HwsimError, UnknownProfileError
from hwsim.profiles.hardware import HardwareProfile
from validation.published_set import PublishedRow, load_published

__all__ = [
    "BABELSTREAM_ARRAY_SIZE",
    "SHAREGPT_LENGTHS",
    "Prediction",
    "algbw_bytes_per_s",
    "babelstream_bytes",
    "band_coverage",
    "busbw_bytes_per_s",
    "evaluate",
    "evaluate_row",
    "gemm_tflops",
    "report",
    "summarise",
]

PREDICTED = "predicted"
DEFAULT_MAX_REQUESTS = 1000
SEED = 0

# BabelStream (UoB-HPC/BabelStream src/main.cpp): "Default size of 2^25" elements per array;
# bytes moved per kernel = arrays touched * sizeof(T) * ARRAY_SIZE (Copy/Mul 2, Add/Triad 3).
BABELSTREAM_ARRAY_SIZE = 2**25
BABELSTREAM_ARRAYS = {"copy": 2, "mul": 2, "add": 3, "triad": 3, "nstream": 4}
ELEMENT_BYTES = {"fp64": 8, "fp32": 4, "bf16": 2, "fp16": 2}

# ShareGPT lengths: Kwon et al. 2023, "Efficient Memory Management for Large Language Model
# Serving with PagedAttention" (SOSP '23, arXiv 2309.06180), Fig. 11: ShareGPT mean input
# 161.31 and mean output 337.99 tokens (Alpaca 19.31 / 58.45; the text's "8.4x longer input
# prompts and 5.8x longer outputs on average"; the figure itself was not re-read here, the four
# means agree with those two ratios: 161.31 / 19.31 = 8.35, 337.99 / 58.45 = 5.78). The paper
# gives means, not a spread, so the
# lengths are fixed at the means (rounded): a median-TTFT prediction misses the spread of
# prompt lengths. Its tokenizer and sampling are not sglang.bench_serving's.
SHAREGPT_LENGTHS = {"prompt_tokens": 161, "output_tokens": 338}
SHAREGPT_SOURCE = (
    "ShareGPT lengths fixed at the means of Kwon et al. 2023 (vLLM/PagedAttention, arXiv "
    "2309.06180, Fig. 11): 161 prompt and 338 output tokens; no spread"
)

# Rows whose model has no profile of its own but the same layer shapes as one (the row's notes
# say so: Llama 3 8B/70B have the Llama 3.1 architecture apart from RoPE scaling and context
# length, which a 128-token prompt never reaches).
MODEL_SUBSTITUTES = {"LLAMA 3 (8B)": "llama-3.1-8b", "LLAMA 3 (70B)": "llama-3.1-70b"}

# dtype names as the rows print them -> hwsim dtypes
_DTYPES = {
    "fp8": "fp8",
    "fp8_e4m3fn": "fp8",
    "fp8_fnuz": "fp8",
    "bf16": "bf16",
    "fp16": "fp16",
    "fp32": "fp32",
}


@dataclass
class Prediction:
    """One row: published vs predicted, the error, and what priced it (or why nothing could)."""

    id: str
    kind: str
    hardware: str | None
    engine: str | None
    metric: str
    unit: str
    published: float
    predicted: float | None = None
    error: float | None = None  # predicted / published - 1
    rung: str | None = None
    profile: str | None = None  # the hardware profile that priced it
    status: str = PREDICTED
    notes: list[str] = field(default_factory=list)
    # p10-p90 band of the prediction in the row's unit (a calibrated or measured kernel rung);
    # None where hwsim gives none (datasheet rungs, communication, the serving simulator)
    low: float | None = None
    high: float | None = None
    band: str | None = None  # why there is no band, where there is none

    @property
    def in_band(self) -> bool | None:
        """Whether the published value lies in [low, high]; None without a band."""
        if self.low is None or self.high is None:
            return None
        return self.low <= self.published <= self.high

    @property
    def ok(self) -> bool:
        return self.status == PREDICTED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NotPredictable(Exception):
    """hwsim cannot express the row; the message is the reason."""


# -- unit conversions --------------------------------------------------------------------
def gemm_tflops(m: int, n: int, k: int, time_s: float) -> float:
    """TFLOP/s of a GEMM of 2 m n k FLOPs that took ``time_s``."""
    return 2.0 * m * n * k / time_s / 1e12


def babelstream_bytes(operation: str, element_bytes: int, array_size: int) -> int:
    """Bytes BabelStream counts for one kernel: arrays touched * element bytes * array size."""
    return BABELSTREAM_ARRAYS[operation] * element_bytes * array_size


def algbw_bytes_per_s(size_bytes: float, time_s: float) -> float:
    """nccl-tests algorithm bandwidth: S / t."""
    return size_bytes / time_s


def busbw_bytes_per_s(size_bytes: float, time_s: float, ranks: int) -> float:
    """nccl-tests all-reduce bus bandwidth: algbw * 2 (n - 1) / n."""
    return algbw_bytes_per_s(size_bytes, time_s) * 2.0 * (ranks - 1) / ranks


_RATE_SCALE = {"TB/s": 1e12, "GB/s": 1e9, "TFLOP/s": 1e12}


# -- hardware ----------------------------------------------------------------------------
def _hardware(row: PublishedRow, calibrated: bool) -> HardwareProfile:
    """The row's profile, or its shipped ``<id>-calibrated`` sibling when there is one."""
    from hwsim.profiles.loader import load_hardware

    if row.hardware_profile is None:
        raise NotPredictable("no hwsim hardware profile for this hardware")
    if calibrated:
        try:
            return load_hardware(f"{row.hardware_profile}-calibrated")
        except UnknownProfileError:
            pass
    return load_hardware(row.hardware_profile)


def _profile_kind(hw: HardwareProfile) -> str:
    return "calibrated" if hw.calibration is not None else "datasheet"


def _dtype(raw: str | None, default: str) -> str:
    if raw is None:
        return default
    if raw not in _DTYPES:
        raise NotPredictable(f"dtype {raw!r} has no hwsim equivalent")
    return _DTYPES[raw]


# -- kernels -----------------------------------------------------------------------------
NO_BAND_DATASHEET = "no band: a datasheet-rung prediction has none"
NO_BAND_SERVING = "no band: the serving simulator gives a point value only"


def _rate_band(out: Prediction, t: Any, work: float) -> None:
    """The band of a rate ``work / time`` from a kernel time's p10-p90 band: the slow edge
    (high_s) gives the low rate. Only a calibrated or measured rung has a band; a zero-width
    band (an op class the calibration did not measure, communication) counts as none."""
    if t.rung in ("calibrated", "measured") and t.high_s > t.low_s > 0:
        out.low, out.high = work / t.high_s, work / t.low_s
    elif t.rung in ("calibrated", "measured"):
        out.band = f"no band: the {t.rung} rung gives a zero-width band for this op"
    else:
        out.band = NO_BAND_DATASHEET


def _gemm(row: PublishedRow, hw: HardwareProfile, out: Prediction) -> None:
    import hwsim

    w = row.workload
    if not (w.m and w.n and w.k):
        raise NotPredictable("GEMM shape (m, n, k) not stated")
    if row.unit != "TFLOP/s":
        raise NotPredictable(f"unit {row.unit} is not a GEMM rate")
    dtype = _dtype(w.dtype, "bf16")
    t = hwsim.kernel_time(hw, "gemm", m=w.m, n=w.n, k=w.k, dtype=dtype)
    out.predicted, out.rung = gemm_tflops(w.m, w.n, w.k, t.time_s), t.rung
    _rate_band(out, t, 2.0 * w.m * w.n * w.k / 1e12)


def _bandwidth(row: PublishedRow, hw: HardwareProfile, out: Prediction) -> None:
    import hwsim

    w = row.workload
    op = (w.operation or "").lower().removeprefix("babelstream").strip()
    if "babelstream" not in row.metric or op not in BABELSTREAM_ARRAYS:
        raise NotPredictable(f"not a BabelStream kernel: {w.operation!r}")
    element = ELEMENT_BYTES.get(w.dtype or "fp64")
    if element is None:
        raise NotPredictable(f"dtype {w.dtype!r}: element size unknown")
    moved = babelstream_bytes(op, element, BABELSTREAM_ARRAY_SIZE)
    # hwsim's copy of B bytes moves 2 B; it has no fp64, so the same bytes as fp32 elements
    t = hwsim.kernel_time(hw, "copy", bytes=moved // 2, dtype="fp32")
    out.predicted = moved / t.time_s / _RATE_SCALE[row.unit]
    out.rung = t.rung
    _rate_band(out, t, moved / _RATE_SCALE[row.unit])
    out.notes.append(
        f"BabelStream default array 2^25 x {element} B; {op} moves "
        f"{BABELSTREAM_ARRAYS[op]} arrays; priced as an hwsim copy of the same bytes"
    )


def _allreduce(row: PublishedRow, hw: HardwareProfile, out: Prediction) -> None:
    import hwsim

    w = row.workload
    if w.message_size_bytes is None:
        raise NotPredictable(f"message size not stated (operation: {w.operation!r})")
    ranks = row.num_devices
    per_node = int(hw.interconnect.devices_per_node.value)
    nodes = w.nodes or 1
    if nodes > 1 and hw.interconnect.inter_node is None:
        raise NotPredictable(f"{hw.id} has no inter-node link")
    if ranks > nodes * per_node:
        raise NotPredictable(f"{ranks} ranks on {nodes} node(s) of {per_node} devices")
    if nodes > 1 and ranks <= per_node:
        raise NotPredictable(
            f"{ranks} ranks over {nodes} nodes: hwsim picks the link by rank count only"
        )
    if row.unit != "GB/s":
        raise NotPredictable(f"unit {row.unit} is not a bandwidth")
    t = hwsim.kernel_time(hw, "all_reduce", bytes=w.message_size_bytes, ranks=ranks)
    size = float(w.message_size_bytes)
    if "busbw" in row.metric:
        value = busbw_bytes_per_s(size, t.time_s, ranks)
    elif "algbw" in row.metric:
        value = algbw_bytes_per_s(size, t.time_s)
    else:
        raise NotPredictable(f"metric {row.metric!r} is neither busbw nor algbw")
    out.predicted, out.rung = value / 1e9, t.rung
    _rate_band(out, t, value / 1e9 * t.time_s)
    link = "inter-node" if ranks > per_node else "intra-node"
    out.notes.append(f"ring over the profile's {link} link, {ranks} ranks")


# -- serving -----------------------------------------------------------------------------
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


# The row's engine -> hwsim's runtime model (hwsim.profiles.runtime: each engine's defaults,
# every one with its source); the flags a row's notes quote for its own engine override them.
_RUNTIME_ENGINES = {"vLLM": "vllm", "SGLang": "sglang", "TensorRT-LLM": "trtllm"}
_RUNTIME_FLAGS = {
    "vLLM": {
        "num_scheduler_steps": r"--num-scheduler-steps[\s=]+(\d+)",
        "cuda_graphs": r"(--enforce-eager)\b",  # eager mode: no CUDA graphs
    },
    "SGLang": {"cuda_graphs": r"(--disable-cuda-graph)\b"},
}


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
    else:
        raise NotPredictable(f"metric {metric!r} has no definition here")
    if row.unit != "ms":
        raise NotPredictable(f"unit {row.unit} for a latency")
    return value_s * 1e3


# -- driver ------------------------------------------------------------------------------
def evaluate_row(
    row: PublishedRow, *, calibrated: bool = True, max_requests: int = DEFAULT_MAX_REQUESTS
) -> Prediction:
    """hwsim's prediction for one published row (never raises for an inexpressible row: its
    status says why)."""
    out = Prediction(
        id=row.id,
        kind=row.kind,
        hardware=row.hardware_profile,
        engine=row.engine,
        metric=row.metric,
        unit=row.unit,
        published=row.value,
    )
    try:
        hw = _hardware(row, calibrated)
        out.profile = hw.id
        if row.kind == "gemm":
            _gemm(row, hw, out)
        elif row.kind == "bandwidth":
            _bandwidth(row, hw, out)
        elif row.kind == "allreduce":
            _allreduce(row, hw, out)
        elif row.kind == "serving":
            _serving(row, hw, out, max_requests)
        else:
            raise NotPredictable(f"no harness for kind {row.kind!r}")
    except (NotPredictable, HwsimError) as exc:
        out.predicted, out.rung, out.status = None, None, f"not predictable: {exc}"
        out.low = out.high = out.band = None
        return out
    if out.predicted is None or not math.isfinite(out.predicted) or out.predicted <= 0:
        out.status = f"not predictable: prediction {out.predicted!r}"
        out.predicted = out.low = out.high = out.band = None
        return out
    out.error = out.predicted / out.published - 1.0
    return out


def evaluate(
    rows: list[PublishedRow] | None = None,
    folder: str | Path | None = None,
    *,
    calibrated: bool = True,
    max_requests: int = DEFAULT_MAX_REQUESTS,
) -> list[Prediction]:
    """Predictions for ``rows`` (default: every row in ``folder``, default the shipped set)."""
    rows = load_published(folder) if rows is None else rows
    return [evaluate_row(r, calibrated=calibrated, max_requests=max_requests) for r in rows]


def band_coverage(preds: list[Prediction]) -> dict[str, Any]:
    """Over the predicted rows: how many have a p10-p90 band, how many of those hold the
    published value in [low, high] (and how many fall below or above), the coverage share and
    the median relative band width high / low - 1; rows without a band are counted apart."""
    done = [p for p in preds if p.ok]
    banded = [p for p in done if p.in_band is not None]
    inside = sum(1 for p in banded if p.in_band)
    below = sum(1 for p in banded if p.low is not None and p.published < p.low)
    widths = [p.high / p.low - 1.0 for p in banded if p.low and p.high]
    return {
        "n_band": len(banded),
        "n_no_band": len(done) - len(banded),
        "n_in_band": inside,
        "n_below_band": below,
        "n_above_band": len(banded) - inside - below,
        "band_coverage": inside / len(banded) if banded else None,
        "median_band_width": float(np.median(widths)) if widths else None,
    }


def _stats(preds: list[Prediction]) -> dict[str, Any]:
    errs = np.array([abs(p.error) for p in preds if p.ok and p.error is not None])
    return {
        "n": len(preds),
        "n_predicted": int(errs.size),
        "share_predicted": errs.size / len(preds) if preds else math.nan,
        "median_abs_error": float(np.median(errs)) if errs.size else None,
        "p90_abs_error": float(np.percentile(errs, 90)) if errs.size else None,
        **band_coverage(preds),
    }


def summarise(preds: list[Prediction]) -> list[dict[str, Any]]:
    """Per group (kind x hardware, kind x engine for serving, each kind, all): n, the share
    predicted, median and p90 of |predicted / published - 1| over the predicted rows, and the
    p10-p90 band coverage (:func:`band_coverage`)."""
    groups: dict[str, list[Prediction]] = {}
    for p in preds:
        groups.setdefault(f"{p.kind} x {p.hardware}", []).append(p)
    for p in preds:
        if p.kind == "serving":
            groups.setdefault(f"serving x {p.engine}", []).append(p)
    for p in preds:
        groups.setdefault(p.kind, []).append(p)
    groups["all"] = list(preds)
    return [{"group": name, **_stats(members)} for name, members in groups.items()]


BAND_NOTE = (
    "band: the p10-p90 band of a calibrated or measured kernel rung, as the row's unit; "
    "coverage = share of the rows with a band whose published value lies in [low, high]; "
    "width = median high / low - 1. A datasheet-rung prediction has no band today, nor has "
    "the serving simulator's point value: those rows count as 'no band'."
)


def report(
    folder: str | Path | None = None,
    *,
    calibrated: bool = True,
    max_requests: int = DEFAULT_MAX_REQUESTS,
) -> dict[str, Any]:
    """The whole comparison as one JSON-able object: settings, rows, summary, runtime."""
    rows = load_published(folder)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    preds = evaluate(rows, calibrated=calibrated, max_requests=max_requests)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "settings": {
            "folder": str(folder) if folder is not None else "validation/published",
            "calibrated_profiles": calibrated,
            "max_requests": max_requests,
            "seed": SEED,
            "sharegpt_lengths": SHAREGPT_SOURCE,
        },
        "rows": [p.to_dict() for p in preds],
        "summary": summarise(preds),
        "not_predictable": [
            {"id": p.id, "reason": p.status.removeprefix("not predictable: ")}
            for p in preds
            if not p.ok
        ],
        "band_note": BAND_NOTE,
        "runtime": {"wall_s": wall, "cpu_s": cpu},
    }
