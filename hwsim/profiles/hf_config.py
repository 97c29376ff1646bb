"""Build a :class:`ModelProfile` from a Hugging Face ``config.json`` (read locally, no network).

model_type: llama, mistral, mixtral, qwen2, phi3, gemma, gemma2, gemma3_text (gemma3 via its
text_config), falcon (and the pre-port RefinedWeb types), gpt2, gpt_neox. Keys the transformers
config class defaults (tied embeddings, RoPE base ...) default the same way; core dimensions are
required. Ignored, as the schema cannot express them: Gemma logit soft-caps, Gemma-3 q/k norms
and local RoPE base, partial rotary (gpt_neox), Llama's o_proj bias when attention_bias is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hwsim.errors import ProfileError
from hwsim.profiles.model import ModelProfile
from hwsim.safe_read import excerpt, load_json_object, read_text

_LLAMA_LIKE = {"llama", "mistral", "mixtral", "qwen2", "phi3", "gemma", "gemma2", "gemma3_text"}
SUPPORTED = sorted(_LLAMA_LIKE | {"gemma3", "falcon", "gpt2", "gpt_neox"})
_ALIASES = {"RefinedWeb": "falcon", "RefinedWebModel": "falcon"}

# Defaults of the transformers config classes for keys that released configs often omit.
_TIED = {"gemma", "gemma2", "gemma3_text", "falcon", "gpt2"}
_DEFAULTS: dict[str, dict[str, Any]] = {
    mt: {"tie_word_embeddings": mt in _TIED, "rope_theta": 1e4} for mt in SUPPORTED
}
_DEFAULTS["mixtral"]["rope_theta"] = 1e6
_DEFAULTS["qwen2"]["max_window_layers"] = 28
_DEFAULTS["falcon"]["max_position_embeddings"] = 2048
_DEFAULTS["gemma3_text"].update(rope_theta=1e6, vocab_size=262208, sliding_window=4096)
_DEFAULTS["gemma3_text"].update(max_position_embeddings=131072, sliding_window_pattern=6)
_ROPE_TYPES = {"linear", "dynamic", "ntk", "yarn", "llama3", "longrope"}
_ROPE_KEYS: tuple[str, ...] = ("original_max_position_embeddings", "low_freq_factor")
_ROPE_KEYS += ("high_freq_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim")


def _error(file: str, field: str | None, message: str) -> ProfileError:
    return ProfileError(message, file=file, field=field)


class _Config:
    """A config dict that raises :class:`ProfileError` naming the key when one is missing."""

    def __init__(self, data: dict[str, Any], model_type: str, file: str):
        self.data = {**_DEFAULTS.get(model_type, {}), **data}
        self.model_type, self.file = model_type, file

    def get(self, *keys: str, default: Any = None) -> Any:
        """First of ``keys`` present with a non-null value, else ``default``."""
        return next((self.data[k] for k in keys if self.data.get(k) is not None), default)

    def need(self, *keys: str) -> Any:
        """Like :meth:`get` but the key is required (aliases in ``keys`` are alternatives)."""
        value = self.get(*keys)
        if value is None:
            alias = f" (or {', '.join(keys[1:])})" if len(keys) > 1 else ""
            msg = f"missing required key '{keys[0]}'{alias} for model_type '{self.model_type}'"
            raise _error(self.file, keys[0], msg)
        return value


def model_from_hf_config(path: str | Path) -> ModelProfile:
    """Read a Hugging Face ``config.json`` and map it to a validated :class:`ModelProfile`."""
    path = Path(path)
    raw = _read_json(path)
    if raw.get("model_type") == "gemma3" and isinstance(raw.get("text_config"), dict):
        raw = {"_name_or_path": raw.get("_name_or_path"), **raw["text_config"]}
        raw.setdefault("model_type", "gemma3_text")
    raw_type = str(raw.get("model_type"))
    model_type = _ALIASES.get(raw_type, raw_type)
    if model_type not in SUPPORTED:
        shown = excerpt(raw.get("model_type"))
        msg = f"unsupported model_type {shown}; allowed: {', '.join(SUPPORTED)}"
        raise _error(str(path), "model_type", msg)
    cfg = _Config(raw, model_type, str(path))
    try:
        fields = {**_identity(cfg, path), **_FAMILY[model_type](cfg)}
    except (TypeError, ValueError, ZeroDivisionError, AttributeError, IndexError) as exc:
        # a value of the wrong type or range for the arithmetic of the mapping
        raise _error(
            str(path), None, f"a value has the wrong type or is zero where a size is needed ({exc})"
        ) from None
    try:
        return ModelProfile.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or None
        raise _error(str(path), loc, f"{err['msg']} (mapped from config.json)") from None


def _read_json(path: Path) -> dict[str, Any]:
    """Parse the file; unreadable or non-object JSON is a :class:`ProfileError`."""
    return load_json_object(read_text(path, "config.json"), str(path))


def _identity(cfg: _Config, path: Path) -> dict[str, Any]:
    """id from ``_name_or_path`` (basename) or else the parent folder, lowercased."""
    name = str(cfg.get("_name_or_path", default="")).rstrip("/")
    ident = (name.rsplit("/", 1)[-1] or path.resolve().parent.name).lower()
    family = {"gemma3_text": "gemma3"}.get(cfg.model_type, cfg.model_type)
    source = f"Hugging Face config.json at {path}"
    return {"id": ident, "name": name or ident, "family": family, "source": source}


def _rope(cfg: _Config, *theta_keys: str) -> dict[str, Any]:
    """``rope`` block: base frequency plus ``rope_scaling`` (HF key 'rope_type' or 'type')."""
    params = cfg.get("rope_parameters", default={})  # transformers >= 5 nests both here
    theta = params.get("rope_theta") or cfg.need(*(theta_keys or ("rope_theta",)))
    scaling = cfg.get("rope_scaling", default=None) or params
    kind = scaling.get("rope_type") or scaling.get("type")
    kind = {"su": "longrope"}.get(kind, kind)
    if kind in (None, "default"):
        return {"theta": theta}
    if kind not in _ROPE_TYPES:
        msg = f"unknown rope_scaling type {kind!r}; allowed: {', '.join(sorted(_ROPE_TYPES))}"
        raise _error(cfg.file, "rope_scaling.rope_type", msg)
    out = {k: scaling[k] for k in _ROPE_KEYS if scaling.get(k) is not None}
    original = out.setdefault(_ROPE_KEYS[0], cfg.get(_ROPE_KEYS[0]))  # Phi-3 keeps it top-level
    factor = scaling.get("factor")
    if factor is None and kind == "longrope" and original:  # LongRoPE stores per-dim factors
        factor = cfg.need("max_position_embeddings") / original
    if factor is None:
        raise _error(cfg.file, "rope_scaling.factor", "rope_scaling needs a 'factor'")
    return {"theta": theta, "scaling": {"type": kind, "factor": factor, **out}}


def _attention_layout(cfg: _Config) -> dict[str, Any]:
    """Mixer or cyclic layer_pattern from the family's sliding-window keys."""
    sliding = {"kind": "sliding_window", "window": cfg.get("sliding_window")}
    full, mt = {"kind": "attention"}, cfg.model_type
    if cfg.get("layer_types"):  # newer configs list every layer's attention type
        kinds = [sliding if "sliding" in t else full for t in cfg.data["layer_types"]]
        return {"layer_pattern": _period(kinds)}
    if mt == "gemma2":  # even layers local, odd layers global
        return {"layer_pattern": [sliding, full]}
    if mt == "gemma3_text":  # sliding_window_pattern N: N-1 local layers, then 1 global
        local = int(cfg.need("sliding_window_pattern")) - 1
        return {"layer_pattern": [sliding] * local + [full]}
    if mt == "qwen2":
        return {"mixer": sliding if _qwen2_slides(cfg) else full}
    window = cfg.get("sliding_window") if mt in ("mistral", "mixtral", "phi3") else None
    return {"mixer": sliding if window else full}  # Mistral: every layer when set


