"""kNN-augmented attention: Memorizing Transformers (Wu et al. 2022, arXiv 2203.08913,
section 3, the kNN-augmented attention layer).

Local causal attention over the last w = ``window`` tokens (the query included), plus a kNN
lookup: each query retrieves the ``top_k`` keys nearest to it, with their values, from an
external memory of the (key, value) pairs of up to M = ``memory_size`` earlier tokens (not
differentiable; FIFO, oldest dropped), attends to them with its own softmax, and a learned
gate per head mixes the two results: V_a = V_m g + V_c (1 - g), g = sigmoid(b_g). The memory
holds the tokens that have left the window (hwsim's choice: local and memory keys disjoint).
Under GQA the memory is per KV head (it stores the layer's keys and values).

Counting: at context k (1-based) the memory holds e(k) = min(max(k - w, 0), M) entries and the
query scores min(k, w) local keys plus min(top_k, e(k)) retrieved ones, so with K = min(top_k,
M), E = max(n - w, 0), q = min(E, K) and m = min(n, w):

    pairs(n) = m(m+1)/2 + (n - m) w + q(q+1)/2 + (E - q) K.

Which keys are retrieved depends on the data; how many does not, so the reference in
:mod:`hwsim.model.mixers.masks` runs a real top-k over random keys.

Memory: 2 kv_heads d_h bytes per entry, the cache's rate. ``memory_location: device`` keeps it
in the KV cache (``kv_tokens_held`` = min(k, w) + e(k)); ``host`` keeps it in host memory, as
the paper allows for very large memories: the device holds the window only. hwsim prices
device ops only, so a host memory's search (on the CPU) and the PCIe transfer of the retrieved
keys and values are not priced (no host-link byte category in an op).

Search (``knn.search``, device memory): an exact scan scores every entry, 2 d_h FLOPs per
query head and entry plus one comparison for the top-k selection, and reads each KV head's
memory keys once per forward (d_h per entry); ``scan_fraction`` < 1 models an approximate
index (ScaNN, Faiss) that scores that share of the entries. Gate (``knn.gate``): 3 d_h FLOPs
per query head and token. Extra parameters: b_g, one per head.

Positions: retrieved memories carry no relative-position bias (the local attention keeps it),
so no query relates keys more than w - 1 positions apart, whatever the context.
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
class KnnMemoryAttention(DecoderMemoryMixer):
    kind_name: ClassVar[str] = "knn_memory"
    window: int = Field(ge=1, description="w, local keys, the query included")
    top_k: int = Field(default=32, ge=1, description="keys retrieved per query and head")
    memory_size: int = Field(ge=1, description="M, (key, value) entries the memory keeps")
    memory_location: Literal["device", "host"] = Field(
        default="device", description="where the external memory lives"
    )
    scan_fraction: float = Field(
        default=1.0, gt=0.0, le=1.0, description="share of entries a search scores (1: exact)"
    )

    # -- counting --------------------------------------------------------------------------
    def entries(self, context) -> np.ndarray:
        """Memory entries held at ``context``."""
        c = np.asarray(context, dtype=float)
        return np.minimum(np.maximum(c - self.window, 0.0), self.memory_size)

    def retrieved(self, context) -> np.ndarray:
        return np.minimum(self.entries(context), self.top_k)

    def keys_per_decode_step(self, context):
        c = np.asarray(context, dtype=float)
        return np.minimum(c, self.window) + self.retrieved(c)

    def kv_tokens_held(self, context):
        c = np.asarray(context, dtype=float)
        local = np.minimum(c, self.window)
        return local + self.entries(c) if self.memory_location == "device" else local

    @staticmethod
    def _ramp_sum(n: np.ndarray, start: float, cap: float) -> np.ndarray:
        """sum_{k=1..n} min(max(k - start, 0), cap)."""
        e = np.maximum(n - start, 0.0)
        q = np.minimum(e, cap)
        return q * (q + 1) / 2 + (e - q) * cap

    def pairs_per_head(self, n):
        n = np.asarray(n, dtype=float)
        w = float(self.window)
        m = np.minimum(n, w)
        local = m * (m + 1) / 2 + (n - m) * w
        return local + self._ramp_sum(n, w, float(min(self.top_k, self.memory_size)))

    def keys_read(self, fw: Forward) -> np.ndarray:
        """Distinct keys the new queries meet: the local span (as a window of w) plus the
        retrieved entries, at most one per (query, top-k) and at most the entries alive
        between the first new query and the last."""
        ctx, new = fw.context, fw.new_tokens
        local = np.minimum(ctx, np.minimum(ctx, self.window) + np.maximum(new - 1.0, 0.0))
        before = ctx - new
        k = float(min(self.top_k, self.memory_size))
        gathered = self._ramp_sum(ctx, self.window, k) - self._ramp_sum(before, self.window, k)
        return local + np.minimum(gathered, self.alive(fw))

    def alive(self, fw: Forward) -> np.ndarray:
        """Memory entries present at some point of this forward's queries."""
        first = fw.context - fw.new_tokens + 1.0
        left = np.maximum(fw.context - self.window, 0.0)  # tokens that have left the window
        left_first = np.maximum(first - self.window, 0.0)
        return left - np.maximum(left_first - self.memory_size, 0.0)

    def max_query_key_distance(self) -> float:
        return float(self.window - 1)

    # -- model-level -----------------------------------------------------------------------
    def param_count(self, model: ModelProfile) -> int:
        return super().param_count(model) + model.n_heads  # b_g, one gate bias per head

    # -- ops ------------------------------------------------------------------------------
    def scored_entries(self, fw: Forward) -> np.ndarray:
        """Entries the new queries of this forward score, summed over the queries."""
        m = float(self.memory_size)
        total = self._ramp_sum(fw.context, self.window, m)
        return self.scan_fraction * (
            total - self._ramp_sum(fw.context - fw.new_tokens, self.window, m)
        )

    def search_op(self, fw: Forward) -> Op:
        dh = fw.model.head_size
        h, hk = fw.heads_per_rank, fw.kv_heads_per_rank
        return Op(
            name="knn.search",
            op_class="matmul",
            flops=fw.batch * h * (2.0 * dh + 1.0) * self.scored_entries(fw),
            act_read_bytes=fw.tokens * h * dh * fw.act.bytes_per_element,  # the queries
            kv_read_bytes=fw.batch
            * hk
            * dh
            * fw.kv.bytes_per_element
            * self.scan_fraction
            * self.alive(fw),
            compute_dtype=fw.compute_dtype,
        )

    def gate_op(self, fw: Forward) -> Op:
        dh, h, act = fw.model.head_size, fw.heads_per_rank, fw.act.bytes_per_element
        return Op(
            name="knn.gate",
            op_class="elementwise",
            flops=fw.tokens * h * 3.0 * dh,
            weight_bytes=h * fw.weight.bytes_per_element,
            act_read_bytes=2.0 * fw.tokens * h * dh * act,
            act_write_bytes=fw.tokens * h * dh * act,
            on_vector_units=True,
        )

    def ops(self, fw: Forward) -> list[Op]:
        ops = super().ops(fw)
        at = next(i for i, op in enumerate(ops) if op.name == "attn.core")
        search = [self.search_op(fw)] if self.memory_location == "device" else []
        return [*ops[:at], *search, ops[at], self.gate_op(fw), *ops[at + 1 :]]
