"""Load a model profile and check that its layers build: the one door to a usable model.

The profile loader (:mod:`hwsim.profiles.loader`) validates the data; this adds the layer
check of :mod:`hwsim.model.layers` (mixer specs, dimensions each mixer needs), so a bad mixer
is reported at load time with the file and field, like any other profile error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hwsim.model.layers import model_layers
from hwsim.profiles.loader import load_model_profile, validate
from hwsim.profiles.model import ModelProfile


def _check_layers(profile: Any) -> None:
    model_layers(profile)


def load_model(ref: str | Path | ModelProfile) -> ModelProfile:
    """A shipped model id, a YAML path, a Hugging Face ``config.json`` path (no network), or a
    profile object; its layers are built and checked once."""
    profile = load_model_profile(ref, _check_layers)
    model_layers(profile)  # a profile object given directly is checked here
    return profile


def model_from_data(data: dict[str, Any], file: str) -> ModelProfile:
    """Validate a mapping as a model profile and check its layers; errors name ``file``."""
    return validate(ModelProfile, data, file, _check_layers)
