"""Retrieval instead of context: price a RAG pipeline against putting the corpus in the prompt.

    from hwsim.rag import RagSpec, compare_rag
    cmp = compare_rag("llama-3.1-8b", "h100-sxm", {"corpus_tokens": "100k"}, gen_len=256)
    cmp.long_context.ttft_s, cmp.rag.ttft_s, cmp.limits.long_context_max_corpus_tokens

Modules: ``search_cost`` (flat / IVF / HNSW work and one registered latency model per index
kind), ``embedding`` (query encoder), ``retrieval`` (cross-encoder re-ranking, iterative
rounds), ``spec`` (the ``rag:`` YAML section), ``pipeline`` (the comparison), ``limits``
(where each approach stops fitting, break-even), ``results`` (typed records), ``report``
(rich table).
"""

from __future__ import annotations

from hwsim.rag.pipeline import compare_rag, compare_setup, evaluate, make_setup
from hwsim.rag.results import Approach, Limits, RagComparison
from hwsim.rag.search_cost import (
    LATENCY_MODELS,
    SearchCost,
    flat_cost,
    hnsw_cost,
    ivf_cost,
    search_latency,
    time_search,
)
from hwsim.rag.spec import FlatIndex, HnswIndex, IvfIndex, RagSpec, Rerank, parse_rag_section

__all__ = [
    "LATENCY_MODELS",
    "Approach",
    "FlatIndex",
    "HnswIndex",
    "IvfIndex",
    "Limits",
    "RagComparison",
    "RagSpec",
    "Rerank",
    "SearchCost",
    "compare_rag",
    "compare_setup",
    "evaluate",
    "flat_cost",
    "hnsw_cost",
    "ivf_cost",
    "make_setup",
    "parse_rag_section",
    "search_latency",
    "time_search",
]
