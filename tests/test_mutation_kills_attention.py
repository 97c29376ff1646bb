"""Tests written to kill mutants that survived a mutation-testing run over
``hwsim/model/mixers/attention.py`` (see docs/mutation-testing.md, section "attention.py").

Every expected number is hand-computed from a published config (the shapes are in the
``model_profiles/*.yaml`` files and restated in the comments), or checked against a brute-force
count over a reference mask (:mod:`hwsim.model.mixers.masks`).
"""

from __future__ import annotations

import numpy as np
import pytest
from mixer_op_tables import one_forward

from hwsim.dtypes import DTYPES
from hwsim.inference.estimate import estimate
from hwsim.model.forward import Forward
from hwsim.model.mixers import build_mixer, masks
from hwsim.model.mixers.attention import FullAttention
from hwsim.profiles.loader import load_model_profile

# Llama 3.1 8B (meta-llama/Llama-3.1-8B config.json): hidden 4096, 32 query heads, 8 KV heads,
# head_dim 128: GQA, so query-head and KV-head terms differ. At tp = 2 each rank has
# h = 16 query heads and hk = 4 KV heads.
LLAMA3_8B = load_model_profile("llama-3.1-8b")
# Qwen2.5 72B: hidden 8192, 64 heads, 8 KV heads, head_dim 128, bias on Q, K, V only.
QWEN_72B = load_model_profile("qwen2.5-72b")
# GPT-3 175B: hidden 12288, 96 heads (MHA), head_dim 128, a bias on every linear layer.
GPT3 = load_model_profile("gpt-3-175b")
# BigBird-RoBERTa large: an encoder, hidden 1024, 16 heads, head_dim 64, biases everywhere.
BIGBIRD = load_model_profile("bigbird-roberta-large")

BF16, FP8, INT8 = DTYPES["bf16"], DTYPES["fp8"], DTYPES["int8"]
B = 3  # sequences in the batch


def _fw(phase, new, ctx, *, model=LLAMA3_8B, tp=2, impl="flash", act=BF16, compute="bf16"):
    """A forward with activations in bf16 (2 B) and the KV cache in fp8 (1 B), so that the
    activation and the cache terms cannot be confused."""
    return one_forward(
        model, phase, new, ctx, weight=BF16, kv=FP8, act=act, compute=compute, tp=tp, impl=impl
    )


CAUSAL = build_mixer({"kind": "attention", "causal": True})
BIDIR = build_mixer({"kind": "attention", "causal": False})
assert isinstance(CAUSAL, FullAttention) and isinstance(BIDIR, FullAttention)


# -- counting -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_full_pairs_and_score_elements_match_reference_masks(n):
    # Causal: query i sees keys 0..i, n(n+1)/2 pairs; bidirectional: n^2. A naive kernel
    # materialises the dense n x n score matrix whether or not it is masked.
    assert CAUSAL.pairs_per_head(n) == masks.full(n, causal=True).sum() == n * (n + 1) // 2
    assert BIDIR.pairs_per_head(n) == masks.full(n, causal=False).sum() == n * n
    assert CAUSAL.score_matrix_elements_per_head(n) == n * n
    assert BIDIR.score_matrix_elements_per_head(n) == n * n


def test_full_attention_reads_and_holds_the_whole_context():
    ctx = np.array([1.0, 17.0, 4096.0])
    np.testing.assert_array_equal(CAUSAL.keys_per_decode_step(ctx), ctx)
    np.testing.assert_array_equal(CAUSAL.kv_tokens_held(ctx), ctx)


# -- model-level ----------------------------------------------------------------------------
def test_param_count_of_published_shapes():
    # Llama 3.1 8B: q_out = 32*128 = 4096, kv_out = 8*128 = 1024:
    # 4096*(4096 + 2*1024) + 4096*4096 = 25,165,824 + 16,777,216 = 41,943,040, no biases.
    assert CAUSAL.param_count(LLAMA3_8B) == 41_943_040
    # Qwen2.5 72B: q_out = 8192, kv_out = 1024: 8192*10240 + 8192^2 = 150,994,944, plus the
    # Q, K, V biases (qkv_bias only, no output bias): 8192 + 2*1024 = 10,240 -> 151,005,184.
    assert QWEN_72B.qkv_bias and not QWEN_72B.linear_bias
    assert CAUSAL.param_count(QWEN_72B) == 151_005_184
    # GPT-3 175B: 4 * 12288^2 = 603,979,776, plus biases on Q, K, V (3*12288) and O (12288)
    # because every linear layer has one (linear_bias, qkv_bias unset): 49,152 -> 604,028,928.
    assert GPT3.linear_bias and not GPT3.qkv_bias
    assert CAUSAL.param_count(GPT3) == 604_028_928


