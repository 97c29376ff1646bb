"""Start-up cost of the paths a user runs first: ``import hwsim`` and a one-line ``hwsim plan``.

Each command runs in a fresh interpreter (nothing cached in-process); CPU seconds are the child's
user + system time (``resource.RUSAGE_CHILDREN``), wall seconds its elapsed time. Median of
``repeats`` runs after one warm-up run (which fills the OS file cache and the .pyc files).

Run: python benchmarks/bench_startup.py [repeats]
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import sys
import time

from benchmarks import bytecode_note

COMMANDS = {
    "import hwsim": [sys.executable, "-c", "import hwsim"],
    "hwsim plan --model llama-2-7b --hardware a100-80gb-sxm": [
        sys.executable,
        "-c",
        "import sys; from hwsim.cli.main import main; sys.argv = ['hwsim', 'plan', '--model', "
        "'llama-2-7b', '--hardware', 'a100-80gb-sxm']; main()",
    ],
}


def run_once(argv: list[str]) -> tuple[float, float]:
    """(cpu_s, wall_s) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main(repeats: int = 7) -> None:
    if shutil.which("hwsim") is None:
        print("note: hwsim is not on PATH; timing the CLI through python -c", file=sys.stderr)
    if note := bytecode_note():
        print(note, file=sys.stderr)
    for label, argv in COMMANDS.items():
        run_once(argv)  # warm-up
        runs = [run_once(argv) for _ in range(repeats)]
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        print(f"{label:<58} CPU {cpu:.3f} s  wall {wall:.3f} s  (median of {repeats})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
