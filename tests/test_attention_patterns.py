"""Attention-pattern counts: every closed form against a brute-force reference mask.

``hwsim.model.mixers.masks`` builds each pattern from its definition as an n x n boolean matrix;
``pairs_per_head(n)`` must equal ``mask.sum()`` exactly, ``keys_per_decode_step(c)`` the last
row of the c x c mask, and ``kv_tokens_held(c)`` the keys any current or later query reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.dtypes import DTYPES
from hwsim.model.layers import layer_groups, layer_mixer
from hwsim.model.mixers import build_mixer, masks
from hwsim.model.params import count_params
from hwsim.profiles.model import ModelProfile

PROFILES = Path(__file__).resolve().parents[1] / "model_profiles"

# -- parameter spaces (bounded so a mask stays a few hundred squared) -------------------------
small = st.integers(1, 12)
SPECS = st.one_of(
    st.builds(lambda c: {"kind": "attention", "causal": c}, st.booleans()),
    st.builds(lambda w: {"kind": "sliding_window", "window": w}, small),
    st.builds(lambda s: {"kind": "sparse_strided", "stride": s}, small),
    small.flatmap(
        lambda s: st.builds(
            lambda c: {"kind": "sparse_fixed", "stride": s, "summary": c}, st.integers(1, s)
        )
    ),
    st.builds(
        lambda h, d, g, c: {
            "kind": "longformer",
            "window": 2 * h,
            "dilation": d,
            "n_global": g,
            "causal": c,
        },
        st.integers(1, 8),
        st.integers(1, 4),
        st.integers(0, 5),
        st.booleans(),
    ),
    st.builds(
        lambda b, k, r, g, seed: {
            "kind": "bigbird",
            "block_size": b,
            "window_blocks": 2 * k + 1,
            "random_blocks": r,
            "global_blocks": 2 * g,
            "seed": seed,
        },
        st.integers(1, 6),
        st.integers(0, 2),
        st.integers(0, 4),
        st.integers(1, 2),
        st.integers(0, 2**16),
    ),
    st.builds(
        lambda s, w: {"kind": "streaming", "n_sink": s, "window": w}, st.integers(0, 6), small
    ),
)

# Edge cases named explicitly: n = 1, n below the window/stride/block, n not a multiple.
EDGE_SPECS = [
    {"kind": "attention", "causal": True},
    {"kind": "attention", "causal": False},
    {"kind": "sliding_window", "window": 7},
    {"kind": "sparse_strided", "stride": 1},
    {"kind": "sparse_strided", "stride": 5},
    {"kind": "sparse_fixed", "stride": 6, "summary": 1},
    {"kind": "sparse_fixed", "stride": 6, "summary": 6},
    {"kind": "longformer", "window": 6},
    {"kind": "longformer", "window": 6, "dilation": 3, "n_global": 2},
    {"kind": "longformer", "window": 8, "dilation": 2, "n_global": 3, "causal": True},
    {"kind": "bigbird", "block_size": 4},
    {
        "kind": "bigbird",
        "block_size": 3,
        "window_blocks": 5,
        "random_blocks": 1,
        "global_blocks": 4,
    },
    {"kind": "bigbird", "block_size": 2, "window_blocks": 1, "random_blocks": 0},
    {"kind": "streaming", "n_sink": 4, "window": 5},
    {"kind": "streaming", "n_sink": 0, "window": 3},
]
EDGE_N = [1, 2, 3, 4, 5, 6, 7, 11, 13, 24, 37, 64, 101]


def _check_pattern(spec: dict, n: int) -> None:
    mixer = build_mixer(spec)
    mask = masks.mask_for(mixer, n)
    assert mixer.pairs_per_head(n) == mask.sum(), (spec, n)
    # keys a query appended at the end reads = the last row of the n x n mask
    assert mixer.keys_per_decode_step(n) == mask[-1].sum(), (spec, n)


@pytest.mark.parametrize("spec", EDGE_SPECS, ids=lambda s: s["kind"])
def test_closed_form_equals_mask_at_edge_lengths(spec):
    for n in EDGE_N:
        _check_pattern(spec, n)
    mixer = build_mixer(spec)
    assert mixer.pairs_per_head(0) == 0
    assert mixer.keys_per_decode_step(0) == 0


@settings(max_examples=1500, deadline=None)
@given(spec=SPECS, n=st.integers(1, 160))
def test_closed_form_equals_mask(spec, n):
    _check_pattern(spec, n)


@settings(max_examples=60, deadline=None)
@given(spec=SPECS)
def test_vectorised_equals_scalar(spec):
    mixer = build_mixer(spec)
    ns = np.arange(0, 300)
    grid = np.stack([ns, ns[::-1]])  # 2-D input broadcasts like a scalar would
    for method in (mixer.pairs_per_head, mixer.keys_per_decode_step, mixer.kv_tokens_held):
        out = method(grid)
        assert out.shape == grid.shape
        assert all(out[0, i] == method(int(n)) for i, n in enumerate(ns))


@settings(max_examples=300, deadline=None)
@given(spec=SPECS, c=st.integers(0, 90))
def test_kv_held_is_what_current_and_later_queries_read(spec, c):
    """A causal cache at context c keeps every key that the query at c - 1 or a later one
    reads (checked on a mask long enough to show every later query's reach)."""
    mixer = build_mixer(spec)
    if not mixer.causal:
        return
    horizon = c + 200
    mask = masks.mask_for(mixer, horizon)
    needed = mask[max(c - 1, 0) :, :c].any(axis=0).sum() if c else 0
    assert mixer.kv_tokens_held(c) == needed


# -- scaling with n ------------------------------------------------------------------------
def _ratio(spec: dict, n: float) -> float:
    mixer = build_mixer(spec)
    return float(mixer.pairs_per_head(2 * n) / mixer.pairs_per_head(n))


def test_dense_pairs_grow_fourfold():
    assert _ratio({"kind": "attention", "causal": False}, 2**14) == 4.0
    assert _ratio({"kind": "attention", "causal": True}, 2**14) == pytest.approx(4.0, abs=1e-3)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "sliding_window", "window": 1024},  # window << n (4096 is 2.14x here)
        {"kind": "longformer", "window": 512},
        {"kind": "longformer", "window": 512, "dilation": 2, "n_global": 16},
        {"kind": "longformer", "window": 512, "causal": True},
        {"kind": "bigbird", "block_size": 64},
        {"kind": "streaming", "n_sink": 4, "window": 1020},
    ],
    ids=lambda s: s["kind"],
)
def test_windowed_patterns_grow_linearly(spec):
    assert _ratio(spec, 2**14) == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("kind", ["sparse_strided", "sparse_fixed"])
