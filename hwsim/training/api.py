"""``hwsim.training.train``: memory, step time, throughput and cost of one training layout.

from hwsim.training import train
r = train(model="gpt-3-175b", hardware="a100-80gb-sxm", gpus=64, tp=8, pp=8,
          global_batch=64, seq_len=2048, recompute="selective", sequence_parallel=True)
r.memory.fits, r.step.time_s, r.throughput.mfu
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim.errors import HwsimError
from hwsim.model.load import load_model
from hwsim.model.params import count_params
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.loader import load_hardware
from hwsim.profiles.model import ModelProfile
from hwsim.training.layout import Layout, resolve_layout
from hwsim.training.memory import peak_stage, stage_memory
from hwsim.training.results import (
    TrainingMemory,
    TrainingResult,
    TrainingRun,
    TrainingStep,
    TrainingThroughput,
)
from hwsim.training.spec import TrainingSpec
from hwsim.training.step import (
    ForwardProfile,
    flops_per_token,
    mfu_dtype,
    step_forward_profile,
    step_time,
)

MAX_SEQ_SEARCH = 1 << 24


def train(
    model: str | Path | ModelProfile,
    hardware: str | Path | HardwareProfile,
    gpus: int | None = None,
    spec: TrainingSpec | None = None,
    *,
    total_tokens: float | None = None,
    **settings: Any,
) -> TrainingResult:
    """Estimate one training layout. ``settings``: :class:`TrainingSpec` fields by their
    short names (``tp=1, pp=1, dp=None, ep=1, micro_batch=1, global_batch=None,
    seq_len=2048, recompute="none", zero=0, sequence_parallel=False, precision="bf16",
    attention="flash", dropout=True, interleave=1, dp_overlap=0.0, memory_fraction=0.9``).
    ``gpus`` defaults to tp x cp x pp x dp. Impossible layouts and model families not covered
    raise :class:`~hwsim.errors.HwsimError` subclasses naming what is wrong."""
    spec = TrainingSpec.from_settings(spec, **settings)
    m, hw = load_model(model), load_hardware(hardware)
    layout = resolve_layout(m, gpus, spec)
    return evaluate(m, hw, layout, total_tokens=total_tokens)


def evaluate(
    m: ModelProfile,
    hw: HardwareProfile,
    layout: Layout,
    *,
    total_tokens: float | None = None,
    profile: ForwardProfile | None = None,
) -> TrainingResult:
    spec = layout.spec
    memory = memory_of(m, hw, layout)
    st = step_time(m, hw, layout, profile)
    tokens_step = layout.global_batch * spec.seq_len
    tokens_s = tokens_step / st.time_s
    per_gpu = tokens_s / layout.gpus
    fl = flops_per_token(m, spec)
    peak = hw.matrix_peak_flops_per_s(mfu_dtype(hw, spec.precision))
    throughput = TrainingThroughput(
        tokens_per_s=tokens_s,
        tokens_per_s_per_gpu=per_gpu,
        model_flops_per_token=fl.model,
        hardware_flops_per_token=fl.hardware,
        model_tflops_per_gpu=fl.model * per_gpu / 1e12,
        hardware_tflops_per_gpu=fl.hardware * per_gpu / 1e12,
        mfu=fl.model * per_gpu / peak,
        hfu=fl.hardware * per_gpu / peak,
        peak_tflops_per_gpu=peak / 1e12,
    )
    price = hw.price_per_hour_usd.value if hw.price_per_hour_usd is not None else None
    steps = run_s = hours = cost = None
    if total_tokens is not None:
        if total_tokens <= 0:
            raise HwsimError(f"total_tokens={total_tokens} must be positive")
        steps = total_tokens / tokens_step
        run_s = steps * st.time_s
        hours = run_s / 3600.0 * layout.gpus
        cost = None if price is None else hours * price
    run = TrainingRun(
        total_tokens=total_tokens,
        steps=steps,
        time_s=run_s,
        gpu_hours=hours,
        cost_usd=cost,
        price_per_gpu_hour_usd=price,
    )
    step = TrainingStep(
        time_s=st.time_s,
        compute_s=st.compute_s,
        communication_s=st.communication_s,
        bubble_s=st.bubble_s,
        micro_batches=st.micro_batches,
        forward_s=st.forward_s,
        backward_s=st.backward_s,
        recompute_s=st.recompute_s,
        tp_comm_s=st.tp_comm_s,
        pp_comm_s=st.pp_comm_s,
        moe_comm_s=st.moe_comm_s,
        cp_comm_s=st.cp_comm_s,
        dp_comm_s=st.dp_comm_s,
        dp_exposed_s=st.dp_exposed_s,
        optimizer_s=st.optimizer_s,
        floor_s=st.floor_s,
        priced_by=list(st.rungs),
    )
    shown = spec.model_dump(by_alias=True)
    shown["dp"] = layout.data_parallel
    shown["global_batch"] = layout.global_batch
    return TrainingResult(
        model=m.id,
        hardware=hw.id,
        gpus=layout.gpus,
        layout=shown,
        params_total=count_params(m).total,
        memory=memory,
        step=step,
        throughput=throughput,
        run=run,
    )


def memory_of(m: ModelProfile, hw: HardwareProfile, layout: Layout) -> TrainingMemory:
    spec = layout.spec
    usable = hw.capacity_bytes * spec.memory_fraction
    dp, mb = layout.data_parallel, layout.micro_batches

    def total(b: int, s: int, micro_batches: int) -> float:
        return peak_stage(stage_memory(m, spec, dp, micro_batches, b, s)).total_bytes

    peak = peak_stage(stage_memory(m, spec, dp, mb, spec.micro_batch, spec.seq_len))
    # the largest micro-batch / sequence that fit, the pipeline kept full (m >= pp)
    steady = max(mb, spec.pp)
    max_b = _largest(lambda b: total(b, spec.seq_len, steady) <= usable, 1 << 20)
    max_s = _largest(lambda s: total(spec.micro_batch, s, steady) <= usable, MAX_SEQ_SEARCH)
    return TrainingMemory(
        params_bytes=peak.params_bytes,
        grads_bytes=peak.grads_bytes,
        optimizer_bytes=peak.optimizer_bytes,
        activations_bytes=peak.activations_bytes,
        total_bytes=peak.total_bytes,
        capacity_bytes=hw.capacity_bytes,
        usable_bytes=usable,
        fits=peak.total_bytes <= usable,
        stage=peak.stage,
        max_micro_batch=max_b,
        max_seq_len=max_s,
    )


def _largest(fits, limit: int) -> int:
    """The largest n in [1, limit] with fits(n) (fits monotone decreasing); 0 if none."""
    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


# -- search -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One layout of a search: its result, or why it was pruned."""

    settings: dict[str, Any]
    result: TrainingResult | None
    reason: str | None


