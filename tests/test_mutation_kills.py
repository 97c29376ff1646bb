"""Tests written to kill mutants that survived a mutation-testing run over the pricing core
(see docs/mutation-testing.md; the capacity ones are in test_mutation_kills_capacity.py). Each
asserts a hand-computed value from a shipped profile, an invariant or a brute-force
cross-check; none pins an output without a reason."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from pydantic import ValidationError

import hwsim.inference.engine as engine
import hwsim.perf.transfer as transfer
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import (
    PhaseCost,
    decode_contexts,
    decode_step_cost,
    mean_decode_cost,
    op_band_s,
    phase_band_s,
    prefill_cost,
)
from hwsim.inference.memory import (
    cache_bytes_per_sequence_per_gpu,
    held_bytes,
    kv_bytes_per_token_per_gpu,
    state_bytes_per_sequence_per_gpu,
    weight_bytes_per_gpu,
    workspace_bytes,
)
from hwsim.model.mixers.sliding_window import SlidingWindowAttention
from hwsim.model.ops import Op
from hwsim.perf.measured import Measurement, MeasurementSet
from hwsim.perf.roofline import (
    roofline_bound,
    roofline_floor_s,
    time_op,
)
from hwsim.perf.transfer import band_factors, op_groups
from hwsim.profiles.hardware import Calibration, EfficiencyCurve, ResidualBand
from hwsim.profiles.loader import load_hardware

H100 = load_hardware("h100-sxm")
CPU = load_hardware("cpu")

# h100-sxm.yaml: NVLink 450 GB/s per direction, 5 us per step (assumed), InfiniBand NIC
# 50 GB/s and 10 us; the default link_fraction is 0.8 (NCCL ring ~80% of the link rate).
NVLINK_BW, NVLINK_ALPHA = 450e9, 5e-6
IB_BW, IB_ALPHA = 50e9, 10e-6
LINK_FRACTION = 0.8


def test_h100_link_numbers_are_the_datasheet_ones_used_below():
    intra, inter = H100.interconnect.intra_node, H100.interconnect.inter_node
    assert intra.bandwidth_per_direction_bytes_per_s.value == NVLINK_BW
    assert intra.latency_s.value == pytest.approx(NVLINK_ALPHA, rel=1e-12)
    assert inter.bandwidth_per_direction_bytes_per_s.value == IB_BW
    assert inter.latency_s.value == pytest.approx(IB_ALPHA, rel=1e-12)
    assert H100.efficiency.link_fraction.value == LINK_FRACTION
    assert H100.interconnect.devices_per_node.value == 8


# the same H100 without its NCCL block: hwsim's alpha-beta ring (the model of non-NCCL stacks)
H100_RING = H100.model_copy(
    update={"interconnect": H100.interconnect.model_copy(update={"nccl": None})}
)


def all_reduce(nbytes: float, ranks: int) -> Op:
    return Op("ar", "communication", comm_bytes=nbytes, collective="all_reduce", ranks=ranks)


def p2p(nbytes: float, ranks: int = 2) -> Op:
    return Op("send", "communication", comm_bytes=nbytes, collective="p2p", ranks=ranks)


# --- roofline.py: the ring alpha-beta collective model (formulas.md section 10), which a
# profile without an NCCL block keeps (NCCL's own model: tests/test_collectives.py) ---------
@pytest.mark.parametrize(
    ("ranks", "nbytes", "alpha", "bw"),
    [
        (2, 1e6, NVLINK_ALPHA, NVLINK_BW),
        (4, 1e6, NVLINK_ALPHA, NVLINK_BW),
        (8, 3e6, NVLINK_ALPHA, NVLINK_BW),
        # more ranks than a node holds: the network link, each node's 8 NICs together
        (16, 2e6, IB_ALPHA, min(8 * IB_BW, NVLINK_BW)),
    ],
)
def test_ring_all_reduce_is_two_p_minus_one_steps(ranks, nbytes, alpha, bw):
    """Ring all-reduce: 2 (p-1) latency steps and 2 (p-1)/p of the payload over each link,
    at link_fraction of the link rate (e.g. p=4, 1 MB on NVLink: 6 * 5 us + 1.5 MB / 360 GB/s
    = 30 us + 4.1667 us)."""
    want = 2 * (ranks - 1) * alpha + 2 * (ranks - 1) / ranks * nbytes / (bw * LINK_FRACTION)
    t = time_op(H100_RING, all_reduce(nbytes, ranks))
    assert float(t.time_s) == pytest.approx(want, rel=1e-12)
    # an empty payload leaves the latency term alone
    assert float(time_op(H100_RING, all_reduce(0.0, ranks)).time_s) == pytest.approx(
        2 * (ranks - 1) * alpha, rel=1e-12
    )
    # the speed of light: the same bytes at the full link rate, no latency
    floor = 2 * (ranks - 1) / ranks * nbytes / bw
    assert float(roofline_floor_s(H100, all_reduce(nbytes, ranks))) == pytest.approx(
        floor, rel=1e-12
    )


def test_point_to_point_is_one_latency_plus_bytes_over_the_link():
    # 4 MB over NVLink at 0.8 * 450 GB/s: 5 us + 4e6 / 3.6e11 s = 5 us + 11.111 us
    t = time_op(H100_RING, p2p(4e6))
    assert float(t.time_s) == pytest.approx(5e-6 + 4e6 / 3.6e11, rel=1e-12)
    assert float(roofline_floor_s(H100, p2p(4e6))) == pytest.approx(4e6 / 450e9, rel=1e-12)


def test_collective_op_time_is_communication_bound_with_zero_compute_and_memory():
    sizes = np.array([0.0, 1e3, 1e6])
    t = time_op(H100, all_reduce(sizes, 8))
    assert t.bound.tolist() == [2, 2, 2]
    np.testing.assert_array_equal(np.asarray(t.compute_s), np.zeros(3))
    np.testing.assert_array_equal(np.asarray(t.memory_s), np.zeros(3))
    assert roofline_bound(H100, all_reduce(sizes, 8)).tolist() == ["communication"] * 3


def test_a_collective_over_one_rank_or_without_a_link_costs_nothing():
    for op in (all_reduce(1e6, 1), p2p(1e6, ranks=1)):
        assert float(time_op(H100, op).time_s) == 0.0
        assert float(roofline_floor_s(H100, op)) == 0.0
    # the CPU profile lists no link at all (a single device)
    assert CPU.link_for(2) is None
    assert float(time_op(CPU, all_reduce(1e6, 2)).time_s) == 0.0
    assert float(time_op(CPU, p2p(1e6)).time_s) == 0.0


def test_tp8_decode_of_llama_3_1_8b_all_reduces_are_nccl_ring_ll():
    """Llama 3.1 8B (32 layers, d_model 4096) at tp=8, batch 1: two all-reduces per layer of
    one token's bf16 hidden state, 4096 * 2 = 8192 bytes, over NVLink (p = 8). NCCL's model
    picks ring LL: 6.6 us base + 14 steps * 0.6 us = 15 us, at min(141 GB/s Hopper LL cap,
    0.5 * 360 GB/s) * 8/14 = 80.57 GB/s: 15 us + 0.1017 us, times 64 = 0.9665 ms. Its weights
    (~2 GB per GPU at 2.68 TB/s, ~0.75 ms, plus launches) now bound the step; with the
    alpha-beta ring (2 * 7 * 5 us per all-reduce, 4.48 ms) the all-reduces did."""
    dep = make_deployment("llama-3.1-8b", "h100-sxm", tp=8)
    cost = decode_step_cost(dep, 1.0, 1000.0)
    per_all_reduce = 15e-6 + 8192 / (141e9 * 8 / 14)
    assert float(cost.time_by_bound_s[2]) == pytest.approx(64 * per_all_reduce, rel=1e-12)
    assert cost.bound == "memory"
    ring = decode_step_cost(make_deployment("llama-3.1-8b", H100_RING, tp=8), 1.0, 1000.0)
    per_ring = 2 * 7 * NVLINK_ALPHA + 2 * 7 / 8 * 8192 / (NVLINK_BW * LINK_FRACTION)
    assert float(ring.time_by_bound_s[2]) == pytest.approx(64 * per_ring, rel=1e-12)
    assert ring.bound == "communication"


# --- roofline.py: the efficiency curve's F_half / B_half ramp -------------------------------
def with_curve(hw, **curve):
    c = EfficiencyCurve(source="test", **curve)
    eff = hw.efficiency.model_copy(update={"matmul": c})
    return hw.model_copy(update={"efficiency": eff})


RAMP = with_curve(
    H100, compute_fraction=0.5, memory_fraction=0.5, compute_half_flops=1e9, memory_half_bytes=1e6
)
PEAK, BW = H100.matrix_peak_flops_per_s("bf16"), H100.bandwidth_bytes_per_s


def test_the_ramp_charges_only_work_an_op_does():
    """F_half / B_half is the fixed cost of a small call of that kind of work: an op with no
    FLOPs takes no compute time and one with no bytes no memory time."""
    bytes_only = time_op(RAMP, Op("copy", "matmul", act_read_bytes=1e6))
    assert float(bytes_only.compute_s) == 0.0
    assert float(bytes_only.memory_s) == pytest.approx((1e6 + 1e6) / (BW * 0.5), rel=1e-12)
    flops_only = time_op(RAMP, Op("gemm", "matmul", flops=1e9))
    assert float(flops_only.memory_s) == 0.0
    assert float(flops_only.compute_s) == pytest.approx((1e9 + 1e9) / (PEAK * 0.5), rel=1e-12)


def test_the_ramp_applies_to_any_nonzero_work_however_small():
    # one FLOP and one byte still pay the whole fixed cost: (1 + F_half) / (peak * 0.5)
    t = time_op(RAMP, Op("tiny", "matmul", flops=1.0, act_read_bytes=1.0))
    assert float(t.compute_s) == pytest.approx((1.0 + 1e9) / (PEAK * 0.5), rel=1e-12)
    assert float(t.memory_s) == pytest.approx((1.0 + 1e6) / (BW * 0.5), rel=1e-12)
    half = time_op(RAMP, Op("half", "matmul", flops=0.5, act_read_bytes=0.5))
    assert float(half.compute_s) == pytest.approx((0.5 + 1e9) / (PEAK * 0.5), rel=1e-12)
    assert float(half.memory_s) == pytest.approx((0.5 + 1e6) / (BW * 0.5), rel=1e-12)


# --- roofline.py: the bound label at the ridge point ----------------------------------------
def test_bound_labels_agree_at_the_ridge_point_where_compute_wins_the_tie():
    """With equal compute and memory fractions and no ramp, the efficiency times are the peak
    times scaled alike, so time_op's bound and roofline_bound must name the same side, ties
    included; at the ridge (F / peak == B / bandwidth, here exactly 2 s each) both say
    compute (the >= convention of both functions)."""
    flat = with_curve(H100, compute_fraction=0.5, memory_fraction=0.5)
    ridge = Op("ridge", "matmul", flops=PEAK, act_read_bytes=BW)
    t = time_op(flat, ridge)
    assert float(t.compute_s) == float(t.memory_s) == 2.0
    assert int(t.bound) == 0
    assert str(roofline_bound(flat, ridge)) == "compute"
    for flops, nbytes in ((2 * PEAK, BW), (PEAK, 2 * BW)):
        op = Op("off-ridge", "matmul", flops=flops, act_read_bytes=nbytes)
        label = ["compute", "memory"][int(time_op(flat, op).bound)]
        assert str(roofline_bound(flat, op)) == label


def test_op_times_are_immutable():
    t = time_op(H100, Op("gemm", "matmul", flops=1e9))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.time_s = np.asarray(0.0)  # type: ignore[misc]


# --- engine.py ------------------------------------------------------------------------------
def the(cost, name):
    (t,) = [t for t in cost.op_times if t.op.name == name]
    return t


def op_flops(cost, cls=None):
    """Sum of the ops' own (per-rank) FLOPs times their count, optionally for one class."""
    return sum(
        float(np.asarray(t.op.flops)) * t.op.count
        for t in cost.op_times
        if cls is None or t.op.op_class == cls
    )


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_flops_executed_across_the_tp_group(phase):
    """PhaseCost.flops counts the whole TP group's work. On one GPU that is just the ops' FLOPs.
    With tp ranks, the sharded projections and attention heads are split over the ranks and
    re-multiplied by tp, so for Llama 2 7B (32 heads, MHA: no K/V replication) the
    non-elementwise FLOPs are the same at any tp; elementwise ops are counted once, as one
    rank runs them, and the replicated norms cost the same at every tp.
    (The SwiGLU activation is elementwise but sharded, so PhaseCost.flops misses
    (tp - 1) / tp of its FLOPs: see docs/mutation-testing.md, 'findings'.)"""
    price = prefill_cost if phase == "prefill" else decode_step_cost
    costs = {
        tp: price(make_deployment("llama-2-7b", "h100-sxm", tp=tp), 4, 1024) for tp in (1, 2, 4, 8)
    }
    assert float(costs[1].flops) == pytest.approx(op_flops(costs[1]), rel=1e-12)
    base = float(costs[1].flops) - op_flops(costs[1], "elementwise")
    norms = float(the(costs[1], "layer_norms").op.flops) * 64
    assert norms > 0
    for tp in (2, 4, 8):
        c = costs[tp]
        assert float(c.flops) - op_flops(c, "elementwise") == pytest.approx(base, rel=1e-12)
        assert float(the(c, "layer_norms").op.flops) * 64 == pytest.approx(norms, rel=1e-12)


