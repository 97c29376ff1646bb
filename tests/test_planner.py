"""Capacity planner: hand-checked sizing, simulator agreement at vanishing load, report, CLI."""

import base64
import json
import math
import shutil
import socket
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import hwsim
from hwsim.cli.main import app
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost, prefill_cost
from hwsim.planner.plan import plan, simulate
from hwsim.planner.step_model import EngineStepModel
from hwsim.report.plan_report import write_report
from hwsim.serving import SchedulerConfig
from hwsim.serving import simulate as run_sim
from hwsim.serving.traffic import Requests

runner = CliRunner()


def scenario(**over):
    base = {
        "name": "decode-bound",
        "model": "llama-2-7b",
        "hardware": "a100-80gb-sxm",
        "traffic": {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 30}},
            "prompt_tokens": 64,
            "output_tokens": 256,
        },
        "slo": {"tpot_p95_s": "30 ms", "headroom_fraction": 0.25},
        "candidates": {"hardware": ["a100-80gb-sxm"], "tp": [1], "max_num_seqs": [512]},
        "serving": {"simulate_top": 0},
    }
    base.update(over)
    return base


def test_decode_bound_replicas_by_hand():
    """replicas = ceil(peak / per-replica throughput at the SLO), throughput from the engine's
    step times by a plain loop over batch sizes."""
    result = plan(scenario())
    best = result.best
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm")
    s, g = 64.0, 256.0
    t_pf = float(prefill_cost(dep, 1, s).time_s)
    best_rate = 0.0
    for b in range(1, 513):
        t_dec = float(decode_step_cost(dep, b, s + g / 2).time_s)
        rate = b / (g * t_dec + b * t_pf)
        if t_dec / (1 - rate * t_pf) <= 0.030:
            best_rate = max(best_rate, rate)
    expected = math.ceil(30 / (best_rate * 0.75))
    assert best.replicas == expected
    assert best.gpus == expected
    assert best.cost_per_hour_usd == pytest.approx(
        expected * hwsim.load_hardware("a100-80gb-sxm").price_per_hour_usd.value
    )
    assert best.binding_constraint == "tpot_p95 SLO"


def test_vanishing_load_simulation_equals_analytic_service_time():
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm")
    model = EngineStepModel(dep)
    prompt, output = 300, 40
    # one request at a time, far apart
    req = Requests.from_arrays(
        np.array([0.0, 100.0]), np.array([prompt] * 2), np.array([output] * 2)
    )
    config = SchedulerConfig(kv_capacity_tokens=100_000, max_num_batched_tokens=4096)
    res = run_sim(req, model, config)
    ttft = res.records.ttft_s
    np.testing.assert_allclose(ttft, float(prefill_cost(dep, 1, prompt).time_s), rtol=1e-9)
    decode = [
        model.iteration_time_s(np.array([1]), np.array([prompt + i])) for i in range(1, output)
    ]
    np.testing.assert_allclose(res.records.e2e_s - ttft, sum(decode), rtol=1e-9)
    # and the step model agrees with the engine's own decode step (within the 16-token rounding)
    assert decode[0] == pytest.approx(float(decode_step_cost(dep, 1, prompt + 1).time_s), rel=2e-3)


def test_infeasible_candidates_are_pruned_with_reasons():
    sc = scenario(candidates={"hardware": ["l4", "a100-80gb-sxm"], "tp": [1, 3]})
    result = plan(sc)
    reasons = {r.candidate.label: r.reason for r in result.pruned}
    assert "does not divide" in reasons["l4 tp3 pp1 w:bf16 kv:bf16"]
    assert "weights do not fit" not in reasons.get("l4 tp1 pp1 w:bf16 kv:bf16", "")
    hopeless = plan(scenario(slo={"tpot_p95_s": "1 ms"}))
    assert hopeless.best is None
    assert "unreachable even at batch 1" in hopeless.pruned[0].reason


def test_parallel_processes_agree_with_serial():
    sc = scenario(
        candidates={
            "hardware": ["a100-80gb-sxm", "h100-sxm"],
            "tp": [1, 2],
            "weight_dtype": ["bf16", "fp8"],
        }
    )
    serial = plan(sc, workers=1)
    pooled = plan(sc, workers=2)
    assert [r.to_dict() for r in serial.feasible] == [r.to_dict() for r in pooled.feasible]


