"""What one forward pass processes on one GPU: the context every op builder reads."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hwsim.dtypes import DType
from hwsim.lean import direct_init
from hwsim.model.ops import Op
from hwsim.profiles.model import ModelProfile


@direct_init
@dataclass(frozen=True)
class Forward:
    """One forward pass: ``batch`` sequences each adding ``new_tokens`` to a ``context``.

    For prefill ``new_tokens == context == S``; for a decode step ``new_tokens == 1`` and
    ``context`` is the number of keys the new token can see (itself included).
    """

    phase: Literal["prefill", "decode"]
    model: ModelProfile
    batch: np.ndarray
    new_tokens: np.ndarray
    context: np.ndarray
    weight: DType
    kv: DType
    act: DType
    compute_dtype: str
    tp: int = 1
    attention_impl: Literal["flash", "naive"] = "flash"
    sram_bytes: float = 228 * 1024
    # TP all-reduces run an engine's custom kernel where it applies (hwsim.perf.custom_allreduce)
    custom_all_reduce: bool = False

    @property
    def tokens(self) -> np.ndarray:
        """Tokens in this forward across the batch (the M of every projection GEMM)."""
        return self.batch * self.new_tokens

    @property
    def heads_per_rank(self) -> int:
        return self.model.n_heads // self.tp

    @property
    def kv_heads_per_rank(self) -> int:
        """KV heads each TP rank holds; replicated when tp exceeds the KV head count."""
        return math.ceil(self.model.kv_heads / self.tp)

    def linear(self, name: str, in_features: float, out_features: float, shard: bool = True) -> Op:
        """A dense projection of every token in the forward: y = x W, W is in x out.

        ``shard``: split over the TP ranks (Megatron column/row parallel).
        """
        div = self.tp if shard else 1
        t = self.tokens
        return Op(
            name=name,
            op_class="matmul",
            flops=2.0 * t * in_features * out_features / div,
            weight_bytes=in_features * out_features / div * self.weight.bytes_per_element,
            act_read_bytes=t * in_features * self.act.bytes_per_element,
            act_write_bytes=t * out_features / div * self.act.bytes_per_element,
            compute_dtype=self.compute_dtype,
            kernel=(
                "gemm",
                {"m": t, "n": out_features / div, "k": in_features, "dtype": self.compute_dtype},
            ),
        )
