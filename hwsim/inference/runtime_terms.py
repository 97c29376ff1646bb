"""What a deployment's engine runtime (``DeploymentSpec.runtime``,
:mod:`hwsim.profiles.runtime`) adds to kernel-only times, shared by ``hwsim.estimate``, the
analytic planner and the step model: CUDA graphs replay a decode step without its per-kernel
launches; the host's per-iteration overhead h is paid once per block of k scheduler steps;
without chunked prefill a prefill pays h too; k > 1 adds a wait for the block boundary to the
TTFT (about k decode steps / 2); every request pays the request overhead once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hwsim.inference.deployment import Deployment
from hwsim.inference.engine import PhaseCost, make_forward, shifted_band
from hwsim.model.graph import forward_ops
from hwsim.perf.corrections import side_factors


def launch_overhead_s(hw, ops) -> float:
    """The per-kernel launch overhead ``time_op`` adds to ``ops`` (kernels x the efficiency
    curve's ``launch_overhead_s``, with a calibrated profile's overhead correction), summed
    over all their executions: what a CUDA-graph replay of them does not pay."""
    total = 0.0
    for op in ops:
        if op.op_class == "communication":
            continue
        launch = hw.efficiency.for_class(op.op_class).launch_overhead_s
        if launch:
            total += float(np.sum(op.count * op.kernels * launch * side_factors(hw, op)[2]))
    return total


@dataclass(frozen=True)
class RuntimeTerms:
    """What the deployment's engine runtime adds to the analytic times (module docstring)."""

    graph_saving_s: float  # per decode step, with CUDA graphs
    decode_overhead_s: float  # per decode step: h / k
    prefill_overhead_s: float  # per prefill: h without chunked prefill, else 0
    steps: int  # k
    chunked: bool
    request_overhead_s: float
    graph_max_batch: int  # decode batches above it run eagerly (no saving)

    def graph_saving_at_s(self, batch):
        """What a graph replay saves on a decode step of ``batch`` sequences: the launches,
        up to the largest captured batch; nothing above it."""
        if not self.graph_saving_s:
            return 0.0
        return np.where(np.asarray(batch) <= self.graph_max_batch, self.graph_saving_s, 0.0)

    def decode_step_s(self, kernels_s, batch):
        """A decode step of ``batch`` sequences as the engine runs it: its kernels (less the
        launches a graph replay saves) plus its share of the host overhead."""
        return kernels_s - self.graph_saving_at_s(batch) + self.decode_overhead_s

    def ttft_extra_s(self, t_dec):
        """Added to the TTFT: the mean wait for a block boundary (k > 1) and the per-request
        overhead."""
        extra = self.request_overhead_s
        if self.steps > 1:
            extra = extra + self.steps * t_dec / 2
        return extra


def runtime_terms(dep: Deployment) -> RuntimeTerms:
    rt = dep.spec.runtime
    saving = 0.0
    if rt.cuda_graphs:
        ops = forward_ops(make_forward(dep, "decode", 1.0, 1.0, 1.0), dep.pp)
        saving = launch_overhead_s(dep.hardware, ops)
    h, k, chunked = rt.iteration_overhead_s, rt.num_scheduler_steps, dep.spec.chunked_prefill
    return RuntimeTerms(
        saving, h / k, 0.0 if chunked else h, k, chunked, rt.request_overhead_s,
        rt.cuda_graph_max_batch,
    )  # fmt: skip


def with_runtime(
    dep: Deployment, pre: PhaseCost, dec: PhaseCost, batch
) -> tuple[PhaseCost, PhaseCost]:
    """``estimate``'s prefill and decode (of ``batch`` sequences) as the engine runs them:
    each decode step less the launches a graph replay saves plus its share of the host
    overhead; the prefill plus the request overhead (and the host overhead without chunked
    prefill). A batch admitted together waits for no block boundary, so k adds nothing to
    its TTFT."""
    rt = runtime_terms(dep)
    shift_pre = rt.request_overhead_s + rt.prefill_overhead_s
    shift_dec = rt.decode_overhead_s - rt.graph_saving_at_s(batch)
    return _shifted(pre, shift_pre), _shifted(dec, shift_dec)


def _shifted(cost: PhaseCost, seconds) -> PhaseCost:
    if np.ndim(seconds) == 0 and seconds == 0.0:
        return cost
    return replace(cost, time_s=cost.time_s + seconds, band=shifted_band(cost, seconds))