def test_simulator_confirmations_in_worker_processes_agree_with_serial(monkeypatch):
    import hwsim.planner.parallel as parallel

    sc = scenario(candidates={"hardware": ["a100-80gb-sxm", "h100-sxm"], "tp": [1, 2]})
    pooled_calls = []
    in_pool = parallel.map_in_pool
    monkeypatch.setattr(
        parallel,
        "map_in_pool",
        lambda fn, args, n: pooled_calls.append(len(args)) or in_pool(fn, args, n),
    )
    serial = plan(sc, workers=1, simulate_top=2)
    assert pooled_calls == []
    pooled = plan(sc, workers=2, simulate_top=2)
    assert pooled_calls == [2]  # the two confirmations, as one pool's jobs
    replayed = [r for r in pooled.feasible + pooled.pruned if r.simulated]
    assert len(replayed) == 2
    for part in ("feasible", "pruned"):
        got, want = getattr(pooled, part), getattr(serial, part)
        assert [r.simulated for r in got] == [r.simulated for r in want]
        assert [r.to_dict() for r in got] == [r.to_dict() for r in want]


def test_simulate_api_returns_records_and_percentiles():
    sc = scenario(
        traffic={
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 2}},
            "prompt_tokens": 200,
            "output_tokens": 50,
        }
    )
    result, summary = simulate(sc, n_requests=200, seed=1)
    rec = result.records
    assert len(rec) == 200 and rec.completed.all()
    assert np.all(rec.first_token_s >= rec.arrival_s) and np.all(rec.finish_s >= rec.first_token_s)
    assert summary.ttft.p95_s >= summary.ttft.p50_s > 0
    again, _ = simulate(sc, n_requests=200, seed=1)
    np.testing.assert_array_equal(again.records.finish_s, rec.finish_s)


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_report_is_self_contained_and_never_overwrites(tmp_path):
    sc = scenario(
        candidates={"hardware": ["a100-80gb-sxm", "h100-sxm"]},
        serving={"simulate_top": 1, "n_requests": 200},
    )
    result = plan(sc)
    paths = write_report(result, tmp_path / "out")
    parser = _Images()
    parser.feed(paths["html"].read_text())
    assert len(parser.sources) == 5
    for src in parser.sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths["html"].read_text()
    assert result.recommendation_sentence().split(":")[0] in text
    md = paths["markdown"].read_text()
    assert "plots/roofline.png" in md and (tmp_path / "out/plots/roofline.png").is_file()
    before = paths["html"].read_bytes()
    with pytest.raises(hwsim.HwsimError, match="would overwrite"):
        write_report(result, tmp_path / "out")
    assert paths["html"].read_bytes() == before