@pytest.mark.parametrize("tp, kv_heads_per_rank", [(1, 8), (2, 4), (8, 1), (16, 1), (3, 3)])
def test_kv_bytes_per_token(tp, kv_heads_per_rank):
    # K and V: 2 * ceil(8 / tp) KV heads * 128 * bytes; tp > 8 replicates one KV head per rank,
    # tp = 3 rounds 8/3 up to 3.
    assert CAUSAL.kv_bytes_per_token(LLAMA3_8B, BF16, tp) == 2 * kv_heads_per_rank * 128 * 2
    assert CAUSAL.kv_bytes_per_token(LLAMA3_8B, FP8, tp) == 2 * kv_heads_per_rank * 128 * 1


def test_encoder_keeps_no_kv_cache():
    assert BIDIR.kv_bytes_per_token(BIGBIRD, BF16, 1) == 0.0
    op = BIDIR.core_op(_fw("prefill", 512, 512, model=BIGBIRD, tp=1))
    assert op.kv_write_bytes == 0.0 and op.kv_read_bytes == 0.0


@pytest.mark.parametrize(
    "update",
    [
        {"n_heads": 0},  # no heads (head_size then also falls back to 0)
        {"n_heads": 0, "head_dim": 128},  # no heads, an explicit head size
        {"head_dim": -1},  # heads but a non-positive head size
    ],
)
def test_check_model_refuses_headless_models(update):
    bad = LLAMA3_8B.model_copy(update=update)
    with pytest.raises(ValueError, match=r"^mixer 'attention' needs n_heads and head_dim$"):
        CAUSAL.check_model(bad)
    CAUSAL.check_model(LLAMA3_8B)  # the published shape passes


@pytest.mark.parametrize(
    "update",
    [
        {"n_heads": 0, "head_dim": 128},  # no heads, however large the head
        {"n_kv_heads": None, "head_dim": 0, "d_model": 4},  # 32 heads of 4 // 32 = 0 dims
    ],
)
def test_check_model_refuses_each_missing_dimension_alone(update):
    bad = LLAMA3_8B.model_copy(update=update)
    assert (bad.n_heads <= 0) != (bad.head_size <= 0)  # exactly one of the two is missing
    with pytest.raises(ValueError, match="needs n_heads and head_dim"):
        CAUSAL.check_model(bad)


def test_check_model_accepts_one_head_of_one_dimension():
    # The smallest real shape: 1 head of size 1 (n_heads and head_size are positive).
    tiny = LLAMA3_8B.model_copy(update={"n_heads": 1, "n_kv_heads": 1, "head_dim": 1})
    assert tiny.n_heads == 1 and tiny.head_size == 1
    CAUSAL.check_model(tiny)


def test_full_attention_is_an_attention_layer():
    # The estimate's attention section averages over layers whose mixer is_attention:
    # Llama 2 7B (all 32 layers full causal) at a 1000-token prompt scores 1000*1001/2 =
    # 500,500 pairs per head per layer and a naive kernel's 1000 x 1000 score matrix; at
    # batch 2, 32 heads, bf16: 2 * 32 * 10^6 * 2 B = 128,000,000 B of scores.
    assert CAUSAL.is_attention is True
    att = estimate("llama-2-7b", "h100-sxm", batch=2, prompt_len=1000, gen_len=10).attention
    assert att.pairs_per_head_per_layer == 500_500
    assert att.score_matrix_elements_per_head_per_layer == 1_000_000
    assert att.score_matrix_bytes == 128_000_000


# -- projections ----------------------------------------------------------------------------
def test_projection_ops_are_per_rank_shapes():
    # tp = 2: h = 16, hk = 4. QKV: 4096 -> (16 + 2*4)*128 = 3072; O: 16*128 = 2048 -> 4096.
    # The shapes are already per rank, so shard=False (no second division by tp).
    fw = _fw("prefill", 10, 10)
    qkv, append, core, out = CAUSAL.ops(fw)
    names = [qkv.name, append.name, core.name, out.name]
    assert names == ["attn.qkv_proj", "attn.kv_append", "attn.core", "attn.o_proj"]
    assert qkv.weight_bytes == 4096 * 3072 * 2
    assert qkv.flops == 2.0 * (B * 10) * 4096 * 3072
    assert out.weight_bytes == 2048 * 4096 * 2
    assert out.flops == 2.0 * (B * 10) * 2048 * 4096


def test_kv_append_reads_activations_and_writes_the_cache_dtype():
    # The 10 new tokens' K and V: 3 x 10 x 2 x 4 heads x 128 = 30,720 elements, read in bf16
    # (61,440 B) and written into the fp8 cache (30,720 B); no FLOPs, on the vector units.
    append = CAUSAL.kv_append_op(_fw("prefill", 10, 10))
    assert append.act_read_bytes == 61_440 and append.kv_write_bytes == 30_720
    assert append.flops == 0 and append.op_class == "elementwise" and append.on_vector_units
    assert append.kv_read_bytes == 0 and append.act_write_bytes == 0


