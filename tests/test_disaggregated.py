"""Disaggregated prefill/decode serving (issue 13): the KV hand-over against hand calculations,
pool sizing against a plain loop, invariants, the scenario axis and its errors, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import hwsim
from hwsim.cli.main import app
from hwsim.errors import HwsimError, InfeasibleError, ProfileError
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost, prefill_cost
from hwsim.inference.kv_transfer import exposed_transfer_s, kv_bytes_per_request, kv_transfer
from hwsim.inference.memory import kv_bytes_per_token_per_gpu
from hwsim.planner.analytic import prefill_wait_quantile_s
from hwsim.planner.disaggregated import (
    ANALYTIC_ONLY,
    PREFILL_LOADS,
    DisaggregatedResult,
    is_disaggregated,
)
from hwsim.planner.plan import plan
from hwsim.report.plan_report import write_report

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "disaggregated-chat.yaml"
runner = CliRunner()

# Llama-3.1-70B (model_profiles/llama-3.1-70b.yaml): 80 layers, 8 KV heads, head_dim 128;
# bf16 K and V: 2 x 80 x 8 x 128 x 2 bytes per token
LLAMA70_KV_PER_TOKEN = 2 * 80 * 8 * 128 * 2


def test_kv_bytes_per_token_and_per_request_by_hand():
    assert LLAMA70_KV_PER_TOKEN == 327_680
    whole = make_deployment("llama-3.1-70b", "h100-sxm")
    assert kv_bytes_per_token_per_gpu(whole) == LLAMA70_KV_PER_TOKEN
    tp4 = make_deployment("llama-3.1-70b", "h100-sxm", tp=4)
    for prompt in (1, 1000, 8192):
        assert float(kv_bytes_per_request(tp4, prompt)) == prompt * LLAMA70_KV_PER_TOKEN
    move = kv_transfer(tp4, tp4, 8192, overlap="none")
    assert move.bytes_per_request == 8192 * 327_680 == 2_684_354_560
    assert move.send_bytes_per_gpu == move.receive_bytes_per_gpu == 2_684_354_560 / 4


def test_each_gpu_receives_its_shard_when_the_layouts_differ():
    """Prefill tp 4 -> decode tp 8: each decode GPU receives 1/8 of the cache (one of the 8 KV
    heads), each prefill GPU sends its 1/4 (two heads, to two receivers)."""
    p = make_deployment("llama-3.1-70b", "h100-sxm", tp=4)
    d = make_deployment("llama-3.1-70b", "h100-sxm", tp=8)
    move = kv_transfer(p, d, 4096, overlap="none")
    total = 4096 * LLAMA70_KV_PER_TOKEN
    assert move.receive_bytes_per_gpu == total / 8
    assert move.send_bytes_per_gpu == total / 4
    back = kv_transfer(d, p, 4096, overlap="none")  # tp 8 -> tp 4: the receivers bound it
    assert back.send_bytes_per_gpu == total / 8 and back.receive_bytes_per_gpu == total / 4
    assert back.transfer_s == pytest.approx(move.transfer_s)  # 1/4 through one link either way


def test_transfer_seconds_by_hand_on_nvlink_and_the_network():
    """One point-to-point transfer as hwsim.perf.collectives prices it for an NCCL system:
    NCCL's Simple protocol wins at this size, latency = ring base 8.4 us + one hop (NVLink
    3.4 us, network 14.0 us), bandwidth = link rate x link_fraction (0.8, the profile's
    default): H100 SXM NVLink 450 GB/s -> 360 GB/s, its NIC 50 GB/s -> 40 GB/s."""
    tp4 = make_deployment("llama-3.1-70b", "h100-sxm", tp=4)
    shard = 8192 * LLAMA70_KV_PER_TOKEN / 4  # 671,088,640 bytes per GPU
    nvlink = kv_transfer(tp4, tp4, 8192, overlap="none")  # 4 + 4 GPUs fit in one node
    assert nvlink.placement == "same_node" and nvlink.link.startswith("intra_node")
    assert nvlink.transfer_s == pytest.approx((8.4 + 3.4) * 1e-6 + shard / 360e9, rel=1e-9)
    assert nvlink.transfer_s == pytest.approx(1.8759e-3, abs=1e-7)
    net = kv_transfer(tp4, tp4, 8192, overlap="none", placement="cross_node")
    assert net.placement == "cross_node" and net.link.startswith("inter_node")
    assert net.transfer_s == pytest.approx((8.4 + 14.0) * 1e-6 + shard / 40e9, rel=1e-9)
    assert net.transfer_s == net.exposed_s  # overlap none: all of it after the prefill
    tp8 = make_deployment("llama-3.1-70b", "h100-sxm", tp=8)
    assert kv_transfer(tp8, tp4, 8192).placement == "cross_node"  # 8 + 4 > 8 per node
    with pytest.raises(InfeasibleError, match="do not fit in one node"):
        kv_transfer(tp8, tp4, 8192, placement="same_node")


def test_alpha_beta_transfer_on_a_profile_without_nccl():
    """MI300X has no NCCL block: one step of latency (8 us) plus bytes / (448 GB/s xGMI x the
    profile's link_fraction 0.7)."""
    dep = make_deployment("llama-3.1-70b", "mi300x", tp=2)
    shard = 2048 * LLAMA70_KV_PER_TOKEN / 2
    move = kv_transfer(dep, dep, 2048, overlap="none")
    assert move.transfer_s == pytest.approx(8e-6 + shard / (448e9 * 0.7), rel=1e-9)


def test_layerwise_overlap_hides_all_but_the_tail():
    """L layers, x per layer's transfer, c = prefill / L per layer: the last layer lands
    max(x, L x - (L - 1) c) after the prefill (module docstring of kv_transfer)."""
    assert exposed_transfer_s(0.001, 1, 5.0) == 0.001  # one message: nothing hidden
    assert exposed_transfer_s(0.001, 80, 0.4) == 0.001  # link keeps up: one layer's worth
    # link slower than compute: 80 x 10 ms = 0.8 s of transfer against 0.4 s of prefill
    assert exposed_transfer_s(0.010, 80, 0.4) == pytest.approx(0.8 - 79 * 0.005)
    tp4 = make_deployment("llama-3.1-70b", "h100-sxm", tp=4)
    t_pf = float(prefill_cost(tp4, 1, 8192).time_s)
    streamed = kv_transfer(tp4, tp4, 8192, prefill_compute_s=t_pf, placement="cross_node")
    assert streamed.messages == 80
    assert streamed.exposed_s == pytest.approx(streamed.transfer_s / 80)
    serialized = kv_transfer(tp4, tp4, 8192, overlap="none", placement="cross_node")
    assert streamed.exposed_s < 0.02 * serialized.exposed_s


def test_pools_need_the_same_kv_dtype():
    p = make_deployment("llama-3.1-70b", "h100-sxm", tp=4)
    d = make_deployment("llama-3.1-70b", "h100-sxm", tp=4, kv_dtype="fp8")
    with pytest.raises(InfeasibleError, match="same kv_dtype"):
        kv_transfer(p, d, 1024)


# -- pool sizing ------------------------------------------------------------------------------
def small(**over) -> dict:
    """Llama-2-7B on A100s, fixed lengths (M/D/1 prefill, no spread), a few candidates."""
    base = {
        "name": "disaggregated-small",
        "model": "llama-2-7b",
        "hardware": "a100-80gb-sxm",
        "traffic": {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 10}},
            "prompt_tokens": 1024,
            "output_tokens": 128,
        },
        "slo": {"ttft_p95_s": "300 ms", "tpot_p95_s": "25 ms", "headroom_fraction": 0.25},
        "candidates": {
            "hardware": ["a100-80gb-sxm"],
            "tp": [1],
            "max_num_seqs": [64],
            "disaggregated": [True],
            "disaggregation": {"first_token_from": "prefill"},
        },
        "serving": {"simulate_top": 0},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


