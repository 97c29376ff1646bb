"""Time of one training step on the slowest pipeline stage, priced op by op.

Forward: the ops of a prefill forward of ``seq_len`` tokens for ``micro_batch`` sequences on
one GPU of the TP group (:func:`hwsim.model.graph.forward_ops`, the op list inference prices),
each op priced by the same ladder (:func:`hwsim.perf.ladder.price_op`), with two training
changes: the LM head computes logits for every token (not the last one only) and no KV cache
is written (``attn.kv_append`` dropped). Backward: twice the forward's op times (the
activation gradient and the weight gradient: 2x the FLOPs, Narayanan et al. 2021 section
3.3.2). Recomputation adds a forward of the layers (full) or the attention core's forward
(selective, Korthikanti et al. 2022 section 5).

Communication (:mod:`hwsim.training.comm`, NCCL's cost model on the links each group spans):

* TP: per layer the forward's all-reduces (two: attention and MLP outputs) and as many in
  the backward (and again in a full recompute); with sequence parallelism each becomes a
  reduce-scatter plus an all-gather of the same tensor (Korthikanti section 4.2.2). Not
  overlapped with compute (on the critical path in Megatron).
* MoE: a dispatch and a combine all-to-all per MoE layer forward and backward, tokens x top_k
  x h each over the EP group, priced as an all-gather of that size (NCCL's model has no
  all-to-all; same ring bytes per link, (p-1)/p of the payload).
* PP: per micro-batch one activation send forward and one gradient send backward of s x b x h
  (/ tp with sequence parallelism) per virtual stage boundary.
* CP (context parallelism, Megatron-Core's ring attention): per layer cp - 1 sends of the
  rank's K/V block forward and twice the bytes backward, overlapped with the attention core
  (:func:`ring_attention_s`); every op runs at seq_len / cp tokens per sequence, the
  attention core at 1/cp of the whole sequence's (:func:`step_forward_profile`).
* DP, once per step: ZeRO 0 all-reduces the gradients; ZeRO 1 and 2 reduce-scatter the
  gradients and all-gather the updated weights (the same bytes); ZeRO 3 all-gathers the
  weights for the forward and again for the backward and reduce-scatters the gradients (1.5x,
  ZeRO paper section 7; weights gathered once per step, not per micro-batch: assumed).
  The group is dp x cp ranks (CP ranks reduce gradients with DP). ``dp_overlap`` is the share
  hidden under compute (default 0: none hidden, Korthikanti et al.
  report no overlap in their Table 5 runs).

Pipeline (Narayanan et al. 2021, section 2.2): with m micro-batches per step and 1F1B the
bubble is (pp - 1) micro-batch times, (pp - 1) / m of the ideal time; an interleaved
schedule with v virtual stages divides it by v. Optimizer: one elementwise pass over the
local shard of the states (Adam: read gradient, master, m, v; write master, m, v, weight).

Model FLOPs per token (PaLM, Chowdhery et al. 2022, Appendix B): 6N + 12 L H Q T, N the
parameters that multiply (layers, active experts only, and the LM head; not the embedding
lookup), L layers, H heads, Q head size, T sequence length; Narayanan et al.'s
72 B s l h^2 (1 + s/6h + V/(12 l h)) per iteration is the same count for GPT shapes.
Hardware FLOPs add what recomputation executes again: a forward of the layers, 2N_layers +
4 L H Q T (full), or the attention core, 4 L H Q T (selective, Korthikanti et al. eq. 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hwsim.dtypes import activation_dtype, weight_dtype
from hwsim.errors import HwsimError
from hwsim.model.forward import Forward
from hwsim.model.graph import forward_ops
from hwsim.model.ops import Op
from hwsim.model.params import count_params
from hwsim.perf.ladder import price_op
from hwsim.perf.roofline import roofline_floor_s, time_op
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.model import ModelProfile
from hwsim.training.comm import group_collective_s, group_nodes
from hwsim.training.layout import Layout, split_layers
from hwsim.training.memory import STATE_BYTES, act_bytes, stage_params
from hwsim.training.spec import TrainingSpec

HEAD_OPS = ("embedding", "final_norm", "lm_head")
DROPPED = ("attn.kv_append", "pp.send_activations")
# read, write per parameter (fp8: the bf16 step, then the FP8 cast is refreshed next forward)
ADAM_BYTES = {"bf16": (14.0, 14.0), "fp8": (14.0, 14.0), "fp16": (14.0, 14.0), "fp32": (16.0, 12.0)}


def compute_dtype(hw: HardwareProfile, precision: str) -> str:
    """The matrix-unit dtype of the GEMMs: fp32 (or tf32 where the unit has no fp32), else the
    precision's own (fp8 needs the device's FP8 rate)."""
    if precision == "fp32":
        return "fp32" if hw.has_matrix_dtype("fp32") else "tf32"
    if precision == "fp8" and not hw.has_matrix_dtype("fp8"):
        raise HwsimError(f"precision fp8: {hw.id} lists no FP8 matrix rate (its profile)")
    return precision


def mfu_dtype(hw: HardwareProfile, precision: str) -> str:
    """The peak MFU and HFU are relative to: the GEMMs' dtype, except that FP8 runs are
    measured against the bf16 dense peak, so bf16 and fp8 runs of one model compare on one
    scale (an FP8 speed-up shows as a higher MFU; against the FP8 peak it would halve)."""
    return "bf16" if precision == "fp8" else compute_dtype(hw, precision)


@dataclass(frozen=True)
class ForwardProfile:
    """One micro-batch's forward on one GPU of the TP group, all layers (priced once)."""

    layers_s: float  # compute ops of all layers
    head_s: float  # embedding + final norm + LM head (all tokens)
    attention_core_s: float  # the attention cores of all layers
    floor_s: float  # speed of light of the compute ops (layers + head)
    attention_core_floor_s: float  # the attention cores' share of floor_s
    tp_collectives: float  # TP all-reduce calls per forward, all layers
    tp_payload_bytes: float  # bytes per TP collective (the full tensor)
    moe_layers: int
    rungs: tuple[str, ...]