# -- the core op ----------------------------------------------------------------------------
def test_flash_prefill_core_golden():
    # Llama 3.1 8B, tp = 2 (h = 16, hk = 4, d_h = 128), batch 3, a 1000-token prompt.
    op = CAUSAL.core_op(_fw("prefill", 1000, 1000))
    # causal pairs 1000*1001/2 = 500,500; FLOPs 4 * 3 * 16 * 128 * 500,500 = 12,300,288,000
    assert op.meta["pairs_per_head"] == 500_500
    assert op.flops == 12_300_288_000
    # the cache write is its own op (kv_append); the core reads the 1000 keys' K and V from
    # the fp8 cache once: 3 * 2 * 4 * 1000 * 128 * 1 B = 3,072,000
    assert op.kv_write_bytes == 0.0
    assert op.kv_read_bytes == 3_072_000
    # Q read and O written once each: 3 * 16 * 1000 * 128 * 2 B = 12,288,000
    assert op.act_read_bytes == op.act_write_bytes == 12_288_000
    # held: Q and O (2*16*1000) and K and V (2*4*1000) rows: 3 * 40,000 * 128 * 2 B
    assert op.meta["workspace_bytes"] == 30_720_000
    assert op.kernels == 1
    assert op.op_class == "attention" and op.compute_dtype == "bf16"


def test_naive_prefill_core_golden():
    op = CAUSAL.core_op(_fw("prefill", 1000, 1000, impl="naive"))
    assert op.flops == 12_300_288_000  # the same arithmetic as the tiled kernel
    # Q and O: 12,288,000 B each way; scores: write S, read S, write P, read P over 1000 x 1000
    # per head: 4 * 3 * 16 * 10^6 * 2 B = 384,000,000, half read and half written.
    assert op.act_read_bytes == op.act_write_bytes == 12_288_000 + 192_000_000
    assert op.kv_read_bytes == 3_072_000  # K and V from the fp8 cache, as the tiled kernel
    # held adds S and P: 2 * 3 * 16 * 1000 * 1000 * 2 B = 192,000,000
    assert op.meta["workspace_bytes"] == 30_720_000 + 192_000_000
    assert op.kernels == 3  # QK^T, softmax, PV as separate kernels


def test_flash_decode_core_golden():
    # One new token against a 4096-token context.
    op = CAUSAL.core_op(_fw("decode", 1, 4096))
    assert op.meta["pairs_per_head"] == 4096  # pairs(4096) - pairs(4095)
    assert op.flops == 4 * 3 * 16 * 128 * 4096  # 100,663,296
    # K and V of 4096 keys from the fp8 cache: 3 * 4 * 2 * 128 * 4096 * 1 B
    assert op.kv_read_bytes == 12_582_912
    assert op.kv_write_bytes == 0.0  # the new token's K and V: attn.kv_append
    # read Q (3 * 16 * 1 * 128 * 2 B = 12,288), write O (the same)
    assert op.act_read_bytes == op.act_write_bytes == 12_288
    assert op.meta["workspace_bytes"] == 3 * (2 * 16 * 1 + 2 * 4 * 4096) * 128 * 2


def test_naive_decode_core_golden():
    op = CAUSAL.core_op(_fw("decode", 1, 4096, impl="naive"))
    # Q/O 12,288 each way plus half the score passes: 4 * 3 * 16 * 4096 * 2 B = 1,572,864
    assert op.act_read_bytes == op.act_write_bytes == 12_288 + 786_432
    assert op.kv_read_bytes == 12_582_912
    assert op.kernels == 3


def test_decode_of_several_new_tokens_reads_the_keys_once():
    # Speculative verification of 4 tokens at context 100: the 4 queries meet the same 100
    # keys, which a tiled kernel streams once: 3 * 4 * 2 * 128 * 100 * 1 B.
    op = CAUSAL.core_op(_fw("decode", 4, 100))
    assert op.kv_read_bytes == 3 * 4 * 2 * 128 * 100 * 1
    # pairs(100) - pairs(96) = 5050 - 4656 = 394 = 97 + 98 + 99 + 100
    assert op.meta["pairs_per_head"] == 394
    # read the 4 new queries, write their 4 outputs: 3 * 16 * 4 * 128 * 2 B = 49,152 each way
    assert op.act_read_bytes == op.act_write_bytes == 49_152


