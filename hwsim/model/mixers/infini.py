"""Infini-attention (Munkhdalai et al. 2024, arXiv 2404.07143, section 2.1 and Table 1).

The input is split into segments of N = ``segment`` tokens. Within a segment, ordinary causal
dot-product attention (A_dot); across segments, a compressive memory per head: a d_k x d_v
matrix M and a d_k normaliser z, read with

    A_mem = sigma(Q) M_{s-1} / (sigma(Q) z_{s-1}),          sigma = ELU + 1,

and written at the end of each segment with the segment's keys and values,

    linear:  M_s = M_{s-1} + sigma(K)^T V
    delta:   M_s = M_{s-1} + sigma(K)^T (V - sigma(K) M_{s-1} / (sigma(K) z_{s-1}))
             z_s = z_{s-1} + sum_t sigma(K_t),

then mixed by a learned gating scalar per head, A = sigmoid(beta) A_mem + (1 - sigmoid(beta))
A_dot, before the output projection. The paper is multi-head; M and z depend only on K and V,
so under GQA hwsim keeps one memory per KV head, read by the query heads of its group.

Counting (0-based positions): query i attends to keys j <= i of its own segment
(j // N == i // N), so pairs(n) = F N(N+1)/2 + r(r+1)/2 with F = floor(n / N),
r = n - F N; a decode step at context k reads ((k - 1) mod N) + 1 keys. The KV cache holds the
current segment only: hwsim reports min(k, N), the segment buffer a sequence fills (the keys
still needed fall back to ((k - 1) mod N) + 1 as each segment folds into M).

State per sequence and layer (Table 1: d_key x (d_value + 1) per head and layer):
kv_heads (d_h^2 + d_h) elements, in ``state_dtype_bits`` (default 32: the memory accumulates
sums over the whole prefix, as formulas.md section 8 sizes recurrent states in fp32).

FLOPs per token (``infini.memory``; multiply-adds count 2, sigma counts 2 per element):
retrieval per query head: sigma(Q) 2 d_h, sigma(Q) M 2 d_h^2, sigma(Q) z 2 d_h, the division
d_h; the gate 3 d_h: 2 d_h^2 + 8 d_h. Update per KV head: sigma(K) 2 d_h, sigma(K)^T V 2 d_h^2,
z += sigma(K) d_h: 2 d_h^2 + 3 d_h; the delta rule adds the retrieval sigma(K) M / sigma(K) z
(2 d_h^2 + 3 d_h) and the subtraction (d_h): 4 d_h^2 + 7 d_h. For MHA with the linear rule
that is ~ 2 . 2 d_h^2 per head and token, retrieval plus update. Every token folds into M once;
hwsim charges its update to the forward that adds it (the real fold runs at the segment's end
from the cached segment, the same total). Bytes: each segment the new tokens touch reads M
and z once (retrieval, and the delta rule's read); M and z are written once per segment,
charged as new / N of a write per forward.

Positions relate only within a segment (sigma(K)^T V sums over positions: the memory carries
none), so ``max_query_key_distance`` is N - 1 although the memory carries the whole prefix.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from hwsim.model.forward import Forward
from hwsim.model.mixers.base import register
from hwsim.model.mixers.memory_base import DecoderMemoryMixer
from hwsim.model.ops import Op
from hwsim.profiles.model import ModelProfile


@register
class InfiniAttention(DecoderMemoryMixer):
    kind_name: ClassVar[str] = "infini"
    segment: int = Field(ge=1, description="N, tokens per segment (local attention span)")
    update: Literal["linear", "delta"] = Field(
        default="delta", description="memory update rule (the paper's Linear or Linear + Delta)"
    )
    state_dtype_bits: int = Field(default=32, ge=1, description="M and z storage, 32 = fp32")

    # -- counting --------------------------------------------------------------------------
    def pairs_per_head(self, n):
        n = np.asarray(n, dtype=float)
        s = float(self.segment)
        full = np.floor_divide(n, s)
        r = n - full * s
        return full * s * (s + 1) / 2 + r * (r + 1) / 2

    def keys_per_decode_step(self, context):
        c = np.asarray(context, dtype=float)
        return np.where(c > 0, np.mod(c - 1.0, self.segment) + 1.0, 0.0)

    def kv_tokens_held(self, context):
        return np.minimum(np.asarray(context, dtype=float), self.segment)

    def score_matrix_elements_per_head(self, n):
        """A naive kernel materialises one N x N score block per segment (r x r for the last)."""
        n = np.asarray(n, dtype=float)
        s = float(self.segment)
        full = np.floor_divide(n, s)
        r = n - full * s
        return full * s * s + r * r

    def segment_start(self, context) -> np.ndarray:
        """Tokens before the segment of the query at ``context`` (1-based context)."""
        c = np.asarray(context, dtype=float)
        return np.floor_divide(np.maximum(c - 1.0, 0.0), self.segment) * self.segment

    def keys_read(self, fw: Forward) -> np.ndarray:
        """Distinct keys the new queries meet: every token from the start of the first new
        query's segment to the last new token."""
        first = fw.context - fw.new_tokens + 1.0
        return fw.context - self.segment_start(first)

    def segments_touched(self, fw: Forward) -> np.ndarray:
        first = fw.context - fw.new_tokens + 1.0
        return (self.segment_start(fw.context) - self.segment_start(first)) / self.segment + 1.0

    def max_query_key_distance(self) -> float:
        return float(self.segment - 1)

    # -- model-level -----------------------------------------------------------------------
    def param_count(self, model: ModelProfile) -> int:
        return super().param_count(model) + model.n_heads  # beta, one gating scalar per head

    def state_elements(self, model: ModelProfile, tp: int = 1) -> float:
        dh = model.head_size
        kv_heads = -(-model.kv_heads // tp)
        return float(kv_heads * (dh * dh + dh))

    def state_bytes_per_sequence(self, model: ModelProfile, tp: int) -> float:
        return self.state_elements(model, tp) * self.state_dtype_bits / 8

    def memory_flops_per_token(self, model: ModelProfile, tp: int = 1) -> float:
        dh = model.head_size
        h, hk = model.n_heads // tp, -(-model.kv_heads // tp)
        retrieval = 2.0 * dh * dh + 8.0 * dh
        update = 2.0 * dh * dh + 3.0 * dh
        if self.update == "delta":
            update += 2.0 * dh * dh + 4.0 * dh
        return h * retrieval + hk * update

    # -- ops ------------------------------------------------------------------------------
    def memory_op(self, fw: Forward) -> Op:
        m, dh = fw.model, fw.model.head_size
        h, hk = fw.heads_per_rank, fw.kv_heads_per_rank
        t, act = fw.tokens, fw.act.bytes_per_element
        state = fw.batch * self.state_bytes_per_sequence(m, fw.tp)
        return Op(
            name="infini.memory",
            op_class="matmul",
            flops=t * self.memory_flops_per_token(m, fw.tp),
            weight_bytes=h * fw.weight.bytes_per_element,  # beta
            # Q, K, V and the local attention output in; the gated output out
            act_read_bytes=t * (2 * h + 2 * hk) * dh * act,
            act_write_bytes=t * h * dh * act,
            kv_read_bytes=state * self.segments_touched(fw),
            kv_write_bytes=state * fw.new_tokens / self.segment,
            compute_dtype=fw.compute_dtype,
            meta={"state_bytes_per_sequence": self.state_bytes_per_sequence(m, fw.tp)},
        )

    def ops(self, fw: Forward) -> list[Op]:
        ops = super().ops(fw)
        at = next(i for i, op in enumerate(ops) if op.name == "attn.core")
        return [*ops[: at + 1], self.memory_op(fw), *ops[at + 1 :]]
