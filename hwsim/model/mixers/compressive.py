"""Compressive Transformer attention (Rae et al. 2019, arXiv 1911.05507, section 3 and
Algorithm 1; compression functions section 3.1).

Each layer attends over a FIFO memory of recent tokens and a FIFO compressed memory: tokens
leaving the memory are compressed, ``compression_rate`` (c) of them into one slot, and the
compressed memory keeps the newest ``compressed_memory`` (n_cm) slots.

The pattern hwsim counts is the per-token (streaming) one, as :mod:`.streaming` counts
StreamingLLM: the memory holds the last n_m = ``memory`` tokens, the query itself included,
so the query at context k (k tokens so far, 1-based) scores min(k, n_m) token keys. The
e(k) = max(k - n_m, 0) evicted tokens fill ceil(e / c) slots; the query scores the newest
min(ceil(e / c), n_cm) of them. The newest slot may hold fewer than c tokens: a decode step
evicts one token and hwsim folds it into the open slot at once (a conv with kernel and stride
c is linear in its c inputs, so its taps accumulate one token at a time; mean pooling is a
running mean). The paper evicts whole segments (n_s tokens), so its slots are always full;
counting floor(e / c) complete slots instead would drop up to c - 1 evicted tokens that the
cache must still hold until their slot is complete. So

    keys(k) = min(k, n_m) + min(ceil(e(k) / c), n_cm) = kv_tokens_held(k)
    pairs(n) = sum_{k=1..n} keys(k)
             = m(m + 1)/2 + (n - m) n_m  +  c q(q + 1)/2 + r (q + 1) + (E - E') n_cm,

with m = min(n, n_m), E = max(n - n_m, 0), E' = min(E, c n_cm), q = floor(E' / c),
r = E' - c q. The cache is flat at n_m + n_cm slots once e >= c n_cm - c + 1 (positive k).

Cache: the paper's memories are layer inputs (d_model) from which K and V are recomputed every
segment (training); an inference cache holds K and V instead, so hwsim compresses in K/V space:
each slot is one token's K and V (``kv_bytes_per_token`` is the full-attention rate, per slot
and per token). Mean pooling commutes with the linear K/V projections, so pooled K/V equal the
paper's pooled memories projected (RoPE aside). ``compression: conv`` is the paper's 1D
convolution (kernel = stride = c, its best function) applied to the cached K and to the cached
V, per KV head so that it shards with the heads under tensor parallelism (the paper's conv
mixes all d_model channels of the hidden state): 2 kv_heads (c d_h^2 + d_h) extra parameters
per layer; 2 d_h^2 FLOPs per evicted token per KV head and per tensor (one tap of the slot's
sum), i.e. 2 . 2 c d_h^2 per slot per KV head, the paper's 2 d d c per slot with d -> d_h per
head. ``compression: mean``: no parameters, 2 FLOPs per element (scale and add). The op
(``compressive.compress``) reads the evicted tokens' K/V and reads and writes the slots they
fold into; the paper's attention-reconstruction loss trains the compressor and costs nothing at
inference.

Positions: Transformer-XL relative positions count each memory and compressed slot as one
place (the paper builds on Transformer-XL), so no query relates keys more than
n_m + n_cm - 1 places apart, whatever the context.
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


def _ceil_div(a: np.ndarray, c: float) -> np.ndarray:
    return -np.floor_divide(-a, c)


@register
class CompressiveAttention(DecoderMemoryMixer):
    kind_name: ClassVar[str] = "compressive"
    memory: int = Field(ge=1, description="n_m, recent tokens kept raw, the query included")
    compressed_memory: int = Field(ge=0, description="n_cm, compressed slots kept")
    compression_rate: int = Field(ge=1, description="c, evicted tokens per compressed slot")
    compression: Literal["conv", "mean"] = Field(
        default="conv", description="f_c: 1D conv (kernel = stride = c) or mean pooling"
    )

    @property
    def cache_tokens(self) -> int:
        """Keys (tokens and slots) the cache holds at most."""
        return self.memory + self.compressed_memory

    # -- counting --------------------------------------------------------------------------
    def evicted(self, context) -> np.ndarray:
        """Tokens that have left the memory at ``context``."""
        return np.maximum(np.asarray(context, dtype=float) - self.memory, 0.0)

    def slots_formed(self, context) -> np.ndarray:
        """Compressed slots ever opened at ``context`` (the newest may be partial)."""
        return _ceil_div(self.evicted(context), float(self.compression_rate))

    def slots_held(self, context) -> np.ndarray:
        return np.minimum(self.slots_formed(context), float(self.compressed_memory))

    def keys_per_decode_step(self, context):
        c = np.asarray(context, dtype=float)
        return np.minimum(c, self.memory) + self.slots_held(c)

    def kv_tokens_held(self, context):
        return self.keys_per_decode_step(context)

    def pairs_per_head(self, n):
        n = np.asarray(n, dtype=float)
        w, c, cap = float(self.memory), float(self.compression_rate), float(self.compressed_memory)
        m = np.minimum(n, w)
        raw = m * (m + 1) / 2 + (n - m) * w
        e = self.evicted(n)
        e_open = np.minimum(e, c * cap)  # evictions before the compressed memory is full
        q = np.floor_divide(e_open, c)
        r = e_open - c * q
        slots = c * q * (q + 1) / 2 + r * (q + 1) + (e - e_open) * cap
        return raw + slots

    def score_matrix_elements_per_head(self, n):
        """A naive kernel scores every query against every raw token and every slot formed."""
        n = np.asarray(n, dtype=float)
        return n * (n + self.slots_formed(n))

    def keys_read(self, fw: Forward) -> np.ndarray:
        """Distinct keys the new queries meet: the raw tokens of the memory span (as a window
        of n_m) plus every slot some new query sees (the slots alive between the first new
        query and the last)."""
        ctx, new = fw.context, fw.new_tokens
        raw = np.minimum(ctx, np.minimum(ctx, self.memory) + np.maximum(new - 1.0, 0.0))
        first = ctx - new + 1.0  # the context of the first new query
        if self.compressed_memory == 0:
            return raw
        # the newest-slot count rises by at most one per query, so the slots seen form one run
        oldest = np.maximum(self.slots_formed(first) - self.compressed_memory, 0.0)
        return raw + self.slots_formed(ctx) - oldest

    def max_query_key_distance(self) -> float:
        return float(self.cache_tokens - 1)

    # -- model-level -----------------------------------------------------------------------
    def compression_params(self, model: ModelProfile) -> int:
        if self.compression == "mean":
            return 0
        dh = model.head_size
        return 2 * model.kv_heads * (self.compression_rate * dh * dh + dh)

    def param_count(self, model: ModelProfile) -> int:
        return super().param_count(model) + self.compression_params(model)

    # -- ops ------------------------------------------------------------------------------
    def compress_op(self, fw: Forward) -> Op:
        """Fold the tokens this forward evicts into their slots (per rank: its KV heads)."""
        dh, hk = fw.model.head_size, fw.kv_heads_per_rank
        before = fw.context - fw.new_tokens
        evicted = self.evicted(fw.context) - self.evicted(before)
        c = float(self.compression_rate)
        # slots receiving at least one of these tokens
        touched = np.where(
            evicted > 0,
            self.slots_formed(fw.context) - np.floor_divide(self.evicted(before), c),
            0.0,
        )
        per_token = 2.0 * dh * dh if self.compression == "conv" else 2.0 * dh
        kv_b = fw.kv.bytes_per_element
        vector_bytes = 2.0 * fw.batch * hk * dh * kv_b  # one token's (or slot's) K and V
        weights = 2.0 * hk * (self.compression_rate * dh * dh + dh)
        return Op(
            name="compressive.compress",
            op_class="matmul" if self.compression == "conv" else "elementwise",
            flops=2.0 * fw.batch * hk * evicted * per_token,
            weight_bytes=(weights if self.compression == "conv" else 0.0)
            * fw.weight.bytes_per_element,
            kv_read_bytes=vector_bytes * (evicted + touched),
            kv_write_bytes=vector_bytes * touched,
            compute_dtype=fw.compute_dtype,
            on_vector_units=self.compression == "mean",
        )

    def ops(self, fw: Forward) -> list[Op]:
        ops = super().ops(fw)
        at = next(i for i, op in enumerate(ops) if op.name == "attn.core")
        return [*ops[:at], self.compress_op(fw), *ops[at:]]