def test_decode_step_hbm_traffic_is_weights_plus_kv_plus_small_activations():
    """Llama 2 7B decode, batch 1, 4096 keys, bf16 on one GPU. Weights read per step: every
    parameter except the embedding table (32000 x 4096, only one row is gathered) and the
    norm weights (2 x 4096 per layer + 4096 final, fused into the elementwise ops):
    (6,738,415,616 - 131,072,000 - 266,240) x 2 B + 4096 x 2 B = 13,214,162,944 B.
    KV read: 4096 keys x 2 x 32 layers x 32 heads x 128 x 2 B = 2,147,483,648 B; KV write: one
    token's 524,288 B. Activations of one token are a few MB."""
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm")
    cost = decode_step_cost(dep, 1.0, 4096.0)

    def category(name):
        return sum(float(np.asarray(getattr(t.op, name))) * t.op.count for t in cost.op_times)

    weights, kv_read = 13_214_162_944, 4096 * 524_288
    assert category("weight_bytes") == weights
    assert category("kv_read_bytes") == kv_read
    assert category("kv_write_bytes") == 524_288
    activations = float(cost.hbm_bytes) - weights - kv_read - 524_288
    assert 0 < activations < 16e6


def test_prefill_and_decode_attention_are_the_registered_fused_kernels():
    """The measured rung can only price attention through op.kernel: a whole-prompt prefill is
    an attention_prefill call, a one-token decode step an attention_decode call."""
    dep = make_deployment("llama-2-7b", "h100-sxm")
    pre = the(prefill_cost(dep, 2, 512), "attn.core").op.kernel
    assert pre is not None and pre[0] == "attention_prefill"
    assert float(pre[1]["seq_len"]) == 512 and pre[1]["causal"] is True
    dec = the(decode_step_cost(dep, 2, 512), "attn.core").op.kernel
    assert dec is not None and dec[0] == "attention_decode"
    assert float(dec[1]["context_len"]) == 512


