"""``validation.published_eval`` and ``hwsim validate --published``: the unit conversions by
hand, a kernel row's prediction equal to kernel_time's, a serving row on a handful of simulated
requests, rows hwsim cannot express listed with their reason, and the CLI's table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import hwsim
from hwsim.cli.main import app
from validation import published_eval as pe
from validation import published_serving as ps
from validation.published_set import DEFAULT_FOLDER, PublishedRow, load_published

runner = CliRunner()


@pytest.fixture(scope="module")
def rows() -> dict[str, PublishedRow]:
    return {r.id: r for r in load_published()}


# -- conversions, by hand ---------------------------------------------------------------
def test_gemm_tflops_from_a_known_time():
    # 2 * 1024^3 = 2,147,483,648 FLOPs in 1 ms = 2.147483648e12 FLOP/s
    assert pe.gemm_tflops(1024, 1024, 1024, 1e-3) == pytest.approx(2.147483648)
    assert pe.gemm_tflops(8192, 8192, 8192, 1.0) == pytest.approx(1.099511627776)


def test_busbw_for_eight_ranks():
    # 1 GB in 10 ms: algbw 100 GB/s; busbw = 100 * 2 * 7 / 8 = 175 GB/s
    assert pe.algbw_bytes_per_s(1e9, 0.01) == pytest.approx(100e9)
    assert pe.busbw_bytes_per_s(1e9, 0.01, 8) == pytest.approx(175e9)
    assert pe.busbw_bytes_per_s(1e9, 0.01, 2) == pytest.approx(100e9)  # 2 (n-1)/n = 1


def test_babelstream_bytes():
    # default 2^25 fp64 elements per array: Copy reads a and writes c, Triad reads b, c writes a
    assert pe.BABELSTREAM_ARRAY_SIZE == 33_554_432
    assert pe.babelstream_bytes("copy", 8, 2**25) == 2 * 8 * 33_554_432 == 536_870_912
    assert pe.babelstream_bytes("triad", 8, 2**25) == 3 * 8 * 33_554_432 == 805_306_368


# -- kernel rows ----------------------------------------------------------------------------
def test_gemm_row_is_2mnk_over_kernel_time(rows):
    row = rows["gemm-azure-h100-fp8-8192x8192x8192"]
    p = pe.evaluate_row(row)
    assert p.ok and p.profile is not None
    w = row.workload
    assert (w.m, w.n, w.k) == (8192, 8192, 8192)
    t = hwsim.kernel_time(p.profile, "gemm", m=w.m, n=w.n, k=w.k, dtype="fp8")
    assert p.predicted == 2.0 * w.m * w.n * w.k / t.time_s / 1e12
    assert p.rung == t.rung
    assert p.error == p.predicted / row.value - 1.0


def test_gemm_row_with_datasheet_profiles(rows):
    row = rows["gemm-azure-h100-fp8-1024x1024x1024"]
    p = pe.evaluate_row(row, calibrated=False)
    t = hwsim.kernel_time("h100-sxm", "gemm", m=1024, n=1024, k=1024, dtype="fp8")
    assert p.profile == "h100-sxm" and p.rung == t.rung
    assert p.predicted == 2.0 * 1024**3 / t.time_s / 1e12


def test_bandwidth_row_counts_babelstream_bytes(rows):
    row = rows["bw-azure-a100-triad"]
    p = pe.evaluate_row(row)
    moved = 3 * 8 * 2**25
    t = hwsim.kernel_time("a100-80gb-sxm", "copy", bytes=moved // 2, dtype="fp32")
    assert t.bytes_moved == moved  # hwsim's copy of B bytes reads B and writes B
    assert p.predicted == pytest.approx(moved / t.time_s / 1e12)  # TB/s


def test_allreduce_row_is_busbw_of_kernel_time(rows):
    row = rows["ar-stas-h200x8-nccltests-256mib"]
    p = pe.evaluate_row(row)
    t = hwsim.kernel_time(p.profile, "all_reduce", bytes=2**28, ranks=8)
    assert p.predicted == pytest.approx(2**28 / t.time_s * 2 * 7 / 8 / 1e9)


# -- serving --------------------------------------------------------------------------------
def test_serving_poisson_row_on_a_few_requests(rows):
    row = rows["serve-sglang060-a100-llama31-8b-rps4-sglang-tpot"]
    p = pe.evaluate_row(row, max_requests=20)
    assert p.ok, p.status
    assert p.rung == "datasheet" and p.profile == "a100-80gb-sxm"
    assert 0 < p.predicted < 1e3  # ms
    assert "20 of the row's 1200 requests simulated" in p.notes
    assert any("Kwon et al. 2023" in n for n in p.notes)


def test_serving_offline_row_counts_input_and_output_tokens(rows):
    stored = rows["serve-azure-h100-llama-8b-tp1-128-128-total-tps"]
    assert stored.metric == "output_token_throughput"  # trtllm-bench 0.15's 'Token Throughput'
    row = stored.model_copy(update={"metric": "token_throughput_input_plus_output"})
    total = pe.evaluate_row(row, max_requests=8)
    out = pe.evaluate_row(stored, max_requests=8)
    assert total.ok and out.ok
    # 128 in + 128 out per request: total throughput is twice the output throughput
    assert total.predicted == pytest.approx(2 * out.predicted)
    assert any("kv_cache_free_gpu_mem_fraction 0.83" in n for n in total.notes)


def test_serving_fixed_concurrency_row_uses_closed_loop_clients(rows):
    base = rows["serve-sglang060-a100-llama31-8b-rps4-sglang-tpot"]
    update = {"client_mode": "fixed_concurrency", "concurrency": 4}
    row = base.model_copy(update={"workload": base.workload.model_copy(update=update)})
    p = pe.evaluate_row(row, max_requests=8)
    if not ps._has_closed_loop_clients():
        assert p.status == "not predictable: needs closed-loop clients (fixed concurrency)"
        return
    assert p.ok, p.status
    assert 0 < p.predicted < 1e3  # ms


# -- rows hwsim cannot express --------------------------------------------------------------
def test_unpredictable_rows_carry_their_reason(rows):
    lam = pe.evaluate_row(rows["serve-lambda-h100x1-llama31-8b-fp8-output-tps"])
    assert lam.predicted is None and lam.error is None
    assert lam.status.startswith("not predictable: ") and "client mode" in lam.status
    ar = pe.evaluate_row(rows["ar-stas-mi300x-2gpu-4gb"])
    assert ar.status.startswith("not predictable: message size not stated")

    base = rows["serve-sglang060-a100-llama31-8b-rps4-sglang-ttft"]
    closed = base.model_copy(
        update={"workload": base.workload.model_copy(update={"client_mode": "fixed_concurrency"})}
    )
    status = pe.evaluate_row(closed).status
    assert "without a concurrency" in status or "needs closed-loop clients" in status
    nohw = base.model_copy(update={"hardware_profile": None})
    assert "no hwsim hardware profile" in pe.evaluate_row(nohw).status


def test_summary_keeps_unpredicted_rows(rows):
    ids = ["bw-azure-a100-copy", "bw-azure-a100-triad", "ar-stas-mi300x-8gpu-4gb"]
    preds = pe.evaluate([rows[i] for i in ids])
    summary = {s["group"]: s for s in pe.summarise(preds)}
    assert summary["all"]["n"] == 3 and summary["all"]["n_predicted"] == 2
    assert summary["all"]["share_predicted"] == pytest.approx(2 / 3)
    errs = sorted(abs(p.error) for p in preds if p.ok)
    assert summary["bandwidth x a100-80gb-sxm"]["median_abs_error"] == pytest.approx(sum(errs) / 2)
    assert summary["allreduce x mi300x"]["median_abs_error"] is None


# -- CLI ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """Three shipped rows (a GEMM, a BabelStream, an unpredictable all-reduce) in a folder."""
    folder = tmp_path_factory.mktemp("published")
    pick = {
        "kernels.yaml": ["gemm-mamf-l40s-bf16", "bw-azure-mi300x-copy"],
        "collectives.yaml": ["ar-stas-mi300x-2gpu-4gb"],
    }
    for name, ids in pick.items():
        doc = yaml.safe_load((DEFAULT_FOLDER / name).read_text(encoding="utf-8"))
        doc["rows"] = [r for r in doc["rows"] if r["id"] in ids]
        (folder / name).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return folder


def run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_cli_prints_a_table_and_the_group_summary(small_set):
    res = run("validate", "--published", small_set)
    assert res.exit_code == 0, res.output
    for fragment in ("gemm-mamf-l40s-bf16", "bw-azure-mi300x-copy", "not predictable", "median"):
        assert fragment in res.output
    assert "gemm x l40s" in res.output


def test_cli_json_is_one_object(small_set):
    res = run("validate", "--published", small_set, "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [r["id"] for r in data["rows"]] == [
        "ar-stas-mi300x-2gpu-4gb",
        "gemm-mamf-l40s-bf16",
        "bw-azure-mi300x-copy",
    ]
    assert data["not_predictable"][0]["id"] == "ar-stas-mi300x-2gpu-4gb"
    assert {s["group"] for s in data["summary"]} >= {"gemm x l40s", "all"}
    assert data["settings"]["max_requests"] == 1000


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "missing --hardware and --measurements"),
        (("--hardware", "h100-sxm"), "missing --measurements"),
        (("--published", "--hardware", "h100-sxm"), "--published takes no --hardware"),
        (("--published", "/nonexistent/published"), "not a folder"),
        (("some/dir",), "missing --hardware"),
    ],
)
def test_cli_bad_input_exits_2(args, fragment):
    res = run("validate", *args)
    assert res.exit_code == 2, res.output
    assert fragment in res.output
