"""Memory tokens: the Recurrent Memory Transformer (Bulatov et al. 2022, arXiv 2207.06881,
section 3 and Figure 1, decoder variant) and summary-token recurrence generally.

The input is split into segments of s = ``segment`` tokens; m = ``memory_tokens`` memory tokens
carry information from segment to segment. Segment g runs as one input [R_g, X_g, W_g]:
read memory R_g, the s real tokens X_g, write memory W_g, under causal attention; the outputs
of W_g (last layer) are the inputs of R_{g+1}. R_0 is the learned memory embedding (the same
for every sequence: its keys and values are computed once and not charged per sequence).

Real tokens (what ``pairs_per_head`` and the reference mask count): the query at context k
(1-based) attends to the m read tokens of its segment and its segment's real tokens so far,
keys(k) = m + ((k - 1) mod s) + 1, so with F = floor(n / s), r = n - F s,

    pairs(n) = F (s m + s(s+1)/2) + r m + r(r+1)/2.

Memory tokens (``rmt.memory``): each segment after the first costs a pass of 2m tokens through
the layer when its first token arrives (lazily: W_{g-1} attends to R_{g-1}, X_{g-1} and itself
causally, m(m + s) + m(m+1)/2 pairs; then R_g, causally among itself, m(m+1)/2), with their Q,
K, V and O projections (2 . 2m (d (h + 2 h_kv) d_h + h d_h d) FLOPs; the weights are those the
layer's own projections read in the same forward, so no weight bytes). A prefill charges the
boundaries it crosses exactly; a decode step charges 1/s of one (decode cost is an average over
sampled steps, which a once-per-segment spike would dodge). Not modelled: the memory tokens'
pass through the FFN, norms and the other layers (2m/s of a token's non-mixer work per token:
a hook for extra tokens per forward in the graph would carry it).

State: the m read tokens' keys and values in every layer (the choice for a KV-cached decoder;
the m x d_model hidden states that RMT passes between segments are consumed at the boundary to
compute them). The cache holds those and the current segment: hwsim reports
m + min(k, s), the buffer a sequence fills (transiently m more during the boundary pass).

Positions restart in every segment (each segment is one input of 2m + s positions), so no
query relates keys more than 2m + s - 1 apart, although memory carries the whole prefix.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from hwsim.model.forward import Forward
from hwsim.model.mixers.base import register
from hwsim.model.mixers.memory_base import DecoderMemoryMixer
from hwsim.model.ops import Op


@register
class MemoryTokenAttention(DecoderMemoryMixer):
    kind_name: ClassVar[str] = "memory_tokens"
    segment: int = Field(ge=1, description="s, real tokens per segment")
    memory_tokens: int = Field(ge=1, description="m, memory tokens carried between segments")

    # -- counting --------------------------------------------------------------------------
    def pairs_per_head(self, n):
        n = np.asarray(n, dtype=float)
        s, m = float(self.segment), float(self.memory_tokens)
        full = np.floor_divide(n, s)
        r = n - full * s
        return full * (s * m + s * (s + 1) / 2) + r * m + r * (r + 1) / 2

    def keys_per_decode_step(self, context):
        c = np.asarray(context, dtype=float)
        return np.where(c > 0, self.memory_tokens + np.mod(c - 1.0, self.segment) + 1.0, 0.0)

    def kv_tokens_held(self, context):
        c = np.asarray(context, dtype=float)
        return np.where(c > 0, self.memory_tokens + np.minimum(c, self.segment), 0.0)

    def score_matrix_elements_per_head(self, n):
        """A naive kernel materialises one (m + s) x (m + s) block per segment of real-token
        queries, (m + r) x (m + r) for the last, partial one (the rows of real tokens only)."""
        n = np.asarray(n, dtype=float)
        s, m = float(self.segment), float(self.memory_tokens)
        full = np.floor_divide(n, s)
        r = n - full * s
        return full * s * (m + s) + r * (m + r)

    def segment_index(self, context) -> np.ndarray:
        """0-based segment of the query at ``context`` (1-based; 0 for context 0)."""
        c = np.asarray(context, dtype=float)
        return np.floor_divide(np.maximum(c - 1.0, 0.0), self.segment)

    def keys_read(self, fw: Forward) -> np.ndarray:
        """Distinct keys the new queries meet: the real tokens from the first new query's
        segment start to the last new token, and m read tokens per segment touched."""
        first = fw.context - fw.new_tokens + 1.0
        g0, g1 = self.segment_index(first), self.segment_index(fw.context)
        return fw.context - g0 * self.segment + self.memory_tokens * (g1 - g0 + 1.0)

    def boundaries(self, fw: Forward) -> np.ndarray:
        """Memory passes (W_{g-1}, then R_g) this forward runs: exact for a prefill, 1/s per
        token for a decode step."""
        if fw.phase == "decode":
            return fw.new_tokens / self.segment
        return self.passes_by(fw.context) - self.passes_by(fw.context - fw.new_tokens)

    def passes_by(self, context) -> np.ndarray:
        """Memory passes run by ``context``: one per segment begun after the first."""
        c = np.asarray(context, dtype=float)
        return np.maximum(-np.floor_divide(-c, self.segment) - 1.0, 0.0)

    def memory_pairs_per_boundary(self) -> float:
        """Query-key pairs of one memory pass per head: W (m(m+s) + m(m+1)/2) + R (m(m+1)/2)."""
        m, s = self.memory_tokens, self.segment
        return float(m * (m + s) + m * (m + 1))

    def max_query_key_distance(self) -> float:
        return float(2 * self.memory_tokens + self.segment - 1)

    # -- ops ------------------------------------------------------------------------------
    def memory_op(self, fw: Forward) -> Op:
        m, dh = fw.model, fw.model.head_size
        h, hk = fw.heads_per_rank, fw.kv_heads_per_rank
        mem, s = float(self.memory_tokens), float(self.segment)
        per_seq = self.boundaries(fw)  # passes per sequence
        tokens = fw.batch * per_seq * 2.0 * mem  # W then R
        proj = 2.0 * (m.d_model * (h + 2 * hk) * dh + h * dh * m.d_model)
        attn = 4.0 * dh * h * self.memory_pairs_per_boundary()
        act, kv_b = fw.act.bytes_per_element, fw.kv.bytes_per_element
        kv_vec = 2.0 * hk * dh * kv_b  # one token's K and V on this rank
        return Op(
            name="rmt.memory",
            op_class="matmul",
            flops=tokens * proj + fw.batch * per_seq * attn,
            # the memory tokens' hidden states in, their outputs out
            act_read_bytes=tokens * m.d_model * act,
            act_write_bytes=tokens * m.d_model * act,
            # W reads R_{g-1} and X_{g-1}; W's and R_g's keys and values are written
            kv_read_bytes=fw.batch * per_seq * (mem + s) * kv_vec,
            kv_write_bytes=tokens * kv_vec,
            compute_dtype=fw.compute_dtype,
        )

    def ops(self, fw: Forward) -> list[Op]:
        ops = super().ops(fw)
        at = next(i for i, op in enumerate(ops) if op.name == "attn.core")
        return [*ops[:at], self.memory_op(fw), *ops[at:]]
