"""Block granularity of sparse attention kernels: the query-key pairs a kernel computes when it
works in whole B x B tiles of the score matrix (OpenAI's blocksparse kernels, Gray et al. 2017,
used by the Sparse Transformer, Child et al. 2019 §5.5; Triton's and FlashAttention's
block-sparse modes): every tile that holds at least one pair of the pattern is computed whole,
the mask applied inside it.

A query block r holds queries rB .. rB + B - 1, a key block c keys cB .. cB + B - 1 (the last
block of a length n not a multiple of B is shorter). The computed pairs are the sums of
(rows x columns) over the touched tiles; brute force: reshape the pattern's mask into tiles and
count the tiles with any pair (``tests/test_sparse_blocks.py``). Counts are per head for a
causal prefill of n tokens; each function is O(n / B).
"""

from __future__ import annotations

import numpy as np


def _tiles(n: float, block: int) -> tuple[int, np.ndarray]:
    """(number of blocks T, the size of each block: B, ..., B, the remainder)."""
    count = int(np.ceil(n / block))
    sizes = np.full(count, float(block))
    if count:
        sizes[-1] = n - (count - 1) * block
    return count, sizes


def _offsets(delta, query_size, key_size, block: int) -> tuple[np.ndarray, np.ndarray]:
    """The query-key offsets i - j a tile at ``delta`` = r - c >= 0 spans: from
    max(0, delta B - (key size - 1)) to delta B + (query size - 1)."""
    return np.maximum(delta * block - (key_size - 1), 0.0), delta * block + query_size - 1


def _by_delta(n: float, block: int, touched) -> float:
    """Computed pairs of a pattern whose tiles are touched by offset only: ``touched(delta,
    query size, key size)``. Full rows are counted per delta (T - 1 - delta tiles each), the
    last, partial row separately (it meets its own partial tile at delta 0)."""
    if n <= 0:
        return 0.0
    count, sizes = _tiles(n, block)
    b, full = sizes[-1], float(block)
    delta = np.arange(count, dtype=float)
    rows = delta[: count - 1]
    total = full * full * float((touched(rows, full, full) * (count - 1 - rows)).sum())
    key_sizes = np.where(delta == 0, b, full)
    return total + float((touched(delta, b, key_sizes) * b * key_sizes).sum())


def strided_block_pairs(n: float, stride: int, block: int) -> float:
    """Strided merged head: a tile is touched when its offsets reach one <= l (the window A1)
    or hold a multiple of l (the columns A2)."""

    def touched(delta, q, k):
        low, high = _offsets(delta, q, k, block)
        return (low <= stride) | (np.floor(high / stride) * stride >= low)

    return _by_delta(n, block, touched)


def band_block_pairs(n: float, width: int, block: int) -> float:
    """A causal band of offsets 0..width in tiles (the window half of the strided pattern)."""
    return _by_delta(n, block, lambda delta, q, k: _offsets(delta, q, k, block)[0] <= width)


def causal_block_pairs(n: float, block: int) -> float:
    """Dense causal attention in tiles: every tile on or below the diagonal."""
    if n <= 0:
        return 0.0
    _count, sizes = _tiles(n, block)
    return float((sizes * np.cumsum(sizes)).sum())


def permuted_strided_block_pairs(n: float, stride: int, block: int) -> float:
    """The strided pattern with its column half on a permuted layout (Child et al. 2019,
    §5.5): the window half as a band, and the positions of each residue class mod l gathered
    into one contiguous sequence where the columns become dense causal attention. Offsets 0
    and l belong to both halves and are computed twice (at most 2n pairs too many)."""
    classes = [np.ceil((n - k) / stride) for k in range(min(stride, int(n)))]
    return band_block_pairs(n, stride, block) + sum(causal_block_pairs(m, block) for m in classes)


def fixed_block_pairs(n: float, stride: int, summary: int, block: int) -> float:
    """Fixed merged head (own l-block, and the last c positions of every l-block): key tile c
    is touched by every later query tile when it holds a summary position, and by the query
    tiles whose l-block it reaches; for query tile r those are the tiles c0(r) .. r, found by
    a search, so each row's touched width is a difference of prefix sums."""
    if n <= 0:
        return 0.0
    count, sizes = _tiles(n, block)
    first = np.arange(count) * float(block)  # first and last position of each tile
    last = first + sizes - 1
    period, s = float(stride), float(summary)
    # a summary position (j mod l >= l - c) lies in [first, last] when the tile spans an
    # l-block boundary or either end falls in a summary run
    crosses = np.floor(first / period) != np.floor(last / period)
    summary_tile = crosses | (first % period >= period - s) | (last % period >= period - s)
    reach = np.floor(last / period)  # the last l-block each key tile reaches (non-decreasing)
    c0 = np.searchsorted(reach, np.floor(first / period), side="left")  # first reaching r's
    widths = np.concatenate(([0.0], np.cumsum(sizes)))
    summary_widths = np.concatenate(([0.0], np.cumsum(sizes * summary_tile)))
    rows = np.arange(count)
    touched_width = summary_widths[c0] + widths[rows + 1] - widths[c0]
    return float((sizes * touched_width).sum())
