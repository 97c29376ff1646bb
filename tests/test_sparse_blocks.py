"""Block granularity of sparse attention (issue 17): the pairs a tiled kernel computes, brute
forced by cutting the reference mask into tiles, and what it does to a prefill's FLOPs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from mixer_op_tables import one_forward

from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import prefill_cost
from hwsim.model.forward import Forward
from hwsim.model.mixers import build_mixer, masks
from hwsim.model.mixers.blocks import (
    band_block_pairs,
    causal_block_pairs,
    fixed_block_pairs,
    permuted_strided_block_pairs,
    strided_block_pairs,
)
from hwsim.profiles.loader import load_model_profile


def tiled_pairs(mask: np.ndarray, block: int) -> float:
    """Cut the mask into block x block tiles; a tile with any pair is computed whole."""
    n = mask.shape[0]
    count = -(-n // block)
    padded = np.zeros((count * block, count * block), dtype=bool)
    padded[:n, :n] = mask
    touched = padded.reshape(count, block, count, block).any(axis=(1, 3))
    sizes = np.array([min(block, n - k * block) for k in range(count)], dtype=float)
    return float((touched * sizes[:, None] * sizes[None, :]).sum())


CASES = list(itertools.product([1, 5, 16, 37, 64, 129], [1, 3, 8, 13, 32], [1, 2, 4, 16]))


@pytest.mark.parametrize(("n", "stride", "block"), CASES)
def test_strided_tiles_match_the_mask(n, stride, block):
    assert strided_block_pairs(n, stride, block) == tiled_pairs(masks.strided(n, stride), block)


@pytest.mark.parametrize(("n", "stride", "block"), CASES)
def test_fixed_tiles_match_the_mask(n, stride, block):
    for summary in sorted({1, max(1, stride // 2), stride}):
        mask = masks.fixed(n, stride, summary)
        assert fixed_block_pairs(n, stride, summary, block) == tiled_pairs(mask, block)


@pytest.mark.parametrize(("n", "width", "block"), CASES)
def test_band_and_causal_tiles_match_the_mask(n, width, block):
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    assert band_block_pairs(n, width, block) == tiled_pairs((j <= i) & (i - j <= width), block)
    assert causal_block_pairs(n, block) == tiled_pairs(j <= i, block)


@pytest.mark.parametrize(("n", "stride"), [(37, 4), (64, 8), (100, 7)])
def test_a_permuted_layout_makes_each_column_class_dense(n, stride):
    """Gathering the positions of one residue class mod l makes the column pattern among them
    dense causal (what the permuted kernel exploits), so it costs the classes' causal tiles."""
    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    columns = (j <= i) & ((i - j) % stride == 0)
    for k in range(stride):
        members = np.arange(k, n, stride)
        sub = columns[np.ix_(members, members)]
        assert (sub == np.tri(len(members), dtype=bool)).all()
    block = 4
    classes = [len(range(k, n, stride)) for k in range(stride)]
    expected = band_block_pairs(n, stride, block) + sum(
        causal_block_pairs(m, block) for m in classes
    )
    assert permuted_strided_block_pairs(n, stride, block) == expected
    assert permuted_strided_block_pairs(n, stride, block) >= masks.strided(n, stride).sum()


def test_strided_at_16k_computes_22x_its_pairs_in_64_tiles():
    """l = 128, B = 64: the offsets of a tile at delta span 127 values, which hold a multiple
    of 128 for every even delta (and every delta <= 2 from the window): about half the causal
    tiles, 68,677,632 pairs against the 3,129,408 the pattern scores."""
    mixer = build_mixer({"kind": "sparse_strided", "stride": 128}, where="test")
    exact = float(mixer.pairs_per_head(16384))
    tiles = strided_block_pairs(16384, 128, 64)
    assert exact == 3_129_408
    assert tiles / exact == pytest.approx(21.95, abs=0.01)
    causal = causal_block_pairs(16384, 64)
    assert tiles / causal == pytest.approx(0.51, abs=0.01)
    assert permuted_strided_block_pairs(16384, 128, 64) < 1.6 * exact  # the layout fixes it


LLAMA = load_model_profile("llama-2-7b")


def _forward(phase, new, ctx) -> Forward:
    return one_forward(LLAMA, phase, new, ctx, tp=1)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "sparse_strided", "stride": 32},
        {"kind": "sparse_fixed", "stride": 32, "summary": 8},
    ],
    ids=lambda s: s["kind"],
)
def test_prefill_flops_follow_the_tiles_and_decode_the_keys(spec):
    n = 1000
    tiled = build_mixer({**spec, "block_size": 16}, where="test")
    exact = build_mixer({**spec, "block_size": 1}, where="test")
    whole = tiled.core_op(_forward("prefill", n, n))
    pairs = float(exact.pairs_per_head(n))
    # 4 d_h FLOPs per computed pair, 32 heads of 128, batch 3 (mixer_op_tables.B)
    assert float(exact.core_op(_forward("prefill", n, n)).flops) == 4 * 3 * 32 * 128 * pairs
    assert float(whole.flops) > float(exact.core_op(_forward("prefill", n, n)).flops)
    # chunks of 256 compute the rows of their tiles: the chunks sum to the whole prefill
    chunks = [(min(256, n - s), s + min(256, n - s)) for s in range(0, n, 256)]
    summed = sum(float(tiled.core_op(_forward("prefill", m, c)).flops) for m, c in chunks)
    assert summed == pytest.approx(float(whole.flops), rel=1e-12)
    # a decode step computes exactly the keys it reads
    step = tiled.core_op(_forward("decode", 1, n))
    assert float(step.flops) == 4 * 3 * 32 * 128 * float(tiled.keys_per_decode_step(n))


def test_the_sparse_transformer_profile_prices_its_tiles():
    """The shipped Enwik8 model (fixed, l = 128, c = 32) at its 12,288 context: the prefill's
    attention FLOPs are the 64-tiles' pairs x 4 d_h (d_h = 64) x 8 heads x 30 layers."""
    dep = make_deployment("sparse-transformer-enwik8", "h100-sxm")
    cost = prefill_cost(dep, 1.0, 12288.0)
    core = [t.op for t in cost.op_times if t.op.op_class == "attention"]
    flops = sum(float(op.flops) * op.count for op in core)
    assert flops == pytest.approx(fixed_block_pairs(12288, 128, 32, 64) * 4 * 64 * 8 * 30)