@pytest.mark.parametrize(("s", "g"), [(100, 2), (100, 3), (512, 128), (7, 1000), (0, 9)])
def test_decode_contexts_are_the_midpoints_of_the_decode_steps(s, g):
    """Step i (i = 1 .. G-1) sees S + i keys; the samples are the midpoints of `samples` equal
    slices of [S + 1/2, S + G - 1/2], so they average to the mean context S + G/2 of the
    G - 1 steps (brute force below) and are equally spaced (G - 1) / samples apart."""
    for samples in (1, 4, 5):
        ctx = decode_contexts(s, g, samples=samples)
        assert ctx.shape == (samples,)
        brute = np.mean([s + i for i in range(1, g)])
        assert float(np.mean(ctx)) == pytest.approx(brute, rel=1e-12)
        np.testing.assert_allclose(np.diff(ctx), (g - 1) / samples, rtol=1e-12)
        assert ctx.min() > s and ctx.max() < s + g


def gemm_rows(n: int, k: int, times_by_m: dict[int, float]) -> list[Measurement]:
    """Measurements with p10 = 0.9 x median and p90 = 1.2 x median."""
    params = {"n": n, "k": k, "dtype": "bf16"}
    return [
        Measurement("gemm", "torch.mm", {"m": m, **params}, t, 0.9 * t, 1.2 * t, 0.2 * t, 20)
        for m, t in times_by_m.items()
    ]


