"""How a plan with disaggregated candidates reads: the best aggregated and disaggregated plans
side by side, the recommendation sentence of a disaggregated winner and the plan's
assumptions about the hand-over (the pricing is :mod:`hwsim.planner.disaggregated`)."""

from __future__ import annotations

from typing import Any

from hwsim.planner.disaggregated import (
    DisaggregatedCandidate,
    DisaggregatedResult,
    goodput_per_gpu,
    is_disaggregated,
)
from hwsim.planner.spec import DisaggregationSpec


def comparison(result) -> dict[str, Any] | None:
    """The best (cheapest) aggregated and disaggregated plans side by side, and the highest
    per-GPU goodput of each kind (DistServe's metric); None when no disaggregated candidate
    was searched."""
    everything = result.feasible + result.pruned
    if not any(is_disaggregated(r) for r in everything):
        return None
    headroom = result.scenario.slo.headroom_fraction
    peak = result.workload.peak_rate_per_s

    def side(kind: bool) -> dict[str, Any] | None:
        rows = [r for r in result.feasible if is_disaggregated(r) == kind]
        if not rows:
            return None
        best = rows[0]
        top = max(rows, key=lambda r: goodput_per_gpu(r, headroom))
        out: dict[str, Any] = {
            "label": best.candidate.label,
            "gpus": best.gpus,
            "cost_per_hour_usd": best.cost_per_hour_usd,
            "planned_rate_per_gpu": peak / best.gpus,
            "goodput_per_gpu": goodput_per_gpu(best, headroom),
            "highest_goodput_per_gpu": goodput_per_gpu(top, headroom),
            "highest_goodput_label": top.candidate.label,
            "ttft_p95_at_load_s": best.ttft_p95_at_load_s,
            "tpot_at_load_s": best.tpot_at_load_s,
        }
        if isinstance(best, DisaggregatedResult):
            out |= {
                "prefill_gpus": best.prefill_gpus,
                "decode_gpus": best.decode_gpus,
                "kv_transfer_s": best.kv_transfer_s,
                "kv_transfer_exposed_s": best.kv_transfer_exposed_s,
                "confirmation": best.confirmation,
            }
        elif best.simulated:
            sim = best.simulated
            verdict = "meets" if sim.get("meets_slo") else "MISSES"
            out["confirmation"] = (
                f"simulated: {verdict} SLO (TTFT p95 {sim['ttft_p95_s'] * 1e3:,.0f} ms, "
                f"TPOT p95 {sim['tpot_p95_s'] * 1e3:,.1f} ms)"
            )
        else:
            out["confirmation"] = "analytic (not simulated)"
        return out

    agg, dis = side(False), side(True)
    out: dict[str, Any] = {"best_aggregated": agg, "best_disaggregated": dis}
    if agg and dis:
        out["cost_ratio_disaggregated_over_aggregated"] = (
            dis["cost_per_hour_usd"] / agg["cost_per_hour_usd"]
        )
        out["gpu_ratio_disaggregated_over_aggregated"] = dis["gpus"] / agg["gpus"]
        out["goodput_per_gpu_ratio_disaggregated_over_aggregated"] = (
            dis["highest_goodput_per_gpu"] / agg["highest_goodput_per_gpu"]
        )
    out["sentence"] = comparison_sentence(out)
    return out


def comparison_sentence(cmp: dict[str, Any]) -> str:
    agg, dis = cmp.get("best_aggregated"), cmp.get("best_disaggregated")
    if dis is None:
        return "No disaggregated candidate meets the SLOs (see the pruned candidates for why)."
    if agg is None:
        return (
            f"Best disaggregated: {dis['label']}, {dis['gpus']} GPUs "
            f"(prefill {dis['prefill_gpus']}, decode {dis['decode_gpus']}), "
            f"${dis['cost_per_hour_usd']:,.2f}/hour; no aggregated candidate to compare "
            "(none was searched or none meets the SLOs)."
        )
    return (
        f"Best disaggregated {dis['label']}: {dis['gpus']} GPUs (prefill "
        f"{dis['prefill_gpus']}, decode {dis['decode_gpus']}), "
        f"${dis['cost_per_hour_usd']:,.2f}/hour, KV transfer "
        f"{dis['kv_transfer_s'] * 1e3:,.2f} ms ({dis['kv_transfer_exposed_s'] * 1e3:,.2f} ms "
        f"exposed); best aggregated {agg['label']}: {agg['gpus']} GPUs, "
        f"${agg['cost_per_hour_usd']:,.2f}/hour. Cost ratio (disaggregated / aggregated) "
        f"{cmp['cost_ratio_disaggregated_over_aggregated']:.2f}; highest SLO-meeting rate per "
        f"GPU {dis['highest_goodput_per_gpu']:.3g} vs {agg['highest_goodput_per_gpu']:.3g} "
        f"requests/s ({cmp['goodput_per_gpu_ratio_disaggregated_over_aggregated']:.2f}x). "
        f"Best disaggregated: {dis['confirmation']}."
    )


def recommendation_sentence(result) -> str:
    """The plan's sentence when its best candidate is disaggregated."""
    best = result.best
    assert isinstance(best, DisaggregatedResult)
    c = best.candidate
    assert isinstance(c, DisaggregatedCandidate)
    p, d = c.prefill_deployment, c.deployment
    return (
        f"Run {result.scenario.model} disaggregated: {best.prefill_replicas} prefill "
        f"replica(s) on {c.prefill_hardware} (tp={p.tp}, pp={p.pp}) and "
        f"{best.decode_replicas} decode replica(s) on {c.hardware} (tp={d.tp}, pp={d.pp}), "
        f"weights {d.weight_dtype}, KV {d.kv_dtype}: {best.gpus} GPUs "
        f"({best.prefill_gpus} prefill + {best.decode_gpus} decode), "
        f"${best.cost_per_hour_usd:,.2f}/hour (${best.cost_per_hour_usd * 730:,.0f}/month), for "
        f"{result.workload.peak_rate_per_s:g} requests/s at peak with "
        f"{result.scenario.slo.headroom_fraction:.0%} headroom; {best.confirmation}."
    )


def assumptions(spec: DisaggregationSpec) -> list[str]:
    first = (
        "the decode instance streams every token, so TTFT = prefill queue (M/G/1) + prefill + "
        "exposed KV transfer + one decode step"
        if spec.first_token_from == "decode"
        else "the prefill instance returns the first token (DistServe, Splitwise), so TTFT = "
        "prefill queue (M/G/1) + prefill, and the exposed KV transfer delays the second token"
    )
    return [
        "Disaggregated candidates (hwsim.planner.disaggregated): a prefill pool (one prompt at "
        "a time per replica, an M/G/1 queue) and a decode pool (the largest batch that meets "
        "the TPOT SLO and fits, rate by Little's law), each sized at the peak; "
        f"{first}.",
        f"KV transfer (hwsim.inference.kv_transfer): the prompt's whole cache, each GPU its "
        f"shard over its own link, placement {spec.placement} (auto: one node when a prefill "
        f"and a decode replica fit in it), overlap {spec.kv_overlap} "
        "(layerwise: each layer sent while the next one prefills); priced by the collective "
        "model's point-to-point transfer.",
        "The cheapest serving.simulate_top disaggregated candidates are replayed in the "
        "serving simulator with both pools (every prefill replica at its round-robin share, "
        "each request's exposed KV transfer at its own prompt length, one decode replica at "
        "its share; hwsim.planner.disaggregated_sim); the launch artifacts (--emit) cover "
        "aggregated candidates only.",
    ]
