"""Memory per GPU of a training step: model states (ZeRO) and stored activations.

FP8 training (``precision: fp8``, Transformer Engine's recipe): the GEMMs run in FP8, every
activation between ops stays bf16 (the casts to FP8 are fused into the GEMMs), the master
weights and Adam states are fp32 as in bf16 training, plus one byte per parameter for the
cached FP8 weights; the FP8 copies of GEMM inputs TE may keep for the backward are not
counted (the bf16 activations are: an upper bound).

Model states (Rajbhandari et al. 2020, ZeRO, arXiv 1910.02054, section 3.1): mixed-precision
Adam keeps 2 bytes of 16-bit weights, 2 of 16-bit gradients and K = 12 of fp32 optimizer
state (master weights, momentum, variance) per parameter: 16 bytes. ZeRO-DP over N_d ranks
shards the optimizer state (stage 1: 4 + 12 / N_d), also the gradients (stage 2:
2 + 14 / N_d) and also the weights (stage 3 = FSDP: 16 / N_d). fp32 training keeps 4 + 4 + 8.

Parameters per GPU: Megatron tensor parallelism shards the attention projections (heads,
KV heads replicated where tp exceeds them) and the FFN over ``tp``; layer norms stay
replicated. Embeddings are vocab-parallel (sharded over tp, Megatron's
VocabParallelEmbedding) on the first pipeline stage; the LM head (or, when tied and pp > 1,
a copy of the embedding) on the last. Pipeline stages hold Megatron's even split of the
layers. MoE experts are sharded over ``ep`` (carved out of dp) and TP-sharded inside; their
ZeRO shards span the expert-data-parallel group dp / ep.

Activations (Korthikanti et al. 2022, arXiv 2205.05198, section 4): bytes each layer stores
for the backward pass per micro-batch, derived from the profile's shapes (hidden h, heads a,
KV heads, head size, FFN size, gated or not, norms per layer) with 16-bit activations and
1-byte dropout masks:

* replicated across TP (sharded only by sequence parallelism): each norm's input 2sbh, the
  QKV input 2sbh, the MLP input 2sbh, two dropout masks sbh each;
* TP-sharded: Q 2sb(a d_h), K and V 2sb(kv d_h) each, the output projection's input
  2sb(a d_h); the MLP: plain 2sbf (activation input) + 2sbf (its output), gated 4sbf
  (gate and up) + 2sbf;
* the attention scores: softmax output 2as^2b, its dropout mask as^2b and output 2as^2b.

For MHA (a d_h = h) with a plain 4h FFN this is Korthikanti's sbh(34 + 5as/h) per layer,
sbh(10 + 24/t + 5as/(ht)) with tensor parallelism and sbh(34/t + 5as/(ht)) with sequence
parallelism (tests/test_training_memory.py). Selective recomputation drops the score term;
FlashAttention never stores the scores either, so it is treated as selective-equivalent for
memory (its softmax statistics, 4 bytes per query and head, are neglected). Full
recomputation keeps each layer's input only: 2sbh (2sbh/t with sequence parallelism, the
residual stream being sequence-sharded). The working set of the one layer being recomputed is
not added (Korthikanti's Table 2 neither).

Context parallelism (Megatron-Core's context parallel, ring attention of Liu et al. 2023,
arXiv 2310.01889): each of the cp ranks holds s / cp tokens of every sequence, so every
activation term above is taken at s / cp (FlashAttention is required: no score matrix; the
K/V blocks in flight from the ring's neighbours are transient and not counted). The CP ranks
hold the same weights and reduce gradients together with DP, so ZeRO shards over dp x cp.

Pipeline (Narayanan et al. 2021, arXiv 2104.04473; Korthikanti section 4.2.3): with 1F1B the
first stage keeps min(pp, m) micro-batches in flight, stage i min(pp - i, m); an interleaved
schedule with v virtual stages scales the first stage's activations by 1 + (pp - 1)/(pp v).
Korthikanti's extras: the embedding dropout mask sbh per micro-batch in flight (first stage),
and on the last stage the final norm's and the LM head's inputs (2sbh each) and fp32 logits
4sbV/t. Every stage is evaluated; the fullest sets the per-GPU memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.model.ffn import dense_ffn_params, moe_of
from hwsim.model.params import norm_params
from hwsim.profiles.model import ModelProfile
from hwsim.training.layout import split_layers
from hwsim.training.spec import TrainingSpec

# bytes per parameter: (weights, gradients, optimizer states). fp8: the bf16 recipe plus the
# FP8 cast of the weights, which Transformer Engine keeps across the micro-batches of a step
# (te.Linear's is_first_microbatch: the cast is computed once per step and cached)
STATE_BYTES = {
    "bf16": (2.0, 2.0, 12.0),
    "fp8": (3.0, 2.0, 12.0),
    "fp16": (2.0, 2.0, 12.0),
    "fp32": (4.0, 4.0, 8.0),
}
MASK_BYTES = 1.0  # a dropout mask: one byte per element (Korthikanti et al. 2022)
LOGIT_BYTES = 4.0  # fp32 logits for the cross-entropy loss


def act_bytes(precision: str) -> float:
    return 4.0 if precision == "fp32" else 2.0


def model_state_bytes(
    params: float, dp: int, zero: int, precision: str = "bf16"
) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes per GPU for ``params`` parameters replicated over
    ``dp`` data-parallel ranks at ZeRO ``zero`` (ZeRO paper section 3.1 / Figure 1)."""
    w, g, o = STATE_BYTES[precision]
    return (
        w * params / (dp if zero >= 3 else 1),
        g * params / (dp if zero >= 2 else 1),
        o * params / (dp if zero >= 1 else 1),
    )


