"""Rich tables (terminal) and HTML (notebooks) for an Estimate: what ``console.print(est)`` and
a notebook cell show (``Estimate.__rich__`` / ``_repr_html_`` call these)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from rich.console import Group
from rich.markup import escape
from rich.table import Table

from hwsim.format import fmt_band, fmt_bytes, fmt_count, fmt_flops, fmt_time

if TYPE_CHECKING:
    from hwsim.inference.results import Estimate


def _rows(est: Estimate) -> dict[str, list[tuple[str, str]]]:
    m, p, d, lat, thr, cap = (
        est.memory,
        est.prefill,
        est.decode,
        est.latency,
        est.throughput,
        est.capacity,
    )
    slo = est.config.tpot_slo_s
    return {
        "Memory per GPU": [
            ("weights", fmt_bytes(m.weights_bytes)),
            ("KV cache per token", fmt_bytes(m.kv_cache_bytes_per_token)),
            ("KV cache (batch x context)", fmt_bytes(m.kv_cache_bytes)),
            ("recurrent state per sequence", fmt_bytes(m.state_bytes_per_sequence)),
            ("activation workspace", fmt_bytes(m.activation_workspace_bytes)),
            ("total", fmt_bytes(m.total_bytes)),
            ("usable / capacity", f"{fmt_bytes(m.usable_bytes)} / {fmt_bytes(m.capacity_bytes)}"),
            ("fits", "yes" if m.fits else "NO"),
        ],
        "Latency": [
            (
                "prefill (TTFT)",
                f"{fmt_time(lat.ttft_s)}{fmt_band(lat.ttft_low_s, lat.ttft_high_s)}"
                f"  [{p.bound}-bound, {fmt_flops(p.flops)}]",
            ),
            (
                "decode (TPOT, mean)",
                f"{fmt_time(lat.tpot_s)}{fmt_band(lat.tpot_low_s, lat.tpot_high_s)}"
                f"  [{d.bound}-bound]"
                if est.config.gen_len
                else "none (gen_len 0: prefill only)",
            ),
            ("TPOT bandwidth floor", fmt_time(d.bandwidth_floor_s)),
            ("end to end", f"{fmt_time(lat.e2e_s)}{fmt_band(lat.e2e_low_s, lat.e2e_high_s)}"),
            *([("band", lat.band)] if lat.band else []),
        ],
        "Throughput": [
            ("output tokens/s (this batch)", fmt_count(thr.output_tokens_per_s)),
            ("decode tokens/s (steady)", fmt_count(thr.decode_tokens_per_s)),
            ("prompt tokens/s (prefill)", fmt_count(thr.prompt_tokens_per_s)),
        ],
        "Capacity": [
            (f"max batch at {fmt_count(cap.context_tokens)} tokens", fmt_count(cap.max_batch)),
            ("max context at batch 1", fmt_count(cap.max_context_tokens)),
            (
                "users per GPU" + (f" (TPOT <= {fmt_time(slo)})" if slo else ""),
                fmt_count(cap.users_per_gpu),
            ),
            ("binding constraint", str(cap.binding_constraint)),
        ],
    }


def _title(est: Estimate) -> str:
    c, d = est.config, est.config.deployment
    return (
        f"{c.model} on {c.hardware}  tp={d.tp} pp={d.pp} dp={d.dp}  "
        f"weights {d.weight_dtype}, KV {d.kv_dtype}  batch {fmt_count(c.batch)}, "
        f"prompt {fmt_count(c.prompt_len)}, generate {fmt_count(c.gen_len)}"
    )


def estimate_tables(est: Estimate) -> Group:
    parts: list[Table | str] = []
    for title, rows in _rows(est).items():
        table = Table(title=title, show_header=False, title_justify="left", min_width=60)
        table.add_column("quantity", style="cyan")
        table.add_column("value", justify="right")
        for key, value in rows:
            table.add_row(key, value)
        parts.append(table)
    ctx = est.context
    beyond = (
        f"context {fmt_count(est.capacity.context_tokens)} exceeds the "
        f"{ctx.max_supported_tokens:,} tokens {est.config.model} supports "
        f"(trained {ctx.max_trained_tokens:,})"
    )
    note = escape(ctx.position_note)
    if ctx.extrapolation:
        parts.append(f"[yellow]warning:[/] {beyond}: this is extrapolation ({note})")
    elif ctx.position_status == "bounded":
        parts.append(f"[yellow]note:[/] {beyond}, but {note}: no extrapolation")
    stages = est.config.layers_per_stage
    if len(set(stages)) > 1:
        parts.append(
            f"[yellow]note:[/] pp={len(stages)} does not divide the layers evenly: "
            f"{'+'.join(map(str, stages))} per stage; the fullest stage sets memory and pace"
        )
    parts.append(f"[dim]predictor: {est.config.predictor}[/]")
    return Group(f"[bold]{_title(est)}[/]", *parts)


def estimate_html(est: Estimate) -> str:
    out = [f"<h4>{html.escape(_title(est))}</h4>"]
    for title, rows in _rows(est).items():
        out.append(f"<table><caption style='text-align:left'><b>{html.escape(title)}</b></caption>")
        out += [
            f"<tr><td>{html.escape(k)}</td><td style='text-align:right'>{html.escape(v)}</td></tr>"
            for k, v in rows
        ]
        out.append("</table>")
    return "\n".join(out)
