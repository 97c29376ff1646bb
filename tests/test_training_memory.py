"""Training memory: model states (ZeRO paper), activations (Korthikanti et al. 2022), fits."""

from __future__ import annotations

import pytest

from hwsim.model.load import load_model
from hwsim.model.params import count_params
from hwsim.training import TrainingSpec, train
from hwsim.training.memory import (
    layer_activations,
    layer_params_per_rank,
    model_state_bytes,
    stored_layer_bytes,
)

GB = 1e9


def test_mixed_precision_adam_keeps_16_bytes_per_parameter():
    # 2 (bf16 weights) + 2 (bf16 grads) + 4 (fp32 master) + 4 (m) + 4 (v)
    assert sum(model_state_bytes(1.0, 1, 0)) == 16.0
    assert model_state_bytes(1.0, 1, 0) == (2.0, 2.0, 12.0)


@pytest.mark.parametrize(
    "zero, expected_gb",
    # ZeRO (Rajbhandari et al. 2020, arXiv 1910.02054) Figure 1: Psi = 7.5B, N_d = 64, K = 12:
    # baseline (2+2+K)Psi = 120 GB; P_os 4Psi + K Psi/N_d = 31.4 GB; P_os+g 2Psi + (2+K)Psi/N_d
    # = 16.6 GB; P_os+g+p (2+2+K)Psi/N_d = 1.9 GB
    [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)],
)
def test_zero_stages_reproduce_the_zero_paper_example(zero, expected_gb):
    total = sum(model_state_bytes(7.5e9, 64, zero)) / GB
    assert total == pytest.approx(expected_gb, abs=0.05)


GPT3 = load_model("gpt-3-175b")
S, B = 2048, 1


def _sbh(model=GPT3, s=S, b=B):
    return s * b * model.d_model


@pytest.mark.parametrize("t", [1, 2, 8])
def test_gpt3_shape_reproduces_korthikanti_34_and_5as_over_h(t):
    """Equation 1/2 of Korthikanti et al.: sbh(10 + 24/t + 5as/(ht)) per layer, 34 = 10 + 24."""
    spec = TrainingSpec(tp=t)
    acts = layer_activations(GPT3, False, S, B, t, spec)
    a, h = GPT3.n_heads, GPT3.d_model
    assert acts.replicated / _sbh() == pytest.approx(10.0, rel=1e-12)
    assert acts.sharded * t / _sbh() == pytest.approx(24.0, rel=1e-12)
    assert acts.scores / _sbh() == pytest.approx(5 * a * S / (h * t), rel=1e-12)
    # the no-recompute naive-attention total per layer is exactly Table 2's entry
    naive = spec.replace(attention="naive")
    stored = stored_layer_bytes(acts, GPT3, S, B, naive)
    assert stored / _sbh() == pytest.approx(10 + 24 / t + 5 * a * S / (h * t), rel=1e-12)


def test_korthikanti_table2_rows_for_gpt3_with_tp8():
    t, a, h = 8, GPT3.n_heads, GPT3.d_model
    acts = layer_activations(GPT3, False, S, B, t, TrainingSpec(tp=t))

    def per_layer(**kw):
        spec = TrainingSpec(tp=t, attention="naive", **kw)
        return stored_layer_bytes(acts, GPT3, S, B, spec) / _sbh()

    assert per_layer(sequence_parallel=True) == pytest.approx(34 / t + 5 * a * S / (h * t))
    assert per_layer(recompute="selective") == pytest.approx(10 + 24 / t)
    assert per_layer(recompute="selective", sequence_parallel=True) == pytest.approx(34 / t)
    assert per_layer(recompute="full") == pytest.approx(2.0)
    assert per_layer(recompute="full", sequence_parallel=True) == pytest.approx(2.0 / t)
    # GPT-3: 5as/h = 80 (section 5 of the paper)
    assert 5 * a * S / h == pytest.approx(80.0)


def test_flash_attention_is_selective_equivalent_for_memory():
    acts = layer_activations(GPT3, False, S, B, 8, TrainingSpec(tp=8))
    flash = stored_layer_bytes(acts, GPT3, S, B, TrainingSpec(tp=8, attention="flash"))
    sel = stored_layer_bytes(
        acts, GPT3, S, B, TrainingSpec(tp=8, attention="naive", recompute="selective")
    )
    assert flash == sel


