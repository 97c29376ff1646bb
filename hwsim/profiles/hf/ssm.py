"""State-space families: Mamba (Gu & Dao, arXiv 2312.00752), FalconMamba (arXiv 2410.05355),
Mamba-2 (Dao & Gu, arXiv 2405.21060) and the Jamba hybrid (arXiv 2403.19887), with the
parameter layout of the HF ``modeling_mamba``, ``modeling_mamba2`` and ``modeling_jamba``.

A file's ``intermediate_size`` wins over ``expand`` (transformers sets the attribute from the
file after deriving it: falcon-mamba-7b states expand 16 but intermediate_size 8192 = 2 x 4096).
SSMs have no position table or hard context limit and their configs state no trained length:
``max_position_embeddings`` defaults to 2048, the Pile training length of the Mamba models
(arXiv 2312.00752 section 4.2); it only labels longer inputs as past the trained length.
FalconMamba's RMSNorms on B, C and dt have no weights, so they add no parameters.
"""

from __future__ import annotations

from hwsim.profiles.hf.common import Fields, HFConfig, embeddings

_SSM = {"position_embedding": "none", "norm": "rmsnorm", "norms_per_layer": 1}
DEFAULTS: dict[str, Fields] = {
    "mamba": {"tie_word_embeddings": True, "expand": 2, "state_size": 16, "conv_kernel": 4},
    "mamba2": {"tie_word_embeddings": False, "expand": 2, "state_size": 128, "conv_kernel": 4},
    "jamba": {"tie_word_embeddings": False, "max_position_embeddings": 262144},
}
DEFAULTS["falcon_mamba"] = DEFAULTS["mamba"]
DEFAULTS["mamba2"].update(head_dim=64, n_groups=8, chunk_size=256, rms_norm=True)
DEFAULTS["jamba"].update(attn_layer_period=8, attn_layer_offset=4, expert_layer_period=2)
DEFAULTS["jamba"].update(expert_layer_offset=1, num_experts=16, num_experts_per_tok=2)
DEFAULTS["jamba"].update(mamba_d_state=16, mamba_d_conv=4, mamba_expand=2)
for _defaults in DEFAULTS.values():
    _defaults.setdefault("max_position_embeddings", 2048)


def _no_ffn(cfg: HFConfig) -> Fields:
    return {"ffn": {"type": "none"}, "max_position_embeddings": cfg.need("max_position_embeddings")}


def _expand(cfg: HFConfig, d_model: int, expand_key: str) -> int:
    inner = cfg.get("intermediate_size") if expand_key == "expand" else None
    return cfg.ratio(inner, d_model, "intermediate_size") if inner else cfg.need(expand_key)


def mamba(cfg: HFConfig) -> Fields:
    """Mamba-1 blocks (FalconMamba too): RMSNorm then the selective-SSM mixer, no MLP."""
    fields = embeddings(cfg)
    mixer = {
        "kind": "mamba",
        "d_state": cfg.need("state_size"),
        "d_conv": cfg.need("conv_kernel"),
        "expand": _expand(cfg, fields["d_model"], "expand"),
        "dt_rank": cfg.get("time_step_rank", default="auto"),
        "conv_bias": bool(cfg.get("use_conv_bias", default=True)),
        "bias": bool(cfg.get("use_bias")),
    }
    return {**fields, **_SSM, **_no_ffn(cfg), "mixer": mixer}


def mamba2(cfg: HFConfig) -> Fields:
    """Mamba-2 (SSD) blocks; ``num_heads x head_dim`` must be the inner width."""
    fields = embeddings(cfg)
    expand = _expand(cfg, fields["d_model"], "expand")
    heads, headdim = cfg.need("num_heads"), cfg.need("head_dim")
    if heads * headdim != expand * fields["d_model"]:
        msg = f"num_heads x head_dim = {heads * headdim} is not the inner width"
        raise cfg.error("num_heads", f"{msg} {expand * fields['d_model']} (expand x hidden_size)")
    mixer = {
        "kind": "mamba2",
        "d_state": cfg.need("state_size"),
        "d_conv": cfg.need("conv_kernel"),
        "expand": expand,
        "headdim": headdim,
        "ngroups": cfg.need("n_groups"),
        "chunk_size": cfg.need("chunk_size"),
        "conv_bias": bool(cfg.get("use_conv_bias", default=True)),
        "bias": bool(cfg.get("use_bias")),
        "rmsnorm": bool(cfg.get("rms_norm")),
    }
    return {**fields, **_SSM, **_no_ffn(cfg), "mixer": mixer}


def jamba(cfg: HFConfig) -> Fields:
    """Jamba: attention at layers ``i % attn_layer_period == attn_layer_offset``, Mamba-1 with
    RMSNorms on dt, B and C elsewhere; MoE at ``i % expert_layer_period ==
    expert_layer_offset`` when num_experts > 1, dense SwiGLU MLP otherwise. No positional
    encoding (the Mamba layers carry position)."""
    fields = embeddings(cfg)
    heads = cfg.need("num_attention_heads")
    ffn: Fields = {"type": "gated", "intermediate_size": cfg.need("intermediate_size")}
    if cfg.need("num_experts") > 1:
        ffn["moe"] = {
            "n_experts": cfg.need("num_experts"),
            "top_k": cfg.need("num_experts_per_tok"),
            "expert_intermediate_size": ffn["intermediate_size"],
            **_cycle(cfg, "expert_layer_period", "expert_layer_offset", "layer_period"),
        }
    return {
        **fields,
        "n_heads": heads,
        "n_kv_heads": cfg.get("num_key_value_heads", default=heads),
        "head_dim": fields["d_model"] // heads,
        "max_position_embeddings": cfg.need("max_position_embeddings"),
        "position_embedding": "none",
        "ffn": ffn,
        "layer_pattern": _jamba_pattern(cfg),
    }


def _jamba_pattern(cfg: HFConfig) -> list[Fields]:
    cycle = _cycle(cfg, "attn_layer_period", "attn_layer_offset", "period")
    window = cfg.get("sliding_window")
    attention = {"kind": "sliding_window", "window": window} if window else {"kind": "attention"}
    ssm = {
        "kind": "mamba",
        "d_state": cfg.need("mamba_d_state"),
        "d_conv": cfg.need("mamba_d_conv"),
        "expand": cfg.need("mamba_expand"),
        "dt_rank": cfg.get("mamba_dt_rank", default="auto"),
        "conv_bias": bool(cfg.get("mamba_conv_bias", default=True)),
        "bias": bool(cfg.get("mamba_proj_bias")),
        "inner_layernorms": bool(cfg.get("mamba_inner_layernorms", default=True)),
    }
    return [attention if i == cycle["layer_offset"] else ssm for i in range(cycle["period"])]


def _cycle(cfg: HFConfig, period_key: str, offset_key: str, name: str) -> Fields:
    """``{name: period, 'layer_offset': offset}``; the offset must lie inside the period."""
    period, offset = int(cfg.need(period_key)), int(cfg.need(offset_key))
    if not 0 <= offset < period:
        raise cfg.error(offset_key, f"offset {offset} is not in 0..{period - 1} ({period_key})")
    return {name: period, "layer_offset": offset}


FAMILIES = {"mamba": mamba, "falcon_mamba": mamba, "mamba2": mamba2, "jamba": jamba}