# Llama 2 7B's fused QKV projection at tp=1: k = 4096, n = (32 + 2 x 32) x 128 = 12288
MEASURED_QKV = MeasurementSet(gemm_rows(12288, 4096, {1: 2e-4, 64: 2e-4}), source="test")


def test_a_measured_op_band_counts_every_execution(monkeypatch):
    """The QKV projection runs once per layer (32 times); measured at 0.2 ms with p10 0.18 ms
    and p90 0.24 ms per call, it adds 32 x (0.18 - 0.2) ms = -0.64 ms and 32 x (0.24 - 0.2) ms
    = +1.28 ms to the step's band; the other ops (uncalibrated) add their transfer bands,
    each side as sqrt((1 - rho) sum d^2 + rho (sum d)^2) with the shipped correlation rho,
    the plain sum of the edges at rho = 1."""
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm", measurements=MEASURED_QKV)
    cost = decode_step_cost(dep, 8, 1000)
    qkv = the(cost, "attn.qkv_proj")
    assert qkv.rung == "measured" and qkv.op.count == 32
    assert op_band_s(dep.hardware, qkv) == pytest.approx((32 * 1.8e-4, 32 * 2.4e-4), rel=1e-12)
    # the other ops (datasheet rung) carry their class's transfer band
    points, downs, ups = [32 * 2e-4], [32 * 0.2e-4], [32 * 0.4e-4]
    for t in cost.op_times:
        if t is qkv:
            continue
        lo, hi, _ = band_factors(op_groups(t.op))
        floor = float(roofline_floor_s(dep.hardware, t.op)) * t.op.count
        low_s, high_s = max(float(t.total_s) * lo, floor), float(t.total_s) * hi
        p = min(max(float(t.total_s), low_s), high_s)
        points.append(p)
        downs.append(p - low_s)
        ups.append(high_s - p)

    def side(d: list[float], rho: float) -> float:
        return math.sqrt((1 - rho) * sum(x * x for x in d) + rho * sum(d) ** 2)

    rho = transfer.op_correlation()
    low, high = cost.band_s
    assert float(low) == pytest.approx(sum(points) - side(downs, rho), rel=1e-9)
    assert float(high) == pytest.approx(sum(points) + side(ups, rho), rel=1e-9)
    monkeypatch.setattr(engine, "op_correlation", lambda: 1.0)
    low, high = decode_step_cost(dep, 8, 1000).band_s
    assert float(low) == pytest.approx(sum(points) - sum(downs), rel=1e-9)
    assert float(high) == pytest.approx(sum(points) + sum(ups), rel=1e-9)