def test_gqa_and_gated_ffn_change_the_constant():
    """Llama 3.1 8B (GQA 32/8, SwiGLU 14336): the constant is derived, not 34."""
    m = load_model("llama-3.1-8b")
    acts = layer_activations(m, False, S, B, 1, TrainingSpec())
    h, f, kv = m.d_model, m.ffn.intermediate_size, m.kv_heads * m.head_size
    # norms 4h + qkv/mlp inputs 4h + masks 2h; Q + O-input 4h; K, V 4 kv; SwiGLU 6f
    expected = 10 * h + 4 * h + 4 * kv + 6 * f
    assert (acts.replicated + acts.sharded) / (S * B) == pytest.approx(expected)
    assert (acts.replicated + acts.sharded) / _sbh(m) != pytest.approx(34.0)
    no_dropout = layer_activations(m, False, S, B, 1, TrainingSpec(dropout=False))
    assert acts.replicated - no_dropout.replicated == pytest.approx(2 * S * B * h)


@pytest.mark.parametrize("name", ["gpt-3-175b", "llama-3.1-8b", "mixtral-8x7b"])
def test_layer_params_per_rank_add_up_to_the_model_at_tp1(name):
    m = load_model(name)
    total = sum(sum(layer_params_per_rank(m, m.is_moe_layer(i), 1)) for i in range(m.n_layers))
    assert total == pytest.approx(count_params(m).layers, rel=1e-9)


def _mem(**kw):
    settings = dict(tp=8, pp=8, global_batch=64, seq_len=2048, attention="naive")
    settings.update(kw)
    return train("gpt-3-175b", "a100-80gb-sxm", 64, **settings).memory


def test_recompute_orders_activation_memory():
    none, sel, full = (_mem(recompute=r).activations_bytes for r in ("none", "selective", "full"))
    assert full <= sel <= none
    assert full < sel < none


def test_more_sequence_never_costs_less():
    values = [_mem(seq_len=s, global_batch=8).total_bytes for s in (512, 1024, 2048, 4096)]
    assert values == sorted(values)


@pytest.mark.parametrize("recompute", ["none", "full"])
def test_zero_stage_k_plus_1_never_uses_more_memory(recompute):
    kw = dict(tp=2, pp=1, global_batch=16, seq_len=1024, recompute=recompute)
    totals = [train("llama-3.1-8b", "h100-sxm", 16, zero=z, **kw).memory for z in range(4)]
    for a, b in zip(totals, totals[1:]):
        assert b.total_bytes <= a.total_bytes
        assert b.params_bytes + b.grads_bytes + b.optimizer_bytes <= (
            a.params_bytes + a.grads_bytes + a.optimizer_bytes
        )


def test_korthikanti_175b_fits_with_sp_and_selective_but_not_without():
    assert _mem(recompute="selective", sequence_parallel=True, interleave=3).fits
    assert not _mem(recompute="none").fits


def test_max_micro_batch_and_seq_len_are_the_edge_of_fitting():
    mem = _mem(recompute="selective", sequence_parallel=True)
    assert mem.max_micro_batch >= 1
    edge = _mem(recompute="selective", sequence_parallel=True, seq_len=mem.max_seq_len)
    assert edge.fits
    over = _mem(recompute="selective", sequence_parallel=True, seq_len=mem.max_seq_len + 64)
    assert not over.fits


def test_pipeline_first_stage_holds_pp_microbatches():
    """Korthikanti eq. 5: the first stage stores L layers' worth, whatever pp is."""
    one = _mem(pp=1, tp=8, recompute="selective", sequence_parallel=True, global_batch=8)
    four = train(
        "gpt-3-175b",
        "a100-80gb-sxm",
        32,
        tp=8,
        pp=4,
        global_batch=8,
        recompute="selective",
        sequence_parallel=True,
        attention="naive",
    ).memory
    # pp=1 keeps 1 micro-batch x 96 layers; pp=4 keeps 4 micro-batches x 24 layers (+ extras)
    assert four.activations_bytes == pytest.approx(one.activations_bytes, rel=0.05)
