"""Sparse Transformer factorised attention (Child et al. 2019, arXiv 1904.10509, §4.3, §5.1).

The paper factorises causal attention over two heads A1 and A2 with stride l ~ sqrt(n) and
combines them in one of three ways (§5.1): one pattern per residual block, a *merged* head
that attends to the union of both patterns (eq. 7), or separate heads. Both kinds here count
the **merged head**: query i scores every key in A1(i) | A2(i), each pair once. This is the
configuration the paper trained on Enwik8 ("merged the factorized attention heads", §7.2),
and it is an upper bound on the interleaved variant (which scores one of the two sets).

Positions are 0-based; both kinds are causal only (the paper defines A(i) within j <= i).
Closed forms use n = Q*l + r with Q = floor(n/l), 0 <= r < l.

Pairs are the pattern's; FLOPs are the kernel's: block-sparse kernels compute whole
``block_size`` x ``block_size`` tiles (:mod:`hwsim.model.mixers.blocks`). The strided columns
touch about half the tiles or more (every tile when l < 2B), so at n = 16,384, l = 128, B = 64
a prefill computes 22x the pairs it scores, unless the kernel permutes the layout so each
residue class is contiguous (``permuted: true``, the paper's §5.5 implementation note).
``block_size: 1`` computes exactly the scored pairs. Decode steps read exactly the keys.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from hwsim.model.forward import Forward
from hwsim.model.mixers.attention import AttentionMixer
from hwsim.model.mixers.base import register
from hwsim.model.mixers.blocks import (
    fixed_block_pairs,
    permuted_strided_block_pairs,
    strided_block_pairs,
)

# Tile edge of the block-sparse kernels (OpenAI blocksparse, which the paper used, takes 8 to
# 64; FlashAttention's tiles are 64-128 rows).
DEFAULT_BLOCK = 64


def _require_causal(kind: str, causal: bool) -> bool:
    if not causal:
        raise ValueError(f"{kind!r} is defined for causal attention only (set causal: true)")
    return causal


def _prefill_tiles(fw: Forward, count) -> np.ndarray:
    """Pairs a prefill computes in tiles: count(context) - count(context - new), once per
    distinct shape (a chunk of new tokens computes the tiles of its rows)."""
    context, new = np.broadcast_arrays(
        np.asarray(fw.context, dtype=float), np.asarray(fw.new_tokens, dtype=float)
    )
    pairs = {(c, m): count(c) - count(c - m) for c, m in set(zip(context.flat, new.flat))}
    out = np.array([pairs[(c, m)] for c, m in zip(context.flat, new.flat)], dtype=float)
    return out.reshape(context.shape)


def _last_query(context) -> tuple[np.ndarray, np.ndarray]:
    """(position of the newest query = context - 1, mask of contexts that have one)."""
    c = np.asarray(context, dtype=float)
    return np.maximum(c - 1.0, 0.0), c >= 1.0


@register
class StridedSparseAttention(AttentionMixer):
    """Strided pattern, merged head: A1(i) = {max(0, i-l), ..., i} (the previous l positions
    and i itself) union A2(i) = {j <= i : (i - j) mod l = 0} (every l-th position back).

    A1 holds offsets 0..l and A2 offsets 0, l, 2l, ..., so offset l is shared and the union
    is the same whether or not the window counts i - l: query i scores
    min(i + 1, l) + floor(i / l) keys. Summed over i < n, with m = min(n, l):
    pairs(n) = m(m+1)/2 + (n - m) l  +  l Q(Q-1)/2 + Q r.
    With l = sqrt(n) this is ~ 1.5 n sqrt(n) (paper: O(n sqrt(n))).

    Every earlier position is read again by some later query (every residue mod l recurs),
    so a decoder keeps all ``context`` tokens' K and V.
    """

    kind_name: ClassVar[str] = "sparse_strided"
    stride: int = Field(ge=1, description="stride l (window length and column spacing)")
    block_size: int = Field(default=DEFAULT_BLOCK, ge=1, description="kernel tile edge")
    permuted: bool = Field(default=False, description="columns on a permuted layout (§5.5)")

    @field_validator("causal")
    @classmethod
    def _causal(cls, v: bool) -> bool:
        return _require_causal(cls.kind_name, v)

    def computed_pairs_per_head(self, fw: Forward) -> np.ndarray:
        if fw.phase == "decode":
            return self.new_pairs_per_head(fw)
        tiles = permuted_strided_block_pairs if self.permuted else strided_block_pairs
        return _prefill_tiles(fw, lambda n: tiles(n, self.stride, self.block_size))

    def pairs_per_head(self, n):
        n = np.asarray(n, dtype=float)
        s = float(self.stride)
        m = np.minimum(n, s)
        q = np.floor(n / s)
        r = n - q * s
        return m * (m + 1) / 2 + (n - m) * s + s * q * (q - 1) / 2 + q * r

    def keys_per_decode_step(self, context):
        i, has = _last_query(context)
        s = float(self.stride)
        return np.where(has, np.minimum(i + 1, s) + np.floor(i / s), 0.0)


@register
class FixedSparseAttention(AttentionMixer):
    """Fixed pattern, merged head: blocks of l positions; A1(i) = {j <= i : floor(j/l) =
    floor(i/l)} (i's own block so far) union A2(i) = {j <= i : j mod l >= l - c} (the last c
    "summary" positions of every block).

    A2's positions inside i's own block are already in A1, so query i scores
    (i mod l) + 1 + c floor(i / l) keys, whichever c positions of a block are the summary
    (the paper gives different heads different sub-blocks of length c: the count, and hence
    the FLOPs, are the same for every head). Summed over i < n:
    pairs(n) = Q l(l+1)/2 + r(r+1)/2  +  c (l Q(Q-1)/2 + Q r).

    Later queries read only the summary positions of finished blocks plus the current block,
    so a decoder that evicts a finished block's other positions holds exactly the keys the
    newest query reads: (i mod l) + 1 + c floor(i / l) for i = context - 1.
    """

    kind_name: ClassVar[str] = "sparse_fixed"
    stride: int = Field(ge=1, description="block length l")
    summary: int = Field(ge=1, description="summary positions c at the end of each block")
    block_size: int = Field(default=DEFAULT_BLOCK, ge=1, description="kernel tile edge")

    def computed_pairs_per_head(self, fw: Forward) -> np.ndarray:
        if fw.phase == "decode":
            return self.new_pairs_per_head(fw)
        return _prefill_tiles(
            fw, lambda n: fixed_block_pairs(n, self.stride, self.summary, self.block_size)
        )

    @field_validator("causal")
    @classmethod
    def _causal(cls, v: bool) -> bool:
        return _require_causal(cls.kind_name, v)

    @field_validator("summary")
    @classmethod
    def _summary_fits(cls, v: int, info: ValidationInfo) -> int:
        stride = info.data.get("stride")
        if stride is not None and v > stride:
            raise ValueError(f"summary ({v}) cannot exceed the block length stride ({stride})")
        return v

    def pairs_per_head(self, n):
        n = np.asarray(n, dtype=float)
        s, c = float(self.stride), float(self.summary)
        q = np.floor(n / s)
        r = n - q * s
        return q * s * (s + 1) / 2 + r * (r + 1) / 2 + c * (s * q * (q - 1) / 2 + q * r)

    def keys_per_decode_step(self, context):
        i, has = _last_query(context)
        s, c = float(self.stride), float(self.summary)
        block = np.floor(i / s)
        return np.where(has, i - block * s + 1 + c * block, 0.0)

    def kv_tokens_held(self, context):
        return self.keys_per_decode_step(context)
