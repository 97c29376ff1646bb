"""Parameter counts derived from a model profile (formulas.md section 1).

N = sum over layers (mixer + FFN + norms) + token embedding (+ untied LM head)
    + learned position embedding + final norm.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.model.ffn import ffn_param_count
from hwsim.model.layers import layer_groups
from hwsim.profiles.model import ModelProfile


@dataclass(frozen=True)
class ParamCounts:
    layers: int
    embedding: int
    lm_head: int
    other: int
    active_layers: int

    @property
    def total(self) -> int:
        return self.layers + self.embedding + self.lm_head + self.other

    @property
    def active(self) -> int:
        """Parameters a token uses (MoE: top-k routed + shared experts only)."""
        return self.active_layers + self.embedding + self.lm_head + self.other


def norm_params(model: ModelProfile) -> int:
    return model.d_model * (2 if model.norm == "layernorm" else 1)


def count_params(model: ModelProfile) -> ParamCounts:
    layers = active = 0
    for mixer, is_moe, count in layer_groups(model):
        base = mixer.param_count(model) + model.norms_per_layer * norm_params(model)
        layers += count * (base + ffn_param_count(model, is_moe))
        active += count * (base + ffn_param_count(model, is_moe, active_only=True))
    embedding = model.vocab_size * model.d_model
    lm_head = 0 if model.tied_embeddings else embedding
    other = norm_params(model)  # final norm
    if model.position_embedding == "learned":
        other += model.max_position_embeddings * model.d_model
    return ParamCounts(layers, embedding, lm_head, other, active)
