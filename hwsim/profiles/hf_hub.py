"""A Hugging Face repository id (``meta-llama/Llama-3.1-8B``) as a model reference: its
``config.json`` comes through ``huggingface_hub`` (optional: ``pip install 'hwsim[hf]'``),
from the local cache first, and is mapped like a local one (:mod:`hwsim.profiles.hf_config`).

``HF_HUB_OFFLINE=1`` reads the cache only; ``HF_HUB_CACHE`` moves it (both read at call time,
as well as by huggingface_hub itself). Gated repositories need ``HF_TOKEN``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hwsim.errors import ProfileError
from hwsim.profiles.model import ModelProfile

# owner/name as the Hub spells them: letters, digits, '-', '_', '.'; no leading '.' or '-'
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
INSTALL_HINT = "pip install 'hwsim[hf]' (or give the path of a downloaded config.json)"


def looks_like_repo_id(ref: str) -> bool:
    """``owner/name`` that is not a file on disk nor a YAML/JSON path."""
    if ref.endswith((".yaml", ".yml", ".json")) or not REPO_ID.match(ref):
        return False
    return not Path(ref).exists()


def model_from_hub(repo_id: str) -> ModelProfile:
    """The mapped profile of ``repo_id``'s config.json, its id the repository's."""
    from hwsim.profiles.hf_config import model_from_hf_config

    path = _fetch_config(repo_id)
    profile = model_from_hf_config(path)
    revision = path.parent.name
    return profile.model_copy(
        update={
            "id": repo_id,
            "name": profile.name if "/" in profile.name else repo_id,
            "source": f"huggingface.co/{repo_id} config.json (revision {revision}); "
            + profile.source,
        }
    )


def _fetch_config(repo_id: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ProfileError(
            f"{repo_id!r} looks like a Hugging Face repository id; fetching its config.json "
            f"needs huggingface_hub: {INSTALL_HINT}",
            field="model",
        ) from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        found = hf_hub_download(
            repo_id,
            "config.json",
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            local_files_only=offline,
        )
    except Exception as exc:  # the hub's errors: not found, gated, offline and not cached
        kind = type(exc).__name__
        where = "in the local cache (HF_HUB_OFFLINE is set)" if offline else "on the Hub"
        raise ProfileError(
            f"cannot get config.json of {repo_id!r} {where}: {kind}: {str(exc).splitlines()[0]}",
            field="model",
        ) from None
    return Path(found)
