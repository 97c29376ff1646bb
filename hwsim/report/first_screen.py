"""What a plan's reader needs first: the recommendation, each SLO with its margin (the
simulated p95 against the p95 target where the simulator ran), the cost, the price per
GPU-hour with its source, and the command that launches the recommendation; then the
candidates grouped by hardware. Shared by the terminal summary and the report."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass

from hwsim.errors import HwsimError
from hwsim.format import fmt_band, fmt_time
from hwsim.profiles.loader import load_hardware

# (SLO field, label, analytic field, what the analytic value is, simulated key, band prefix:
# the analytic value's p10-p90 band is <prefix>_low_s / <prefix>_high_s where there is one)
SLO_ROWS = (
    ("ttft_p95_s", "TTFT p95", "ttft_p95_at_load_s", "analytic p95", "ttft_p95_s",
     "ttft_p95_at_load"),
    ("ttft_p99_s", "TTFT p99", None, "", "ttft_p99_s", None),
    ("tpot_p95_s", "TPOT p95", "tpot_at_load_s", "analytic mean", "tpot_p95_s", "tpot_at_load"),
    ("e2e_p95_s", "end to end p95", "e2e_s", "analytic at the SLO batch", "e2e_p95_s", None),
)  # fmt: skip
TOP_PER_HARDWARE = 3  # candidates shown per hardware before the rest are folded


@dataclass(frozen=True)
class SloMargin:
    label: str
    target_s: float
    analytic_s: float | None  # at the planned load per replica (TPOT: its mean)
    analytic_kind: str
    simulated_s: float | None  # the simulator's percentile, where it ran
    low_s: float | None = None  # the analytic value's p10-p90 band (calibrated profiles)
    high_s: float | None = None

    @property
    def margin(self) -> float | None:
        """1 - value / target of the simulated percentile, else of the analytic value."""
        value = self.simulated_s if self.simulated_s is not None else self.analytic_s
        if value is None or not math.isfinite(value):
            return None
        return 1.0 - value / self.target_s

    def text(self) -> str:
        parts = [f"target {fmt_time(self.target_s)}"]
        if self.simulated_s is not None:
            parts.append(f"simulated {fmt_time(self.simulated_s)}")
        if self.analytic_s is not None and math.isfinite(self.analytic_s):
            parts.append(
                f"{self.analytic_kind} {fmt_time(self.analytic_s)}"
                + fmt_band(self.low_s, self.high_s)
            )
        margin = self.margin
        if margin is not None:
            parts.append(f"{'margin' if margin >= 0 else 'MISSED by'} {abs(margin):.0%}")
        return ", ".join(parts)


def _money(x: float) -> str:
    """Dollars: cents from $1 up, three significant digits below (as the candidate table)."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"${x:,.2f}" if x >= 1 else f"${x:.3g}"


def slo_margins(result) -> list[SloMargin]:
    best = result.best
    if best is None:
        return []
    slo, sim = result.scenario.slo, best.simulated or {}
    out = []
    for field, label, analytic, kind, simulated, band in SLO_ROWS:
        target = getattr(slo, field)
        if target is None:
            continue
        a = getattr(best, analytic) if analytic else None
        s = sim.get(simulated)
        finite = s if s is not None and math.isfinite(s) else None
        low = getattr(best, f"{band}_low_s", None) if band else None
        high = getattr(best, f"{band}_high_s", None) if band else None
        out.append(SloMargin(label, target, a, kind, finite, low, high))
    return out


def price_text(result) -> str:
    """The recommendation's price per GPU-hour and where it comes from."""
    best = result.best
    if best is None:
        return "-"
    hw_id = best.candidate.hardware
    price = best.price_per_gpu_hour_usd
    prefill_hw = getattr(best.candidate, "prefill_hardware", None)  # disaggregated: two pools
    if prefill_hw is not None:
        return (
            f"prefill {_money(best.prefill_price_per_gpu_hour_usd)} per GPU-hour on {prefill_hw}, "
            f"decode {_money(best.decode_price_per_gpu_hour_usd)} per GPU-hour on {hw_id} "
            f"({_money(price)} on average over the plan's GPUs)"
        )
    prices = (result.scenario.candidates or {}).get("price_per_gpu_hour_usd") or {}
    if hw_id in prices:
        source = "the scenario's candidates.price_per_gpu_hour_usd"
    else:
        try:
            sourced = load_hardware(hw_id).price_per_hour_usd
        except HwsimError:
            sourced = None
        source = sourced.source if sourced is not None else "no price in the profile"
    return f"{_money(price)} per GPU-hour on {hw_id} ({source})"


def cost_text(result) -> str:
    best = result.best
    if best is None:
        return "-"
    per_hour = best.cost_per_hour_usd
    text = f"{_money(per_hour)}/hour, ${per_hour * 730:,.0f}/month (730 h)"
    per_million = best.cost_per_million_output_tokens_usd
    if math.isfinite(per_million):
        text += f", {_money(per_million)} per 1M output tokens at the peak"
    return text


def launch_command(result, engine: str = "vllm") -> str:
    """The engine command that realises the recommendation (``hwsim plan --emit``), or why
    there is none."""
    from hwsim.deploy.engines import engine_command
    from hwsim.deploy.target import from_plan, pool_targets

    try:
        if result.best is not None and result.best.candidate.disaggregated:
            return "; ".join(
                f"{t.pool} pool: {shlex.join(engine_command(engine, t).argv)}"
                for t in pool_targets(result, 1)
            )
        cmd = engine_command(engine, from_plan(result, 1))
    except HwsimError as exc:
        return f"none: {exc}"
    return shlex.join(cmd.argv)


def first_screen_rows(result) -> list[tuple[str, str]]:
    """(label, text) rows: the recommendation and everything it is judged by."""
    rows = [("recommendation", result.recommendation_sentence())]
    rows += [(f"SLO {m.label}", m.text()) for m in slo_margins(result)]
    best = result.best
    if best is not None and best.slo_band:
        rows.append((f"SLO confidence {result.scenario.slo.confidence}", best.slo_band))
    rows += [
        ("cost", cost_text(result)),
        ("price", price_text(result)),
        ("launch (one replica)", launch_command(result)),
    ]
    return rows


def by_hardware(rows: list, hardware: list[str]) -> list[tuple[str, list, list]]:
    """Rows grouped by their candidate's hardware in the order of the cheapest candidate:
    (hardware, the first TOP_PER_HARDWARE rows, the rest)."""
    groups: dict[str, list] = {}
    for row, hw in zip(rows, hardware):
        groups.setdefault(hw, []).append(row)
    return [(hw, g[:TOP_PER_HARDWARE], g[TOP_PER_HARDWARE:]) for hw, g in groups.items()]
