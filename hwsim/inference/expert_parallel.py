"""Expert parallelism (EP) for mixture-of-experts models, priced on one GPU of an EP group.

Layout rule (vLLM's ``--enable-expert-parallel``: the expert group spans the TP x DP ranks;
DeepSeek-V3's inference layout, arXiv 2412.19437 section 3.4, is the tp = 1 case): an EP
group of ``ep`` GPUs runs attention as ``ep / tp`` data-parallel replicas of ``tp``
tensor-parallel ranks each (``tp`` from the deployment; ``ep`` a multiple of it), and the
routed experts are not tensor-sharded: each GPU holds ``n_experts / ep`` whole experts
(``ep`` divides the expert count). The router, shared experts, attention, norms, embedding and
LM head stay as the deployment's tp shards them (replicated across the attention replicas),
and the FFN's TP all-reduce of each MoE layer is kept (it sums the TP-sharded shared experts
and restores the replicated hidden state; an engine that all-gathers instead pays less).

Per MoE layer, each GPU dispatches its slice of the replica's tokens (``batch x new_tokens /
tp``, the replica's distinct tokens split over its TP ranks) to the experts their router picked
and gets the results back: an all-to-all each way with ``top_k x d_model x activation bytes``
per token per direction (the router's top-k copies of the hidden state,
:func:`a2a_bytes_per_token`).

* **All-to-all cost** (:func:`all_to_all_s`): NCCL builds all-to-all from one ncclSend /
  ncclRecv pair per peer fused in a group (NCCL user guide, "Point-to-point communication":
  all-to-all), every pair progressing at once, so a GPU's time is its egress: the (ep-1)/ep of
  its buffer bound for other GPUs over its link, plus one point-to-point latency. Both are
  hwsim's point-to-point model (:mod:`hwsim.perf.collectives`: NCCL's ring step latency and
  bus bandwidth per protocol, fastest wins; alpha-beta on profiles without an NCCL block). A
  group wider than a node sends the (g-1)/ep of its buffer for its node's other g - 1 GPUs
  over NVLink and the (ep-g)/ep for other nodes through the NIC at the same time: the slower
  of the two. Context: DeepEP (deepseek-ai/DeepEP README, "Performance") measures its normal
  kernels at 153-158 GB/s over NVLink (EP 8, H800, ~160 GB/s NVLink) and 43-58 GB/s over RDMA
  (EP 16-64, ~50 GB/s CX7 NIC), i.e. close to the link rate this model prices with.
* **Load imbalance** ``imbalance`` (>= 1, at most ``ep``): the busiest GPU receives that many
  times the average routed tokens; its experts' FLOPs, activations and the all-to-all bytes
  it receives and returns scale with it, and the step waits for it. 1.0 is uniform routing.
* **Expert op per GPU**: routed token-slots ``imbalance x batch x new_tokens x top_k / tp``
  through whole experts (2 x slots x expert params FLOPs); weights read: the local experts the
  group's tokens touch, ``n_experts / ep x (1 - (1 - top_k / n_experts)^T)`` for T tokens in
  the group (the occupancy argument of :mod:`hwsim.model.ffn`, uniform routing).
* **Memory per GPU**: the deployment's weights per GPU with the routed experts moved from
  ``/ tp`` to ``/ ep``, plus the KV / state of ``batch`` sequences at ``context``.

``ep = 1`` is plain tensor parallelism: the engine's op list unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from hwsim.errors import InfeasibleError
from hwsim.inference.deployment import Deployment, make_deployment
from hwsim.inference.engine import PhaseCost, make_forward, price_ops, shifted_band
from hwsim.inference.memory import cache_bytes_per_sequence_per_gpu, weight_bytes_per_gpu
from hwsim.model.ffn import dense_ffn_params, expected_distinct_experts, expert_op, moe_of
from hwsim.model.forward import Forward
from hwsim.model.graph import forward_ops
from hwsim.model.layers import layer_groups
from hwsim.model.ops import Op
from hwsim.perf.collectives import collective_model
from hwsim.perf.ladder import price_op
from hwsim.perf.roofline import OpTime
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.model import ModelProfile

A2A_SOURCE = (
    "NCCL user guide, Point-to-point communication (all-to-all = grouped ncclSend/ncclRecv to "
    "every peer); DeepEP README Performance table (deepseek-ai/DeepEP)"
)


# -- the all-to-all -------------------------------------------------------------------------


def all_to_all_s(hw: HardwareProfile, ranks: int, nbytes: float) -> float:
    """Seconds of one all-to-all over ``ranks`` GPUs of ``hw`` where every GPU's send buffer
    holds ``nbytes`` spread evenly over all ranks (itself included): pairwise exchange, each
    GPU's egress over its link (module docstring); 0 for one rank."""
    if ranks <= 1 or nbytes <= 0:
        return 0.0
    per_node = int(hw.interconnect.devices_per_node.value)
    if ranks <= per_node or hw.interconnect.inter_node is None:
        return collective_model(hw, "p2p", ranks).seconds(nbytes * (ranks - 1) / ranks)
    intra = collective_model(hw, "p2p", per_node).seconds(nbytes * (per_node - 1) / ranks)
    inter = collective_model(hw, "p2p", ranks).seconds(nbytes * (ranks - per_node) / ranks)
    return max(intra, inter)


