"""Pins for the review of the worst serving rows of the published set (``hwsim validate
--published``): each row's parsed setup equals what its source states, and each correction
made against the source (metric definitions, the run's own ShareGPT output length, the vLLM
flags the source's command line gives) stays made. Fast and offline: only the shipped YAML and
a few tiny simulations."""

from __future__ import annotations

import re

import pytest

from validation import published_eval as pe
from validation import published_serving as ps
from validation.published_set import PublishedRow, load_published


@pytest.fixture(scope="module")
def rows() -> dict[str, PublishedRow]:
    return {r.id: r for r in load_published()}


# -- Azure guide, older format: TensorRT-LLM benchmarks/python/benchmark.py, static batch ----
STATIC_BATCH = {
    # id: (hardware profile, model as published, tp, dtype, value)
    "serve-azure-a100-llama3-8b-bs64-128-8-total-tps": ("a100-80gb-sxm", "LLAMA 3 (8B)", 1, "fp16"),
    "serve-azure-a100-llama3-70b-tp8-bs64-128-8-total-tps": (
        "a100-80gb-sxm",
        "LLAMA 3 (70B)",
        8,
        "fp16",
    ),
    "serve-azure-h200-llama3-8b-bs64-128-8-total-tps": ("h200-sxm", "LLAMA 3 (8B)", 1, None),
    "serve-azure-h200-llama3-70b-tp8-bs64-128-8-total-tps": ("h200-sxm", "LLAMA 3 (70B)", 8, None),
}


@pytest.mark.parametrize("row_id", sorted(STATIC_BATCH))
def test_static_batch_rows_are_output_tokens_of_a_batch_of_64(rows, row_id):
    hw, model, tp, dtype = STATIC_BATCH[row_id]
    r = rows[row_id]
    w = r.workload
    assert (r.hardware_profile, r.model_published, w.tp, w.dtype) == (hw, model, tp, dtype)
    # "input length 128, output length 8", "Batch Size | 64"
    assert (w.client_mode, w.batch_size, w.input_len_tokens, w.output_len_tokens) == (
        "fixed_batch",
        64,
        128,
        8,
    )
    # gpt_benchmark.py: tokens_per_sec = round(batch_size * outlen / (latency / 1000), 2)
    assert r.metric == "output_token_throughput"
    assert "batch_size * outlen / (latency / 1000)" in r.notes
    assert r.unit == "tokens/s"


def test_static_batch_metric_counts_only_the_generated_tokens(rows):
    row = rows["serve-azure-a100-llama3-8b-bs64-128-8-total-tps"]
    out = pe.evaluate_row(row)
    total = pe.evaluate_row(row.model_copy(update={"metric": "token_throughput_input_plus_output"}))
    assert out.ok and total.ok, (out.status, total.status)
    # every request has 128 prompt and 8 output tokens: total / output = 136 / 8
    assert total.predicted == pytest.approx(out.predicted * 136 / 8)


# -- Azure guide, MI300X: vLLM benchmark_throughput.py, field 6 of its 'Throughput:' line ----
MI300X = {
    "serve-azure-mi300x-llama-8b-tp1-128-128-total-tps": ("llama-3.1-8b", 1, 128, 128, 18149.0),
    "serve-azure-mi300x-llama-8b-tp1-1024-1024-total-tps": ("llama-3.1-8b", 1, 1024, 1024, 10995.0),
    "serve-azure-mi300x-llama-8b-tp1-2048-2048-total-tps": ("llama-3.1-8b", 1, 2048, 2048, 7356.0),
    "serve-azure-mi300x-llama-70b-tp8-128-128-total-tps": ("llama-3.1-70b", 8, 128, 128, 9026.0),
    "serve-azure-mi300x-llama-70b-tp8-2048-2048-total-tps": (
        "llama-3.1-70b",
        8,
        2048,
        2048,
        7421.0,
    ),
    "serve-azure-mi300x-llama-405b-tp8-128-128-total-tps": ("llama-3.1-405b", 8, 128, 128, 2484.0),
    "serve-azure-mi300x-llama-405b-tp8-2048-2048-total-tps": (
        "llama-3.1-405b",
        8,
        2048,
        2048,
        1840.0,
    ),
}


