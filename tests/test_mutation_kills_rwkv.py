"""Tests written to kill mutants that survived a mutation-testing run over
``hwsim/model/mixers/rwkv.py`` (docs/mutation-testing.md, section "Mixers"). Every op of a
forward pass is compared field by field with a table derived by hand from the module
docstrings' formulas and the published configs (restated in the comments); dtypes and shapes
as in ``tests/mixer_op_tables.py``, so that a confused factor changes a number.
"""

from __future__ import annotations

import pytest
from mixer_op_tables import BF16, check_ops, linear_row, one_forward

from hwsim.model.graph import forward_ops
from hwsim.model.mixers import build_mixer
from hwsim.model.mixers.rwkv import RWKV
from hwsim.profiles.loader import load_model_profile


def _fw(model, phase, new, ctx, *, tp=2, act=BF16, compute="bf16", sram=228 * 1024):
    return one_forward(model, phase, new, ctx, tp=tp, act=act, compute=compute, sram=sram)


# ============================================================================================
# RWKV-7: RWKV-7 World3 1.5B (C 2048, head 64 -> 32 heads, F 8192, LoRA ranks w 96, a 96,
# v 64, g 256 -> 512). At tp = 2: 16 heads, c_r = 1024 channels, f_r = 4096.
# RWKV-6: Finch 1.6B shapes (C 2048, F 7168, mix LoRA 32, decay LoRA 64).
# ============================================================================================
MAMBA = load_model_profile("mamba-2.8b")  # for its one all-reduce a layer
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
        linear_row("rwkv.lora_down", t, 2048, 512),
        _ew("rwkv.lora_act", t * 512, 4, 1),
        linear_row("rwkv.lora_up", t, 512, 1024),
        linear_row("rwkv.rkv_proj", t, 2048, 3 * 1024),
        _wkv(t, 9, 6, wkv_rw),  # 9 N^2 per head; r, w, k, v, a, b
        _ew("rwkv.ln_x_gate", t * 1024, 12, 3),
        linear_row("rwkv.output", t, 1024, 2048),
        _shift("rwkv.channel_shift", t, 1, shift_rw),
        linear_row("rwkv.ffn_key", t, 2048, 4096),
        _ew("rwkv.ffn_relu_sq", t * 4096, 2, 1),
        linear_row("rwkv.ffn_value", t, 4096, 2048),
    ]


def test_rwkv7_prefill_op_table():
    ops = RWKV7.ops(_fw(RWKV7_MODEL, "prefill", 10, 10))
    check_ops(ops, _rwkv7_table(30, (0, 3 * 4096), (0, 3 * 262_144)))
    assert ops[5].meta["state_bytes_per_sequence"] == 262_144


def test_rwkv7_decode_op_table():
    ops = RWKV7.ops(_fw(RWKV7_MODEL, "decode", 1, 4096))
    check_ops(ops, _rwkv7_table(3, (3 * 4096,) * 2, (3 * 262_144,) * 2))


def test_rwkv6_prefill_op_table():
    t = 30
    shift_rw, wkv_rw = (0, 3 * 4096), (0, 3 * 262_144)
    table = [
        _shift("rwkv.time_shift", t, 1, shift_rw),
        linear_row("rwkv.mix_lora_down", t, 2048, 5 * 32),
        linear_row("rwkv.mix_lora_up", t, 5 * 32, 2048),
        _ew("rwkv.mix_lerps", t * 2048, 11, 6),
        linear_row("rwkv.decay_lora_down", t, 2048, 64),
        linear_row("rwkv.decay_lora_up", t, 64, 1024),
        linear_row("rwkv.rkvg_proj", t, 2048, 4 * 1024),
        _wkv(t, 5, 4, wkv_rw),  # 5 N^2 per head; r, w, k, v
        _ew("rwkv.ln_x_gate", t * 1024, 12, 3),
        linear_row("rwkv.output", t, 1024, 2048),
        _shift("rwkv.channel_shift", t, 2, shift_rw),
        linear_row("rwkv.ffn_key", t, 2048, 3584),
        _ew("rwkv.ffn_relu_sq", t * 3584, 2, 1),
        linear_row("rwkv.ffn_value", t, 3584, 2048),
        linear_row("rwkv.ffn_receptance", t, 2048, 2048),
        _ew("rwkv.ffn_gate", t * 2048, 5, 2),
    ]
    check_ops(RWKV6.ops(_fw(RWKV7_MODEL, "prefill", 10, 10)), table)


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
