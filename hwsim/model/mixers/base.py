"""The mixer protocol and its registry.

A mixer reports, per layer and per GPU: its parameter count, the cache it holds per sequence
(KV or recurrent state) and the ops of a forward pass. Attention-style mixers also report
the query-key pairs they score, which :mod:`hwsim.inference.context` tabulates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from hwsim.dtypes import DType
    from hwsim.model.forward import Forward
    from hwsim.model.ops import Op
    from hwsim.profiles.model import ModelProfile

REGISTRY: dict[str, type[Mixer]] = {}


def register(cls: type[Mixer]) -> type[Mixer]:
    """Class decorator: make ``cls`` available to model profiles under ``cls.kind_name``."""
    name = cls.kind_name
    if name in REGISTRY:
        raise RuntimeError(f"mixer kind {name!r} registered twice ({REGISTRY[name]} and {cls})")
    REGISTRY[name] = cls
    return cls


class Mixer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    kind_name: ClassVar[str] = ""
    is_attention: ClassVar[bool] = False
    # Row-parallel outputs this block all-reduces under tensor parallelism (Megatron: one
    # after the attention/SSM output projection; RWKV's channel-mix inside the block adds one).
    tp_all_reduces: ClassVar[int] = 1

    kind: str

    def check_model(self, model: ModelProfile) -> None:
        """Raise ValueError when the model lacks a dimension this mixer needs."""

    def param_count(self, model: ModelProfile) -> int:
        raise NotImplementedError

    def kv_bytes_per_token(self, model: ModelProfile, kv: DType, tp: int) -> float:
        """Cache bytes one more held token costs in this layer on one TP rank."""
        return 0.0

    def kv_tokens_held(self, context: np.ndarray) -> np.ndarray:
        """Tokens whose keys/values this layer keeps at ``context`` (a window caps it)."""
        return np.asarray(context, dtype=float)

    def state_bytes_per_sequence(self, model: ModelProfile, tp: int) -> float:
        """Fixed-size recurrent state one sequence holds in this layer on one TP rank."""
        return 0.0

    def cache_bytes_per_sequence(
        self, model: ModelProfile, context: np.ndarray, kv: DType, tp: int
    ) -> np.ndarray:
        """KV plus state bytes one sequence holds in this layer on one TP rank at ``context``."""
        held = self.kv_tokens_held(context)
        return held * self.kv_bytes_per_token(model, kv, tp) + self.state_bytes_per_sequence(
            model, tp
        )

    def ops(self, fw: Forward) -> list[Op]:
        """Ops of this layer's mixer for one forward pass on one GPU."""
        raise NotImplementedError

    # Attention accounting (zero for attention-free mixers).
    def pairs_per_head(self, n: np.ndarray) -> np.ndarray:
        """Query-key pairs scored in a prefill of ``n`` tokens, per head."""
        return np.zeros_like(np.asarray(n, dtype=float))

    def keys_per_decode_step(self, context: np.ndarray) -> np.ndarray:
        """Keys one new query reads at ``context``."""
        return np.zeros_like(np.asarray(context, dtype=float))

    def max_query_key_distance(self) -> float:
        """The largest position distance |i - j| this layer relates at any length; inf when
        unbounded (full attention, or a recurrent state that carries the whole prefix)."""
        return float("inf")

    def score_matrix_elements_per_head(self, n: np.ndarray) -> np.ndarray:
        """Elements of the score matrix a naive implementation materialises, per head."""
        return np.zeros_like(np.asarray(n, dtype=float))