def test_vllm_throughput_line_field_6_is_output_tokens():
    # vllm benchmarks/benchmark_throughput.py (after vllm-project/vllm PR #8914)
    line = (
        f"Throughput: {81.74:.2f} requests/s, {22853.37:.2f} total tokens/s, "
        f"{11426.69:.2f} output tokens/s"
    )
    assert line.split(" ")[6] == "11426.69"  # what the guide's LLMBenchmark.py keeps
    # the older line has no field 6, so a table could not have come from it
    old = f"Throughput: {81.74:.2f} requests/s, {20926.37:.2f} tokens/s"
    assert len(old.split(" ")) == 5


@pytest.mark.parametrize("row_id", sorted(MI300X))
def test_mi300x_rows_setup_and_metric(rows, row_id):
    model, tp, isl, osl, value = MI300X[row_id]
    r = rows[row_id]
    w = r.workload
    assert (r.hardware_profile, r.model_profile, r.engine, r.value) == (
        "mi300x",
        model,
        "vLLM",
        value,
    )
    assert (w.tp, w.input_len_tokens, w.output_len_tokens, w.dtype) == (tp, isl, osl, "fp8")
    assert (w.client_mode, w.num_requests) == ("offline_all_at_once", 1000)  # "1000 requests"
    assert r.metric == "output_token_throughput"
    assert "split(' ')[6]" in r.notes
    # the flags of the guide's command line reach the deployment; max-num-seqs is not stored
    assert ps._vllm_settings(r) == {
        "kv_dtype": "fp8",
        "memory_utilization": 0.90,
        "max_num_batched_tokens": 131072,
        "chunked_prefill": False,
    }


def test_vllm_flags_are_applied_to_the_deployment(rows):
    p = pe.evaluate_row(rows["serve-azure-mi300x-llama-70b-tp8-128-128-total-tps"], max_requests=8)
    assert p.ok, p.status
    assert any(
        n.startswith("vLLM flags from the row's notes: chunked_prefill=False") for n in p.notes
    )


def test_vllm_flags_only_for_vllm_rows(rows):
    assert ps._vllm_settings(rows["serve-azure-h100-llama-8b-tp1-128-128-total-tps"]) == {}
    sg = rows["serve-sglang060-a100-llama31-8b-rps4-vllm-ttft"]
    assert ps._vllm_settings(sg) == {}  # --num-scheduler-steps / --max_model_len only


# -- Azure guide, H100: trtllm-bench 'Token Throughput' (evidence recorded, metric kept) ------
def test_h100_trtllm_bench_rows_record_the_metric_evidence(rows):
    h100 = [r for i, r in rows.items() if i.startswith("serve-azure-h100-")]
    assert len(h100) == 6
    for r in h100:
        assert r.workload.client_mode == "offline_all_at_once" and r.workload.num_requests == 1000
        assert "tensorrt_llm==0.15.0" in r.notes and "PR #3212" in r.notes


# -- SGLang v0.3.0 vs vLLM v0.6.0 README: ShareGPT, the run's own mean output length ----------
SGLANG_OFFLINE = [
    "serve-sglang060-a100-llama31-8b-offline-sglang-output-tps",
    "serve-sglang060-a100-llama31-8b-offline-vllm-output-tps",
    "serve-sglang060-h100x4-llama31-70b-offline-sglang-output-tps",
    "serve-sglang060-h100x4-llama31-70b-offline-vllm-output-tps",
]


@pytest.mark.parametrize("row_id", SGLANG_OFFLINE)
def test_offline_tables_give_a_mean_output_of_194_tokens(rows, row_id):
    r = rows[row_id]
    # quote: '| inf | 5000 | <engine> | <request throughput> | **<output token throughput>** |'
    m = re.search(r"\| inf \| 5000 \| \w+ \| ([\d.]+) \| \*\*([\d.]+)\*\* \|", r.quote)
    assert m, r.quote
    req_per_s, out_tok_per_s = float(m.group(1)), float(m.group(2))
    assert out_tok_per_s == r.value
    assert out_tok_per_s / req_per_s == pytest.approx(194.3, abs=0.1)
    assert r.workload.mean_output_len_tokens == 194.3


