"""Whole-model predictions vs measurements: prefill (TTFT) and decode-step (TPOT) times.

    python benchmarks/bench_end_to_end.py [--hardware h100-sxm ...] [--results DIR]

Reads the ``end_to_end.csv`` files that ``python -m validation.end_to_end`` wrote on a GPU
(committed under validation/results/end_to_end/<device>/<model>/), prices the same batch,
prompt and context with hwsim on each hardware profile given, and prints predicted vs
measured with the error in percent (and whether the measurement falls in the p10-p90 band
on a calibrated profile). Decode is compared with the eager and the CUDA-graph timings.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost, prefill_cost
from hwsim.profiles.loader import load_hardware

ROOT = Path(__file__).resolve().parents[1] / "validation" / "results" / "end_to_end"


def predict(dep, row) -> tuple[float, float | None, float | None]:
    b, ctx = int(row["batch"]), int(row["context"])
    cost = prefill_cost(dep, b, ctx) if row["phase"] == "prefill" else decode_step_cost(dep, b, ctx)
    band = cost.band_s
    lo, hi = (None, None) if band is None else (float(band[0]), float(band[1]))
    return float(cost.time_s), lo, hi


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hardware", nargs="+", default=["h100-sxm"])
    ap.add_argument("--results", type=Path, default=ROOT)
    args = ap.parse_args()
    files = sorted(args.results.glob("*/*/end_to_end.csv"))
    if not files:
        raise SystemExit(f"no end_to_end.csv under {args.results}")
    for hw_id in args.hardware:
        hw = load_hardware(hw_id)
        errors: dict[str, list[float]] = {"prefill": [], "decode": [], "decode_graph": []}
        print(f"\n== predictions on {hw.id} " + "=" * 50)
        print(f"{'model':16} {'phase':7} {'mode':10} {'B':>3} {'ctx':>6} "
              f"{'measured':>10} {'predicted':>10} {'error':>7}  band")  # fmt: skip
        for path in files:
            meta = json.loads(path.with_suffix(".json").read_text())
            dep = make_deployment(meta["model"], hw)
            for row in csv.DictReader(path.open()):
                measured = float(row["median_s"])
                t, lo, hi = predict(dep, row)
                err = t / measured - 1.0
                key = "decode_graph" if row["mode"] == "cuda_graph" else row["phase"]
                errors[key].append(abs(err))
                band = "" if lo is None else ("in" if lo <= measured <= hi else "out")
                print(f"{path.parent.name:16} {row['phase']:7} {row['mode']:10} "
                      f"{row['batch']:>3} {row['context']:>6} {measured * 1e3:8.2f}ms "
                      f"{t * 1e3:8.2f}ms {err:+7.1%}  {band}")  # fmt: skip
        for key, values in errors.items():
            if values:
                v = np.array(values)
                print(
                    f"{key:13} n={len(v):2}  median |error| {np.median(v):6.1%}  max {v.max():6.1%}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
