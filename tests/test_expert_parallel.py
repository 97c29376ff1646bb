"""Expert parallelism (hwsim.inference.expert_parallel): all-to-all bytes and time, experts
and weights per GPU, ep = 1 as plain TP, load imbalance, the layout rule, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.errors import InfeasibleError
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost, prefill_cost
from hwsim.inference.expert_parallel import (
    a2a_bytes_per_token,
    all_to_all_s,
    expert_parallel_step,
)
from hwsim.inference.memory import weight_bytes_per_gpu
from hwsim.model.load import load_model
from hwsim.perf.collectives import collective_model
from hwsim.profiles.loader import load_hardware

MIXTRAL, HW = "mixtral-8x7b", "h100-sxm"
# one Mixtral expert: gate, up, down of 4096 x 14336
MIXTRAL_EXPERT = 3 * 4096 * 14336


def test_a2a_bytes_per_token_by_hand():
    # Mixtral: top-2 copies of a 4096-wide bf16 hidden state, per direction
    assert a2a_bytes_per_token(load_model(MIXTRAL), 2.0) == 2 * 4096 * 2
    assert a2a_bytes_per_token(load_model("deepseek-v3"), 2.0) == 8 * 7168 * 2
    r = expert_parallel_step(MIXTRAL, HW, 8, batch=16, context=1024)
    assert r.a2a_bytes_per_token == 16384
    assert r.a2a_bytes_per_gpu == 16 * 16384  # tp 1: each GPU dispatches its own 16 tokens


def test_expert_weight_bytes_per_gpu_under_ep():
    dep = make_deployment(MIXTRAL, HW)
    routed = 8 * MIXTRAL_EXPERT * 32 * 2.0  # 8 experts x 32 MoE layers, bf16
    for ep in (2, 4, 8):
        r = expert_parallel_step(MIXTRAL, HW, ep, batch=1, context=512)
        assert r.experts_per_gpu == 8 // ep
        assert r.expert_weight_bytes_per_gpu == pytest.approx(routed / ep)
        assert r.weight_bytes_per_gpu == pytest.approx(
            weight_bytes_per_gpu(dep) - routed + routed / ep
        )
    one = expert_parallel_step(MIXTRAL, HW, 1, batch=1, context=512)
    assert one.weight_bytes_per_gpu == pytest.approx(weight_bytes_per_gpu(dep))
    assert one.expert_weight_bytes_per_gpu == pytest.approx(routed)
    # with attention TP 2 inside an EP group of 8: the rest / 2, the experts / 8
    dep2 = make_deployment(MIXTRAL, HW, tp=2)
    r = expert_parallel_step(MIXTRAL, HW, 8, batch=1, context=512, tp=2)
    assert r.attention_replicas == 4 and r.attention_tp == 2
    assert r.weight_bytes_per_gpu == pytest.approx(
        weight_bytes_per_gpu(dep2) - routed / 2 + routed / 8
    )


def test_memory_per_gpu_falls_with_ep_and_counts_the_cache():
    rows = [expert_parallel_step(MIXTRAL, HW, ep, batch=32, context=4096) for ep in (1, 2, 4, 8)]
    mem = [r.memory_per_gpu_bytes for r in rows]
    assert all(b < a for a, b in zip(mem, mem[1:]))
    assert not rows[0].fits and rows[-1].fits  # 93 GB of weights on one 80 GB GPU
    kv = 2 * 32 * 8 * 128 * 2.0 * 4096 * 32  # 2 x layers x kv heads x head dim x bf16 x tokens
    assert rows[-1].cache_bytes_per_gpu == pytest.approx(kv)


@pytest.mark.parametrize("phase,batch,context", [("decode", 8, 1024), ("prefill", 2, 1024)])
@pytest.mark.parametrize("tp", [1, 2])
def test_ep_one_is_plain_tensor_parallelism(phase, batch, context, tp):
    dep = make_deployment(MIXTRAL, HW, tp=tp)
    plain = (
        decode_step_cost(dep, batch, context)
        if phase == "decode"
        else prefill_cost(dep, batch, context)
    )
    r = expert_parallel_step(MIXTRAL, HW, 1, batch, context, phase, tp=tp)
    assert r.time_s == pytest.approx(float(plain.time_s), rel=1e-12)
    assert r.a2a_s == 0.0 and r.a2a_bytes_per_gpu == 0.0


def test_dispatch_and_combine_are_priced_per_moe_layer():
    hw = load_hardware(HW)
    r = expert_parallel_step(MIXTRAL, HW, 8, batch=64, context=2048, imbalance=1.5)
    buffer = 1.5 * 64 * 16384
    assert r.a2a_bytes_per_gpu == pytest.approx(buffer)
    assert r.moe_layers == 32
    one_way = all_to_all_s(hw, 8, buffer)
    assert r.a2a_s_per_layer == pytest.approx(2 * one_way)
    assert r.a2a_s == pytest.approx(2 * one_way * 32)
    names = [t.op.name for t in r.op_times]
    assert names.count("ep.dispatch") == 1 and names.count("ep.combine") == 1
    total = sum(float(np.sum(t.total_s)) for t in r.op_times)
    assert r.time_s == pytest.approx(total)


def test_all_to_all_cost_model():
    hw = load_hardware(HW)  # 8 GPUs per NVLink node, InfiniBand between nodes
    assert all_to_all_s(hw, 1, 1e6) == 0.0 and all_to_all_s(hw, 8, 0.0) == 0.0
    # in a node: one point-to-point exchange of the 7/8 of the buffer bound elsewhere
    p2p = collective_model(hw, "p2p", 8)
    assert all_to_all_s(hw, 8, 8e6) == pytest.approx(p2p.seconds(7e6))
    sizes = [1e3, 1e5, 1e7, 1e9]
    times = [all_to_all_s(hw, 8, s) for s in sizes]
    assert all(b > a for a, b in zip(times, times[1:]))
    # large buffers run at about the link rate: 450 GB/s x the profile's link fraction
    bw = 450e9 * hw.efficiency.link_fraction.value
    assert all_to_all_s(hw, 8, 8e9) == pytest.approx(7e9 / bw, rel=0.02)
    # across nodes the NIC (50 GB/s) is the bottleneck: much slower for the same buffer
    assert all_to_all_s(hw, 16, 8e9) > 5 * all_to_all_s(hw, 8, 8e9)
    net = collective_model(hw, "p2p", 16)
    assert all_to_all_s(hw, 16, 16e6) == pytest.approx(
        max(p2p.seconds(16e6 * 7 / 16), net.seconds(16e6 * 8 / 16))
    )


def test_expert_op_per_gpu_scales_with_imbalance_and_ep():
    def experts_op(ep, imbalance=1.0, tp=1):
        r = expert_parallel_step(MIXTRAL, HW, ep, 64, 2048, "decode", imbalance, tp=tp)
        (op,) = [t.op for t in r.op_times if t.op.name == "moe.experts"]
        return op

    base = experts_op(8)
    assert float(base.flops) == pytest.approx(2 * 64 * 2 * MIXTRAL_EXPERT)  # 64 tokens x top-2
    assert float(experts_op(8, 2.0).flops) == pytest.approx(2 * float(base.flops))
    # 512 tokens in the group touch every expert: one whole expert per GPU at ep 8
    assert float(base.weight_bytes) == pytest.approx(MIXTRAL_EXPERT * 2.0, rel=1e-6)
    assert float(experts_op(4).weight_bytes) == pytest.approx(2 * MIXTRAL_EXPERT * 2.0, rel=1e-6)
    # with attention TP 2 each GPU holds half a replica's tokens
    assert float(experts_op(8, tp=2).flops) == pytest.approx(float(base.flops) / 2)


@pytest.mark.parametrize("phase,batch,context", [("decode", 64, 2048), ("prefill", 1, 4096)])
@pytest.mark.parametrize("model,ep", [(MIXTRAL, 8), ("jamba-1.5-mini", 4), ("deepseek-v3", 16)])
def test_imbalance_is_never_faster(model, ep, phase, batch, context):
    kw = {"weight_dtype": "fp8"} if model == "deepseek-v3" else {}
    hw = "h200-sxm" if model == "deepseek-v3" else HW
    times = [
        expert_parallel_step(model, hw, ep, batch, context, phase, imb, **kw).time_s
        for imb in (1.0, 1.25, 1.5, 2.0, 4.0)
    ]
    assert all(b >= a for a, b in zip(times, times[1:]))
    assert times[-1] > times[0]


def test_moe_profiles_shipped():
    jamba = expert_parallel_step("jamba-1.5-mini", HW, 16, 8, 1024)
    assert jamba.moe_layers == 16 and jamba.experts_per_gpu == 1  # MoE every 2nd of 32 layers
    ds = expert_parallel_step("deepseek-v3", "h200-sxm", 32, 8, 1024, weight_dtype="fp8")
    assert ds.moe_layers == 58 and ds.experts_per_gpu == 8  # 61 layers, first 3 dense
    assert ds.fits
    assert ds.tokens_per_s == pytest.approx(32 * 8 / ds.time_s)


@pytest.mark.parametrize(
    "model,ep,kwargs,match",
    [
        (MIXTRAL, 3, {}, "does not divide the 8 experts"),
        (MIXTRAL, 0, {}, "ep must be"),
        (MIXTRAL, 2.5, {}, "ep must be"),
        ("llama-3.1-8b", 2, {}, "no mixture-of-experts"),
        (MIXTRAL, 2, {"tp": 4}, "not a multiple of tp"),
        (MIXTRAL, 8, {"imbalance": 0.9}, "imbalance"),
        (MIXTRAL, 2, {"imbalance": 3.0}, "exceeds ep"),
        (MIXTRAL, 8, {"imbalance": float("nan")}, "imbalance"),
        (MIXTRAL, 8, {"phase": "train"}, "phase"),
        (MIXTRAL, 8, {"batch": 0}, "batch"),
        (MIXTRAL, 8, {"context": 0.5}, "context"),
    ],
)
def test_bad_inputs_are_clear_errors(model, ep, kwargs, match):
    with pytest.raises(InfeasibleError, match=match):
        expert_parallel_step(model, HW, ep, **kwargs)


def test_a_dense_model_at_ep_one_is_allowed():
    r = expert_parallel_step("llama-3.1-8b", HW, 1, 4, 1024)
    dep = make_deployment("llama-3.1-8b", HW)
    assert r.time_s == pytest.approx(float(decode_step_cost(dep, 4, 1024).time_s))
    assert r.moe_layers == 0 and r.a2a_bytes_per_token == 0.0
