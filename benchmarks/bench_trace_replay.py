"""hwsim's serving simulator against DistServe's measured vLLM runs, request by request.

Measured: DistServe's artifact traces (LLMServe/DistServe at commit 20a1633e,
simdistserve/benchmarks/alignment/data-ground-truth/opt-13b-sharegpt/vllm-<N>-<rate>.exp, Apache
2.0), per-request records of N ShareGPT requests sent at a Poisson rate to vLLM serving
facebook/opt-13b in fp16 at tp 1 on an A100-80GB SXM (DistServe paper, Zhong et al., OSDI 2024,
arXiv 2401.09670, section 6.1), converted to CSVs in
validation/published/traces/distserve-opt13b-sharegpt/ (its manifest.yaml and README.md give
each file's provenance and the checks made on it).

Predicted: each trace's exact arrival offsets, prompt and output lengths replayed through
:func:`hwsim.planner.plan.simulate` (the planner's path: ``make_deployment``, the
deployment's KV capacity at ``memory_utilization`` 0.9 = vLLM's default
gpu_memory_utilization, ``scheduler_config``, ``EngineStepModel``), OPT-13B (the profile text
of benchmarks/bench_disaggregated.py, from facebook/opt-13b config.json) on ``a100-80gb-sxm``,
configured as DistServe ran vLLM: fp16 weights, KV and activations, tp 1, no chunked prefill
(DistServe's vLLM baseline predates it; the paper treats DeepSpeed-MII as the chunked-prefill
system), ``max_num_batched_tokens`` = max(max_model_len, 2048) = 2048 and ``max_num_seqs`` 256
(vllm/config.py SchedulerConfig defaults of v0.2.x), under two engine runtimes
(:mod:`hwsim.profiles.runtime`): hwsim's default ``generic`` (kernels only: no host time) and
the ``vllm`` preset (4 ms of host time per iteration from vLLM's multi-step RFC, decode in
CUDA graphs; sourced there, not chosen against these traces). No constant is fitted to them.

Per run, predicted vs measured: median and p90 TTFT (first token - arrival), median and p90
per-request TPOT ((finish - first token) / (output - 1), the source's tpot_ms), mean E2E, and
the SLO attainment (fraction of requests with TTFT <= 0.2 s and TPOT <= 0.1 s, DistServe's
Table 1 SLOs for the OPT-13B chatbot, :func:`hwsim.serving.slo_attainment` for both). Then,
per metric, the median and p90 over runs of |pred - meas| / meas, and the goodput (the rate
at which attainment falls through 90%, interpolated linearly between the two measured rates
around the crossing; a bound where there is no crossing, below) measured vs predicted. CPU
and wall seconds of one replay: median of ``repeats`` runs.

DistServe c21d11 group: DistServe's own runs (distserve-c21d11-300-<rate>.exp: a prefill
instance at tp 2 and a decode instance at tp 1, 3 GPUs; align_with_real.py) replayed through
hwsim's two-pool simulator (:func:`validation.traces.replay_disaggregated`: one prefill
replica, one decode replica, ``first_token_from: prefill`` and ``kv_overlap: none`` as
DistServe returns the first token from the prefill instance and moves the whole cache after it,
``placement: auto`` = both in one NVLink node, DistServe section 4.2). Both instances are
configured from the flags of DistServe's API-server usage example (distserve_api_server's
docstring: gpu-memory-utilization 0.95; context stage FCFS, max batch 128, max 8,192 tokens a
batch; decoding stage FCFS, max batch 1,024, 65,536 tokens): whole prompts batched FCFS, no
chunked prefill (DistServe's context stage schedules whole prompts: its paper, section 4.3,
batches prompts up to a length L_m; there is no chunking in its engine), under the same two
runtimes. The artifact does not record the flags of these exact runs; none was chosen
against the traces.

Per-GPU goodput (DistServe's comparison): the goodput above divided by the GPUs of one
serving unit (vLLM: 1; c21d11: 3), measured and predicted, and their ratio DistServe / vLLM.
Where an engine meets 90% even at its top measured rate the goodput is only bounded below
(its top rate); where it misses 90% at its lowest rate, only bounded above (its lowest rate);
the ratio is then given as a bound.

Run: python -m benchmarks.bench_trace_replay [repeats, 5] [json path]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_disaggregated import OPT
from hwsim.serving import Slo
from validation.traces import (
    DISTSERVE_OPT13B,
    load_manifest,
    load_measured,
    measured_records,
    metrics,
    replay,
    replay_disaggregated,
)

HARDWARE = "a100-80gb-sxm"
VLLM_DEPLOYMENT: dict[str, Any] = {
    "tp": 1,
    "weight_dtype": "fp16",
    "kv_dtype": "fp16",
    "activation_dtype": "fp16",
    "memory_utilization": 0.9,  # vLLM's default gpu_memory_utilization
    "chunked_prefill": False,
    "max_num_batched_tokens": 2048,  # max(max_model_len 2048, 2048), vLLM v0.2.x
    "max_num_seqs": 256,  # vLLM's default
}
RUNTIMES: dict[str, dict[str, Any]] = {
    "kernels only (runtime generic)": {},
    "vLLM runtime preset": {"runtime": {"engine": "vllm"}},
}
DISTSERVE_BASE: dict[str, Any] = {
    "weight_dtype": "fp16",
    "kv_dtype": "fp16",
    "activation_dtype": "fp16",
    "memory_utilization": 0.95,  # DistServe usage example: --gpu-memory-utilization 0.95
    "chunked_prefill": False,  # whole prompts (DistServe's context stage)
}
DISTSERVE_PREFILL = {**DISTSERVE_BASE, "tp": 2, "max_num_batched_tokens": 8192, "max_num_seqs": 128}
DISTSERVE_DECODE = {
    **DISTSERVE_BASE,
    "tp": 1,
    "max_num_batched_tokens": 65536,
    "max_num_seqs": 1024,
}
DISAGGREGATION = {"placement": "auto", "kv_overlap": "none", "first_token_from": "prefill"}
GPUS = {"vLLM": 1, "DistServe c21d11": 3}  # GPUs of one serving unit
SLO = Slo(ttft_s=0.2, tpot_s=0.1)  # DistServe Table 1, chatbot OPT-13B
ATTAINMENT = 0.9  # DistServe's goodput target
METRICS = ("ttft_p50_s", "ttft_p90_s", "tpot_p50_s", "tpot_p90_s", "e2e_mean_s", "attainment")
OUT = Path(__file__).resolve().parents[1] / "validation/results/trace_replay/distserve_opt13b.json"


def write_profile(folder: Path) -> Path:
    """OPT-13B's profile (bench_disaggregated's text) as folder/opt-13b.yaml."""
    path = folder / "opt-13b.yaml"
    path.write_text(OPT["opt-13b"], encoding="utf-8")
    return path


def crossing(
    rates: list[float], attainment: list[float]
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The first pair of rates, in rate order, where attainment goes from >= 90% to < 90%:
    ((r0, a0), (r1, a1)); None if every rate passes or the lowest already fails."""
    pairs = sorted(zip(rates, attainment, strict=True))
    if pairs[0][1] < ATTAINMENT:
        return None
    for lo, hi in zip(pairs, pairs[1:], strict=False):
        if hi[1] < ATTAINMENT:
            return lo, hi
    return None


