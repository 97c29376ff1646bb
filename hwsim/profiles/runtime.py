"""The serving engine's runtime around the kernels: :class:`RuntimeSpec`, the ``runtime:``
section of a deployment (``DeploymentSpec.runtime``).

hwsim prices an engine iteration as its kernels (:mod:`hwsim.perf.roofline`). A production
engine adds host work around them, and vLLM's multi-step scheduling changes when requests are
admitted and tokens returned. The fields:

``engine``
    ``vllm`` | ``sglang`` | ``trtllm`` | ``generic`` (default): picks the defaults below.
    ``generic`` is hwsim's kernel-only model: no runtime effect at all.
``num_scheduler_steps``
    k >= 1 (vLLM ``--num-scheduler-steps``): decode steps run per scheduling decision. New
    prefills are admitted only at block boundaries, the tokens of a block come out at its end
    (inter-token latency in bursts of k) and the iteration overhead is paid once per block
    (:mod:`hwsim.serving.simulator`). 1 is today's iteration-level scheduling.
``iteration_overhead_s``
    host time (scheduling, input preparation, sampling output to Python, detokenization) per
    scheduling decision that the GPU waits for, added to the step time once per block.
``request_overhead_s``
    fixed latency per request before it reaches the engine (HTTP, tokenization): added to
    every request's TTFT (the request enters the queue that much later).
``cuda_graphs``
    True: decode-only iterations replay a captured CUDA graph, so the per-kernel launch
    overhead of the hardware profile (``launch_overhead_s`` x kernels, :func:`time_op`) is
    not paid in them; iterations with prefill tokens still are (engines capture decode
    batches only). False: every iteration pays it (today's model).
``cuda_graph_max_batch``
    the largest decode batch the engine captured a graph for: a decode-only iteration of more
    sequences runs eagerly and pays the launch overhead (with ``cuda_graphs``).
``custom_all_reduce``
    True: tensor-parallel all-reduces inside one fully linked node, up to 1 MiB, run the
    custom one-shot / two-shot kernel vLLM and SGLang use instead of NCCL
    (:mod:`hwsim.perf.custom_allreduce`); False: NCCL's model (:mod:`hwsim.perf.collectives`).
``prefill_first``
    True: an iteration with prefill work runs no decode (SGLang; the simulator's
    ``prefill_first`` policy, :mod:`hwsim.serving.policies`). False: with chunked prefill,
    decodes and prefill chunks share one iteration and token budget (vLLM, TensorRT-LLM's
    in-flight batching; the ``chunked`` policy). Without chunked prefill every engine runs
    the ``unchunked`` policy, prefill-only iterations first. A scheduling choice: it changes
    no phase cost of ``estimate`` (whose decode already stretches by the prefill load).

A field left out takes the engine's default (:data:`ENGINE_DEFAULTS`); every default names its
source. Where no source publishes a number the default is 0 / today's behaviour, and says so.
None of these defaults was chosen by comparing with hwsim's validation rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from hwsim.profiles.sourced import STRICT

Engine = Literal["vllm", "sglang", "trtllm", "generic"]
ENGINES: tuple[str, ...] = ("vllm", "sglang", "trtllm", "generic")
DEFAULTED = (
    "num_scheduler_steps",
    "iteration_overhead_s",
    "request_overhead_s",
    "cuda_graphs",
    "cuda_graph_max_batch",
    "custom_all_reduce",
    "prefill_first",
)


@dataclass(frozen=True)
class Default:
    value: Any
    source: str


_NO_REQUEST_FIGURE = (
    "no published per-request figure found: default 0 (the vLLM v0.6.0 performance blog, "
    "blog.vllm.ai/2024/09/05/perf-update.html, gives only a share for Llama 3 8B on 1 H100: "
    "'The HTTP API server takes 33% of the total execution time', not a latency per request)"
)
_ONE_STEP = "the engine's default: one decode step per scheduling decision"

# engine -> field -> default with its source. Quotes are from the sources named.
ENGINE_DEFAULTS: dict[str, dict[str, Default]] = {
    "generic": {
        "num_scheduler_steps": Default(1, "hwsim's kernel-only model: iteration-level scheduling"),
        "iteration_overhead_s": Default(0.0, "hwsim's kernel-only model: no host time"),
        "request_overhead_s": Default(0.0, "hwsim's kernel-only model: no per-request latency"),
        "cuda_graphs": Default(
            False, "hwsim's kernel-only model: every kernel pays the profile's launch overhead"
        ),
        "cuda_graph_max_batch": Default(
            2**31 - 1, "hwsim's kernel-only model: no limit (no graphs unless cuda_graphs)"
        ),
        "custom_all_reduce": Default(False, "hwsim's kernel-only model: NCCL's cost model"),
        "prefill_first": Default(
            False, "hwsim's kernel-only model: vLLM's mixed chunked-prefill iterations"
        ),
    },
    "vllm": {
        "num_scheduler_steps": Default(
            1,
            "vLLM engine args: --num-scheduler-steps 'Maximum number of forward steps per "
            "scheduler call', default 1 (vLLM 0.6.x; multi-step is opt-in)",
        ),
        "iteration_overhead_s": Default(
            4.0e-3,
            "vLLM RFC 'Multi-Step Scheduling' (github.com/vllm-project/vllm/issues/6854, "
            "2024-07-26): 'GPU is often idle, waiting for CPU operations (5-13ms of GPU "
            "bubble)'; in its profile 'Each highlighted redbox is about 4ms of GPU bubble ... "
            "For baseline, this overhead is incurred on every decode. With multi-step-8, the "
            "4ms only needs to be incurred once for every 8 decode' (the PR implementing it, "
            "#7000, benchmarks Meta-Llama-3-8B on one GPU); the profiled 4 ms is taken, as a "
            "constant per scheduler call (the RFC gives no dependence on batch or model)",
        ),
        "request_overhead_s": Default(0.0, _NO_REQUEST_FIGURE),
        "cuda_graphs": Default(
            True,
            "vLLM engine args: enforce_eager defaults to False ('If False, will use eager mode "
            "and CUDA graph in hybrid'); vLLM logs 'Capturing cudagraphs for decoding ... To "
            "run the model in eager mode, set enforce_eager=True' (graphs for decode batches)",
        ),
        "cuda_graph_max_batch": Default(
            256,
            "vLLM V0 worker/model_runner.py: '_BATCH_SIZES_TO_CAPTURE = [1, 2, 4] + "
            "[_BATCH_SIZE_ALIGNMENT * i for i in range(1, 33)]' ('Capture graphs for ... 1, 2, "
            "4, 8, 16, 24, 32, 40, ..., 256'; V1 captures up to 512)",
        ),
        "custom_all_reduce": Default(
            True,
            "vLLM engine args: disable_custom_all_reduce defaults to False (ParallelConfig); "
            "vllm/distributed/device_communicators/custom_all_reduce.py runs it for 2/4/6/8 "
            "fully linked GPUs and messages under 8 MiB",
        ),
        "prefill_first": Default(
            False,
            "vLLM docs (Performance and Tuning, chunked prefill; quoted in "
            "github.com/vllm-project/vllm/pull/7874): 'By default, vLLM scheduler "
            "prioritizes prefills ... Once chunked prefill is enabled, the policy is changed "
            "to prioritize decode requests': decodes first, then prefill chunks in the same "
            "token budget (v1's scheduler.py schedules the RUNNING requests, then the WAITING "
            "ones, from one budget); the prefill-first case is chunked_prefill: false",
        ),
    },
    "sglang": {
        "num_scheduler_steps": Default(1, _ONE_STEP + " (SGLang has no multi-step option)"),
        "iteration_overhead_s": Default(
            0.0,
            "SGLang v0.4 blog (lmsys.org/blog/2024-12-04-sglang-v0-4, 'Zero-Overhead Batch "
            "Scheduler'): 'we can overlap the CPU scheduling with the GPU computation. The "
            "scheduler runs one batch ahead' and, in its Nsight profile of 5 consecutive "
            "decoding batches, 'there is no single idle time on the GPU': 0 (the blog's "
            "'An unoptimized inference engine can spend as much as half of its time on CPU "
            "overhead' gives no number for SGLang before v0.4)",
        ),
        "request_overhead_s": Default(0.0, "no published per-request figure found: default 0"),
        "cuda_graphs": Default(
            True,
            "SGLang docs (CUDA graph): 'SGLang automatically enables CUDA graph for decode by "
            "default' (--disable-cuda-graph turns it off)",
        ),
        "cuda_graph_max_batch": Default(
            160,
            "SGLang server_args.py (0.4): cuda_graph_max_bs is 160 ('the default value 160') "
            "on GPUs of 25 GB and more (8, or 80 at TP >= 4, below that: not modelled)",
        ),
        "custom_all_reduce": Default(
            True,
            "SGLang server args: disable_custom_all_reduce = False; its kernel began as "
            "vLLM's (sgl-project/sglang PR #2904 compares the two), priced as vLLM's",
        ),
        "prefill_first": Default(
            True,
            "SGLang scheduler (python/sglang/srt/managers/scheduler.py, get_next_batch_to_run, "
            "v0.3 to v0.5): builds a prefill batch and returns it if there is one, '# Run "
            "prefill first if possible', else the decode batch; prefill chunks share a batch "
            "with decodes only with --enable-mixed-chunk (server_args.py: enable_mixed_chunk "
            "= False)",
        ),
    },
    "trtllm": {
        "num_scheduler_steps": Default(1, _ONE_STEP),
        "iteration_overhead_s": Default(
            0.0,
            "TensorRT-LLM docs, 'Overlap Scheduler': 'At step n, the system launches GPU "
            "computation for step n+1 without waiting for CPU tasks (e.g., stop criteria "
            "checks) from step n to complete' ... 'Enabled by default': 0",
        ),
        "request_overhead_s": Default(0.0, "no published per-request figure found: default 0"),
        "cuda_graphs": Default(
            True,
            "TensorRT-LLM LLM API (tensorrt_llm/llmapi/llm_args.py, the PyTorch backend, the "
            "default backend from 1.0): cuda_graph_config defaults to CudaGraphConfig(), 'use "
            "CUDA graphs for decoding ... enabled for batches that consist of decoding "
            "requests *only*' (graphs captured up to batch 128 by default; hwsim replays every "
            "decode-only iteration). The TensorRT backend before 1.0 is not covered",
        ),
        "cuda_graph_max_batch": Default(
            128,
            "TensorRT-LLM llm_args.py BaseCudaGraphConfig: 'If neither is provided, a default "
            "max_batch_size of 128 is used'",
        ),
        "custom_all_reduce": Default(
            False,
            "not modelled: TensorRT-LLM's own all-reduce kernels (AllReduceStrategy AUTO) have "
            "no published timing found; NCCL's model",
        ),
        "prefill_first": Default(
            False,
            "TensorRT-LLM docs (Paged Attention, IFB, and Request Scheduling): 'sequences in "
            "the context phase can be processed together with sequences in the generation "
            "phase' (in-flight batching)",
        ),
    },
}


class RuntimeSpec(BaseModel):
    """The engine runtime of a deployment (module docstring). Unset fields take the engine's
    default (:data:`ENGINE_DEFAULTS`); ``RuntimeSpec()`` is the ``generic`` engine, hwsim's
    kernel-only model."""

    model_config = STRICT
    engine: Engine = Field(default="generic", description="vllm|sglang|trtllm|generic")
    num_scheduler_steps: int = Field(
        default=1, ge=1, description="decode steps per scheduling decision (vLLM multi-step)"
    )
    iteration_overhead_s: float = Field(
        default=0.0, ge=0, description="host seconds per scheduling decision"
    )
    request_overhead_s: float = Field(
        default=0.0, ge=0, description="seconds added to every request's TTFT (HTTP, tokenizer)"
    )
    cuda_graphs: bool = Field(
        default=False, description="decode-only iterations skip the per-kernel launch overhead"
    )
    cuda_graph_max_batch: int = Field(
        default=2**31 - 1, ge=1, description="largest decode batch replayed from a CUDA graph"
    )
    custom_all_reduce: bool = Field(
        default=False, description="small TP all-reduces run vLLM's custom kernel, not NCCL"
    )
    prefill_first: bool = Field(
        default=False, description="iterations with prefill work run no decode (SGLang)"
    )

    @model_validator(mode="before")
    @classmethod
    def _engine_defaults(cls, data: Any) -> Any:
        """Fill the fields not given from the engine's defaults."""
        if not isinstance(data, dict):
            return data
        engine = data.get("engine", "generic")
        defaults = ENGINE_DEFAULTS.get(engine) if isinstance(engine, str) else None
        if defaults is None:  # the Literal reports the bad engine with what is allowed
            return data
        return {**{k: d.value for k, d in defaults.items()}, **data}

    @property
    def is_kernel_only(self) -> bool:
        """True when the runtime changes no phase cost (the generic engine's values;
        ``prefill_first`` is the simulator's scheduling, not a cost)."""
        return (
            self.num_scheduler_steps == 1
            and self.iteration_overhead_s == 0.0
            and self.request_overhead_s == 0.0
            and not self.cuda_graphs
            and not self.custom_all_reduce
        )

    def describe(self) -> str:
        """One line for a report: the engine and every field's value with its source (or
        'given' where it differs from the engine's default)."""
        if self.engine == "generic" and all(self.source_of(n) != "given" for n in DEFAULTED):
            return (
                "Engine runtime: generic, hwsim's kernel-only model (no host overhead per "
                "iteration or request, no CUDA graphs, NCCL all-reduces, decodes and prefill "
                "chunks in one iteration); set deployment.runtime.engine to vllm, sglang or "
                "trtllm for that engine's sourced defaults."
            )
        fields = "; ".join(
            f"{name}={getattr(self, name)} ({self.source_of(name)})" for name in DEFAULTED
        )
        return f"Engine runtime: {self.engine}: {fields}."

    def source_of(self, name: str) -> str:
        """Where the value of ``name`` comes from: the engine default's source, or 'given'
        where the value differs from the engine's default."""
        default = ENGINE_DEFAULTS[self.engine][name]
        if getattr(self, name) != default.value:
            return "given"
        return default.source
