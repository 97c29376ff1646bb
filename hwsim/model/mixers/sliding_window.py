"""Sliding-window attention (Mistral 7B v0.1, Gemma local layers; Beltagy et al. 2020).

Query i attends to keys j with i - w < j <= i (causal; window w includes the query itself),
so a prefill of n tokens scores sum_i min(i, w) = n(n+1)/2 for n <= w, else
w(w+1)/2 + (n - w) w pairs; a rolling buffer keeps only the last w tokens' K and V.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator

from hwsim.model.mixers.attention import AttentionMixer
from hwsim.model.mixers.base import register


@register
class SlidingWindowAttention(AttentionMixer):
    kind_name: ClassVar[str] = "sliding_window"
    window: int = Field(ge=1, description="keys visible to a query, itself included")

    @field_validator("causal")
    @classmethod
    def _causal(cls, v: bool) -> bool:
        if not v:
            raise ValueError(
                "'sliding_window' is causal only; a bidirectional band is kind 'longformer'"
            )
        return v

    def pairs_per_head(self, n):
        n = np.asarray(n, dtype=float)
        w = float(self.window)
        inside = np.minimum(n, w)
        return inside * (inside + 1) / 2 + np.maximum(n - w, 0.0) * w

    def keys_per_decode_step(self, context):
        return np.minimum(np.asarray(context, dtype=float), self.window)

    def kv_tokens_held(self, context):
        return np.minimum(np.asarray(context, dtype=float), self.window)

    def max_query_key_distance(self) -> float:
        return float(self.window - 1)
