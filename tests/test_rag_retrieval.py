"""Retrieval as it is built: a latency model per index kind (flat / IVF / HNSW), cross-encoder
re-ranking, iterative rounds; golden values derived by hand from the formulas and the profiles.

Profile numbers used below (hardware_profiles/*.yaml):
  h100-sxm: bandwidth 3.35e12 B/s, fp32 vector peak 66.9e12 FLOP/s, elementwise curve
            memory_fraction 0.8, compute_fraction 0.5, launch 4 us; random access 500 ns;
            matmul compute_fraction 0.7
  cpu:      bandwidth 20e9 B/s, fp32 vector peak 0.384e12 FLOP/s, 2 cores, elementwise curve
            memory_fraction 0.7, compute_fraction 0.3, launch 10 us; random access 100 ns
Corpus: D = 1,000,000 vectors of e = 768 fp32 (b = 4) elements.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hwsim.cli.main import app
from hwsim.errors import ProfileError
from hwsim.inference.deployment import make_deployment
from hwsim.profiles.loader import load_hardware
from hwsim.profiles.sourced import SourcedSeconds
from hwsim.rag import LATENCY_MODELS, compare_rag, evaluate, make_setup
from hwsim.rag.retrieval import prefill_s, rerank_s
from hwsim.rag.search_cost import (
    DEFAULT_RANDOM_ACCESS_LATENCY,
    flat_cost,
    hnsw_cost,
    ivf_cost,
    random_access,
    search_latency,
)
from hwsim.rag.spec import HnswIndex, IvfIndex, parse_rag_section

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "rag-vs-long-context.yaml"
runner = CliRunner()
D, E, B = 1_000_000, 768, 4.0
H100 = load_hardware("h100-sxm")
CPU = load_hardware("cpu")


def with_latency(hw, seconds):
    """``hw`` with another random-access latency."""
    memory = hw.memory.model_copy(
        update={"random_access_latency_s": SourcedSeconds(value=seconds, source="test")}
    )
    return hw.model_copy(update={"memory": memory})


def test_one_latency_model_per_index_kind():
    assert set(LATENCY_MODELS) == {"flat", "ivf", "hnsw"}
    for fn in LATENCY_MODELS.values():
        assert "arXiv" in (fn.__doc__ or "") or "TPAMI" in (fn.__doc__ or "")


# -- golden values, 1M x 768 fp32 ----------------------------------------------------------
def test_flat_golden():
    cost = flat_cost(D, E, B)
    assert cost.flops == 2 * D * E == 1.536e9
    assert cost.bytes_scanned == D * E * B == 3.072e9
    # H100: 3.072e9 B / (3.35e12 x 0.8) = 1.146269 ms (memory >> compute: 1.537e9 / 33.45e12
    # = 46 us), + 4 us launch = 1.150269 ms
    t = search_latency(H100, cost)
    assert t.time_s == pytest.approx(3.072e9 / (3.35e12 * 0.8) + 4e-6, rel=1e-9)
    assert t.time_s == pytest.approx(1.150269e-3, rel=1e-6)
    assert t.bound == "memory"
    # CPU: 3.072e9 / (20e9 x 0.7) = 219.4286 ms + 10 us = 219.4386 ms
    t = search_latency(CPU, cost)
    assert t.time_s == pytest.approx(0.2194386, rel=1e-6)
    # batched throughput: compute-bound GEMM, 66.9e12 x 0.7 / 1.536e9 = 30,488 queries/s
    assert search_latency(H100, cost).throughput_qps == pytest.approx(30488.28, rel=1e-5)


def test_ivf_golden():
    cost = ivf_cost(D, E, B, nlist=1024, nprobe=20)
    # coarse quantiser: 1024 x 768 x 4 = 3,145,728 B; list scan: 20 x D / 1024 = 19,531.25
    # vectors x 3072 B = 60,000,000 B
    assert cost.bytes_scanned == 3_145_728 + 60_000_000
    assert cost.list_starts == 20
    # H100: quantiser 3,145,728 / 2.68e12 + 4 us = 5.17378 us; scan 6e7 / 2.68e12 + 4 us =
    # 26.38806 us; lists start concurrently: 1 x 0.5 us. Total 32.06184 us.
    t = search_latency(H100, cost)
    assert t.breakdown["coarse quantiser"] == pytest.approx(5.17378e-6, rel=1e-5)
    assert t.breakdown["list scan"] == pytest.approx(26.38806e-6, rel=1e-6)
    assert t.breakdown["list starts"] == pytest.approx(0.5e-6)
    assert t.time_s == pytest.approx(32.06184e-6, rel=1e-6)
    # CPU: quantiser 3,145,728 / 14e9 + 10 us = 234.6949 us; scan 6e7 / 14e9 + 10 us =
    # 4.295714 ms; 20 lists one after another x 100 ns = 2 us. Total 4.532409 ms.
    t = search_latency(CPU, cost)
    assert t.breakdown["list starts"] == pytest.approx(2e-6)
    assert t.time_s == pytest.approx(4.532409e-3, rel=1e-6)


def test_ivf_pq_golden():
    cost = ivf_cost(D, E, B, nlist=1024, nprobe=20, pq_m=96, pq_nbits=8)
    # scan: codebooks 256 x 768 x 4 = 786,432 B + 19,531.25 codes x 96 B = 1,875,000 B
    assert cost.bytes_scanned == 3_145_728 + 786_432 + 1_875_000
    # index: D x (96 + 8) + centroids 3,145,728 + codebooks 786,432 = 107,932,160 B
    assert cost.index_bytes == 107_932_160
    # H100 scan: 2,661,432 / 2.68e12 + 4 us = 4.993072 us; total with the quantiser (5.17378)
    # and one list start (0.5): 10.66685 us
    assert search_latency(H100, cost).time_s == pytest.approx(10.66685e-6, rel=1e-5)


def test_hnsw_golden():
    cost = hnsw_cost(D, E, B, m=32, ef_search=16)
    levels = math.log(1e6) / math.log(32)  # 3.986314
    visited = 2 * 32 * 16 + 32 * levels  # 1151.562
    hops = 16 + levels  # 19.98631
    links = (16 * 64 + 32 * levels) * 4  # 4606.25 B
    assert cost.distance_evaluations == pytest.approx(visited)
    assert cost.expansions == pytest.approx(hops)
    # CPU, one core per query: bw_q = 20e9 x 0.7 / 2 = 7e9 B/s, F_q = 0.384e12 x 0.3 / 2 =
    # 57.6e9 FLOP/s; every visit is a dependent access:
    #   chase (X + V) x 100 ns = 1171.548 x 1e-7       = 117.1548 us
    #   bytes (V x 3072 + 4606.25) / 7e9                = 506.0293 us
    #   distances V x 1536 / 57.6e9                     =  30.7083 us
    #   launch                                          =  10 us          -> 663.8924 us
    t = search_latency(CPU, cost)
    assert t.dependent_accesses == pytest.approx(hops + visited)
    by_hand = (hops + visited) * 1e-7 + (visited * 3072 + links) / 7e9 + visited * 1536 / 57.6e9
    assert t.time_s == pytest.approx(by_hand + 1e-5, rel=1e-9)
    assert t.time_s == pytest.approx(663.8924e-6, rel=1e-6)
    # H100, CAGRA-style: neighbours of a node fetched together, 2 X dependent accesses:
    #   chase 2 x 19.98631 x 500 ns = 19.98631 us; bytes 3,542,205 / 2.68e12 = 1.321718 us;
    #   distances 1,768,799 / 33.45e12 = 0.0529 us; launch 4 us       -> 25.36091 us
    t = search_latency(H100, cost)
    assert t.dependent_accesses == pytest.approx(2 * hops)
    assert t.time_s == pytest.approx(25.36091e-6, rel=1e-6)
    assert t.bound == "latency"
    # the old streamed-bandwidth price of the same bytes is ~5x lower on the GPU
    assert t.time_s > 4 * (cost.bytes_scanned / 2.68e12 + 4e-6)


def test_random_access_latency_from_profile_or_default():
    ra = random_access(H100)
    assert ra.from_profile and ra.latency_s == pytest.approx(500e-9)
    assert random_access(CPU).latency_s == pytest.approx(100e-9)
    a100 = load_hardware("a100-80gb-sxm")  # no random_access_latency_s in its profile
    ra = random_access(a100)
    assert not ra.from_profile
    assert ra.latency_s == DEFAULT_RANDOM_ACCESS_LATENCY["gpu"][0]
    assert "has none" in ra.source and "default for a GPU" in ra.source


# -- invariants -----------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [CPU, H100], ids=["cpu", "h100"])
def test_hnsw_grows_with_ef_and_latency_and_log_n(hw):
    efs = [16, 32, 64, 128]
    t = [float(search_latency(hw, hnsw_cost(D, E, B, 32, ef)).time_s) for ef in efs]
    assert np.all(np.diff(t) > 0)
    slope = np.diff(t) / np.diff(efs)
    np.testing.assert_allclose(slope, slope[0], rtol=1e-9)  # linear in ef
    cost = hnsw_cost(D, E, B, 32, 64)
    lat = [float(search_latency(with_latency(hw, s), cost).time_s) for s in (5e-8, 1e-7, 5e-7)]
    assert np.all(np.diff(lat) > 0)
    # x100 more vectors add the same time each (one upper level per ln(M)): ~log(D)
    n = np.array([1e4, 1e6, 1e8])
    tn = search_latency(hw, hnsw_cost(n, E, B, 32, 64)).time_s
    assert tn[2] - tn[1] == pytest.approx(tn[1] - tn[0], rel=1e-9)
    assert tn[2] / tn[1] < 1.2  # 100x the corpus, under 20% more latency


@pytest.mark.parametrize("hw", [CPU, H100], ids=["cpu", "h100"])
def test_ivf_linear_in_nprobe_and_flat_linear_in_n(hw):
    probes = [10, 20, 40, 80, 160]
    t = np.array([search_latency(hw, ivf_cost(D, E, B, 1024, p)).time_s for p in probes])
    slope = np.diff(t) / np.diff(probes)
    np.testing.assert_allclose(slope, slope[0], rtol=1e-9)
    assert slope[0] > 0
    n = np.array([1e6, 2e6, 4e6])
    tf = search_latency(hw, flat_cost(n, E, B)).time_s
    launch = hw.efficiency.for_class("elementwise").launch_overhead_s
    np.testing.assert_allclose((tf - launch) / n, (tf[0] - launch) / n[0], rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(nprobe=st.integers(1, 1023), n=st.floats(1e3, 1e9), gpu=st.booleans())
def test_more_probes_never_cost_less(nprobe, n, gpu):
    hw = H100 if gpu else CPU
    a, b = ivf_cost(n, 384, 2.0, 1024, nprobe), ivf_cost(n, 384, 2.0, 1024, nprobe + 1)
    assert b.searched_fraction >= a.searched_fraction
    assert b.bytes_scanned >= a.bytes_scanned and b.flops >= a.flops
    assert search_latency(hw, b).time_s >= search_latency(hw, a).time_s


def test_defaults_are_the_libraries():
    assert (HnswIndex(kind="hnsw").m, HnswIndex(kind="hnsw").ef_search) == (32, 16)  # FAISS
    assert (IvfIndex(kind="ivf").nlist, IvfIndex(kind="ivf").nprobe) == (1024, 20)  # cuVS
    # FAISS searches with ef = max(efSearch, k)
    hnsw = HnswIndex(kind="hnsw")
    wide = hnsw.cost(D, E, top_k=32)
    assert wide.distance_evaluations == pytest.approx(
        hnsw_cost(D, E, B, 32, 32).distance_evaluations
    )


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"rerank": {"model": "longformer-large", "top": 4}}, "rerank.top"),
        ({"index": {"kind": "ivf", "pq_m": 7}}, "pq_m"),
        ({"index": {"kind": "hnsw", "nprobe": 3}}, "rag.index.hnsw.nprobe"),
        ({"rounds": 0}, "rag.rounds"),
    ],
)
def test_retrieval_spec_errors(data, needle):
    with pytest.raises(ProfileError) as err:
        parse_rag_section({"corpus_tokens": 100_000, **data}, "s.yaml")
    assert needle in str(err.value)


# -- re-ranking and rounds ------------------------------------------------------------------
@pytest.fixture(scope="module")
def reranker():
    return make_deployment("longformer-large", "h100-sxm", None)


def test_rerank_is_prefill_of_question_plus_chunk_linear_in_r(reranker):
    one_batch = prefill_s(reranker, 32, 64 + 512)
    t = rerank_s(reranker, np.array([32, 64, 128]), 64 + 512, 32)
    np.testing.assert_allclose(t, one_batch * np.array([1, 2, 4]), rtol=1e-12)
    # a partial last batch is priced at its own size
    assert rerank_s(reranker, 40, 576, 32) == pytest.approx(one_batch + prefill_s(reranker, 8, 576))


SPEC = {"n_chunks": 1_000_000, "search_hardware": "h100-sxm", "index": {"kind": "hnsw"}}


def test_pipeline_rerank_and_rounds():
    one = compare_rag("llama-3.1-8b", "h100-sxm", {**SPEC, "rerank": {"model": "longformer-large"}})
    r = one.retrieval
    assert r.rerank is not None and r.rerank.candidates == 32 and r.rerank.pair_tokens == 576
    assert one.search.candidates == 32  # the index returns the reranker's 32 candidates
    assert r.round_s == pytest.approx(r.round_embedding_s + r.round_search_s + r.round_rerank_s)
    assert one.rag.retrieval_s == pytest.approx(r.total_s)
    assert one.rag.ttft_s == pytest.approx(r.total_s + one.rag_estimate.latency.ttft_s)
    assert one.rag.prompt_tokens == 8 * 512 + 64  # top_k chunks after re-ranking

    # identical rounds (no generated follow-up): k rounds cost k x one round
    rounds = {**SPEC, "rerank": {"model": "longformer-large"}, "followup_tokens": 0}
    a = compare_rag("llama-3.1-8b", "h100-sxm", {**rounds, "rounds": 1})
    c = compare_rag("llama-3.1-8b", "h100-sxm", {**rounds, "rounds": 3})
    assert c.rag.retrieval_s == pytest.approx(3 * a.rag.retrieval_s)
    assert c.retrieval.device_usd == pytest.approx(3 * a.retrieval.device_usd)
    extra = c.rag.cost_per_query_usd - a.rag.cost_per_query_usd
    assert extra == pytest.approx(2 * a.retrieval.device_usd)

    # generated follow-ups: (k - 1) x followup_tokens decode steps at the RAG TPOT
    g = compare_rag("llama-3.1-8b", "h100-sxm", {**SPEC, "rounds": 3, "followup_tokens": 32})
    assert g.retrieval.followup_s == pytest.approx(32 * g.rag.tpot_s)
    assert g.retrieval.total_s == pytest.approx(
        3 * g.retrieval.round_s + 2 * g.retrieval.followup_s
    )
    assert g.rag.llm_gpu_s_per_query == pytest.approx(
        g.rag_estimate.latency.e2e_s + 2 * g.retrieval.followup_s
    )


def test_sweep_with_rerank_matches_scalar():
    s = make_setup("llama-3.1-8b", "h100-sxm", {**SPEC, "rerank": {"model": "longformer-large"}})
    corpus = np.array([5 * 512, 20 * 512, 50_000 * 512])  # fewer chunks than 32 candidates
    ev = evaluate(s, corpus)
    for i, c in enumerate(corpus):
        one = evaluate(s, int(c))
        assert ev.rag.rerank_s[i] == pytest.approx(one.rag.rerank_s)
        assert ev.rag.ttft_s[i] == pytest.approx(one.rag.ttft_s)
    assert ev.rag.rerank_s[0] < ev.rag.rerank_s[2]  # 5 candidates scored, not 32


# -- CLI ------------------------------------------------------------------------------------
def test_cli_retrieval_flags_json():
    args = ["rag", str(EXAMPLE), "--json", "--corpus-tokens", "50M", "--search-hardware"]
    result = runner.invoke(
        app,
        [*args, "h100-sxm", "--index", "ivf", "--nprobe", "40", "--pq-m", "96"]
        + ["--rerank-model", "longformer-large", "--rerank-top", "16", "--rounds", "2"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    s = data["search"]
    assert s["index"] == "ivf" and s["candidates"] == 16
    assert set(s["breakdown"]) == {"coarse quantiser", "list scan", "list starts"}
    for key in ("throughput_qps", "streamed_time_s", "random_access_latency_s", "bound"):
        assert key in s
    r = data["retrieval"]
    assert r["rounds"] == 2 and r["rerank"]["model"] == "longformer-large"
    assert r["rerank"]["top"] == 16
    for key in ("rerank_s", "followup_s", "retrieval_s"):
        assert key in data["rag"]


def test_cli_hnsw_params_and_table_names_default_latency():
    result = runner.invoke(
        app,
        [
            "rag",
            str(EXAMPLE),
            "--search-hardware",
            "a100-80gb-sxm",
            "--ef-search",
            "32",
            "--hnsw-m",
            "16",
            "--rerank-model",
            "longformer-large",
        ],
    )
    assert result.exit_code == 0, result.output
    for text in ("rerank (longformer-large", "retrieval total", "random-access latency"):
        assert text in result.output
    assert "a100-80gb-sxm profile has none" in result.output


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--index", "hnsw", "--nprobe", "4"], "rag.index.hnsw.nprobe"),
        (["--rerank-top", "16"], "--rerank-model"),
        (["--rounds", "0"], "rag.rounds"),
    ],
)
def test_cli_bad_retrieval_flags_exit_2(flags, needle):
    result = runner.invoke(app, ["rag", str(EXAMPLE), *flags])
    assert result.exit_code == 2, result.output
    assert needle in result.output
