"""Tests written to kill mutants that survived a mutation-testing run over the attention-pattern
mixers, the reference masks and the mixer registry (``hwsim/model/mixers/{streaming,bigbird,
longformer,sparse_transformer,masks,base,__init__}.py`` and the tail of ``attention.py``; see
docs/mutation-testing.md, section "Mixers").

Counts are checked against brute-force numpy masks built here from each pattern's published
definition, or derived by hand in the comments from the published configs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hwsim.dtypes import DTYPES
from hwsim.model.forward import Forward
from hwsim.model.mixers import build_mixer, masks
from hwsim.profiles.loader import load_model_profile

BF16, FP32 = DTYPES["bf16"], DTYPES["fp32"]
LONGFORMER = load_model_profile("longformer-large")
LLAMA3_8B = load_model_profile("llama-3.1-8b")


def _fw(model, phase, new, ctx, *, tp=2, batch=3):
    """Weights fp32 (4 B), activations bf16 (2 B), cache fp32 (4 B)."""
    return Forward(
        phase=phase,
        model=model,
        batch=np.asarray(float(batch)),
        new_tokens=np.asarray(float(new)),
        context=np.asarray(float(ctx)),
        weight=FP32,
        kv=FP32,
        act=BF16,
        compute_dtype="bf16",
        tp=tp,
    )


# -- field defaults, required fields and validators ------------------------------------------
def test_streaming_defaults_to_four_sinks():
    # StreamingLLM (Xiao et al. 2023, section 3.2) keeps 4 initial tokens as attention sinks.
    m = build_mixer({"kind": "streaming", "window": 5})
    assert m.n_sink == 4 and m.cache_tokens == 9
    # so a 12-token prompt scores sum_i min(i + 1, 9) = 45 + 3 x 9 = 72 pairs,
    # the brute-force count of "the first 4 or the last 5" (causal)
    i, j = np.arange(12)[:, None], np.arange(12)[None, :]
    brute = ((j <= i) & ((j < 4) | (i - j < 5))).sum()
    assert m.pairs_per_head(12) == brute == 72
    assert m.kv_tokens_held(100) == 9


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"kind": "sparse_strided"}, "stride"),
        ({"kind": "sparse_fixed", "summary": 1}, "stride"),
        ({"kind": "sparse_fixed", "stride": 4}, "summary"),
        ({"kind": "streaming"}, "window"),
        ({"kind": "longformer"}, "window"),
        ({"kind": "sliding_window"}, "window"),
    ],
)
def test_pattern_sizes_are_required(spec, field):
    with pytest.raises(ValueError, match=rf"^mixer\.{field}: Field required"):
        build_mixer(spec)


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            {"kind": "streaming", "window": 8, "causal": False},
            "'streaming' attention is causal only (set causal: true)",
        ),
        (
            {"kind": "sparse_strided", "stride": 8, "causal": False},
            "'sparse_strided' is defined for causal attention only (set causal: true)",
        ),
        (
            {"kind": "sparse_fixed", "stride": 8, "summary": 2, "causal": False},
            "'sparse_fixed' is defined for causal attention only (set causal: true)",
        ),
    ],
)
def test_causal_only_patterns_refuse_bidirectional(spec, message):
    with pytest.raises(ValueError) as err:
        build_mixer(spec)
    assert str(err.value).startswith(f"mixer.causal: Value error, {message} (got False)")


def test_fixed_summary_may_fill_the_block():
    # c = l is allowed (every position is a summary position: dense causal attention),
    # c = l + 1 is not.
    m = build_mixer({"kind": "sparse_fixed", "stride": 4, "summary": 4})
    assert m.pairs_per_head(10) == 55
    with pytest.raises(ValueError) as err:
        build_mixer({"kind": "sparse_fixed", "stride": 4, "summary": 5})
    assert str(err.value) == (
        "mixer.summary: Value error, summary (5) cannot exceed the block length stride (4) (got 5)"
    )


# -- Longformer's global projections -----------------------------------------------------------
# allenai/longformer-large-4096: hidden 1024, 16 heads of 64, a bias on every linear layer.
def test_longformer_param_count_adds_global_qkv():
    m = build_mixer(LONGFORMER.mixer)
    # local Q, K, V, O 4 x 1024^2 = 4,194,304 + biases 3 x 1024 + 1024: 4,198,400;
    # query_global, key_global, value_global 3 x (1024^2 + 1024) = 3,148,800.
    assert m.param_count(LONGFORMER) == 4_198_400 + 3_148_800
    # without biases: 4,194,304 + 3,145,728
    assert m.param_count(LONGFORMER.model_copy(update={"linear_bias": False})) == 7_340_032
    # Q, K, V biases only (qkv_bias): 3,072 on each of the two sets
    qkv_only = LONGFORMER.model_copy(update={"linear_bias": False, "qkv_bias": True})
    assert m.param_count(qkv_only) == 7_340_032 + 2 * 3072


def test_longformer_global_projection_ops():
    m = build_mixer({**LONGFORMER.mixer, "n_global": 2})
    # tp = 2: 8 heads x 64 = 512 columns per rank; batch 3, 10-token prompt, 2 global tokens
    # each: 6 global queries.
    ops = m.ops(_fw(LONGFORMER, "prefill", 10, 10))
    assert [o.name for o in ops] == [
        "attn.qkv_proj",
        "attn.core",
        "attn.o_proj",
        "attn.global_kv_proj",
        "attn.global_q_proj",
    ]
    kv, q = ops[3], ops[4]
    # key_global and value_global on all 30 tokens: 1024 -> 2 x 512
    assert float(kv.flops) == 2 * 30 * 1024 * 1024
    assert float(kv.weight_bytes) == 1024 * 1024 * 4
    assert q.op_class == "matmul" and q.compute_dtype == "bf16"
    assert float(q.flops) == 2 * 6 * 1024 * 512
    assert float(q.weight_bytes) == 1024 * 512 * 4
    assert float(q.act_read_bytes) == 6 * 1024 * 2
    assert float(q.act_write_bytes) == 6 * 512 * 2
    assert q.kv_read_bytes == 0 and q.kv_write_bytes == 0
    # a 1-token chunk has at most 1 global token per sequence: 3 global queries
    q1 = m.ops(_fw(LONGFORMER, "prefill", 1, 1))[4]
    assert float(q1.flops) == 2 * 3 * 1024 * 512


def test_longformer_global_projections_only_in_a_prefill_with_globals():
    names = ["attn.qkv_proj", "attn.core", "attn.o_proj"]
    with_globals = build_mixer({**LONGFORMER.mixer, "n_global": 2, "causal": True})
    decoding = [o.name for o in with_globals.ops(_fw(LLAMA3_8B, "decode", 1, 50))]
    assert decoding == [names[0], "attn.kv_append", *names[1:]]  # a decoder appends to its cache
    no_globals = build_mixer(LONGFORMER.mixer)
    assert [o.name for o in no_globals.ops(_fw(LONGFORMER, "prefill", 10, 10))] == names


# -- defaults of the published patterns ---------------------------------------------------------
def test_longformer_defaults_are_a_plain_bidirectional_band():
    m = build_mixer({"kind": "longformer", "window": 4})
    assert (m.dilation, m.n_global, m.causal) == (1, 0, False)
    # h = 2 a side, 10 tokens: rows see 3, 4, 5 x 6, 4, 3 keys = 44 = 10 + 2 (2 x 10 - 3)
    i, j = np.arange(10)[:, None], np.arange(10)[None, :]
    assert m.pairs_per_head(10) == (np.abs(i - j) <= 2).sum() == 44
    # the reference mask's own defaults are the same band
    assert masks.longformer(10, 4).sum() == 44


def test_bigbird_defaults_are_the_itc_layout():
    # google/bigbird-roberta-large: block_size 64, num_random_blocks 3; ITC: 3 sliding blocks,
    # 2 global blocks (first and last); bidirectional.
    m = build_mixer({"kind": "bigbird"})
    assert (m.block_size, m.window_blocks, m.random_blocks, m.global_blocks, m.seed) == (
        64,
        3,
        3,
        2,
        0,
    )
    assert m.causal is False
    # 640 tokens: 10 blocks, M = 8 non-global, k = 1, r = 3, M >= 2k + 1 + r = 6, so
    # sum = M + 2 (K M - K (K + 1) / 2) + r M = 8 + 14 + 24 = 46 blocks and
    # pairs = 640^2 - 512^2 + 64^2 x 46 = 409,600 - 262,144 + 188,416 = 335,872
    assert m.pairs_per_head(640) == 335_872
    assert masks.bigbird(640, 64).sum() == 335_872  # the reference with its defaults
    assert masks.bigbird_block_layout(10).sum() * 64 * 64 == 335_872


def test_bigbird_validation_messages():
    with pytest.raises(ValueError) as err:
        build_mixer({"kind": "bigbird", "causal": True})
    assert "'bigbird' block-sparse attention is bidirectional (encoder) only (got True)" in str(
        err.value
    )
    with pytest.raises(ValueError) as err:
        build_mixer({"kind": "bigbird", "window_blocks": 4})
    assert "window_blocks must be odd (centred on the query block), got 4 (got 4)" in str(err.value)
    build_mixer({"kind": "bigbird", "window_blocks": 5})  # odd: accepted


def test_bigbird_nonglobal_blocks():
    m = build_mixer({"kind": "bigbird"})
    # ceil(n / 64) - 2 blocks, never negative: 0 for 1..128 tokens, 1 for 129..192
    got = m.nonglobal_block_count(np.array([0, 1, 64, 128, 129, 192, 193, 640]))
    np.testing.assert_array_equal(got, [0, 0, 0, 0, 1, 1, 2, 8])
    # an appended query falls in the last (global) block: it reads every key
    np.testing.assert_array_equal(m.keys_per_decode_step(np.array([5.0, 700.0])), [5.0, 700.0])


# -- base protocol defaults (attention-free mixers) ------------------------------------------
MAMBA = load_model_profile("mamba-2.8b")


def test_attention_free_mixers_score_nothing():
    m = build_mixer(MAMBA.mixer)
    assert m.is_attention is False
    n = np.array([[0.0, 5.0, 4096.0]])
    for method in (m.pairs_per_head, m.keys_per_decode_step, m.score_matrix_elements_per_head):
        out = method(n)
        assert out.shape == (1, 3) and not out.any()
    np.testing.assert_array_equal(m.kv_tokens_held(n), n)  # held, but at 0 bytes a token
    assert m.kv_bytes_per_token(MAMBA, BF16, 1) == 0.0
    # the cache a sequence holds is then its fixed state: 5120 x 16 x 4 + 5120 x 4 x 2 B
    np.testing.assert_array_equal(m.cache_bytes_per_sequence(MAMBA, n, BF16, 1), [[368_640] * 3])
    m.check_model(MAMBA)  # the base check accepts anything


def test_cache_bytes_are_held_tokens_times_rate():
    # Mistral-style window of 4096 on Llama 3.1 8B shapes, bf16 cache, tp = 1:
    # 2 x 8 KV heads x 128 x 2 B = 4,096 B a token, at most 4096 tokens held.
    sw = build_mixer({"kind": "sliding_window", "window": 4096})
    got = sw.cache_bytes_per_sequence(LLAMA3_8B, np.array([100.0, 10_000.0]), BF16, 1)
    np.testing.assert_array_equal(got, [100 * 4096, 4096 * 4096])


def test_base_mixer_has_no_default_params_or_ops():
    from hwsim.model.mixers.base import Mixer

    bare = Mixer(kind="x")
    with pytest.raises(NotImplementedError):
        bare.param_count(MAMBA)
    with pytest.raises(NotImplementedError):
        bare.ops(_fw(MAMBA, "prefill", 1, 1))
    assert bare.tp_all_reduces == 1 and bare.state_bytes_per_sequence(MAMBA, 1) == 0.0
    assert bare.kind_name == ""


def test_registering_a_kind_twice_is_refused():
    from hwsim.model.mixers import register
    from hwsim.model.mixers.base import REGISTRY, Mixer

    class Dup(Mixer):
        kind_name = "attention"

    with pytest.raises(RuntimeError, match=r"^mixer kind 'attention' registered twice \("):
        register(Dup)
    assert REGISTRY["attention"] is not Dup

    class Fresh(Mixer):
        kind_name = "test_only_fresh_kind"

    try:
        assert register(Fresh) is Fresh and REGISTRY["test_only_fresh_kind"] is Fresh
    finally:
        REGISTRY.pop("test_only_fresh_kind", None)


# -- the registry front end -------------------------------------------------------------------
KINDS = "attention, bigbird, compressive, infini, knn_memory, longformer, mamba, mamba2"
KINDS += ", memory_tokens, mla, rwkv, sliding_window, sparse_fixed, sparse_strided, streaming"


def test_registered_kinds_lists_every_module():
    from hwsim.model.mixers import registered_kinds

    assert registered_kinds() == KINDS.split(", ")


@pytest.mark.parametrize(
    "spec, shown", [({"kind": "nope"}, "'nope'"), ("attention", "None"), ({"kind": 3}, "3")]
)
def test_unknown_kind_message(spec, shown):
    with pytest.raises(ValueError) as err:
        build_mixer(spec, where="layers.3")
    assert str(err.value) == f"layers.3.kind: unknown mixer kind {shown}; allowed: {KINDS}"


def test_field_errors_name_the_full_location():
    with pytest.raises(ValueError) as err:
        build_mixer({"kind": "mamba", "dt_rank": 0})
    assert str(err.value) == (
        "mixer.dt_rank.constrained-int: Input should be greater than or equal to 1 (got 0)"
    )


# -- the reference masks' own defaults ----------------------------------------------------------
def test_full_mask_defaults_to_causal():
    np.testing.assert_array_equal(masks.full(4), np.tril(np.ones((4, 4), dtype=bool)))
    assert masks.full(4).sum() == 10 and masks.full(4, causal=False).sum() == 16


def test_bigbird_reference_draw_defaults_to_seed_zero():
    # The defaults are ITC (3 window, 3 random, 2 global blocks) with seed 0: the same layout
    # as asking for it explicitly, and (for 40 blocks) not the layout of seed 1.
    default = masks.bigbird_block_layout(40)
    np.testing.assert_array_equal(default, masks.bigbird_block_layout(40, 3, 3, 2, 0))
    assert not np.array_equal(default, masks.bigbird_block_layout(40, 3, 3, 2, 1))
    tokens = masks.bigbird(40 * 4 - 1, 4)
    np.testing.assert_array_equal(tokens, masks.bigbird(159, 4, 3, 3, 2, 0))
    # rows 2..37 (window clear of the global blocks 0 and 39) read 3 window + 3 random + 2
    # global = 8 distinct blocks; the global rows read all 40
    assert all(default[q].sum() == 8 for q in range(2, 38))
    assert default[0].all() and default[39].all()


def test_mask_for_knows_only_the_attention_patterns():
    with pytest.raises(ValueError, match=r"^no reference mask for mixer kind 'mamba'$"):
        masks.mask_for(build_mixer(MAMBA.mixer), 4)


# -- the smallest legal patterns are accepted (every bound is inclusive) -----------------------
@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "sliding_window", "window": 1},
        {"kind": "streaming", "n_sink": 0, "window": 1},
        {"kind": "sparse_strided", "stride": 1},
        {"kind": "sparse_fixed", "stride": 1, "summary": 1},
        {"kind": "longformer", "window": 2, "dilation": 1, "n_global": 0},
        {"kind": "bigbird", "block_size": 1, "window_blocks": 1, "random_blocks": 0}
        | {"global_blocks": 2, "seed": 0},
    ],
    ids=lambda s: s["kind"],
)
def test_smallest_patterns_are_accepted(spec):
    m = build_mixer(spec)
    for key, value in spec.items():
        assert getattr(m, key) == value
    # and their count is still the brute-force one at a few lengths
    for n in (1, 2, 5, 9):
        assert m.pairs_per_head(n) == masks.mask_for(m, n).sum()


def test_bigbird_few_block_sum_against_masks():
    # With M < 2k + 1 + r non-global blocks the closed form sums min(a(t) + r, M) row by row;
    # brute force over 2-token blocks for k = 0..2, r = 0..3, G = 2 or 4 and every block count
    # up to 2k + 1 + r + G + 2. E.g. k = 2, r = 0, M = 4 (n = 12, G = 2): the last
    # non-global row's window {1, 2, 3} holds 3 blocks, not 4.
    for k in range(3):
        for r in range(4):
            for g in (2, 4):
                spec = {"kind": "bigbird", "block_size": 2, "window_blocks": 2 * k + 1}
                m = build_mixer(spec | {"random_blocks": r, "global_blocks": g})
                for nb in range(1, 2 * k + r + g + 4):
                    for n in (2 * nb - 1, 2 * nb):
                        assert m.pairs_per_head(n) == masks.mask_for(m, n).sum(), (k, r, g, n)
    m = build_mixer({"kind": "bigbird", "block_size": 2, "window_blocks": 5, "random_blocks": 0})
    # rows 0..3 of the 4 non-global blocks see 3, 4, 4, 3 window blocks; 2 global blocks
    # (4 tokens) make 12^2 - 8^2 = 80 pairs, the rest 2^2 x 14 = 56
    assert m.pairs_per_head(12) == 80 + 56


def test_the_package_is_scanned_once(monkeypatch):
    import hwsim.model.mixers as pkg

    pkg.registered_kinds()  # loads every module (if no earlier test did)

    def no_rescan(*_args, **_kwargs):
        raise AssertionError("the mixer package was scanned again")

    monkeypatch.setattr(pkg.pkgutil, "iter_modules", no_rescan)
    assert pkg.registered_kinds() == KINDS.split(", ")
    assert build_mixer({"kind": "sliding_window", "window": 3}).window == 3


# -- attention.py: the tiled-traffic density of an empty forward ------------------------------
def test_empty_forward_divides_nothing_by_zero():
    # FlashAttention traffic needs the density pairs / (N_q N_k); a forward with no tokens has
    # density 0 by definition and must not evaluate 0 / 0 (a RuntimeWarning, a NaN).
    full = build_mixer({"kind": "attention"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        op = full.core_op(_fw(LLAMA3_8B, "prefill", 0, 0))
    assert op.act_read_bytes == 0.0 and op.act_write_bytes == 0.0


# -- attention.py: the kernel family a core op is calibrated as ---------------------------------
def test_core_op_names_its_kernel_family():
    # hwsim.perf.kernels.calibration_name keys an op by meta["kernel_name"]. A decode step is
    # the GQA decode kernel when a rank has fewer KV heads than query heads (Llama 3.1 8B at
    # tp = 2: 4 < 16), the plain decode kernel for MHA (Llama 2 7B: 16 = 16); a prefill is the
    # causal or the bidirectional prefill kernel, whole prompt or chunk.
    llama2 = load_model_profile("llama-2-7b")
    causal = build_mixer({"kind": "attention"})
    bidir = build_mixer({"kind": "attention", "causal": False})
    cases = [
        (causal, LLAMA3_8B, "decode", 1, 100, "attention_decode_gqa"),
        (causal, llama2, "decode", 1, 100, "attention_decode"),
        (causal, LLAMA3_8B, "prefill", 64, 256, "attention_prefill_causal"),
        (bidir, LLAMA3_8B, "prefill", 64, 64, "attention_prefill"),
    ]
    for mixer, model, phase, new, ctx, name in cases:
        op = mixer.core_op(_fw(model, phase, new, ctx))
        assert op.meta["kernel_name"] == name
        assert op.meta["head_dim"] == 128