def test_pool_sizes_by_hand():
    """Prefill: the largest grid utilisation whose M/D/1 p95 TTFT meets the SLO; decode: the
    largest batch whose TPOT (step + the second token's exposed transfer spread over G - 1)
    meets the SLO, its rate by Little's law b / (exposed + (G - 1) t_dec); each pool
    ceil(peak / (rate x (1 - headroom))) replicas."""
    result = plan(small())
    best = result.best
    assert isinstance(best, DisaggregatedResult) and result.best is result.feasible[0]
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm", max_num_seqs=64)
    s, g, peak, keep = 1024.0, 128.0, 10.0, 0.75
    t_pf = float(prefill_cost(dep, 1, s).time_s)
    move = kv_transfer(dep, dep, s, prefill_compute_s=t_pf)
    assert move.placement == "same_node"  # 1 + 1 GPUs in an 8-GPU node: NVLink
    rho_best = 0.0
    for rho in PREFILL_LOADS:
        if t_pf + float(prefill_wait_quantile_s(rho, t_pf, 0.0, 0.95)) <= 0.300:
            rho_best = float(rho)
    prefill_replicas = math.ceil(peak / (rho_best / t_pf * keep))
    rate_d = 0.0
    for b in range(1, 65):
        t_dec = float(decode_step_cost(dep, b, s + g / 2).time_s)
        if t_dec + move.exposed_s / (g - 1) <= 0.025:
            rate_d = b / (move.exposed_s + (g - 1) * t_dec)
    decode_replicas = math.ceil(peak / (rate_d * keep))
    assert best.prefill_replicas == prefill_replicas
    assert best.decode_replicas == decode_replicas
    assert best.gpus == prefill_replicas + decode_replicas
    assert best.decode_binding == "tpot_p95 SLO" and best.prefill_binding == "ttft_p95 SLO"
    price = hwsim.load_hardware("a100-80gb-sxm").price_per_hour_usd.value
    assert best.cost_per_hour_usd == pytest.approx(best.gpus * price)
    assert best.goodput_per_gpu == pytest.approx(1 / (t_pf / rho_best + 1 / rate_d), rel=1e-9)
    assert best.kv_bytes_per_request == 1024 * 2 * 32 * 32 * 128 * 2  # Llama-2-7B: MHA, 32 x 32


