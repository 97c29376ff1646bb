"""Whole corpus in context vs retrieval (RAG), priced per query with ``hwsim.estimate``.

Long context: prompt = corpus tokens + question tokens.
RAG: embed the question, search the index, prompt = min(top_k, D) x chunk_tokens + question
tokens; TTFT = embedding + search + prefill (run one after the other).

Per query, with the workload's batch B of concurrent sequences on one replica of G GPUs:
    LLM GPU-seconds = e2e x G / B   (the search and embedding devices are separate and
                                     overlap with other requests' decoding)
    cost = GPU-seconds x price_per_hour / 3600 + search and embedding device-seconds priced
           the same way with their own profiles' prices (NaN where a profile has no price).
Search and embedding are priced per query (no batching of queries), which is conservative.

Fit: weights + KV cache of the batch at prompt + generated tokens within the usable memory
(``memory_utilization`` x capacity), as in ``Estimate.memory``, and the request within the
model's supported context. The transient prefill workspace is not part of this test. Users
per GPU are ``Estimate.capacity.users_per_gpu`` (memory and, when given, the TPOT SLO).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.errors import InfeasibleError
from hwsim.inference.deployment import Deployment, make_deployment
from hwsim.inference.estimate import estimate_deployment
from hwsim.inference.results import Estimate
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.loader import load_hardware
from hwsim.rag.embedding import embedding_cost
from hwsim.rag.limits import find_limits
from hwsim.rag.results import Approach, EmbeddingSummary, RagComparison, SearchSummary
from hwsim.rag.search_cost import time_search
from hwsim.rag.spec import RagSpec, parse_rag_section


@dataclass(frozen=True)
class RagSetup:
    """Everything fixed across corpus sizes: the LLM deployment, the pipeline, the devices."""

    dep: Deployment
    spec: RagSpec
    search_hw: HardwareProfile
    embed_hw: HardwareProfile
    batch: int
    gen_len: int
    tpot_slo_s: float | None

    @property
    def search_usable_bytes(self) -> float:
        return self.search_hw.capacity_bytes * self.spec.search_memory_utilization

    @property
    def embedder_on_search_device(self) -> bool:
        return self.embed_hw.id == self.search_hw.id


@dataclass(frozen=True)
class Evaluation:
    """Both approaches at one corpus size (or an array of sizes)."""

    long_context: Approach
    rag: Approach
    search: SearchSummary
    embedding: EmbeddingSummary
    long_estimate: Estimate
    rag_estimate: Estimate


def make_setup(
    model,
    hardware,
    rag: RagSpec | dict,
    *,
    batch: int = 1,
    gen_len: int = 128,
    tpot_slo_s: float | None = None,
    spec: DeploymentSpec | None = None,
    **settings,
) -> RagSetup:
    rag_spec = rag if isinstance(rag, RagSpec) else parse_rag_section(rag, "rag argument")
    dep = make_deployment(model, hardware, spec, **settings)
    return RagSetup(
        dep=dep,
        spec=rag_spec,
        search_hw=load_hardware(rag_spec.search_hardware),
        embed_hw=load_hardware(rag_spec.embedding_hardware),
        batch=int(batch),
        gen_len=int(gen_len),
        tpot_slo_s=tpot_slo_s,
    )


def compare_rag(model, hardware, rag: RagSpec | dict, *, corpus_tokens=None, **deployment):
    """Long context vs RAG for ``model`` on ``hardware``.

    ``rag``: a :class:`RagSpec` or the mapping of a scenario's ``rag:`` section.
    ``corpus_tokens`` overrides the spec's corpus size and may be a numpy array (a sweep).
    ``deployment``: batch, gen_len, tpot_slo_s, ``spec`` (a :class:`DeploymentSpec`) and any
    of its fields as keywords (as in :func:`hwsim.estimate`).
    """
    return compare_setup(make_setup(model, hardware, rag, **deployment), corpus_tokens)


def compare_setup(setup: RagSetup, corpus_tokens=None) -> RagComparison:
    spec, dep = setup.spec, setup.dep
    corpus = spec.total_corpus_tokens if corpus_tokens is None else corpus_tokens
    ev = evaluate(setup, corpus)
    return RagComparison(
        model=dep.model.id,
        hardware=dep.hardware.id,
        gpus_per_replica=dep.gpus_per_replica,
        search_hardware=setup.search_hw.id,
        batch=setup.batch,
        gen_len=setup.gen_len,
        corpus_tokens=_out(corpus),
        n_chunks=_out(spec.chunks_for(corpus)),
        chunk_tokens=spec.chunk_tokens,
        top_k=spec.top_k,
        question_tokens=spec.question_tokens,
        tpot_slo_s=setup.tpot_slo_s,
        long_context=ev.long_context,
        rag=ev.rag,
        search=ev.search,
        embedding=ev.embedding,
        limits=find_limits(setup, evaluate),
        long_context_estimate=ev.long_estimate,
        rag_estimate=ev.rag_estimate,
    )


def evaluate(setup: RagSetup, corpus_tokens) -> Evaluation:
    """Price both approaches at ``corpus_tokens`` (scalar or array)."""
    spec = setup.spec
    corpus = np.asarray(corpus_tokens, dtype=float)
    if np.any(corpus < 1) or not np.all(np.isfinite(corpus)):
        raise InfeasibleError(f"corpus_tokens must be >= 1, got {corpus_tokens!r}")
    chunks = spec.chunks_for(corpus)
    q = spec.question_tokens
    long_prompt = corpus + q
    rag_prompt = np.minimum(spec.top_k, chunks) * spec.chunk_tokens + q

    cost = spec.index.cost(chunks, spec.embedding.dim)
    search_t = time_search(setup.search_hw, cost)
    emb = spec.embedding
    query = embedding_cost(setup.embed_hw, emb.params, q, emb.dtype, emb.layers)
    corpus_emb = embedding_cost(setup.embed_hw, emb.params, corpus, emb.dtype, emb.layers)

    search_bytes = cost.index_bytes + (query.weight_bytes if setup.embedder_on_search_device else 0)
    index_fits = search_bytes <= setup.search_usable_bytes
    extra_usd = (
        search_t.time_s * _price(setup.search_hw) + query.time_s * _price(setup.embed_hw)
    ) / 3600.0

    long_est = _estimate(setup, long_prompt)
    rag_est = _estimate(setup, rag_prompt)
    zero = 0.0 * corpus
    long_ctx = _approach(
        setup,
        "long context",
        long_est,
        long_prompt,
        embedding_s=zero,
        search_s=zero,
        extra_usd=zero,
        search_bytes=zero,
        index_fits=np.full(corpus.shape, True),
    )
    rag = _approach(
        setup,
        "RAG",
        rag_est,
        rag_prompt,
        embedding_s=query.time_s + zero,
        search_s=search_t.time_s,
        extra_usd=extra_usd,
        search_bytes=search_bytes,
        index_fits=index_fits,
    )
    search = SearchSummary(
        device=setup.search_hw.id,
        index=cost.index,
        n_chunks=_out(chunks),
        distance_evaluations=_out(cost.distance_evaluations + zero),
        flops=_out(cost.flops + zero),
        bytes_scanned=_out(cost.bytes_scanned + zero),
        index_bytes=_out(cost.index_bytes + zero),
        time_s=_out(search_t.time_s),
        bound=_out(search_t.bound),
    )
    embedding = EmbeddingSummary(
        device=setup.embed_hw.id,
        params=emb.params,
        query_tokens=q,
        query_flops=_out(query.flops),
        query_time_s=_out(query.time_s),
        weight_bytes=float(query.weight_bytes),
        corpus_flops=_out(corpus_emb.flops),
        corpus_time_s=_out(corpus_emb.time_s),
    )
    return Evaluation(long_ctx, rag, search, embedding, long_est, rag_est)


def _estimate(setup: RagSetup, prompt: np.ndarray) -> Estimate:
    scalar_prompt = prompt.item() if prompt.ndim == 0 else prompt
    return estimate_deployment(
        setup.dep, setup.batch, scalar_prompt, setup.gen_len, setup.tpot_slo_s
    )


def _approach(
    setup: RagSetup,
    name: str,
    est: Estimate,
    prompt,
    *,
    embedding_s,
    search_s,
    extra_usd,
    search_bytes,
    index_fits,
) -> Approach:
    dep, mem = setup.dep, est.memory
    llm_bytes = mem.weights_bytes + np.asarray(mem.kv_cache_bytes)
    fits_memory = llm_bytes <= mem.usable_bytes
    within_context = ~np.asarray(est.context.extrapolation, dtype=bool)
    gpu_s = np.asarray(est.latency.e2e_s) * dep.gpus_per_replica / setup.batch
    usd = gpu_s * _price(dep.hardware) / 3600.0 + extra_usd
    return Approach(
        name=name,
        prompt_tokens=_out(prompt),
        embedding_s=_out(embedding_s),
        search_s=_out(search_s),
        prefill_s=_out(est.prefill.time_s),
        ttft_s=_out(embedding_s + search_s + est.latency.ttft_s),
        tpot_s=_out(est.latency.tpot_s),
        e2e_s=_out(embedding_s + search_s + est.latency.e2e_s),
        weights_bytes=float(mem.weights_bytes),
        kv_cache_bytes=_out(mem.kv_cache_bytes),
        llm_memory_bytes=_out(llm_bytes),
        usable_bytes=float(mem.usable_bytes),
        fits_memory=_out(fits_memory),
        within_context=_out(within_context),
        index_fits=_out(index_fits),
        fits=_out(fits_memory & within_context & index_fits),
        users_per_gpu=_out(est.capacity.users_per_gpu),
        llm_gpu_s_per_query=_out(gpu_s),
        search_device_s_per_query=_out(search_s + embedding_s),
        cost_per_query_usd=_out(usd),
        search_device_bytes=_out(search_bytes),
        search_device_usable_bytes=setup.search_usable_bytes if name == "RAG" else 0.0,
    )


def _price(hw: HardwareProfile) -> float:
    return hw.price_per_hour_usd.value if hw.price_per_hour_usd is not None else float("nan")


def _out(x):
    """0-d arrays and numpy scalars -> Python scalars; arrays unchanged."""
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return x.item()
    if isinstance(x, np.generic):
        return x.item()
    return x