def test_every_sglang_readme_row_uses_the_runs_mean_output(rows):
    sg = [r for i, r in rows.items() if i.startswith("serve-sglang060-")]
    assert len(sg) == 20
    for r in sg:
        w = r.workload
        assert w.dataset == "sharegpt" and w.mean_output_len_tokens == 194.3
        assert w.input_len_tokens is None and w.output_len_tokens is None
        assert (w.num_requests, w.request_rate_per_s) in {
            (1200, 4.0),
            (2400, 8.0),
            (5000, None),
        }, r.id
        assert w.tp == (1 if "-a100-" in r.id else 4)
    out = pe.Prediction(
        id="x", kind="serving", hardware=None, engine=None, metric="m", unit="ms", published=1
    )
    assert ps._lengths(sg[0], out) == (pe.SHAREGPT_LENGTHS["prompt_tokens"], 194)
    assert any("the run's own mean" in n for n in out.notes)


def test_vllm_rows_of_the_sglang_readme_name_multi_step_scheduling(rows):
    for i, r in rows.items():
        if i.startswith("serve-sglang060-") and "-vllm-" in i:
            assert "--num-scheduler-steps 10" in r.notes and "multi-step" in r.notes, i


# -- rows added from four more sources (dstack, ROCm blog, Oracle blog, NVIDIA NIM docs) -----
def test_batch_latency_is_the_last_finish_of_a_static_batch(rows):
    r = rows["serve-rocmblog-mi300x-llama31-70b-fp8-tp8-bs1-128-2048-latency"]
    w = r.workload
    assert (r.metric, r.unit) == ("batch_latency", "ms")
    assert (w.client_mode, w.batch_size) == ("fixed_batch", 1)
    lat = pe.evaluate_row(r)
    as_rate = {"metric": "output_token_throughput", "unit": "tokens/s"}
    tps = pe.evaluate_row(r.model_copy(update=as_rate))
    assert lat.ok and tps.ok, (lat.status, tps.status)
    # one batch, all requests at t = 0: latency = batch x output tokens / output throughput
    assert lat.predicted == pytest.approx(w.batch_size * w.output_len_tokens / tps.predicted * 1e3)


def test_batch_latency_needs_a_fixed_batch(rows):
    r = rows["serve-dstack-r1-h200-vllm-c64-tpot"]
    p = pe.evaluate_row(r.model_copy(update={"metric": "batch_latency"}), max_requests=8)
    assert p.status == "not predictable: batch latency is defined for a fixed batch only"


def test_dstack_r1_rows_are_closed_loop_fixed_length_runs(rows):
    ds = [r for i, r in rows.items() if i.startswith("serve-dstack-r1-")]
    assert len(ds) == 19
    for r in ds:
        w = r.workload
        assert (w.input_len_tokens, w.output_len_tokens, w.num_requests) == (3200, 800, 500)
        assert w.client_mode == "fixed_concurrency" and w.concurrency in {8, 32, 64}
        assert (r.model_profile, w.tp, w.dtype, r.num_devices) == ("deepseek-v3", 8, "fp8", 8)
        # the quote is the CSV header and the row, both cut after median_tpot_ms (field 27)
        header, row = r.quote.removesuffix(" ...").split(" ... ")
        fields = dict(zip(header.split(","), row.split(","), strict=True))
        column = {
            "median_ttft": "median_ttft_ms",
            "median_tpot": "median_tpot_ms",
            "output_token_throughput": "output_throughput",
        }[r.metric]
        assert float(fields[column]) == r.value, r.id
        assert int(fields["max_concurrency"]) == w.concurrency
        assert fields["total_output_tokens"] == "400000"  # 500 x 800: every request ran to 800
        assert ps._vllm_settings(r) == {}  # no vLLM engine flag is applied


def test_oracle_static_batch_tps_is_output_tokens_over_the_batch_latency(rows):
    orc = [r for i, r in rows.items() if i.startswith("serve-oracle-")]
    assert len(orc) == 5
    for r in orc:
        m = re.search(r"\| (\d+) \| (\d+) \| ([\d.]+) \|$", r.quote)
        assert m, r.quote
        batch, tps, latency_s = int(m.group(1)), float(m.group(2)), float(m.group(3))
        assert (batch, tps) == (r.workload.batch_size, r.value)
        assert batch * 128 / latency_s == pytest.approx(tps, abs=1.0)