def _by_label(result) -> dict:
    return {r.candidate.label: r for r in result.feasible}


def test_a_tighter_ttft_slo_never_needs_fewer_prefill_gpus():
    labels: dict[str, list[int]] = {}
    for ttft in ("1 s", "500 ms", "300 ms", "200 ms", "120 ms"):
        sc = small(
            slo={"ttft_p95_s": ttft},
            candidates={"tp": [1, 2], "disaggregated": [True]},
        )
        for label, r in _by_label(plan(sc)).items():
            labels.setdefault(label, []).append(r.prefill_gpus)
    assert labels and any(len(v) > 1 for v in labels.values())
    for label, gpus in labels.items():
        assert gpus == sorted(gpus), label  # tighter (later) SLOs: as many or more


@pytest.mark.parametrize("first", ["decode", "prefill"])
def test_more_traffic_never_needs_fewer_gpus(first):
    previous: dict[str, DisaggregatedResult] = {}
    best_gpus = []
    for rate in (2, 5, 10, 20, 40, 80):
        arrivals = {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": rate}}
        sc = small(
            traffic={"arrivals": arrivals},
            candidates={
                "tp": [1, 2],
                "disaggregated": [True],
                "disaggregation": {"first_token_from": first},
            },
        )
        result = plan(sc)
        best_gpus.append(result.best.gpus)
        for label, r in _by_label(result).items():
            if label in previous:
                assert r.prefill_gpus >= previous[label].prefill_gpus
                assert r.decode_gpus >= previous[label].decode_gpus
            previous[label] = r
    assert best_gpus == sorted(best_gpus)


def test_first_token_from_the_prefill_instance_never_has_a_later_ttft():
    decode_first = {"disaggregation": {"first_token_from": "decode"}}
    on_decode = _by_label(plan(small(candidates=decode_first)))
    on_prefill = _by_label(plan(small()))
    for label, r in on_prefill.items():
        assert r.ttft_p95_at_load_s <= on_decode[label].ttft_p95_at_load_s * (1 + 1e-9) or (
            r.prefill_gpus < on_decode[label].prefill_gpus
        )


def test_mismatched_dtypes_are_pruned_with_the_reason():
    sc = small(candidates={"kv_dtype": ["bf16", "fp8"]})
    result = plan(sc)
    reasons = [r.reason for r in result.pruned if is_disaggregated(r)]
    assert any("dtypes differ" in reason for reason in reasons)
    assert all(
        r.candidate.deployment.kv_dtype == r.candidate.prefill_deployment.kv_dtype
        for r in result.feasible
    )


# -- the scenario axis ------------------------------------------------------------------------
def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("maybe", "'maybe' is not a boolean"),
        ([False, 3], "3 is not a boolean"),
        ([], "needs at least one value"),
    ],
)
def test_the_loader_rejects_a_bad_disaggregated_value_naming_file_and_field(
    tmp_path, value, fragment
):
    path = _write(tmp_path, small(candidates={"disaggregated": value}))
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and "candidates.disaggregated" in result.output
    assert fragment in result.output and "Traceback" not in result.output
    with pytest.raises(ProfileError, match="candidates.disaggregated") as err:
        plan(path)
    assert err.value.file == str(path)