def a2a_bytes_per_token(model: ModelProfile, act_bytes: float) -> float:
    """Bytes one token sends per direction (dispatch, or combine) per MoE layer: its top-k
    copies of the hidden state."""
    return moe_of(model).top_k * model.d_model * act_bytes


# -- the result -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EPResult:
    """One forward pass (a decode step or a prefill) on the busiest GPU of an EP group."""

    model: str
    hardware: str
    phase: str
    ep: int
    attention_tp: int
    attention_replicas: int  # ep / tp data-parallel attention replicas
    batch: int  # sequences per attention replica
    context: int
    imbalance: float
    experts_per_gpu: int
    moe_layers: int
    expert_weight_bytes_per_gpu: float
    weight_bytes_per_gpu: float
    cache_bytes_per_gpu: float
    memory_per_gpu_bytes: float
    usable_bytes: float
    fits: bool
    a2a_bytes_per_token: float  # per direction per MoE layer
    a2a_bytes_per_gpu: float  # the busiest GPU's buffer, per direction per MoE layer
    a2a_s_per_layer: float  # dispatch + combine, one MoE layer
    a2a_s: float  # all MoE layers
    expert_s: float  # the routed experts' matmuls, all MoE layers
    time_s: float  # the whole forward on this GPU
    tokens_per_s: float  # new tokens per second of the whole EP group
    op_times: tuple[OpTime, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("op_times")
        return out


# -- pricing --------------------------------------------------------------------------------


def _check(model: ModelProfile, dep: Deployment, ep: Any, imbalance: Any, phase: str) -> int:
    if isinstance(ep, bool) or not float(ep).is_integer() or ep < 1:
        raise InfeasibleError(f"ep must be a whole number >= 1, got {ep!r}")
    ep = int(ep)
    if phase not in ("prefill", "decode"):
        raise InfeasibleError(f"phase must be 'prefill' or 'decode', got {phase!r}")
    try:
        imb = float(imbalance)
    except (TypeError, ValueError):
        raise InfeasibleError(f"imbalance must be a number >= 1, got {imbalance!r}") from None
    if not math.isfinite(imb) or imb < 1.0:
        raise InfeasibleError(
            f"imbalance (busiest GPU's tokens / the average) must be >= 1, got {imbalance!r}"
        )
    if imb > ep:
        raise InfeasibleError(
            f"imbalance {imb} exceeds ep = {ep}: the busiest of {ep} GPUs holds at most all "
            "the routed tokens"
        )
    if ep == 1:
        return ep
    if model.ffn.moe is None or model.ffn.type == "none":
        raise InfeasibleError(f"{model.id} has no mixture-of-experts layers: ep must be 1")
    n = model.ffn.moe.n_experts
    if n % ep:
        allowed = ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)
        raise InfeasibleError(
            f"ep={ep} does not divide the {n} experts of {model.id}; allowed ep: {allowed}"
        )
    if ep % dep.tp:
        raise InfeasibleError(
            f"ep={ep} is not a multiple of tp={dep.tp}: the EP group is tp x attention-DP ranks"
        )
    return ep


