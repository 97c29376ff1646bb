"""``hwsim context``: what a context length costs, per model or attention/memory variant.

A view of :func:`hwsim.inference.context.context_sweep`: a rich table per variant (lengths as rows),
``--json`` (one object, a list per key) and ``--plot FILE.png`` (each quantity against context
length, log-log, one line per variant).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwsim.cli.common import (
    check_new_file,
    console,
    deployment_flags,
    err_console,
    fail,
    handle_errors,
    parse_int_list,
    print_json,
)
from hwsim.format import fmt_bytes, fmt_count, fmt_flops, fmt_time
from hwsim.inference.context import ContextSweep, context_sweep
from hwsim.safe_write import write_atomic

DEFAULT_LENGTHS = "1k,4k,32k,128k,1M"
TABLE_MIN_WIDTH = 210  # characters; used when stdout is not a terminal (pipes, files, tests)


# -- table -------------------------------------------------------------------------------------


def _flags(rows: dict, i: int) -> str:
    out = []
    if rows["position_status"][i] == "cannot_run":
        return "cannot run (past the learned position table)"
    if rows["position_status"][i] == "bounded":
        out.append("past supported, distances bounded")
    if rows["extrapolation"][i]:
        need = rows["rope_factor_needed"][i]
        out.append(f"extrapolation (RoPE x{need:.3g})" if np.isfinite(need) else "extrapolation")
    if not rows["weights_fit"][i]:
        out.append("weights do not fit")
    elif not rows["fits"][i]:
        out.append("does not fit")
    return ", ".join(out)


def _fmt_usd(x: float) -> str:
    return "–" if not np.isfinite(x) else f"${x:,.3g}" if x < 1000 else f"${x:,.0f}"


def _fmt_pairs(x: float) -> str:
    """Counts below a million with separators, larger ones as 8.00e6."""
    if not np.isfinite(x) or x < 1e6:
        return fmt_count(x)
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _title(sweep: ContextSweep, label: str, rows: dict) -> str:
    d = sweep.deployment
    trained, supported = int(rows["max_trained_tokens"][0]), int(rows["max_supported_tokens"][0])
    factor = rows["rope_scaling_factor"][0]
    if supported != trained and np.isfinite(factor):
        context = f"supported {supported:,} tokens (trained {trained:,}, RoPE scaling x{factor:g})"
    else:
        context = f"supported {supported:,} tokens"
    kind = " (encoder)" if rows["architecture"][0] == "encoder" else ""
    return (
        f"{label}{kind} on {sweep.hardware}: batch {sweep.batch:g}, tp {d.tp}, "
        f"{d.weight_dtype} weights, {d.kv_dtype} KV; {context}"
    )


def sweep_table(sweep: ContextSweep, label: str) -> Table:
    rows = sweep.select(label)
    table = Table(title=escape(_title(sweep, label, rows)), title_justify="left")
    headers = (
        "tokens",
        "≈ words",
        "pairs /\nhead/layer",
        "prefill\nFLOPs",
        "KV/state\nper seq",
        "score matrix\n/layer (naive)",
        "attn HBM/layer\nnaive",
        "attn HBM/layer\ntiled",
        "TTFT",
        "TPOT",
        "users\n/GPU",
        "$ per 1M\nprompt tok",
        "$ per 1M\noutput tok",
        "flags",
    )
    for h in headers:
        table.add_column(h, justify="left" if h == "flags" else "right")
    for i, n in enumerate(rows["length_tokens"]):
        table.add_row(
            f"{int(n):,}",
            f"{rows['words_equivalent'][i]:,.0f}",
            _fmt_pairs(rows["pairs_per_head_per_layer"][i]),
            fmt_flops(rows["prefill_flops"][i]),
            fmt_bytes(rows["kv_state_bytes_per_sequence"][i]),
            fmt_bytes(rows["score_matrix_bytes_per_layer"][i]),
            fmt_bytes(rows["attention_hbm_bytes_per_layer_naive"][i]),
            fmt_bytes(rows["attention_hbm_bytes_per_layer_tiled"][i]),
            fmt_time(rows["ttft_s"][i]),
            fmt_time(rows["tpot_s"][i]),
            fmt_count(rows["users_per_gpu"][i]),
            _fmt_usd(rows["cost_per_million_prompt_tokens_usd"][i]),
            _fmt_usd(rows["cost_per_million_output_tokens_usd"][i]),
            _flags(rows, i),
        )
    return table


def print_sweep(sweep: ContextSweep) -> None:
    out = console
    if not console.is_terminal and console.width < TABLE_MIN_WIDTH:
        out = Console(width=TABLE_MIN_WIDTH, highlight=False)
    for label in sweep.variants:
        out.print(sweep_table(sweep, label))
        out.print()
    slo = f"{sweep.tpot_slo_s * 1e3:g} ms" if sweep.tpot_slo_s else "none"
    notes = [
        "pairs: query-key pairs a prefill scores per head, mean over attention layers; "
        "score matrix: bytes a naive kernel materialises per layer (all heads); attn HBM: "
        "HBM traffic of the attention core per layer in prefill, naive vs tiled (FlashAttention)",
        f"TTFT: prefill of that many tokens; TPOT: decode step after it; users/GPU: sequences "
        f"of that context that fit in memory (TPOT SLO: {slo})",
        f"$ per 1M tokens: GPU-hours of the prefill (prompt) or of one decode step at batch "
        f"{sweep.batch:g} (output) at {_fmt_usd(sweep.price_per_gpu_hour_usd)} per GPU-hour "
        f"({sweep.price_source or 'no price in the hardware profile'})",
        *sweep.notes(),
    ]
    for line in notes:
        out.print(f"[dim]* {escape(line)}[/]", highlight=False)


# -- plot --------------------------------------------------------------------------------------

PANELS = (
    ("kv_state_bytes_per_sequence", "KV cache / recurrent state per sequence", "B"),
    ("prefill_flops", "Prefill FLOPs (whole model)", "FLOP"),
    ("ttft_s", "TTFT (prefill of the whole context)", "s"),
    ("tpot_s", "TPOT (one decode step at that context)", "s"),
    ("users_per_gpu", "Users per GPU (\u25bc at the bottom: not even one fits)", ""),
    (
        "attention_hbm_bytes_per_layer",
        "Attention HBM traffic per layer in prefill:\n"
        "naive kernel (dashed) vs tiled FlashAttention (solid)",
        "B",
    ),
)


def plot_sweep(sweep: ContextSweep, path: Path) -> None:
    """Each quantity against context length, log-log, one colour per variant; open markers
    mark extrapolation, black crosses lengths that do not fit in memory; lengths a model cannot
    run (past a learned position table) are not drawn. Earlier variants are drawn wider so
    that identical values (e.g. a window model below its window) stay visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(2, 3, figsize=(16, 10))
    fig.subplots_adjust(left=0.06, right=0.98, top=0.84, bottom=0.1, hspace=0.42, wspace=0.26)
    colors = [plt.get_cmap("tab10")(i) for i in range(10)]
    handles = []
    for k, label in enumerate(sweep.variants):
        rows = sweep.select(label)
        color, lw = colors[k % len(colors)], max(3.4 - 0.7 * k, 1.3)
        n, beyond = rows["length_tokens"], rows["extrapolation"]  # cannot_run rows are NaN
        for ax, (key, _title, _unit) in zip(axes.flat, PANELS):
            if key == "attention_hbm_bytes_per_layer":
                series = [(rows[f"{key}_naive"], "--"), (rows[f"{key}_tiled"], "-")]
            else:
                series = [(rows[key], "-")]
            for y, style in series:
                if key == "users_per_gpu" and np.any(y == 0):
                    ax.plot(
                        n[y == 0],
                        np.full(int(np.sum(y == 0)), 0.03 + 0.05 * k),  # stacked per variant
                        "v",
                        color=color,
                        ms=8,
                        transform=ax.get_xaxis_transform(),
                        clip_on=False,
                    )
                y = np.where(y > 0, y, np.nan)
                if not np.isfinite(y).any():
                    continue
                ax.plot(n, y, style, color=color, lw=lw)
                ax.plot(n[~beyond], y[~beyond], "o", color=color, ms=lw + 3)
                ax.plot(n[beyond], y[beyond], "o", mfc="white", mec=color, ms=lw + 3.5, mew=1.6)
                short = ~rows["fits"]
                ax.plot(n[short], y[short], "x", color="black", ms=lw + 5, mew=1.8, zorder=5)
        encoder = rows["architecture"][0] == "encoder"
        name = f"{label} (encoder: one forward, no decode)" if encoder else label
        handles.append(Line2D([], [], color=color, marker="o", lw=lw, label=name))
    for ax, (_key, title, unit) in zip(axes.flat, PANELS):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("context length (tokens)")
        ax.xaxis.set_major_formatter(EngFormatter(unit="", sep=""))
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
        if not any(np.isfinite(line.get_ydata()).any() for line in ax.lines):
            ax.text(
                0.5,
                0.5,
                "n/a for these variants",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
            continue
        low, high = ax.get_ylim()
        if np.log10(high / low) < 2.5:  # short ranges: label 1-2-5 steps, not one decade
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(EngFormatter(unit=unit))
        ax.yaxis.set_minor_formatter(NullFormatter())
    handles.append(
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            mfc="white",
            mec="black",
            ms=7,
            label="extrapolation: beyond the distances the model supports",
        )
    )
    handles.append(
        Line2D([], [], ls="", marker="x", color="black", ms=8, mew=1.8, label="does not fit")
    )
    d = sweep.deployment
    fig.suptitle(
        f"What context costs on {sweep.hardware}: batch {sweep.batch:g}, tp {d.tp}, "
        f"{d.weight_dtype} weights, {d.kv_dtype} KV cache",
        fontsize=14,
        y=0.985,
    )
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.955),
        ncol=min(len(handles), 5),
        fontsize=10.5,
        frameon=False,
    )
    fig.text(
        0.5,
        0.015,
        "Users per GPU: sequences of that context whose KV/state fits next to the weights. "
        "Encoders have no decode and no KV cache; attention-free layers (Mamba) score no pairs "
        "and move no attention bytes.\n"
        f"1 token ~ 0.75 words (assumption). Times: {sweep.predictor}.",
        ha="center",
        va="bottom",
        fontsize=9,
        color="dimgrey",
    )
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=130, format=path.suffix.lower().lstrip("."))
        write_atomic(path, buffer.getvalue())
    finally:
        plt.close(fig)


