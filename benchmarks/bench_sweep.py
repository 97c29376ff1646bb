"""Sweep speed and memory: the vectorised ``estimate`` over random (batch, prompt, answer) points.

Times ``estimate_deployment`` (what ``hwsim.estimate`` runs once the deployment is resolved) on
Llama-3.1-8B / H100 SXM, a datasheet and a calibrated profile: batch 1-256, prompts 16-32,767
tokens, answers 1-4,095 tokens. Prints CPU seconds (process time) and wall seconds, median of
``--repeats`` runs, and points per second from each.

``--memory N`` instead runs one N-point sweep in a fresh process and prints the peak resident
memory it added per point: everything the sweep allocates (its outputs and transient arrays),
and separately the caller's three int64 input arrays (24 B per point).

Targets (issue 11): >= 1M points/s on the datasheet profile, >= 0.7M on the calibrated one;
<= 500 B per point at 10M points.

Run: python -m benchmarks.bench_sweep [--points N] [--repeats R] [--memory N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from hwsim.inference.deployment import make_deployment
from hwsim.inference.estimate import estimate_deployment

PROFILES = ("h100-sxm", "h100-sxm-calibrated")


def points(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(1, 257, n), rng.integers(16, 32_768, n), rng.integers(1, 4_096, n)


def time_sweep(hardware: str, n: int, repeats: int) -> tuple[float, float]:
    """(median CPU s, median wall s) of one n-point sweep."""
    batch, prompt, gen = points(n)
    dep = make_deployment("llama-3.1-8b", hardware)
    estimate_deployment(dep, batch, prompt, gen)  # warm-up (first touch of the outputs)
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        est = estimate_deployment(dep, batch, prompt, gen)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    assert np.all(np.isfinite(est.latency.tpot_s))
    return statistics.median(cpu), statistics.median(wall)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def memory_child(n: int) -> dict:
    """Run in a fresh process: peak RSS added by the inputs and by one n-point sweep."""
    dep = make_deployment("llama-3.1-8b", PROFILES[0])
    estimate_deployment(dep, *points(1000))  # imports and caches warm
    before_inputs = peak_rss_bytes()
    batch, prompt, gen = points(n)
    before_sweep = max(peak_rss_bytes(), before_inputs)
    est = estimate_deployment(dep, batch, prompt, gen)
    after = peak_rss_bytes()
    assert est.latency.tpot_s.shape == (n,)
    return {
        "points": n,
        "inputs_bytes_per_point": (before_sweep - before_inputs) / n,
        "sweep_bytes_per_point": (after - before_sweep) / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--memory", type=int, metavar="N", help="peak memory per point of N points")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(memory_child(args.child)))
        return
    if args.memory:
        cmd = [sys.executable, "-m", "benchmarks.bench_sweep", "--child", str(args.memory)]
        out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(
            f"{out['points']:,} points: the sweep adds {out['sweep_bytes_per_point']:.0f} B per "
            f"point at peak (outputs and transients); the caller's inputs "
            f"{out['inputs_bytes_per_point']:.0f} B per point"
        )
        return
    for hardware in PROFILES:
        cpu, wall = time_sweep(hardware, args.points, args.repeats)
        print(
            f"{hardware:<22} {args.points:,} points: CPU {cpu:.3f} s ({args.points / cpu:,.0f}"
            f" points/s), wall {wall:.3f} s ({args.points / wall:,.0f} points/s), "
            f"median of {args.repeats}"
        )


if __name__ == "__main__":
    main()
