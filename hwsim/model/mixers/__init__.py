"""Token-mixing layers (attention variants, state-space layers), one registered class each.

A new variant is one module in this package defining a :class:`~hwsim.model.mixers.base.Mixer`
subclass decorated with :func:`register`. Model profiles name it by ``kind``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from pydantic import ValidationError

from hwsim.model.mixers.base import REGISTRY, Mixer, register

__all__ = ["Mixer", "register", "build_mixer", "registered_kinds"]

_loaded = False


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def registered_kinds() -> list[str]:
    _load_all()
    return sorted(REGISTRY)


def build_mixer(spec: dict[str, Any], where: str = "mixer") -> Mixer:
    """Validate a mixer spec ``{kind: ..., **params}`` with its registered class."""
    _load_all()
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if not isinstance(kind, str) or kind not in REGISTRY:
        raise ValueError(
            f"{where}.kind: unknown mixer kind {kind!r}; allowed: {', '.join(sorted(REGISTRY))}"
        )
    try:
        return REGISTRY[kind].model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}.{loc}: {first['msg']} (got {first.get('input')!r})") from None