def goodput_per_s(rates: list[float], attainment: list[float]) -> float | None:
    """The rate at which attainment falls through 90%: linear between the last passing rate and
    the next (failing) one; the top rate if all pass; None if even the lowest fails."""
    pairs = sorted(zip(rates, attainment, strict=True))
    if pairs[0][1] < ATTAINMENT:
        return None
    cross = crossing(rates, attainment)
    if cross is None:
        return pairs[-1][0]
    (r0, a0), (r1, a1) = cross
    return r0 + (a0 - ATTAINMENT) / (a0 - a1) * (r1 - r0)


def bounded_goodput_per_s(rates: list[float], attainment: list[float]) -> dict[str, Any]:
    """:func:`goodput_per_s` with what it is (``kind``: interpolated, or a bound; module
    docstring) and a ``note`` that says so in words."""
    pairs = sorted(zip(rates, attainment, strict=True))
    if pairs[0][1] < ATTAINMENT:
        return {
            "value_per_s": pairs[0][0],
            "kind": "upper_bound",
            "note": f"upper bound: attainment < 90% already at the lowest measured rate, "
            f"{pairs[0][0]:g}/s ({pairs[0][1]:.3f})",
        }
    cross = crossing(rates, attainment)
    if cross is None:
        return {
            "value_per_s": pairs[-1][0],
            "kind": "lower_bound",
            "note": f"lower bound: attainment >= 90% at every measured rate up to the top one, "
            f"{pairs[-1][0]:g}/s ({pairs[-1][1]:.3f})",
        }
    (r0, a0), (r1, a1) = cross
    return {
        "value_per_s": goodput_per_s(rates, attainment),
        "kind": "interpolated",
        "note": f"interpolated linearly between {r0:g}/s ({a0:.3f}) and {r1:g}/s ({a1:.3f})",
    }