def _moe_layers(model: ModelProfile) -> int:
    return sum(count for _mixer, is_moe, count in layer_groups(model) if is_moe)


def _routed_expert_params(model: ModelProfile) -> float:
    """Weights of one MoE layer's routed experts (no router, no shared experts)."""
    moe = moe_of(model)
    return moe.n_experts * dense_ffn_params(
        model.d_model, moe.expert_intermediate_size, model.ffn, model.linear_bias
    )


def _ep_expert_op(fw: Forward, op: Op, ep: int, replicas: int, imbalance: float) -> Op:
    """The routed experts of one MoE layer on the busiest GPU of the EP group."""
    model, moe = fw.model, moe_of(fw.model)
    expert_params = model.ffn.n_matrices * model.d_model * moe.expert_intermediate_size
    slots = imbalance * fw.tokens * moe.top_k / fw.tp  # routed token copies on this GPU
    group_tokens = replicas * fw.tokens  # distinct tokens in the EP group
    local = moe.n_experts // ep
    touched = expected_distinct_experts(imbalance * group_tokens, moe.n_experts, moe.top_k) / ep
    touched = np.minimum(touched, local)
    experts = expert_op(fw, slots, touched, expert_params, moe.expert_intermediate_size, local)
    return replace(experts, count=op.count, meta={**experts.meta, "ep": ep})


def _comm_time(name: str, nbytes, seconds, count: int, ep: int) -> OpTime:
    op = Op(name=name, op_class="communication", comm_bytes=nbytes, ranks=ep, count=count)
    zero = np.float64(0.0)
    return OpTime(op, np.asarray(seconds, dtype=float), zero, zero, np.int8(2))


def ep_weight_bytes_per_gpu(dep: Deployment, ep: int) -> tuple[float, float]:
    """(all weights, routed-expert weights) per GPU with the routed experts over ``ep`` GPUs
    (whole experts, not tensor-sharded) and everything else as ``dep`` shards it."""
    m = dep.model
    is_moe = m.ffn.moe is not None and m.ffn.type != "none" and _moe_layers(m) > 0
    if not is_moe:
        return weight_bytes_per_gpu(dep), 0.0
    routed = _routed_expert_params(m) * _moe_layers(m) * dep.stage_layer_fraction
    wbytes = dep.weight.bytes_per_element
    expert_bytes = routed / (ep if ep > 1 else dep.tp) * wbytes
    return weight_bytes_per_gpu(dep) - routed / dep.tp * wbytes + expert_bytes, expert_bytes


def ep_phase_cost(
    dep: Deployment, ep: int, phase: str, batch, context, imbalance: float = 1.0
) -> PhaseCost:
    """One forward on the busiest GPU of an EP group, priced like
    :func:`expert_parallel_step` but for an array of ``batch`` values (sequences per attention
    replica) at once, as a :class:`~hwsim.inference.engine.PhaseCost` (what the planner
    needs): the routed experts over ``ep`` GPUs plus the dispatch and combine all-to-alls."""
    m = dep.model
    ep = _check(m, dep, ep, imbalance, phase)
    new = 1.0 if phase == "decode" else context
    fw = make_forward(dep, phase, batch, new, context)
    ops = forward_ops(fw, dep.pp)
    layers = _moe_layers(m) if m.ffn.moe is not None and m.ffn.type != "none" else 0
    if ep == 1 or not layers:
        return price_ops(dep, ops, phase)
    replicas = ep // dep.tp
    ops = [
        _ep_expert_op(fw, op, ep, replicas, imbalance) if op.name == "moe.experts" else op
        for op in ops
    ]
    cost = price_ops(dep, ops, phase)
    per_token = a2a_bytes_per_token(m, dep.act.bytes_per_element)
    shape = np.broadcast_shapes(np.shape(batch), np.shape(new))
    buffer = imbalance * np.broadcast_to(np.asarray(batch, float) * new, shape) / dep.tp * per_token
    one_way = np.vectorize(lambda x: all_to_all_s(dep.hardware, ep, float(x)))(buffer)
    comm = [_comm_time(name, buffer, one_way, layers, ep) for name in ("ep.dispatch", "ep.combine")]
    added = 2.0 * one_way * layers
    compute_s, memory_s, comm_s = cost.time_by_bound_s
    return PhaseCost(
        time_s=cost.time_s + added,
        flops=cost.flops,
        hbm_bytes=cost.hbm_bytes,
        time_by_bound_s=(compute_s, memory_s, comm_s + added),
        op_times=tuple(cost.op_times) + tuple(comm),
        band=shifted_band(cost, added),
    )