def test_mean_decode_op_bands_average_like_the_phase_band(monkeypatch):
    """Averaging over the sampled contexts is linear, so where op bands add edge to edge
    (rho = 1) the phase band of the averaged ops is the averaged phase band; with rho < 1 it
    is no wider (Minkowski: the root-sum-square of averaged deviations is at most the average
    of the root-sum-squares). The measured QKV projection does not depend on context, so its
    averaged band is still its measured (p10, p90) = (0.18, 0.24) ms per call."""
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm", measurements=MEASURED_QKV)
    mean = mean_decode_cost(dep, 8, 1000, 64)
    qkv = the(mean, "attn.qkv_proj")
    assert qkv.band_s is not None
    assert (float(qkv.band_s[0]), float(qkv.band_s[1])) == pytest.approx((1.8e-4, 2.4e-4))
    low, high = phase_band_s(dep.hardware, mean.op_times)
    assert float(mean.band_s[0]) <= float(low) * (1 + 1e-12)
    assert float(high) <= float(mean.band_s[1]) * (1 + 1e-12)
    monkeypatch.setattr(engine, "op_correlation", lambda: 1.0)
    mean = mean_decode_cost(dep, 8, 1000, 64)
    low, high = phase_band_s(dep.hardware, mean.op_times)
    assert (float(low), float(high)) == pytest.approx(
        (float(mean.band_s[0]), float(mean.band_s[1])), rel=1e-12
    )


