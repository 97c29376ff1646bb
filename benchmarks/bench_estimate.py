"""One scalar ``hwsim.estimate`` after the first: what a notebook user or a script pays per call.

Times ``hwsim.estimate("llama-3.1-8b", "h100-sxm", batch=8, prompt_len=2000 + i, gen_len=200)``
(the path the CLI's single-deployment plan runs) on a datasheet and a calibrated profile.
CPU seconds (process time) and wall seconds per call, median of ``repeats`` rounds of ``calls``.

Run: python -m benchmarks.bench_estimate [calls] [repeats]
"""

from __future__ import annotations

import statistics
import sys
import time

import hwsim

CASES = {
    "datasheet h100-sxm": ("llama-3.1-8b", "h100-sxm"),
    "calibrated h100-sxm-calibrated": ("llama-3.1-8b", "h100-sxm-calibrated"),
    "MoE mixtral-8x7b on h100-sxm, tp 2": ("mixtral-8x7b", "h100-sxm"),
}


def time_calls(model: str, hardware: str, calls: int, **settings) -> tuple[float, float]:
    """(cpu_s, wall_s) per call, averaged over ``calls`` consecutive calls. Each call asks for
    a different prompt length (2000 + i), so nothing length-dependent can be reused."""
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(calls):
        hwsim.estimate(model, hardware, batch=8, prompt_len=2000 + i, gen_len=200, **settings)
    return (time.process_time() - c0) / calls, (time.perf_counter() - w0) / calls


def main(calls: int = 50, repeats: int = 5) -> None:
    for label, (model, hardware) in CASES.items():
        settings = {"tp": 2} if "tp 2" in label else {}
        hwsim.estimate(model, hardware, batch=8, prompt_len=2000, gen_len=200, **settings)
        runs = [time_calls(model, hardware, calls, **settings) for _ in range(repeats)]
        cpu = statistics.median(r[0] for r in runs) * 1e3
        wall = statistics.median(r[1] for r in runs) * 1e3
        print(f"{label:<40} CPU {cpu:7.3f} ms  wall {wall:7.3f} ms per call (median of {repeats})")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