def test_nim_rows_keep_the_engine_unnamed(rows):
    nim = [r for i, r in rows.items() if i.startswith("serve-nim-")]
    assert len(nim) == 6
    for r in nim:
        assert r.engine == "NVIDIA NIM" and r.metric == "output_token_throughput"
        assert r.workload.client_mode == "fixed_concurrency" and r.workload.num_requests is None
        out = pe.Prediction(
            id="x", kind="serving", hardware=None, engine=None, metric="m", unit="ms", published=1
        )
        assert ps._runtime(r, out) == {}  # no engine runtime section: the backend is not stated


# -- vLLM V0 scheduling defaults where the row's flags leave them out ------------------------
def test_v0_rows_with_a_short_max_model_len_run_unchunked_with_vllms_budget(rows):
    sg = rows["serve-sglang060-a100-llama31-8b-rps4-vllm-tpot"]  # vLLM 0.6.0, --max_model_len 4096
    assert ps._vllm_v0_defaults(sg, ps._vllm_settings(sg)) == {
        "chunked_prefill": False,
        "max_num_batched_tokens": 4096,  # max(4096, 2048)
    }
    r1 = rows["serve-dstack-r1-mi300x-vllm-c8-ttft"]  # 0.7.3 dev, --max-model-len 32768
    assert ps._vllm_v0_defaults(r1, {}) == {
        "chunked_prefill": False,
        "max_num_batched_tokens": 32768,
    }
    short = sg.model_copy(update={"notes": "launched with --max-model-len 1024"})
    assert ps._vllm_v0_defaults(short, {})["max_num_batched_tokens"] == 2048


def test_v0_defaults_leave_stated_flags_v1_and_long_contexts_alone(rows):
    sg = rows["serve-sglang060-a100-llama31-8b-rps4-vllm-tpot"]
    azure = rows["serve-azure-mi300x-llama-70b-tp8-128-128-total-tps"]  # flags stated, no version
    assert ps._vllm_v0_defaults(azure, ps._vllm_settings(azure)) == {}
    v1 = sg.model_copy(update={"engine_version": "0.8.5"})
    assert ps._vllm_v0_defaults(v1, {}) == {}
    long = sg.model_copy(update={"notes": "--max-model-len 65536"})  # V0 may chunk: not guessed
    assert ps._vllm_v0_defaults(long, {}) == {}
    unstated = sg.model_copy(update={"notes": "no flags"})
    assert ps._vllm_v0_defaults(unstated, {}) == {}
    chunked = ps._vllm_v0_defaults(unstated, {"chunked_prefill": True})  # V0's chunked budget
    assert chunked == {"max_num_batched_tokens": 512}
    sglang = rows["serve-sglang060-a100-llama31-8b-rps4-sglang-tpot"]
    assert ps._vllm_v0_defaults(sglang, {}) == {}


def test_v0_defaults_reach_the_simulated_deployment(rows):
    p = pe.evaluate_row(rows["serve-sglang060-a100-llama31-8b-rps4-vllm-tpot"], max_requests=20)
    assert p.ok, p.status
    assert any(n.startswith(ps.V0_SOURCE) and "chunked_prefill=False" in n for n in p.notes)


def test_trtllm_rows_before_1_0_keep_the_launch_model(rows):
    # the trtllm preset's CUDA graphs are the PyTorch backend's (1.0 on); every TensorRT-LLM
    # row here predates it: a stated 0.17, a notes pin of tensorrt_llm==0.15.0, or the
    # TensorRT-engine benchmark tool
    trt = [r for r in rows.values() if r.engine == "TensorRT-LLM"]
    assert len(trt) == 14 and all(ps._trtllm_before_pytorch_backend(r) for r in trt)
    current = trt[0].model_copy(update={"engine_version": "1.0.0", "notes": "trtllm-serve"})
    assert not ps._trtllm_before_pytorch_backend(current)
    p = pe.evaluate_row(rows["serve-dstack-r1-h200-trt-llm-c32-tpot"], max_requests=20)
    assert any("cuda_graphs=False" in n for n in p.notes)
