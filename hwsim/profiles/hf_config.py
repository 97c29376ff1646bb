"""Build a :class:`ModelProfile` from a Hugging Face ``config.json`` (read locally, no network).

model_type (see :data:`SUPPORTED`): the Llama-like decoders (llama, mistral, mixtral, qwen2,
qwen2_moe, qwen3, qwen3_moe, phi3, gemma, gemma2, gemma3_text, gemma3 via its text_config),
falcon (and the pre-port RefinedWeb types), gpt2, gpt_neox, opt, deepseek_v2, deepseek_v3,
mamba, falcon_mamba, mamba2 and jamba; one mapping function per family in
:mod:`hwsim.profiles.hf`, with what each ignores. Keys the transformers config class defaults
(tied embeddings, RoPE base ...) default the same way; core dimensions are required.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hwsim.profiles.hf import decoder, deepseek, ssm
from hwsim.profiles.hf.common import Fields, HFConfig, hf_error
from hwsim.profiles.model import ModelProfile
from hwsim.safe_read import excerpt, load_json_object, read_text

_FAMILY = {**decoder.FAMILIES, **deepseek.FAMILIES, **ssm.FAMILIES}
_DEFAULTS = {**decoder.DEFAULTS, **deepseek.DEFAULTS, **ssm.DEFAULTS}
SUPPORTED = sorted(set(_FAMILY) | {"gemma3"})
_ALIASES = {"RefinedWeb": "falcon", "RefinedWebModel": "falcon"}
# transformers writes Mamba-2's default time_step_limit (0.0, inf) as [0.0, Infinity], which
# strict JSON refuses; no mapping reads the key, so that one constant is read as null.
_TIME_STEP_LIMIT = re.compile(r'("time_step_limit"\s*:\s*\[[^\[\]]*?)\bInfinity\b')


def model_from_hf_config(path: str | Path) -> ModelProfile:
    """Read a Hugging Face ``config.json`` and map it to a validated :class:`ModelProfile`."""
    path = Path(path)
    raw = _read_json(path)
    if raw.get("model_type") == "gemma3" and isinstance(raw.get("text_config"), dict):
        raw = {"_name_or_path": raw.get("_name_or_path"), **raw["text_config"]}
        raw.setdefault("model_type", "gemma3_text")
    raw_type = str(raw.get("model_type"))
    model_type = _ALIASES.get(raw_type, raw_type)
    if model_type not in _FAMILY:
        shown = excerpt(raw.get("model_type"))
        msg = f"unsupported model_type {shown}; allowed: {', '.join(SUPPORTED)}"
        raise hf_error(str(path), "model_type", msg)
    cfg = HFConfig(raw, model_type, str(path), _DEFAULTS[model_type])
    try:
        fields = {**_identity(cfg, path), **_FAMILY[model_type](cfg)}
    except (TypeError, ValueError, ZeroDivisionError, AttributeError, IndexError) as exc:
        # a value of the wrong type or range for the arithmetic of the mapping
        raise hf_error(
            str(path), None, f"a value has the wrong type or is zero where a size is needed ({exc})"
        ) from None
    try:
        return ModelProfile.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or None
        raise hf_error(str(path), loc, f"{err['msg']} (mapped from config.json)") from None


def _read_json(path: Path) -> dict[str, Any]:
    """Parse the file; unreadable or non-object JSON is a :class:`ProfileError`."""
    text = _TIME_STEP_LIMIT.sub(r"\1null", read_text(path, "config.json"))
    return load_json_object(text, str(path))


def _identity(cfg: HFConfig, path: Path) -> Fields:
    """id from ``_name_or_path`` (basename) or else the parent folder, lowercased."""
    name = str(cfg.get("_name_or_path", default="")).rstrip("/")
    if not name.rsplit("/", 1)[-1].strip("."):  # "", "./": a local save names no model
        name = ""
    ident = (name.rsplit("/", 1)[-1] or path.resolve().parent.name).lower()
    family = {"gemma3_text": "gemma3"}.get(cfg.model_type, cfg.model_type)
    source = f"Hugging Face config.json at {path}"
    return {"id": ident, "name": name or ident, "family": family, "source": source}
