"""``hwsim train --report DIR``: the memory per GPU against sequence length for each
recomputation policy, the step-time breakdown, and the result as JSON.

    DIR/memory_vs_seq_len.png   weights + grads + optimizer and activations per GPU, one line
                                per policy (none, selective, full), the usable memory dashed
    DIR/step_breakdown.png      one optimizer step: forward, backward, recomputation, the
                                exposed communication of each kind, the pipeline bubble, the
                                optimizer
    DIR/training.json           the result (``hwsim train --json``) and the sweep's numbers

Every point of the sweep is :func:`hwsim.training.api.evaluate` of the same layout with only
``seq_len`` (and the policy) changed; a layout the sweep cannot build at some length (e.g. a
micro-batch count that no longer divides) leaves that point out.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import HwsimError
from hwsim.safe_write import check_targets, folder_lock, write_atomic
from hwsim.training.results import TrainingResult

POLICIES = ("none", "selective", "full")
FILES = ("memory_vs_seq_len.png", "step_breakdown.png", "training.json")
STEP_PARTS = (  # (label, TrainingStep field): per micro-batch or per step (step_parts_s)
    ("forward", "forward_s"),
    ("backward", "backward_s"),
    ("recompute", "recompute_s"),
    ("TP comm", "tp_comm_s"),
    ("PP comm", "pp_comm_s"),
    ("MoE all-to-all", "moe_comm_s"),
    ("CP ring (exposed)", "cp_comm_s"),
    ("DP comm (exposed)", "dp_exposed_s"),
    ("pipeline bubble", "bubble_s"),
    ("optimizer", "optimizer_s"),
)


@dataclass(frozen=True)
class MemorySweep:
    """Per policy, bytes per GPU at each sequence length (NaN where the layout fails)."""

    seq_lens: np.ndarray
    model_states_bytes: dict[str, np.ndarray]  # weights + gradients + optimizer states
    activations_bytes: dict[str, np.ndarray]
    usable_bytes: float


def seq_len_sweep(seq_len: int, points: int = 9) -> np.ndarray:
    """Powers of two from 512 to 16x the run's sequence length (at least 64k), with it."""
    top = max(1 << 16, 16 * seq_len)
    return np.unique(np.array([*(1 << k for k in range(9, top.bit_length())), seq_len]))


def memory_sweep(model, hardware, gpus: int, layout: dict[str, Any]) -> MemorySweep:
    """The memory per GPU of ``layout`` (``TrainingResult.layout``) at each sweep length, for
    each recomputation policy."""
    from hwsim.training.api import train

    settings = {k: v for k, v in layout.items() if k not in ("recompute", "seq_len")}
    lengths = seq_len_sweep(int(layout["seq_len"]))
    states: dict[str, np.ndarray] = {}
    acts: dict[str, np.ndarray] = {}
    usable = float("nan")
    for policy in POLICIES:
        s, a = np.full(lengths.size, np.nan), np.full(lengths.size, np.nan)
        for i, n in enumerate(lengths):
            try:
                r = train(model, hardware, gpus, recompute=policy, seq_len=int(n), **settings)
            except HwsimError:
                continue
            mem = r.memory
            s[i] = mem.params_bytes + mem.grads_bytes + mem.optimizer_bytes
            a[i] = mem.activations_bytes
            usable = mem.usable_bytes
        states[policy], acts[policy] = s, a
    return MemorySweep(lengths, states, acts, usable)


def step_parts_s(result: TrainingResult) -> list[tuple[str, float]]:
    """(label, seconds per optimizer step) of the step's parts, in :data:`STEP_PARTS` order:
    per micro-batch parts times the micro-batches, the rest once per step."""
    st = result.step
    per_micro = {"forward_s", "backward_s", "recompute_s", "tp_comm_s", "pp_comm_s", "moe_comm_s",
                 "cp_comm_s"}  # fmt: skip
    out = []
    for label, field in STEP_PARTS:
        value = getattr(st, field)
        out.append((label, value * st.micro_batches if field in per_micro else value))
    return out


def _memory_png(sweep: MemorySweep, result: TrainingResult) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    # selective recomputation drops only the stored attention scores: with FlashAttention
    # (none stored) its line lies on top of 'none', hence the different markers and widths
    for policy, style, marker, width in zip(POLICIES, ("-", "--", ":"), "os^", (3.0, 1.5, 1.5)):
        total = sweep.model_states_bytes[policy] + sweep.activations_bytes[policy]
        ax.plot(sweep.seq_lens, total / 1e9, style, marker=marker, lw=width,
                label=f"total, recompute {policy}")  # fmt: skip
    states = sweep.model_states_bytes["none"]
    ax.plot(sweep.seq_lens, states / 1e9, color="grey", label="weights + grads + optimizer")
    ax.axhline(sweep.usable_bytes / 1e9, color="red", ls="--", lw=1, label="usable memory")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("memory per GPU (GB)")
    lay = result.layout
    ax.set_title(
        f"{result.model} on {result.gpus} x {result.hardware}: tp {lay['tp']} pp {lay['pp']} "
        f"dp {lay['dp']}, micro-batch {lay['micro_batch']}",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _png(fig)


def _step_png(result: TrainingResult) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = step_parts_s(result)
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    left = 0.0
    for label, seconds in parts:
        if seconds > 0:
            ax.barh([0], [seconds], left=left, label=f"{label} {seconds:.3g} s")
            left += seconds
    ax.set_yticks([])
    ax.set_xlabel("seconds per optimizer step (DP communication: its part not hidden)")
    ax.set_title(
        f"step {result.step.time_s:.3g} s, MFU {result.throughput.mfu:.1%} "
        f"({result.step.micro_batches} micro-batches)",
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    fig.tight_layout()
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def check_report_dir(out_dir: Path, overwrite: bool = False) -> list[Path]:
    """The report's files, checked before any work: no links, nothing overwritten unless
    asked."""
    out_dir = Path(out_dir)
    if out_dir.is_symlink():
        raise HwsimError(f"{out_dir} is a symbolic link; refusing to write through it")
    try:
        return check_targets([out_dir / name for name in FILES], overwrite)
    except HwsimError as exc:
        raise HwsimError(f"{out_dir}: {exc}") from None


def write_training_report(
    result: TrainingResult, model, hardware, out_dir: str | Path, overwrite: bool = False
) -> list[Path]:
    """Write the two plots and the JSON into ``out_dir`` (module docstring)."""
    out_dir = Path(out_dir)
    check_report_dir(out_dir, overwrite)
    sweep = memory_sweep(model, hardware, result.gpus, result.layout)
    figures = {"memory_vs_seq_len.png": _memory_png(sweep, result)}
    figures["step_breakdown.png"] = _step_png(result)
    data = {
        "result": result.to_dict(),
        "memory_vs_seq_len": {
            "seq_len": sweep.seq_lens.tolist(),
            "usable_bytes": sweep.usable_bytes,
            **{
                f"{policy}.{kind}": [None if np.isnan(x) else float(x) for x in values[policy]]
                for kind, values in (
                    ("model_states_bytes", sweep.model_states_bytes),
                    ("activations_bytes", sweep.activations_bytes),
                )
                for policy in POLICIES
            },
        },
        "step_parts_s": dict(step_parts_s(result)),
    }
    with folder_lock(out_dir):
        check_report_dir(out_dir, overwrite)
        for name, png in figures.items():
            write_atomic(out_dir / name, png)
        write_atomic(out_dir / "training.json", json.dumps(data, indent=1))
    return [out_dir / name for name in FILES]
