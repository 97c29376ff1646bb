"""Rich view of a :class:`~hwsim.rag.results.RagComparison`: side by side, then the limits."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table

from hwsim.format import Shown, fmt_bytes, fmt_count, fmt_time

if TYPE_CHECKING:
    from hwsim.rag.results import Approach, RagComparison


def fmt_usd(x: Shown) -> str:
    if x is None or not math.isfinite(x):
        return "- (no price in a profile)"
    return f"${x:.3g}" if x < 1 else f"${x:,.2f}"


def fmt_tokens(x: float | None) -> str:
    return "never (searched up to 2^31 tokens)" if x is None else f"{x:,.0f} tokens"


def _fits(a: Approach, max_context: int) -> str:
    if a.fits:
        return "yes"
    why = []
    if not a.fits_memory:
        why.append(f"weights + KV {fmt_bytes(a.llm_memory_bytes)} > {fmt_bytes(a.usable_bytes)}")
    if not a.within_context:
        why.append(f"beyond the {max_context:,}-token context")
    if not a.index_fits:
        why.append(
            f"index {fmt_bytes(a.search_device_bytes)} > {fmt_bytes(a.search_device_usable_bytes)}"
        )
    return "NO: " + "; ".join(why)


def _title(c: RagComparison) -> str:
    return (
        f"{c.model} on {c.hardware}: corpus {c.corpus_tokens:,.0f} tokens "
        f"({c.n_chunks:,.0f} chunks of {c.chunk_tokens}), top {c.top_k}, question "
        f"{c.question_tokens} tokens, batch {c.batch}, generate {c.gen_len}"
    )


def _rounds(n: int) -> str:
    return "" if n == 1 else f", {n} rounds"


def _working_label(c: RagComparison) -> str:
    wm = c.working_memory_estimate
    window = "" if wm is None or wm.config.model == c.model else ", windowed"
    return f"recent + retrieved{window}"


def retrieval_rows(c: RagComparison) -> list[tuple[str, ...]]:
    """The retrieval stages of one query (all rounds), each with its device: (label, long
    context, RAG[, working memory])."""
    s, e, r = c.search, c.embedding, c.retrieval
    rounds = _rounds(r.rounds)
    retrieving = [a for a in c.approaches if a is not c.long_context]

    def row(label: str, show) -> tuple[str, ...]:
        return (label, "-", *(show(a) for a in retrieving))

    rows = [
        row(f"query embedding ({e.device}{rounds})", lambda a: fmt_time(a.embedding_s)),
        row(f"vector search ({s.index}, {s.device}{rounds})", lambda a: fmt_time(a.search_s)),
    ]
    if r.rerank is not None:
        rr = r.rerank
        label = f"rerank ({rr.model} on {rr.device}, top {rr.top}{rounds})"
        rows.append(row(label, lambda a: fmt_time(a.rerank_s)))
    if r.rounds > 1:
        label = f"follow-up queries ({r.rounds - 1} x {r.followup_tokens} tokens, {c.hardware})"
        rows.append(row(label, lambda a: fmt_time(a.followup_s)))
    rows.append(row("retrieval total", lambda a: fmt_time(a.retrieval_s)))
    return rows


def search_table(c: RagComparison) -> Table:
    """One round's vector search: the latency model's parts and the random-access latency."""
    s = c.search
    t = Table(
        title=f"Vector search, one round ({s.index} on {s.device}, {s.candidates} candidates)",
        show_header=False,
        title_justify="left",
    )
    t.add_column("quantity", style="cyan")
    t.add_column("value", justify="right")
    t.add_row("latency (one query)", f"{fmt_time(s.time_s)} ({s.bound}-bound)")
    for part, seconds in s.breakdown.items():
        t.add_row(f"  {part}", fmt_time(seconds))
    t.add_row("streamed-bandwidth price of the same bytes", fmt_time(s.streamed_time_s))
    t.add_row(
        "distance evaluations",
        f"{fmt_count(s.distance_evaluations)} ({s.searched_fraction:.3g} of the vectors)",
    )
    if s.random_access_latency_s is not None:
        t.add_row(
            "dependent random accesses",
            f"{fmt_count(s.dependent_accesses)} x {fmt_time(s.random_access_latency_s)}",
        )
    t.add_row("throughput (queries batched)", f"{s.throughput_qps:,.3g} queries/s")
    return t


def _index_bytes(c: RagComparison, a: Approach) -> str:
    if a is c.long_context:
        return "-"
    return f"{fmt_bytes(a.search_device_bytes)} of {fmt_bytes(a.search_device_usable_bytes)}"


def comparison_table(c: RagComparison) -> Group:
    s, e = c.search, c.embedding
    approaches = c.approaches
    max_ctx = c.long_context_estimate.context.max_supported_tokens
    slo = f" (TPOT <= {fmt_time(c.tpot_slo_s)})" if c.tpot_slo_s else ""

    def row(label: str, show) -> tuple[str, ...]:
        return (label, *(show(a) for a in approaches))

    rows = [
        row("prompt tokens", lambda a: f"{a.prompt_tokens:,.0f}"),
        *retrieval_rows(c),
        row(f"prefill ({c.hardware})", lambda a: fmt_time(a.prefill_s)),
        row("TTFT", lambda a: fmt_time(a.ttft_s)),
        row("TPOT (mean)", lambda a: fmt_time(a.tpot_s)),
        row("end to end", lambda a: fmt_time(a.e2e_s)),
        row("KV cache (batch)", lambda a: fmt_bytes(a.kv_cache_bytes)),
        row("weights + KV per GPU", lambda a: fmt_bytes(a.llm_memory_bytes)),
        row(f"index + embedder ({s.device})", lambda a: _index_bytes(c, a)),
        row("fits", lambda a: _fits(a, max_ctx)),
        row("users per GPU" + slo, lambda a: fmt_count(a.users_per_gpu)),
        row("GPU-seconds per query", lambda a: f"{a.llm_gpu_s_per_query:,.3g}"),
        row("cost per query", lambda a: fmt_usd(a.cost_per_query_usd)),
    ]
    title = "Long context vs RAG" + (
        " vs working + long-term memory" if len(approaches) > 2 else ""
    )
    side = Table(title=f"{title} (per query)", title_justify="left")
    side.add_column("quantity", style="cyan")
    side.add_column("long context", justify="right")
    side.add_column(f"RAG (top {c.top_k} x {c.chunk_tokens})", justify="right")
    if c.working_memory is not None:
        side.add_column(_working_label(c), justify="right")
    for r in rows:
        side.add_row(*r)

    lim = c.limits
    limits = Table(title="Corpus size limits", show_header=False, title_justify="left")
    limits.add_column("quantity", style="cyan")
    limits.add_column("value", justify="right")
    limits.add_row(
        "long context stops fitting above",
        f"{lim.long_context_max_corpus_tokens:,} tokens ({lim.long_context_binding})",
    )
    limits.add_row("  memory (weights + KV)", f"{lim.long_context_max_corpus_tokens_memory:,}")
    limits.add_row("  model context", f"{lim.long_context_max_corpus_tokens_context:,}")
    limits.add_row(
        f"RAG stops fitting above ({s.index} index on {s.device})",
        f"{lim.rag_max_corpus_tokens:,} tokens ({lim.rag_max_chunks:,} chunks)",
    )
    limits.add_row("RAG TTFT <= long context from", fmt_tokens(lim.break_even_ttft_corpus_tokens))
    limits.add_row("RAG cost <= long context from", fmt_tokens(lim.break_even_cost_corpus_tokens))
    limits.add_row(f"one-off: embed the corpus ({e.device})", fmt_time(e.corpus_time_s))
    notes = [
        "[dim]fit = weights + KV cache within usable memory and within the model's context; "
        "cost = device-seconds x each profile's price per hour[/]"
    ]
    if s.random_access_latency_default:
        notes.append(f"[yellow]random-access latency: {s.random_access_latency_source}[/]")
    return Group(f"[bold]{_title(c)}[/]", side, search_table(c), limits, *notes)
