"""Tests written to kill mutants that survived a mutation-testing run over
``hwsim/model/mixers/mla.py`` (docs/mutation-testing.md, section "Mixers"). Every op of a
forward pass is compared field by field with a table derived by hand from the module
docstrings' formulas and the published configs (restated in the comments); dtypes and shapes
as in ``tests/mixer_op_tables.py``, so that a confused factor changes a number.
"""

from __future__ import annotations

import pytest
from mixer_op_tables import BF16, FP32, INT8, check_ops, linear_row, one_forward

from hwsim.model.mixers import build_mixer
from hwsim.model.mixers.mla import MultiHeadLatentAttention
from hwsim.profiles.loader import load_model_profile


def _fw(model, phase, new, ctx, *, tp=2, act=BF16, compute="bf16", sram=228 * 1024):
    return one_forward(model, phase, new, ctx, tp=tp, act=act, compute=compute, sram=sram)


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
            linear_row("mla.q_a_proj", t, 7168, 1536),
            linear_row("mla.q_b_proj", t, 1536, 64 * 192),
        ]
    else:
        table += [linear_row("mla.q_proj", t, 7168, 64 * 192)]
    width = 512 + (1536 if q_lora else 0)
    table += [
        linear_row("mla.kv_a_proj", t, 7168, 576),
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
    # FlashAttention-2 traffic with d_qk 192, d_v 128, each once: per head Q 10 x 192 read,
    # K and V 10 x (192 + 128) read, O 10 x 128 written: 5,120 and 1,280 elements;
    # x 3 x 64 heads x 2 B = 1,966,080 B read, 491,520 B written.
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
            act_read_bytes=1_966_080,
            act_write_bytes=491_520,
            kv_write_bytes=30 * 576 * 4,  # latent + RoPE key of every new token, fp32 cache
        ),
        linear_row("mla.o_proj", 30, 64 * 128, 7168),
    ]
    check_ops(ops, table)
    assert ops[5].meta == {"pairs_per_head": 55, "mla_form": "decompressed"}


def test_mla_absorbed_decode_op_table():
    # One new token per sequence at context 4096: t = 3, 4096 pairs and keys per head.
    ops = MLA.ops(_fw(DSV3, "decode", 1, 4096))
    uk = linear_row("mla.q_absorb_uk", 3, 128, 512)  # per head, then x 64 heads
    uv = linear_row("mla.out_absorb_uv", 3, 512, 128)
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
        linear_row("mla.o_proj", 3, 64 * 128, 7168),
    ]
    check_ops(ops, table)
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
        linear_row("mla.o_proj", 3, 64 * 128, 7168),
    ]
    check_ops(ops, table)
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


def test_mla_tiled_traffic_is_each_tensor_once():
    # 25-token prompt, any SRAM: per head Q 25 x 192 + K, V 25 x 320 read = 12,800 elements,
    # O 25 x 128 = 3,200 written (FlashAttention-2 order, K/V blocks shared through L2).
    for sram in (25_600, 2.0):
        core = MLA.ops(_fw(DSV3, "prefill", 25, 25, sram=sram))[5]
        assert float(core.act_read_bytes) == 3 * 64 * 12_800 * 2
        assert float(core.act_write_bytes) == 3 * 64 * 3_200 * 2
    # a chunk of 10 new tokens at context 40 reads all 40 keys: 10 x 192 + 40 x 320 = 14,720
    core = MLA.ops(_fw(DSV3, "prefill", 10, 40))[5]
    assert float(core.act_read_bytes) == 3 * 64 * 14_720 * 2
    # an empty forward: no traffic
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
    check_ops(ops[:3], _mla_front(30, q_lora=False))


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
