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


def retrieval_rows(c: RagComparison) -> list[tuple[str, str, str]]:
    """The retrieval stages of one query (all rounds), each with its device."""
    rag, s, e, r = c.rag, c.search, c.embedding, c.retrieval
    rounds = _rounds(r.rounds)
    rows = [
        (f"query embedding ({e.device}{rounds})", "-", fmt_time(rag.embedding_s)),
        (
            f"vector search ({s.index}, {s.device}{rounds})",
            "-",
            f"{fmt_time(rag.search_s)} ({s.bound}-bound)",
        ),
    ]
    if r.rerank is not None:
        rr = r.rerank
        rows.append(
            (
                f"rerank ({rr.model} on {rr.device}, top {rr.top}{rounds})",
                "-",
                fmt_time(rag.rerank_s),
            )
        )
    if r.rounds > 1:
        rows.append(
            (
                f"follow-up queries ({r.rounds - 1} x {r.followup_tokens} tokens, {c.hardware})",
                "-",
                fmt_time(rag.followup_s),
            )
        )
    rows.append(("retrieval total", "-", fmt_time(rag.retrieval_s)))
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


def comparison_table(c: RagComparison) -> Group:
    lc, rag, s, e = c.long_context, c.rag, c.search, c.embedding
    max_ctx = c.long_context_estimate.context.max_supported_tokens
    slo = f" (TPOT <= {fmt_time(c.tpot_slo_s)})" if c.tpot_slo_s else ""
    rows = [
        ("prompt tokens", f"{lc.prompt_tokens:,.0f}", f"{rag.prompt_tokens:,.0f}"),
        *retrieval_rows(c),
        (f"prefill ({c.hardware})", fmt_time(lc.prefill_s), fmt_time(rag.prefill_s)),
        ("TTFT", fmt_time(lc.ttft_s), fmt_time(rag.ttft_s)),
        ("TPOT (mean)", fmt_time(lc.tpot_s), fmt_time(rag.tpot_s)),
        ("end to end", fmt_time(lc.e2e_s), fmt_time(rag.e2e_s)),
        ("KV cache (batch)", fmt_bytes(lc.kv_cache_bytes), fmt_bytes(rag.kv_cache_bytes)),
        ("weights + KV per GPU", fmt_bytes(lc.llm_memory_bytes), fmt_bytes(rag.llm_memory_bytes)),
        (
            f"index + embedder ({s.device})",
            "-",
            f"{fmt_bytes(rag.search_device_bytes)} of {fmt_bytes(rag.search_device_usable_bytes)}",
        ),
        ("fits", _fits(lc, max_ctx), _fits(rag, max_ctx)),
        ("users per GPU" + slo, fmt_count(lc.users_per_gpu), fmt_count(rag.users_per_gpu)),
        (
            "GPU-seconds per query",
            f"{lc.llm_gpu_s_per_query:,.3g}",
            f"{rag.llm_gpu_s_per_query:,.3g}",
        ),
        ("cost per query", fmt_usd(lc.cost_per_query_usd), fmt_usd(rag.cost_per_query_usd)),
    ]
    side = Table(title="Long context vs RAG (per query)", title_justify="left")
    side.add_column("quantity", style="cyan")
    side.add_column("long context", justify="right")
    side.add_column(f"RAG (top {c.top_k} x {c.chunk_tokens})", justify="right")
    for row in rows:
        side.add_row(*row)

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