@pytest.mark.calibration_only
def test_each_op_gets_the_calibration_band_of_its_own_bound():
    """A calibration whose groups for the QKV projection differ by bound: the memory-bound
    decode at batch 1 must take the memory group, the compute-bound 2048-token prefill the
    compute group (keys '<kernel>/<dtype>/<bound>', hwsim.perf.bands.group_key; a projection
    is a 'gemm' kernel call, hwsim.perf.kernels.calibration_name). Both low
    ends stay above the op's roofline floor (decode: 0.8 x 1.33 ms > 0.96 ms of weights)."""
    bands = {"compute": (0.95, 1.05), "memory": (0.8, 1.6)}
    cal = Calibration(
        calibrated_from="synthetic",
        date="2026-01-01",
        residuals={
            f"gemm/bf16/{bound}": ResidualBand(
                p10=math.log(lo), p50=0.0, p90=math.log(hi), n_points=10
            )
            for bound, (lo, hi) in bands.items()
        },
    )
    hw = load_hardware("h100-sxm").model_copy(update={"calibration": cal})
    dep = make_deployment("llama-2-7b", hw)
    cases = ((decode_step_cost(dep, 1, 512), "memory"), (prefill_cost(dep, 1, 2048), "compute"))
    for cost, bound in cases:
        qkv = the(cost, "attn.qkv_proj")
        assert ["compute", "memory"][int(qkv.bound)] == bound
        lo, hi = bands[bound]
        got = op_band_s(hw, qkv)
        assert (float(got[0]), float(got[1])) == pytest.approx(
            (lo * float(qkv.total_s), hi * float(qkv.total_s)), rel=1e-12
        )


