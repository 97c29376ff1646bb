"""Speed of the serving simulator with the step model ``hwsim plan`` and ``hwsim.simulate`` use.

Scenario: Llama-3.1-8B on one H100 SXM (``make_deployment("llama-3.1-8b", "h100-sxm")``,
``EngineStepModel(dep)``), Poisson arrivals at 10 requests/s, fixed lengths of 1,000 prompt and
250 output tokens (``--lengths lognormal``: lognormal with those means, p95 3x the mean),
chunked prefill with ``max_num_batched_tokens`` 2048, 256 sequences at most, KV capacity
``EngineStepModel.kv_capacity_tokens`` after the weights. 100,000 requests by default.

Timed per run: building the step model and ``simulate`` (sampling the traffic is not). CPU
seconds (``time.process_time``) and wall seconds (``time.perf_counter``), median of
``--repeats`` runs. Check values: TTFT and TPOT p95 from ``hwsim.serving.summarize``, and
whether the run stopped early for overload (it must not: the numbers would cover a shorter run).

A second block runs the reference step model (``EngineStepModel(dep, fast=False)``: the op
builders and ``time_op`` every iteration, as before the fast path) on the first
``--reference-requests`` requests, and the fast model on the same requests, so the speed-up
and the agreement of every iteration time are visible.

    python -m benchmarks.bench_simulator [--requests 100000] [--repeats 5]
        [--reference-requests 2000] [--lengths fixed|lognormal]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from hwsim.inference.deployment import make_deployment
from hwsim.inference.memory import weight_bytes_per_gpu
from hwsim.planner.step_model import EngineStepModel
from hwsim.serving import SchedulerConfig, TrafficSpec, sample_requests, simulate, summarize

MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"
RATE_PER_S, PROMPT, OUTPUT, BATCHED_TOKENS = 10.0, 1000, 250, 2048


def traffic(lengths: str) -> TrafficSpec:
    def dist(mean: int) -> dict:
        if lengths == "fixed":
            return {"kind": "fixed", "value": mean}
        return {"kind": "lognormal", "mean": mean, "p95": 3 * mean}

    return TrafficSpec.model_validate(
        {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": RATE_PER_S}},
            "prompt_tokens": dist(PROMPT),
            "output_tokens": dist(OUTPUT),
        }
    )


def timed_runs(dep, requests, config, repeats: int, fast: bool):
    """(CPU seconds, wall seconds) of each run, and the last run's result."""
    cpus, walls, result = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        model = EngineStepModel(dep, fast=fast)
        result = simulate(requests, model, config)
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - t0)
    return cpus, walls, result


def report(label: str, n: int, cpus: list[float], walls: list[float], result) -> None:
    cpu, wall = statistics.median(cpus), statistics.median(walls)
    s = summarize(result)
    iterations = len(result.trace)
    print(f"{label}: {n:,} requests, {iterations:,} iterations, median of {len(cpus)} runs")
    print(f"  CPU   {cpu:7.2f} s  of {[round(c, 2) for c in cpus]}")
    print(f"  wall  {wall:7.2f} s  of {[round(w, 2) for w in walls]}")
    print(f"  speed {n / cpu:,.0f} requests per CPU second ({n / wall:,.0f} per wall second)")
    overload = f"OVERLOADED ({s.overload_reason})" if s.overloaded else "not overloaded"
    print(
        f"  check TTFT p95 {s.ttft.p95_s * 1e3:.3f} ms, TPOT p95 {s.tpot.p95_s * 1e3:.4f} ms, "
        f"{s.n_requests:,} requests summarised, {overload}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-requests", type=int, default=2_000)
    parser.add_argument("--lengths", choices=("fixed", "lognormal"), default="fixed")
    args = parser.parse_args()

    dep = make_deployment(MODEL, HARDWARE)
    kv_tokens = EngineStepModel(dep).kv_capacity_tokens(weight_bytes_per_gpu(dep))
    config = SchedulerConfig(kv_capacity_tokens=kv_tokens, max_num_batched_tokens=BATCHED_TOKENS)
    t0 = time.perf_counter()
    requests = sample_requests(traffic(args.lengths), args.requests, seed=0)
    sample_s = time.perf_counter() - t0
    print(
        f"{MODEL} on {HARDWARE}: Poisson {RATE_PER_S:g}/s, {args.lengths} lengths "
        f"{PROMPT} prompt / {OUTPUT} output tokens, max_num_batched_tokens {BATCHED_TOKENS}, "
        f"KV {kv_tokens:,} tokens (traffic sampled in {sample_s:.2f} s, not timed)"
    )
    cpus, walls, result = timed_runs(dep, requests, config, args.repeats, fast=True)
    report("EngineStepModel (fast path)", args.requests, cpus, walls, result)

    n_ref = min(args.reference_requests, args.requests)
    if n_ref <= 0:
        return
    few = sample_requests(traffic(args.lengths), n_ref, seed=0)
    ref_repeats = max(1, min(args.repeats, 3))
    cpus, walls, ref = timed_runs(dep, few, config, ref_repeats, fast=False)
    report("reference step model (fast=False)", n_ref, cpus, walls, ref)
    cpus, walls, fast = timed_runs(dep, few, config, ref_repeats, fast=True)
    report("fast path on the same requests", n_ref, cpus, walls, fast)
    a, b = fast.trace.duration_s, ref.trace.duration_s
    if len(a) == len(b):
        diff = float(np.max(np.abs(a - b) / b))
        print(f"  iteration times, fast vs reference: max relative difference {diff:.2e}")
    else:
        print(f"  iteration counts differ: fast {len(a):,}, reference {len(b):,}")


if __name__ == "__main__":
    main()
