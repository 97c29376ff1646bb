"""Corpus sizes where long context and RAG stop fitting, and where RAG starts to pay.

Long context stops fitting at the largest corpus C whose request still fits:
    weights + B x cache_bytes(C + question + gen_len) <= usable memory  (bisection on C)
    C + question + gen_len <= the model's supported context             (closed form)
RAG stops fitting when the index (plus the embedder's weights when both share the search
device) exceeds the search device's usable memory. Index memory is affine in the chunk count
D for every index kind (index(D) = index(0) + D x per-chunk bytes), so the limit is closed form.
Break-even corpus sizes come from a geometric grid (16 points per doubling, 1 to 2^31 tokens)
refined by bisection to one token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from hwsim.dtypes import activation_dtype
from hwsim.inference.memory import cache_bytes_per_sequence_per_gpu, weight_bytes_per_gpu
from hwsim.rag.results import Limits

if TYPE_CHECKING:
    from hwsim.rag.pipeline import Evaluation, RagSetup

MAX_CORPUS_TOKENS = 2**31
GRID_POINTS_PER_DOUBLING = 16


def find_limits(setup: RagSetup, evaluate: Callable[[RagSetup, object], Evaluation]) -> Limits:
    by_memory = long_context_max_corpus_memory(setup)
    by_context = long_context_max_corpus_context(setup)
    rag_chunks = rag_max_chunks(setup)
    return Limits(
        long_context_max_corpus_tokens_memory=by_memory,
        long_context_max_corpus_tokens_context=by_context,
        long_context_max_corpus_tokens=min(by_memory, by_context),
        long_context_binding="memory (weights + KV)"
        if by_memory < by_context
        else "model context length",
        rag_max_chunks=rag_chunks,
        rag_max_corpus_tokens=rag_chunks * setup.spec.chunk_tokens,
        break_even_ttft_corpus_tokens=break_even(setup, evaluate, "ttft_s"),
        break_even_cost_corpus_tokens=break_even(setup, evaluate, "cost_per_query_usd"),
    )


def long_context_max_corpus_memory(setup: RagSetup) -> int:
    """Largest corpus (tokens) whose weights + KV fit; 0 if none, 2^31 if bounded caches
    (windowed / recurrent) never run out."""
    dep = setup.dep
    usable = dep.usable_bytes
    budget = usable - weight_bytes_per_gpu(dep)
    tail = setup.spec.question_tokens + setup.gen_len

    def fits(corpus: int) -> bool:
        return setup.batch * float(cache_bytes_per_sequence_per_gpu(dep, corpus + tail)) <= budget

    if not fits(1):
        return 0
    if fits(MAX_CORPUS_TOKENS):
        return MAX_CORPUS_TOKENS
    lo, hi = 1, MAX_CORPUS_TOKENS  # fits(lo), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def long_context_max_corpus_context(setup: RagSetup) -> int:
    """Largest corpus whose prompt + generated tokens stay within the supported context."""
    tail = setup.spec.question_tokens + setup.gen_len
    return max(setup.dep.model.max_context_tokens - tail, 0)


def rag_max_chunks(setup: RagSetup) -> int:
    """Most chunks whose index (+ embedder weights if co-located) fits the search device."""
    spec = setup.spec
    index = np.asarray(spec.index.cost(np.array([0.0, 1.0]), spec.embedding.dim).index_bytes)
    fixed, per_chunk = float(index[0]), float(index[1] - index[0])
    if setup.embedder_on_search_device:
        fixed += spec.embedding.params * _embedder_bytes_per_param(setup)
    room = setup.search_usable_bytes - fixed
    return max(int(np.floor(room / per_chunk)), 0)


def _embedder_bytes_per_param(setup: RagSetup) -> float:
    return activation_dtype(setup.spec.embedding.dtype).bytes_per_element


def break_even(setup: RagSetup, evaluate, field: str) -> int | None:
    """Smallest corpus (tokens) at which RAG's ``field`` <= long context's, or None."""
    doublings = int(np.log2(MAX_CORPUS_TOKENS))
    grid = np.unique(
        np.round(np.logspace(0, doublings, doublings * GRID_POINTS_PER_DOUBLING + 1, base=2.0))
    )
    ev = evaluate(setup, grid)
    wins = _rag_wins(ev, field)
    if not np.any(wins):
        return None
    i = int(np.argmax(wins))
    if i == 0:
        return int(grid[0])
    lo, hi = int(grid[i - 1]), int(grid[i])  # RAG loses at lo, wins at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if bool(_rag_wins(evaluate(setup, mid), field)) else (mid, hi)
    return hi


def _rag_wins(ev: Evaluation, field: str) -> np.ndarray:
    return np.asarray(getattr(ev.rag, field)) <= np.asarray(getattr(ev.long_context, field))
