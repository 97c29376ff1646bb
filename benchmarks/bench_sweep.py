"""Sweep speed: points per second of the vectorised engine (prefill + mean decode).

Run: python benchmarks/bench_sweep.py [n_points]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from hwsim.inference.deployment import make_deployment
from hwsim.inference.estimate import estimate_deployment


def main(n_points: int = 1_000_000, repeats: int = 5) -> None:
    rng = np.random.default_rng(0)
    batch = rng.integers(1, 257, n_points)
    prompt = rng.integers(16, 32_768, n_points)
    gen = rng.integers(1, 4_096, n_points)
    dep = make_deployment("llama-3.1-8b", "h100-sxm")
    estimate_deployment(dep, batch[:1000], prompt[:1000], gen[:1000])  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        est = estimate_deployment(dep, batch, prompt, gen)
        times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    print(
        f"points: {n_points:,}  median over {repeats}: {median:.3f} s  "
        f"-> {n_points / median:,.0f} points/s  (min {min(times):.3f} s, max {max(times):.3f} s)"
    )
    print(
        f"check: mean TTFT {np.mean(est.latency.ttft_s):.4f} s, "
        f"mean TPOT {np.mean(est.latency.tpot_s) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
