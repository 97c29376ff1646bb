"""Recurrent-state mixers (Mamba, Mamba-2, RWKV) and multi-head latent attention (MLA):
cache sizes (formulas.md sections 4 and 8), parameter counts and op-level FLOPs / bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from hwsim.dtypes import activation_dtype, kv_dtype, weight_dtype
from hwsim.model.forward import Forward
from hwsim.model.layers import build_layers, layer_groups, layer_mixer
from hwsim.model.mixers import build_mixer
from hwsim.model.params import count_params
from hwsim.profiles.model import ModelProfile

PROFILE_DIR = Path(__file__).resolve().parent.parent / "model_profiles"
BF16 = kv_dtype("bf16")


def load(stem: str) -> ModelProfile:
    return ModelProfile.model_validate(yaml.safe_load((PROFILE_DIR / f"{stem}.yaml").read_text()))


def forward(model, phase, batch, new, context, tp=1) -> Forward:
    return Forward(
        phase=phase,
        model=model,
        batch=np.asarray(float(batch)),
        new_tokens=np.asarray(float(new)),
        context=np.asarray(float(context)),
        weight=weight_dtype("bf16"),
        kv=BF16,
        act=activation_dtype("bf16"),
        compute_dtype="bf16",
        tp=tp,
    )


def prefill(model, n, batch=1, tp=1) -> Forward:
    return forward(model, "prefill", batch, n, n, tp)


def decode(model, context, batch=1, tp=1) -> Forward:
    return forward(model, "decode", batch, 1, context, tp)


def model_cache_bytes(model: ModelProfile, context: float, tp: int = 1) -> float:
    ctx = np.asarray(float(context))
    return float(
        sum(
            count * mixer.cache_bytes_per_sequence(model, ctx, BF16, tp)
            for mixer, _, count in layer_groups(model)
        )
    )


def op(ops, name):
    (found,) = [o for o in ops if o.name == name]
    return found


def total(ops, field) -> float:
    return float(sum(np.asarray(getattr(o, field), dtype=float) for o in ops))


# -- recurrent state: constant in context ------------------------------------------------------
@pytest.mark.parametrize("stem", ["mamba-2.8b", "mamba2-2.7b", "rwkv-7"])
def test_state_is_constant_in_context(stem):
    model = load(stem)
    for mixer, _, _ in layer_groups(model):
        assert mixer.kv_bytes_per_token(model, BF16, 1) == 0.0
        small = mixer.cache_bytes_per_sequence(model, np.asarray(1024.0), BF16, 1)
        huge = mixer.cache_bytes_per_sequence(model, np.asarray(1024.0**2), BF16, 1)
        assert float(small) == float(huge) > 0
    assert model_cache_bytes(model, 1024) == model_cache_bytes(model, 1024**2)


def test_mamba_2_8b_state_elements():
    model = load("mamba-2.8b")
    (mixer,) = [m for m, _, _ in layer_groups(model)]
    assert mixer.resolved_dt_rank(model) == 160
    assert mixer.ssm_state_elements(model) == 5120 * 16
    assert mixer.conv_state_elements(model) == 5120 * 4
    assert mixer.state_elements(model) == 5120 * 16 + 5120 * 4
    # fp32 SSM state, bf16 conv state
    assert mixer.state_bytes_per_sequence(model, 1) == 5120 * 16 * 4 + 5120 * 4 * 2
    # TP splits d_inner
    assert mixer.state_bytes_per_sequence(model, 2) == mixer.state_bytes_per_sequence(model, 1) / 2
    assert mixer.param_count(model) == 41_241_600


def test_mamba2_state_elements():
    model = load("mamba2-2.7b")
    (mixer,) = [m for m, _, _ in layer_groups(model)]
    assert mixer.n_heads(model) == 80
    assert mixer.ssm_state_elements(model) == 80 * 64 * 128
    assert mixer.conv_state_elements(model) == (5120 + 2 * 128) * 4
    assert mixer.param_count(model) == 40_214_000


def test_rwkv7_state_and_params():
    model = load("rwkv-7")
    (mixer,) = [m for m, _, _ in layer_groups(model)]
    assert mixer.wkv_state_elements(model) == 32 * 64 * 64
    assert mixer.shift_state_elements(model) == 2 * 2048
    assert mixer.state_bytes_per_sequence(model, 1) == 32 * 64 * 64 * 4 + 2 * 2048 * 2
    # the layer-0 differences (no value LoRA, extra ln0) are the only gap to the checkpoint
    layer0_gap = (2 * 2048 * 64 + 2048) - 2 * 2048
    assert count_params(model).total - layer0_gap == 1_527_404_544


def test_rwkv6_param_count():
    """RWKV-6 Finch 1.6B shapes (d 2048, 24 layers, ffn 7168, mix LoRA 32, decay LoRA 64)."""
    spec = {
        "id": "rwkv6-test",
        "name": "x",
        "family": "rwkv",
        "source": "test",
        "n_layers": 24,
        "d_model": 2048,
        "vocab_size": 65536,
        "max_position_embeddings": 4096,
        "position_embedding": "none",
        "norm": "layernorm",
        "ffn": {"type": "none"},
        "mixer": {"kind": "rwkv", "version": 6, "ffn_size": 7168, "mix_lora_rank": 32},
    }
    with pytest.raises(ValueError, match="decay_lora_rank"):
        build_layers(ModelProfile.model_validate(spec))
    spec["mixer"]["decay_lora_rank"] = 64
    model = ModelProfile.model_validate(spec)
    c = 2048
    time_mix = 6 * c + 10 * c * 32 + c + 2 * c * 64 + c + 5 * c * c + 2 * c
    channel_mix = 2 * c + 2 * c * 7168 + c * c
    (mixer,) = [m for m, _, _ in layer_groups(model)]
    assert mixer.param_count(model) == time_mix + channel_mix
    assert count_params(model).total == pytest.approx(1.6e9, rel=0.01)


def test_rwkv_rejects_other_versions_loras():
    with pytest.raises(ValueError):
        build_mixer(
            {
                "kind": "rwkv",
                "version": 6,
                "ffn_size": 8,
                "mix_lora_rank": 1,
                "decay_lora_rank": 1,
                "gate_lora_rank": 1,
            }
        )


# -- MLA ----------------------------------------------------------------------------------------
def test_deepseek_v3_latent_cache():
    model = load("deepseek-v3")
    assert model_cache_bytes(model, 1) == 61 * (512 + 64) * 2 == 70_272
    assert model_cache_bytes(model, 1000) == 1000 * 70_272
    # replicated on every TP rank: the per-rank cache does not shrink with tp
    assert model_cache_bytes(model, 1000, tp=8) == model_cache_bytes(model, 1000, tp=1)


def test_deepseek_v3_mla_params():
    model = load("deepseek-v3")
    (mixer,) = {m for m, _, _ in layer_groups(model)}
    expected = (
        7168 * 1536  # q_a_proj
        + 1536  # q_a_layernorm
        + 1536 * 128 * 192  # q_b_proj
        + 7168 * 576  # kv_a_proj_with_mqa
        + 512  # kv_a_layernorm
        + 512 * 128 * 256  # kv_b_proj
        + 128 * 128 * 7168  # o_proj
    )
    assert mixer.param_count(model) == expected == 187_107_328
    counts = count_params(model)
    assert counts.total == pytest.approx(671e9, rel=0.001)
    assert counts.active == pytest.approx(37.6e9, rel=0.01)


def _mla_common_flops(h=128):
    return 2 * (7168 * 1536 + 1536 * h * 192 + 7168 * 576 + h * 128 * 7168)


def test_mla_decode_flops_absorbed_vs_not():
    """One DeepSeek-V3 layer, one sequence, one new token at context C, tp = 1."""
    model = load("deepseek-v3")
    (mixer,) = {m for m, _, _ in layer_groups(model)}
    flat = mixer.model_copy(update={"absorbed": False})
    c, h = 4096, 128
    fw = decode(model, c)
    norms = 4 * (512 + 1536)
    absorbed = total(mixer.ops(fw), "flops")
    hand_absorbed = (
        _mla_common_flops()
        + norms
        + 2 * h * 128 * 512  # q_nope x W_UK into the latent space
        + h * c * (2 * (512 + 64) + 2 * 512)  # scores and values against the latent
        + 2 * h * 512 * 128  # latent output x W_UV
    )
    assert absorbed == pytest.approx(hand_absorbed, rel=1e-12)
    decompressed = total(flat.ops(fw), "flops")
    hand_decompressed = (
        _mla_common_flops()
        + norms
        + 2 * c * 512 * h * (128 + 128)  # kv_b_proj on every cached latent
        + h * c * (2 * 192 + 2 * 128)  # per-head attention, qk 192, v 128
    )
    assert decompressed == pytest.approx(hand_decompressed, rel=1e-12)
    assert absorbed < decompressed
    # the absorbed decode reads the latent cache once for all heads
    core = op(mixer.ops(fw), "attn.core")
    assert float(core.kv_read_bytes) == c * 576 * 2


def test_mla_prefill_uses_decompressed_form():
    model = load("deepseek-v3")
    (mixer,) = {m for m, _, _ in layer_groups(model)}
    n = 2048
    ops = mixer.ops(prefill(model, n))
    core = op(ops, "attn.core")
    assert core.meta["mla_form"] == "decompressed"
    assert float(core.flops) == pytest.approx(128 * n * (n + 1) / 2 * (2 * 192 + 2 * 128))
    assert float(op(ops, "mla.kv_b_proj").flops) == 2 * n * 512 * 128 * 256
    assert float(core.kv_write_bytes) == n * 576 * 2


# -- hybrid -------------------------------------------------------------------------------------
def test_jamba_kv_only_on_attention_layers():
    model = load("jamba-1.5-mini")
    attention = [i for i in range(model.n_layers) if layer_mixer(model, i).is_attention]
    assert attention == [4, 12, 20, 28]
    per_layer_kv = 2 * 8 * 128 * 2  # K and V, 8 KV heads of 128, bf16
    mamba = layer_mixer(model, 0)
    state = mamba.state_bytes_per_sequence(model, 1)
    assert state == 8192 * 16 * 4 + 8192 * 4 * 2
    for ctx in (1024, 131072):
        kv_total = sum(
            count * mixer.kv_bytes_per_token(model, BF16, 1) * ctx
            for mixer, _, count in layer_groups(model)
        )
        assert kv_total == 4 * per_layer_kv * ctx
        assert model_cache_bytes(model, ctx) == 4 * per_layer_kv * ctx + 28 * state
    assert sum(model.is_moe_layer(i) for i in range(32)) == 16


# -- scan FLOPs and decode traffic ------------------------------------------------------------
SCAN_OPS = {"mamba-2.8b": "ssm.scan", "mamba2-2.7b": "ssm.scan", "rwkv-7": "rwkv.wkv"}


@pytest.mark.parametrize("stem", sorted(SCAN_OPS))
def test_prefill_scan_flops_linear_in_length(stem):
    model = load(stem)
    (mixer,) = [m for m, _, _ in layer_groups(model)]
    flops = [float(op(mixer.ops(prefill(model, n)), SCAN_OPS[stem]).flops) for n in (4096, 8192)]
    assert flops[1] / flops[0] == pytest.approx(2.0)
    whole = [total(mixer.ops(prefill(model, n)), "flops") for n in (4096, 8192)]
    assert whole[1] / whole[0] == pytest.approx(2.0)


def test_mamba_scan_flops_constant():
    model = load("mamba-2.8b")
    (mixer,) = [m for m, _, _ in layer_groups(model)]
    n = 1000
    scan = op(mixer.ops(prefill(model, n)), "ssm.scan")
    assert float(scan.flops) == n * (9 * 5120 * 16 + 7 * 5120)


@pytest.mark.parametrize("stem", sorted(SCAN_OPS))
@pytest.mark.parametrize("tp", [1, 2])
def test_decode_moves_the_whole_state(stem, tp):
    model = load(stem)
    (mixer,) = [m for m, _, _ in layer_groups(model)]
    batch = 4
    for context in (1024, 131072):
        ops = mixer.ops(decode(model, context, batch=batch, tp=tp))
        state = batch * mixer.state_bytes_per_sequence(model, tp)
        assert total(ops, "kv_read_bytes") >= state
        assert total(ops, "kv_write_bytes") >= state
        assert total(ops, "kv_read_bytes") + total(ops, "kv_write_bytes") >= 2 * state
    # and the step costs the same at any context
    short = sum(o.hbm_bytes for o in mixer.ops(decode(model, 1024, batch, tp)))
    long = sum(o.hbm_bytes for o in mixer.ops(decode(model, 131072, batch, tp)))
    assert float(short) == float(long)


def test_prefill_writes_final_state_once():
    model = load("mamba-2.8b")
    (mixer,) = [m for m, _, _ in layer_groups(model)]
    ops = mixer.ops(prefill(model, 2048, batch=3))
    assert total(ops, "kv_read_bytes") == 0
    assert total(ops, "kv_write_bytes") == 3 * mixer.state_bytes_per_sequence(model, 1)


def test_ops_accept_array_sweeps():
    """Batch x length sweeps broadcast through every op of the new mixers."""
    for stem in ("deepseek-v3", "mamba-2.8b", "mamba2-2.7b", "rwkv-7", "jamba-1.5-mini"):
        model = load(stem)
        n = np.array([[128.0, 1024.0, 4096.0]])
        b = np.array([[1.0], [8.0]])
        for phase, new in (("prefill", n), ("decode", np.ones_like(n))):
            fw = Forward(
                phase=phase,
                model=model,
                batch=b,
                new_tokens=new,
                context=n,
                weight=weight_dtype("bf16"),
                kv=BF16,
                act=activation_dtype("bf16"),
                compute_dtype="bf16",
            )
            for mixer, _, _ in layer_groups(model):
                for o in mixer.ops(fw):
                    assert np.all(np.isfinite(np.broadcast_to(o.flops, (2, 3))))
                    assert np.all(np.asarray(o.hbm_bytes) >= 0)