def _write(tmp_path, data) -> Path:
    import yaml

    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_plan_json_and_report(tmp_path):
    path = _write(tmp_path, scenario(serving={"simulate_top": 1, "n_requests": 100}))
    out = tmp_path / "report"
    result = runner.invoke(app, ["plan", str(path), "--json", "--report", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["recommendation"]["sentence"].startswith("Run ")
    top = data["recommendation"]["candidate"]
    for key in ("memory.weights_bytes", "latency.ttft_s", "capacity.users_per_gpu"):
        assert key in top["estimate"]
    assert top["simulated"]["n_requests"] == 100
    assert (out / "report.html").is_file()
    again = runner.invoke(app, ["plan", str(path), "--report", str(out)])
    assert again.exit_code == 2 and "would overwrite" in again.output


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"slo": {"tpot_p95_s": "1 ms"}}, "no candidate meets the SLOs"),
        ({"traffic": {"arrivals": {"kind": "poisson"}}}, "traffic"),
        ({"candidates": {"hardware": ["h100-sxm"], "tp": [0]}}, "tp"),
        ({"slo": {"tpot_p95_s": "fast"}}, "slo.tpot_p95_s"),
    ],
)
def test_cli_plan_errors(tmp_path, patch, fragment):
    path = _write(tmp_path, scenario(**patch))
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_path_matches_local(tmp_path, monkeypatch):
    """A local Ray head on the loopback address, started by this test, runs the search."""
    ray = pytest.importorskip("ray")
    cli = shutil.which("ray")
    if cli is None:
        pytest.skip("ray command not on PATH")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    port = _free_port()
    start = subprocess.run(
        [
            cli,
            "start",
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert start.returncode == 0, start.stderr
    try:
        sc = scenario(candidates={"hardware": ["a100-80gb-sxm", "h100-sxm"], "tp": [1, 2]})
        remote = plan(sc, ray_address=f"127.0.0.1:{port}")
        local = plan(sc, workers=1)
        assert [r.to_dict() for r in remote.feasible] == [r.to_dict() for r in local.feasible]
    finally:
        ray.shutdown()
        subprocess.run([cli, "stop", "--force"], capture_output=True, timeout=120)


def test_prefill_wait_quantile_matches_a_simulated_mm1_queue():
    """For exponential service (c^2 = 1) the M/G/1 tail approximation is exact (M/M/1):
    check it against a Lindley-recursion simulation of 200,000 customers."""
    from hwsim.planner.analytic import prefill_wait_quantile_s

    rng = np.random.default_rng(0)
    rho, service_s = 0.7, 0.05
    n = 200_000
    gaps = rng.exponential(service_s / rho, n)
    service = rng.exponential(service_s, n)
    wait = np.zeros(n)
    for i in range(1, n):  # Lindley: W_i = max(0, W_{i-1} + S_{i-1} - A_i)
        wait[i] = max(0.0, wait[i - 1] + service[i - 1] - gaps[i])
    for q in (0.95, 0.99):
        predicted = float(prefill_wait_quantile_s(rho, service_s, 1.0, q))
        assert predicted == pytest.approx(np.quantile(wait[1000:], q), rel=0.06)


def test_prefill_wait_is_zero_when_most_requests_never_wait():
    from hwsim.planner.analytic import prefill_wait_quantile_s

    assert float(prefill_wait_quantile_s(0.04, 0.1, 0.0, 0.95)) == 0.0
    waits = prefill_wait_quantile_s(np.array([0.2, 0.5, 0.9]), 0.1, 0.5, 0.95)
    assert np.all(np.diff(waits) > 0)  # more load, longer waits


def test_every_candidate_carries_a_tpot_band_and_the_transfer_band_only_widens(monkeypatch):
    scenario = {
        "name": "band-test",
        "model": "llama-3.1-8b",
        "hardware": "h100-sxm",
        "traffic": {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 5}},
            "prompt_tokens": {"kind": "fixed", "value": 1000},
            "output_tokens": {"kind": "fixed", "value": 200},
        },
        "slo": {"tpot_p95_s": "50 ms"},
        "candidates": {"hardware": ["h100-sxm", "h100-sxm-calibrated"], "tp": [1]},
        "serving": {"simulate_top": 0},
    }
    result = hwsim.plan(scenario)
    by_hw = {r.candidate.hardware: r for r in result.feasible}
    cal, raw = by_hw["h100-sxm-calibrated"], by_hw["h100-sxm"]
    assert cal.tpot_at_load_low_s <= cal.tpot_at_load_s <= cal.tpot_at_load_high_s
    assert cal.tpot_at_load_high_s > cal.tpot_at_load_low_s
    # a datasheet profile: the transfer band of published measurements
    assert raw.tpot_at_load_low_s < raw.tpot_at_load_high_s
    assert raw.tpot_at_load_s < raw.tpot_at_load_high_s  # (the TPOT band may sit above it)
    # without the published set: no band on the datasheet profile, and the calibrated band
    # is the fit's residuals alone, which the union with the transfer band only widens
    import hwsim.perf.transfer as transfer

    # (the op-error correlation the file records stays: the comparison is of the bands alone)
    rho = transfer.shipped_bands()["op_correlation"]
    monkeypatch.setattr(
        transfer, "shipped_bands", lambda: {"min_rows": 0, "bands": {}, "op_correlation": rho}
    )
    alone = {r.candidate.hardware: r for r in hwsim.plan(scenario).feasible}
    bare, fit = alone["h100-sxm"], alone["h100-sxm-calibrated"]
    assert bare.tpot_at_load_low_s is None and bare.tpot_at_load_high_s is None
    assert fit.tpot_at_load_s == pytest.approx(cal.tpot_at_load_s, rel=1e-12)
    assert cal.tpot_at_load_low_s <= fit.tpot_at_load_low_s
    assert cal.tpot_at_load_high_s >= fit.tpot_at_load_high_s
    assert (cal.tpot_at_load_high_s - cal.tpot_at_load_low_s) > (
        fit.tpot_at_load_high_s - fit.tpot_at_load_low_s
    )


@pytest.mark.parametrize("pool_after_s", [0.0, math.inf])
def test_a_search_split_between_this_process_and_a_pool_matches_serial(monkeypatch, pool_after_s):
    """Without --workers the search starts here and hands the rest to a pool once the rest
    would take longer than POOL_AFTER_S (0: right after the first 8 candidates; inf: never):
    the results, in order, are the serial search's."""
    import hwsim.planner.parallel as parallel

    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(parallel, "POOL_AFTER_S", pool_after_s)
    sc = scenario(
        candidates={
            "hardware": ["a100-80gb-sxm", "h100-sxm"],
            "tp": [1, 2],
            "max_num_seqs": [64, 128, 256, 512],
        }
    )
    seen = []
    split = parallel._in_pool
    monkeypatch.setattr(
        parallel, "_in_pool", lambda args, *a: seen.append(len(args)) or split(args, *a)
    )
    mixed = plan(sc)
    assert seen == ([16 - 8] if pool_after_s == 0.0 else [])
    serial = plan(sc, workers=1)
    for part in ("feasible", "pruned"):
        got, want = getattr(mixed, part), getattr(serial, part)
        assert [r.to_dict() for r in got] == [r.to_dict() for r in want]
    assert len(mixed.feasible) + len(mixed.pruned) == 16
