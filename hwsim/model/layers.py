"""A model's layers as physics: the mixer of every layer, and identical layers grouped.

A :class:`~hwsim.profiles.model.ModelProfile` is data (the published architecture, mixer
specs as plain mappings); a mixer is physics (:mod:`hwsim.model.mixers`). This module sits
above both: it builds each layer's mixer from the profile's ``mixer`` / cyclic
``layer_pattern`` specs, checks it against the model's dimensions, and groups identical
layers so a forward pass prices each distinct layer once. Built once per profile object.
"""

from __future__ import annotations

import weakref
from collections import Counter
from dataclasses import dataclass

from hwsim.model.mixers import Mixer, build_mixer
from hwsim.profiles.model import ModelProfile

LayerGroup = tuple[Mixer, bool, int]  # (mixer, is_moe, count)


@dataclass(frozen=True)
class ModelLayers:
    """The cyclic mixer pattern of a model and its layers grouped by (mixer, is_moe)."""

    pattern: tuple[Mixer, ...]
    groups: tuple[LayerGroup, ...]

    def mixer(self, index: int) -> Mixer:
        return self.pattern[index % len(self.pattern)]


_BUILT: dict[int, ModelLayers] = {}  # id(profile) -> layers; entries leave with the profile


def build_layers(model: ModelProfile) -> ModelLayers:
    """Build and check the mixers of ``model``; ValueError names the bad spec's field."""
    pattern: tuple[Mixer, ...]
    if model.layer_pattern is None:
        pattern = (build_mixer(model.mixer, where="mixer"),)
    else:
        pattern = tuple(
            build_mixer(spec, where=f"layer_pattern[{i}]")
            for i, spec in enumerate(model.layer_pattern)
        )
    for mixer in pattern:
        mixer.check_model(model)
    counts: Counter[tuple[Mixer, bool]] = Counter()
    for i in range(model.n_layers):
        counts[(pattern[i % len(pattern)], model.is_moe_layer(i))] += 1
    groups = tuple((mixer, moe, n) for (mixer, moe), n in counts.items())  # first-seen order
    return ModelLayers(pattern, groups)


def model_layers(model: ModelProfile) -> ModelLayers:
    """The layers of ``model``, built on first use and kept while the profile lives."""
    key = id(model)
    built = _BUILT.get(key)
    if built is None:
        built = build_layers(model)
        _BUILT[key] = built
        weakref.finalize(model, _BUILT.pop, key, None)
    return built


def layer_groups(model: ModelProfile) -> tuple[LayerGroup, ...]:
    """Identical layers grouped: ((mixer, is_moe, count), ...) in first-seen order."""
    return model_layers(model).groups


def layer_mixer(model: ModelProfile, index: int) -> Mixer:
    """The mixer of layer ``index`` (0-based)."""
    return model_layers(model).mixer(index)
