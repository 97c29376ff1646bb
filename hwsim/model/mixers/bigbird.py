"""BigBird block-sparse attention, ITC layout (Zaheer et al. 2020, arXiv 2007.14062, §2 and
App. D; Hugging Face ``BigBirdBlockSparseAttention``).

The sequence is cut into blocks of B = ``block_size`` tokens; the last block may be partial
(HF pads to whole blocks and masks the pad keys). With nb = ceil(n / B) blocks:

* global blocks: the first G/2 and the last G/2 blocks (G = ``global_blocks``, 2 in ITC:
  the first and the last block). Their queries attend to every key and every query
  attends to their keys. G is even so the possibly partial last block is always global.
* every other query block q attends to the non-global blocks of its window
  [q - k, q + k] (``window_blocks`` = 2k + 1, 3 in BigBird; truncated at the ends, no
  wrap-around, as in HF), plus ``random_blocks`` = r distinct blocks drawn (fixed by
  ``seed``) from the non-global blocks outside its window; fewer when fewer exist.

Pairs count real tokens only (padding excluded). All non-global blocks are full, so with
M = max(nb - G, 0) non-global blocks and a(t) = min(t, k) + min(M-1-t, k) + 1 non-global
window blocks of the t-th of them, query block t sees min(a(t) + r, M) non-global key
blocks whichever blocks were drawn, and
    pairs(n) = n^2 - (M B)^2 + B^2 * sum_{t<M} min(a(t) + r, M).
When M >= 2k + 1 + r the cap never binds and the sum is M + 2(K M - K(K+1)/2) + r M with
K = min(k, M - 1); ~ (2k + 1 + r + 2 G) B n, linear in n (paper: O(n)).
:func:`hwsim.model.mixers.masks.bigbird` builds the same pattern with an explicit draw.

Differences from HF (documented, not modelled): HF falls back to full attention when
n <= (5 + 2r) B; its draw for the rows next to the last global block may overlap the
window; in eval mode it skips the draw (every random slot points at block 0). The fallback
makes short inputs dense; the other two change which keys a middle row scores, not the
2k + 1 + r + G blocks it computes.

Encoder only: a query appended at the end falls in the last (global) block and reads all
``context`` keys.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator

from hwsim.model.mixers.attention import AttentionMixer
from hwsim.model.mixers.base import register


@register
class BigBirdAttention(AttentionMixer):
    kind_name: ClassVar[str] = "bigbird"
    causal: bool = False
    block_size: int = Field(default=64, ge=1, description="tokens per block B")
    window_blocks: int = Field(default=3, ge=1, description="sliding blocks, odd, centred")
    random_blocks: int = Field(default=3, ge=0, description="random key blocks per query block")
    global_blocks: int = Field(
        default=2, ge=2, multiple_of=2, description="global blocks, half first, half last"
    )
    seed: int = Field(default=0, ge=0, description="fixes the random block draw")

    @field_validator("causal")
    @classmethod
    def _bidirectional(cls, v: bool) -> bool:
        if v:
            raise ValueError("'bigbird' block-sparse attention is bidirectional (encoder) only")
        return v

    @field_validator("window_blocks")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"window_blocks must be odd (centred on the query block), got {v}")
        return v

    def nonglobal_block_count(self, n) -> np.ndarray:
        n = np.asarray(n, dtype=float)
        return np.maximum(np.ceil(n / self.block_size) - self.global_blocks, 0.0)

    def pairs_per_head(self, n):
        n = np.asarray(n, dtype=float)
        b = float(self.block_size)
        k, r = (self.window_blocks - 1) // 2, self.random_blocks
        m = self.nonglobal_block_count(n)
        # M large enough that no row runs out of blocks to draw from: closed form.
        kk = np.clip(np.minimum(k, m - 1), 0.0, None)
        wide = m + 2 * (kk * m - kk * (kk + 1) / 2) + r * m
        # Otherwise M < 2k + 1 + r: a bounded sum over the (few) non-global blocks.
        t = np.arange(2 * k + 1 + r, dtype=float)
        mm = m[..., None]
        a = np.minimum(t, k) + np.minimum(mm - 1 - t, k) + 1
        narrow = np.where(t < mm, np.minimum(a + r, mm), 0.0).sum(axis=-1)
        blocks = np.where(m >= 2 * k + 1 + r, wide, narrow)
        return n * n - (m * b) ** 2 + b * b * blocks

    def keys_per_decode_step(self, context):
        return np.asarray(context, dtype=float)
