"""Hugging Face config.json import: configs of shipped models map to the same architecture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hwsim.errors import ProfileError
from hwsim.model.layers import layer_groups, layer_mixer
from hwsim.model.params import count_params
from hwsim.profiles.hf_config import model_from_hf_config
from hwsim.profiles.model import ModelProfile

PROFILE_DIR = Path(__file__).resolve().parent.parent / "model_profiles"

LLAMA_2_7B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "max_position_embeddings": 4096,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "vocab_size": 32000,
}
LLAMA_3_1_8B = {
    **LLAMA_2_7B,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "num_key_value_heads": 8,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "vocab_size": 128256,
}
MISTRAL_7B = {
    **LLAMA_2_7B,
    "architectures": ["MistralForCausalLM"],
    "model_type": "mistral",
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "num_key_value_heads": 8,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
}
MIXTRAL_8X7B = {
    **MISTRAL_7B,
    "architectures": ["MixtralForCausalLM"],
    "model_type": "mixtral",
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "rope_theta": 1e6,
    "sliding_window": None,
}
GEMMA_2_9B = {
    "architectures": ["Gemma2ForCausalLM"],
    "model_type": "gemma2",
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 3584,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "num_attention_heads": 16,
    "num_hidden_layers": 42,
    "num_key_value_heads": 8,
    "query_pre_attn_scalar": 256,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "vocab_size": 256000,
}
FALCON_40B = {  # the original RefinedWeb-era file
    "model_type": "RefinedWeb",
    "bias": False,
    "hidden_size": 8192,
    "n_head": 128,
    "n_head_kv": 8,
    "n_layer": 60,
    "parallel_attn": True,
    "vocab_size": 65024,
}


def write(tmp_path: Path, folder: str, config: dict) -> Path:
    path = tmp_path / folder / "config.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(config))
    return path


def shipped(stem: str) -> ModelProfile:
    return ModelProfile.model_validate(yaml.safe_load((PROFILE_DIR / f"{stem}.yaml").read_text()))


@pytest.mark.parametrize(
    ("stem", "config"),
    [
        ("llama-2-7b", LLAMA_2_7B),
        ("llama-3.1-8b", LLAMA_3_1_8B),
        ("mistral-7b", MISTRAL_7B),
        ("mixtral-8x7b", MIXTRAL_8X7B),
        ("falcon-40b", FALCON_40B),
    ],
)
def test_params_equal_shipped_profile(tmp_path: Path, stem: str, config: dict):
    model = model_from_hf_config(write(tmp_path, stem, config))
    reference = shipped(stem)
    assert model.id == stem
    assert model.source == f"Hugging Face config.json at {tmp_path / stem / 'config.json'}"
    assert count_params(model) == count_params(reference)
    assert layer_groups(model) == layer_groups(reference)
    assert model.rope == reference.rope
    assert model.kv_heads == reference.kv_heads and model.head_size == reference.head_size


def test_llama_mapping(tmp_path: Path):
    model = model_from_hf_config(write(tmp_path, "llama-3.1-8b", LLAMA_3_1_8B))
    assert model.ffn.type == "gated" and model.norm == "rmsnorm"
    assert model.rope.theta == 500000
    assert model.rope.scaling.type == "llama3"
    assert model.max_context_tokens == 131072
    assert model.layer_pattern is None and layer_mixer(model, 0).kind == "attention"


def test_mistral_every_layer_slides(tmp_path: Path):
    model = model_from_hf_config(write(tmp_path, "mistral", MISTRAL_7B))
    assert {m.kind for m, _, _ in layer_groups(model)} == {"sliding_window"}
    assert layer_mixer(model, 31).window == 4096


def test_mistral_null_window_is_full_attention(tmp_path: Path):
    model = model_from_hf_config(write(tmp_path, "m", {**MISTRAL_7B, "sliding_window": None}))
    assert layer_mixer(model, 0).kind == "attention"


def test_mixtral_moe(tmp_path: Path):
    model = model_from_hf_config(write(tmp_path, "mixtral", MIXTRAL_8X7B))
    moe = model.ffn.moe
    assert (moe.n_experts, moe.top_k, moe.expert_intermediate_size) == (8, 2, 14336)
    assert count_params(model).active == pytest.approx(12.88e9, rel=0.01)


def test_gemma2_alternates_local_and_global(tmp_path: Path):
    model = model_from_hf_config(write(tmp_path, "gemma-2-9b", GEMMA_2_9B))
    assert model.layer_pattern == [
        {"kind": "sliding_window", "window": 4096},
        {"kind": "attention"},
    ]
    kinds = [layer_mixer(model, i).kind for i in range(model.n_layers)]
    assert kinds[:4] == ["sliding_window", "attention", "sliding_window", "attention"]
    assert kinds.count("attention") == 21
    assert model.tied_embeddings and model.norms_per_layer == 4 and model.ffn.type == "gated"
    # Hugging Face safetensors total for google/gemma-2-9b: 9,241,705,984 parameters.
    assert count_params(model).total == 9_241_705_984


def test_gemma3_text_config_pattern(tmp_path: Path):
    text = {
        "model_type": "gemma3_text",
        "head_dim": 128,
        "hidden_size": 5376,
        "intermediate_size": 21504,
        "num_attention_heads": 32,
        "num_hidden_layers": 62,
        "num_key_value_heads": 16,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    }
    config = {"model_type": "gemma3", "_name_or_path": "google/gemma-3-27b-it", "text_config": text}
    model = model_from_hf_config(write(tmp_path, "snapshot", config))
    assert model.id == "gemma-3-27b-it"
    kinds = [layer_mixer(model, i).kind for i in range(model.n_layers)]
    assert kinds[:6] == ["sliding_window"] * 5 + ["attention"]
    assert kinds.count("attention") == 10  # layers 5, 11, ..., 59
    assert model.vocab_size == 262208 and model.rope.scaling.type == "linear"


def test_layer_types_list_is_folded_to_its_period(tmp_path: Path):
    types = ["sliding_attention", "full_attention"] * 21
    model = model_from_hf_config(write(tmp_path, "g", {**GEMMA_2_9B, "layer_types": types}))
    assert len(model.layer_pattern) == 2


def test_qwen2_qkv_bias_and_unused_window(tmp_path: Path):
    config = {
        **MISTRAL_7B,
        "model_type": "qwen2",
        "use_sliding_window": False,
        "sliding_window": 131072,
    }
    model = model_from_hf_config(write(tmp_path, "qwen", config))
    assert model.qkv_bias and layer_mixer(model, 0).kind == "attention"


def test_legacy_rope_scaling_key_type(tmp_path: Path):
    config = {**LLAMA_2_7B, "rope_scaling": {"type": "linear", "factor": 2.0}}
    model = model_from_hf_config(write(tmp_path, "l", config))
    assert model.rope.scaling.type == "linear" and model.max_context_tokens == 8192


def test_gpt2_mapping(tmp_path: Path):
    config = {"model_type": "gpt2", "n_embd": 768, "n_head": 12, "n_layer": 12}
    config |= {"n_positions": 1024, "vocab_size": 50257}
    model = model_from_hf_config(write(tmp_path, "gpt2", config))
    assert model.position_embedding == "learned" and model.linear_bias and model.tied_embeddings
    assert count_params(model).total == 124_439_808  # GPT-2 small, tied LM head


def test_falcon_7b_multi_query(tmp_path: Path):
    config = {"model_type": "falcon", "hidden_size": 4544, "num_attention_heads": 71}
    config |= {"num_hidden_layers": 32, "vocab_size": 65024, "multi_query": True}
    config |= {"new_decoder_architecture": False, "parallel_attn": True, "bias": False}
    model = model_from_hf_config(write(tmp_path, "falcon-7b", config))
    assert model.kv_heads == 1 and model.norms_per_layer == 1 and model.head_size == 64


def test_missing_key_names_the_field(tmp_path: Path):
    config = {k: v for k, v in LLAMA_2_7B.items() if k != "hidden_size"}
    path = write(tmp_path, "broken", config)
    with pytest.raises(ProfileError) as err:
        model_from_hf_config(path)
    assert err.value.field == "hidden_size"
    assert err.value.file == str(path)
    assert "hidden_size" in str(err.value)


def test_unknown_model_type_lists_allowed(tmp_path: Path):
    with pytest.raises(ProfileError) as err:
        model_from_hf_config(write(tmp_path, "bert", {**LLAMA_2_7B, "model_type": "bert"}))
    assert err.value.field == "model_type"
    assert "'bert'" in str(err.value) and "llama" in str(err.value)


def test_unknown_rope_type(tmp_path: Path):
    config = {**LLAMA_2_7B, "rope_scaling": {"rope_type": "magic", "factor": 2.0}}
    with pytest.raises(ProfileError) as err:
        model_from_hf_config(write(tmp_path, "l", config))
    assert err.value.field == "rope_scaling.rope_type"


def test_invalid_json(tmp_path: Path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ProfileError):
        model_from_hf_config(path)
