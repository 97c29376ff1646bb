"""Memory mixers (issue 17): Compressive Transformer, memory tokens (RMT), Infini-attention and
Memorizing Transformers' kNN memory.

Counts are checked against brute-force references (:mod:`hwsim.model.mixers.masks` simulates
each pattern literally: memory FIFOs, compressed slots, per-segment memory tokens, a real top-k
over random keys); cache, state, parameter and FLOP numbers are derived by hand in the comments
from Llama 3.1 8B's shapes (hidden 4096, 32 query heads, 8 KV heads, head_dim 128; at tp = 2 a
rank has 16 query heads and 4 KV heads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from mixer_op_tables import B, one_forward

import hwsim
from hwsim.dtypes import DTYPES
from hwsim.inference.context import context_sweep
from hwsim.inference.deployment import make_deployment
from hwsim.inference.memory import cache_bytes_per_sequence_per_gpu
from hwsim.model.mixers import build_mixer, masks
from hwsim.model.params import count_params
from hwsim.model.positions import max_query_key_distance
from hwsim.profiles.loader import load_model_profile
from hwsim.profiles.model import ModelProfile

PROFILES = Path(__file__).resolve().parents[1] / "model_profiles"
LLAMA = load_model_profile("llama-3.1-8b")
INFINI_8B = load_model_profile("llama-3.1-8b-infini")
BF16, FP32 = DTYPES["bf16"], DTYPES["fp32"]
BASE_PARAMS = 41_943_040  # Llama 3.1 8B attention block (test_mutation_kills_attention)
KV_TOKEN = 2 * 8 * 128 * 2  # K and V, 8 KV heads x 128, bf16: 4096 B per token per layer


def compressive(n_m, n_cm, c, **kw):
    spec = {"kind": "compressive", "memory": n_m, "compressed_memory": n_cm}
    return {**spec, "compression_rate": c, **kw}


def rmt(s, m):
    return {"kind": "memory_tokens", "segment": s, "memory_tokens": m}


def infini(n, **kw):
    return {"kind": "infini", "segment": n, **kw}


def knn(w, k, mem, **kw):
    return {"kind": "knn_memory", "window": w, "top_k": k, "memory_size": mem, **kw}


SPECS = [
    compressive(4, 2, 3),
    compressive(5, 3, 2, compression="mean"),
    compressive(3, 0, 1),  # no compressed memory: a sliding window of 3
    compressive(1, 4, 1),
    compressive(6, 1, 4),
    rmt(5, 2),
    rmt(1, 1),
    rmt(7, 3),
    infini(1),
    infini(4),
    infini(9),
    knn(4, 2, 6),
    knn(1, 1, 1),
    knn(3, 5, 4),  # top_k above the memory size
    knn(5, 3, 20, memory_location="host"),
]
# n = 1, below, at and above each window / segment / memory size, and past saturation
N = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 18, 19, 24, 31, 40, 64, 97]


def _id(spec):
    return "-".join(str(v) for v in spec.values())


# -- counts against the brute-force references ----------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_pairs_and_decode_keys_equal_the_reference(spec):
    mixer = build_mixer(spec)
    for n in N:
        mask = masks.memory_mask_for(mixer, n)
        assert mixer.pairs_per_head(n) == mask.sum(), (spec, n)
        assert mixer.keys_per_decode_step(n) == mask[-1].sum(), (spec, n)
    assert mixer.pairs_per_head(0) == 0 and mixer.keys_per_decode_step(0) == 0


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_vectorised_equals_scalar(spec):
    mixer = build_mixer(spec)
    ns = np.arange(0, 200)
    grid = np.stack([ns, ns[::-1]])
    for method in (mixer.pairs_per_head, mixer.keys_per_decode_step, mixer.kv_tokens_held):
        out = method(grid)
        assert out.shape == grid.shape
        assert all(out[0, i] == method(int(n)) for i, n in enumerate(ns))


def test_hand_counts():
    # compressive n_m 4, n_cm 2, c 3, n = 12: raw keys min(k, 4) sum to 1+2+3+4*9 = 42;
    # evicted e(k) = 0,0,0,0,1,..,8 open ceil(e/3) = 0,0,0,0,1,1,1,2,2,2,3,3 slots, capped
    # at 2: 13; 55 pairs. The last query sees 4 tokens + 2 slots.
    mixer = build_mixer(compressive(4, 2, 3))
    assert mixer.pairs_per_head(12) == 55 and mixer.keys_per_decode_step(12) == 6
    # RMT s 5, m 2, n = 12: two full segments of 5 * 2 + 15 and 2 * 2 + 3 for the last 2
    assert build_mixer(rmt(5, 2)).pairs_per_head(12) == 2 * 25 + 7
    # infini N 4, n = 10: 2 * 10 + 3
    assert build_mixer(infini(4)).pairs_per_head(10) == 23
    # kNN w 4, top-k 2, M 6, n = 10: window 1+2+3+4*7 = 34; memory 0,..,6 entries at
    # k = 4..10, retrieving min(e, 2) = 1, 2, 2, 2, 2, 2 = 11
    assert build_mixer(knn(4, 2, 6)).pairs_per_head(10) == 45


@pytest.mark.parametrize("spec", [s for s in SPECS if s["kind"] != "knn_memory"], ids=_id)
def test_keys_read_are_the_distinct_keys_the_new_queries_meet(spec):
    mixer = build_mixer(spec)
    for ctx in (1, 5, 12, 24, 40):
        mask = masks.memory_mask_for(mixer, ctx)
        for new in sorted({1, 2, 5, ctx // 2, ctx} - {0}):
            fw = one_forward(LLAMA, "prefill" if new > 1 else "decode", new, ctx)
            want = mask[ctx - new :].any(axis=0).sum()
            assert mixer.keys_read(fw) == want, (spec, ctx, new)


@pytest.mark.parametrize("spec", [s for s in SPECS if s["kind"] == "knn_memory"], ids=_id)
def test_knn_keys_read_bound_the_distinct_retrieved_keys(spec):
    """Which memories a query retrieves depends on the data: the count read is exact for one
    query and an upper bound (no overlap assumed) for several."""
    mixer = build_mixer(spec)
    for ctx in (1, 9, 24, 40):
        mask = masks.memory_mask_for(mixer, ctx)
        decode = one_forward(LLAMA, "decode", 1, ctx)
        assert mixer.keys_read(decode) == mask[-1].sum()
        for new in (2, ctx // 2, ctx):
            fw = one_forward(LLAMA, "prefill", new, ctx)
            assert mixer.keys_read(fw) >= mask[ctx - new :].any(axis=0).sum()


def _needed(mixer, c: int) -> int:
    """Keys existing at context c that the query at c - 1 or a later one reads."""
    if c == 0:
        return 0
    horizon = c + 80
    mask = masks.memory_mask_for(mixer, horizon)
    rows = mask[c - 1 :]
    tokens = rows[:, :c].any(axis=0).sum()
    if mixer.kind == "compressive":  # slots opened by context c (the newest may be partial)
        opened = int(mixer.slots_formed(c))
        return int(tokens + rows[:, horizon : horizon + opened].any(axis=0).sum())
    if mixer.kind == "memory_tokens":  # the read tokens of c - 1's segment
        g = (c - 1) // mixer.segment
        m = mixer.memory_tokens
        return int(tokens + rows[:, horizon + g * m : horizon + (g + 1) * m].any(axis=0).sum())
    return int(tokens)


@pytest.mark.parametrize("spec", SPECS, ids=_id)
def test_kv_held_covers_what_current_and_later_queries_read(spec):
    """Compressive and a device kNN memory hold exactly those keys (every memory entry may
    be retrieved later); infini and RMT report the segment buffer, m + min(c, s) or min(c, N),
    never less than what is needed."""
    mixer = build_mixer(spec)
    for c in range(0, 45):
        held, needed = mixer.kv_tokens_held(c), _needed(mixer, c)
        if spec["kind"] == "compressive":
            assert held == needed, (spec, c)
        elif spec["kind"] == "knn_memory":
            entries = min(max(c - spec["window"], 0), spec["memory_size"])
            local = min(c, spec["window"])
            if spec.get("memory_location") == "host":
                assert held == local
            else:
                assert held == local + entries
                # a later query can retrieve any live entry: the window holds the rest
                assert needed <= held
        elif spec["kind"] == "infini":
            assert held == min(c, spec["segment"]) >= needed
        else:
            assert held == (spec["memory_tokens"] + min(c, spec["segment"]) if c else 0)
            assert held >= needed


def test_knn_reference_counts_do_not_depend_on_the_draw():
    n, spec = 60, knn(6, 4, 20)
    sums = {masks.knn_memory(n, 6, 4, 20, seed=s).sum() for s in range(5)}
    assert sums == {build_mixer(spec).pairs_per_head(n)}
    picks = {masks.knn_memory(n, 6, 4, 20, seed=s)[-1].tobytes() for s in range(5)}
    assert len(picks) > 1  # ... while which keys are retrieved does


# -- invariants ------------------------------------------------------------------------------
BIG = [
    compressive(1024, 512, 4),
    compressive(1024, 512, 4, compression="mean"),
    rmt(2048, 16),
    infini(2048),
    knn(2048, 32, 65536),
    knn(2048, 32, 65536, memory_location="host"),
]
FLAT_PAST = {  # context past which the cache stops growing
    "compressive": lambda s: s["memory"] + s["compression_rate"] * (s["compressed_memory"] - 1) + 1,
    "memory_tokens": lambda s: s["segment"],
    "infini": lambda s: s["segment"],
    "knn_memory": lambda s: (
        s["window"] + (s["memory_size"] if s.get("memory_location") != "host" else 0)
    ),
}


@pytest.mark.parametrize("spec", BIG, ids=_id)
def test_more_context_never_costs_less_and_the_cache_is_flat_past_its_bound(spec):
    mixer = build_mixer(spec)
    ctx = np.unique(np.round(np.geomspace(1, 2**19, 400)))
    ctx = np.concatenate([np.arange(1.0, 5000.0), ctx[ctx >= 5000]])
    pairs = mixer.pairs_per_head(ctx)
    assert np.all(np.diff(pairs) > 0)  # every new query scores at least itself
    cache = mixer.cache_bytes_per_sequence(LLAMA, ctx, BF16, 1)
    assert np.all(np.diff(cache) >= 0)
    flat = FLAT_PAST[spec["kind"]](spec)
    assert np.all(cache[ctx >= flat] == cache[-1]) and cache[ctx < flat].max() < cache[-1]
    prefill = [
        sum(float(op.flops) for op in mixer.ops(one_forward(LLAMA, "prefill", n, n)))
        for n in (512, 4096, 32768, 262144)
    ]
    assert prefill == sorted(prefill)


@pytest.mark.parametrize(
    "spec", [infini(2048), rmt(2048, 16), compressive(1024, 512, 4), knn(2048, 32, 4096)], ids=_id
)
def test_prefill_pairs_grow_linearly_once_bounded(spec):
    mixer = build_mixer(spec)
    n = 2.0**20
    assert mixer.pairs_per_head(2 * n) / mixer.pairs_per_head(n) == pytest.approx(2.0, rel=1e-3)


# -- cache, state and parameters by hand ------------------------------------------------------
def test_cache_bytes_by_hand():
    ctx = np.array([10_000.0, 100_000.0])
    # compressive n_m 1024, n_cm 1024, c 4: at 10,000 the 8,976 evicted tokens open 2,244 slots,
    # 1,024 kept: 2,048 keys x 4,096 B = 8,388,608 B per layer; the same at 100,000
    mixer = build_mixer(compressive(1024, 1024, 4))
    np.testing.assert_array_equal(mixer.cache_bytes_per_sequence(LLAMA, ctx, BF16, 1), 8_388_608)
    # kNN w 2048, M 65536 on the device: (2048 + 7,952) and (2048 + 65,536) tokens; host: 2048
    dev = build_mixer(knn(2048, 32, 65536))
    np.testing.assert_array_equal(
        dev.cache_bytes_per_sequence(LLAMA, ctx, BF16, 1), [10_000 * 4096, 67_584 * 4096]
    )
    host = build_mixer(knn(2048, 32, 65536, memory_location="host"))
    np.testing.assert_array_equal(host.cache_bytes_per_sequence(LLAMA, ctx, BF16, 1), 2048 * 4096)
    # RMT s 2048, m 16: (16 + 2048) x 4096 = 8,454,144; at tp 2 (4 KV heads a rank) half
    mem = build_mixer(rmt(2048, 16))
    np.testing.assert_array_equal(mem.cache_bytes_per_sequence(LLAMA, ctx, BF16, 1), 8_454_144)
    np.testing.assert_array_equal(mem.cache_bytes_per_sequence(LLAMA, ctx, BF16, 2), 4_227_072)
    # infini N 2048: 2048 x 4096 = 8,388,608 of KV + the fp32 memory (next test) 528,384
    inf = build_mixer(infini(2048))
    np.testing.assert_array_equal(inf.cache_bytes_per_sequence(LLAMA, ctx, BF16, 1), 8_916_992)


def test_infini_state_bytes_from_the_paper_shapes():
    # Table 1: d_key x (d_value + 1) per head and layer. Llama 3.1 8B under GQA, one memory per
    # KV head: 8 x (128 x 128 + 128) = 132,096 fp32 values = 528,384 B; tp 2: 4 heads, 264,192.
    mixer = build_mixer(infini(2048))
    assert mixer.state_bytes_per_sequence(LLAMA, 1) == 528_384
    assert mixer.state_bytes_per_sequence(LLAMA, 2) == 264_192
    assert build_mixer(infini(2048, state_dtype_bits=16)).state_bytes_per_sequence(LLAMA, 1) == (
        264_192
    )
    # the paper's MHA setting, e.g. 8 heads of 64: 8 x (64 x 64 + 64) x 4 B = 133,120 B
    mha = LLAMA.model_copy(update={"d_model": 512, "n_heads": 8, "n_kv_heads": 8, "head_dim": 64})
    assert mixer.state_bytes_per_sequence(mha, 1) == 133_120
    for spec in (compressive(8, 8, 2), rmt(8, 2), knn(8, 4, 64)):
        assert build_mixer(spec).state_bytes_per_sequence(LLAMA, 1) == 0.0


def test_param_counts():
    # conv compression per KV head, for K and for V: 2 x 8 x (4 x 128^2 + 128) = 1,050,624
    assert build_mixer(compressive(1024, 512, 4)).param_count(LLAMA) == BASE_PARAMS + 1_050_624
    assert build_mixer(compressive(1024, 512, 4, compression="mean")).param_count(LLAMA) == (
        BASE_PARAMS
    )
    # one gating scalar per head (beta; b_g)
    assert build_mixer(infini(2048)).param_count(LLAMA) == BASE_PARAMS + 32
    assert build_mixer(knn(2048, 32, 65536)).param_count(LLAMA) == BASE_PARAMS + 32
    assert build_mixer(rmt(2048, 16)).param_count(LLAMA) == BASE_PARAMS


def test_max_query_key_distance_is_bounded_by_re_indexed_positions():
    assert build_mixer(compressive(1024, 512, 4)).max_query_key_distance() == 1535
    assert build_mixer(rmt(2048, 16)).max_query_key_distance() == 2079  # [R, X, W] positions
    assert build_mixer(infini(2048)).max_query_key_distance() == 2047
    assert build_mixer(knn(2048, 32, 65536)).max_query_key_distance() == 2047


# -- FLOPs and bytes of one forward by hand (tp 2: h 16, hk 4; weights and KV fp32, acts bf16)
def _op(ops, name):
    (op,) = [o for o in ops if o.name == name]
    return op


def test_infini_ops_by_hand():
    mixer = build_mixer(infini(2048))
    # per token on a rank: retrieval 16 x (2 x 128^2 + 8 x 128) = 540,672; delta update
    # 4 x (4 x 128^2 + 7 x 128) = 265,728; 806,400 in all
    assert mixer.memory_flops_per_token(LLAMA, 2) == 806_400
    dec = mixer.ops(one_forward(LLAMA, "decode", 1, 5000))
    assert [o.name for o in dec] == [
        "attn.qkv_proj",
        "attn.kv_append",
        "attn.core",
        "infini.memory",
        "attn.o_proj",
    ]
    mem = _op(dec, "infini.memory")
    assert mem.flops == B * 806_400
    state = B * 264_192  # fp32 memory of 4 KV heads, per sequence
    assert mem.kv_read_bytes == state and mem.kv_write_bytes == state / 2048
    # the decode at context 5000 reads its segment's (4999 mod 2048) + 1 = 904 keys:
    # 4 d_h pairs x 16 heads x 3 sequences
    assert _op(dec, "attn.core").flops == 4 * 128 * 16 * B * 904
    pre = mixer.ops(one_forward(LLAMA, "prefill", 4096, 4096))
    # two whole segments: 2 x 2048 x 2049 / 2 = 4,196,352 pairs per head
    assert _op(pre, "attn.core").flops == 4 * 128 * 16 * B * 4_196_352
    mem = _op(pre, "infini.memory")
    assert mem.flops == B * 4096 * 806_400
    assert mem.kv_read_bytes == 2 * state and mem.kv_write_bytes == 2 * state
    assert mem.act_read_bytes == B * 4096 * (2 * 16 + 2 * 4) * 128 * 2


def test_compressive_compress_op_by_hand():
    mixer = build_mixer(compressive(4, 2, 3))
    # prefill of 12: 8 tokens evicted, into slots 0, 1, 2 (the last with 2 of 3 tokens)
    op = _op(mixer.ops(one_forward(LLAMA, "prefill", 12, 12)), "compressive.compress")
    assert op.flops == 2 * B * 4 * 8 * 2 * 128**2  # K and V, 2 d_h^2 per token and KV head
    assert op.weight_bytes == 2 * 4 * (3 * 128**2 + 128) * 4  # fp32 per-KV-head convs
    vec = 2 * B * 4 * 128 * 4  # one token's K and V, fp32 cache, 3 sequences
    assert op.kv_read_bytes == vec * (8 + 3) and op.kv_write_bytes == vec * 3
    # a decode step past the memory evicts one token into one slot
    op = _op(mixer.ops(one_forward(LLAMA, "decode", 1, 40)), "compressive.compress")
    assert op.flops == 2 * B * 4 * 2 * 128**2 and op.kv_write_bytes == vec
    # inside the memory nothing is evicted
    op = _op(mixer.ops(one_forward(LLAMA, "decode", 1, 4)), "compressive.compress")
    assert op.flops == 0 and op.kv_read_bytes == 0
    mean = build_mixer(compressive(4, 2, 3, compression="mean"))
    op = _op(mean.ops(one_forward(LLAMA, "prefill", 12, 12)), "compressive.compress")
    assert op.flops == 2 * B * 4 * 8 * 2 * 128 and op.weight_bytes == 0


def test_rmt_memory_op_by_hand():
    mixer = build_mixer(rmt(2048, 16))
    # a 4096-token prefill begins one segment after the first: one pass of W_0 and R_1
    op = _op(mixer.ops(one_forward(LLAMA, "prefill", 4096, 4096)), "rmt.memory")
    proj = 2 * (4096 * (16 + 2 * 4) * 128 + 16 * 128 * 4096)  # per memory token on a rank
    assert proj == 41_943_040
    pairs = 16 * (16 + 2048) + 16 * 17  # W: 16 x (16 + 2048) + 136, R: 136
    assert op.flops == B * 32 * proj + B * 4 * 128 * 16 * pairs
    # a decode step pays 1/2048 of a pass
    dec = _op(mixer.ops(one_forward(LLAMA, "decode", 1, 5000)), "rmt.memory")
    assert dec.flops == pytest.approx(op.flops / 2048)
    # the decode's real keys: 16 read tokens + (4999 mod 2048) + 1 = 920
    core = _op(mixer.ops(one_forward(LLAMA, "decode", 1, 5000)), "attn.core")
    assert core.flops == 4 * 128 * 16 * B * 920
    # a prefill within the first segment runs no pass
    assert _op(mixer.ops(one_forward(LLAMA, "prefill", 2048, 2048)), "rmt.memory").flops == 0


def test_knn_search_op_by_hand():
    mixer = build_mixer(knn(2048, 32, 65536))
    ops = mixer.ops(one_forward(LLAMA, "decode", 1, 100_000))
    assert [o.name for o in ops] == [
        "attn.qkv_proj",
        "attn.kv_append",
        "knn.search",
        "attn.core",
        "knn.gate",
        "attn.o_proj",
    ]
    search = _op(ops, "knn.search")
    # exact scan of 65,536 entries: (2 d_h + 1) per query head and entry; keys read once per KV
    # head (fp32 cache)
    assert search.flops == B * 16 * 257 * 65_536
    assert search.kv_read_bytes == B * 4 * 128 * 4 * 65_536
    assert _op(ops, "attn.core").flops == 4 * 128 * 16 * B * (2048 + 32)
    assert _op(ops, "knn.gate").flops == B * 16 * 3 * 128
    approx = build_mixer(knn(2048, 32, 65536, scan_fraction=0.125))
    assert _op(approx.ops(one_forward(LLAMA, "decode", 1, 100_000)), "knn.search").flops == (
        search.flops / 8
    )
    host = build_mixer(knn(2048, 32, 65536, memory_location="host"))
    assert "knn.search" not in [o.name for o in host.ops(one_forward(LLAMA, "decode", 1, 10**5))]


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({**compressive(4, 2, 3), "causal": False}, "causal"),
        (compressive(0, 2, 3), "memory"),
        (compressive(4, 2, 0), "compression_rate"),
        (compressive(4, 2, 3, compression="max"), "compression"),
        ({**rmt(8, 2), "causal": False}, "causal"),
        (rmt(8, 0), "memory_tokens"),
        (infini(0), "segment"),
        (infini(8, update="hebbian"), "update"),
        (knn(8, 0, 4), "top_k"),
        (knn(8, 2, 4, scan_fraction=0.0), "scan_fraction"),
        (knn(8, 2, 4, memory_location="disk"), "memory_location"),
    ],
)
def test_invalid_params_are_field_errors(spec, field):
    with pytest.raises(ValueError, match=rf"mixer\.{field}:"):
        build_mixer(spec)


@pytest.mark.parametrize(
    "spec", [compressive(4, 2, 3), rmt(8, 2), infini(8), knn(8, 2, 4)], ids=_id
)
def test_encoders_are_refused(spec):
    encoder = load_model_profile("bigbird-roberta-large")
    with pytest.raises(ValueError, match="needs a decoder"):
        build_mixer(spec).check_model(encoder)


# -- the shipped what-if profile and the sweeps -------------------------------------------------
def test_infini_profile_is_a_what_if_with_llama_shapes():
    assert "what-if" in INFINI_8B.source.lower() and "not a released" in INFINI_8B.source.lower()
    assert count_params(INFINI_8B).total == count_params(LLAMA).total + 32 * 32
    assert INFINI_8B.published_params.value == count_params(INFINI_8B).total
    assert max_query_key_distance(INFINI_8B) == 2047


def test_estimate_on_the_infini_profile():
    prompts = np.array([4096.0, 65_536.0, 262_144.0])
    est = hwsim.estimate("llama-3.1-8b-infini", "h100-sxm", prompt_len=prompts, gen_len=128)
    # 32 layers x (one 2048-token segment of bf16 KV + the 528,384 B fp32 memory), flat
    np.testing.assert_array_equal(est.memory.kv_cache_bytes, 32 * 8_916_992)
    assert est.memory.state_bytes_per_sequence == 32 * 528_384
    ttft = np.asarray(est.latency.ttft_s)
    assert ttft[2] / ttft[1] == pytest.approx(4.0, rel=0.02)  # linear past one segment
    tpot = np.asarray(est.latency.tpot_s)
    assert tpot[2] == pytest.approx(tpot[1], rel=1e-6)  # a decode step costs the same


def test_context_sweep_on_the_infini_profile_and_the_other_memory_mixers():
    lengths = [1024, 2048, 8192, 65_536, 131_072, 524_288]
    variants = [
        "compressive:memory=1024,compressed_memory=1024,compression_rate=4",
        "memory_tokens:segment=2048,memory_tokens=16",
        "knn_memory:window=2048,memory_size=65536,top_k=32",
    ]
    sweep = context_sweep("llama-3.1-8b-infini", "h100-sxm", lengths, variants=variants)
    for name in sweep.variants:
        rows = sweep.select(name)
        kv = rows["kv_state_bytes_per_sequence"]
        assert np.all(np.diff(kv) >= 0)
        assert kv[-1] == kv[-2]  # bounded: flat past the memory (kNN: past 2048 + 65,536)
        assert np.all(np.diff(rows["ttft_s"]) > 0)
    rows = sweep.select("llama-3.1-8b-infini")
    assert np.all(rows["kv_state_bytes_per_sequence"][1:] == 32 * 8_916_992)
    pairs = rows["pairs_per_head_per_layer"]
    assert pairs[5] / pairs[3] == 8.0  # whole segments: linear in length


def test_memory_mixers_combine_with_a_window_in_a_layer_pattern():
    data = yaml.safe_load((PROFILES / "llama-3.1-8b.yaml").read_text())
    data.pop("mixer")
    data["id"] = "llama-3.1-8b-window-compressive"
    data["layer_pattern"] = [
        {"kind": "sliding_window", "window": 4096},
        compressive(1024, 1024, 4),
    ]
    model = ModelProfile.model_validate(data)
    est = hwsim.estimate(model, "h100-sxm", prompt_len=np.array([8192.0, 32768.0]), gen_len=16)
    # 16 window layers of 4096 tokens + 16 compressive layers of 1024 + 1024 keys, flat
    np.testing.assert_array_equal(est.memory.kv_cache_bytes, 16 * (4096 + 2048) * KV_TOKEN)
    dep = make_deployment(model, "h100-sxm")
    assert float(cache_bytes_per_sequence_per_gpu(dep, 10**6)) == 16 * 6144 * KV_TOKEN
