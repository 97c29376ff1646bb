"""Reference attention masks, for tests only: ``mask[i, j]`` is True when query i may attend
to key j (0-based positions, n x n, real tokens only).

Each builder follows its pattern's definition literally with dense numpy index arithmetic,
O(n^2) memory, so tests can brute-force the closed forms in the mixer classes
(``mask.sum() == pairs_per_head(n)``). The simulator never calls it (the registry loader
imports every module of this package; this one registers nothing).
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from hwsim.model.mixers.base import Mixer


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    pos = np.arange(n)
    return pos[:, None], pos[None, :]


def full(n: int, causal: bool = True) -> np.ndarray:
    i, j = _grid(n)
    return j <= i if causal else np.ones((n, n), dtype=bool)


def sliding_window(n: int, window: int) -> np.ndarray:
    """Causal: the last ``window`` positions, the query included."""
    i, j = _grid(n)
    return (j <= i) & (i - j < window)


def strided(n: int, stride: int) -> np.ndarray:
    """Sparse Transformer strided, merged head: {max(0, i-l) .. i} | {(i - j) mod l = 0}."""
    i, j = _grid(n)
    return (j <= i) & ((i - j <= stride) | ((i - j) % stride == 0))


def fixed(n: int, stride: int, summary: int) -> np.ndarray:
    """Sparse Transformer fixed, merged head: own block | last ``summary`` of every block."""
    i, j = _grid(n)
    same_block = j // stride == i // stride
    summary_col = j % stride >= stride - summary
    return (j <= i) & (same_block | summary_col)


def longformer(
    n: int, window: int, dilation: int = 1, n_global: int = 0, causal: bool = False
) -> np.ndarray:
    """Band |i - j| <= (window/2) * dilation on multiples of the dilation, plus global rows
    and columns for the first ``n_global`` positions."""
    i, j = _grid(n)
    off = np.abs(i - j)
    band = (off % dilation == 0) & (off <= (window // 2) * dilation)
    mask = band | (i < n_global) | (j < n_global)
    return mask & (j <= i) if causal else mask


def bigbird_block_layout(
    n_blocks: int,
    window_blocks: int = 3,
    random_blocks: int = 3,
    global_blocks: int = 2,
    seed: int = 0,
) -> np.ndarray:
    """Block-level layout (query block x key block) of BigBird ITC with a fixed random draw:
    each non-global query block draws ``random_blocks`` distinct blocks (or all there are)
    from the non-global blocks outside its window."""
    half_g, k = global_blocks // 2, (window_blocks - 1) // 2
    blocks = np.arange(n_blocks)
    is_global = (blocks < half_g) | (blocks >= n_blocks - half_g)
    layout = is_global[:, None] | is_global[None, :]
    rng = np.random.default_rng(seed)
    for q in blocks[~is_global]:
        window = (np.abs(blocks - q) <= k) & ~is_global
        layout[q, window] = True
        choices = blocks[~is_global & ~window]
        picked = rng.choice(choices, size=min(random_blocks, choices.size), replace=False)
        layout[q, picked] = True
    return layout


def bigbird(
    n: int,
    block_size: int,
    window_blocks: int = 3,
    random_blocks: int = 3,
    global_blocks: int = 2,
    seed: int = 0,
) -> np.ndarray:
    """Token mask of :func:`bigbird_block_layout` on ceil(n / block_size) blocks, cropped to
    the n real tokens (the last block may be partial)."""
    n_blocks = -(-n // block_size)
    layout = bigbird_block_layout(n_blocks, window_blocks, random_blocks, global_blocks, seed)
    block = np.arange(n) // block_size
    return layout[block[:, None], block[None, :]]


def streaming(n: int, n_sink: int, window: int) -> np.ndarray:
    """Attention sinks: the first ``n_sink`` positions plus the last ``window`` (causal)."""
    i, j = _grid(n)
    return (j <= i) & ((j < n_sink) | (i - j < window))


def mask_for(mixer: Mixer, n: int) -> np.ndarray:
    """The reference mask of a registered attention mixer's pattern at n tokens."""
    kind, p = mixer.kind_name, cast(Any, mixer)  # the kind fixes which fields it has
    if kind == "attention":
        return full(n, p.causal)
    if kind == "sliding_window":
        return sliding_window(n, p.window)
    if kind == "sparse_strided":
        return strided(n, p.stride)
    if kind == "sparse_fixed":
        return fixed(n, p.stride, p.summary)
    if kind == "longformer":
        return longformer(n, p.window, p.dilation, p.n_global, p.causal)
    if kind == "bigbird":
        return bigbird(n, p.block_size, p.window_blocks, p.random_blocks, p.global_blocks, p.seed)
    if kind == "streaming":
        return streaming(n, p.n_sink, p.window)
    raise ValueError(f"no reference mask for mixer kind {kind!r}")


