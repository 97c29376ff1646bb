"""Whole corpus in context vs retrieval (RAG), priced per query with ``hwsim.estimate``.

Long context: prompt = corpus tokens + question tokens.
RAG: embed the question, search the index (latency model per index kind,
``search_cost.LATENCY_MODELS``), optionally re-rank the candidates with a cross-encoder and
repeat for ``rounds`` rounds with LLM-generated follow-up queries (``retrieval``); prompt =
min(top_k, D) x chunk_tokens + question tokens; TTFT = retrieval + prefill (one after the
other).

Per query, with the workload's batch B of concurrent sequences on one replica of G GPUs:
    LLM GPU-seconds = e2e x G / B   (the search and embedding devices are separate and
                                     overlap with other requests' decoding)
    (+ the follow-up generations' decode seconds x G / B)
    cost = GPU-seconds x price_per_hour / 3600 + search, embedding and rerank device-seconds
           priced the same way with their own profiles' prices (NaN where a profile has no
           price).
Search, embedding and re-ranking are priced per query at their one-query latency (no
batching of queries), which is conservative; the search's batched throughput is reported.

Fit: weights + KV cache of the batch at prompt + generated tokens within the usable memory
(``memory_utilization`` x capacity), as in ``Estimate.memory``, and the request within the
model's supported context. The transient prefill workspace is not part of this test. Users
per GPU are ``Estimate.capacity.users_per_gpu`` (memory and, when given, the TPOT SLO).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.errors import InfeasibleError
from hwsim.inference.context import with_mixer
from hwsim.inference.deployment import Deployment, make_deployment
from hwsim.inference.estimate import estimate_deployment
from hwsim.inference.results import Estimate
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.loader import load_hardware
from hwsim.rag.embedding import embedding_cost
from hwsim.rag.limits import find_limits
from hwsim.rag.results import (
    Approach,
    EmbeddingSummary,
    RagComparison,
    RerankSummary,
    RetrievalSummary,
    SearchSummary,
)
from hwsim.rag.retrieval import rerank_s, retrieval_total_s
from hwsim.rag.search_cost import search_latency, time_search
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
    rerank_dep: Deployment | None = None
    working_dep: Deployment | None = None  # the LLM as the working-memory approach serves it

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
    retrieval: RetrievalSummary
    long_estimate: Estimate
    rag_estimate: Estimate
    working: Approach | None = None
    working_estimate: Estimate | None = None


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
    rr = rag_spec.rerank
    rerank_dep = (
        None if rr is None else make_deployment(rr.model, rr.hardware or dep.hardware.id, None)
    )
    wm = rag_spec.working_memory
    working_dep = None
    if wm is not None:
        working_dep = dep
        if wm.window is not None:
            label = f"{dep.model.id}[sliding_window:window={wm.window}]"
            windowed = with_mixer(dep.model, {"kind": "sliding_window", "window": wm.window}, label)
            working_dep = make_deployment(windowed, hardware, spec, **settings)
    return RagSetup(
        dep=dep,
        spec=rag_spec,
        search_hw=load_hardware(rag_spec.search_hardware),
        embed_hw=load_hardware(rag_spec.embedding_hardware),
        batch=int(batch),
        gen_len=int(gen_len),
        tpot_slo_s=tpot_slo_s,
        rerank_dep=rerank_dep,
        working_dep=working_dep,
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
        retrieval=ev.retrieval,
        limits=find_limits(setup, evaluate),
        long_context_estimate=ev.long_estimate,
        rag_estimate=ev.rag_estimate,
        working_memory=ev.working,
        working_memory_estimate=ev.working_estimate,
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

    candidates = spec.candidates
    cost = spec.index.cost(chunks, spec.embedding.dim, candidates)
    search_t = search_latency(setup.search_hw, cost)
    streamed = time_search(setup.search_hw, cost)
    emb = spec.embedding
    query = embedding_cost(setup.embed_hw, emb.params, q, emb.dtype, emb.layers)
    corpus_emb = embedding_cost(setup.embed_hw, emb.params, corpus, emb.dtype, emb.layers)

    search_bytes = cost.index_bytes + (query.weight_bytes if setup.embedder_on_search_device else 0)
    index_fits = search_bytes <= setup.search_usable_bytes

    long_est = _estimate(setup, long_prompt)
    rag_est = _estimate(setup, rag_prompt)
    zero = 0.0 * corpus

    rr, rerank_summary = spec.rerank, None
    rerank_t = zero
    rerank_usd_s = zero  # rerank device-seconds x price per hour, one round
    if rr is not None and setup.rerank_dep is not None:
        rdep = setup.rerank_dep
        scored = np.minimum(rr.top, chunks)
        pair = q + spec.chunk_tokens
        rerank_t = rerank_s(rdep, scored, pair, rr.batch) + zero
        rerank_usd_s = rerank_t * rdep.gpus_per_replica * _price(rdep.hardware)
        rerank_summary = RerankSummary(
            model=rdep.model.id,
            device=rdep.hardware.id,
            top=rr.top,
            batch=rr.batch,
            candidates=_out(scored),
            pair_tokens=pair,
            time_s=_out(rerank_t),
        )
    rounds = spec.rounds
    followup_one = spec.followup_tokens * np.asarray(rag_est.latency.tpot_s, dtype=float) + zero
    round_s = query.time_s + search_t.time_s + rerank_t
    device_usd = (
        rounds
        * (
            search_t.time_s * _price(setup.search_hw)
            + query.time_s * _price(setup.embed_hw)
            + rerank_usd_s
        )
        / 3600.0
    )
    retrieval = RetrievalSummary(
        rounds=rounds,
        followup_tokens=spec.followup_tokens,
        round_embedding_s=_out(query.time_s + zero),
        round_search_s=_out(search_t.time_s + zero),
        round_rerank_s=_out(rerank_t),
        round_s=_out(round_s),
        followup_s=_out(followup_one),
        embedding_s=_out(rounds * query.time_s + zero),
        search_s=_out(rounds * search_t.time_s + zero),
        rerank_s=_out(rounds * rerank_t),
        followups_s=_out((rounds - 1) * followup_one),
        total_s=_out(retrieval_total_s(rounds, round_s, followup_one)),
        device_usd=_out(device_usd),
        rerank=rerank_summary,
    )

    long_ctx = _approach(
        setup,
        "long context",
        long_est,
        long_prompt,
        embedding_s=zero,
        search_s=zero,
        rerank_s=zero,
        followup_s=zero,
        extra_usd=zero,
        search_bytes=zero,
        index_fits=np.full(corpus.shape, True),
    )
    rag = _approach(
        setup,
        "RAG",
        rag_est,
        rag_prompt,
        embedding_s=rounds * query.time_s + zero,
        search_s=rounds * search_t.time_s + zero,
        rerank_s=rounds * rerank_t,
        followup_s=(rounds - 1) * followup_one,
        extra_usd=device_usd,
        search_bytes=search_bytes,
        index_fits=index_fits,
    )
    ra = search_t.random_access
    search = SearchSummary(
        device=setup.search_hw.id,
        index=cost.index,
        n_chunks=_out(chunks),
        candidates=candidates,
        distance_evaluations=_out(cost.distance_evaluations + zero),
        searched_fraction=_out(cost.searched_fraction + zero),
        flops=_out(cost.flops + zero),
        bytes_scanned=_out(cost.bytes_scanned + zero),
        index_bytes=_out(cost.index_bytes + zero),
        time_s=_out(search_t.time_s + zero),
        bound=_out(search_t.bound),
        breakdown={k: _out(v + zero) for k, v in search_t.breakdown.items()},
        streamed_time_s=_out(streamed.time_s + zero),
        throughput_qps=_out(search_t.throughput_qps + zero),
        dependent_accesses=_out(search_t.dependent_accesses + zero),
        random_access_latency_s=None if ra is None else ra.latency_s,
        random_access_latency_source=None if ra is None else ra.source,
        random_access_latency_default=ra is not None and not ra.from_profile,
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
    working, working_est = (None, None)
    if setup.working_dep is not None:
        embedder_bytes = query.weight_bytes if setup.embedder_on_search_device else 0.0
        working, working_est = _working_memory(setup, corpus, query.time_s, embedder_bytes)
    return Evaluation(
        long_ctx, rag, search, embedding, retrieval, long_est, rag_est, working, working_est
    )


def _working_memory(
    setup: RagSetup, corpus: np.ndarray, embed_s, embedder_bytes: float
) -> tuple[Approach, Estimate]:
    """Recent context in the prompt (working memory) plus retrieval from the older part
    (long-term memory): prompt = min(recent, corpus) + min(top_k, older chunks) x chunk +
    question; the older chunks alone are indexed, searched and re-ranked (none when the whole
    corpus is recent)."""
    spec, wm = setup.spec, setup.spec.working_memory
    assert wm is not None and setup.working_dep is not None
    recent = np.minimum(float(wm.recent_tokens), corpus)
    older = spec.chunks_for(corpus - recent)
    retrieves = older > 0
    prompt = recent + np.minimum(spec.top_k, older) * spec.chunk_tokens + spec.question_tokens
    cost = spec.index.cost(np.maximum(older, 1.0), spec.embedding.dim, spec.candidates)
    search_s = np.where(retrieves, search_latency(setup.search_hw, cost).time_s, 0.0)
    embed = np.where(retrieves, embed_s, 0.0)
    rerank = 0.0 * corpus
    rerank_usd_s = 0.0 * corpus
    rr = spec.rerank
    if rr is not None and setup.rerank_dep is not None:
        rdep = setup.rerank_dep
        scored = np.minimum(rr.top, np.maximum(older, 1.0))
        rerank = np.where(
            retrieves,
            rerank_s(rdep, scored, spec.question_tokens + spec.chunk_tokens, rr.batch),
            0.0,
        )
        rerank_usd_s = rerank * rdep.gpus_per_replica * _price(rdep.hardware)
    est = estimate_deployment(
        setup.working_dep, setup.batch, _scalar(prompt), setup.gen_len, setup.tpot_slo_s
    )
    rounds = spec.rounds
    followup = np.where(
        retrieves, spec.followup_tokens * np.asarray(est.latency.tpot_s, dtype=float), 0.0
    )
    device_usd = (
        rounds
        * (search_s * _price(setup.search_hw) + embed * _price(setup.embed_hw) + rerank_usd_s)
        / 3600.0
    )
    search_bytes = np.where(retrieves, cost.index_bytes + embedder_bytes, 0.0)
    approach = _approach(
        setup,
        "working + long-term memory",
        est,
        prompt,
        embedding_s=rounds * embed,
        search_s=rounds * search_s,
        rerank_s=rounds * rerank,
        followup_s=(rounds - 1) * followup,
        extra_usd=device_usd,
        search_bytes=search_bytes,
        index_fits=search_bytes <= setup.search_usable_bytes,
        dep=setup.working_dep,
    )
    return approach, est


def _scalar(x: np.ndarray):
    return x.item() if np.ndim(x) == 0 else x


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
    rerank_s,
    followup_s,
    extra_usd,
    search_bytes,
    index_fits,
    dep: Deployment | None = None,
) -> Approach:
    dep, mem = dep or setup.dep, est.memory
    llm_bytes = mem.weights_bytes + np.asarray(mem.kv_cache_bytes)
    fits_memory = llm_bytes <= mem.usable_bytes
    within_context = ~np.asarray(est.context.extrapolation, dtype=bool)
    retrieval_s = embedding_s + search_s + rerank_s + followup_s
    gpu_s = (np.asarray(est.latency.e2e_s) + followup_s) * dep.gpus_per_replica / setup.batch
    usd = gpu_s * _price(dep.hardware) / 3600.0 + extra_usd
    return Approach(
        name=name,
        prompt_tokens=_out(prompt),
        embedding_s=_out(embedding_s),
        search_s=_out(search_s),
        rerank_s=_out(rerank_s),
        followup_s=_out(followup_s),
        retrieval_s=_out(retrieval_s),
        prefill_s=_out(est.prefill.time_s),
        ttft_s=_out(retrieval_s + est.latency.ttft_s),
        tpot_s=_out(est.latency.tpot_s),
        e2e_s=_out(retrieval_s + est.latency.e2e_s),
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
        search_device_usable_bytes=setup.search_usable_bytes if name != "long context" else 0.0,
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
