"""``slo.confidence``: p90 checks each SLO at the p10-p90 band's high edge on a calibrated
profile (never a larger batch at the SLO or a cheaper plan than p50; strictly smaller batch
where the band's high edge exceeds the point at p50's binding batch); on a datasheet profile
p90 uses the (wider) transfer band of published measurements; the field is validated; the
first screen shows the band next to each SLO margin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwsim.errors import HwsimError
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost
from hwsim.planner.plan import plan
from hwsim.profiles.scenario import SLO
from hwsim.report.first_screen import first_screen_rows, slo_margins

CALIBRATED = "h100-sxm-calibrated"
DATASHEET = "h100-sxm"
README = Path(__file__).resolve().parents[1] / "README.md"


def scenario(confidence: str | None, hardware: str = CALIBRATED, rate: float = 20, **slo) -> dict:
    slo = {"tpot_p95_s": "20 ms", "ttft_p95_s": "500 ms", **slo}
    if confidence is not None:
        slo["confidence"] = confidence
    return {
        "name": "confidence",
        "model": "llama-3.1-8b",
        "hardware": hardware,
        "traffic": {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": rate}},
            "prompt_tokens": 512,
            "output_tokens": 256,
        },
        "slo": slo,
        "candidates": {"hardware": [hardware], "tp": [1, 2], "max_num_seqs": [512]},
        "serving": {"simulate_top": 0},
    }


def test_default_is_p50_and_unknown_values_are_refused():
    assert SLO().confidence == "p50"
    with pytest.raises(HwsimError) as err:
        plan(scenario("p99"))
    text = str(err.value)
    assert "slo.confidence" in text and "'p50'" in text and "'p90'" in text


def test_calibrated_example_is_calibrated():
    from hwsim.profiles.loader import load_hardware
    from hwsim.profiles.scenario import load_scenario

    example = Path(__file__).resolve().parents[1] / "examples/llama31-8b-h100-calibrated.yaml"
    assert load_scenario(example).hardware == CALIBRATED
    assert load_hardware(CALIBRATED).calibration is not None


@pytest.mark.parametrize("rate", [20, 300])
@pytest.mark.parametrize("tpot", ["15 ms", "20 ms", "40 ms"])
def test_p90_is_never_less_conservative_on_a_calibrated_profile(rate, tpot):
    p50 = plan(scenario("p50", rate=rate, tpot_p95_s=tpot))
    p90 = plan(scenario("p90", rate=rate, tpot_p95_s=tpot))
    assert p50.best is not None
    by_label = {r.candidate.label: r for r in p90.feasible + p90.pruned}
    for r50 in p50.feasible:
        r90 = by_label[r50.candidate.label]
        assert r90.slo_confidence == "p90" and "high (p90) edge" in r90.slo_band
        if not r90.feasible:
            continue
        assert r90.batch_at_slo <= r50.batch_at_slo
        assert r90.per_replica_rate_per_s <= r50.per_replica_rate_per_s
        assert r90.replicas >= r50.replicas
        assert r90.cost_per_hour_usd >= r50.cost_per_hour_usd
    if p90.best is not None:
        assert p90.best.cost_per_hour_usd >= p50.best.cost_per_hour_usd
    assert any("slo.confidence p90" in a for a in p90.assumptions)
    assert not any("slo.confidence" in a for a in p50.assumptions)


def test_p90_is_strictly_more_conservative_where_the_high_edge_binds():
    p50 = plan(scenario("p50")).best
    p90 = plan(scenario("p90")).best
    assert p50 is not None and p90 is not None
    assert p50.binding_constraint == "tpot_p95 SLO"
    # the band's high edge exceeds the point at p50's binding batch ...
    dep = make_deployment("llama-3.1-8b", CALIBRATED, p50.candidate.deployment)
    b = float(p50.batch_at_slo)
    step = decode_step_cost(dep, b, 512 + 256 / 2)
    assert step.band_s is not None
    assert float(np.ravel(step.band_s[1])[0]) > float(np.ravel(step.time_s)[0])
    # ... so p90 binds at a strictly smaller batch, at its p90 edge
    assert p90.batch_at_slo < p50.batch_at_slo
    assert p90.binding_constraint == "tpot_p95 SLO at p90"
    # the band at the planned load is reported either way
    for r in (p50, p90):
        assert r.tpot_at_load_low_s < r.tpot_at_load_s < r.tpot_at_load_high_s
        assert r.ttft_p95_at_load_low_s < r.ttft_p95_at_load_s < r.ttft_p95_at_load_high_s


def test_p90_costs_more_where_the_rate_needs_more_replicas():
    p50 = plan(scenario("p50", rate=300)).best
    p90 = plan(scenario("p90", rate=300)).best
    assert p50 is not None and p90 is not None
    assert p90.per_replica_rate_per_s < p50.per_replica_rate_per_s
    assert p90.cost_per_hour_usd >= p50.cost_per_hour_usd


def test_datasheet_profile_p90_uses_the_transfer_band():
    """A device nobody calibrated: p90 checks the SLOs at the transfer band's slow edge
    (published measurements vs the datasheet rung), so never a larger batch or fewer GPUs."""
    p50 = plan(scenario("p50", hardware=DATASHEET))
    p90 = plan(scenario("p90", hardware=DATASHEET))
    assert p50.best is not None and p90.best is not None
    by_label = {r.candidate.label: r for r in p50.feasible}
    for r90 in p90.feasible:
        r50 = by_label[r90.candidate.label]
        assert r90.batch_at_slo <= r50.batch_at_slo and r90.replicas >= r50.replicas
        assert r90.slo_confidence == "p90" and "transfer band" in r90.slo_band
        assert r90.tpot_at_load_high_s > r90.tpot_at_load_s
    assert p90.best.cost_per_hour_usd > p50.best.cost_per_hour_usd  # the band is wide
    assert r50.slo_confidence == "p50" and r50.slo_band == ""
    assert not any("No band on" in a for a in p90.assumptions)
    assert p90.to_dict()["recommendation"]["candidate"]["slo_confidence"] == "p90"


def test_first_screen_shows_the_band_next_to_each_slo_margin():
    result = plan(scenario("p90"))
    margins = {m.label: m for m in slo_margins(result)}
    tpot, ttft = margins["TPOT p95"], margins["TTFT p95"]
    assert tpot.low_s is not None and tpot.high_s is not None
    assert "analytic mean" in tpot.text() and "(p10-p90 " in tpot.text()
    assert "(p10-p90 " in ttft.text()
    rows = dict(first_screen_rows(result))
    assert "(p10-p90 " in rows["SLO TPOT p95"]
    datasheet = {m.label: m for m in slo_margins(plan(scenario("p50", hardware=DATASHEET)))}
    assert "(p10-p90 " in datasheet["TPOT p95"].text()  # the transfer band


def test_readme_documents_slo_confidence():
    text = README.read_text(encoding="utf-8")
    assert "slo.confidence" in text and "confidence: p90" in text
