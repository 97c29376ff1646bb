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
per metric, the median and p90 over runs of |pred - meas| / meas, and the goodput (the
highest rate with attainment >= 90%, interpolated linearly between the measured rates)
measured vs predicted. CPU and wall seconds of one replay: median of ``repeats`` runs.

DistServe's own disaggregated runs (distserve-*.exp) are not in the folder yet (see its
README), so they are not replayed here.

Run: python -m benchmarks.bench_trace_replay [repeats, 5] [json path]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
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
SLO = Slo(ttft_s=0.2, tpot_s=0.1)  # DistServe Table 1, chatbot OPT-13B
ATTAINMENT = 0.9  # DistServe's goodput target
METRICS = ("ttft_p50_s", "ttft_p90_s", "tpot_p50_s", "tpot_p90_s", "e2e_mean_s", "attainment")
OUT = Path(__file__).resolve().parents[1] / "validation/results/trace_replay/distserve_opt13b.json"


def write_profile(folder: Path) -> Path:
    """OPT-13B's profile (bench_disaggregated's text) as folder/opt-13b.yaml."""
    path = folder / "opt-13b.yaml"
    path.write_text(OPT["opt-13b"], encoding="utf-8")
    return path


def goodput_per_s(rates: list[float], attainment: list[float]) -> float | None:
    """The highest rate with attainment >= 90%: linear between the last passing rate and the
    next (failing) one; the top rate if all pass; None if even the lowest fails."""
    pairs = sorted(zip(rates, attainment, strict=True))
    if pairs[0][1] < ATTAINMENT:
        return None
    for (r0, a0), (r1, a1) in zip(pairs, pairs[1:], strict=False):
        if a1 < ATTAINMENT:
            return r0 + (a0 - ATTAINMENT) / (a0 - a1) * (r1 - r0)
    return pairs[-1][0]


def replay_run(
    entry: dict[str, Any], model: str, repeats: int, deployment: dict[str, Any]
) -> dict[str, Any]:
    trace = load_measured(DISTSERVE_OPT13B / entry["file"])
    cpu, wall, result = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        result = replay(trace, model, HARDWARE, deployment)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    assert result is not None
    pred, meas = metrics(result.records, SLO), metrics(measured_records(trace), SLO)
    return {
        "file": entry["file"],
        "source_path": entry["source_path"],
        "n_requests": len(trace["ttft_s"]),
        "nominal_rate_per_s": entry["nominal_rate_per_s"],
        "predicted": pred,
        "measured": meas,
        "relative_error": {k: abs(pred[k] - meas[k]) / meas[k] for k in METRICS if meas[k]},
        "overloaded": result.overload is not None,
        "preemptions": int(np.sum(result.records.preemptions)),
        "kv_capacity_tokens": result.config.kv_capacity_tokens,
        "cpu_s": statistics.median(cpu),
        "wall_s": statistics.median(wall),
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    errors = {}
    for k in METRICS:
        e = [r["relative_error"][k] for r in runs if k in r["relative_error"]]
        errors[k] = {"median": float(np.median(e)), "p90": float(np.percentile(e, 90))}
    rates = [r["nominal_rate_per_s"] for r in runs]
    return {
        "relative_error": errors,
        "goodput_measured_per_s": goodput_per_s(rates, [r["measured"]["attainment"] for r in runs]),
        "goodput_predicted_per_s": goodput_per_s(
            rates, [r["predicted"]["attainment"] for r in runs]
        ),
        "goodput_note": f"null: attainment < 90% already at the lowest measured rate, "
        f"{min(rates):g}/s",
    }


def main(repeats: int = 5, out: Path = OUT) -> dict[str, Any]:
    manifest = load_manifest()
    entries = [e for e in manifest["runs"] if e["engine"] == "vLLM"]
    variants = []
    with tempfile.TemporaryDirectory() as tmp:
        model = str(write_profile(Path(tmp)))
        for name, extra in RUNTIMES.items():
            deployment = {**VLLM_DEPLOYMENT, **extra}
            runs = [replay_run(e, model, repeats, deployment) for e in entries]
            variants.append(
                {"runtime": name, "deployment": deployment, "runs": runs, "summary": summary(runs)}
            )
    doc = {
        "what": "hwsim serving simulator replaying DistServe's measured vLLM OPT-13B traces",
        "source": manifest["source"],
        "hardware_profile": HARDWARE,
        "slo": {"ttft_s": SLO.ttft_s, "tpot_s": SLO.tpot_s},
        "repeats": repeats,
        "variants": variants,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    for variant in variants:
        print(f"== {variant['runtime']}")
        report(variant)
    return doc


def report(doc: dict[str, Any]) -> None:
    print(f"{'run':<16}" + "".join(f"{k:>22}" for k in METRICS) + f"{'cpu_s':>8}{'wall_s':>8}")
    for r in doc["runs"]:
        cells = "".join(f"{r['predicted'][k]:>10.3f} / {r['measured'][k]:<9.3f}" for k in METRICS)
        print(f"{r['file']:<16}{cells}{r['cpu_s']:>8.3f}{r['wall_s']:>8.3f}")
    s = doc["summary"]
    print("(cells: predicted / measured)")
    for k, e in s["relative_error"].items():
        print(f"|pred - meas| / meas {k:<12} median {e['median']:.1%}  p90 {e['p90']:.1%}")
    print(
        f"goodput (attainment >= 90%): measured {s['goodput_measured_per_s']} /s, "
        f"predicted {s['goodput_predicted_per_s']} /s"
    )


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 5,
        Path(sys.argv[2]) if len(sys.argv) > 2 else OUT,
    )