# -- memory mixers: references with extra key columns (memory slots, memory tokens) ---------
# These return n x (n + extra) incidence matrices: columns 0..n-1 are the n real tokens,
# the rest the keys that are not tokens of the text (compressed slots, memory tokens).


def compressive(n: int, memory: int, compressed: int, rate: int) -> np.ndarray:
    """Compressive Transformer, simulated token by token: the query at position i sees the
    last ``memory`` tokens (itself included); the tokens before them are evicted in order,
    token j into slot j // rate; the query sees the newest ``compressed`` slots opened so far.
    Columns n + s are slot s."""
    evicted_total = max(n - memory, 0)
    n_slots = -(-evicted_total // rate)
    mask = np.zeros((n, n + n_slots), dtype=bool)
    for i in range(n):
        lo = max(i + 1 - memory, 0)
        mask[i, lo : i + 1] = True
        opened = sorted({j // rate for j in range(lo)})  # slots of the evicted tokens 0..lo-1
        for s in opened[-compressed:] if compressed else []:
            mask[i, n + s] = True
    return mask


def memory_tokens(n: int, segment: int, m: int) -> np.ndarray:
    """RMT, real-token rows: the query at i sees its segment's real tokens j <= i and the m
    read-memory tokens of its segment (columns n + g m + t, segment g, token t)."""
    n_seg = -(-n // segment)
    i, j = _grid(n)
    mask = np.zeros((n, n + n_seg * m), dtype=bool)
    mask[:, :n] = (j <= i) & (j // segment == i // segment)
    for row in range(n):
        g = row // segment
        mask[row, n + g * m : n + (g + 1) * m] = True
    return mask


def infini(n: int, segment: int) -> np.ndarray:
    """Infini-attention's local part: causal within the query's own segment."""
    i, j = _grid(n)
    return (j <= i) & (j // segment == i // segment)


def knn_memory(
    n: int, window: int, top_k: int, memory_size: int, seed: int = 0, dim: int = 8
) -> np.ndarray:
    """Memorizing Transformers on random queries and keys: the query at i sees the last
    ``window`` tokens and the ``top_k`` keys nearest to it (largest dot product) among the
    memory, the newest ``memory_size`` tokens that have left its window (n x n)."""
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((n, dim)), rng.standard_normal((n, dim))
    mask = sliding_window(n, window)
    for i in range(n):
        hi = i - window + 1  # tokens 0..hi-1 have left the window
        lo = max(hi - memory_size, 0)
        if hi <= 0:
            continue
        scores = k[lo:hi] @ q[i]
        best = np.argsort(-scores, kind="stable")[:top_k]
        mask[i, lo + best] = True
    return mask


def memory_mask_for(mixer: Mixer, n: int) -> np.ndarray:
    """The reference incidence of a registered memory mixer at n tokens (see above)."""
    kind, p = mixer.kind_name, cast(Any, mixer)
    if kind == "compressive":
        return compressive(n, p.memory, p.compressed_memory, p.compression_rate)
    if kind == "memory_tokens":
        return memory_tokens(n, p.segment, p.memory_tokens)
    if kind == "infini":
        return infini(n, p.segment)
    if kind == "knn_memory":
        return knn_memory(n, p.window, p.top_k, p.memory_size)
    raise ValueError(f"no reference memory mask for mixer kind {kind!r}")
