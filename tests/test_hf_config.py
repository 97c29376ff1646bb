"""Hugging Face config.json import: configs of shipped models map to the same architecture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from hwsim.errors import ProfileError
from hwsim.model.layers import layer_groups, layer_mixer
from hwsim.model.params import count_params
from hwsim.profiles.hf_config import model_from_hf_config
from hwsim.profiles.model import ModelProfile

PROFILE_DIR = Path(__file__).resolve().parent.parent / "model_profiles"
FIXTURES = Path(__file__).resolve().parent / "hf_configs"

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


def fixture(tmp_path: Path, stem: str) -> ModelProfile:
    """Map tests/hf_configs/<stem>.json, copied to <tmp>/<stem>/config.json."""
    path = tmp_path / stem / "config.json"
    path.parent.mkdir()
    shutil.copy(FIXTURES / f"{stem}.json", path)
    return model_from_hf_config(path)


def fixture_data(stem: str) -> dict:
    return json.loads((FIXTURES / f"{stem}.json").read_text())


def test_invalid_json(tmp_path: Path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ProfileError):
        model_from_hf_config(path)


# --- published config.json files (tests/hf_configs) against published parameter counts -------
# Config sources: the file on huggingface.co/<repo>/blob/main/config.json, or where noted a copy
# with the same architecture keys. Published figures: "exact" ones are sums of stored tensors
# (safetensors index total_size / bytes per element) or counts the authors print; rounded ones
# are marked with their rounding.
PUBLISHED = [
    # meta-llama/Llama-3.1-8B; model.safetensors.index.json total_size 16,060,522,496 B / 2 (bf16)
    ("llama-llama-3.1-8b", 8_030_261_248),
    # mistralai/Mistral-7B-v0.1; safetensors index 14,483,464,192 B / 2 (the paper says 7.3B)
    ("mistral-mistral-7b-v0.1", 7_241_732_096),
    # mistralai/Mixtral-8x7B-v0.1; safetensors index 93,405,585,408 B / 2
    ("mixtral-mixtral-8x7b-v0.1", 46_702_792_704),
    # Qwen/Qwen2.5-7B; model card: "Number of Parameters: 7.61B" (3 significant figures)
    ("qwen2-qwen2.5-7b", 7.61e9),
    # Qwen/Qwen1.5-MoE-A2.7B (keys as in the RichardErkhov/Qwen_-_Qwen1.5-MoE-A2.7B-8bits copy,
    # quantization_config dropped); model card: "14.3B parameters in total"
    ("qwen2_moe-qwen1.5-moe-a2.7b", 14.3e9),
    # Qwen/Qwen3-8B (as copied by thejaminator/qwen-hook-layer-9); model card: 8.2B in total
    ("qwen3-qwen3-8b", 8.2e9),
    # Qwen/Qwen3-30B-A3B; model card: 30.5B in total
    ("qwen3_moe-qwen3-30b-a3b", 30.5e9),
    # google/gemma-2-9b; Gemma 2 report (arXiv 2408.00118) Table 2: 917,962,752 embedding +
    # 8,324,201,984 non-embedding
    ("gemma2-gemma-2-9b", 9_242_164_736),
    # google/gemma-3-27b-it; Gemma 3 report (arXiv 2503.19786) Table 1: 1,416M embedding +
    # 25,600M non-embedding (text decoder; the 417M vision encoder is not mapped)
    ("gemma3-gemma-3-27b-it", 27_016e6),
    # microsoft/Phi-3-mini-4k-instruct; model card: 3.8B parameters (2 significant figures)
    ("phi3-phi-3-mini-4k-instruct", 3.8e9),
    # tiiuae/falcon-7b; safetensors shards 9.95 GB + 4.48 GB (bf16) = 7.215e9 stored elements,
    # which hold lm_head.weight (65024 x 4544) as a copy of the tied embedding
    ("falcon-falcon-7b", 7.215e9 - 65024 * 4544),
    # openai-community/gpt2; OpenAI gpt-2 README: the 124M model
    ("gpt2-gpt2", 124e6),
    # EleutherAI/pythia-1.4b; Pythia README (EleutherAI/pythia) table: 1,414,647,808 total
    ("gpt_neox-pythia-1.4b", 1_414_647_808),
    # facebook/opt-6.7b (as printed by AutoConfig.from_pretrained in a public GitHub file; the HF
    # copies match); pytorch_model shards 9.96 GB + 3.36 GB (fp16) = 6.66e9 (paper: 6.7B)
    ("opt-opt-6.7b", 6.66e9),
    # deepseek-ai/DeepSeek-V2-Lite (keys as in the nicoboss/DeepSeek-V2-Lite-Chat-Uncensored copy
    # of DeepSeek-V2-Lite-Chat); DeepSeek-V2 paper (arXiv 2405.04434): 15.7B total
    ("deepseek_v2-deepseek-v2-lite", 15.7e9),
    # deepseek-ai/DeepSeek-V3 (as vendored by Gabriel-Yoon/LLMServingSim, less the head_dim key it
    # adds); DeepSeek-V3 report (arXiv 2412.19437): 671B total, MTP module excluded
    ("deepseek_v3-deepseek-v3", 671e9),
    # state-spaces/mamba-2.8b-hf; MambaForCausalLM sums 2,768,345,600 (tied embedding once)
    ("mamba-mamba-2.8b-hf", 2_768_345_600),
    # mistralai/Mamba-Codestral-7B-v0.1 HF conversion (huggingface.co/Molbap/code2); Mistral's
    # release note "Codestral Mamba": "an instructed model, with 7,285,403,648 parameters"
    ("mamba2-mamba-codestral-7b-v0.1", 7_285_403_648),
    # tiiuae/falcon-mamba-7b; safetensors shards 4.96 + 4.99 + 4.61 GB (bf16) = 7.28e9
    ("falcon_mamba-falcon-mamba-7b", 7.28e9),
    # ai21labs/Jamba-v0.1; Jamba paper (arXiv 2403.19887): 52B total (HF model page: 51.6B)
    ("jamba-jamba-v0.1", 52e9),
]

# Active parameters per token. DeepSeek counts activated parameters without the input embedding
# (V3 README_WEIGHTS: "36.6B (including 0.9B for the output Head)"); the others count it.
PUBLISHED_ACTIVE = [
    # Mistral AI, "Mixtral of experts" release: "only uses 12.9B parameters per token"
    ("mixtral-mixtral-8x7b-v0.1", 12.9e9, False),
    # Qwen1.5-MoE-A2.7B model card: "2.7B activated parameters during runtime"
    ("qwen2_moe-qwen1.5-moe-a2.7b", 2.7e9, False),
    # DeepSeek-V3 README_WEIGHTS.md (main model): activation parameters 36.6B
    ("deepseek_v3-deepseek-v3", 36.6e9, True),
    # Jamba paper (arXiv 2403.19887): 12B active
    ("jamba-jamba-v0.1", 12e9, False),
]


@pytest.mark.parametrize(("stem", "published"), PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_fixture_total_within_1pct_of_published(tmp_path: Path, stem: str, published: float):
    model = fixture(tmp_path, stem)
    assert model.family == stem.split("-")[0]
    assert count_params(model).total == pytest.approx(published, rel=0.01)


@pytest.mark.parametrize(
    ("stem", "published", "without_input_embedding"),
    PUBLISHED_ACTIVE,
    ids=[p[0] for p in PUBLISHED_ACTIVE],
)
def test_fixture_active_within_1pct_of_published(
    tmp_path: Path, stem: str, published: float, without_input_embedding: bool
):
    counts = count_params(fixture(tmp_path, stem))
    active = counts.active - (counts.embedding if without_input_embedding else 0)
    assert active == pytest.approx(published, rel=0.01)


@pytest.mark.parametrize(
    ("stem", "low", "high", "without_input_embedding"),
    [
        # Qwen3-30B-A3B model card: "3.3B activated" -- 2 significant figures, cut not rounded:
        # the count is 3.353B (attention + 8 of 128 experts + router, embedding and head)
        ("qwen3_moe-qwen3-30b-a3b", 3.3e9, 3.4e9, False),
        # DeepSeek-V2 paper: V2-Lite "2.4B activated" -- 2 significant figures, cut: 2.451B
        # without the input embedding (DeepSeek's convention, see PUBLISHED_ACTIVE)
        ("deepseek_v2-deepseek-v2-lite", 2.4e9, 2.5e9, True),
    ],
)
def test_fixture_active_matches_two_figure_published(
    tmp_path: Path, stem: str, low: float, high: float, without_input_embedding: bool
):
    """Only a 2-figure value is published, so 1% is finer than the figure itself: the count
    must lie in the interval the digits stand for."""
    counts = count_params(fixture(tmp_path, stem))
    active = counts.active - (counts.embedding if without_input_embedding else 0)
    assert low <= active < high


@pytest.mark.parametrize(
    ("stem", "non_embedding"),
    [
        ("qwen2-qwen2.5-7b", 6.53e9),  # Qwen2.5-7B model card: 6.53B non-embedding
        ("qwen3-qwen3-8b", 6.95e9),  # Qwen3-8B model card: 6.95B non-embedding
        ("qwen3_moe-qwen3-30b-a3b", 29.9e9),  # Qwen3-30B-A3B model card: 29.9B non-embedding
    ],
)
def test_qwen_non_embedding_counts(tmp_path: Path, stem: str, non_embedding: float):
    """Qwen's model cards also give the count without embedding and LM head."""
    counts = count_params(fixture(tmp_path, stem))
    body = counts.total - counts.embedding - counts.lm_head
    assert body == pytest.approx(non_embedding, rel=0.01)


