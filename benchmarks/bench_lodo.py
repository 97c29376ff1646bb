"""Leave one device out, per op class: does a fit on one GPU predict another nobody fitted?

Runs :mod:`validation.lodo` on the shipped measurements (validation/results: H100 SXM and
H200, the same eager-PyTorch harness): the H100's fitted efficiency curves put into the H200's
datasheet profile (its own peaks and bandwidth) predict every H200 shape, then the reverse;
against each device's own datasheet profile and its own held-out calibration. Prints median
and p90 |error| and p10-p90 coverage per op class (attention also split into prefill and
decode kernels), and the CPU and wall seconds of the run (once: it is a validation, not a hot
path).

Run: python -m benchmarks.bench_lodo
"""

from __future__ import annotations

import time

from validation import lodo


def main() -> None:
    c0, w0 = time.process_time(), time.perf_counter()
    results = lodo.run()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    lodo.print_table(results)
    print(f"\nleave-one-device-out: CPU {cpu:.1f} s, wall {wall:.1f} s (both directions, once)")


if __name__ == "__main__":
    main()
