"""Typed records of a long-context vs RAG comparison; the table and JSON are views of them.

Fields hold floats for a scalar corpus size and numpy arrays when ``corpus_tokens`` is an
array (same shape). Times in seconds, memory in bytes, money in USD.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
from pydantic import BaseModel, ConfigDict

from hwsim.inference.results import Estimate

Num = Union[float, int, np.ndarray]  # noqa: UP007 - pydantic needs the runtime union


class _Record(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, extra="forbid")


class SearchSummary(_Record):
    """One query's vector search on the search device."""

    device: str
    index: str
    n_chunks: Num
    distance_evaluations: Num
    flops: Num
    bytes_scanned: Num
    index_bytes: Num
    time_s: Num
    bound: Any


class EmbeddingSummary(_Record):
    """Query embedding on the embedding device, and the one-off cost of embedding the corpus."""

    device: str
    params: int
    query_tokens: int
    query_flops: Num
    query_time_s: Num
    weight_bytes: float
    corpus_flops: Num
    corpus_time_s: Num  # one-off (indexing), not per query


class Approach(_Record):
    """One way of answering a question about the corpus, per query.

    ``fits`` = the LLM's weights + KV cache fit in usable GPU memory (``fits_memory``), the
    request is within the model's supported context (``within_context``), and (RAG) the index
    fits on the search device (``index_fits``).
    """

    name: str
    prompt_tokens: Num
    embedding_s: Num
    search_s: Num
    prefill_s: Num
    ttft_s: Num
    tpot_s: Num
    e2e_s: Num
    weights_bytes: float
    kv_cache_bytes: Num
    llm_memory_bytes: Num  # weights + KV of the batch at prompt + generated tokens
    usable_bytes: float
    fits_memory: Any
    within_context: Any
    index_fits: Any
    fits: Any
    users_per_gpu: Num
    llm_gpu_s_per_query: Num
    search_device_s_per_query: Num
    cost_per_query_usd: Num
    search_device_bytes: Num  # index + embedder weights on the search device (RAG)
    search_device_usable_bytes: float


class Limits(_Record):
    """Corpus sizes (tokens) where each approach stops fitting, and where RAG starts to win.

    ``break_even_*_corpus_tokens`` is the smallest corpus at which RAG's TTFT (cost per
    query) is no worse than long context's, ignoring whether either fits; ``None`` when RAG
    never catches up in the searched range of 1 to 2^31 tokens.
    """

    long_context_max_corpus_tokens_memory: int
    long_context_max_corpus_tokens_context: int
    long_context_max_corpus_tokens: int
    long_context_binding: str
    rag_max_chunks: int
    rag_max_corpus_tokens: int
    break_even_ttft_corpus_tokens: int | None
    break_even_cost_corpus_tokens: int | None


class RagComparison(_Record):
    model: str
    hardware: str
    gpus_per_replica: int
    search_hardware: str
    batch: int
    gen_len: int
    corpus_tokens: Num
    n_chunks: Num
    chunk_tokens: int
    top_k: int
    question_tokens: int
    tpot_slo_s: float | None
    long_context: Approach
    rag: Approach
    search: SearchSummary
    embedding: EmbeddingSummary
    limits: Limits
    long_context_estimate: Estimate
    rag_estimate: Estimate

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: every record, estimates without their per-op rows."""
        out = self.model_dump(exclude={"long_context_estimate", "rag_estimate"})
        for key in ("long_context_estimate", "rag_estimate"):
            out[key] = getattr(self, key).model_dump(exclude={"prefill_ops", "decode_ops"})
        return out

    def __rich__(self):
        from hwsim.rag.report import comparison_table

        return comparison_table(self)
