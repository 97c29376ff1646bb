"""Attention sinks (StreamingLLM: Xiao et al. 2023, arXiv 2309.17453, §3.2).

The cache keeps the first ``n_sink`` tokens (the "attention sinks", 4 in the paper) plus a
rolling window of the most recent ``window`` tokens; every query attends to what the cache
holds. Query i (0-based, causal) therefore scores keys j <= i with j < n_sink or
i - j < window (the window includes i itself): min(i + 1, T) keys with T = n_sink + window,
the same count as a sliding window of T, so
    pairs(n) = m(m+1)/2 + (n - m) T,  m = min(n, T);
a decode step reads, and the cache holds, min(context, T) tokens.

This is the per-token streaming pattern. The reference implementation evicts between
inputs, so tokens of one long prompt chunk attend densely to each other (and to the cache);
that prefill is the dense causal count over the chunk, not this one.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator

from hwsim.model.mixers.attention import AttentionMixer
from hwsim.model.mixers.base import register


@register
class StreamingAttention(AttentionMixer):
    kind_name: ClassVar[str] = "streaming"
    n_sink: int = Field(default=4, ge=0, description="initial tokens always kept")
    window: int = Field(ge=1, description="recent tokens kept, the query itself included")

    @field_validator("causal")
    @classmethod
    def _causal(cls, v: bool) -> bool:
        if not v:
            raise ValueError("'streaming' attention is causal only (set causal: true)")
        return v

    @property
    def cache_tokens(self) -> int:
        return self.n_sink + self.window

    def pairs_per_head(self, n):
        n = np.asarray(n, dtype=float)
        t = float(self.cache_tokens)
        m = np.minimum(n, t)
        return m * (m + 1) / 2 + (n - m) * t

    def keys_per_decode_step(self, context):
        return np.minimum(np.asarray(context, dtype=float), self.cache_tokens)

    def kv_tokens_held(self, context):
        return np.minimum(np.asarray(context, dtype=float), self.cache_tokens)

    def max_query_key_distance(self) -> float:
        """StreamingLLM assigns positions by place in the cache, not in the text (§3.2), so
        no distance exceeds the cache it holds."""
        return float(self.cache_tokens - 1)