def _qwen2_slides(cfg: _Config) -> bool:
    """Qwen2 slides only with use_sliding_window, on layers >= max_window_layers."""
    if not (cfg.get("use_sliding_window") and cfg.get("sliding_window")):
        return False
    first = cfg.get("max_window_layers", default=0)
    if first >= cfg.need("num_hidden_layers"):
        return False
    if first > 0:
        msg = "a sliding window on only layers >= max_window_layers is not a cyclic pattern"
        raise _error(cfg.file, "max_window_layers", msg)
    return True


def _period(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shortest prefix that repeats cyclically to give ``specs``."""
    n = len(specs)
    period = next(p for p in range(1, n + 1) if all(specs[i] == specs[i % p] for i in range(n)))
    return specs[:period]


def _base(cfg: _Config) -> dict[str, Any]:
    """Dimensions every family has (GPT-2 and early Falcon spell them n_layer, n_embd, ...)."""
    return {
        "n_layers": cfg.need("num_hidden_layers", "n_layer"),
        "d_model": cfg.need("hidden_size", "n_embd", "n_embed"),
        "n_heads": cfg.need("num_attention_heads", "n_head"),
        "vocab_size": cfg.need("vocab_size"),
        "tied_embeddings": bool(cfg.get("tie_word_embeddings")),
        "max_position_embeddings": cfg.need("max_position_embeddings", "n_positions"),
    }


def _llama_like(cfg: _Config) -> dict[str, Any]:
    """Llama, Mistral, Mixtral, Qwen2, Phi-3 and Gemma 1/2/3: pre-norm RMSNorm, gated MLP
    (Gemma's GELU MLP is gated too, so gating follows the family, not ``hidden_act``)."""
    base = _base(cfg)
    ffn: dict[str, Any] = {"type": "gated", "intermediate_size": cfg.need("intermediate_size")}
    if cfg.get("num_local_experts"):
        ffn["moe"] = {
            "n_experts": cfg.get("num_local_experts"),
            "top_k": cfg.need("num_experts_per_tok"),
            "expert_intermediate_size": ffn["intermediate_size"],
        }
    return {
        **base,
        "n_kv_heads": cfg.get("num_key_value_heads", default=base["n_heads"]),
        "head_dim": cfg.get("head_dim", default=base["d_model"] // base["n_heads"]),
        "rope": _rope(cfg),
        "norms_per_layer": 4 if cfg.model_type in ("gemma2", "gemma3_text") else 2,
        "qkv_bias": cfg.model_type == "qwen2" or bool(cfg.get("attention_bias")),
        "ffn": ffn,
        **_attention_layout(cfg),
    }


def _falcon(cfg: _Config) -> dict[str, Any]:
    """Falcon: parallel attention/MLP, LayerNorm, GELU MLP; new_decoder_architecture (40B,
    180B) means grouped KV heads and two LayerNorms per block; multi_query (7B) one KV head."""
    base = _base(cfg)
    d, heads = base["d_model"], base["n_heads"]
    refined_web_40b = cfg.data.get("model_type") == "RefinedWeb"  # pre-port name of the new arch
    new_arch = bool(cfg.get("new_decoder_architecture", default=refined_web_40b))
    mqa_kv = 1 if cfg.get("multi_query", default=True) else heads
    kv = cfg.get("num_kv_heads", "n_head_kv", default=heads) if new_arch else mqa_kv
    parallel = bool(new_arch or cfg.get("parallel_attn", default=True))
    # ln_attn + ln_mlp (new architecture); one shared input_layernorm when parallel
    norms = cfg.get("num_ln_in_parallel_attn", default=2) if new_arch else 2 - parallel
    alibi, ffn_size = bool(cfg.get("alibi")), cfg.get("ffn_hidden_size", default=4 * d)
    return {
        **base,
        "n_kv_heads": kv,
        "head_dim": d // heads,
        "position_embedding": "alibi" if alibi else "rope",
        "rope": None if alibi else _rope(cfg),
        "norm": "layernorm",
        "norms_per_layer": norms,
        "linear_bias": bool(cfg.get("bias")),
        "parallel_attention_mlp": parallel,
        "ffn": {"type": "plain", "intermediate_size": ffn_size},
    }


def _gpt2(cfg: _Config) -> dict[str, Any]:
    """GPT-2: learned positions, LayerNorm, biases everywhere, 4x GELU MLP."""
    base = _base(cfg)
    ffn = {"type": "plain", "intermediate_size": cfg.get("n_inner", default=4 * base["d_model"])}
    gpt2 = {"position_embedding": "learned", "norm": "layernorm", "linear_bias": True}
    return {**base, **gpt2, "ffn": ffn}


def _gpt_neox(cfg: _Config) -> dict[str, Any]:
    """GPT-NeoX / Pythia: rotary, LayerNorm, biases, GELU MLP, optional parallel residual."""
    return {
        **_base(cfg),
        "rope": _rope(cfg, "rotary_emb_base", "rope_theta"),
        "norm": "layernorm",
        "linear_bias": bool(cfg.get("attention_bias", default=True)),
        "parallel_attention_mlp": bool(cfg.get("use_parallel_residual", default=True)),
        "ffn": {"type": "plain", "intermediate_size": cfg.need("intermediate_size")},
    }


_FAMILY = {"falcon": _falcon, "gpt2": _gpt2, "gpt_neox": _gpt_neox}
_FAMILY.update(dict.fromkeys(_LLAMA_LIKE, _llama_like))
