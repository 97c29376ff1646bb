"""Calibration accuracy: run ``hwsim calibrate --quick`` on this machine's CPU, then print the
held-out median and p90 absolute error and the p10-p90 band coverage per op class and overall.

Targets (issue 5): median <= 10%, p90 <= 25%, and the 80% band covering 75-85% of held-out
shapes. The held-out set is a fixed hash of each shape; nothing here tunes it.

Run: python benchmarks/bench_calibration.py [--device cpu] [--keep DIR] [--reuse DIR]
  --keep DIR   write the measurements and the profile under DIR (default: a temp dir)
  --reuse DIR  fit measurements already under DIR/results instead of measuring again
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from typer.testing import CliRunner

from hwsim.cli.main import app

TARGETS = {"median_abs_error": 0.10, "p90_abs_error": 0.25}
COVERAGE = (0.75, 0.85)


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return None


def _fmt(d: dict, key: str) -> str:
    v = d.get(key)
    return "    -" if v is None else f"{v:6.1%}"


def _verdict(d: dict) -> str:
    if not d.get("n"):
        return ""
    ok = [d.get(k, 1.0) <= v for k, v in TARGETS.items()]
    cov = d.get("band_coverage")
    ok.append(cov is not None and COVERAGE[0] <= cov <= COVERAGE[1])
    names = ["median", "p90", "coverage"]
    return (
        "meets all targets"
        if all(ok)
        else "misses: " + ", ".join(n for n, good in zip(names, ok) if not good)
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--reuse", type=Path, default=None)
    args = ap.parse_args()
    work = args.reuse or args.keep or Path(tempfile.mkdtemp(prefix="hwsim-bench-cal-"))
    out = work / f"bench-{int(time.time())}.yaml"
    cmd = [
        "calibrate",
        "--device",
        args.device,
        "--quick",
        "--out",
        str(out),
        "--measurements-dir",
        str(work / "results"),
        "--json",
    ]
    if args.reuse:
        cmd.append("--reuse-measurements")
    load_before = _load()
    start, cpu_start = time.perf_counter(), time.process_time()
    res = CliRunner().invoke(app, cmd)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if res.exit_code != 0:
        print(res.output, file=sys.stderr)
        return res.exit_code or 1
    summary = json.loads(res.output[res.output.index("{") :])
    report = json.loads(Path(summary["report"]).read_text())
    print(
        f"hwsim calibrate --quick on {summary['device']}: {summary['measured']} measured shapes, "
        f"{len(summary['skipped'])} skipped, {elapsed:.0f} s wall, {cpu:.0f} s CPU (measure + fit)"
    )
    print(
        f"load average (1 min) before {load_before or float('nan'):.2f}, after "
        f"{_load() or float('nan'):.2f} on {os.cpu_count()} CPUs: another process's load "
        "slows the sweep and skews its timings"
    )
    print(f"profile: {summary['profile']}\nmeasurements: {summary['measurements_dir']}\n")
    header = f"{'op class':12} {'train':>5} {'held':>5} {'median':>7} {'p90':>7} {'in band':>7}"
    print(header + f" {'uncal median':>12} {'uncal p90':>9}  verdict")
    for name, c in report["classes"].items():
        h, b = c["heldout"], c["baseline"]
        print(
            f"{name:12} {c['n_train']:5d} {h.get('n', 0):5d} {_fmt(h, 'median_abs_error'):>7} "
            f"{_fmt(h, 'p90_abs_error'):>7} {_fmt(h, 'band_coverage'):>7} "
            f"{_fmt(b, 'median_abs_error'):>12} {_fmt(b, 'p90_abs_error'):>9}  {_verdict(h)}"
        )
    o, b = report["overall_heldout"], report["uncalibrated_overall_heldout"]
    print(
        f"{'overall':12} {'':5} {o.get('n', 0):5d} {_fmt(o, 'median_abs_error'):>7} "
        f"{_fmt(o, 'p90_abs_error'):>7} {_fmt(o, 'band_coverage'):>7} "
        f"{_fmt(b, 'median_abs_error'):>12} {_fmt(b, 'p90_abs_error'):>9}  {_verdict(o)}"
    )
    print(
        f"\ntargets: median <= {TARGETS['median_abs_error']:.0%}, p90 <= "
        f"{TARGETS['p90_abs_error']:.0%}, band coverage {COVERAGE[0]:.0%}-{COVERAGE[1]:.0%}"
    )
    for line in report["raised_peaks"]:
        print(f"raised peak: {line}")
    worst = sorted(report["heldout_points"], key=lambda r: -r["error"])[:5]
    print("\nworst held-out shapes:")
    for r in worst:
        shape = " ".join(f"{k}={v}" for k, v in r["params"].items())
        print(
            f"  {r['kernel']:18} {shape:58} measured {r['measured_s'] * 1e3:8.3f} ms  "
            f"predicted {r['predicted_s'] * 1e3:8.3f} ms  |err| {r['error']:.0%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