RECOMPUTES = ("none", "selective", "full")


def search(
    model: str | Path | ModelProfile,
    hardware: str | Path | HardwareProfile,
    gpus: int,
    spec: TrainingSpec | None = None,
    *,
    micro_batches: tuple[int, ...] = (1, 2, 4, 8),
    zeros: tuple[int, ...] = (0, 1, 2, 3),
    **settings: Any,
) -> tuple[list[Candidate], list[Candidate]]:
    """Every layout of ``gpus`` (tp a power of two within a node dividing the heads, pp
    dividing the layers' count of GPUs, each recompute, ZeRO stage and micro-batch), priced
    where it fits: (fitting, ranked by step time; pruned, each with its reason). The other
    settings (``global_batch``, ``seq_len``, ``cp``, ``precision``, ...) stay as given; sequence
    parallelism is on wherever tp > 1."""
    base = TrainingSpec.from_settings(spec, **settings)
    m, hw = load_model(model), load_hardware(hardware)
    per_node = int(hw.interconnect.devices_per_node.value)
    global_batch = base.global_batch
    if global_batch is None:
        raise HwsimError("search needs global_batch (sequences per optimizer step)")
    fitting: list[Candidate] = []
    pruned: list[Candidate] = []
    profiles: dict[tuple[int, int, bool], ForwardProfile] = {}
    cp = base.cp  # the context-parallel degree stays as given
    tps = [t for t in (1, 2, 4, 8, 16) if t <= per_node and gpus % (t * cp) == 0]
    for tp in tps:
        for pp in (p for p in range(1, m.n_layers + 1) if (gpus // (tp * cp)) % p == 0):
            if gpus % (tp * cp * pp):
                continue
            dp = gpus // (tp * cp * pp)
            for b, rec, zero in itertools.product(micro_batches, RECOMPUTES, zeros):
                if zero and dp == 1:
                    continue  # ZeRO shards over DP: nothing to shard
                chosen = {
                    "micro_batch": b,
                    "recompute": rec,
                    "zero": zero,
                    "sequence_parallel": tp > 1,
                }
                chosen.update(zip(("tp", "pp", "dp"), (tp, pp, dp)))
                try:
                    layout = resolve_layout(m, gpus, base.replace(**chosen))
                except HwsimError as exc:
                    pruned.append(Candidate(chosen, None, str(exc)))
                    continue
                mem = memory_of(m, hw, layout)
                if not mem.fits:
                    why = (
                        f"needs {mem.total_bytes / 1e9:.1f} GB per GPU > "
                        f"{mem.usable_bytes / 1e9:.1f} GB usable"
                    )
                    pruned.append(Candidate(chosen, None, why))
                    continue
                key = (tp, b, layout.spec.sequence_parallel)
                if key not in profiles:
                    profiles[key] = step_forward_profile(m, hw, layout.spec, b)
                fitting.append(
                    Candidate(chosen, evaluate(m, hw, layout, profile=profiles[key]), None)
                )
    fitting.sort(key=lambda c: c.result.step.time_s if c.result else float("inf"))
    return fitting, pruned
