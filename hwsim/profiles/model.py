"""Model profile schema: the architecture as published (HF config.json field meanings).

Layers are described by a default ``mixer`` (the token-mixing block: an attention variant or a
state-space layer) and an optional cyclic ``layer_pattern`` of mixers, so hybrids (Jamba) and
alternating local/global attention (Gemma) are lists, not code. Mixer kinds are registered
classes in :mod:`hwsim.model.mixers`. The profile keeps the specs as data; building and checking
the mixers is :mod:`hwsim.model.layers`' job (the loader calls it).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from hwsim.profiles.sourced import STRICT, SourcedNumber


class RopeScaling(BaseModel):
    """RoPE context extension (HF ``rope_scaling``). Types: linear (Position Interpolation,
    Chen et al. 2023), dynamic / ntk (NTK-aware), yarn (Peng et al. 2023), llama3, longrope."""

    model_config = STRICT
    type: Literal["linear", "dynamic", "ntk", "yarn", "llama3", "longrope"]
    factor: float = Field(gt=0, le=1024, description="context multiplier (published: 2 to 128)")
    original_max_position_embeddings: int | None = Field(default=None, gt=0)
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    beta_fast: float | None = None
    beta_slow: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None


class Rope(BaseModel):
    model_config = STRICT
    theta: float = Field(gt=0)
    scaling: RopeScaling | None = None


class MoE(BaseModel):
    """Mixture of experts in the FFN. MoE layers: those with index >= first_dense_layers and
    (index - layer_offset) % layer_period == 0."""

    model_config = STRICT
    n_experts: int = Field(ge=1)
    top_k: int = Field(ge=1)
    expert_intermediate_size: int = Field(ge=1)
    n_shared_experts: int = Field(default=0, ge=0)
    shared_intermediate_size: int | None = Field(default=None, ge=1)
    layer_period: int = Field(default=1, ge=1)
    layer_offset: int = Field(default=0, ge=0)
    first_dense_layers: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _top_k_le_experts(self) -> MoE:
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k ({self.top_k}) exceeds n_experts ({self.n_experts})")
        return self


class FFN(BaseModel):
    model_config = STRICT
    type: Literal["gated", "plain", "none"]
    intermediate_size: int = Field(default=0, ge=0)
    moe: MoE | None = None

    @property
    def n_matrices(self) -> int:
        """gated (SwiGLU/GeGLU): gate, up, down; plain (GELU MLP): up, down."""
        return {"gated": 3, "plain": 2, "none": 0}[self.type]


class ModelProfile(BaseModel):
    model_config = STRICT
    id: str
    name: str
    family: str
    source: str = Field(min_length=1, description="where the architecture numbers come from")
    published_params: SourcedNumber | None = None
    architecture: Literal["decoder", "encoder"] = "decoder"
    n_layers: int = Field(ge=1)
    d_model: int = Field(ge=1)
    n_heads: int = Field(default=0, ge=0)
    n_kv_heads: int | None = Field(default=None, ge=1)
    head_dim: int | None = Field(default=None, ge=1)
    vocab_size: int = Field(ge=1)
    tied_embeddings: bool = False
    max_position_embeddings: int = Field(ge=1)
    position_embedding: Literal["rope", "learned", "alibi", "none"] = "rope"
    rope: Rope | None = None
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norms_per_layer: int = Field(default=2, ge=0)
    linear_bias: bool = False
    qkv_bias: bool = False
    parallel_attention_mlp: bool = False
    ffn: FFN
    mixer: dict[str, Any] = Field(default_factory=lambda: {"kind": "attention"})
    layer_pattern: list[dict[str, Any]] | None = None
    notes: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ModelProfile:
        if self.n_heads and self.n_kv_heads and self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})"
            )
        return self

    # -- derived quantities --------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_size(self) -> int:
        if self.head_dim:
            return self.head_dim
        if not self.n_heads:
            return 0
        return self.d_model // self.n_heads

    def is_moe_layer(self, index: int) -> bool:
        moe = self.ffn.moe
        if moe is None or index < moe.first_dense_layers:
            return False
        return (index - moe.layer_offset) % moe.layer_period == 0

    @property
    def trained_context_tokens(self) -> int:
        """Context the weights were trained for, before any RoPE scaling."""
        scaling = self.rope.scaling if self.rope else None
        if scaling and scaling.original_max_position_embeddings:
            return scaling.original_max_position_embeddings
        return self.max_position_embeddings

    @property
    def rope_scaling_factor(self) -> float:
        scaling = self.rope.scaling if self.rope else None
        return scaling.factor if scaling else 1.0

    @property
    def max_context_tokens(self) -> int:
        """Supported context: trained context x RoPE scaling factor (at least the config's)."""
        scaled = int(self.trained_context_tokens * self.rope_scaling_factor)
        return max(scaled, self.max_position_embeddings)
