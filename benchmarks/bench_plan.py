"""End-to-end capacity plan: ``hwsim plan examples/chat-service.yaml`` as a user runs it.

60 candidates priced analytically, the three cheapest confirmed in the serving simulator, the
recommendation printed. Each run is a fresh process (start-up included); CPU seconds are the
process's and its workers' user + system time (``RUSAGE_CHILDREN``), wall seconds its elapsed
time. Median of ``repeats`` runs after one warm-up.

Run: python benchmarks/bench_plan.py [repeats] [scenario]
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import bytecode_note

ROOT = Path(__file__).resolve().parent.parent


def run_once(argv: list[str]) -> tuple[float, float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, out.stdout.splitlines()[0] if out.stdout else ""


def main(repeats: int = 5, scenario: str = "examples/chat-service.yaml") -> None:
    code = (
        "import sys; from hwsim.cli.main import main; "
        f"sys.argv = ['hwsim', 'plan', {scenario!r}]; main()"
    )
    argv = [sys.executable, "-c", code]
    if note := bytecode_note():
        print(note, file=sys.stderr)
    run_once(argv)  # warm-up: file cache, .pyc files
    runs = [run_once(argv) for _ in range(repeats)]
    cpu = statistics.median(r[0] for r in runs)
    wall = statistics.median(r[1] for r in runs)
    print(f"hwsim plan {scenario}: CPU {cpu:.2f} s  wall {wall:.2f} s  (median of {repeats})")
    print(f"first line: {runs[-1][2]}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5, *sys.argv[2:3])