def forward_profile(
    model: ModelProfile, hw: HardwareProfile, spec: TrainingSpec, b: int, s: int
) -> ForwardProfile:
    dtype = "bf16" if spec.precision in ("bf16", "fp8") else spec.precision
    act = activation_dtype(dtype)
    fw = Forward(
        phase="prefill",
        model=model,
        batch=float(b),  # type: ignore[arg-type]
        new_tokens=float(s),  # type: ignore[arg-type]
        context=float(s),  # type: ignore[arg-type]
        weight=weight_dtype(dtype),
        kv=act,
        act=act,
        compute_dtype=compute_dtype(hw, spec.precision),
        tp=spec.tp,
        attention_impl=spec.attention,
        sram_bytes=hw.sram_per_core_bytes,
    )
    layers = head = core = floor = core_floor = calls = payload = 0.0
    rungs: set[str] = set()
    for op in forward_ops(fw, 1):
        if op.name in DROPPED:
            continue
        if op.op_class == "communication":
            calls += op.count
            payload = float(op.comm_bytes)
            continue
        if op.name == "lm_head":
            op = _training_lm_head(fw)
        if spec.precision == "fp8" and op.op_class != "matmul":  # only the GEMMs run in FP8
            op = _in_dtype(op, "bf16")
        t = price_op(hw, op)
        rungs.add(t.rung)
        seconds = float(t.total_s)
        op_floor = float(roofline_floor_s(hw, op)) * op.count
        floor += op_floor
        if op.name in HEAD_OPS:
            head += seconds
        else:
            layers += seconds
        if op.name == "attn.core":
            core += seconds
            core_floor += op_floor
    moe_layers = sum(1 for i in range(model.n_layers) if model.is_moe_layer(i))
    return ForwardProfile(
        layers, head, core, floor, core_floor, calls, payload, moe_layers, tuple(sorted(rungs))
    )


