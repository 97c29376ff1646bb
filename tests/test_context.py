"""``hwsim.context_sweep`` and ``hwsim context``: published numbers, scaling laws of each
attention design, monotonicity over context, flags, and the CLI views (table, JSON, plot)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from hwsim import estimate
from hwsim.cli.main import app
from hwsim.errors import HwsimError, InfeasibleError, ProfileError
from hwsim.inference.context import ROW_FIELDS, WORDS_PER_TOKEN, context_sweep
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import prefill_cost
from hwsim.model.load import load_model
from hwsim.profiles.loader import shipped_ids
from hwsim.profiles.model import ModelProfile

HW = "h100-sxm"
runner = CliRunner()


def _rows(model, lengths, **kw):
    sweep = context_sweep(model, HW, lengths, **kw)
    return sweep.select(sweep.variants[0])


def _loadable(ids):
    out = []
    for ref in ids:
        try:
            out.append(load_model(ref))
        except HwsimError:  # a profile another change is still editing
            continue
    return out


def _shipped(*ids):
    """The ids among ``ids`` that ship and load (variant profiles land independently)."""
    present = set(shipped_ids("model"))
    return [m.id for m in _loadable(i for i in ids if i in present)]


# -- published numbers -------------------------------------------------------------------------


def test_gpt3_score_matrix_at_4000_tokens():
    """Issue 3: 16,000,000 scores per head per layer; 1,536,000,000 for one head over 96
    layers; 147,456,000,000 over all heads and layers."""
    r = _rows("gpt-3-175b", [4000], tp=8)
    assert r["score_matrix_elements_per_head_per_layer"][0] == 16_000_000
    assert r["score_matrix_elements_per_head_per_layer"][0] * 96 == 1_536_000_000
    assert r["score_matrix_elements_total"][0] == 147_456_000_000
    assert r["pairs_per_head_per_layer"][0] == 4000 * 4001 / 2  # causal: the lower triangle
    # ~4.7 MB of KV per token: 2 x 96 layers x 12288 x 2 bytes
    assert r["kv_state_bytes_per_sequence"][0] == 4000 * 2 * 96 * 12288 * 2


# -- scaling of each design --------------------------------------------------------------------


def test_full_attention_pairs_grow_4x_when_length_doubles():
    r = _rows("llama-3.1-8b", [2**16, 2**17])
    ratio = r["pairs_per_head_per_layer"][1] / r["pairs_per_head_per_layer"][0]
    assert ratio == pytest.approx(4.0, rel=1e-4)
    flops = r["attention_flops"][1] / r["attention_flops"][0]
    assert flops == pytest.approx(4.0, rel=1e-4)


def test_sliding_window_pairs_grow_2x_beyond_the_window():
    r = _rows("mistral-7b", [2**20, 2**21])
    ratio = r["pairs_per_head_per_layer"][1] / r["pairs_per_head_per_layer"][0]
    assert ratio == pytest.approx(2.0, rel=5e-3)


def test_sliding_window_kv_is_capped_at_the_window():
    r = _rows("mistral-7b", [4096, 32768])
    assert r["kv_state_bytes_per_sequence"][1] == r["kv_state_bytes_per_sequence"][0]
    assert r["kv_state_bytes_per_sequence"][0] == 4096 * 2 * 32 * 8 * 128 * 2


def test_window_override_of_llama_matches_mistral_counting():
    sweep = context_sweep(
        "llama-3.1-8b", HW, [1000, 32768], variants=["sliding_window:window=4096", "mistral-7b"]
    )
    label = "llama-3.1-8b[sliding_window:window=4096]"
    assert sweep.variants == ["llama-3.1-8b", label, "mistral-7b"]
    over, mistral = sweep.select(label), sweep.select("mistral-7b")
    for key in ("pairs_per_head_per_layer", "kv_state_bytes_per_sequence"):
        np.testing.assert_array_equal(over[key], mistral[key])
    assert (
        over["kv_state_bytes_per_sequence"][1]
        < sweep.select("llama-3.1-8b")["kv_state_bytes_per_sequence"][1]
    )


def test_tiled_attention_moves_fewer_bytes_with_equal_flops():
    n = np.array([32768.0])
    flash = make_deployment("llama-3.1-8b", HW, attention_impl="flash")
    naive = make_deployment("llama-3.1-8b", HW, attention_impl="naive")

    def core(dep):
        (op,) = [t.op for t in prefill_cost(dep, 1.0, n).op_times if t.op.op_class == "attention"]
        return op

    assert np.asarray(core(flash).flops) == pytest.approx(np.asarray(core(naive).flops))
    assert np.all(core(flash).hbm_bytes < core(naive).hbm_bytes)
    # the sweep reports the same two numbers side by side, and TTFT follows the bytes
    r_flash = _rows("llama-3.1-8b", n, attention_impl="flash")
    r_naive = _rows("llama-3.1-8b", n, attention_impl="naive")
    assert (
        r_flash["attention_hbm_bytes_per_layer_tiled"][0]
        < r_flash["attention_hbm_bytes_per_layer_naive"][0]
    )
    assert r_flash["attention_hbm_bytes_per_layer_tiled"][0] == pytest.approx(
        np.asarray(core(flash).hbm_bytes)[0]
    )
    assert r_flash["attention_flops"][0] == r_naive["attention_flops"][0]
    assert r_flash["prefill_flops"][0] == r_naive["prefill_flops"][0]
    assert r_flash["ttft_s"][0] < r_naive["ttft_s"][0]
    # a naive kernel's traffic includes the materialised score matrix (4 passes over it)
    assert (
        r_flash["attention_hbm_bytes_per_layer_naive"][0]
        > r_flash["score_matrix_bytes_per_layer"][0]
    )


LENGTHS = [1_000, 4_000, 16_000, 64_000, 256_000, 1_000_000]


@pytest.mark.parametrize("model", [m.id for m in _loadable(shipped_ids("model"))])
def test_more_context_never_costs_less(model):
    m = load_model(model)
    r = _rows(m, LENGTHS, tp=8 if m.n_heads % 8 == 0 else 1)
    assert np.all(np.diff(r["prefill_flops"]) >= 0)
    runs = r["position_status"] != "cannot_run"  # past a learned table: unpriced (NaN)
    assert np.all(np.isnan(r["ttft_s"][~runs]))
    r = {key: value[runs] for key, value in r.items()}
    assert np.all(np.diff(r["ttft_s"]) >= 0)
    if m.architecture == "encoder":
        for key in ("tpot_s", "users_per_gpu", "kv_state_bytes_per_sequence"):
            assert np.all(np.isnan(r[key]))
        return
    assert np.all(np.diff(r["kv_state_bytes_per_sequence"]) >= 0)
    if _resets_each_segment(m):  # the cache holds the current segment: TPOT cycles, bounded
        assert np.ptp(r["tpot_s"]) <= 0.01 * np.min(r["tpot_s"])
    else:
        assert np.all(np.diff(r["tpot_s"]) >= -1e-15)
    assert np.all(np.diff(r["users_per_gpu"]) <= 0)


def _resets_each_segment(m) -> bool:
    """Segment-recurrent memories (Infini-attention, RMT memory tokens): a decode step reads
    the keys of the current segment, which restart at every segment boundary."""
    from hwsim.model.layers import model_layers

    return any(x.kind in ("infini", "memory_tokens") for x in model_layers(m).pattern)


def test_vectorised_sweep_equals_one_length_at_a_time():
    lengths = [1000, 8192, 50000]
    whole = _rows("mistral-7b", lengths)
    for i, n in enumerate(lengths):
        one = _rows("mistral-7b", [n])
        for key in ROW_FIELDS:
            if whole[key].dtype.kind == "f":
                np.testing.assert_allclose(whole[key][i], one[key][0], rtol=1e-12, err_msg=key)
            else:
                assert whole[key][i] == one[key][0], key


def test_sweep_agrees_with_estimate():
    """TTFT, TPOT (gen_len 1), users per GPU and pair counts are the numbers `plan` reports."""
    r = _rows("llama-3.1-8b", [1000, 8000], tpot_slo_s=0.05)
    est = estimate(
        "llama-3.1-8b", HW, prompt_len=np.array([1000, 8000]), gen_len=1, tpot_slo_s=0.05
    )
    np.testing.assert_allclose(r["ttft_s"], est.latency.ttft_s, rtol=1e-12)
    np.testing.assert_allclose(r["tpot_s"], est.latency.tpot_s, rtol=1e-12)
    np.testing.assert_allclose(r["users_per_gpu"], est.capacity.users_per_gpu, rtol=1e-12)
    np.testing.assert_allclose(
        r["pairs_per_head_per_layer"], est.attention.pairs_per_head_per_layer, rtol=1e-12
    )
    np.testing.assert_array_equal(r["words_equivalent"], np.array([1000, 8000]) * WORDS_PER_TOKEN)


# -- context flags ------------------------------------------------------------------------------


def test_extrapolation_flag_llama2():
    r = _rows("llama-2-7b", [4096, 8192])
    assert r["extrapolation"].tolist() == [False, True]
    assert r["rope_factor_needed"].tolist() == [1.0, 2.0]
    assert r["max_supported_tokens"][0] == 4096


def test_llama31_supports_128k_with_factor_8():
    r = _rows("llama-3.1-8b", [131072, 131073])
    assert r["max_supported_tokens"][0] == 131072
    assert r["max_trained_tokens"][0] == 8192
    assert r["rope_scaling_factor"][0] == 8
    assert r["extrapolation"].tolist() == [False, True]
    assert np.isfinite(r["ttft_s"]).all()  # flagged lengths are still priced


def test_past_a_learned_table_cannot_run_and_is_not_priced():
    """GPT-3 has 2,048 learned positions: 2,048 runs, 2,049 has no position row (issue 17)."""
    r = _rows("gpt-3-175b", [2048, 2049], tp=8)
    assert r["position_status"].tolist() == ["within", "cannot_run"]
    assert not r["extrapolation"].any()  # not extrapolation: there is nothing to extrapolate
    assert np.isnan(r["rope_factor_needed"]).all()
    assert np.isfinite(r["ttft_s"][0]) and np.isnan(r["ttft_s"][1])
    assert np.isnan(r["cost_per_million_output_tokens_usd"][1]) and not r["fits"][1]
    # the model's arithmetic stays as a what-if: 2,049 x 2 x 96 x 12288 x 2 bytes of KV
    assert r["kv_state_bytes_per_sequence"][1] == 2049 * 2 * 96 * 12288 * 2


# -- designs whose profiles land with other changes ----------------------------------------------


@pytest.mark.parametrize("model", _shipped("mamba-2.8b", "mamba2-2.7b", "rwkv-6", "rwkv-7"))
def test_recurrent_state_is_flat_in_context(model):
    r = _rows(model, [1000, 1_000_000])
    assert r["kv_state_bytes_per_sequence"][0] == r["kv_state_bytes_per_sequence"][1] > 0
    assert np.all(r["pairs_per_head_per_layer"] == 0)
    assert r["tpot_s"][0] == pytest.approx(r["tpot_s"][1], rel=1e-9)


def _bigbird_like() -> ModelProfile:
    """A BigBird-RoBERTa-large-shaped encoder, so the encoder path is tested whether or not
    the shipped profile has landed yet."""
    return ModelProfile.model_validate(
        {
            "id": "test-bigbird-encoder",
            "name": "test",
            "family": "bigbird",
            "source": "test fixture shaped like google/bigbird-roberta-large config.json",
            "architecture": "encoder",
            "n_layers": 24,
            "d_model": 1024,
            "n_heads": 16,
            "vocab_size": 50358,
            "max_position_embeddings": 4096,
            "position_embedding": "learned",
            "norm": "layernorm",
            "linear_bias": True,
            "ffn": {"type": "plain", "intermediate_size": 4096},
            "mixer": {
                "kind": "bigbird",
                "block_size": 64,
                "window_blocks": 3,
                "random_blocks": 3,
                "global_blocks": 2,
            },
        }
    )


@pytest.mark.parametrize(
    "model",
    [_bigbird_like(), *_shipped("bigbird-roberta-large", "longformer-large")],
    ids=lambda m: getattr(m, "id", m),
)
def test_encoders_price_the_forward_only(model):
    r = _rows(model, [2048, 4096, 16384])
    assert r["position_status"].tolist() == ["within", "within", "cannot_run"]  # 4,096 learned
    assert np.isnan(r["ttft_s"][2])
    r = {key: value[:2] for key, value in r.items()}
    assert np.isfinite(r["ttft_s"]).all()
    assert np.isnan(r["tpot_s"]).all() and np.isnan(r["users_per_gpu"]).all()
    ratio = r["pairs_per_head_per_layer"][1] / r["pairs_per_head_per_layer"][0]
    assert ratio == pytest.approx(2.0, rel=0.05)  # banded + global: linear in N


# -- input errors -------------------------------------------------------------------------------


def test_bad_variant_overrides_are_clean_errors():
    with pytest.raises(ProfileError, match="window"):
        context_sweep("llama-3.1-8b", HW, [1000], variants=["sliding_window:window=-1"])
    with pytest.raises(ProfileError, match="unknown mixer kind 'slidingwindow'"):
        context_sweep("llama-3.1-8b", HW, [1000], variants=["slidingwindow:window=4"])
    with pytest.raises(ProfileError, match="param=value"):
        context_sweep("llama-3.1-8b", HW, [1000], variants=["sliding_window:4096"])
    with pytest.raises(InfeasibleError, match="more than once"):
        context_sweep("llama-3.1-8b", HW, [1000], variants=["llama-3.1-8b"])
    with pytest.raises(InfeasibleError, match="positive integers"):
        context_sweep("llama-3.1-8b", HW, [0, 10])


# -- CLI ----------------------------------------------------------------------------------------


def _cli(*args):
    result = runner.invoke(app, ["context", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def test_cli_prints_a_table_per_model():
    result = _cli(
        "--model",
        "llama-3.1-8b",
        "--hardware",
        HW,
        "--lengths",
        "1k,4k,1M",
        "--compare-model",
        "mistral-7b",
    )
    assert result.exit_code == 0, result.output
    out = result.output
    for text in (
        "llama-3.1-8b on h100-sxm",
        "mistral-7b on h100-sxm",
        "TTFT",
        "TPOT",
        "1,000,000",
        "750,000",
        "0.75",
        "extrapolation",
        "131.07 MB",
    ):
        assert text in out, text
    assert "Traceback" not in out


def test_cli_json_has_a_list_per_key():
    result = _cli("--model", "mistral-7b", "--hardware", HW, "--lengths", "1k,32k", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ROW_FIELDS:
        assert len(data[key]) == 2, key
    assert data["length_tokens"] == [1000, 32000]
    assert data["words_per_token"] == WORDS_PER_TOKEN
    assert data["hardware"] == HW and data["assumptions"]


def test_cli_plot_writes_a_png_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "context.png"
    args = [
        "--model",
        "llama-3.1-8b",
        "--hardware",
        HW,
        "--lengths",
        "1k,32k,128k",
        "--variant",
        "sliding_window:window=4096",
        "--plot",
        str(path),
    ]
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    size = path.stat().st_size
    again = _cli(*args)
    assert again.exit_code == 2
    assert "exists" in again.output and "--force" in again.output
    assert path.stat().st_size == size
    assert _cli(*args, "--force").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "llama-3.1-8b", "--lengths", "1k,12x"], "cannot read '12x'"),
        (["--model", "llama-9-7b"], "unknown model profile 'llama-9-7b'"),
        (["--model", "llama-3.1-8b", "--compare-model", "nope-7b"], "unknown model profile"),
        (["--model", "llama-3.1-8b", "--variant", "sliding_window:window=0"], "window"),
        (["--model", "llama-3.1-8b", "--plot", "out.txt"], "unknown image type"),
        (["--model", "llama-3.1-8b", "--tp", "3"], "tp=3"),
    ],
)
def test_cli_errors_exit_2_without_traceback(args, message):
    result = _cli("--hardware", HW, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
