"""The 6-bit (fp6, MXFP6) KV-cache dtype (issue 17): its size, and the MLA cache reduction the
DeepSeek-V2 paper publishes with ~6-bit caches, reproduced."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hwsim.cli.main import app
from hwsim.dtypes import kv_dtype
from hwsim.inference.deployment import make_deployment
from hwsim.inference.memory import kv_bytes_per_token_per_gpu
from hwsim.model.load import load_model
from hwsim.profiles.model import ModelProfile

HW = "h200-sxm"


def test_fp6_is_six_bits_plus_one_e8m0_scale_per_32():
    """OCP MX v1.0: 6-bit elements, an 8-bit shared scale per block of 32 -> 6.25 bits."""
    assert kv_dtype("fp6").bytes_per_element == pytest.approx(6.25 / 8)


def test_deepseek_v3_fp6_cache_per_token():
    """576 cached elements (512 latent + 64 RoPE key) x 61 layers x 6.25 bits = 27,450 B."""
    dep = make_deployment("deepseek-v3", HW, tp=8, weight_dtype="fp8", kv_dtype="fp6")
    assert kv_bytes_per_token_per_gpu(dep) == pytest.approx(576 * 61 * 6.25 / 8)


def _deepseek_67b() -> ModelProfile:
    """DeepSeek LLM 67B, the baseline of DeepSeek-V2's cache comparison (deepseek-ai/
    deepseek-llm-67b-base config.json: hidden 8192, 95 layers, 64 heads, 8 KV heads)."""
    return ModelProfile.model_validate(
        {
            "id": "deepseek-llm-67b",
            "name": "DeepSeek LLM 67B",
            "family": "deepseek",
            "source": "deepseek-ai/deepseek-llm-67b-base config.json",
            "n_layers": 95,
            "d_model": 8192,
            "n_heads": 64,
            "n_kv_heads": 8,
            "vocab_size": 102400,
            "max_position_embeddings": 4096,
            "ffn": {"type": "gated", "intermediate_size": 22016},
            "mixer": {"kind": "attention", "causal": True},
        }
    )


def test_mla_at_six_bits_reproduces_deepseek_v2s_93_percent_cache_cut():
    """DeepSeek-V2 (arXiv 2405.04434, §3.2.3): MLA plus KV quantisation to ~6 bits per element
    cuts the KV cache by 93.3% against DeepSeek 67B (bf16). DeepSeek-V2 has 60 MLA layers of
    V3's shape (kv_lora_rank 512, qk_rope_head_dim 64). By hand: 67B caches 95 x 2 x 8 x 128 x
    2 B = 389,120 B per token; V2 at 6 bits 60 x 576 x 0.75 B = 25,920 B: 93.34% less; at
    fp6's 6.25 bits (with the block scales) 27,000 B: 93.06% less."""
    base = make_deployment(_deepseek_67b(), HW, tp=8)
    v3 = load_model("deepseek-v3")
    v2 = v3.model_copy(update={"n_layers": 60, "id": "deepseek-v2-shaped"})
    mla = make_deployment(v2, HW, tp=8, weight_dtype="fp8", kv_dtype="fp6")
    baseline, cached = kv_bytes_per_token_per_gpu(base), kv_bytes_per_token_per_gpu(mla)
    assert baseline * 8 == 389_120  # per GPU at tp 8: one KV head each
    assert cached == pytest.approx(27_000)
    assert 1 - cached / (baseline * 8) == pytest.approx(0.9306, abs=1e-4)
    six_bits = cached * 6 / 6.25  # the paper's "6 bits on average", scales not counted
    assert 1 - six_bits / (baseline * 8) == pytest.approx(0.933, abs=5e-4)


def test_cli_accepts_fp6_and_names_it_when_refusing():
    ok = CliRunner().invoke(
        app, ["plan", "--model", "llama-3.1-8b", "--hardware", HW, "--kv-dtype", "fp6"]
    )
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(
        app, ["plan", "--model", "llama-3.1-8b", "--hardware", HW, "--kv-dtype", "fp5"]
    )
    assert bad.exit_code == 2 and "fp6" in bad.output