def check_plot_path(path: Path, force: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    supported = Figure().canvas.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in supported:
        fail(f"--plot {path}: unknown image type {suffix!r}; use one of {', '.join(supported)}")
    check_new_file("--plot", path, force)


# -- command -----------------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    @deployment_flags
    def context(
        model: str = typer.Option(..., help="model id, YAML path or config.json"),
        hardware: str = typer.Option(..., help="hardware id or YAML path"),
        lengths: str = typer.Option(
            DEFAULT_LENGTHS, help="context lengths: k = 1,000, M = 1,000,000, Ki/Mi binary"
        ),
        variant: list[str] = typer.Option(
            [],
            "--variant",
            help="the base model with another mixer on every layer, kind:param=value,... "
            "(e.g. sliding_window:window=4096); repeatable",
        ),
        compare_model: list[str] = typer.Option(
            [], "--compare-model", help="another model to price side by side; repeatable"
        ),
        batch: int = typer.Option(1, help="concurrent sequences priced in TTFT and TPOT"),
        gen_len: int = typer.Option(1, help="generated tokens TPOT averages over"),
        tpot_slo_ms: float | None = typer.Option(None, help="TPOT SLO capping users per GPU"),
        plot: Path | None = typer.Option(None, help="write a log-log chart (e.g. FILE.png)"),
        force: bool = typer.Option(False, help="overwrite an existing --plot file"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
        deployment: dict | None = None,
    ) -> None:
        """Price context lengths: pairs, FLOPs, KV/state, score bytes, TTFT, TPOT, users/GPU."""
        n = parse_int_list(lengths, "--lengths")
        if plot is not None:
            check_plot_path(plot, force)
        if tpot_slo_ms is not None and not 0 < tpot_slo_ms < float("inf"):
            fail(f"--tpot-slo-ms must be a finite number > 0, got {tpot_slo_ms}")
        sweep = context_sweep(
            model,
            hardware,
            n,
            variants=[*variant, *compare_model],
            batch=batch,
            gen_len=gen_len,
            tpot_slo_s=tpot_slo_ms / 1e3 if tpot_slo_ms is not None else None,
            **(deployment or {}),
        )
        if json_out:
            print_json(sweep.to_dict())
        else:
            print_sweep(sweep)
        if plot is not None:
            try:
                plot_sweep(sweep, plot)
            except OSError as exc:
                fail(f"--plot {plot}: cannot write ({exc.strerror or exc})")
            err_console.print(f"wrote {plot}", highlight=False)
