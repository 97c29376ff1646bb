"""Context parallelism in training: each GPU holds seq_len / cp tokens of every sequence, the
attention core is 1/cp of the whole sequence's, the K/V ring is priced and overlapped, and
ZeRO shards over dp x cp. Hand values from Llama-3.1-8B's config (32 layers, 8 KV heads of
128, bf16)."""

from __future__ import annotations

import pytest

from hwsim.errors import InfeasibleError
from hwsim.model.load import load_model
from hwsim.profiles.loader import load_hardware
from hwsim.training import train
from hwsim.training.spec import TrainingSpec
from hwsim.training.step import forward_profile, ring_kv_bytes, step_forward_profile

FLASH = dict(attention="flash", dropout=False, micro_batch=1)


def test_cp_holds_one_cp_th_of_each_sequence():
    """Activations are linear in the tokens a GPU holds (flash attention stores no scores):
    cp = 4 at 32k equals cp = 1 at 8k, same layout otherwise."""
    a = train("llama-3.1-8b", "h100-sxm", 8, tp=2, cp=4, seq_len=32768, global_batch=1, **FLASH)
    b = train("llama-3.1-8b", "h100-sxm", 2, tp=2, seq_len=8192, global_batch=1, **FLASH)
    assert a.memory.activations_bytes == pytest.approx(b.memory.activations_bytes, rel=1e-12)


def test_zero_shards_over_data_and_context_parallel_ranks():
    a = train("llama-3.1-8b", "h100-sxm", 16, tp=2, cp=2, zero=1, seq_len=8192,
              global_batch=4, **FLASH)  # fmt: skip
    b = train("llama-3.1-8b", "h100-sxm", 16, tp=2, zero=1, seq_len=8192, global_batch=8, **FLASH)
    assert a.layout["dp"] == 4 and b.layout["dp"] == 8
    assert a.memory.optimizer_bytes == pytest.approx(b.memory.optimizer_bytes, rel=1e-12)
    assert a.memory.params_bytes == pytest.approx(b.memory.params_bytes, rel=1e-12)


def test_the_attention_core_is_a_cp_th_of_the_whole_sequences():
    m, hw = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    spec = TrainingSpec.from_settings(None, tp=1, cp=4, seq_len=16384, **FLASH)
    with_cp = step_forward_profile(m, hw, spec, 1)
    whole = forward_profile(m, hw, spec, 1, 16384)
    local = forward_profile(m, hw, spec, 1, 4096)
    assert with_cp.attention_core_s == pytest.approx(whole.attention_core_s / 4, rel=1e-12)
    # causal attention is quadratic: a quarter of the sequence alone has 1/16 of the pairs,
    # a CP rank's share of the whole sequence 1/4: the CP core is longer than the local one
    assert with_cp.attention_core_s > 2 * local.attention_core_s
    rest = local.layers_s - local.attention_core_s
    assert with_cp.layers_s == pytest.approx(rest + whole.attention_core_s / 4, rel=1e-12)


def test_ring_step_bytes_by_hand():
    """One ring step sends K and V of seq_len / cp tokens: 2 x 16,384 x 8 x 128 x 2 bytes
    = 67,108,864 for 131,072 tokens over cp = 8 (tp 1); tp 2 halves the KV heads."""
    m = load_model("llama-3.1-8b")
    spec = TrainingSpec.from_settings(None, cp=8, seq_len=131072, **FLASH)
    assert ring_kv_bytes(m, spec, 1) == 67_108_864
    assert ring_kv_bytes(m, spec.replace(tp=2), 1) == 33_554_432


def test_the_ring_hides_under_attention_until_the_blocks_are_short():
    """At 128k tokens the attention of a block takes far longer than sending it (exposed 0);
    with short blocks over the network (cp 16 across nodes at 4k tokens) it shows."""
    long = train("llama-3.1-8b", "h100-sxm", 8, cp=8, seq_len=131072, global_batch=1, **FLASH)
    assert long.step.cp_comm_s == 0.0
    short = train("llama-3.1-8b", "h100-sxm", 16, cp=16, seq_len=4096, global_batch=1, **FLASH)
    assert short.step.cp_comm_s > 0.0
    assert short.step.communication_s >= short.step.cp_comm_s * short.step.micro_batches


def test_cp_makes_a_long_sequence_fit():
    """Llama-3.1-70B at 128k tokens, tp 8 with sequence parallelism, ZeRO-3: 510 GB per GPU
    without CP, 64 GB with cp = 8 (activations 369 GB -> 46 GB, an eighth)."""
    kw = dict(tp=8, seq_len=131072, global_batch=1, zero=3, sequence_parallel=True, **FLASH)
    alone = train("llama-3.1-70b", "h100-sxm", 8, **kw).memory
    split = train("llama-3.1-70b", "h100-sxm", 64, cp=8, **kw).memory
    assert not alone.fits and split.fits
    assert split.activations_bytes == pytest.approx(alone.activations_bytes / 8, rel=1e-9)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(cp=2, attention="naive", seq_len=4096), "needs attention 'flash'"),
        (dict(cp=3, attention="flash", seq_len=4096), "2 x cp = 6 equal chunks"),
        (dict(cp=2, attention="flash", seq_len=4096, dp=3), "tp x cp x pp x dp"),
    ],
)
def test_impossible_cp_layouts_are_clear_errors(settings, message):
    with pytest.raises(InfeasibleError, match=message.replace("(", r"\(")):
        train("llama-3.1-8b", "h100-sxm", 8, **settings)