# -- parameters per GPU ---------------------------------------------------------------------
def attention_params_per_rank(model: ModelProfile, tp: int) -> float:
    d, dh = model.d_model, model.head_size
    q = model.n_heads * dh / tp
    kv = math.ceil(model.kv_heads / tp) * dh
    params = d * (q + 2 * kv) + q * d
    if model.qkv_bias or model.linear_bias:
        params += q + 2 * kv
    if model.linear_bias:
        params += d  # output-projection bias, replicated
    return params


def layer_params_per_rank(
    model: ModelProfile, is_moe: bool, tp: int, ep: int = 1
) -> tuple[float, float]:
    """(dense, expert) parameters of one layer on one GPU of its TP (and EP) group."""
    d, ffn, bias = model.d_model, model.ffn, model.linear_bias
    dense = attention_params_per_rank(model, tp) + model.norms_per_layer * norm_params(model)
    if not is_moe:
        return dense + dense_ffn_params(d, ffn.intermediate_size, ffn, bias) / tp, 0.0
    moe = moe_of(model)
    expert = dense_ffn_params(d, moe.expert_intermediate_size, ffn, bias) / tp
    shared_size = moe.shared_intermediate_size or moe.expert_intermediate_size
    shared = moe.n_shared_experts * dense_ffn_params(d, shared_size, ffn, bias) / tp
    return dense + shared + d * moe.n_experts, expert * moe.n_experts / ep


def stage_params(model: ModelProfile, spec: TrainingSpec) -> list[tuple[float, float]]:
    """(dense, expert) parameters per GPU of each pipeline stage."""
    tp, pp = spec.tp, spec.pp
    out, first = [], 0
    emb = model.vocab_size * model.d_model / tp
    for i, n in enumerate(split_layers(model.n_layers, pp)):
        dense = expert = 0.0
        for layer in range(first, first + n):
            dn, ex = layer_params_per_rank(model, model.is_moe_layer(layer), tp, spec.ep)
            dense, expert = dense + dn, expert + ex
        first += n
        if i == 0:
            dense += emb
            if model.position_embedding == "learned":
                dense += model.max_position_embeddings * model.d_model
        if i == pp - 1:
            dense += norm_params(model)
            if not model.tied_embeddings or pp > 1:
                dense += emb  # the LM head (a tied copy on the last stage when pp > 1)
        out.append((dense, expert))
    return out


# -- activations ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerActivations:
    """Bytes one layer stores per micro-batch on one GPU of its TP group, by how they shard."""

    replicated: float  # not split by TP; split by sequence parallelism
    sharded: float  # already per TP rank
    scores: float  # the attention score term, per TP rank


