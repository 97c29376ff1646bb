"""``hwsim rag --plot``: each approach's TTFT, cost per query and GPU memory against corpus size
(long context, RAG and, when the scenario asks for it, working + long-term memory)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from hwsim.rag.pipeline import RagSetup, evaluate
from hwsim.rag.results import Approach
from hwsim.safe_write import write_atomic

PANELS = (
    ("ttft_s", "Time to first token (retrieval + prefill)", "s"),
    ("cost_per_query_usd", "Cost per query", "$"),
    ("llm_memory_bytes", "Weights + KV cache per GPU", "B"),
)


def corpus_sweep(corpus_tokens: float, points: int = 25) -> np.ndarray:
    """Log-spaced corpus sizes from 1,000 tokens to 100x the scenario's (at least 10M)."""
    top = max(1e7, 100.0 * corpus_tokens)
    return np.unique(np.round(np.geomspace(1e3, top, points)))


def plot_approaches(setup: RagSetup, corpus_tokens: float, path: Path) -> None:
    """Write the chart to ``path`` (its suffix picks the format); crosses mark corpus sizes an
    approach cannot serve (memory, context or index), a dashed line the usable GPU memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, FuncFormatter

    sizes = corpus_sweep(corpus_tokens)
    ev = evaluate(setup, sizes)
    approaches: list[Approach] = [ev.long_context, ev.rag]
    if ev.working is not None:
        approaches.append(ev.working)
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    fig.subplots_adjust(left=0.05, right=0.98, top=0.8, bottom=0.14, wspace=0.28)
    colors = [plt.get_cmap("tab10")(i) for i in range(len(approaches))]
    for ax, (key, title, unit) in zip(axes, PANELS):
        for a, color in zip(approaches, colors):
            y = np.asarray(getattr(a, key), dtype=float)
            fits = np.asarray(a.fits, dtype=bool)
            ax.plot(sizes, y, "-", color=color, lw=2.2, label=a.name)
            ax.plot(sizes[~fits], y[~fits], "x", color=color, ms=8, mew=2)
        if key == "llm_memory_bytes":
            ax.axhline(approaches[0].usable_bytes, ls="--", color="grey", lw=1)
            ax.text(sizes[0], approaches[0].usable_bytes * 1.1, "usable", color="grey")
        ax.axvline(corpus_tokens, ls=":", color="black", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("corpus (tokens)")
        ax.xaxis.set_major_formatter(EngFormatter(unit="", sep=""))
        if unit == "$":
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"${y:g}"))
        else:
            ax.yaxis.set_major_formatter(EngFormatter(unit=unit))
        ax.grid(True, which="major", alpha=0.35)
    d = setup.dep
    fig.suptitle(
        f"{d.model.id} on {d.hardware.id} (tp {d.tp}): batch {setup.batch}, "
        f"{setup.gen_len} generated tokens; x = cannot serve, dotted = the scenario's corpus",
        fontsize=13,
    )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.93), ncol=3)
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=120, format=path.suffix.lower().lstrip("."))
        write_atomic(path, buffer.getvalue())
    finally:
        plt.close(fig)
