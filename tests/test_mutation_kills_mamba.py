"""Tests written to kill mutants that survived a mutation-testing run over
``hwsim/model/mixers/mamba.py`` (docs/mutation-testing.md, section "Mixers"). Every op of a
forward pass is compared field by field with a table derived by hand from the module
docstrings' formulas and the published configs (restated in the comments); dtypes and shapes
as in ``tests/mixer_op_tables.py``, so that a confused factor changes a number.
"""

from __future__ import annotations

import pytest
from mixer_op_tables import BF16, check_ops, linear_row, one_forward

from hwsim.model.mixers import build_mixer
from hwsim.model.mixers.mamba import Mamba, Mamba2, recurrent_state_traffic
from hwsim.profiles.loader import load_model_profile


def _fw(model, phase, new, ctx, *, tp=2, act=BF16, compute="bf16", sram=228 * 1024):
    return one_forward(model, phase, new, ctx, tp=tp, act=act, compute=compute, sram=sram)


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
        linear_row("mamba.in_proj", t, 2560, 2 * e),
        conv,
        linear_row("mamba.x_proj", t, e, r + 2 * n),
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
    return [
        *table,
        linear_row("mamba.dt_proj", t, r, e),
        scan,
        linear_row("mamba.out_proj", t, e, 2560),
    ]


# Per-sequence states on one of 2 ranks: conv 2560 x 4 x 2 B = 20,480; SSM 2560 x 16 x 4 B
# = 163,840. Prefill scan: 9 e N + 7 e = 368,640 + 17,920 = 386,560 FLOPs a token;
# decode: 7 e N + 7 e = 286,720 + 17,920 = 304,640.
def test_mamba_prefill_op_table():
    ops = MAMBA_MIXER.ops(_fw(MAMBA, "prefill", 10, 10))
    # a fresh prompt reads no state and writes the final one: 3 sequences x state
    check_ops(ops, _mamba_table(30, 386_560, (0, 3 * 20_480), (0, 3 * 163_840)))
    assert ops[4].meta["state_bytes_per_sequence"] == 163_840


def test_mamba_scan_flops_default_to_one_rank():
    # tp = 1 (e = E = 5120): prefill 9 E N + 7 E = 737,280 + 35,840; decode 7 E N + 7 E
    assert MAMBA_MIXER.scan_flops_per_token(MAMBA, "prefill") == 773_120
    assert MAMBA_MIXER.scan_flops_per_token(MAMBA, "decode") == 573_440 + 35_840


def test_mamba_prefill_continuing_a_prefix_reads_the_state():
    ops = MAMBA_MIXER.ops(_fw(MAMBA, "prefill", 10, 50))  # 40 cached tokens + 10 new
    rw_conv, rw_ssm = (3 * 20_480,) * 2, (3 * 163_840,) * 2
    check_ops(ops, _mamba_table(30, 386_560, rw_conv, rw_ssm))


def test_mamba_decode_op_table():
    ops = MAMBA_MIXER.ops(_fw(MAMBA, "decode", 1, 4096))
    check_ops(ops, _mamba_table(3, 304_640, (3 * 20_480,) * 2, (3 * 163_840,) * 2))


def test_mamba_inner_layernorms_op_and_params():
    # Jamba-style RMSNorms on dt, B and C: R + 2N = 192 weights, 4 FLOPs per element.
    jamba_like = MAMBA_MIXER.model_copy(update={"inner_layernorms": True})
    ops = jamba_like.ops(_fw(MAMBA, "prefill", 10, 10))
    check_ops(ops, _mamba_table(30, 386_560, (0, 3 * 20_480), (0, 3 * 163_840), norms=True))
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
        linear_row("mamba2.in_proj", t, 2560, 2 * e + 2 * gn + h),  # z, x, B, C, dt: 5416
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
        linear_row("mamba2.out_proj", t, e, 2560),
    ]


# Per-sequence states on one rank: conv 2816 x 4 x 2 B = 22,528; SSM 2560 x 128 x 4 B =
# 1,310,720. Prefill of 10 tokens: Q = min(256, 10) = 10, per token
# 2 Q (G N + e) + 4 e N + 10 e = 2*10*2688 + 1,310,720 + 25,600 = 1,390,080.
# Decode: 6 e N + 10 e = 1,966,080 + 25,600 = 1,991,680.
def test_mamba2_prefill_op_table():
    ops = MAMBA2_MIXER.ops(_fw(MAMBA2, "prefill", 10, 10))
    check_ops(ops, _mamba2_table(30, 1_390_080, (0, 3 * 22_528), (0, 3 * 1_310_720)))
    assert ops[2].meta["state_bytes_per_sequence"] == 1_310_720


def test_mamba2_decode_op_table():
    ops = MAMBA2_MIXER.ops(_fw(MAMBA2, "decode", 1, 4096))
    check_ops(ops, _mamba2_table(3, 1_991_680, (3 * 22_528,) * 2, (3 * 1_310_720,) * 2))


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