def test_the_loader_rejects_a_bad_disaggregation_setting(tmp_path):
    path = _write(tmp_path, small(candidates={"disaggregation": {"placement": "moon"}}))
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2
    assert "candidates.disaggregation.placement" in result.output and str(path) in result.output


def test_default_is_aggregated_only_and_says_so(tmp_path):
    sc = small(candidates={"disaggregated": False, "disaggregation": {}})
    result = plan(sc)
    assert result.feasible and not any(is_disaggregated(r) for r in result.feasible)
    data = result.to_dict()
    assert "disaggregation" not in data["recommendation"]
    assert all(c["candidate"]["disaggregated"] is False for c in data["candidates"])


def test_both_kinds_in_the_json_the_table_and_the_report(tmp_path):
    sc = small(
        candidates={"tp": [1, 2], "disaggregated": [False, True]},
        serving={"simulate_top": 1, "n_requests": 200},
    )
    result = plan(sc)
    kinds = {is_disaggregated(r) for r in result.feasible}
    assert kinds == {False, True}
    # the simulator replays the cheapest aggregated and the cheapest disaggregated candidate
    replayed = [r for r in result.feasible if r.simulated]
    assert sorted(is_disaggregated(r) for r in replayed) == [False, True]
    for r in result.feasible:
        if is_disaggregated(r):
            if r.simulated:
                assert r.confirmation.startswith("simulated (both pools)")
            else:
                assert r.confirmation == ANALYTIC_ONLY
            assert r.prefill_gpus + r.decode_gpus == r.gpus
            assert r.kv_transfer_s > 0 and 0 < r.kv_transfer_exposed_s <= r.kv_transfer_s
    data = json.loads(json.dumps(result.to_dict()))
    cmp = data["recommendation"]["disaggregation"]
    assert cmp["best_aggregated"] and cmp["best_disaggregated"]
    assert cmp["best_disaggregated"]["confirmation"].startswith("simulated (both pools)")
    assert cmp["best_aggregated"]["confirmation"].startswith("simulated")
    pools = [c for c in data["candidates"] if c["candidate"]["disaggregated"]]
    assert pools and {"prefill", "decode"} <= set(pools[0]["candidate"])
    assert {"prefill_gpus", "decode_gpus", "kv_transfer_s", "kv_transfer"} <= set(pools[0])
    records = result.to_records()
    assert {"candidate.disaggregated", "candidate.prefill.tp"} <= set().union(*records)
    paths = write_report(result, tmp_path / "report")
    md = paths["markdown"].read_text()
    assert "## Disaggregated vs aggregated" in md and "both pools" in md
    assert "prefill + decode GPUs" in md and "disaggregated: prefill a100" in md
    assert "Disaggregated vs aggregated" in paths["html"].read_text()