def replay_run(
    entry: dict[str, Any], repeats: int, simulate: Callable[[dict[str, np.ndarray]], Any]
) -> dict[str, Any]:
    """One measured run against ``simulate(trace)`` (a one-pool SimulationResult or a
    two-pool PoolsRun), timed over ``repeats`` runs."""
    trace = load_measured(DISTSERVE_OPT13B / entry["file"])
    cpu, wall, result = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        result = simulate(trace)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    assert result is not None
    pred, meas = metrics(result.records, SLO), metrics(measured_records(trace), SLO)
    out = {
        "file": entry["file"],
        "source_path": entry["source_path"],
        "n_requests": len(trace["ttft_s"]),
        "nominal_rate_per_s": entry["nominal_rate_per_s"],
        "predicted": pred,
        "measured": meas,
        "relative_error": {k: abs(pred[k] - meas[k]) / meas[k] for k in METRICS if meas[k]},
        "preemptions": int(np.sum(result.records.preemptions)),
        "cpu_s": statistics.median(cpu),
        "wall_s": statistics.median(wall),
    }
    if hasattr(result, "decode"):  # two pools
        out["overloaded"] = bool(result.prefill_overloads) or result.decode.overload is not None
        out["kv_capacity_tokens_decode"] = result.decode.config.kv_capacity_tokens
        out["kv_transfer_exposed_max_s"] = float(np.max(result.exposed_s))
    else:
        out["overloaded"] = result.overload is not None
        out["kv_capacity_tokens"] = result.config.kv_capacity_tokens
    return out


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    errors = {}
    for k in METRICS:
        e = [r["relative_error"][k] for r in runs if k in r["relative_error"]]
        errors[k] = {"median": float(np.median(e)), "p90": float(np.percentile(e, 90))}
    rates = [r["nominal_rate_per_s"] for r in runs]
    out: dict[str, Any] = {"relative_error": errors}
    for side in ("measured", "predicted"):
        out[f"goodput_{side}"] = bounded_goodput_per_s(rates, [r[side]["attainment"] for r in runs])
    return out


def one_pool(model: str, deployment: dict[str, Any]) -> Callable:
    return lambda trace: replay(trace, model, HARDWARE, deployment)


def two_pools(model: str, runtime: dict[str, Any]) -> Callable:
    pre, dec = {**DISTSERVE_PREFILL, **runtime}, {**DISTSERVE_DECODE, **runtime}
    return lambda trace: replay_disaggregated(trace, model, HARDWARE, pre, dec, DISAGGREGATION)


def per_gpu_comparison(groups: dict[str, list[dict[str, Any]]], side: str) -> dict[str, Any]:
    """Per-GPU goodput of each group on the ``side`` ("measured" / "predicted") attainment and
    the ratio DistServe / vLLM, as a value or a bound."""
    out: dict[str, Any] = {}
    for name, runs in groups.items():
        g = bounded_goodput_per_s(
            [r["nominal_rate_per_s"] for r in runs], [r[side]["attainment"] for r in runs]
        )
        out[name] = {**g, "per_gpu_per_s": g["value_per_s"] / GPUS[name], "gpus": GPUS[name]}
    d, v = out["DistServe c21d11"]["kind"], out["vLLM"]["kind"]
    ratio = out["DistServe c21d11"]["per_gpu_per_s"] / out["vLLM"]["per_gpu_per_s"]
    exact = "interpolated"
    if d == v == exact:
        kind = exact
    elif d in (exact, "lower_bound") and v in (exact, "upper_bound"):
        kind = "lower_bound"  # numerator at least, denominator at most
    elif d in (exact, "upper_bound") and v in (exact, "lower_bound"):
        kind = "upper_bound"
    else:
        kind = "unbounded"
    what = {
        exact: "interpolated",
        "lower_bound": "a lower bound",
        "upper_bound": "an upper bound",
        "unbounded": "not bounded",
    }
    note = (
        f"DistServe's goodput is {what[d]}, vLLM's is {what[v]}, so the ratio is {what[kind]}"
        " (a goodput is a lower bound where 90% is met even at the top measured rate, an upper"
        " bound where it is missed already at the lowest)"
    )
    out["ratio"] = {"value": ratio if kind != "unbounded" else None, "kind": kind, "note": note}
    return out


