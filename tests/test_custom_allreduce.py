"""vLLM's custom all-reduce (hwsim.perf.custom_allreduce): the fit against its published
source, vLLM's kernel choice and eligibility, and how a deployment's runtime prices it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost, prefill_cost
from hwsim.model.ops import Op
from hwsim.perf.collectives import collective_model
from hwsim.perf.custom_allreduce import custom_all_reduce_s, eligible, one_shot
from hwsim.perf.roofline import time_op
from hwsim.profiles.loader import load_hardware

H100 = load_hardware("h100-sxm")
# SGLang PR #2904, "unit test performance in H100 (without cuda graph)", vLLM's kernel:
# latency (ms) at tp 2 / 4 / 8 per data size (bytes)
PUBLISHED_MS = {
    512: (0.0095, 0.0091, 0.0101),
    4096: (0.0088, 0.0085, 0.0093),
    32768: (0.0087, 0.0092, 0.0118),
    262144: (0.0129, 0.0206, 0.0241),
    524288: (0.0177, 0.0269, 0.0304),
    1048576: (0.0266, 0.0402, 0.0450),
}


@pytest.mark.parametrize("size", sorted(PUBLISHED_MS))
@pytest.mark.parametrize("column, ranks", [(0, 2), (1, 4), (2, 8)])
def test_the_fit_holds_every_published_latency_within_13_percent(size, column, ranks):
    predicted = float(custom_all_reduce_s(H100, ranks, size))
    published = PUBLISHED_MS[size][column] * 1e-3
    assert predicted == pytest.approx(published, rel=0.13)


def test_vllms_kernel_choice():
    kib = 1024
    assert one_shot(2, np.array([10 * 1024 * kib])).all()  # two ranks: always one-shot
    assert one_shot(4, np.array([512 * kib - 1])).all() and not one_shot(4, 512 * kib)
    assert one_shot(8, np.array([256 * kib - 1])).all() and not one_shot(8, 256 * kib)
    assert one_shot(6, np.array([256 * kib - 1])).all() and not one_shot(6, 256 * kib)


def test_where_the_kernel_does_not_apply():
    assert eligible(H100, 8) and eligible(load_hardware("mi300x"), 4)
    assert not eligible(load_hardware("l40s"), 2)  # PCIe only
    assert not eligible(H100, 3)  # vLLM supports 2, 4, 6, 8 ranks
    assert not eligible(H100, 16)  # more than one node
    assert np.isnan(custom_all_reduce_s(H100, 8, 2 * 1024 * 1024))  # past the measured 1 MiB
    assert np.isnan(custom_all_reduce_s(load_hardware("l40s"), 4, 4096))


@settings(max_examples=80, deadline=None)
@given(
    hw=st.sampled_from(["h100-sxm", "mi300x", "a100-80gb-sxm", "b200"]),
    ranks=st.sampled_from([2, 4, 6, 8]),
    small=st.integers(1, 2**21),
    extra=st.integers(0, 2**21),
)
def test_more_bytes_never_cost_less(hw, ranks, small, extra):
    # the price an engine's all-reduce gets (kernel or NCCL, across the kernel's 1 MiB edge)
    sizes = np.array([small, small + extra], dtype=float)
    op = Op("tp.all_reduce", "communication", comm_bytes=sizes, collective="all_reduce",
            ranks=ranks, meta={"custom_all_reduce": True})  # fmt: skip
    seconds = time_op(load_hardware(hw), op).time_s
    assert seconds[1] >= seconds[0]


def comm_s(cost) -> float:
    return sum(float(t.total_s) for t in cost.op_times if t.op.op_class == "communication")


def test_an_engine_runtime_prices_decode_all_reduces_with_the_kernel():
    mine = make_deployment("llama-3.1-70b", "h100-sxm", tp=8, runtime={"engine": "vllm"})
    nccl = make_deployment("llama-3.1-70b", "h100-sxm", tp=8)  # generic: NCCL's model
    fast, slow = decode_step_cost(mine, 1.0, 2000.0), decode_step_cost(nccl, 1.0, 2000.0)
    payload = 8192 * 2  # 1 token of d_model 8192 in bf16
    per_call = float(custom_all_reduce_s(H100, 8, payload))
    ar = [t for t in fast.op_times if t.op.name == "tp.all_reduce"][0]
    assert float(ar.time_s) == pytest.approx(per_call)
    assert comm_s(fast) == pytest.approx(per_call * ar.op.count)
    nccl_call = float(collective_model(H100, "all_reduce", 8).seconds_array(payload))
    assert comm_s(slow) == pytest.approx(nccl_call * ar.op.count) and nccl_call > per_call
    # a 2048-token prefill's 32 MiB all-reduce is past the kernel's range: NCCL either way
    assert comm_s(prefill_cost(mine, 1.0, 2048.0)) == pytest.approx(
        comm_s(prefill_cost(nccl, 1.0, 2048.0))
    )


def test_pcie_parts_and_tpus_keep_their_collective_model():
    for hw in ("l40s", "tpu-v5e"):  # PCIe only; not a GPU (ICI)
        assert not eligible(load_hardware(hw), 4)
        dep = make_deployment("llama-3.1-8b", hw, tp=4, runtime={"engine": "vllm"})
        base = make_deployment("llama-3.1-8b", hw, tp=4)  # generic: no custom kernel
        assert comm_s(decode_step_cost(dep, 1.0, 1000.0)) == pytest.approx(
            comm_s(decode_step_cost(base, 1.0, 1000.0))
        )


@pytest.mark.parametrize("hw", ["h100-sxm", "mi300x"])
def test_the_simulators_fast_path_prices_the_kernel_as_the_reference(hw):
    from hwsim.planner.step_model import EngineStepModel

    dep = make_deployment("llama-3.1-70b", hw, tp=8, runtime={"engine": "vllm"})
    fast, ref = EngineStepModel(dep), EngineStepModel(dep, fast=False)
    assert fast.fast_path_note.startswith("fast path"), fast.fast_path_note
    for batch in (1, 2, 4, 64):  # messages from 16 KiB (the kernel) to 1 MiB (NCCL's NVLS)
        new, ctx = np.ones(batch, dtype=np.int64), np.full(batch, 2048, dtype=np.int64)
        got, want = fast.iteration_time_s(new, ctx), ref.iteration_time_s(new, ctx)
        assert got == pytest.approx(want, rel=1e-9)
    chunk = (np.array([1, 1, 700]), np.array([900, 3000, 700]))  # decodes and a prefill chunk
    assert fast.iteration_time_s(*chunk) == pytest.approx(ref.iteration_time_s(*chunk), rel=1e-9)