def layer_activations(
    model: ModelProfile, is_moe: bool, s: float, b: float, tp: int, spec: TrainingSpec
) -> LayerActivations:
    e, h, dh = act_bytes(spec.precision), model.d_model, model.head_size
    sb = s * b
    mask = MASK_BYTES if spec.dropout else 0.0
    q_heads, kv_heads = model.n_heads / tp, math.ceil(model.kv_heads / tp)
    gated = model.ffn.type == "gated"
    # replicated: norm inputs, the attention (QKV) input, the MLP input, two dropout masks
    inputs = 1 if model.parallel_attention_mlp else 2
    replicated = sb * h * (e * model.norms_per_layer + e * inputs + 2 * mask)
    # TP-sharded: Q, K, V, the output projection's input
    sharded = sb * dh * e * (2 * q_heads + 2 * kv_heads)
    if is_moe:
        moe = moe_of(model)
        routed = moe.top_k * moe.expert_intermediate_size
        shared = moe.n_shared_experts * (
            moe.shared_intermediate_size or moe.expert_intermediate_size
        )
        ffn_width = routed + shared
        sharded += sb * moe.n_experts * e  # router logits (replicated; small)
    else:
        ffn_width = model.ffn.intermediate_size
    sharded += sb * ffn_width / tp * e * (3 if gated else 2)
    scores = q_heads * s * s * b * (e + (mask + e if spec.dropout else 0.0))
    return LayerActivations(replicated, sharded, scores)


def stored_layer_bytes(acts: LayerActivations, model: ModelProfile, s, b, spec) -> float:
    """What one layer keeps per micro-batch under ``spec``'s recomputation and kernels."""
    sp = spec.tp if spec.sequence_parallel else 1
    if spec.recompute == "full":
        return act_bytes(spec.precision) * s * b * model.d_model / sp
    stored = acts.replicated / sp + acts.sharded
    if spec.recompute == "none" and spec.attention == "naive":
        stored += acts.scores
    return stored


def in_flight(stage: int, pp: int, micro_batches: int, interleave: int) -> float:
    """Micro-batches whose activations stage ``stage`` holds at once under 1F1B."""
    n = float(min(pp - stage, micro_batches))
    if stage == 0 and interleave > 1:
        n *= 1.0 + (pp - 1) / (pp * interleave)
    return n


@dataclass(frozen=True)
class StageMemory:
    stage: int
    params_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    activations_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.params_bytes + self.grads_bytes + self.optimizer_bytes + self.activations_bytes


def stage_memory(
    model: ModelProfile, spec: TrainingSpec, dp: int, micro_batches: int, b: float, s: float
) -> list[StageMemory]:
    """Per-GPU memory of every pipeline stage (micro-batch ``b``, sequence ``s``; each GPU
    holds s / cp of every sequence under context parallelism)."""
    tp, pp, zero, prec = spec.tp, spec.pp, spec.zero, spec.precision
    e, h = act_bytes(prec), model.d_model
    sp = tp if spec.sequence_parallel else 1
    s = s / spec.cp  # this GPU's tokens of each sequence
    shards = dp * spec.cp  # the gradient-reduction group ZeRO shards over: DP x CP ranks
    expert_dp = max(shards // spec.ep, 1)
    out, first = [], 0
    params = stage_params(model, spec)
    per_layer: dict[bool, float] = {}
    for moe_layer in {model.is_moe_layer(i) for i in range(model.n_layers)}:
        terms = layer_activations(model, moe_layer, s, b, tp, spec)
        per_layer[moe_layer] = stored_layer_bytes(terms, model, s, b, spec)
    for i, n in enumerate(split_layers(model.n_layers, pp)):
        dense, expert = params[i]
        w, g, o = model_state_bytes(dense, shards, zero, prec)
        we, ge, oe = model_state_bytes(expert, expert_dp, zero, prec)
        layers = sum(per_layer[model.is_moe_layer(j)] for j in range(first, first + n))
        first += n
        flight = in_flight(i, pp, micro_batches, spec.interleave)
        acts = layers * flight
        if i == 0 and spec.dropout:
            acts += MASK_BYTES * s * b * h / sp * flight  # embedding dropout
        if i == pp - 1:
            acts += 2 * e * s * b * h / sp + LOGIT_BYTES * s * b * model.vocab_size / tp
        out.append(StageMemory(i, w + we, g + ge, o + oe, acts))
    return out


def peak_stage(stages: list[StageMemory]) -> StageMemory:
    return max(stages, key=lambda m: m.total_bytes)
