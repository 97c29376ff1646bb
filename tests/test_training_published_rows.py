"""Golden checks of the published activation-memory rows, worked by hand from Korthikanti et al.

Korthikanti et al. 2022 (arXiv 2205.05198), section 4 / Table 2: one GPT layer stores
sbh(34 + 5as/h) bytes per micro-batch without recomputation, 34sbh with selective
recomputation and 2sbh (its input) with full recomputation; with tensor parallelism t and
sequence parallelism every term is divided by t. Around the layers (section 4.3) the first
stage keeps the embedding's dropout mask (sbh bytes) and the last the final norm's and the LM
head's inputs (2sbh each) and the fp32 logits (4sbv/t). The numbers below are computed here
from those formulas alone and compared with what hwsim predicts for the rows of
validation/published/training/runs.yaml.
"""

from __future__ import annotations

import pytest

from hwsim.training import train
from validation.published_training import (
    GIB,
    compare,
    gpt_profile,
    load_training_rows,
    predict,
)

PER_LAYER = {  # bytes per layer / (s b h), Korthikanti Table 2 (t = 1)
    "none": lambda a, s, h: 34 + 5 * a * s / h,
    "selective": lambda a, s, h: 34,
    "full": lambda a, s, h: 2,
}


def _rows():
    return {r.id: r for r in load_training_rows()}


def _by_hand(L, h, a, v, s, b, recompute, t=1):
    """Korthikanti's activation bytes of a one-stage GPT on one GPU of its TP group, with
    sequence parallelism when t > 1 (every term / t), plus the embedding mask and the last
    stage's norm / LM-head inputs and fp32 logits."""
    sbh = s * b * h
    layers = L * sbh * PER_LAYER[recompute](a, s, h) / t
    return layers + sbh / t + 4 * sbh / t + 4 * s * b * v / t


@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
@pytest.mark.parametrize("size", ["8b", "70b"])
def test_playbook_rows_are_korthikanti_by_hand(size, recompute):
    row = _rows()[f"usp25-{size}-s4096-{recompute}"]
    assert not row.excluded
    assert not isinstance(row.model, str)
    shape = row.model.gpt
    L, h, a, v = shape.n_layers, shape.d_model, shape.n_heads, shape.vocab
    s, b = row.training["seq_len"], row.training["micro_batch"]
    sbh = s * b * h
    # the published figure is the formula: L sbh x per-layer + sbh, in GiB (2^30 bytes); a
    # check on the row's unit, which fails if the figure's "GB" were 1e9 bytes
    formula = L * sbh * PER_LAYER[recompute](a, s, h) + sbh
    assert row.published["activations_gib_per_gpu"] == pytest.approx(formula / GIB, rel=1e-12)
    # hwsim's activations are the same formula plus what the playbook leaves out
    expected = _by_hand(L, h, a, v, s, b, recompute)
    got = {c.metric: c.predicted for c in compare([row])}
    assert got["activations_gib_per_gpu"] * GIB == pytest.approx(expected, rel=1e-12)
    # and the total adds 16 bytes per parameter, which the figure also counts
    result = predict(row)
    states = result.memory.total_bytes - result.memory.activations_bytes
    assert states == pytest.approx(16 * result.params_total, rel=1e-12)
    figure_states = row.published["memory_gib_per_gpu"] - row.published["activations_gib_per_gpu"]
    assert states / GIB == pytest.approx(figure_states, rel=1e-9)


def test_zero_activation_row_is_korthikanti_by_hand():
    """The ZeRO row (GPT-2 1.5B, s 1024, b 32, no recomputation, naive attention): hwsim's
    number is Korthikanti's count, sbh(34 + 5as/h) = 114 sbh per layer here."""
    row = _rows()["zero20-gpt2-1.5b-activations"]
    assert not isinstance(row.model, str)
    shape = row.model.gpt
    L, h, a, v = shape.n_layers, shape.d_model, shape.n_heads, shape.vocab
    s, b = row.training["seq_len"], row.training["micro_batch"]
    assert PER_LAYER["none"](a, s, h) == pytest.approx(114.0)
    [c] = compare([row])
    assert c.metric == "activations_gb_per_gpu"
    assert c.predicted * 1e9 == pytest.approx(_by_hand(L, h, a, v, s, b, "none"), rel=1e-12)
    # ZeRO's own count, 12 values of 2 bytes per sbh per layer, is its published 60 GB
    assert 12 * 2 * L * s * b * h / 1e9 == pytest.approx(c.published, rel=0.01)


@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
def test_sequence_parallel_divides_every_term_by_t(recompute):
    """Korthikanti's 22B (Table 3: 48 layers, h 6144, 64 heads, t 8, b 4) with sequence
    parallelism: sbh(34 + 5as/h)/t, 34sbh/t and 2sbh/t per layer."""
    L, h, a, v, s, b, t = 48, 6144, 64, 51200, 2048, 4, 8
    model = gpt_profile(L, h, a, row_id="golden-22b")
    result = train(
        model,
        "a100-80gb-sxm",
        t,
        tp=t,
        micro_batch=b,
        global_batch=b,
        seq_len=s,
        recompute=recompute,
        sequence_parallel=True,
        attention="naive",
    )
    expected = _by_hand(L, h, a, v, s, b, recompute, t=t)
    assert result.memory.activations_bytes == pytest.approx(expected, rel=1e-12)
