"""Paged KV-cache block arithmetic (vLLM's block manager, counted rather than mapped).

A sequence holding ``c`` tokens of KV uses ceil(c / block_size) blocks. The simulator only
needs counts: no prefix sharing between requests is modelled (each request's cached prefix
occupies its own blocks).
"""

from __future__ import annotations

import numpy as np


def blocks_for_tokens(tokens: np.ndarray | int, block_size_tokens: int) -> np.ndarray | int:
    """ceil(tokens / block_size_tokens), vectorised over ``tokens``."""
    return -(-tokens // block_size_tokens)


def kv_capacity_tokens(kv_capacity_bytes: float, kv_bytes_per_token: float) -> int:
    """Whole tokens of KV that fit in ``kv_capacity_bytes`` (floor)."""
    if not kv_bytes_per_token > 0:
        raise ValueError(f"kv_bytes_per_token must be > 0, got {kv_bytes_per_token}")
    return int(kv_capacity_bytes // kv_bytes_per_token)


class DecodeBlockDemand:
    """How many new blocks the decoding sequences need at the next decode step, in O(1).

    Every decoding sequence gains one token per decode step. With a global decode-step counter
    D, a sequence's context after step D is ``base + D`` for a per-sequence constant ``base``;
    it needs a new block at step D + 1 exactly when (base + D) % block_size == 0, i.e. when
    base % block_size == (-D) % block_size. Counting sequences per residue of ``base`` makes
    the demand of the next step one list lookup, instead of a pass over the batch.
    """

    __slots__ = ("block_size", "counts")

    def __init__(self, block_size_tokens: int):
        self.block_size = block_size_tokens
        self.counts = [0] * block_size_tokens

    def add(self, base: int) -> None:
        self.counts[base % self.block_size] += 1

    def remove(self, base: int) -> None:
        self.counts[base % self.block_size] -= 1

    def at_next_step(self, decode_step: int) -> int:
        """New blocks needed by the step after ``decode_step`` steps have run."""
        return self.counts[-decode_step % self.block_size]
