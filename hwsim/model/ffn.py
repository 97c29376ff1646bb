"""Feed-forward blocks: gated (SwiGLU/GeGLU), plain (GELU) and mixture-of-experts.

Parameter counts follow formulas.md section 1; MoE decode reads only the experts the batch
touches: with top-k routing spread uniformly over E experts, an expert escapes one token with
probability 1 - k/E, so a step of T tokens touches E * (1 - (1 - k/E)^T) distinct experts in
expectation (the occupancy argument; uniform-routing assumption).
"""

from __future__ import annotations

import numpy as np

from hwsim.model.forward import Forward
from hwsim.model.ops import Op
from hwsim.profiles.model import FFN, ModelProfile, MoE


def dense_ffn_params(d_model: int, intermediate: int, ffn: FFN, bias: bool) -> int:
    params = ffn.n_matrices * d_model * intermediate
    if bias:
        params += (ffn.n_matrices - 1) * intermediate + d_model
    return params


def moe_of(model: ModelProfile) -> MoE:
    """The model's MoE block; only called for layers :meth:`ModelProfile.is_moe_layer` marks."""
    if model.ffn.moe is None:
        raise ValueError(f"{model.id} has no MoE block")
    return model.ffn.moe


def ffn_param_count(model: ModelProfile, is_moe: bool, active_only: bool = False) -> int:
    """Parameters of one layer's FFN (active_only: the top-k routed plus shared experts)."""
    ffn, d = model.ffn, model.d_model
    if ffn.type == "none":
        return 0
    if not is_moe:
        return dense_ffn_params(d, ffn.intermediate_size, ffn, model.linear_bias)
    moe = moe_of(model)
    expert = dense_ffn_params(d, moe.expert_intermediate_size, ffn, model.linear_bias)
    shared_size = moe.shared_intermediate_size or moe.expert_intermediate_size
    shared = moe.n_shared_experts * dense_ffn_params(d, shared_size, ffn, model.linear_bias)
    routed = moe.top_k if active_only else moe.n_experts
    return routed * expert + shared + d * moe.n_experts  # router


def expected_distinct_experts(tokens, n_experts: int, top_k: int) -> np.ndarray:
    """Expected experts touched by ``tokens`` tokens under uniform top-k routing."""
    tokens = np.asarray(tokens, dtype=float)
    return n_experts * (1.0 - (1.0 - top_k / n_experts) ** tokens)


def ffn_ops(fw: Forward, is_moe: bool) -> list[Op]:
    ffn = fw.model.ffn
    if ffn.type == "none":
        return []
    if not is_moe:
        return _dense_ops(fw, ffn.intermediate_size, "mlp")
    return _moe_ops(fw)


def _dense_ops(fw: Forward, intermediate: int, prefix: str) -> list[Op]:
    d = fw.model.d_model
    gated = fw.model.ffn.type == "gated"
    up = fw.linear(f"{prefix}.up_proj", d, intermediate * (2 if gated else 1))
    act_elems = fw.tokens * intermediate / fw.tp
    act_bytes = fw.act.bytes_per_element
    activation = Op(
        name=f"{prefix}.activation",
        op_class="elementwise",
        flops=act_elems * (6.0 if gated else 4.0),
        act_read_bytes=act_elems * act_bytes * (2 if gated else 1),
        act_write_bytes=act_elems * act_bytes,
        on_vector_units=True,
    )
    down = fw.linear(f"{prefix}.down_proj", intermediate, d)
    return [up, activation, down]


def expert_op(fw: Forward, routed, touched, expert_weights, inter, n_experts: int) -> Op:
    """The routed experts of one MoE layer: ``routed`` token copies through experts of
    ``expert_weights`` weights (``inter`` intermediate width) each, of which ``touched`` are
    read; ``n_experts`` experts live on this GPU (the step model's per-expert bytes)."""
    moe, d = moe_of(fw.model), fw.model.d_model
    gated = fw.model.ffn.type == "gated"
    act = fw.act.bytes_per_element
    return Op(
        name="moe.experts",
        op_class="matmul",
        flops=2.0 * routed * expert_weights,
        weight_bytes=touched * expert_weights * fw.weight.bytes_per_element,
        act_read_bytes=routed * (d + inter * (2 if gated else 1)) * act,
        act_write_bytes=routed * (d + inter) * act,
        compute_dtype=fw.compute_dtype,
        kernels=2,
        meta={
            "expert_bytes": expert_weights * fw.weight.bytes_per_element,
            "n_experts": n_experts,
            "top_k": moe.top_k,
        },
    )


def _moe_ops(fw: Forward) -> list[Op]:
    moe, d = moe_of(fw.model), fw.model.d_model
    n_mat = fw.model.ffn.n_matrices
    router = fw.linear("moe.router", d, moe.n_experts, shard=False)
    touched = expected_distinct_experts(fw.tokens, moe.n_experts, moe.top_k)
    expert_weights = n_mat * d * moe.expert_intermediate_size / fw.tp
    inter = moe.expert_intermediate_size / fw.tp
    experts = expert_op(fw, fw.tokens * moe.top_k, touched, expert_weights, inter, moe.n_experts)
    ops = [router, experts]
    if moe.n_shared_experts:
        size = (moe.shared_intermediate_size or moe.expert_intermediate_size) * moe.n_shared_experts
        ops += _dense_ops(fw, size, "moe.shared")
    return ops