def expert_parallel_step(
    model,
    hardware,
    ep: int,
    batch: int = 1,
    context: int = 2048,
    phase: Literal["prefill", "decode"] = "decode",
    imbalance: float = 1.0,
    *,
    measurements=None,
    **deployment: Any,
) -> EPResult:
    """Price one forward pass of an MoE ``model`` with its experts over ``ep`` GPUs.

    batch: sequences per attention replica (each of the ep / tp replicas runs its own batch);
    context: for decode the keys the new token sees (itself included), for prefill the prompt
    length (every token new). imbalance: the busiest GPU's routed tokens over the average.
    deployment: DeploymentSpec fields (``tp`` is the attention TP degree inside the group).
    """
    if isinstance(batch, bool) or not float(batch).is_integer() or batch < 1:
        raise InfeasibleError(f"batch must be a whole number >= 1, got {batch!r}")
    if isinstance(context, bool) or not float(context).is_integer() or context < 1:
        raise InfeasibleError(f"context must be a whole number >= 1, got {context!r}")
    extra = {} if measurements is None else {"measurements": measurements}
    dep = make_deployment(model, hardware, **extra, **deployment)
    m = dep.model
    ep = _check(m, dep, ep, imbalance, phase)
    imb = float(imbalance)
    b, c = int(batch), int(context)
    replicas = ep // dep.tp if ep > 1 else 1
    new = 1 if phase == "decode" else c
    fw = make_forward(dep, phase, b, new, c)
    ops = forward_ops(fw, dep.pp)
    is_moe = m.ffn.moe is not None and m.ffn.type != "none" and _moe_layers(m) > 0
    if ep > 1:
        ops = [
            _ep_expert_op(fw, op, ep, replicas, imb) if op.name == "moe.experts" else op
            for op in ops
        ]
    times = [price_op(dep.hardware, op, dep.measurements) for op in ops]

    layers = _moe_layers(m) if is_moe else 0
    per_token = a2a_bytes_per_token(m, dep.act.bytes_per_element) if is_moe else 0.0
    buffer = imb * b * new / dep.tp * per_token if ep > 1 else 0.0
    one_way = all_to_all_s(dep.hardware, ep, buffer)
    if ep > 1 and layers:
        times.append(_comm_time("ep.dispatch", buffer, one_way, layers, ep))
        times.append(_comm_time("ep.combine", buffer, one_way, layers, ep))

    total = sum(float(np.sum(t.total_s)) for t in times)
    expert_s = sum(float(np.sum(t.total_s)) for t in times if t.op.name == "moe.experts")

    shard = ep if ep > 1 else dep.tp
    weights, expert_bytes = ep_weight_bytes_per_gpu(dep, ep)
    cache = float(np.sum(cache_bytes_per_sequence_per_gpu(dep, c))) * b
    memory = weights + cache
    experts = moe_of(m).n_experts if is_moe else 0
    return EPResult(
        model=m.id,
        hardware=dep.hardware.id,
        phase=phase,
        ep=ep,
        attention_tp=dep.tp,
        attention_replicas=replicas,
        batch=b,
        context=c,
        imbalance=imb,
        experts_per_gpu=experts // shard if ep > 1 else experts,
        moe_layers=layers,
        expert_weight_bytes_per_gpu=expert_bytes,
        weight_bytes_per_gpu=weights,
        cache_bytes_per_gpu=cache,
        memory_per_gpu_bytes=memory,
        usable_bytes=dep.usable_bytes,
        fits=memory <= dep.usable_bytes,
        a2a_bytes_per_token=per_token,
        a2a_bytes_per_gpu=buffer,
        a2a_s_per_layer=2.0 * one_way,
        a2a_s=2.0 * one_way * layers,
        expert_s=expert_s,
        time_s=total,
        tokens_per_s=replicas * b * new / total,
        op_times=tuple(times),
    )
