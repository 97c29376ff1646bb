"""DistServe's measured OPT-13B ShareGPT traces (validation/published/traces/): each CSV agrees
with its manifest entry and with the summary block its source file prints, its latencies obey
the source's TPOT definition, and a replay in hwsim's simulator returns sane records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwsim.inference.deployment import make_deployment
from hwsim.planner.step_model import EngineStepModel
from hwsim.profiles.deployment import DeploymentSpec
from validation.traces import DISTSERVE_OPT13B, load_manifest, load_measured, replay

MANIFEST = load_manifest()
RUNS = MANIFEST["runs"]
IDS = [r["file"] for r in RUNS]
# The CSVs hold the source's ms fields truncated to 0.01 ms (timestamps to 0.1 ms), in s.
CELL_S = 1e-5


def test_manifest_lists_every_csv_once():
    on_disk = sorted(p.name for p in DISTSERVE_OPT13B.glob("*.csv"))
    assert sorted(IDS) == on_disk
    assert len(set(IDS)) == len(IDS)


@pytest.fixture(scope="module", params=RUNS, ids=IDS)
def run(request):
    return request.param, load_measured(DISTSERVE_OPT13B / request.param["file"])


def test_row_count_matches_manifest_and_source_summary(run):
    entry, trace = run
    n = len(trace["ttft_s"])
    assert n == entry["n_requests"] == entry["source_summary"]["num_requests"]
    assert f"-{entry['n_requests']}-" in entry["source_path"]  # <engine>-<N>-<rate>.exp


def test_arrivals_sorted_from_zero(run):
    _, trace = run
    t = trace["arrival_offset_s"]
    assert t[0] == 0.0
    assert np.all(np.diff(t) >= 0)


def test_nominal_rate_matches_the_arrivals(run):
    """Poisson arrivals: the span of n - 1 exponential gaps has a coefficient of variation
    1 / sqrt(n - 1), so the measured rate (n - 1) / span is within 3 / sqrt(n - 1) of the
    nominal rate (three standard deviations) unless the file is mislabelled."""
    entry, trace = run
    n = len(trace["arrival_offset_s"])
    rate = (n - 1) / trace["arrival_offset_s"][-1]
    assert rate == pytest.approx(entry["nominal_rate_per_s"], rel=3 / math.sqrt(n - 1))
    assert f"-{entry['nominal_rate_per_s']:g}." in entry["source_path"]


def test_means_match_the_source_summary(run):
    """The source prints avg_ttft_ms and avg_tpot_ms over its own rows: a transcription error
    of one digit in one row moves a mean by far more than the truncation (< 0.01 ms)."""
    entry, trace = run
    summary = entry["source_summary"]
    assert np.mean(trace["ttft_s"]) * 1e3 == pytest.approx(summary["avg_ttft_ms"], abs=0.012)
    assert np.mean(trace["tpot_s"]) * 1e3 == pytest.approx(summary["avg_tpot_ms"], abs=0.012)


def test_run_span_matches_the_source_summary(run):
    """test_duration_ms is the last completion after the first issue."""
    entry, trace = run
    end_s = float(np.max(trace["arrival_offset_s"] + trace["e2e_s"]))
    assert end_s * 1e3 == pytest.approx(entry["source_summary"]["test_duration_ms"], abs=0.5)


def test_e2e_is_ttft_plus_tpot_times_the_later_tokens(run):
    """The source's TPOT: (complete - first token) / (output - 1), so e2e = ttft + tpot x
    (output - 1) up to the truncation of the three cells (the tpot cell's error is multiplied
    by output - 1; vllm-100-1's e2e comes from timestamps truncated to 0.1 ms)."""
    _, trace = run
    later = trace["output_tokens"] - 1
    gap = trace["e2e_s"] - (trace["ttft_s"] + trace["tpot_s"] * later)
    assert np.all(np.abs(gap) <= 2e-4 + CELL_S * later)
    assert np.all(trace["output_tokens"] >= 2)  # TPOT is defined on every row


def test_lengths_fit_opt_positions(run):
    """OPT-13B has 2,048 positions (facebook/opt-13b config.json); DistServe's ShareGPT sample
    keeps pairs under that."""
    _, trace = run
    assert np.all(trace["prompt_tokens"] + trace["output_tokens"] <= 2048)


def test_small_replay_runs_and_ttft_covers_the_prefill(tmp_path):
    """The first 20 requests of the first vLLM run, replayed as DistServe ran vLLM."""
    from benchmarks.bench_trace_replay import VLLM_DEPLOYMENT, write_profile

    model = str(write_profile(tmp_path))
    full = load_measured(DISTSERVE_OPT13B / "vllm-100-1.csv")
    trace = {k: v[:20] for k, v in full.items()}
    result = replay(trace, model, "a100-80gb-sxm", VLLM_DEPLOYMENT)
    records = result.records
    assert len(records) == 20
    assert np.all(records.completed)
    np.testing.assert_array_equal(records.prompt_tokens, trace["prompt_tokens"])
    np.testing.assert_allclose(records.arrival_s, trace["arrival_offset_s"])
    dep = make_deployment(model, "a100-80gb-sxm", DeploymentSpec(**VLLM_DEPLOYMENT))
    step = EngineStepModel(dep)
    for p, ttft in zip(trace["prompt_tokens"], records.ttft_s, strict=True):
        prefill_s = step.iteration_time_s(np.array([p]), np.array([p]))
        assert ttft >= prefill_s * (1 - 1e-9)


DISTSERVE = [r for r in RUNS if r["engine"] == "DistServe"]


def test_distserve_runs_replay_the_vllm_sample():
    """DistServe's runs serve the same ShareGPT sample as the vLLM runs: in arrival order the
    (prompt, output) pairs agree with the longest vLLM file's (an independent check on the
    prompt lengths, which no identity in a row constrains)."""
    vllm = max((r for r in RUNS if r["engine"] == "vLLM"), key=lambda r: r["n_requests"])
    ref = load_measured(DISTSERVE_OPT13B / vllm["file"])
    n = len(ref["prompt_tokens"])
    for entry in DISTSERVE:
        trace = load_measured(DISTSERVE_OPT13B / entry["file"])
        m = min(n, len(trace["prompt_tokens"]))
        np.testing.assert_array_equal(trace["prompt_tokens"][:m], ref["prompt_tokens"][:m])
        np.testing.assert_array_equal(trace["output_tokens"][:m], ref["output_tokens"][:m])


def test_distserve_layout_named_in_the_source_path():
    for entry in DISTSERVE:
        assert "distserve-c21d11-" in entry["source_path"]
        assert "tp 2" in entry["layout"] and "tp 1" in entry["layout"]


def test_two_pool_replay_covers_prefill_and_transfer(tmp_path):
    """The first 30 requests of the first DistServe run through both pools: every request
    comes back completed, once, and its TTFT (first token from the prefill instance) is at
    least its prompt's prefill on the tp-2 instance; it reaches the decode instance no
    earlier than that plus its exposed KV transfer."""
    from benchmarks.bench_trace_replay import (
        DISAGGREGATION,
        DISTSERVE_DECODE,
        DISTSERVE_PREFILL,
        write_profile,
    )
    from validation.traces import replay_disaggregated

    model = str(write_profile(tmp_path))
    full = load_measured(DISTSERVE_OPT13B / DISTSERVE[0]["file"])
    trace = {k: v[:30] for k, v in full.items()}
    run = replay_disaggregated(
        trace, model, "a100-80gb-sxm", DISTSERVE_PREFILL, DISTSERVE_DECODE, DISAGGREGATION
    )
    records = run.records
    assert len(records) == 30
    assert np.all(records.completed) and np.all(run.done)
    np.testing.assert_array_equal(np.sort(run.mine), np.arange(30))
    np.testing.assert_array_equal(records.prompt_tokens, trace["prompt_tokens"][run.mine])
    assert np.all(run.exposed_s >= 0)
    pre = make_deployment(model, "a100-80gb-sxm", DeploymentSpec(**DISTSERVE_PREFILL))
    step = EngineStepModel(pre)
    for p, ttft in zip(records.prompt_tokens, records.ttft_s, strict=True):
        prefill_s = step.iteration_time_s(np.array([p]), np.array([p]))
        assert ttft >= prefill_s * (1 - 1e-9)
    admitted = run.decode.records.admitted_s
    arrival_at_decode = (run.prefill_end_s + run.exposed_s)[run.mine]
    assert np.all(admitted >= arrival_at_decode - 1e-9)
    assert np.all(records.finish_s > records.first_token_s)


def test_goodput_interpolates_bounds_and_says_which():
    """Goodput at 90% attainment: interpolated between the rates around the crossing (in rate
    order, whatever the order given), else a bound; the note names the case."""
    from benchmarks.bench_trace_replay import bounded_goodput_per_s, goodput_per_s

    rates, att = [12.0, 3.0, 9.0, 6.0], [0.36, 0.96, 0.55, 0.91]
    g = bounded_goodput_per_s(rates, att)
    assert g["kind"] == "interpolated"
    assert g["value_per_s"] == pytest.approx(6 + (0.91 - 0.9) / (0.91 - 0.55) * 3)
    assert g["value_per_s"] == goodput_per_s(rates, att)
    assert g["note"].startswith("interpolated") and "6/s" in g["note"] and "9/s" in g["note"]
    g = bounded_goodput_per_s([3.0, 6.0], [0.96, 0.91])
    assert (g["kind"], g["value_per_s"]) == ("lower_bound", 6.0)
    assert g["note"].startswith("lower bound") and "6/s" in g["note"]
    g = bounded_goodput_per_s([2.0, 1.0, 1.5], [0.49, 0.68, 0.67])
    assert (g["kind"], g["value_per_s"]) == ("upper_bound", 1.0)
    assert g["note"].startswith("upper bound") and "1/s" in g["note"]
    assert goodput_per_s([2.0, 1.0], [0.49, 0.68]) is None
    # exactly 90% passes: the crossing is past it
    assert bounded_goodput_per_s([3.0, 6.0, 9.0], [0.95, 0.9, 0.5])["value_per_s"] == 6.0


def _runs(rates, att):
    """Bench-shaped runs at ``rates`` with measured (= predicted) attainment ``att``."""
    from benchmarks.bench_trace_replay import METRICS

    return [
        {
            "nominal_rate_per_s": r,
            "measured": {"attainment": a},
            "predicted": {"attainment": a},
            "relative_error": dict.fromkeys(METRICS, 0.0),
        }
        for r, a in zip(rates, att, strict=True)
    ]


def test_per_gpu_ratio_kind_follows_the_two_goodputs():
    from benchmarks.bench_trace_replay import per_gpu_comparison

    vllm_up = _runs([1.0, 2.0], [0.68, 0.49])  # < 1 /s per GPU
    vllm_exact = _runs([0.5, 1.0], [0.95, 0.68])
    dist_exact = _runs([3.0, 6.0, 9.0, 12.0], [0.96, 0.91, 0.55, 0.36])
    dist_low = _runs([3.0, 6.0], [0.96, 0.91])  # >= 2 /s per GPU
    dist_up = _runs([3.0, 6.0], [0.5, 0.4])

    def ratio(v, d):
        return per_gpu_comparison({"vLLM": v, "DistServe c21d11": d}, "measured")

    out = ratio(vllm_up, dist_exact)
    d_gpu = (6 + 0.01 / 0.36 * 3) / 3
    assert out["DistServe c21d11"]["per_gpu_per_s"] == pytest.approx(d_gpu)
    assert out["ratio"]["kind"] == "lower_bound"
    assert out["ratio"]["value"] == pytest.approx(d_gpu / 1.0)
    assert "interpolated" in out["ratio"]["note"] and "lower bound" in out["ratio"]["note"]
    out = ratio(vllm_exact, dist_exact)
    assert out["ratio"]["kind"] == "interpolated"
    v_gpu = 0.5 + 0.05 / 0.27 * 0.5
    assert out["ratio"]["value"] == pytest.approx(d_gpu / v_gpu)
    assert ratio(vllm_up, dist_low)["ratio"]["kind"] == "lower_bound"
    assert ratio(vllm_exact, dist_up)["ratio"]["kind"] == "upper_bound"
    out = ratio(vllm_up, dist_up)
    assert out["ratio"] == {**out["ratio"], "kind": "unbounded", "value": None}


def test_summary_goodput_note_matches_its_case():
    from benchmarks.bench_trace_replay import summary

    def side(runs):
        out = summary(runs)
        assert out["goodput_predicted"] == out["goodput_measured"]
        return out["goodput_measured"]

    assert side(_runs([3.0, 6.0, 9.0], [0.96, 0.91, 0.55]))["note"].startswith("interpolated")
    assert side(_runs([3.0, 6.0], [0.96, 0.91]))["note"].startswith("lower bound")
    assert side(_runs([1.0, 2.0], [0.68, 0.49]))["note"].startswith("upper bound")


def test_measured_distserve_goodput_crosses_90_between_6_and_9():
    """DistServe's c21d11 runs at 3, 6, 9 and 12 req/s: measured attainment (DistServe's SLOs)
    meets 90% at 3 and 6 and misses it at 9 and 12, so its measured goodput is interpolated."""
    from benchmarks.bench_trace_replay import SLO, bounded_goodput_per_s
    from validation.traces import measured_records, metrics

    rates, att = [], []
    for entry in DISTSERVE:
        trace = load_measured(DISTSERVE_OPT13B / entry["file"])
        rates.append(entry["nominal_rate_per_s"])
        att.append(metrics(measured_records(trace), SLO)["attainment"])
    assert sorted(rates) == [3.0, 6.0, 9.0, 12.0]
    g = bounded_goodput_per_s(rates, att)
    assert g["kind"] == "interpolated" and 6.0 < g["value_per_s"] < 9.0