def test_phase_cost_defaults_and_bound_label():
    """band_s defaults to None (uncalibrated); bound names the largest of the three parts."""
    z = np.asarray(0.0)
    cost = PhaseCost(z, z, z, (np.asarray(1.0), np.asarray(2.0), np.asarray([0.5, 3.0])), ())
    assert cost.band_s is None
    assert cost.bound.tolist() == ["memory", "communication"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cost.time_s = z  # type: ignore[misc]


# --- memory.py ------------------------------------------------------------------------------
# Llama 2 7B: 32 layers of 4 x 4096^2 attention + 3 x 4096 x 11008 MLP + 2 x 4096 norm
# = 202,383,360 parameters; embedding and LM head 32000 x 4096 = 131,072,000 each (untied);
# final RMSNorm 4096. KV per token per layer: 2 x 32 heads x 128 x 2 B = 16,384 B.
LAYER, EMBED, NORM, KV_LAYER = 202_383_360, 131_072_000, 4096, 16_384


def test_llama_2_7b_parameter_pieces_add_up_to_the_published_count():
    assert 32 * LAYER + 2 * EMBED + NORM == 6_738_415_616


@pytest.mark.parametrize(("pp", "stage_layers"), [(2, 16), (3, 11), (4, 8)])
def test_pipeline_stage_memory_is_its_share_of_layers_plus_one_end(pp, stage_layers):
    """The most loaded stage holds ceil(32 / pp) layers, plus the larger of the embedding and
    the LM head and the final norm (bf16: 2 bytes a parameter); its KV cache grows by
    ceil(32 / pp) x 16,384 B a token (pp=3: 11 layers, 180,224 B)."""
    dep = make_deployment("llama-2-7b", "h100-sxm", pp=pp)
    assert weight_bytes_per_gpu(dep) == (stage_layers * LAYER + EMBED + NORM) * 2
    assert kv_bytes_per_token_per_gpu(dep) == stage_layers * KV_LAYER
    got = cache_bytes_per_sequence_per_gpu(dep, np.array([1.0, 1000.0]))
    np.testing.assert_array_equal(got, [stage_layers * KV_LAYER, 1000 * stage_layers * KV_LAYER])


@pytest.mark.parametrize(("pp", "stage_layers"), [(1, 64), (2, 32), (3, 22)])
def test_pipeline_stage_recurrent_state_is_its_share_of_layers(pp, stage_layers):
    """Mamba 2.8B (64 layers, d_inner 5120): each layer keeps a 5120 x 16 fp32 SSM state and a
    5120 x 4 bf16 conv state, 327,680 + 40,960 = 368,640 B a sequence; the most loaded stage
    holds ceil(64 / pp) layers of it (pp=3: 22)."""
    dep = make_deployment("mamba-2.8b", "h100-sxm", pp=pp)
    assert state_bytes_per_sequence_per_gpu(dep) == stage_layers * 368_640


def test_held_bytes_of_a_projection_are_its_input_plus_its_output():
    """Prefill of 2048 tokens of Llama 2 7B: the QKV projection reads 2048 x 4096 bf16 and
    writes 2048 x 12288: 2048 x (4096 + 12288) x 2 B = 67,108,864 B held while it runs."""
    dep = make_deployment("llama-2-7b", "h100-sxm")
    qkv = the(prefill_cost(dep, 1, 2048), "attn.qkv_proj").op
    assert float(held_bytes(qkv)) == 2048 * (4096 + 12288) * 2


def test_held_bytes_of_flash_attention_are_q_k_v_o_not_its_streamed_traffic():
    """A tiled kernel holds Q, K, V and O: 2048 tokens x (2 x 32 + 2 x 32) heads x 128 x 2 B
    = 67,108,864 B, which is also what it moves through HBM (each once); its activation
    categories are only Q read and O written, 2048 x 2 x 32 x 128 x 2 B = 33,554,432 B (K and
    V are read from the cache)."""
    dep = make_deployment("llama-2-7b", "h100-sxm")
    cost = prefill_cost(dep, 1, 2048)
    core = the(cost, "attn.core").op
    assert float(held_bytes(core)) == 2048 * 128 * 128 * 2 == float(core.hbm_bytes)
    assert float(core.act_read_bytes + core.act_write_bytes) == 2048 * 2 * 32 * 128 * 2
    # the workspace is the largest single op's held bytes: the SwiGLU activation, which reads
    # gate and up (2 x 11008 per token) and writes 11008: 2048 x 3 x 11008 x 2 B = 135,266,304
    # (the up/gate projection holds 2048 x (4096 + 2 x 11008) x 2 B = 106,954,752)
    assert float(workspace_bytes(cost)) == 2048 * 3 * 11008 * 2


def test_a_bidirectional_sliding_window_is_refused_and_pointed_at_longformer():
    """The closed-form pair count i - w < j <= i is causal; a bidirectional band has its own
    kind, and the one-screen error names it."""
    assert SlidingWindowAttention(kind="sliding_window", window=4).causal is True
    with pytest.raises(ValidationError) as err:
        SlidingWindowAttention(kind="sliding_window", window=4, causal=False)
    msg = err.value.errors()[0]["msg"]
    assert "'sliding_window' is causal only" in msg
    assert msg.endswith("a bidirectional band is kind 'longformer'")