def step_forward_profile(
    model: ModelProfile, hw: HardwareProfile, spec: TrainingSpec, b: int
) -> ForwardProfile:
    """One micro-batch's forward on one GPU: ``seq_len / cp`` tokens of each sequence. Under
    context parallelism the attention core is 1/cp of the whole sequence's (the load-balanced
    causal chunks give every rank an equal share of the query-key pairs), not the core of a
    sequence of seq_len / cp tokens on its own."""
    cp = spec.cp
    local = forward_profile(model, hw, spec, b, spec.seq_len // cp)
    if cp == 1:
        return local
    whole = forward_profile(model, hw, spec, b, spec.seq_len)
    core, core_floor = whole.attention_core_s / cp, whole.attention_core_floor_s / cp
    return replace(
        local,
        layers_s=local.layers_s - local.attention_core_s + core,
        attention_core_s=core,
        floor_s=local.floor_s - local.attention_core_floor_s + core_floor,
        attention_core_floor_s=core_floor,
    )


def ring_kv_bytes(model: ModelProfile, spec: TrainingSpec, b: int) -> float:
    """Bytes of one context-parallel ring step: the K and V of this rank's seq_len / cp tokens
    (its KV heads of the TP group), sent to the next rank while the attention computes."""
    kv_heads = math.ceil(model.kv_heads / spec.tp)
    return 2.0 * b * spec.local_seq_len * kv_heads * model.head_size * act_bytes(spec.precision)


def ring_attention_s(
    model: ModelProfile, hw: HardwareProfile, spec: TrainingSpec, b: int, core_layer_s: float
) -> float:
    """Exposed seconds of the context-parallel K/V ring for one layer and one micro-batch.

    Forward: cp - 1 ring steps of :func:`ring_kv_bytes`, overlapped with the layer's attention
    core (Megatron-Core / TransformerEngine send the next block while the current one
    computes): exposed max(0, (cp - 1) t_step - core). Backward: K/V travel again with their
    gradients (twice the bytes) under the backward core (twice the forward's); a recomputed
    core (selective or full recomputation) runs the forward ring once more."""
    cp = spec.cp
    if cp <= 1:
        return 0.0
    nodes = 2 if group_nodes(hw, cp, spec.tp) > 1 else 1  # the ring's slowest hop
    step_s = group_collective_s(hw, "p2p", 2, nodes, ring_kv_bytes(model, spec, b))
    forward = max(0.0, (cp - 1) * step_s - core_layer_s)
    backward = max(0.0, 2.0 * (cp - 1) * step_s - 2.0 * core_layer_s)
    forwards = 1 if spec.recompute == "none" else 2
    return forwards * forward + backward


def _in_dtype(op: Op, dtype: str) -> Op:
    """``op`` computed in ``dtype`` (its kernel call's dtype too)."""
    kernel = op.kernel
    if kernel is not None and "dtype" in kernel[1]:
        kernel = (kernel[0], {**kernel[1], "dtype": dtype})
    return replace(op, compute_dtype=dtype, kernel=kernel)


def _training_lm_head(fw: Forward) -> Op:
    """Logits for every token (training's loss needs them all), vocab-parallel over tp."""
    d, vocab, t = fw.model.d_model, fw.model.vocab_size, fw.tokens
    e = fw.act.bytes_per_element
    return Op(
        name="lm_head",
        op_class="matmul",
        flops=2.0 * t * d * vocab / fw.tp,
        weight_bytes=d * vocab / fw.tp * fw.weight.bytes_per_element,
        act_read_bytes=t * d * e,
        act_write_bytes=t * vocab / fw.tp * 4.0,
        compute_dtype=fw.compute_dtype,
        kernel=("gemm", {"m": t, "n": vocab / fw.tp, "k": d, "dtype": fw.compute_dtype}),
    )


@dataclass(frozen=True)
class StepTime:
    time_s: float
    compute_s: float
    communication_s: float
    bubble_s: float
    forward_s: float  # one micro-batch, slowest stage
    backward_s: float
    recompute_s: float
    tp_comm_s: float  # per micro-batch
    pp_comm_s: float  # per micro-batch
    moe_comm_s: float  # per micro-batch
    cp_comm_s: float  # per micro-batch: the context-parallel K/V ring not hidden by attention
    dp_comm_s: float  # per step, before overlap
    dp_exposed_s: float
    optimizer_s: float
    floor_s: float  # speed of light of the step's compute
    micro_batches: int
    rungs: tuple[str, ...]


def step_time(
    model: ModelProfile,
    hw: HardwareProfile,
    layout: Layout,
    profile: ForwardProfile | None = None,
) -> StepTime:
    spec = layout.spec
    b, s = spec.micro_batch, spec.local_seq_len  # this GPU's tokens of each sequence
    prof = profile or step_forward_profile(model, hw, spec, b)
    tp, pp, dp, v, cp = spec.tp, spec.pp, layout.data_parallel, spec.interleave, spec.cp
    m = layout.micro_batches
    n_layers = model.n_layers
    share = split_layers(n_layers, pp)[0] / n_layers  # the fullest stage's share of layers
    head = prof.head_s
    forward = prof.layers_s * share + head
    backward = 2.0 * forward
    recompute = {
        "none": 0.0,
        "selective": prof.attention_core_s * share,
        "full": prof.layers_s * share,
    }[spec.recompute]
    # TP collectives of the stage's layers: forward, backward (and the recomputed forward)
    passes = 3 if spec.recompute == "full" else 2
    calls = prof.tp_collectives * share * passes
    tp_nodes = group_nodes(hw, tp, 1)
    x = prof.tp_payload_bytes
    if spec.sequence_parallel:
        one = group_collective_s(hw, "reduce_scatter", tp, tp_nodes, x)
        one += group_collective_s(hw, "all_gather", tp, tp_nodes, x)
    else:
        one = group_collective_s(hw, "all_reduce", tp, tp_nodes, x)
    tp_comm = calls * one
    # MoE all-to-all (dispatch + combine, forward and backward [+ recompute])
    moe_comm = 0.0
    if prof.moe_layers and spec.ep > 1:
        moe = model.ffn.moe
        assert moe is not None
        a2a = b * s * moe.top_k * model.d_model * act_bytes(spec.precision)
        ep_nodes = group_nodes(hw, spec.ep, tp * cp)
        per = group_collective_s(hw, "all_gather", spec.ep, ep_nodes, a2a)
        moe_comm = 2 * passes * per * prof.moe_layers * share
    # PP sends: activation forward, gradient backward, per virtual stage boundary
    pp_comm = 0.0
    if pp > 1:
        payload = (
            b
            * s
            * model.d_model
            * act_bytes(spec.precision)
            / (tp if spec.sequence_parallel else 1)
        )
        per_node = int(hw.interconnect.devices_per_node.value)
        p2p_nodes = 2 if tp * cp * dp >= per_node else 1
        if tp * cp * dp * pp <= per_node:
            p2p_nodes = 1
        pp_comm = 2 * v * group_collective_s(hw, "p2p", 2, p2p_nodes, payload)
    # context parallelism: the K/V ring of every layer of the stage
    cp_comm = ring_attention_s(model, hw, spec, b, prof.attention_core_s / n_layers)
    cp_comm *= split_layers(n_layers, pp)[0]
    micro = forward + backward + recompute + tp_comm + moe_comm + pp_comm + cp_comm
    bubble = (pp - 1) / v * micro
    # DP gradient synchronisation over the stage's parameters
    dp_comm = 0.0
    stages = stage_params(model, spec)
    dense, expert = max(stages, key=lambda p: p[0] + p[1])
    g = STATE_BYTES[spec.precision][1]
    # the CP ranks reduce their gradients with DP (one group of dp x cp, stride tp)
    groups = ((dense, dp * cp, tp), (expert, max(dp * cp // spec.ep, 1), tp * spec.ep))
    for params, ranks, stride in groups:
        if ranks <= 1 or params <= 0:
            continue
        nodes = group_nodes(hw, ranks, stride)
        size = params * g
        if spec.zero == 0:
            dp_comm += group_collective_s(hw, "all_reduce", ranks, nodes, size)
        else:
            gathers = 2 if spec.zero == 3 else 1
            dp_comm += group_collective_s(hw, "reduce_scatter", ranks, nodes, size)
            dp_comm += gathers * group_collective_s(hw, "all_gather", ranks, nodes, size)
    dp_exposed = (1.0 - spec.dp_overlap) * dp_comm
    optimizer = _optimizer_s(hw, spec, dense, expert, dp * cp)
    compute = m * (forward + backward + recompute) + optimizer
    communication = m * (tp_comm + moe_comm + pp_comm + cp_comm) + dp_exposed
    passes_floor = 3.0 + (1.0 if spec.recompute == "full" else 0.0)
    floor = m * prof.floor_s * share * passes_floor
    return StepTime(
        time_s=compute + communication + bubble,
        compute_s=compute,
        communication_s=communication,
        bubble_s=bubble,
        forward_s=forward,
        backward_s=backward,
        recompute_s=recompute,
        tp_comm_s=tp_comm,
        pp_comm_s=pp_comm,
        moe_comm_s=moe_comm,
        cp_comm_s=cp_comm,
        dp_comm_s=dp_comm,
        dp_exposed_s=dp_exposed,
        optimizer_s=optimizer,
        floor_s=floor,
        micro_batches=m,
        rungs=prof.rungs,
    )


def _optimizer_s(hw: HardwareProfile, spec: TrainingSpec, dense: float, expert: float, dp: int):
    shard = dense / (dp if spec.zero >= 1 else 1)
    shard += expert / (max(dp // spec.ep, 1) if spec.zero >= 1 else 1)
    read, write = ADAM_BYTES[spec.precision]
    op = Op(
        name="optimizer.adam",
        op_class="elementwise",
        flops=12.0 * shard,
        act_read_bytes=read * shard,
        act_write_bytes=write * shard,
        on_vector_units=True,
    )
    return float(time_op(hw, op).time_s)


# -- FLOPs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlopsPerToken:
    model: float  # PaLM's 6N + 12 L H Q T
    hardware: float  # plus what recomputation runs again


def flops_per_token(model: ModelProfile, spec: TrainingSpec) -> FlopsPerToken:
    counts = count_params(model)
    head = model.vocab_size * model.d_model  # the LM head multiplies (tied or not)
    n = counts.active_layers + head
    attention = 12.0 * model.n_layers * model.n_heads * model.head_size * spec.seq_len
    model_flops = 6.0 * n + attention
    extra = {
        "none": 0.0,
        "selective": attention / 3.0,
        "full": 2.0 * counts.active_layers + attention / 3.0,
    }[spec.recompute]
    return FlopsPerToken(model_flops, model_flops + extra)