def main(repeats: int = 5, out: Path = OUT) -> dict[str, Any]:
    manifest = load_manifest()
    vllm = [e for e in manifest["runs"] if e["engine"] == "vLLM"]
    dist = [e for e in manifest["runs"] if e["engine"] == "DistServe" and "c21d11" in e["file"]]
    variants: list[dict[str, Any]] = []
    dist_variants: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model = str(write_profile(Path(tmp)))
        for name, extra in RUNTIMES.items():
            deployment = {**VLLM_DEPLOYMENT, **extra}
            runs = [replay_run(e, repeats, one_pool(model, deployment)) for e in vllm]
            variants.append(
                {"runtime": name, "deployment": deployment, "runs": runs, "summary": summary(runs)}
            )
            runs = [replay_run(e, repeats, two_pools(model, extra)) for e in dist]
            dist_variants.append(
                {
                    "runtime": name,
                    "prefill_deployment": {**DISTSERVE_PREFILL, **extra},
                    "decode_deployment": {**DISTSERVE_DECODE, **extra},
                    "disaggregation": DISAGGREGATION,
                    "runs": runs,
                    "summary": summary(runs),
                }
            )
    goodput = {
        "measured": per_gpu_comparison(
            {"vLLM": variants[0]["runs"], "DistServe c21d11": dist_variants[0]["runs"]},
            "measured",
        ),
        "predicted": {
            v["runtime"]: per_gpu_comparison(
                {"vLLM": v["runs"], "DistServe c21d11": d["runs"]}, "predicted"
            )
            for v, d in zip(variants, dist_variants, strict=True)
        },
    }
    doc = {
        "what": "hwsim serving simulator replaying DistServe's measured OPT-13B traces: vLLM "
        "(one pool) and DistServe c21d11 (two pools)",
        "source": manifest["source"],
        "hardware_profile": HARDWARE,
        "slo": {"ttft_s": SLO.ttft_s, "tpot_s": SLO.tpot_s},
        "repeats": repeats,
        "variants": variants,
        "distserve_c21d11": {"variants": dist_variants},
        "goodput_per_gpu": goodput,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    for group, vs in (("vLLM", variants), ("DistServe c21d11", dist_variants)):
        for variant in vs:
            print(f"== {group}, {variant['runtime']}")
            report(variant)
    print("== per-GPU goodput (req/s per GPU) and ratio DistServe / vLLM")
    print(json.dumps(goodput, indent=1))
    return doc


def report(doc: dict[str, Any]) -> None:
    w = max(16, *(len(r["file"]) + 1 for r in doc["runs"]))
    print(f"{'run':<{w}}" + "".join(f"{k:>22}" for k in METRICS) + f"{'cpu_s':>8}{'wall_s':>8}")
    for r in doc["runs"]:
        cells = "".join(f"{r['predicted'][k]:>10.3f} / {r['measured'][k]:<9.3f}" for k in METRICS)
        print(f"{r['file']:<{w}}{cells}{r['cpu_s']:>8.3f}{r['wall_s']:>8.3f}")
    s = doc["summary"]
    print("(cells: predicted / measured)")
    for k, e in s["relative_error"].items():
        print(f"|pred - meas| / meas {k:<12} median {e['median']:.1%}  p90 {e['p90']:.1%}")
    for side in ("measured", "predicted"):
        g = s[f"goodput_{side}"]
        print(f"goodput (attainment >= 90%), {side}: {g['value_per_s']:.3f} /s, {g['note']}")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 5,
        Path(sys.argv[2]) if len(sys.argv) > 2 else OUT,
    )