def test_sparse_transformer_with_sqrt_stride_grows_as_n_to_1_5(kind):
    def pairs(n):
        spec = {"kind": kind, "stride": round(n**0.5)}
        if kind == "sparse_fixed":
            spec["summary"] = 8
        return build_mixer(spec).pairs_per_head(n)

    assert pairs(2**15) / pairs(2**14) == pytest.approx(2**1.5, abs=0.1)


# -- anchors ---------------------------------------------------------------------------------
def test_gpt3_175b_score_matrix_at_4000_tokens():
    model = ModelProfile.model_validate(yaml.safe_load((PROFILES / "gpt-3-175b.yaml").read_text()))
    per_head = [(m.score_matrix_elements_per_head(4000), c) for m, _moe, c in layer_groups(model)]
    assert all(e == 16_000_000 for e, _ in per_head)
    per_layer_sum = sum(e * c for e, c in per_head)
    assert per_layer_sum == 1_536_000_000
    assert per_layer_sum * model.n_heads == 147_456_000_000


def test_bigbird_count_is_independent_of_the_draw():
    n = 64 * 23 + 17
    spec = {"kind": "bigbird", "block_size": 64, "random_blocks": 3}
    sums = {masks.mask_for(build_mixer({**spec, "seed": s}), n).sum() for s in range(5)}
    assert sums == {build_mixer(spec).pairs_per_head(n)}


def test_bigbird_layout_rows():
    """Middle rows read 3 window + 3 random + 2 global blocks (8 x 64 = 512 keys, formulas.md
    section 7); random blocks avoid the window and the globals."""
    layout = masks.bigbird_block_layout(40, window_blocks=3, random_blocks=3, global_blocks=2)
    assert layout[0].all() and layout[-1].all() and layout[:, 0].all() and layout[:, -1].all()
    for q in range(3, 37):
        assert layout[q].sum() == 8
        random = np.flatnonzero(layout[q])
        assert len(set(random) - {0, 39, q - 1, q, q + 1}) == 3
    pairs = build_mixer({"kind": "bigbird", "block_size": 64}).pairs_per_head(40 * 64)
    assert pairs == layout.sum() * 64 * 64


# -- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"kind": "sliding_window", "window": 8, "causal": False}, "causal"),
        ({"kind": "sparse_strided", "stride": 8, "causal": False}, "causal"),
        ({"kind": "sparse_fixed", "stride": 8, "summary": 9}, "summary"),
        ({"kind": "sparse_fixed", "stride": 0, "summary": 1}, "stride"),
        ({"kind": "longformer", "window": 7}, "window"),
        ({"kind": "longformer", "window": 8, "dilation": 0}, "dilation"),
        ({"kind": "bigbird", "causal": True}, "causal"),
        ({"kind": "bigbird", "window_blocks": 2}, "window_blocks"),
        ({"kind": "bigbird", "global_blocks": 1}, "global_blocks"),
        ({"kind": "streaming", "window": 8, "causal": False}, "causal"),
        ({"kind": "streaming", "window": 0}, "window"),
    ],
)
def test_invalid_params_are_field_errors(spec, field):
    with pytest.raises(ValueError, match=rf"mixer\.{field}:"):
        build_mixer(spec)


# -- shipped profiles of these patterns -------------------------------------------------------
PATTERN_PROFILES = [
    "gemma-2-9b",
    "gemma-2-27b",
    "gemma-3-27b",
    "longformer-large",
    "bigbird-roberta-large",
    "sparse-transformer-enwik8",
]


def _profile(name: str) -> ModelProfile:
    return ModelProfile.model_validate(yaml.safe_load((PROFILES / f"{name}.yaml").read_text()))


@pytest.mark.parametrize("name", PATTERN_PROFILES)
def test_profile_params_match_published(name):
    model = _profile(name)
    assert model.id == name
    derived = count_params(model).total
    assert derived == pytest.approx(model.published_params.value, rel=0.01)


def test_gemma_layer_patterns_and_kv_rate():
    bf16 = DTYPES["bf16"]
    g2 = _profile("gemma-2-9b")
    kinds = [layer_mixer(g2, i).kind for i in range(g2.n_layers)]
    assert kinds[:2] == ["sliding_window", "attention"] and kinds.count("attention") == 21
    rate = sum(layer_mixer(g2, i).kv_bytes_per_token(g2, bf16, 1) for i in range(g2.n_layers))
    assert rate == 344_064  # formulas.md section 3
    g3 = _profile("gemma-3-27b")
    globals_ = [i + 1 for i in range(g3.n_layers) if layer_mixer(g3, i).kind == "attention"]
    assert globals_ == list(range(6, 61, 6))  # models.md: layers 6, 12, ..., 60 are global
