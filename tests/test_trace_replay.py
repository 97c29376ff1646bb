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
