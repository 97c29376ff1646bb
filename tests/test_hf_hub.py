"""A Hugging Face repository id as the model (issue 16): config.json through huggingface_hub,
tested offline against a local cache laid out as the Hub's (models--owner--name/snapshots)."""

from __future__ import annotations

import builtins
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwsim.cli.main import app
from hwsim.errors import ProfileError
from hwsim.model.load import load_model
from hwsim.model.params import count_params
from hwsim.profiles.hf_config import model_from_hf_config
from hwsim.profiles.hf_hub import looks_like_repo_id

pytest.importorskip("huggingface_hub")

FIXTURES = Path(__file__).resolve().parent / "hf_configs"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hub cache holding one repository, acme/llama-like, and nothing reachable online."""
    repo = tmp_path / "models--acme--llama-like"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    config = next(p for p in sorted(FIXTURES.glob("*.json")) if "llama" in p.name)
    shutil.copy(config, snapshot / "config.json")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return config


def test_a_repository_id_maps_like_its_config_json(hub_cache):
    from_hub = load_model("acme/llama-like")
    local = model_from_hf_config(hub_cache)
    assert from_hub.id == "acme/llama-like"
    assert COMMIT in from_hub.source and "huggingface.co/acme/llama-like" in from_hub.source
    assert count_params(from_hub).total == count_params(local).total
    assert from_hub.model_dump(exclude={"id", "name", "source"}) == local.model_dump(
        exclude={"id", "name", "source"}
    )


def test_the_cli_plans_a_repository_id(hub_cache):
    out = CliRunner().invoke(app, ["plan", "--model", "acme/llama-like", "--hardware", "h100-sxm"])
    assert out.exit_code == 0, out.output


def test_a_repository_missing_from_the_cache_is_a_clear_error(hub_cache):
    with pytest.raises(ProfileError, match="acme/missing.*local cache"):
        load_model("acme/missing")
    out = CliRunner().invoke(app, ["plan", "--model", "acme/missing", "--hardware", "h100-sxm"])
    assert out.exit_code == 2 and "Traceback" not in out.output


def test_without_huggingface_hub_the_error_says_what_to_install(monkeypatch):
    real = builtins.__import__

    def no_hub(name, *args, **kwargs):
        if name.startswith("huggingface_hub"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_hub)
    out = CliRunner().invoke(app, ["plan", "--model", "acme/llama-like", "--hardware", "h100-sxm"])
    assert out.exit_code == 2
    assert "pip install 'hwsim[hf]'" in out.output  # the [hf] survives rich markup


def test_only_owner_slash_name_that_is_no_file_is_a_repository(tmp_path, monkeypatch):
    assert looks_like_repo_id("meta-llama/Llama-3.1-8B")
    assert not looks_like_repo_id("llama-3.1-8b")  # a shipped id
    assert not looks_like_repo_id("models/my.yaml")
    assert not looks_like_repo_id("a/b/c")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "model").mkdir()
    assert not looks_like_repo_id("local/model")  # a folder on disk
