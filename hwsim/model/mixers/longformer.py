"""Longformer attention: dilated sliding window plus global tokens (Beltagy et al. 2020,
arXiv 2004.05150, §3.1; Hugging Face ``LongformerSelfAttention``).

``window`` is HF's ``attention_window``: the *total* window, w/2 = h on each side, so a query
scores the band |i - j| <= h*d with (i - j) divisible by the dilation d: 2h + 1 keys away
from the edges (HF's band tensor has ``2 * one_sided_attn_window_size + 1`` columns).
Global tokens are the first g positions: they attend to every key and every query attends
to them. Pairs are distinct (query, key) pairs of the union; HF removes global keys from
the band (``remove_from_windowed_attention_mask``) so it also counts each pair once.
(HF additionally runs the band for global rows and discards it, and pads n to a multiple
of the window; neither is counted here.)

Bidirectional (the encoder, default), with g' = min(g, n), m = n - g' and
K = min(h, floor((m - 1) / d)) (clipped at 0), the band among the m non-global positions
is m + 2 (K m - d K(K+1)/2), so
    pairs(n) = g'(2n - g') + m + 2 (K m - d K(K+1)/2).
Causal (``causal: true``; the autoregressive mode masks the future half of the same band):
    pairs(n) = g'(g'+1)/2 + g' m + m + K m - d K(K+1)/2.
The newest query (position c - 1 >= g) reads g + min(h, floor((c-1-g)/d)) + 1 keys in both
modes; a causal decoder keeps the globals plus the last h*d + 1 positions: min(c, g + h d + 1).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from hwsim.model.forward import Forward
from hwsim.model.mixers.attention import AttentionMixer
from hwsim.model.mixers.base import register
from hwsim.model.ops import Op
from hwsim.profiles.model import ModelProfile


@register
class LongformerAttention(AttentionMixer):
    kind_name: ClassVar[str] = "longformer"
    causal: bool = False
    window: int = Field(ge=2, multiple_of=2, description="HF attention_window: total, w/2 a side")
    dilation: int = Field(default=1, ge=1, description="gap between attended band positions")
    n_global: int = Field(default=0, ge=0, description="leading positions with global attention")

    def _band(self, m: np.ndarray) -> tuple[np.ndarray, float]:
        """K = band offsets (beyond 0) that fit among m positions, and the dilation."""
        d = float(self.dilation)
        k = np.minimum(self.window // 2, np.floor((m - 1) / d))
        return np.maximum(k, 0.0), d

    def pairs_per_head(self, n):
        n = np.asarray(n, dtype=float)
        g = np.minimum(float(self.n_global), n)
        m = n - g
        k, d = self._band(m)
        one_side = k * m - d * k * (k + 1) / 2  # pairs at offsets d, 2d, ..., K d
        if self.causal:
            return g * (g + 1) / 2 + g * m + m + one_side
        return g * (2 * n - g) + m + 2 * one_side

    def keys_per_decode_step(self, context):
        c = np.asarray(context, dtype=float)
        g = float(self.n_global)
        k, _ = self._band(c - g)
        return np.where(c <= g, c, g + k + 1)

    def kv_tokens_held(self, context):
        c = np.asarray(context, dtype=float)
        return np.minimum(c, self.n_global + (self.window // 2) * self.dilation + 1)

    def max_query_key_distance(self) -> float:
        """The band reaches h*d either side; a global token relates every position."""
        return float("inf") if self.n_global else float((self.window // 2) * self.dilation)

    # -- the separate projections of global attention (HF query/key/value_global) ----------
    def param_count(self, model: ModelProfile) -> int:
        q_out = model.n_heads * model.head_size
        global_qkv = 3 * model.d_model * q_out
        if model.qkv_bias or model.linear_bias:
            global_qkv += 3 * q_out
        return super().param_count(model) + global_qkv

    def ops(self, fw: Forward) -> list[Op]:
        """HF projects every token with key_global/value_global and the global tokens with
        query_global when a prefill has global tokens; a decode step's new token is local."""
        base = super().ops(fw)
        if self.n_global == 0 or fw.phase != "prefill":
            return base
        m, dh, h = fw.model, fw.model.head_size, fw.heads_per_rank
        kv = fw.linear("attn.global_kv_proj", m.d_model, 2 * h * dh, shard=False)
        g_tokens = fw.batch * np.minimum(float(self.n_global), fw.new_tokens)
        act = fw.act.bytes_per_element
        q = Op(
            name="attn.global_q_proj",
            op_class="matmul",
            flops=2.0 * g_tokens * m.d_model * h * dh,
            weight_bytes=m.d_model * h * dh * fw.weight.bytes_per_element,
            act_read_bytes=g_tokens * m.d_model * act,
            act_write_bytes=g_tokens * h * dh * act,
            compute_dtype=fw.compute_dtype,
        )
        return [*base, kv, q]
