"""The plan's first screen (issue 16): the recommendation, each SLO with its margin (the
simulated p95 against the p95 target), the cost, the price with its source and the launch
command; candidates grouped by hardware with the rest folded; one money format."""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import pytest

from hwsim.planner.plan import plan
from hwsim.profiles.loader import load_hardware
from hwsim.report.first_screen import (
    TOP_PER_HARDWARE,
    first_screen_rows,
    slo_margins,
)
from hwsim.report.plan_report import _markdown, md_escape

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "chat-service.yaml"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    text = EXAMPLE.read_text().replace("simulate_top: 3", "simulate_top: 1")
    text = text.replace(
        "hardware: [h100-sxm, h200-sxm, a100-80gb-sxm, l40s, mi300x]", "hardware: [h100-sxm, l40s]"
    )
    path = tmp_path_factory.mktemp("s") / "s.yaml"
    path.write_text(text)
    return plan(path)


def test_each_slo_margin_is_the_simulated_p95_against_its_target(result):
    best = result.best
    margins = {m.label: m for m in slo_margins(result)}
    assert set(margins) == {"TTFT p95", "TPOT p95"}  # the two SLOs chat-service sets
    ttft = margins["TTFT p95"]
    assert ttft.target_s == 1.0
    assert ttft.simulated_s == best.simulated["ttft_p95_s"]
    assert ttft.margin == pytest.approx(1 - best.simulated["ttft_p95_s"] / 1.0)
    tpot = margins["TPOT p95"]
    assert tpot.margin == pytest.approx(1 - best.simulated["tpot_p95_s"] / 0.05)
    assert "analytic mean" in tpot.text()  # the analytic TPOT is a mean, and says so


def test_the_first_screen_names_cost_price_source_and_launch_command(result):
    rows = dict(first_screen_rows(result))
    best = result.best
    assert rows["recommendation"] == result.recommendation_sentence()
    hw = load_hardware(best.candidate.hardware)
    assert hw.price_per_hour_usd.source in rows["price"]
    assert f"${best.cost_per_hour_usd:,.2f}/hour" in rows["cost"]
    argv = shlex.split(rows["launch (one replica)"])
    assert argv[:2] == ["vllm", "serve"]
    tp = argv[argv.index("--tensor-parallel-size") + 1]
    assert int(tp) == best.candidate.deployment.tp


def test_candidates_are_grouped_by_hardware_with_the_rest_folded(result):
    md = _markdown(result, {})
    for hw in ("h100-sxm", "l40s"):
        n = sum(r.candidate.hardware == hw for r in result.feasible)
        assert "### " + md_escape(hw) in md
        if n > TOP_PER_HARDWARE:
            assert f"{n - TOP_PER_HARDWARE} more on {hw}<" in md
    assert md.index("- **SLO TTFT p95**") < md.index("## Feasible candidates")


def test_in_flight_at_the_peak_is_littles_law_and_below_the_slo_batch(result):
    for r in result.feasible:
        per_replica = r.in_flight_per_gpu_at_load * r.candidate.deployment.tp
        # Little's law: requests in flight = rate x mean time in the system; the mean end to
        # end time lies between a prefill and the p95 TTFT plus (mean output - 1) TPOTs
        w = result.workload
        high = r.ttft_p95_at_load_s + (w.output_mean - 1) * r.tpot_at_load_s
        assert 0 < per_replica <= r.load_rate_per_s * high * 1.001
        assert r.in_flight_per_gpu_at_load <= r.users_per_gpu


def test_one_money_format_in_the_table_and_the_first_screen(result):
    per_million = result.best.cost_per_million_output_tokens_usd
    assert per_million < 1 and math.isfinite(per_million)
    shown = f"${per_million:.3g}"
    assert shown in dict(first_screen_rows(result))["cost"]
    assert f"| {shown} |" in _markdown(result, {}).replace("\\", "")
