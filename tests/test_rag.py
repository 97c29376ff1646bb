"""Retrieval vs long context: search cost formulas by hand, pipeline invariants, limits, CLI."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

import hwsim
from hwsim.cli.main import app
from hwsim.errors import ProfileError
from hwsim.profiles.loader import load_hardware
from hwsim.rag import compare_rag, evaluate, make_setup
from hwsim.rag.embedding import embedding_cost, encoder_flops
from hwsim.rag.limits import long_context_max_corpus_memory, rag_max_chunks
from hwsim.rag.search_cost import flat_cost, hnsw_cost, hnsw_levels, ivf_cost, time_search
from hwsim.rag.spec import RagSpec, parse_rag_section

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "rag-vs-long-context.yaml"
runner = CliRunner()


# -- search cost formulas -------------------------------------------------------------------
def test_flat_by_hand():
    c = flat_cost(1000, dim=4, bytes_per_element=4.0)
    assert c.distance_evaluations == 1000
    assert c.flops == 2 * 1000 * 4 == 8000
    assert c.bytes_scanned == 1000 * 4 * 4 == 16000
    assert c.index_bytes == 16000


def test_ivf_by_hand_and_against_flat():
    d, e, b, nlist = 1_000_000, 768, 4.0, 1000
    ivf = ivf_cost(d, e, b, nlist=nlist, nprobe=10)
    flat = flat_cost(d, e, b)
    # 1000 centroids + 10 lists of 1000 vectors
    assert ivf.distance_evaluations == 1000 + 10_000
    assert ivf.flops == 2 * e * 11_000
    assert ivf.bytes_scanned == 1000 * e * 4 + 10_000 * e * b
    assert ivf.index_bytes == d * e * b + 1000 * e * 4 + d * 8
    assert ivf.bytes_scanned < flat.bytes_scanned
    assert ivf.flops < flat.flops

    full = ivf_cost(d, e, b, nlist=nlist, nprobe=nlist)  # every list probed
    quantiser_bytes, quantiser_flops = nlist * e * 4, 2 * nlist * e
    assert full.bytes_scanned - quantiser_bytes == pytest.approx(flat.bytes_scanned, rel=1e-12)
    assert full.flops - quantiser_flops == pytest.approx(flat.flops, rel=1e-12)


@given(nprobe=st.integers(1, 255), d=st.floats(1e3, 1e9))
def test_ivf_scans_fewer_bytes_than_flat_below_nlist(nprobe, d):
    ivf = ivf_cost(d, 384, 2.0, nlist=256, nprobe=nprobe)
    more = ivf_cost(d, 384, 2.0, nlist=256, nprobe=nprobe + 1)
    assert more.bytes_scanned > ivf.bytes_scanned
    flat = flat_cost(d, 384, 2.0)
    assert ivf.bytes_scanned - 256 * 384 * 4 < flat.bytes_scanned


def test_hnsw_memory_and_evaluations_by_hand():
    d, e, m, ef = 1_000_000, 768, 16, 64
    c = hnsw_cost(d, e, 4.0, m=m, ef_search=ef)
    assert c.index_bytes == d * (e * 4 + 2 * m * 4) == 3_200_000_000
    levels = math.log(d) / math.log(m)
    assert hnsw_levels(d, m) == pytest.approx(levels)
    evaluations = 2 * m * ef + m * levels
    assert c.distance_evaluations == pytest.approx(evaluations)
    assert c.flops == pytest.approx(2 * e * evaluations)
    links = (ef * 2 * m + levels * m) * 4
    assert c.bytes_scanned == pytest.approx(evaluations * e * 4 + links)
    # a small graph cannot evaluate more vectors than it holds
    assert hnsw_cost(100, e, 4.0, m=m, ef_search=ef).distance_evaluations == 100


def test_search_vectorised_over_chunks():
    d = np.array([1e3, 1e5, 1e7])
    for cost in (
        flat_cost(d, 768, 4.0),
        ivf_cost(d, 768, 4.0, 1024, 16),
        hnsw_cost(d, 768, 4.0, 32, 64),
    ):
        assert np.shape(cost.index_bytes) == (3,)
    t = time_search(load_hardware("cpu"), flat_cost(d, 768, 4.0))
    assert t.time_s.shape == (3,) and np.all(np.diff(t.time_s) > 0)
    for i, di in enumerate(d):
        assert time_search(load_hardware("cpu"), flat_cost(di, 768, 4.0)).time_s == pytest.approx(
            t.time_s[i]
        )


def test_flat_search_is_bandwidth_bound_on_cpu_and_gpu():
    cost = flat_cost(1e6, 768, 4.0)
    for hw_id in ("cpu", "h100-sxm"):
        hw = load_hardware(hw_id)
        t = time_search(hw, cost)
        assert t.bound == "memory"
        floor = cost.bytes_scanned / hw.bandwidth_bytes_per_s
        assert t.time_s >= floor
    assert (
        time_search(load_hardware("h100-sxm"), cost).time_s
        < time_search(load_hardware("cpu"), cost).time_s
    )


def test_query_embedding_flops():
    assert encoder_flops(110e6, 64) == 2 * 110e6 * 64
    cpu = embedding_cost(load_hardware("cpu"), 110e6, 64, "fp32", 12)
    gpu = embedding_cost(load_hardware("h100-sxm"), 110e6, 64, "fp32", 12)
    assert cpu.flops == gpu.flops == 2 * 110e6 * 64
    assert cpu.weight_bytes == 440e6
    assert gpu.time_s < cpu.time_s


# -- spec -----------------------------------------------------------------------------------
def test_spec_counts_and_defaults():
    spec = parse_rag_section({"corpus_tokens": "2M", "embedding": {"params": "110M"}}, "x.yaml")
    assert spec.corpus_tokens == 2_000_000 and spec.embedding.params == 110_000_000
    assert spec.index.kind == "flat" and spec.search_hardware == "cpu"
    assert (
        parse_rag_section({"n_chunks": "64Ki", "chunk_tokens": 256}, "x").total_corpus_tokens
        == 65536 * 256
    )
    with pytest.raises(ValidationError):
        spec.top_k = 3  # frozen


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"corpus_tokens": 1000, "n_chunks": 4}, "exactly one of corpus_tokens or n_chunks"),
        ({}, "exactly one"),
        ({"corpus_tokens": "2.5 bananas"}, "rag.corpus_tokens"),
        ({"corpus_tokens": 1000, "topk": 4}, "rag.topk"),
        ({"corpus_tokens": 1000, "top_k": 0}, "rag.top_k"),
        ({"corpus_tokens": 1000, "index": {"kind": "ivf", "nlist": 8, "nprobe": 9}}, "nprobe"),
        ({"corpus_tokens": 1000, "index": {"kind": "lsh"}}, "rag.index"),
        ({"corpus_tokens": 1000, "index": {"kind": "hnsw", "M": 8}}, "rag.index.hnsw.M"),
        ({"corpus_tokens": 1000, "embedding": {"dtype": "int3"}}, "rag.embedding.dtype"),
    ],
)
def test_spec_errors_name_the_field(data, needle):
    with pytest.raises(ProfileError) as err:
        parse_rag_section(data, "scenario.yaml")
    assert "scenario.yaml" in str(err.value) and needle in str(err.value)


# -- pipeline -------------------------------------------------------------------------------
SPEC = {"corpus_tokens": 100_000, "chunk_tokens": 512, "top_k": 8, "question_tokens": 64}


@pytest.fixture(scope="module")
def setup():
    return make_setup("llama-3.1-8b", "h100-sxm", SPEC, gen_len=256)


def test_rag_prompt_is_k_chunks_plus_question(setup):
    ev = evaluate(setup, 100_000)
    assert ev.rag.prompt_tokens == 8 * 512 + 64
    assert ev.long_context.prompt_tokens == 100_000 + 64
    assert ev.rag_estimate.config.prompt_len == 8 * 512 + 64
    # a corpus smaller than k chunks: every chunk is retrieved
    assert evaluate(setup, 1000).rag.prompt_tokens == 2 * 512 + 64


def test_ttft_long_grows_rag_llm_part_flat(setup):
    corpus = np.array([20_000, 50_000, 100_000, 120_000])
    ev = evaluate(setup, corpus)
    assert np.all(np.diff(ev.long_context.ttft_s) > 0)
    assert np.all(np.diff(ev.long_context.kv_cache_bytes) > 0)
    assert np.ptp(ev.rag.prefill_s) == 0 and np.ptp(ev.rag.tpot_s) == 0
    assert np.ptp(ev.rag.kv_cache_bytes) == 0
    assert np.all(np.diff(ev.rag.search_s) >= 0)  # flat search grows with D
    rag_ttft = ev.rag.embedding_s + ev.rag.search_s + ev.rag.prefill_s
    np.testing.assert_allclose(ev.rag.ttft_s, rag_ttft)
    np.testing.assert_allclose(ev.long_context.prefill_s, ev.long_estimate.latency.ttft_s)


def test_array_matches_scalar(setup):
    corpus = np.array([3_000, 40_000, 500_000])
    ev = evaluate(setup, corpus)
    for i, c in enumerate(corpus):
        one = evaluate(setup, int(c))
        for field in ("ttft_s", "tpot_s", "cost_per_query_usd", "users_per_gpu", "kv_cache_bytes"):
            for name in ("long_context", "rag"):
                got = getattr(getattr(ev, name), field)[i]
                assert got == pytest.approx(getattr(getattr(one, name), field)), (name, field)
        assert bool(ev.long_context.fits[i]) == one.long_context.fits


def test_cost_per_query_by_hand(setup):
    ev = evaluate(setup, 100_000)
    gpu_price, cpu_price = 2.5, 0.12  # h100-sxm and cpu profiles
    lc = ev.long_context
    assert lc.llm_gpu_s_per_query == pytest.approx(ev.long_estimate.latency.e2e_s)
    assert lc.cost_per_query_usd == pytest.approx(lc.llm_gpu_s_per_query * gpu_price / 3600)
    rag = ev.rag
    expected = (
        rag.llm_gpu_s_per_query * gpu_price + (rag.search_s + rag.embedding_s) * cpu_price
    ) / 3600
    assert rag.cost_per_query_usd == pytest.approx(expected)
    assert rag.cost_per_query_usd < lc.cost_per_query_usd
    assert rag.users_per_gpu > lc.users_per_gpu >= 1


def test_long_context_stops_fitting_where_weights_plus_kv_exceed_memory():
    # batch 4 makes memory, not the 128k context, the binding limit on one H100
    s = make_setup("llama-3.1-8b", "h100-sxm", SPEC, gen_len=256, batch=4)
    limit = long_context_max_corpus_memory(s)
    assert 0 < limit < s.dep.model.max_context_tokens
    for corpus, fits in ((limit, True), (limit + 1, False)):
        est = hwsim.estimate(
            "llama-3.1-8b", "h100-sxm", batch=4, prompt_len=corpus + 64, gen_len=256
        )
        need = est.memory.weights_bytes + est.memory.kv_cache_bytes
        assert (need <= est.memory.usable_bytes) is fits
        assert evaluate(s, corpus).long_context.fits_memory is fits
    cmp = compare_rag("llama-3.1-8b", "h100-sxm", SPEC, gen_len=256, batch=4)
    assert cmp.limits.long_context_max_corpus_tokens == limit
    assert cmp.limits.long_context_binding.startswith("memory")


def test_long_context_beyond_model_context(setup):
    cmp = compare_rag("llama-3.1-8b", "h100-sxm", {**SPEC, "corpus_tokens": 200_000}, gen_len=256)
    assert cmp.limits.long_context_max_corpus_tokens_context == 131_072 - 64 - 256
    assert cmp.limits.long_context_binding == "model context length"
    assert not cmp.long_context.within_context and not cmp.long_context.fits
    assert cmp.rag.fits


def test_rag_stops_fitting_when_index_exceeds_search_memory(setup):
    chunks = rag_max_chunks(setup)
    spec = setup.spec
    usable = load_hardware("cpu").capacity_bytes * 0.9
    embedder = spec.embedding.params * 4
    assert flat_cost(chunks, 768, 4.0).index_bytes + embedder <= usable
    assert flat_cost(chunks + 1, 768, 4.0).index_bytes + embedder > usable
    at = evaluate(setup, chunks * 512)
    beyond = evaluate(setup, (chunks + 1) * 512)
    assert at.rag.index_fits and not beyond.rag.index_fits and not beyond.rag.fits


def test_break_even_is_the_first_corpus_where_rag_wins():
    cmp = compare_rag("llama-3.1-8b", "h100-sxm", SPEC, gen_len=256)
    s = make_setup("llama-3.1-8b", "h100-sxm", SPEC, gen_len=256)
    for field, n in (
        ("ttft_s", cmp.limits.break_even_ttft_corpus_tokens),
        ("cost_per_query_usd", cmp.limits.break_even_cost_corpus_tokens),
    ):
        assert n is not None and n > 8 * 512  # below k chunks RAG's prompt is no shorter
        at, before = evaluate(s, n), evaluate(s, n - 1)
        assert getattr(at.rag, field) <= getattr(at.long_context, field)
        assert getattr(before.rag, field) > getattr(before.long_context, field)


def test_gpu_search_device_and_index_kinds():
    base = {**SPEC, "corpus_tokens": 10_000_000}
    flat = compare_rag("llama-3.1-8b", "h100-sxm", {**base, "search_hardware": "h100-sxm"})
    ivf = compare_rag(
        "llama-3.1-8b",
        "h100-sxm",
        {**base, "search_hardware": "h100-sxm", "index": {"kind": "ivf"}},
    )
    assert flat.search.device == "h100-sxm" and flat.embedding.device == "h100-sxm"
    assert ivf.search.bytes_scanned < flat.search.bytes_scanned
    assert ivf.search.index_bytes > flat.search.index_bytes  # ids + centroids
    assert flat.rag.prefill_s == ivf.rag.prefill_s


def test_spec_object_and_dict_agree():
    a = compare_rag("llama-3.1-8b", "h100-sxm", SPEC)
    b = compare_rag("llama-3.1-8b", "h100-sxm", RagSpec(**SPEC))
    assert a.rag.ttft_s == b.rag.ttft_s and a.limits == b.limits


# -- CLI ------------------------------------------------------------------------------------
def test_cli_example_table():
    result = runner.invoke(app, ["rag", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    for text in (
        "long context",
        "RAG (top 8 x 512)",
        "TTFT",
        "cost per query",
        "users per GPU",
        "stops fitting above",
    ):
        assert text in result.output


def test_cli_json_and_flags_over_file():
    result = runner.invoke(
        app,
        [
            "rag",
            str(EXAMPLE),
            "--json",
            "--corpus-tokens",
            "1M",
            "--top-k",
            "4",
            "--chunk-tokens",
            "256",
            "--index",
            "ivf",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["corpus_tokens"] == 1_000_000 and data["search"]["index"] == "ivf"
    assert data["rag"]["prompt_tokens"] == 4 * 256 + 64
    assert data["long_context"]["within_context"] is False
    assert data["limits"]["long_context_max_corpus_tokens_context"] == 131_072 - 64 - 256
    assert "latency" in data["rag_estimate"]


def test_cli_flags_only():
    result = runner.invoke(
        app,
        [
            "rag",
            "--model",
            "llama-3.1-8b",
            "--hardware",
            "h100-sxm",
            "--corpus-tokens",
            "50k",
            "--index",
            "hnsw",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["n_chunks"] == math.ceil(50_000 / 512)


@pytest.mark.parametrize(
    ("rag_yaml", "needle"),
    [
        ("rag:\n  corpus_tokens: 100k\n  top_kk: 4\n", "rag.top_kk"),
        ("rag:\n  corpus_tokens: 100k\n  index: {kind: hnsw, m: many}\n", "rag.index.hnsw.m"),
        ("rag:\n  corpus_tokens: lots\n", "rag.corpus_tokens"),
        ("workload: {gen_len: 64}\n", "no 'rag:' section"),
    ],
)
def test_cli_bad_yaml_exits_2_naming_the_field(tmp_path, rag_yaml, needle):
    path = tmp_path / "bad.yaml"
    path.write_text("model: llama-3.1-8b\nhardware: h100-sxm\n" + rag_yaml)
    result = runner.invoke(app, ["rag", str(path)])
    assert result.exit_code == 2
    assert needle in result.output and "bad.yaml" in result.output
    assert "Traceback" not in result.output


def test_cli_bad_flags_exit_2(tmp_path):
    assert runner.invoke(app, ["rag", str(EXAMPLE), "--index", "lsh"]).exit_code == 2
    assert runner.invoke(app, ["rag", str(tmp_path / "missing.yaml")]).exit_code == 2
    result = runner.invoke(app, ["rag", "--model", "llama-3.1-8b", "--hardware", "h100-sxm"])
    assert result.exit_code == 2 and "--corpus-tokens" in result.output
