"""The base of the memory mixers (compressive, memory tokens, Infini-attention, kNN memory):
each manages a decoder's cache, so it is causal only and refuses an encoder."""

from __future__ import annotations

from pydantic import field_validator

from hwsim.model.mixers.attention import AttentionMixer
from hwsim.profiles.model import ModelProfile


class DecoderMemoryMixer(AttentionMixer):
    """Causal attention over a managed cache (no kind of its own: it registers nothing)."""

    @field_validator("causal")
    @classmethod
    def _causal(cls, v: bool) -> bool:
        if not v:
            raise ValueError(f"{cls.kind_name!r} attention is causal only (set causal: true)")
        return v

    def check_model(self, model: ModelProfile) -> None:
        super().check_model(model)
        if model.architecture != "decoder":
            raise ValueError(f"mixer {self.kind!r} needs a decoder (a causal cache)")