def test_tiled_traffic_does_not_depend_on_the_sram():
    # FlashAttention-2's order with the K/V blocks shared through L2: each of Q, K, V, O moves
    # once whatever the tile size (FlashAttention-1's Q/O re-streaming is not modelled).
    fw = _fw("prefill", 25, 25)
    small = CAUSAL.core_op(Forward(**{**fw.__dict__, "sram_bytes": 2.0}))
    large = CAUSAL.core_op(fw)
    assert small.hbm_bytes == large.hbm_bytes
    # Q + O: 2 * 3 * 16 * 25 * 128 * 2 B; K + V from the fp8 cache: 3 * 2 * 4 * 25 * 128 * 1 B
    assert large.hbm_bytes == 2 * 3 * 16 * 25 * 128 * 2 + 3 * 2 * 4 * 25 * 128


def test_a_window_caps_the_keys_a_chunk_reads():
    # A 256-token chunk at context 10,000 under a 4,096-key window meets the newest query's
    # 4,096 keys plus one more per earlier query: 4,096 + 255 = 4,351 keys (brute force below).
    window = build_mixer({"kind": "sliding_window", "window": 4096})
    op = window.core_op(_fw("prefill", 256, 10_000))
    i = np.arange(10_000 - 256, 10_000)[:, None]
    j = np.arange(10_000)[None, :]
    met = ((j <= i) & (i - j < 4096)).any(axis=0).sum()
    assert met == 4351
    assert op.kv_read_bytes == 3 * 2 * 4 * met * 128 * 1
    # an empty forward moves nothing (no 0/0)
    empty = CAUSAL.core_op(_fw("prefill", 0, 0))
    assert np.isfinite(empty.hbm_bytes) and empty.hbm_bytes == 0.0


def test_integer_activations_compute_in_bf16():
    # int8 activations are not float-like: the core's softmax runs in bf16, the compute dtype
    # requested for the GEMMs is kept otherwise.
    assert CAUSAL.core_op(_fw("prefill", 8, 8, act=INT8, compute="int8")).compute_dtype == "bf16"
    assert CAUSAL.core_op(_fw("prefill", 8, 8, compute="fp16")).compute_dtype == "fp16"
    call = CAUSAL.kernel_call(_fw("prefill", 8, 8, act=INT8, compute="int8"))
    assert call[1]["dtype"] == "bf16"
    assert CAUSAL.kernel_call(_fw("prefill", 8, 8, compute="fp16"))[1]["dtype"] == "fp16"


# -- the fused-kernel tag -------------------------------------------------------------------
def test_kernel_call_for_whole_prompt_prefill_and_single_token_decode():
    common = {"batch": 3.0, "heads": 16, "kv_heads": 4, "head_dim": 128, "dtype": "bf16"}
    name, params = CAUSAL.kernel_call(_fw("prefill", 512, 512))
    assert name == "attention_prefill"
    assert params == {**common, "seq_len": 512.0, "causal": True}
    assert BIDIR.kernel_call(_fw("prefill", 512, 512))[1]["causal"] is False
    name, params = CAUSAL.kernel_call(_fw("decode", 1, 777))
    assert name == "attention_decode"
    assert params == {**common, "context_len": 777.0}
    # the op carries the call
    assert CAUSAL.core_op(_fw("decode", 1, 777)).kernel == ("attention_decode", params)


@pytest.mark.parametrize(
    "phase, new, ctx, impl",
    [
        ("prefill", 256, 1024, "flash"),  # a chunk of a longer prompt: no measured kernel
        ("decode", 4, 1024, "flash"),  # multi-token decode (speculative verification)
        ("decode", 4, 4, "flash"),  # ... even where new == context
        ("prefill", 512, 512, "naive"),  # the fused kernel is a tiled kernel
        ("decode", 1, 512, "naive"),
    ],
)
def test_no_kernel_call_outside_the_measured_shapes(phase, new, ctx, impl):
    fw = _fw(phase, new, ctx, impl=impl)
    assert CAUSAL.kernel_call(fw) is None
    assert CAUSAL.core_op(fw).kernel is None


def test_kernel_call_needs_every_new_token_count_to_be_one():
    fw = _fw("decode", 1, 100)
    mixed = Forward(**{**fw.__dict__, "new_tokens": np.array([1.0, 2.0])})
    assert CAUSAL.kernel_call(mixed) is None


# -- subclasses share the accounting ----------------------------------------------------------
def test_a_variant_counts_flops_from_its_own_pairs():
    # A 5-token sliding window over a 12-token prompt: the core op's pairs are the reference
    # mask's count (1+2+3+4+5 + 7*5 = 50), and FLOPs = 4 * b * h * d_h * pairs as for full
    # attention: the accounting is inherited, only the count is the variant's.
    sw = build_mixer({"kind": "sliding_window", "window": 5})
    op = sw.core_op(_fw("prefill", 12, 12))
    assert op.meta["pairs_per_head"] == masks.sliding_window(12, 5).sum() == 50
    assert op.flops == 4 * 3 * 16 * 128 * 50
