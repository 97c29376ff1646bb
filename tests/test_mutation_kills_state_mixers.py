"""Tests written to kill mutants that survived a mutation-testing run over the state and latent
mixers ``hwsim/model/mixers/{mla,mamba,rwkv}.py`` (docs/mutation-testing.md, section "Mixers").

Every op of a forward pass is compared field by field with a table derived by hand from the
module docstrings' formulas and the published configs (restated in the comments). The forward
keeps weights and the KV cache in fp32 (4 B) and activations in bf16 (2 B), with a batch of 3
and tp = 2, so that a confused dtype, a byte size divided instead of multiplied, a lost batch
factor or a missing division by tp changes a number.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.dtypes import DTYPES
from hwsim.model.forward import Forward
from hwsim.model.graph import forward_ops
from hwsim.model.mixers import build_mixer
from hwsim.model.mixers.mamba import Mamba, Mamba2, recurrent_state_traffic
from hwsim.model.mixers.mla import MultiHeadLatentAttention
from hwsim.model.mixers.rwkv import RWKV
from hwsim.profiles.loader import load_model_profile

BF16, FP32, INT8 = DTYPES["bf16"], DTYPES["fp32"], DTYPES["int8"]
B = 3  # sequences

FIELDS = ("flops", "weight_bytes", "act_read_bytes", "act_write_bytes", "kv_read_bytes")
FIELDS += ("kv_write_bytes",)


def _fw(model, phase, new, ctx, *, tp=2, act=BF16, compute="bf16", sram=228 * 1024):
    return Forward(
        phase=phase,
        model=model,
        batch=np.asarray(float(B)),
        new_tokens=np.asarray(float(new)),
        context=np.asarray(float(ctx)),
        weight=FP32,
        kv=FP32,
        act=act,
        compute_dtype=compute,
        tp=tp,
        sram_bytes=sram,
    )


def _linear(name, t, k, n):
    """A per-rank projection of t tokens, k -> n features: 2 t k n FLOPs, k n fp32 weights (4 B),
    t k bf16 inputs read and t n outputs written."""
    return dict(
        name=name,
        op_class="matmul",
        flops=2 * t * k * n,
        weight_bytes=k * n * 4,
        act_read_bytes=t * k * 2,
        act_write_bytes=t * n * 2,
    )


def _check(ops, table):
    assert [o.name for o in ops] == [row["name"] for row in table]
    for o, row in zip(ops, table, strict=True):
        assert o.op_class == row["op_class"], o.name
        for f in FIELDS:
            got, want = float(np.asarray(getattr(o, f))), float(row.get(f, 0.0))
            assert got == pytest.approx(want, rel=1e-12, abs=0.0), (o.name, f)
        assert o.on_vector_units == (row["op_class"] == "elementwise"), o.name
        assert o.compute_dtype == row.get("compute_dtype", "bf16"), o.name


# ============================================================================================
# Mamba-1: Mamba 2.8B (d_model 2560, d_inner E = 5120, dt_rank 160, d_state 16, d_conv 4).
# At tp = 2 one rank has e = 2560 channels. Prefill of 10 tokens x 3 sequences: t = 30.
# ============================================================================================
MAMBA = load_model_profile("mamba-2.8b")
MAMBA_MIXER = build_mixer(MAMBA.mixer)
assert isinstance(MAMBA_MIXER, Mamba)


def _mamba_table(t, scan_per_token, conv_rw, scan_rw, norms=False):
    e, r, n = 2560, 160, 16
    conv = dict(
        name="ssm.conv1d",
        op_class="elementwise",
        # 2 d_conv taps + 5 (bias, SiLU) per channel and token
        flops=t * e * (2 * 4 + 5),
        weight_bytes=e * (4 + 1) * 4,  # 4 taps + the conv bias, fp32
        act_read_bytes=t * e * 2,
        act_write_bytes=t * e * 2,
        kv_read_bytes=conv_rw[0],
        kv_write_bytes=conv_rw[1],
    )
    scan = dict(
        name="ssm.scan",
        op_class="elementwise",
        flops=t * scan_per_token,
        weight_bytes=e * (n + 2) * 4,  # A_log (e x N), D, dt bias in fp32
        act_read_bytes=t * (3 * e + 2 * n) * 2,  # x, dt, z (e each) and B, C (N each)
        act_write_bytes=t * e * 2,
        kv_read_bytes=scan_rw[0],
        kv_write_bytes=scan_rw[1],
    )
    table = [
        _linear("mamba.in_proj", t, 2560, 2 * e),
        conv,
        _linear("mamba.x_proj", t, e, r + 2 * n),
    ]
    if norms:
        elems = t * (r + 2 * n)
        table.append(
            dict(
                name="mamba.dt_bc_norms",
                op_class="elementwise",
                flops=4 * elems,
                act_read_bytes=elems * 2,
                act_write_bytes=elems * 2,
            )
        )
    return [*table, _linear("mamba.dt_proj", t, r, e), scan, _linear("mamba.out_proj", t, e, 2560)]


# Per-sequence states on one of 2 ranks: conv 2560 x 4 x 2 B = 20,480; SSM 2560 x 16 x 4 B
# = 163,840. Prefill scan: 9 e N + 7 e = 368,640 + 17,920 = 386,560 FLOPs a token;
# decode: 7 e N + 7 e = 286,720 + 17,920 = 304,640.
def test_mamba_prefill_op_table():
    ops = MAMBA_MIXER.ops(_fw(MAMBA, "prefill", 10, 10))
    # a fresh prompt reads no state and writes the final one: 3 sequences x state
    _check(ops, _mamba_table(30, 386_560, (0, 3 * 20_480), (0, 3 * 163_840)))
    assert ops[4].meta["state_bytes_per_sequence"] == 163_840


def test_mamba_scan_flops_default_to_one_rank():
    # tp = 1 (e = E = 5120): prefill 9 E N + 7 E = 737,280 + 35,840; decode 7 E N + 7 E
    assert MAMBA_MIXER.scan_flops_per_token(MAMBA, "prefill") == 773_120
    assert MAMBA_MIXER.scan_flops_per_token(MAMBA, "decode") == 573_440 + 35_840


def test_mamba_prefill_continuing_a_prefix_reads_the_state():
    ops = MAMBA_MIXER.ops(_fw(MAMBA, "prefill", 10, 50))  # 40 cached tokens + 10 new
    rw_conv, rw_ssm = (3 * 20_480,) * 2, (3 * 163_840,) * 2
    _check(ops, _mamba_table(30, 386_560, rw_conv, rw_ssm))


def test_mamba_decode_op_table():
    ops = MAMBA_MIXER.ops(_fw(MAMBA, "decode", 1, 4096))
    _check(ops, _mamba_table(3, 304_640, (3 * 20_480,) * 2, (3 * 163_840,) * 2))


def test_mamba_inner_layernorms_op_and_params():
    # Jamba-style RMSNorms on dt, B and C: R + 2N = 192 weights, 4 FLOPs per element.
    jamba_like = MAMBA_MIXER.model_copy(update={"inner_layernorms": True})
    ops = jamba_like.ops(_fw(MAMBA, "prefill", 10, 10))
    _check(ops, _mamba_table(30, 386_560, (0, 3 * 20_480), (0, 3 * 163_840), norms=True))
    assert jamba_like.param_count(MAMBA) == 41_241_600 + 192


def test_mamba_param_count_options():
    # 41,241,600 with the conv bias (E = 5120); without it 5120 fewer.
    assert MAMBA_MIXER.param_count(MAMBA) == 41_241_600
    assert MAMBA_MIXER.model_copy(update={"conv_bias": False}).param_count(MAMBA) == 41_236_480
    # in_proj and out_proj biases: 2E + d = 10,240 + 2560 = 12,800
    assert MAMBA_MIXER.model_copy(update={"bias": True}).param_count(MAMBA) == 41_254_400
    # An explicit dt_rank of 100 instead of ceil(2560 / 16) = 160: the x_proj (E x R) and
    # dt_proj (R x E) change by 2 x 60 x 5120 = 614,400.
    explicit = MAMBA_MIXER.model_copy(update={"dt_rank": 100})
    assert explicit.resolved_dt_rank(MAMBA) == 100
    assert explicit.param_count(MAMBA) == 41_241_600 - 614_400


def test_mamba_conv_without_bias_has_only_taps():
    no_bias = MAMBA_MIXER.model_copy(update={"conv_bias": False})
    conv = no_bias.ops(_fw(MAMBA, "prefill", 10, 10))[1]
    assert conv.weight_bytes == 2560 * 4 * 4


def test_mamba_defaults_are_the_reference_block():
    # mamba_simple.Mamba defaults: d_state 16, d_conv 4, expand 2, conv bias, no in/out bias,
    # fp32 SSM state and bf16 conv state.
    m = build_mixer({"kind": "mamba"})
    assert isinstance(m, Mamba)
    assert (m.d_state, m.d_conv, m.expand, m.dt_rank) == (16, 4, 2, "auto")
    assert m.conv_bias is True and m.bias is False and m.inner_layernorms is False
    assert (m.state_dtype_bits, m.conv_state_dtype_bits) == (32, 16)
    # state of Mamba 2.8B at those defaults: 5120 x 16 x 4 + 5120 x 4 x 2 = 368,640 B
    assert m.state_bytes_per_sequence(MAMBA, 1) == 368_640
    # a bf16 SSM state (state_dtype_bits 16) halves the SSM part only: 163,840 + 40,960
    assert m.model_copy(update={"state_dtype_bits": 16}).state_bytes_per_sequence(MAMBA, 1) == (
        5120 * 16 * 2 + 5120 * 4 * 2
    )


def test_recurrent_state_traffic_rules():
    state = 1000.0
    dec = recurrent_state_traffic(_fw(MAMBA, "decode", 1, 7), state)
    assert [float(x) for x in dec] == [3000.0, 3000.0]
    # a decode step reads the state even when it is the sequence's first token (context 1)
    first = recurrent_state_traffic(_fw(MAMBA, "decode", 1, 1), state)
    assert [float(x) for x in first] == [3000.0, 3000.0]
    fresh = recurrent_state_traffic(_fw(MAMBA, "prefill", 7, 7), state)
    assert [float(x) for x in fresh] == [0.0, 3000.0]
    cont = recurrent_state_traffic(_fw(MAMBA, "prefill", 7, 8), state)
    assert [float(x) for x in cont] == [3000.0, 3000.0]


# ============================================================================================
# Mamba-2: Mamba-2 2.7B (d_model 2560, E 5120, headdim 64 -> 80 heads, ngroups 1, d_state 128,
# d_conv 4, chunk 256). At tp = 2: e = 2560, 40 heads, ceil(1/2) = 1 group -> G N = 128.
# ============================================================================================
MAMBA2 = load_model_profile("mamba2-2.7b")
MAMBA2_MIXER = build_mixer(MAMBA2.mixer)
assert isinstance(MAMBA2_MIXER, Mamba2)


def _mamba2_table(t, scan_per_token, conv_rw, scan_rw):
    e, gn, h = 2560, 128, 40
    ch = e + 2 * gn  # 2816 conv channels: x, B, C
    return [
        _linear("mamba2.in_proj", t, 2560, 2 * e + 2 * gn + h),  # z, x, B, C, dt: 5416
        dict(
            name="ssm.conv1d",
            op_class="elementwise",
            flops=t * ch * 13,
            weight_bytes=ch * 5 * 4,
            act_read_bytes=t * ch * 2,
            act_write_bytes=t * ch * 2,
            kv_read_bytes=conv_rw[0],
            kv_write_bytes=conv_rw[1],
        ),
        dict(
            name="ssm.scan",
            op_class="elementwise",
            flops=t * scan_per_token,
            weight_bytes=3 * h * 4,  # dt_bias, A_log, D per head, fp32
            act_read_bytes=t * (e + 2 * gn + h) * 2,  # x, B, C, dt
            act_write_bytes=t * e * 2,
            kv_read_bytes=scan_rw[0],
            kv_write_bytes=scan_rw[1],
        ),
        dict(
            name="mamba2.gated_norm",
            op_class="elementwise",
            flops=t * e * 10,
            weight_bytes=e * 4,
            act_read_bytes=2 * t * e * 2,  # y and z
            act_write_bytes=t * e * 2,
        ),
        _linear("mamba2.out_proj", t, e, 2560),
    ]


# Per-sequence states on one rank: conv 2816 x 4 x 2 B = 22,528; SSM 2560 x 128 x 4 B =
# 1,310,720. Prefill of 10 tokens: Q = min(256, 10) = 10, per token
# 2 Q (G N + e) + 4 e N + 10 e = 2*10*2688 + 1,310,720 + 25,600 = 1,390,080.
# Decode: 6 e N + 10 e = 1,966,080 + 25,600 = 1,991,680.
def test_mamba2_prefill_op_table():
    ops = MAMBA2_MIXER.ops(_fw(MAMBA2, "prefill", 10, 10))
    _check(ops, _mamba2_table(30, 1_390_080, (0, 3 * 22_528), (0, 3 * 1_310_720)))
    assert ops[2].meta["state_bytes_per_sequence"] == 1_310_720


def test_mamba2_decode_op_table():
    ops = MAMBA2_MIXER.ops(_fw(MAMBA2, "decode", 1, 4096))
    _check(ops, _mamba2_table(3, 1_991_680, (3 * 22_528,) * 2, (3 * 1_310_720,) * 2))


def test_mamba2_chunk_caps_the_intra_chunk_term():
    # 1000-token prompt: Q = min(256, 1000) = 256: 2*256*2688 + 1,310,720 + 25,600 = 2,712,576
    fw = _fw(MAMBA2, "prefill", 1000, 1000)
    assert float(MAMBA2_MIXER.scan_flops_per_token(fw)) == 2_712_576


def test_mamba2_without_gated_norm_and_with_biases():
    plain = MAMBA2_MIXER.model_copy(update={"rmsnorm": False})
    names = [o.name for o in plain.ops(_fw(MAMBA2, "prefill", 10, 10))]
    assert names == ["mamba2.in_proj", "ssm.conv1d", "ssm.scan", "mamba2.out_proj"]
    # 40,214,000 with the norm weight (E = 5120) and the conv bias (E + 2GN = 5376)
    assert plain.param_count(MAMBA2) == 40_214_000 - 5120
    assert MAMBA2_MIXER.model_copy(update={"conv_bias": False}).param_count(MAMBA2) == (
        40_214_000 - 5376
    )
    # in_proj bias 2E + 2GN + H = 10,240 + 256 + 80, out_proj bias d = 2560: 13,136
    assert MAMBA2_MIXER.model_copy(update={"bias": True}).param_count(MAMBA2) == 40_227_136


def test_mamba2_groups_split_when_they_divide():
    # 8 groups at tp = 2: 4 per rank; at tp = 16 one (replicated); 1 group at tp = 2: 1.
    eight = MAMBA2_MIXER.model_copy(update={"ngroups": 8})
    assert [eight.groups_per_rank(tp) for tp in (1, 2, 3, 16)] == [8, 4, 3, 1]
    assert MAMBA2_MIXER.groups_per_rank(2) == 1
    # conv state at tp = 2 with 8 groups: (2560 + 2 * 4 * 128) x 4 = 14,336 elements
    assert eight.conv_state_elements(MAMBA2, 2) == 14_336
    assert MAMBA2_MIXER.ssm_state_elements(MAMBA2, 2) == 2560 * 128


def test_mamba2_check_model_needs_whole_heads():
    MAMBA2_MIXER.check_model(MAMBA2)  # 5120 / 64 = 80 heads
    odd = MAMBA2_MIXER.model_copy(update={"headdim": 48})  # 5120 = 106 x 48 + 32
    with pytest.raises(
        ValueError, match=r"^mixer 'mamba2': d_inner 5120 is not a multiple of headdim 48$"
    ):
        odd.check_model(MAMBA2)


def test_mamba2_defaults_are_the_reference_block():
    m = build_mixer({"kind": "mamba2"})
    assert isinstance(m, Mamba2)
    assert (m.d_state, m.headdim, m.ngroups, m.chunk_size, m.rmsnorm) == (128, 64, 1, 256, True)


# ============================================================================================
# MLA: DeepSeek-V3 (d 7168, 128 heads, q_lora_rank 1536, kv_lora_rank 512, qk_nope 128,
# qk_rope 64, v 128). At tp = 2 one rank has h = 64 heads; q/k head 192, latent 512 + 64 = 576.
# ============================================================================================
DSV3 = load_model_profile("deepseek-v3")
MLA = build_mixer(DSV3.mixer)
assert isinstance(MLA, MultiHeadLatentAttention)


def _mla_front(t, q_lora=True):
    table = []
    if q_lora:
        table += [
            _linear("mla.q_a_proj", t, 7168, 1536),
            _linear("mla.q_b_proj", t, 1536, 64 * 192),
        ]
    else:
        table += [_linear("mla.q_proj", t, 7168, 64 * 192)]
    width = 512 + (1536 if q_lora else 0)
    table += [
        _linear("mla.kv_a_proj", t, 7168, 576),
        dict(
            name="mla.latent_norms",
            op_class="elementwise",
            flops=4 * t * width,
            act_read_bytes=t * width * 2,
            act_write_bytes=t * width * 2,
        ),
    ]
    return table


def test_mla_prefill_op_table():
    # 10-token prompt, 3 sequences: t = 30 tokens, 55 causal pairs per head.
    ops = MLA.ops(_fw(DSV3, "prefill", 10, 10))
    out = 64 * (128 + 128)  # kv_b_proj output per rank: K_nope and V, 16,384
    # FlashAttention traffic with d_qk 192, d_v 128: M = 233,472 B = 116,736 bf16 elements,
    # B_c = ceil(116,736 / (2 * 320)) = 183, T_c = ceil(10 / 183) = 1, density 55/100:
    # max(0.55, 1) = 1 pass; per head 10 * 320 + 10 * (192 + 256) * 1 = 7,680 elements;
    # x 3 x 64 heads x 2 B = 2,949,120 B, half read, half written.
    table = [
        *_mla_front(30),
        dict(
            name="mla.kv_b_proj",
            op_class="matmul",
            flops=2 * 30 * 512 * out,
            weight_bytes=512 * out * 4,
            act_read_bytes=30 * 512 * 2,  # the new latents, still activations
            act_write_bytes=30 * out * 2,
        ),
        dict(
            name="attn.core",
            op_class="attention",
            flops=3 * 64 * 55 * (2 * 192 + 2 * 128),
            act_read_bytes=1_474_560,
            act_write_bytes=1_474_560,
            kv_write_bytes=30 * 576 * 4,  # latent + RoPE key of every new token, fp32 cache
        ),
        _linear("mla.o_proj", 30, 64 * 128, 7168),
    ]
    _check(ops, table)
    assert ops[5].meta == {"pairs_per_head": 55, "mla_form": "decompressed"}


def test_mla_absorbed_decode_op_table():
    # One new token per sequence at context 4096: t = 3, 4096 pairs and keys per head.
    ops = MLA.ops(_fw(DSV3, "decode", 1, 4096))
    uk = _linear("mla.q_absorb_uk", 3, 128, 512)  # per head, then x 64 heads
    uv = _linear("mla.out_absorb_uv", 3, 512, 128)
    for row in (uk, uv):
        for f in ("flops", "weight_bytes", "act_read_bytes", "act_write_bytes"):
            row[f] *= 64
    table = [
        *_mla_front(3),
        uk,
        dict(
            name="attn.core",
            op_class="attention",
            # QK^T against the 576-wide latent key and PV with the 512-wide latent value
            flops=3 * 64 * 4096 * (2 * 576 + 2 * 512),
            act_read_bytes=3 * 64 * 1 * 576 * 2,  # the absorbed queries
            act_write_bytes=3 * 64 * 1 * 512 * 2,  # latent outputs
            kv_read_bytes=3 * 4096 * 576 * 4,  # each sequence's latents once, all heads
            kv_write_bytes=3 * 576 * 4,
        ),
        uv,
        _linear("mla.o_proj", 3, 64 * 128, 7168),
    ]
    _check(ops, table)
    assert ops[5].meta == {"pairs_per_head": 4096, "mla_form": "absorbed"}


def test_mla_decompressed_decode_op_table():
    flat = MLA.model_copy(update={"absorbed": False})
    ops = flat.ops(_fw(DSV3, "decode", 1, 4096))
    out, rows = 64 * 256, 3 * 4096
    table = [
        *_mla_front(3),
        dict(
            name="mla.kv_b_proj",
            op_class="matmul",
            flops=2 * rows * 512 * out,  # every cached latent decompressed again
            weight_bytes=512 * out * 4,
            kv_read_bytes=rows * 512 * 4,  # latents read from the fp32 cache
            act_write_bytes=rows * out * 2,
        ),
        dict(
            name="attn.core",
            op_class="attention",
            flops=3 * 64 * 4096 * (2 * 192 + 2 * 128),
            # decompressed K_nope and V (4096 x 256 per head) and the 192-wide query
            act_read_bytes=3 * 64 * (4096 * 256 + 192) * 2,
            act_write_bytes=3 * 64 * 128 * 2,
            kv_read_bytes=3 * 4096 * 64 * 4,  # the shared RoPE key from the cache
            kv_write_bytes=3 * 576 * 4,
        ),
        _linear("mla.o_proj", 3, 64 * 128, 7168),
    ]
    _check(ops, table)
    assert ops[5].meta["mla_form"] == "decompressed"
    assert not flat.uses_absorbed(_fw(DSV3, "decode", 1, 10))
    assert MLA.uses_absorbed(_fw(DSV3, "decode", 1, 10))
    assert not MLA.uses_absorbed(_fw(DSV3, "prefill", 10, 10))


def test_mla_decode_of_several_tokens():
    # 4 draft tokens at context 100: keys 100 x 4 per head; pairs(100) - pairs(96) = 394.
    core = MLA.ops(_fw(DSV3, "decode", 4, 100))[5]
    assert core.meta["pairs_per_head"] == 394
    assert float(core.kv_read_bytes) == 3 * 400 * 576 * 4
    assert float(core.act_read_bytes) == 3 * 64 * 4 * 576 * 2
    assert float(core.act_write_bytes) == 3 * 64 * 4 * 512 * 2
    flat = MLA.model_copy(update={"absorbed": False}).ops(_fw(DSV3, "decode", 4, 100))[5]
    assert float(flat.kv_read_bytes) == 3 * 400 * 64 * 4
    assert float(flat.act_read_bytes) == 3 * 64 * (400 * 256 + 4 * 192) * 2
    assert float(flat.act_write_bytes) == 3 * 64 * 4 * 128 * 2


def test_mla_tiled_traffic_block_columns():
    # SRAM for exactly 20 key columns: 20 x 2 x (192 + 128) elements x 2 B = 25,600 B.
    # 25-token prompt: T_c = 2, density 325/625 = 0.52, 2 x 0.52 = 1.04 passes;
    # per head 25 x 320 + 25 x 448 x 1.04 = 8,000 + 11,648 = 19,648 elements.
    core = MLA.ops(_fw(DSV3, "prefill", 25, 25, sram=25_600))[5]
    assert float(core.act_read_bytes + core.act_write_bytes) == pytest.approx(3 * 64 * 19_648 * 2)
    # 40 tokens: T_c = ceil(40 / 20) = 2 (a narrower block, e.g. 14 columns, would give 3),
    # density 820/1600 = 0.5125, 1.025 passes: 40 x 320 + 40 x 448 x 1.025 = 31,168 per head.
    core = MLA.ops(_fw(DSV3, "prefill", 40, 40, sram=25_600))[5]
    assert float(core.act_read_bytes + core.act_write_bytes) == pytest.approx(3 * 64 * 31_168 * 2)
    # An SRAM below one row still has B_c = 1: T_c = 25, 25 x 0.52 = 13 passes:
    # 8,000 + 25 x 448 x 13 = 153,600 elements per head.
    core = MLA.ops(_fw(DSV3, "prefill", 25, 25, sram=2.0))[5]
    assert float(core.act_read_bytes + core.act_write_bytes) == pytest.approx(3 * 64 * 153_600 * 2)
    # an empty forward: density 0 (not 0/0), no traffic
    core = MLA.ops(_fw(DSV3, "prefill", 0, 0))[5]
    assert float(core.act_read_bytes) == 0.0


def test_mla_without_query_lora_deepseek_v2_lite():
    # DeepSeek-V2-Lite: hidden 2048, 16 heads, q_lora_rank null, kv_lora_rank 512, 128/64/128.
    lite_model = DSV3.model_copy(update={"d_model": 2048, "n_heads": 16, "n_kv_heads": 16})
    lite = MLA.model_copy(update={"q_lora_rank": None})
    # q_proj 2048 x 16 x 192 = 6,291,456; kv_a 2048 x 576 + 512 = 1,180,160;
    # kv_b 512 x 16 x 256 = 2,097,152; o 16 x 128 x 2048 = 4,194,304: 13,763,072
    assert lite.param_count(lite_model) == 13_763_072
    ops = lite.ops(_fw(DSV3, "prefill", 10, 10))
    _check(ops[:3], _mla_front(30, q_lora=False))


def test_mla_param_count_with_linear_biases():
    # 187,107,328 (test_state_mixers) plus biases on q_b (128 x 192 = 24,576), kv_a (576)
    # and o (7168): 32,320
    biased = DSV3.model_copy(update={"linear_bias": True})
    assert MLA.param_count(biased) == 187_107_328 + 32_320


def test_mla_encoder_keeps_no_cache():
    enc = DSV3.model_copy(update={"architecture": "encoder"})
    assert MLA.kv_bytes_per_token(enc, FP32, 1) == 0.0
    assert MLA.kv_bytes_per_token(DSV3, FP32, 8) == 576 * 4
    core = MLA.ops(_fw(enc, "prefill", 10, 10))[5]
    assert float(core.kv_write_bytes) == 0.0


def test_mla_check_model_and_integer_activations():
    with pytest.raises(ValueError, match=r"^mixer 'mla' needs n_heads$"):
        MLA.check_model(DSV3.model_copy(update={"n_heads": 0}))
    MLA.check_model(DSV3.model_copy(update={"n_heads": 1, "n_kv_heads": 1}))
    # a non-float activation dtype: the cores run in bf16; the projections keep the request
    ops = MLA.ops(_fw(DSV3, "decode", 1, 64, act=INT8, compute="int8"))
    assert ops[5].compute_dtype == "bf16" and ops[0].compute_dtype == "int8"
    flat = MLA.model_copy(update={"absorbed": False})
    ops = flat.ops(_fw(DSV3, "decode", 1, 64, act=INT8, compute="int8"))
    assert ops[5].compute_dtype == "bf16" and ops[4].compute_dtype == "int8"
    ops = flat.ops(_fw(DSV3, "decode", 1, 64, compute="fp16"))
    assert ops[5].compute_dtype == "fp16"
    assert MLA.ops(_fw(DSV3, "decode", 1, 64, compute="fp16"))[5].compute_dtype == "fp16"


def test_mla_defaults():
    m = build_mixer(
        {"kind": "mla", "kv_lora_rank": 8, "qk_nope_head_dim": 4, "qk_rope_head_dim": 0}
        | {"v_head_dim": 4}
    )
    assert m.q_lora_rank is None and m.absorbed is True


# ============================================================================================
# RWKV-7: RWKV-7 World3 1.5B (C 2048, head 64 -> 32 heads, F 8192, LoRA ranks w 96, a 96,
# v 64, g 256 -> 512). At tp = 2: 16 heads, c_r = 1024 channels, f_r = 4096.
# RWKV-6: Finch 1.6B shapes (C 2048, F 7168, mix LoRA 32, decay LoRA 64).
# ============================================================================================
RWKV7_MODEL = load_model_profile("rwkv-7")
RWKV7 = build_mixer(RWKV7_MODEL.mixer)
RWKV6 = build_mixer(
    {"kind": "rwkv", "version": 6, "ffn_size": 7168, "mix_lora_rank": 32, "decay_lora_rank": 64}
)
assert isinstance(RWKV7, RWKV) and isinstance(RWKV6, RWKV)


def _shift(name, t, lerps, rw):
    """x_prev - x once and `lerps` mixes (2 FLOPs each); the 2048-wide bf16 shift state."""
    return dict(
        name=name,
        op_class="elementwise",
        flops=t * 2048 * (1 + 2 * lerps),
        weight_bytes=lerps * 2048 * 4,
        act_read_bytes=t * 2048 * 2,
        act_write_bytes=t * 2048 * lerps * 2,
        kv_read_bytes=rw[0],
        kv_write_bytes=rw[1],
    )


def _ew(name, elems, flops_per, reads):
    return dict(
        name=name,
        op_class="elementwise",
        flops=elems * flops_per,
        act_read_bytes=reads * elems * 2,
        act_write_bytes=elems * 2,
    )


def _wkv(t, per_state, inputs, rw):
    return dict(
        name="rwkv.wkv",
        op_class="elementwise",
        flops=t * per_state * 16 * 64 * 64,  # 16 heads of a 64 x 64 state per rank
        act_read_bytes=t * inputs * 1024 * 2,
        act_write_bytes=t * 1024 * 2,
        kv_read_bytes=rw[0],
        kv_write_bytes=rw[1],
    )


# Per-sequence states on one rank: shift 2048 x 2 B = 4,096 (each of the two shift ops);
# WKV 16 x 64 x 64 x 4 B = 262,144.
def _rwkv7_table(t, shift_rw, wkv_rw):
    return [
        _shift("rwkv.time_shift", t, 6, shift_rw),
        _linear("rwkv.lora_down", t, 2048, 512),
        _ew("rwkv.lora_act", t * 512, 4, 1),
        _linear("rwkv.lora_up", t, 512, 1024),
        _linear("rwkv.rkv_proj", t, 2048, 3 * 1024),
        _wkv(t, 9, 6, wkv_rw),  # 9 N^2 per head; r, w, k, v, a, b
        _ew("rwkv.ln_x_gate", t * 1024, 12, 3),
        _linear("rwkv.output", t, 1024, 2048),
        _shift("rwkv.channel_shift", t, 1, shift_rw),
        _linear("rwkv.ffn_key", t, 2048, 4096),
        _ew("rwkv.ffn_relu_sq", t * 4096, 2, 1),
        _linear("rwkv.ffn_value", t, 4096, 2048),
    ]


def test_rwkv7_prefill_op_table():
    ops = RWKV7.ops(_fw(RWKV7_MODEL, "prefill", 10, 10))
    _check(ops, _rwkv7_table(30, (0, 3 * 4096), (0, 3 * 262_144)))
    assert ops[5].meta["state_bytes_per_sequence"] == 262_144


def test_rwkv7_decode_op_table():
    ops = RWKV7.ops(_fw(RWKV7_MODEL, "decode", 1, 4096))
    _check(ops, _rwkv7_table(3, (3 * 4096,) * 2, (3 * 262_144,) * 2))


def test_rwkv6_prefill_op_table():
    t = 30
    shift_rw, wkv_rw = (0, 3 * 4096), (0, 3 * 262_144)
    table = [
        _shift("rwkv.time_shift", t, 1, shift_rw),
        _linear("rwkv.mix_lora_down", t, 2048, 5 * 32),
        _linear("rwkv.mix_lora_up", t, 5 * 32, 2048),
        _ew("rwkv.mix_lerps", t * 2048, 11, 6),
        _linear("rwkv.decay_lora_down", t, 2048, 64),
        _linear("rwkv.decay_lora_up", t, 64, 1024),
        _linear("rwkv.rkvg_proj", t, 2048, 4 * 1024),
        _wkv(t, 5, 4, wkv_rw),  # 5 N^2 per head; r, w, k, v
        _ew("rwkv.ln_x_gate", t * 1024, 12, 3),
        _linear("rwkv.output", t, 1024, 2048),
        _shift("rwkv.channel_shift", t, 2, shift_rw),
        _linear("rwkv.ffn_key", t, 2048, 3584),
        _ew("rwkv.ffn_relu_sq", t * 3584, 2, 1),
        _linear("rwkv.ffn_value", t, 3584, 2048),
        _linear("rwkv.ffn_receptance", t, 2048, 2048),
        _ew("rwkv.ffn_gate", t * 2048, 5, 2),
    ]
    _check(RWKV6.ops(_fw(RWKV7_MODEL, "prefill", 10, 10)), table)


def test_rwkv_heads_and_state_under_tp():
    # 32 heads: ceil(32 / 3) = 11 per rank at tp = 3; the shift state is replicated.
    assert RWKV7.n_heads(RWKV7_MODEL) == 32
    assert RWKV7.heads_per_rank(RWKV7_MODEL, 3) == 11
    assert RWKV7.wkv_state_elements(RWKV7_MODEL, 3) == 11 * 4096
    assert RWKV7.shift_state_elements(RWKV7_MODEL, 3) == 4096
    assert RWKV7.state_elements(RWKV7_MODEL, 3) == 11 * 4096 + 4096
    assert RWKV7.state_elements(RWKV7_MODEL) == 32 * 4096 + 4096  # one rank: all 32 heads
    assert RWKV7.state_bytes_per_sequence(RWKV7_MODEL, 3) == 11 * 4096 * 4 + 4096 * 2
    # wkv FLOPs per token: 9 x 11 x 64^2 (v7), 5 x 32 x 64^2 (v6, tp = 1)
    assert RWKV7.wkv_flops_per_token(RWKV7_MODEL, 3) == 9 * 11 * 4096
    assert RWKV6.wkv_flops_per_token(RWKV7_MODEL) == 5 * 32 * 4096
    # other storage widths
    wide = RWKV7.model_copy(update={"state_dtype_bits": 16, "shift_state_dtype_bits": 32})
    assert wide.state_bytes_per_sequence(RWKV7_MODEL, 1) == 32 * 4096 * 2 + 4096 * 4


def test_rwkv_defaults_and_all_reduces():
    m = build_mixer(
        {"kind": "rwkv", "ffn_size": 8}
        | {"decay_lora_rank": 1, "a_lora_rank": 1, "v_lora_rank": 1, "gate_lora_rank": 1}
    )
    assert m.version == 7 and m.head_size == 64
    assert (m.state_dtype_bits, m.shift_state_dtype_bits) == (32, 16)
    # The time-mix output and the channel-mix value are both row-parallel: at tp = 2 a layer
    # all-reduces twice (ffn.type none adds none); Mamba's block only after out_proj: once.
    for model, per_layer in ((RWKV7_MODEL, 2), (MAMBA, 1)):
        (ar,) = [o for o in forward_ops(_fw(model, "decode", 1, 10)) if o.name == "tp.all_reduce"]
        assert ar.count == per_layer * model.n_layers


def test_rwkv_check_model_and_validation_messages():
    RWKV7.check_model(RWKV7_MODEL)
    with pytest.raises(
        ValueError, match=r"^mixer 'rwkv': d_model 2048 is not a multiple of head_size 48$"
    ):
        RWKV7.model_copy(update={"head_size": 48}).check_model(RWKV7_MODEL)
    with pytest.raises(ValueError, match=r"rwkv version 7 needs a_lora_rank, v_lora_rank \(got"):
        build_mixer({"kind": "rwkv", "ffn_size": 8, "decay_lora_rank": 1, "gate_lora_rank": 1})
    with pytest.raises(
        ValueError, match=r"rwkv version 6 has no a_lora_rank, gate_lora_rank \(got"
    ):
        build_mixer(
            {"kind": "rwkv", "version": 6, "ffn_size": 8, "mix_lora_rank": 1}
            | {"decay_lora_rank": 1, "gate_lora_rank": 1, "a_lora_rank": 2}
        )
    with pytest.raises(ValueError, match=r"rwkv version 7 has no mix_lora_rank \(got"):
        build_mixer(
            {"kind": "rwkv", "ffn_size": 8, "decay_lora_rank": 1, "a_lora_rank": 1}
            | {"v_lora_rank": 1, "gate_lora_rank": 1, "mix_lora_rank": 1}
        )
    with pytest.raises(ValueError, match=r"^RWKV-7 needs mix_lora_rank$"):
        RWKV7._rank("mix_lora_rank")
    assert RWKV7._rank("gate_lora_rank") == 256


def test_rwkv_param_counts():
    # RWKV-7, C = 2048, F = 8192: vectors 12 C = 24,576; LoRAs 2 C x 512 = 2,097,152;
    # r, k, v, o 4 C^2 = 16,777,216; ln_x 2 C = 4,096: time-mix 18,903,040.
    # channel-mix x_k C + 2 C F = 2,048 + 33,554,432 = 33,556,480.
    assert RWKV7.time_mix_params(RWKV7_MODEL) == 18_903_040
    assert RWKV7.channel_mix_params(RWKV7_MODEL) == 33_556_480
    assert RWKV7.param_count(RWKV7_MODEL) == 18_903_040 + 33_556_480
    # RWKV-6: vectors 8 C = 16,384; mix LoRA 2 C x 5 x 32 = 655,360; decay LoRA 2 C x 64
    # = 262,144; 5 C^2 = 20,971,520; ln_x 4,096: 21,909,504. Channel-mix 2 C + 2 C F + C^2
    # = 4,096 + 29,360,128 + 4,194,304 = 33,558,528.
    assert RWKV6.time_mix_params(RWKV7_MODEL) == 21_909_504
    assert RWKV6.channel_mix_params(RWKV7_MODEL) == 33_558_528


# -- the smallest legal shapes are accepted (every bound is inclusive) -------------------------
@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "mamba", "d_state": 1, "d_conv": 1, "expand": 1, "dt_rank": 1}
        | {"state_dtype_bits": 1, "conv_state_dtype_bits": 1},
        {"kind": "mamba2", "d_state": 1, "d_conv": 1, "expand": 1, "headdim": 1}
        | {"ngroups": 1, "chunk_size": 1, "state_dtype_bits": 1, "conv_state_dtype_bits": 1},
        {"kind": "mla", "q_lora_rank": 1, "kv_lora_rank": 1, "qk_nope_head_dim": 1}
        | {"qk_rope_head_dim": 0, "v_head_dim": 1},
        {"kind": "rwkv", "head_size": 1, "ffn_size": 1, "decay_lora_rank": 1, "a_lora_rank": 1}
        | {"v_lora_rank": 1, "gate_lora_rank": 1, "state_dtype_bits": 1}
        | {"shift_state_dtype_bits": 1},
        {"kind": "rwkv", "version": 6, "ffn_size": 1, "mix_lora_rank": 1, "decay_lora_rank": 1},
    ],
    ids=lambda s: s["kind"],
)
def test_smallest_shapes_are_accepted(spec):
    m = build_mixer(spec)
    for key, value in spec.items():
        assert getattr(m, key) == value


# -- shapes without a default must be given ----------------------------------------------------
MLA_SPEC = {"kind": "mla", "kv_lora_rank": 8, "qk_nope_head_dim": 4, "qk_rope_head_dim": 0}
MLA_SPEC |= {"v_head_dim": 4}


@pytest.mark.parametrize(
    "spec, field",
    [
        *[({k: v for k, v in MLA_SPEC.items() if k != f}, f) for f in list(MLA_SPEC)[1:]],
        ({"kind": "rwkv", "decay_lora_rank": 1, "a_lora_rank": 1, "v_lora_rank": 1}, "ffn_size"),
    ],
)
def test_shapes_without_defaults_are_required(spec, field):
    with pytest.raises(ValueError, match=rf"^mixer\.{field}: Field required"):
        build_mixer(spec)


@pytest.mark.parametrize(
    "spec, field",
    [
        (MLA_SPEC | {"q_lora_rank": 0}, "q_lora_rank"),
        *[
            (RWKV7_MODEL.mixer | {f: 0}, f)
            for f in ("decay_lora_rank", "a_lora_rank", "v_lora_rank", "gate_lora_rank")
        ],
        (
            {"kind": "rwkv", "version": 6, "ffn_size": 8, "decay_lora_rank": 1, "mix_lora_rank": 0},
            "mix_lora_rank",
        ),
    ],
)
def test_optional_ranks_are_still_positive(spec, field):
    # A LoRA rank may be absent (null) but never 0: a rank-0 LoRA is no LoRA.
    with pytest.raises(ValueError, match=rf"^mixer\.{field}\b.*greater than or equal to 1"):
        build_mixer(spec)
