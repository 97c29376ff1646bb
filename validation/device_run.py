"""Measure a lent GPU within a fixed time budget, saving after every group of kernels.

    python -m validation.device_run --out OUT --budget-s 360

The full CUDA sweep (:func:`validation.suite.plan_cuda`) is run in priority order — library
GEMMs, decode and prefill attention, bandwidth kernels, the Triton kernels, then the forced
SDPA backends — and after each group every measurement so far is written under
``OUT/results/<device>/...`` and packed into ``OUT/results.tgz``. ``--timing graph`` times
every sample as one CUDA-graph replay of the calls (device time, without the host's per-call
dispatch: :class:`validation.harness.GraphReplayTimer`); such results go beside the eager
ones, e.g. under ``validation/results/cuda_graph/``, and their metadata says so. A time limit
on the machine therefore costs only the tail of the sweep, never what was measured. Fitting
needs no GPU: unpack the archive into ``validation/results/`` and run
``hwsim calibrate --from-measurements validation/results/<device>`` anywhere.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from validation import harness, results, suite

GROUPS: tuple[tuple[str, Callable], ...] = (
    ("gemm torch", lambda c: c.kernel == "gemm" and c.stack == "torch"),
    ("decode sdpa", lambda c: c.kernel == "attention_decode" and c.variant == "torch.sdpa"),
    ("prefill sdpa", lambda c: c.kernel == "attention_prefill" and c.variant == "torch.sdpa"),
    ("bandwidth", lambda c: c.kernel in ("copy", "norm")),
    ("triton", lambda c: c.stack == "triton"),
    ("sdpa backends", lambda c: c.kernel.startswith("attention") and c.variant.count(".") == 2),
)


def grouped(cases: list) -> list[tuple[str, list]]:
    """Cases in priority groups; anything no group claims runs last."""
    out, left = [], list(cases)
    for name, wanted in GROUPS:
        mine = [c for c in left if wanted(c)]
        left = [c for c in left if not wanted(c)]
        out.append((name, mine))
    return out + ([("other", left)] if left else [])


def _nvidia_smi() -> str:
    try:
        return subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi unavailable: {exc}"


def _pack(root: Path, archive: Path) -> None:
    tmp = archive.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(root, arcname="results")
    tmp.replace(archive)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=360.0, help="stop starting cases after")
    ap.add_argument("--quick", action="store_true", help="the quick CUDA sweep")
    ap.add_argument("--device", default="cuda")
    ap.add_argument(
        "--timing",
        choices=harness.TIMINGS,
        default="events",
        help="events: eager calls between CUDA events; graph: one CUDA-graph replay of the "
        "calls (device time, no host dispatch); recorded in every metadata.json",
    )
    args = ap.parse_args(argv)

    start = time.perf_counter()
    deadline = start + args.budget_s
    dev = harness.select_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nvidia-smi.txt").write_text(_nvidia_smi())
    root = Path("/tmp/hwsim-results") if dev.kind == "cuda" else args.out / "results"
    from hwsim.profiles.device_match import profile_for_device
    from hwsim.profiles.loader import load_hardware

    base = load_hardware(profile_for_device(dev.kind, dev.name))
    pool = harness.pool_bytes_for_profile(base)
    policy = harness.QUICK
    timer = harness.make_timer(dev, args.timing)
    cases = suite.plan(dev, args.quick)
    print(f"{dev.name} ({dev.slug}): {len(cases)} cases, budget {args.budget_s:.0f} s", flush=True)
    measured, skipped, log = [], [], []
    for name, group in grouped(cases):
        if not group:
            continue
        t0 = time.perf_counter()
        if t0 > deadline:
            skipped += [(c.label(), "deadline: not measured") for c in group]
            log.append({"group": name, "cases": len(group), "measured": 0, "elapsed_s": 0.0})
            continue
        run = suite.run_suite(
            group,
            dev,
            policy=policy,
            pool_bytes=pool,
            timer=timer,
            progress=False,
            deadline_s=deadline,
        )
        measured += run.measurements
        skipped += run.skipped
        entry = {
            "group": name,
            "cases": len(group),
            "measured": len(run.measurements),
            "skipped": len(run.skipped),
            "elapsed_s": round(time.perf_counter() - t0, 1),
        }
        log.append(entry)
        print(json.dumps(entry), flush=True)
        extra = {
            "sweep": "quick" if args.quick else "full",
            "pool_bytes": pool,
            "timing": "cuda_graph" if args.timing == "graph" else "eager_events",
        }
        results.save(root, dev, measured, run.threads, extra)
        (args.out / "skipped.json").write_text(json.dumps(skipped, indent=1) + "\n")
        (args.out / "groups.json").write_text(json.dumps(log, indent=1) + "\n")
        _pack(root, args.out / "results.tgz")
    total = time.perf_counter() - start
    print(f"measured {len(measured)}, skipped {len(skipped)} in {total:.0f} s", flush=True)
    late = sum(reason.startswith("deadline") for _, reason in skipped)
    print(f"  {late} not started before the deadline")
    for label, reason in [s for s in skipped if not s[1].startswith("deadline")][:40]:
        print(f"  skipped {label}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
