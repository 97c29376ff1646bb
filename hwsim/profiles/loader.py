"""Find and load profiles: a shipped id, a YAML path, or (models) a Hugging Face config.json.

Errors name the file, the field, the value and what is allowed; unknown ids list close matches.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path
from stat import S_ISREG
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from hwsim.errors import ProfileError, UnknownProfileError
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.model import ModelProfile
from hwsim.safe_read import excerpt, load_yaml, read_text

P = TypeVar("P", bound=BaseModel)

_PACKAGE = Path(__file__).resolve().parent.parent


@cache
def shipped_dir(kind: str) -> Path:
    """Folder of shipped profiles: inside the wheel, or the repository top level."""
    folder = f"{kind}_profiles"
    for candidate in (_PACKAGE / "_shipped" / folder, _PACKAGE.parent / folder):
        if candidate.is_dir():
            return candidate
    raise ProfileError(f"no shipped {folder}/ folder found next to the hwsim package")


def shipped_ids(kind: str) -> list[str]:
    return sorted(p.stem for p in shipped_dir(kind).glob("*.yaml"))


def read_yaml(path: Path) -> dict:
    """A YAML mapping from ``path``, read strictly (:mod:`hwsim.safe_read`)."""
    data = load_yaml(read_text(path, "YAML file"), str(path))
    if not isinstance(data, dict):
        raise ProfileError("expected a mapping of field: value at the top level", file=str(path))
    return data


def validate(cls: type[P], data: dict, file: str, check: Check | None = None) -> P:
    """Validate ``data`` as ``cls``, then run ``check`` on the result (a layer above the schema,
    e.g. building a model's mixers); on failure name the first bad field, value and rule."""
    try:
        profile = cls.model_validate(data)
        if check is not None:
            check(profile)
        return profile
    except ValidationError as exc:
        raise ProfileError(format_validation_error(exc), file=file) from None
    except ValueError as exc:  # raised by nested builders (e.g. mixer specs)
        raise ProfileError(str(exc), file=file) from None


def format_validation_error(exc: ValidationError, limit: int = 5) -> str:
    lines = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (not allowed by the schema; check the spelling)"
        value = err.get("input")
        shown = (
            ""
            if isinstance(value, dict) or err["type"] == "missing"
            else f" (got {excerpt(value)})"
        )
        lines.append(f"field '{loc}': {msg}{shown}")
    more = len(exc.errors()) - limit
    if more > 0:
        lines.append(f"... and {more} more problem(s)")
    return "; ".join(lines)


def _looks_like_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml", ".json")) or "/" in ref or os.path.isfile(ref)


def _unknown(kind: str, ref: str) -> UnknownProfileError:
    ids = shipped_ids(kind)
    close = difflib.get_close_matches(ref, ids, n=4, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UnknownProfileError(
        f"unknown {kind} profile {ref!r}{hint} "
        "(see `hwsim profiles list`; or give a path to a YAML file)"
    )


Check = Callable[[BaseModel], object]  # raises ValueError naming the bad field


@lru_cache(maxsize=256)
def _load_file(cls: type[P], path: Path, mtime: float, check: Check | None = None) -> P:
    return validate(cls, read_yaml(path), str(path), check)


@lru_cache(maxsize=1024)
def _shipped_path(kind: str, ref: str) -> Path:
    """Where shipped profile ``ref`` would be (shipped_dir is already absolute); built once
    per id, as every call by id stats it."""
    return shipped_dir(kind) / f"{ref}.yaml"


def _load(kind: str, cls: type[P], ref: str, check: Check | None = None) -> P:
    """One stat per call: the parsed profile is reused until the file's mtime changes."""
    if _looks_like_path(ref):
        path = Path(ref).expanduser()
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            raise ProfileError("file not found", file=str(path)) from None
        path = path.resolve()
    else:
        path = _shipped_path(kind, ref)
        try:
            stat = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            stat = None
        if stat is None or not S_ISREG(stat.st_mode):
            raise _unknown(kind, ref)
        mtime = stat.st_mtime
    return _load_file(cls, path, mtime, check)


def load_hardware(ref: str | Path | HardwareProfile) -> HardwareProfile:
    """A shipped hardware id (``h100-sxm``), a YAML path, or a profile (returned as is)."""
    if isinstance(ref, HardwareProfile):
        return ref
    return _load("hardware", HardwareProfile, str(ref))


def load_model_profile(ref: str | Path | ModelProfile, check: Check | None = None) -> ModelProfile:
    """A shipped model id, a YAML path, a Hugging Face ``config.json`` path, or a Hub
    repository id (``owner/name``, through huggingface_hub: :mod:`hwsim.profiles.hf_hub`),
    validated as data; ``check`` runs on the profile (errors name the file). Most callers want
    :func:`hwsim.model.load.load_model`, which checks the layers too."""
    if isinstance(ref, ModelProfile):
        return ref
    ref = str(ref)
    hub = False
    if "/" in ref:  # shipped ids have no slash: only owner/name strings can be a Hub repository
        from hwsim.profiles.hf_hub import looks_like_repo_id

        hub = looks_like_repo_id(ref)
    if ref.endswith(".json") or hub:
        from hwsim.profiles.hf_config import model_from_hf_config
        from hwsim.profiles.hf_hub import model_from_hub

        profile = model_from_hub(ref) if hub else model_from_hf_config(ref)
        if check is not None:
            try:
                check(profile)
            except ValueError as exc:
                raise ProfileError(str(exc), file=ref) from None
        return profile
    return _load("model", ModelProfile, ref, check)
