"""Transformer decoders: the Llama-like families (RMSNorm, gated MLP, optional MoE), Falcon,
GPT-2, GPT-NeoX and OPT. Ignored, as the schema cannot express them: Gemma logit soft-caps,
Gemma-3 local RoPE base, q/k RMSNorms (Gemma-3, Qwen3: 2 x head_dim weights a layer), partial
rotary (GPT-NeoX), Llama's o_proj bias when attention_bias is set, Qwen-MoE's 1-wide
shared_expert_gate (d_model weights a layer) and OPT's 2 spare position rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hwsim.profiles.hf.common import QWEN, Fields, HFConfig, attention_layout, base, dense_prefix
from hwsim.profiles.hf.common import rope as rope_block

LLAMA_LIKE = {"llama", "mistral", "mixtral", "phi3", "gemma", "gemma2", "gemma3_text"} | QWEN

# Defaults of the transformers config classes for keys that released configs often omit.
_TIED = {"gemma", "gemma2", "gemma3_text", "falcon", "gpt2", "opt"}
DEFAULTS: dict[str, Fields] = {
    mt: {"tie_word_embeddings": mt in _TIED, "rope_theta": 1e4}
    for mt in LLAMA_LIKE | {"falcon", "gpt2", "gpt_neox", "opt"}
}
DEFAULTS["mixtral"]["rope_theta"] = 1e6
DEFAULTS["qwen2"]["max_window_layers"] = 28
for _mt in ("qwen3", "qwen3_moe"):
    DEFAULTS[_mt]["head_dim"] = 128
DEFAULTS["falcon"]["max_position_embeddings"] = 2048
DEFAULTS["opt"]["max_position_embeddings"] = 2048
DEFAULTS["gemma3_text"].update(rope_theta=1e6, vocab_size=262208, sliding_window=4096)
DEFAULTS["gemma3_text"].update(max_position_embeddings=131072, sliding_window_pattern=6)


def llama_like(cfg: HFConfig) -> Fields:
    """Llama, Mistral, Mixtral, Qwen2/3 (dense and MoE), Phi-3 and Gemma 1/2/3: pre-norm
    RMSNorm, gated MLP (Gemma's GELU MLP is gated too, so gating follows the family, not
    ``hidden_act``)."""
    fields = base(cfg)
    qkv_bias = cfg.model_type in ("qwen2", "qwen2_moe") or bool(cfg.get("attention_bias"))
    return {
        **fields,
        "n_kv_heads": cfg.get("num_key_value_heads", default=fields["n_heads"]),
        "head_dim": cfg.get("head_dim", default=fields["d_model"] // fields["n_heads"]),
        "rope": rope_block(cfg),
        "norms_per_layer": 4 if cfg.model_type in ("gemma2", "gemma3_text") else 2,
        "qkv_bias": qkv_bias,
        "ffn": {"type": "gated", "intermediate_size": cfg.need("intermediate_size"), **_moe(cfg)},
        **attention_layout(cfg),
    }


def _moe(cfg: HFConfig) -> Fields:
    """``moe`` block: Mixtral's num_local_experts on every layer, or Qwen's num_experts on the
    layers ``(i + 1) % decoder_sparse_step == 0`` past ``mlp_only_layers``, with Qwen2-MoE's
    one shared expert of ``shared_expert_intermediate_size``."""
    if cfg.get("num_local_experts"):
        experts, expert_size = cfg.get("num_local_experts"), cfg.need("intermediate_size")
    elif cfg.model_type in ("qwen2_moe", "qwen3_moe") and cfg.get("num_experts"):
        experts, expert_size = cfg.get("num_experts"), cfg.need("moe_intermediate_size")
    else:
        return {}
    moe: Fields = {
        "n_experts": experts,
        "top_k": cfg.need("num_experts_per_tok"),
        "expert_intermediate_size": expert_size,
    }
    step = int(cfg.get("decoder_sparse_step", default=1))
    if step > 1:
        moe.update(layer_period=step, layer_offset=step - 1)
    if dense := dense_prefix(cfg, "mlp_only_layers"):
        moe["first_dense_layers"] = dense
    if shared := cfg.get("shared_expert_intermediate_size"):
        moe.update(n_shared_experts=1, shared_intermediate_size=shared)
    return {"moe": moe}


def falcon(cfg: HFConfig) -> Fields:
    """Falcon: parallel attention/MLP, LayerNorm, GELU MLP; new_decoder_architecture (40B,
    180B) means grouped KV heads and two LayerNorms per block; multi_query (7B) one KV head."""
    fields = base(cfg)
    d, heads = fields["d_model"], fields["n_heads"]
    refined_web_40b = cfg.data.get("model_type") == "RefinedWeb"  # pre-port name of the new arch
    new_arch = bool(cfg.get("new_decoder_architecture", default=refined_web_40b))
    mqa_kv = 1 if cfg.get("multi_query", default=True) else heads
    kv = cfg.get("num_kv_heads", "n_head_kv", default=heads) if new_arch else mqa_kv
    parallel = bool(new_arch or cfg.get("parallel_attn", default=True))
    # ln_attn + ln_mlp (new architecture); one shared input_layernorm when parallel
    norms = cfg.get("num_ln_in_parallel_attn", default=2) if new_arch else 2 - parallel
    alibi, ffn_size = bool(cfg.get("alibi")), cfg.get("ffn_hidden_size", default=4 * d)
    return {
        **fields,
        "n_kv_heads": kv,
        "head_dim": d // heads,
        "position_embedding": "alibi" if alibi else "rope",
        "rope": None if alibi else rope_block(cfg),
        "norm": "layernorm",
        "norms_per_layer": norms,
        "linear_bias": bool(cfg.get("bias")),
        "parallel_attention_mlp": parallel,
        "ffn": {"type": "plain", "intermediate_size": ffn_size},
    }


def gpt2(cfg: HFConfig) -> Fields:
    """GPT-2: learned positions, LayerNorm, biases everywhere, 4x GELU MLP."""
    fields = base(cfg)
    ffn = {"type": "plain", "intermediate_size": cfg.get("n_inner", default=4 * fields["d_model"])}
    gpt2 = {"position_embedding": "learned", "norm": "layernorm", "linear_bias": True}
    return {**fields, **gpt2, "ffn": ffn}


def gpt_neox(cfg: HFConfig) -> Fields:
    """GPT-NeoX / Pythia: rotary, LayerNorm, biases, GELU MLP, optional parallel residual."""
    return {
        **base(cfg),
        "rope": rope_block(cfg, "rotary_emb_base", "rope_theta"),
        "norm": "layernorm",
        "linear_bias": bool(cfg.get("attention_bias", default=True)),
        "parallel_attention_mlp": bool(cfg.get("use_parallel_residual", default=True)),
        "ffn": {"type": "plain", "intermediate_size": cfg.need("intermediate_size")},
    }


def opt(cfg: HFConfig) -> Fields:
    """OPT (Zhang et al. 2022, arXiv 2205.01068): learned positions, LayerNorm, biases, ReLU MLP
    of ``ffn_dim``, tied embeddings. A ``word_embed_proj_dim`` other than ``hidden_size``
    (OPT-350m's 512-wide embedding with project_in/out) is not in the schema."""
    fields = base(cfg)
    if cfg.get("word_embed_proj_dim", default=fields["d_model"]) != fields["d_model"]:
        msg = "an embedding narrower than hidden_size (project_in/out) is not in the schema"
        raise cfg.error("word_embed_proj_dim", msg)
    return {
        **fields,
        "position_embedding": "learned",
        "norm": "layernorm",
        "linear_bias": bool(cfg.get("enable_bias", default=True)),
        "ffn": {"type": "plain", "intermediate_size": cfg.need("ffn_dim")},
    }


FAMILIES: dict[str, Callable[[HFConfig], dict[str, Any]]] = {
    "falcon": falcon,
    "gpt2": gpt2,
    "gpt_neox": gpt_neox,
    "opt": opt,
    **dict.fromkeys(LLAMA_LIKE, llama_like),
}
