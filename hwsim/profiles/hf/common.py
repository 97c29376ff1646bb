"""What the family mappings share: the config reader, RoPE, embeddings, attention layouts."""

from __future__ import annotations

from typing import Any

from hwsim.errors import ProfileError

Fields = dict[str, Any]

ROPE_TYPES = {"linear", "dynamic", "ntk", "yarn", "llama3", "longrope"}
_ROPE_KEYS: tuple[str, ...] = ("original_max_position_embeddings", "low_freq_factor")
_ROPE_KEYS += ("high_freq_factor", "beta_fast", "beta_slow", "mscale", "mscale_all_dim")
QWEN = {"qwen2", "qwen2_moe", "qwen3", "qwen3_moe"}  # use_sliding_window / max_window_layers


def hf_error(file: str, field: str | None, message: str) -> ProfileError:
    return ProfileError(message, file=file, field=field)


class HFConfig:
    """A config dict over family defaults that raises :class:`ProfileError` naming a missing key."""

    def __init__(self, data: dict[str, Any], model_type: str, file: str, defaults: Fields):
        self.data = {**defaults, **data}
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
            raise self.error(keys[0], msg)
        return value

    def error(self, field: str | None, message: str) -> ProfileError:
        return hf_error(self.file, field, message)

    def ratio(self, numerator: int, denominator: int, field: str) -> int:
        """``numerator / denominator`` if whole, else a :class:`ProfileError` on ``field``."""
        if numerator % denominator:
            msg = f"{numerator} / {denominator} is not a whole number, which the schema needs"
            raise self.error(field, msg)
        return numerator // denominator


def rope(cfg: HFConfig, *theta_keys: str) -> Fields:
    """``rope`` block: base frequency plus ``rope_scaling`` (HF key 'rope_type' or 'type')."""
    params = cfg.get("rope_parameters", default={})  # transformers >= 5 nests both here
    theta = params.get("rope_theta") or cfg.need(*(theta_keys or ("rope_theta",)))
    scaling = cfg.get("rope_scaling", default=None) or params
    kind = scaling.get("rope_type") or scaling.get("type")
    kind = {"su": "longrope"}.get(kind, kind)
    if kind in (None, "default"):
        return {"theta": theta}
    if kind not in ROPE_TYPES:
        msg = f"unknown rope_scaling type {kind!r}; allowed: {', '.join(sorted(ROPE_TYPES))}"
        raise cfg.error("rope_scaling.rope_type", msg)
    out = {k: scaling[k] for k in _ROPE_KEYS if scaling.get(k) is not None}
    original = out.setdefault(_ROPE_KEYS[0], cfg.get(_ROPE_KEYS[0]))  # Phi-3 keeps it top-level
    factor = scaling.get("factor")
    if factor is None and kind == "longrope" and original:  # LongRoPE stores per-dim factors
        factor = cfg.need("max_position_embeddings") / original
    if factor is None:
        raise cfg.error("rope_scaling.factor", "rope_scaling needs a 'factor'")
    return {"theta": theta, "scaling": {"type": kind, "factor": factor, **out}}


def embeddings(cfg: HFConfig) -> Fields:
    """Layer count, width, vocabulary and tying (GPT-2 and early Falcon spell them n_layer ...)."""
    return {
        "n_layers": cfg.need("num_hidden_layers", "n_layer"),
        "d_model": cfg.need("hidden_size", "n_embd", "n_embed", "d_model"),
        "vocab_size": cfg.need("vocab_size"),
        "tied_embeddings": bool(cfg.get("tie_word_embeddings")),
    }


def base(cfg: HFConfig) -> Fields:
    """:func:`embeddings` plus the attention heads and context every transformer states."""
    return {
        **embeddings(cfg),
        "n_heads": cfg.need("num_attention_heads", "n_head"),
        "max_position_embeddings": cfg.need("max_position_embeddings", "n_positions"),
    }


def attention_layout(cfg: HFConfig) -> Fields:
    """Mixer or cyclic layer_pattern from the family's sliding-window keys."""
    sliding = {"kind": "sliding_window", "window": cfg.get("sliding_window")}
    full, mt = {"kind": "attention"}, cfg.model_type
    if cfg.get("layer_types"):  # newer configs list every layer's attention type
        kinds = [sliding if "sliding" in t else full for t in cfg.data["layer_types"]]
        return {"layer_pattern": period(kinds)}
    if mt == "gemma2":  # even layers local, odd layers global
        return {"layer_pattern": [sliding, full]}
    if mt == "gemma3_text":  # sliding_window_pattern N: N-1 local layers, then 1 global
        local = int(cfg.need("sliding_window_pattern")) - 1
        return {"layer_pattern": [sliding] * local + [full]}
    if mt in QWEN:
        return {"mixer": sliding if _qwen_slides(cfg) else full}
    window = cfg.get("sliding_window") if mt in ("mistral", "mixtral", "phi3") else None
    return {"mixer": sliding if window else full}  # Mistral: every layer when set


def _qwen_slides(cfg: HFConfig) -> bool:
    """Qwen slides only with use_sliding_window, on layers >= max_window_layers."""
    if not (cfg.get("use_sliding_window") and cfg.get("sliding_window")):
        return False
    first = cfg.get("max_window_layers", default=0)
    if first >= cfg.need("num_hidden_layers"):
        return False
    if first > 0:
        msg = "a sliding window on only layers >= max_window_layers is not a cyclic pattern"
        raise cfg.error("max_window_layers", msg)
    return True


def period(specs: list[Fields]) -> list[Fields]:
    """Shortest prefix that repeats cyclically to give ``specs``."""
    n = len(specs)
    size = next(p for p in range(1, n + 1) if all(specs[i] == specs[i % p] for i in range(n)))
    return specs[:size]


def dense_prefix(cfg: HFConfig, key: str) -> int:
    """Length of a list of dense layer indices that must be 0, 1, ..., k-1 (Qwen's
    ``mlp_only_layers``): other lists are not a cyclic MoE pattern."""
    layers = sorted(cfg.get(key, default=[]))
    if layers != list(range(len(layers))):
        msg = f"dense layers {layers} are not a prefix 0..k-1, which the MoE schema needs"
        raise cfg.error(key, msg)
    return len(layers)