@pytest.mark.parametrize(
    ("stem", "profile"),
    [
        ("llama-llama-3.1-8b", "llama-3.1-8b"),
        ("mistral-mistral-7b-v0.1", "mistral-7b"),
        ("mixtral-mixtral-8x7b-v0.1", "mixtral-8x7b"),
        ("gemma2-gemma-2-9b", "gemma-2-9b"),
        ("gemma3-gemma-3-27b-it", "gemma-3-27b"),
        ("deepseek_v3-deepseek-v3", "deepseek-v3"),
        ("mamba-mamba-2.8b-hf", "mamba-2.8b"),
        ("jamba-jamba-v0.1", "jamba-1.5-mini"),  # same architecture (Jamba-1.5 paper)
    ],
)
def test_fixture_matches_shipped_profile(tmp_path: Path, stem: str, profile: str):
    model, reference = fixture(tmp_path, stem), shipped(profile)
    assert count_params(model) == count_params(reference)
    kinds = [layer_mixer(model, i).kind for i in range(model.n_layers)]
    assert kinds == [layer_mixer(reference, i).kind for i in range(reference.n_layers)]
    moe = [model.is_moe_layer(i) for i in range(model.n_layers)]
    assert moe == [reference.is_moe_layer(i) for i in range(reference.n_layers)]
    assert model.kv_heads == reference.kv_heads and model.head_size == reference.head_size


