"""Example files for speculative decoding: ``python -m hwsim.inference.speculative_file FILE.yaml``
prices the sweeps a file describes (:func:`run_file`) and prints them (:func:`format_sweep`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwsim.errors import HwsimError, ProfileError
from hwsim.inference.speculative import SpecSweep, speculative_sweep

EXAMPLE_KEYS = {"target", "hardware", "deployment", "candidates", "k", "batch", "context", "notes"}
CANDIDATE_KEYS = {"draft", "acceptance", "draft_tp", "k", "notes"}


def run_file(path: str | Path) -> list[SpecSweep]:
    """Price the sweeps an example file describes: one per entry of ``candidates:`` (a
    drafter with its acceptance, optionally its own ``k`` list and ``draft_tp``), each over
    the file's ``k`` values and ``batch`` values at ``context`` (keys: :data:`EXAMPLE_KEYS`,
    :data:`CANDIDATE_KEYS`; ``k`` and ``batch`` may be one value or a list)."""
    from hwsim.safe_read import load_yaml, read_text

    file = str(path)
    data = load_yaml(read_text(path, "speculative example"), file)
    if not isinstance(data, dict):
        raise ProfileError("expected a mapping", file=file)
    _keys(data, EXAMPLE_KEYS, {"target", "hardware", "candidates"}, file, None)
    deployment = data.get("deployment") or {}
    if not isinstance(deployment, dict):
        raise ProfileError("expected DeploymentSpec fields", file=file, field="deployment")
    candidates = data["candidates"]
    if not isinstance(candidates, list) or not candidates:
        raise ProfileError("expected a list of drafters", file=file, field="candidates")
    sweeps = []
    for i, cand in enumerate(candidates):
        where = f"candidates[{i}]"
        if not isinstance(cand, dict):
            raise ProfileError("expected a mapping", file=file, field=where)
        _keys(cand, CANDIDATE_KEYS, {"draft", "acceptance"}, file, where)
        sweeps.append(
            speculative_sweep(
                data["target"],
                cand["draft"],
                data["hardware"],
                _listed(cand.get("k", data.get("k", list(range(0, 9))))),
                cand["acceptance"],
                _listed(data.get("batch", 1)),
                data.get("context", 2048),
                draft_tp=cand.get("draft_tp"),
                **deployment,
            )
        )
    return sweeps


def _listed(value: Any) -> list:
    return list(value) if isinstance(value, list) else [value]


def _keys(data: dict, allowed: set[str], required: set[str], file: str, field: str | None):
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ProfileError(
            f"unknown keys {unknown}; allowed: {sorted(allowed)}", file=file, field=field
        )
    missing = sorted(required - set(data))
    if missing:
        raise ProfileError(f"missing keys {missing}", file=file, field=field)


def format_sweep(sweep: SpecSweep) -> str:
    from hwsim.format import fmt_time

    first = sweep.results[0]
    lines = [
        f"{first.target} on {first.hardware}, drafter {first.draft}, context {first.context}",
        f"{'batch':>6} {'k':>3} {'E':>6} {'draft':>10} {'verify':>10} {'verify/base':>11} "
        f"{'TPOT':>10} {'base TPOT':>10} {'speed-up':>8}  verify bound",
    ]
    for r in sweep.results:
        lines.append(
            f"{r.batch:>6} {r.k:>3} {r.tokens_per_step:>6.3f} {fmt_time(r.t_draft_total_s):>10} "
            f"{fmt_time(r.t_verify_s):>10} {r.verify_cost_ratio:>11.2f} {fmt_time(r.tpot_s):>10} "
            f"{fmt_time(r.baseline_tpot_s):>10} {r.speedup:>7.2f}x  {r.verify_bound}"
        )
    for batch in dict.fromkeys(r.batch for r in sweep.results):
        best = sweep.best(batch)
        lines.append(f"best k at batch {batch}: {best.k} ({best.speedup:.2f}x)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m hwsim.inference.speculative_file FILE.yaml", file=sys.stderr)
        return 2
    try:
        print("\n\n".join(format_sweep(sweep) for sweep in run_file(args[0])))
    except HwsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
