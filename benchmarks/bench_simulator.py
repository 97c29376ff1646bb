"""Speed of the serving simulator: simulated requests per wall-clock second.

Workload: Poisson arrivals, lognormal prompt (mean 1024, p95 3000) and output (mean 256,
p95 800) lengths, one replica with 256 sequences / 8192 batched tokens / 450k KV tokens, and
a linear step model shaped like an 8B model on one H100 (5 ms per iteration, 30 us per new
token, 40 ns per context token). Reports the median of ``--repeats`` runs (wall clock and CPU
time of ``simulate`` only; sampling the traffic is timed separately).

    python benchmarks/bench_simulator.py [--requests 100000] [--rate 14] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np

from hwsim.serving import SchedulerConfig, TrafficSpec, sample_requests, simulate, summarize


@dataclass(frozen=True)
class LinearStepTimeModel:
    fixed_s: float = 5e-3
    per_new_token_s: float = 3e-5
    per_context_token_s: float = 4e-8

    def iteration_time_s(self, new_tokens: np.ndarray, context_after: np.ndarray) -> float:
        return (
            self.fixed_s
            + self.per_new_token_s * float(new_tokens.sum())
            + self.per_context_token_s * float(context_after.sum())
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=14.0, help="arrivals per second")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-chunked-prefill", action="store_true")
    args = parser.parse_args()

    spec = TrafficSpec.model_validate(
        {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": args.rate}},
            "prompt_tokens": {"kind": "lognormal", "mean": 1024, "p95": 3000},
            "output_tokens": {"kind": "lognormal", "mean": 256, "p95": 800},
        }
    )
    t0 = time.perf_counter()
    requests = sample_requests(spec, args.requests, seed=0)
    sample_s = time.perf_counter() - t0
    config = SchedulerConfig(
        kv_capacity_tokens=450_000,
        max_num_seqs=256,
        max_num_batched_tokens=8192,
        chunked_prefill=not args.no_chunked_prefill,
    )
    model = LinearStepTimeModel()
    walls, cpus = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = simulate(requests, model, config)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    s = summarize(result)
    iterations = len(result.trace)
    print(f"requests           {args.requests:,} at {args.rate:g}/s (sampled in {sample_s:.2f} s)")
    print(f"simulate wall      median {wall:.2f} s of {[round(w, 2) for w in walls]}")
    print(f"simulate CPU       median {cpu:.2f} s of {[round(c, 2) for c in cpus]}")
    rates = f"{args.requests / wall:,.0f} requests/s, {iterations / wall:,.0f} iterations/s"
    print(f"speed              {rates}")
    print(f"iterations         {iterations:,} ({s.duration_s:,.0f} s simulated)")
    print(
        f"served             {s.requests_per_s:.2f} req/s, {s.output_tokens_per_s:,.0f} tok/s, "
        f"TTFT p99 {s.ttft.p99_s:.3f} s, TPOT p99 {1e3 * s.tpot.p99_s:.1f} ms, "
        f"KV mean {s.kv.mean_fraction:.0%}, preemptions {s.preemptions}"
    )


if __name__ == "__main__":
    main()
