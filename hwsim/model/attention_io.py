"""HBM traffic of a fused (tiled) attention kernel: one model, shared by a model's attention
layers (:mod:`hwsim.model.mixers.attention`) and the registered attention kernels
(:mod:`hwsim.perf.kernels`), so that one op has one descriptor on both paths.

FlashAttention-2's loop order (Dao 2023, arXiv 2307.08691, §3.1, Algorithm 1), which
FlashAttention-3, FlashInfer and the serving engines' paged kernels share: each thread block
owns a block of query rows, reads its Q once, streams the key/value blocks the mask lets it
meet and writes its O once. The query blocks of a head run side by side and stream the same
K/V blocks in the same order, so after the first read those are served by L2: HBM sees Q, O
and each touched key and value once, the ideal I/O (Dao et al. 2022, arXiv 2205.14135, §3.2).
(FlashAttention-1 loops over key blocks outside and re-streams Q and O once per key block,
Theta(N^2 d^2 / M) by its Theorem 2; no serving engine runs that order.)

Serving engines write the new tokens' keys and values into the cache with a kernel of their own
(vLLM's ``reshape_and_cache_flash``) and then attend over the cache, so the keys and values
are read in the cache's dtype; :func:`kv_append_bytes` is that write.
"""

from __future__ import annotations

import numpy as np


def tiled_attention_bytes(
    batch, heads, kv_heads, queries, keys, head_dim, act_bytes: float, kv_bytes: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Q read, O written, K and V read) in bytes: ``queries`` rows of ``heads`` heads against
    ``keys`` keys of ``kv_heads`` heads (GQA shares each K/V head among heads / kv_heads)."""
    q_or_o = np.asarray(batch * heads * queries * head_dim * act_bytes, dtype=float)
    kv = np.asarray(2.0 * batch * kv_heads * keys * head_dim * kv_bytes, dtype=float)
    return q_or_o, q_or_o, kv


def kv_append_bytes(
    batch, kv_heads, new_tokens, head_dim, act_bytes: float, kv_bytes: float
) -> tuple[np.ndarray, np.ndarray]:
    """(read, written) bytes of writing the new tokens' K and V into the cache: read in the
    activation dtype, written in the cache's (a cast or quantisation on the way)."""
    elements = np.asarray(2.0 * batch * kv_heads * new_tokens * head_dim, dtype=float)
    return elements * act_bytes, elements * kv_bytes