def test_deepseek_mla_and_moe_layout(tmp_path: Path):
    v3 = fixture(tmp_path, "deepseek_v3-deepseek-v3")
    mla = layer_mixer(v3, 0)
    assert mla.kind == "mla" and mla.cache_elements_per_token == 576
    assert [v3.is_moe_layer(i) for i in range(4)] == [False, False, False, True]
    assert v3.ffn.moe.n_shared_experts == 1 and v3.rope.scaling.type == "yarn"
    lite = fixture(tmp_path, "deepseek_v2-deepseek-v2-lite")
    assert layer_mixer(lite, 0).q_lora_rank is None and lite.ffn.moe.n_shared_experts == 2


def test_qwen2_moe_shared_expert_and_sparse_step(tmp_path: Path):
    model = fixture(tmp_path, "qwen2_moe-qwen1.5-moe-a2.7b")
    moe = model.ffn.moe
    assert (moe.n_experts, moe.top_k, moe.expert_intermediate_size) == (60, 4, 1408)
    assert (moe.n_shared_experts, moe.shared_intermediate_size) == (1, 5632)
    assert model.qkv_bias and layer_mixer(model, 0).kind == "attention"
    config = {**fixture_data("qwen3_moe-qwen3-30b-a3b"), "decoder_sparse_step": 2}
    config["mlp_only_layers"] = [0, 1]
    sparse = model_from_hf_config(write(tmp_path, "q3", config))
    assert [sparse.is_moe_layer(i) for i in range(6)] == [False, False, False, True, False, True]


