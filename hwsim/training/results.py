"""The typed result of :func:`hwsim.training.train` (pydantic; ``to_dict`` is its JSON)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrainingMemory(_Frozen):
    """Bytes per GPU on the fullest pipeline stage (``stage``)."""

    params_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    total_bytes: float
    capacity_bytes: float  # the device's memory
    usable_bytes: float  # capacity x memory_fraction
    fits: bool
    stage: int
    max_micro_batch: int  # largest micro-batch that fits (0: not even 1)
    max_seq_len: int  # longest sequence that fits at this micro-batch (0: none)


class TrainingStep(_Frozen):
    """One optimizer step on the slowest stage (seconds)."""

    time_s: float
    compute_s: float
    communication_s: float
    bubble_s: float
    micro_batches: int
    forward_s: float  # per micro-batch
    backward_s: float
    recompute_s: float
    tp_comm_s: float
    pp_comm_s: float
    moe_comm_s: float
    cp_comm_s: float  # per micro-batch, exposed (context-parallel K/V ring)
    dp_comm_s: float
    dp_exposed_s: float
    optimizer_s: float
    floor_s: float  # speed of light of the compute (peak rates)
    priced_by: list[str]


class TrainingThroughput(_Frozen):
    tokens_per_s: float
    tokens_per_s_per_gpu: float
    model_flops_per_token: float
    hardware_flops_per_token: float
    model_tflops_per_gpu: float
    hardware_tflops_per_gpu: float
    mfu: float
    hfu: float
    peak_tflops_per_gpu: float


class TrainingRun(_Frozen):
    total_tokens: float | None
    steps: float | None
    time_s: float | None
    gpu_hours: float | None
    cost_usd: float | None  # None without a total or a price
    price_per_gpu_hour_usd: float | None


class TrainingResult(_Frozen):
    model: str
    hardware: str
    gpus: int
    layout: dict[str, Any]  # the TrainingSpec by its short names, dp resolved
    params_total: int
    memory: TrainingMemory
    step: TrainingStep
    throughput: TrainingThroughput
    run: TrainingRun

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def to_records(self) -> list[dict[str, Any]]:
        from hwsim.tables import flatten, plain

        row = flatten(self.model_dump(exclude={"step": {"priced_by"}}))
        return [{k: plain(v) for k, v in row.items()}]
