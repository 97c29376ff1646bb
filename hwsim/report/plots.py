"""Matplotlib figures of a plan (Agg backend; each returns PNG bytes)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hwsim.inference.engine import decode_step_cost, prefill_cost  # noqa: E402
from hwsim.perf.roofline import peak_flops_per_s  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def latency_vs_load(result, slo) -> bytes:
    """Analytic TTFT p95 and TPOT of the top candidate against per-replica load."""
    curve = result.load_curve
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(curve["rate_per_s"], curve["ttft_s"] * 1e3, label="TTFT p95 (analytic)")
    ax.plot(curve["rate_per_s"], curve["tpot_s"] * 1e3, label="TPOT (analytic)")
    for name, target, style in (
        ("TTFT SLO", slo.ttft_p95_s, "--"),
        ("TPOT SLO", slo.tpot_p95_s, ":"),
    ):
        if target:
            ax.axhline(target * 1e3, color="grey", linestyle=style, label=name)
    sim = result.simulated
    if sim:
        ax.scatter(
            [sim["rate_per_s"]] * 2,
            [sim["ttft_p95_s"] * 1e3, sim["tpot_p95_s"] * 1e3],
            color="black",
            zorder=5,
            label="simulated p95",
        )
    ax.axvline(result.per_replica_rate_per_s, color="green", alpha=0.4, label="operating point")
    ax.set_xlabel("requests/s per replica")
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.set_title(f"Latency vs load: {result.candidate.label}", fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def users_vs_context(model, results, tpot_slo_s) -> bytes:
    import hwsim

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    contexts = np.array([1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072], dtype=float)
    for r in results:
        c = r.candidate
        try:
            est = hwsim.estimate(
                model,
                c.hardware,
                c.deployment,
                prompt_len=contexts,
                gen_len=1,
                tpot_slo_s=tpot_slo_s,
            )
        except hwsim.HwsimError:
            continue
        ax.plot(contexts, np.maximum(est.capacity.users_per_gpu, 1e-1), marker="o", label=c.label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("users per GPU")
    ax.set_title("Concurrent sequences per GPU (memory and TPOT SLO)", fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def cost_by_hardware(feasible) -> bytes:
    best: dict[str, Any] = {}
    for r in feasible:
        hw = r.candidate.hardware
        if (
            hw not in best
            or r.cost_per_million_output_tokens_usd < best[hw].cost_per_million_output_tokens_usd
        ):
            best[hw] = r
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    names = list(best)
    ax.bar(names, [best[n].cost_per_million_output_tokens_usd for n in names], color="tab:blue")
    ax.set_ylabel("USD per million output tokens")
    ax.set_title("Cheapest feasible configuration per hardware", fontsize=9)
    return _png(fig)


def memory_breakdown(result) -> bytes:
    est = result.estimate
    parts = {
        "weights": est.get("memory.weights_bytes", 0.0),
        "KV cache": est.get("memory.kv_cache_bytes", 0.0),
        "workspace": est.get("memory.activation_workspace_bytes", 0.0),
    }
    capacity = est.get("memory.capacity_bytes", 0.0)
    parts["free"] = max(capacity - sum(parts.values()), 0.0)
    fig, ax = plt.subplots(figsize=(6.4, 1.9))
    left = 0.0
    for name, value in parts.items():
        ax.barh([0], [value / 1e9], left=left, label=f"{name} {value / 1e9:.1f} GB")
        left += value / 1e9
    ax.set_yticks([])
    ax.set_xlabel("GB per GPU")
    ax.set_title(f"Memory at the operating point (batch {result.batch_at_slo})", fontsize=9)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.45))
    return _png(fig)


def roofline(dep, result, prompt_len: float, context: float) -> bytes:
    """The device roofline with the top candidate's prefill and decode ops on it."""
    hw = dep.hardware
    peak = hw.matrix_peak_flops_per_s(dep.compute_dtype)
    bw = hw.bandwidth_bytes_per_s
    intensity = np.logspace(-1, 4, 200)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(intensity, np.minimum(peak, bw * intensity), color="black", label="roofline")
    phases = (
        ("prefill", prefill_cost(dep, 1.0, prompt_len), "o"),
        ("decode", decode_step_cost(dep, float(result.batch_at_slo), context), "s"),
    )
    for name, cost, marker in phases:
        for t in cost.op_times:
            if t.op.op_class == "communication":
                continue
            flops, nbytes = float(np.sum(t.op.flops)), float(np.sum(t.op.hbm_bytes))
            if flops <= 0 or nbytes <= 0:
                continue
            achieved = flops / float(np.sum(t.time_s))
            ax.scatter(
                flops / nbytes,
                min(achieved, peak_flops_per_s(hw, t.op)),
                marker=marker,
                s=18,
                label=f"{name}: {t.op.name}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("FLOP/s")
    ax.set_title(f"Roofline of {hw.id} ({dep.compute_dtype}) with predicted ops", fontsize=9)
    ax.legend(fontsize=5, ncol=2)
    return _png(fig)