def test_qwen_dense_layers_must_be_a_prefix(tmp_path: Path):
    config = {**fixture_data("qwen3_moe-qwen3-30b-a3b"), "mlp_only_layers": [5]}
    with pytest.raises(ProfileError) as err:
        model_from_hf_config(write(tmp_path, "q3", config))
    assert err.value.field == "mlp_only_layers"


def test_jamba_hybrid_pattern(tmp_path: Path):
    model = fixture(tmp_path, "jamba-jamba-v0.1")
    kinds = [layer_mixer(model, i).kind for i in range(model.n_layers)]
    assert [i for i, k in enumerate(kinds) if k == "attention"] == [4, 12, 20, 28]
    assert [i for i in range(model.n_layers) if model.is_moe_layer(i)] == list(range(1, 32, 2))
    assert layer_mixer(model, 0).inner_layernorms and model.position_embedding == "none"


def test_jamba_offset_outside_period(tmp_path: Path):
    config = {**fixture_data("jamba-jamba-v0.1"), "attn_layer_offset": 8}
    with pytest.raises(ProfileError) as err:
        model_from_hf_config(write(tmp_path, "j", config))
    assert err.value.field == "attn_layer_offset"


def test_mamba_families(tmp_path: Path):
    falcon = fixture(tmp_path, "falcon_mamba-falcon-mamba-7b")
    # intermediate_size 8192 wins over the file's expand 16; "_name_or_path": "./" names nothing
    assert layer_mixer(falcon, 0).expand == 2 and falcon.id == "falcon_mamba-falcon-mamba-7b"
    mamba = fixture(tmp_path, "mamba-mamba-2.8b-hf")
    assert mamba.tied_embeddings and mamba.ffn.type == "none" and mamba.norms_per_layer == 1
    codestral = fixture(tmp_path, "mamba2-mamba-codestral-7b-v0.1")
    ssd = layer_mixer(codestral, 0)
    assert (ssd.kind, ssd.n_heads(codestral), ssd.ngroups) == ("mamba2", 128, 8)
    assert codestral.id == "codestral-hf-good"


def test_mamba2_time_step_limit_infinity_is_read(tmp_path: Path):
    """transformers writes [0.0, Infinity]; only that key is let through (NaN stays refused)."""
    assert "Infinity" in (FIXTURES / "mamba2-mamba-codestral-7b-v0.1.json").read_text()
    text = json.dumps({**LLAMA_2_7B, "rope_theta": 1.0})[:-1] + ', "time_step_limit": [0, NaN]}'
    path = tmp_path / "nan" / "config.json"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ProfileError, match="NaN is not a JSON number"):
        model_from_hf_config(path)


def test_mamba2_heads_must_fill_inner_width(tmp_path: Path):
    config = {**fixture_data("mamba2-mamba-codestral-7b-v0.1"), "num_heads": 100}
    config["time_step_limit"] = [0.0, 1.0]
    with pytest.raises(ProfileError) as err:
        model_from_hf_config(write(tmp_path, "m2", config))
    assert err.value.field == "num_heads"


def test_opt_mapping_and_narrow_embedding(tmp_path: Path):
    model = fixture(tmp_path, "opt-opt-6.7b")
    assert model.position_embedding == "learned" and model.tied_embeddings
    assert model.linear_bias and model.ffn.type == "plain" and model.norm == "layernorm"
    config = {**fixture_data("opt-opt-6.7b"), "word_embed_proj_dim": 512}
    with pytest.raises(ProfileError) as err:
        model_from_hf_config(write(tmp_path, "opt-350m", config))
    assert err.value.field == "word_embed_proj_dim"


def test_unsupported_type_names_new_families(tmp_path: Path):
    with pytest.raises(ProfileError) as err:
        model_from_hf_config(write(tmp_path, "t5", {"model_type": "t5"}))
    for family in ("deepseek_v3", "jamba", "mamba2", "opt", "qwen3_moe"):
        assert family in str(err.value)
