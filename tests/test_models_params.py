"""Shipped model profiles: they load, and the parameter count derived from the architecture
matches the published count each profile cites (formulas.md section 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hwsim.model.layers import layer_mixer
from hwsim.model.params import count_params
from hwsim.profiles.model import ModelProfile

PROFILE_DIR = Path(__file__).resolve().parent.parent / "model_profiles"
PROFILES = sorted(PROFILE_DIR.glob("*.yaml"))


def load(stem: str) -> ModelProfile:
    return ModelProfile.model_validate(yaml.safe_load((PROFILE_DIR / f"{stem}.yaml").read_text()))


def test_profiles_found():
    assert len(PROFILES) >= 11


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_profile_loads_with_matching_id(path: Path):
    model = load(path.stem)
    assert model.id == path.stem
    assert model.source.strip()


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_derived_params_match_published(path: Path):
    model = load(path.stem)
    assert model.published_params is not None, "every shipped profile cites a published count"
    assert model.published_params.source.strip()
    derived = count_params(model).total
    assert derived == pytest.approx(model.published_params.value, rel=0.01)


def test_llama_2_7b_golden():
    assert count_params(load("llama-2-7b")).total == pytest.approx(6_738_415_616, rel=1e-3)


def test_mixtral_active_params():
    counts = count_params(load("mixtral-8x7b"))
    assert counts.active == pytest.approx(12.88e9, rel=0.01)
    assert counts.total == pytest.approx(46.70e9, rel=0.01)


@pytest.mark.parametrize(
    ("stem", "kv_bytes_per_token"),
    [
        ("llama-2-7b", 524_288),
        ("llama-3.1-8b", 131_072),
        ("llama-3.1-70b", 327_680),
        ("llama-3.1-405b", 516_096),
        ("mistral-7b", 131_072),
        ("falcon-40b", 122_880),
    ],
)
def test_kv_bytes_per_token_bf16(stem: str, kv_bytes_per_token: int):
    """formulas.md section 3 examples: 2 * layers * kv_heads * head_dim * 2 bytes."""
    model = load(stem)
    assert 2 * model.n_layers * model.kv_heads * model.head_size * 2 == kv_bytes_per_token


def test_mistral_window_and_falcon_layout():
    mistral, falcon = load("mistral-7b"), load("falcon-40b")
    assert layer_mixer(mistral, 0).kind == "sliding_window"
    assert layer_mixer(mistral, 0).window == 4096
    assert falcon.parallel_attention_mlp and falcon.tied_embeddings and not falcon.linear_bias
