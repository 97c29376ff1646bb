"""DeepSeek-V2 / V3 (arXiv 2405.04434, 2412.19437): multi-head latent attention and DeepSeekMoE.

Layers ``i >= first_k_dense_replace`` with ``i % moe_layer_freq == 0`` are MoE (HF
``modeling_deepseek``), which is the schema's first_dense_layers / layer_period. Not in the
schema, and left out: the multi-token-prediction layers (``num_nextn_predict_layers``, outside
the published main-model totals) and V3's router ``e_score_correction_bias`` (n_routed_experts
weights per MoE layer).
"""

from __future__ import annotations

from hwsim.profiles.hf.common import Fields, HFConfig, base, rope

DEFAULTS: dict[str, Fields] = {
    mt: {"tie_word_embeddings": False, "rope_theta": 1e4, "moe_layer_freq": 1}
    for mt in ("deepseek_v2", "deepseek_v3")
}


def deepseek(cfg: HFConfig) -> Fields:
    """MLA mixer plus a gated FFN whose MoE layers hold routed and shared experts."""
    fields = base(cfg)
    return {
        **fields,
        "n_kv_heads": cfg.get("num_key_value_heads", default=fields["n_heads"]),
        "head_dim": cfg.need("v_head_dim"),  # sizes nothing: the mla mixer has its own dims
        "rope": rope(cfg),
        "ffn": {"type": "gated", "intermediate_size": cfg.need("intermediate_size"), **_moe(cfg)},
        "mixer": _mla(cfg),
    }


def _mla(cfg: HFConfig) -> Fields:
    """``mla`` mixer spec; ``q_lora_rank: null`` (V2-Lite) is a plain q_proj."""
    spec: Fields = {"kind": "mla", "q_lora_rank": cfg.get("q_lora_rank")}
    for key in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
        spec[key] = cfg.need(key)
    return spec


def _moe(cfg: HFConfig) -> Fields:
    if not cfg.get("n_routed_experts"):
        return {}
    return {
        "moe": {
            "n_experts": cfg.get("n_routed_experts"),
            "top_k": cfg.need("num_experts_per_tok"),
            "expert_intermediate_size": cfg.need("moe_intermediate_size"),
            "n_shared_experts": cfg.get("n_shared_experts", default=0),  # each expert-sized
            "layer_period": cfg.need("moe_layer_freq"),
            "first_dense_layers": cfg.get("first_k_dense_replace", default=0),
        }
    }


FAMILIES = {"deepseek_v2": deepseek, "deepseek_v3": deepseek}