def test_emit_writes_one_launch_script_per_pool(tmp_path):
    """A disaggregated recommendation emits the prefill and the decode pool's vLLM commands,
    each with its own layout, the NixlConnector config and a distinct NIXL handshake port."""
    import shlex

    from hwsim.deploy import parse_emit, pool_targets, render_pools
    from hwsim.deploy.engines import NIXL_KV_TRANSFER

    sc = small(
        candidates={"tp": [1, 2], "disaggregated": [True]},
        slo={"ttft_p95_s": "300 ms", "tpot_p95_s": "25 ms", "headroom_fraction": 0.25},
    )
    result = plan(sc)
    best = result.best
    assert best is not None and is_disaggregated(best)
    prefill, decode = pool_targets(result, 1)
    assert (prefill.pool, decode.pool) == ("prefill", "decode")
    assert prefill.spec == best.candidate.prefill_deployment
    assert decode.spec == best.candidate.deployment
    assert (prefill.replicas, decode.replicas) == (best.prefill_replicas, best.decode_replicas)
    files = render_pools(parse_emit(["vllm"]), (prefill, decode))
    assert list(files) == ["launch-vllm-prefill.sh", "launch-vllm-decode.sh"]
    ports = set()
    for text, t in zip(files.values(), (prefill, decode)):
        argv = shlex.split(text.split("exec ", 1)[1].replace("\\\n", " "))
        assert argv[argv.index("--tensor-parallel-size") + 1] == str(t.spec.tp)
        config = json.loads(argv[argv.index("--kv-transfer-config") + 1])
        assert config == NIXL_KV_TRANSFER
        port = next(line for line in text.splitlines() if "VLLM_NIXL_SIDE_CHANNEL_PORT" in line)
        ports.add(port.rsplit(":-", 1)[1])
        assert f"runs {t.replicas} {t.pool} instance(s)" in text
    assert len(ports) == 2
    with pytest.raises(HwsimError, match="k8s"):
        render_pools(parse_emit(["k8s"]), (prefill, decode))
    path = _write(tmp_path, sc)
    out = runner.invoke(app, ["plan", str(path), "--emit", "sglang"])
    assert out.exit_code == 2 and "vLLM only" in out.output and "disaggregated" in out.output
    out = runner.invoke(app, ["plan", str(path), "--emit", "vllm", "--out", str(tmp_path / "a")])
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "launch-vllm-decode.sh",
        "launch-vllm-prefill.sh",
    ]


def test_the_example_runs_and_disaggregation_wins_there():
    """examples/disaggregated-chat.yaml (8k prompts, TPOT 25 ms on Llama-3.1-70B / H100):
    separating the long prefills from the decode steps is the cheaper plan."""
    result = runner.invoke(app, ["plan", str(EXAMPLE), "--json", "--simulate-top", "0"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    cmp = data["recommendation"]["disaggregation"]
    assert cmp["cost_ratio_disaggregated_over_aggregated"] < 1
    assert data["recommendation"]["candidate"]["candidate"]["disaggregated"] is True
    assert data["recommendation"]["sentence"].startswith("Run llama-3.1-70b disaggregated")
    text = runner.invoke(app, ["plan", str(EXAMPLE), "--simulate-top", "0"]).output
    assert "disaggregated vs aggregated" in text and "analytic only" in text
    jsonschema = pytest.importorskip("jsonschema")  # the plan's published JSON schema holds
    schema = json.loads(runner.invoke(app, ["schema", "plan"]).output)
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)


def test_workload_with_no_output_prunes_disaggregation():
    sc = small(traffic={"output_tokens": 0}, slo={"tpot_p95_s": None})
    result = plan(sc)
    assert result.best is None
    assert all("disaggregation does not apply" in r.reason for r in result.pruned)


def test_goodput_per_gpu_is_the_harmonic_combination_of_the_pools():
    result = plan(small(candidates={"tp": [1, 2]}))
    for r in result.feasible:
        g_p = r.prefill_gpus / r.prefill_replicas
        g_d = r.decode_gpus / r.decode_replicas
        expected = 1 / (g_p / r.prefill_rate_per_replica_s + g_d / r.decode_rate_per_replica_s)
        assert r.goodput_per_gpu == pytest.approx(expected)
        assert np.isfinite(r.ttft_p95_at_load_s) and r.ttft_p95_at_load_s <= 0.300 + 1e-9
