"""Whether a simulated summary meets the scenario's SLOs, for one-pool and two-pool
confirmations alike."""

from __future__ import annotations

from typing import Any

from hwsim.planner.analytic import CandidateResult
from hwsim.profiles.scenario import SLO


def add_slo_verdict(out: dict[str, Any], slo: SLO, r: CandidateResult, overloaded: bool) -> None:
    """Add to a simulated summary ``out`` whether it meets ``slo`` (never when overloaded) and
    its simulated / analytic ratios against ``r``."""
    out["meets_slo"] = not overloaded and all(
        target is None or value <= target
        for target, value in (
            (slo.ttft_p95_s, out["ttft_p95_s"]),
            (slo.tpot_p95_s, out["tpot_p95_s"]),
            (slo.e2e_p95_s, out["e2e_p95_s"]),
            (slo.ttft_p99_s, out["ttft_p99_s"]),
        )
    )
    out["analytic_vs_simulated"] = {
        "ttft_p95_simulated_over_analytic": out["ttft_p95_s"] / r.ttft_p95_at_load_s,
        "tpot_p95_simulated_over_analytic_mean": out["tpot_p95_s"] / r.tpot_at_load_s,
    }
