"""NCCL's collective cost model (hwsim.perf.collectives), checked by hand.

Constants (NVIDIA/nccl src/tuning/cost_model.cc at 1fc949c5): ring base latency LL 6.6,
LL128 14.0, Simple 8.4 us; NVLink per-hop ring LL 0.6, LL128 1.9, Simple 3.4 us; PCI ring
LL 1.0, Simple 5.7 us; NVLS over NVLink 25 us; Hopper llMaxBw (one node) 141 GB/s. The
h100-sxm link is 450 GB/s per direction at link_fraction 0.8: a bus bandwidth of 360 GB/s.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.model.ops import Op
from hwsim.perf import collectives as C
from hwsim.perf.roofline import roofline_floor_s, time_op
from hwsim.profiles.loader import load_hardware

H100 = load_hardware("h100-sxm")
A100 = load_hardware("a100-80gb-sxm")
SIZES = np.unique(np.round(np.geomspace(1, 2**31, 3000)))
CONFIGS = [
    ("h100-sxm", 2),
    ("h100-sxm", 4),
    ("h100-sxm", 8),
    ("h100-sxm", 16),
    ("h100-sxm", 64),
    ("h200-sxm", 8),
    ("b200", 8),
    ("a100-80gb-sxm", 8),
    ("a100-80gb-sxm", 32),
    ("h100-pcie", 8),
    ("l4", 8),
    ("l4", 16),
    ("l40s", 4),
    ("mi300x", 8),
    ("tpu-v5e", 8),
]


def all_reduce(nbytes, ranks: int) -> Op:
    return Op("ar", "communication", comm_bytes=nbytes, collective="all_reduce", ranks=ranks)


def p2p(nbytes, ranks: int = 2) -> Op:
    return Op("send", "communication", comm_bytes=nbytes, collective="p2p", ranks=ranks)


def model(hw_id: str, ranks: int, collective: str = "all_reduce") -> C.CollectiveModel:
    return C.collective_model(load_hardware(hw_id), collective, ranks)


def test_a_16_kib_all_reduce_at_p8_is_ring_ll():
    """Ring LL: 6.6 us + 2 * 7 hops * 0.6 us = 15.0 us; bus min(141, 0.5 * 360) = 141 GB/s,
    algorithm bandwidth 141 * 8 / 14 = 80.571 GB/s: 15 us + 16384 B / 80.571 GB/s."""
    m = model("h100-sxm", 8)
    assert m.chosen(16384) == ("ring", "LL")
    want = 15.0e-6 + 16384 / (141e9 * 8 / 14)
    assert m.seconds(16384) == pytest.approx(want, rel=1e-12)
    assert float(time_op(H100, all_reduce(16384.0, 8)).time_s) == pytest.approx(want, rel=1e-12)


def test_a_1_gib_all_reduce_at_p8_runs_at_the_bus_bandwidth():
    """NVLS (25 us, min(2 * 0.85 * 15/16, 1) * 360 GB/s bus) on the H100 baseboard; ring
    Simple (8.4 + 14 * 3.4 = 56 us, 240 GB/s bus) on the A100 one (no NVLink SHARP). Either
    way the bus bandwidth 2 (p-1)/p S / t is within 1% of the bus rate."""
    s = float(2**30)
    h = model("h100-sxm", 8)
    assert h.chosen(s) == ("nvls", "Simple")
    assert h.seconds(s) == pytest.approx(25e-6 + s / (360e9 * 8 / 14), rel=1e-12)
    a = model("a100-80gb-sxm", 8)
    assert a.chosen(s) == ("ring", "Simple")
    assert a.seconds(s) == pytest.approx(56e-6 + s / (240e9 * 8 / 14), rel=1e-12)
    for m, bus in ((h, 360e9), (a, 240e9)):
        busbw = 2 * 7 / 8 * s / m.seconds(s)
        assert 0.99 * bus < busbw < bus


def test_ll128_and_tree_are_priced_with_the_cited_constants():
    """Ring LL128 at p=8: 14 + 14 * 1.9 = 40.6 us, 0.92 * 360 * 8/14 GB/s. Tree Simple:
    8.4 + 2 * 7 * 4.0 = 64.4 us, 0.92 * 360 / 2 GB/s, times treeCorrectionFactor (Simple at
    1 MiB: log2(2^20 / 64) = 14 -> 0.5)."""
    by = {(c.algorithm, c.protocol): c for c in model("h100-sxm", 8).choices}
    ll128 = by["ring", "LL128"]
    assert ll128.latency_s == pytest.approx(40.6e-6, rel=1e-12)
    assert ll128.bandwidth == pytest.approx(0.92 * 360e9 * 8 / 14, rel=1e-12)
    tree = by["tree", "Simple"]
    assert tree.latency_s == pytest.approx(64.4e-6, rel=1e-12)
    assert tree.seconds(2.0**20) == pytest.approx(64.4e-6 + 2**20 / (0.92 * 180e9 * 0.5))
    assert set(by) == {(a, p) for a in ("ring", "tree") for p in C.PROTOCOLS} | {("nvls", "Simple")}


@pytest.mark.parametrize(("hw_id", "ranks"), CONFIGS)
def test_time_grows_with_size_and_never_beats_the_ideal_floor(hw_id, ranks):
    hw = load_hardware(hw_id)
    t = np.asarray(time_op(hw, all_reduce(SIZES, ranks)).time_s)
    # NCCL's treeCorrectionFactor steps at powers of two (64 B x 2^k); where a tree wins and
    # the factor rises (e.g. LL128 0.6 -> 0.8 at 4 MiB), NCCL's own model times a larger
    # message faster. Between those steps, and wherever no tree wins, time only grows.
    bucket = np.floor(np.log2(np.maximum(np.floor(SIZES / 64), 1)))
    same = bucket[1:] == bucket[:-1]
    assert np.all(np.diff(t)[same] >= 0)
    if hw_id in ("h100-sxm", "h200-sxm", "b200", "l4", "l40s", "h100-pcie") and ranks <= 8:
        assert np.all(np.diff(t) >= 0)
    floor = np.asarray(roofline_floor_s(hw, all_reduce(SIZES, ranks)))
    assert np.all(t >= floor)
    # the ideal floor: the ring's 2 (p-1)/p of the payload at the full link rate; across
    # nodes the rate of the NICs of a node's members together, at most the intra-node link
    ic = hw.interconnect
    per_node = int(ic.devices_per_node.value)
    bw = hw.link_for(ranks).bandwidth_per_direction_bytes_per_s.value
    if ranks > per_node and ic.intra_node is not None:
        nodes = -(-ranks // per_node)
        members = min(per_node, -(-ranks // nodes))
        intra = ic.intra_node.bandwidth_per_direction_bytes_per_s.value
        bw = max(bw, min(members * bw, intra))
    np.testing.assert_allclose(floor, 2 * (ranks - 1) / ranks * SIZES / bw, rtol=1e-12)
    for coll in ("p2p", "all_gather", "reduce_scatter"):
        m = C.collective_model(hw, coll, ranks)
        tc = m.seconds_array(SIZES)
        assert np.all(np.diff(tc) >= 0) and np.all(tc >= m.ideal_seconds(SIZES))


@pytest.mark.parametrize(("hw_id", "ranks"), CONFIGS)
def test_scalar_and_array_paths_agree(hw_id, ranks):
    m = model(hw_id, ranks)
    picks = SIZES[::37]
    np.testing.assert_allclose(
        m.seconds_array(picks), [m.seconds(float(s)) for s in picks], rtol=1e-14
    )


def test_one_rank_costs_nothing():
    for coll in C.COLLECTIVES:
        m = C.collective_model(H100, coll, 1)
        assert m.seconds(1e6) == 0.0
        assert float(np.asarray(m.seconds_array(1e6))) == 0.0
        assert float(m.ideal_seconds(1e6)) == 0.0
    assert float(time_op(H100, all_reduce(1e6, 1)).time_s) == 0.0


def _crossing(a: C.Choice, b: C.Choice) -> float:
    """Bytes where a (lower latency) and b (higher bandwidth) take equal time."""
    return (b.latency_s - a.latency_s) / (1 / a.bandwidth - 1 / b.bandwidth)


@pytest.mark.parametrize(
    ("hw_id", "ranks", "steps"),
    [
        ("h100-sxm", 8, [("ring", "LL"), ("nvls", "Simple")]),
        ("a100-80gb-sxm", 8, [("ring", "LL"), ("ring", "LL128"), ("ring", "Simple")]),
        ("l4", 8, [("ring", "LL"), ("ring", "Simple")]),
        ("h100-sxm", 2, [("ring", "LL"), ("ring", "Simple")]),
    ],
)
def test_protocol_crossovers_are_where_the_formulas_cross(hw_id, ranks, steps):
    """The pick changes exactly where latency_a + S / bw_a = latency_b + S / bw_b."""
    m = model(hw_id, ranks)
    by = {(c.algorithm, c.protocol): c for c in m.choices}
    for first, second in zip(steps, steps[1:]):
        s = _crossing(by[first], by[second])
        assert by[first].seconds(s) == pytest.approx(by[second].seconds(s), rel=1e-9)
        assert m.chosen(s * 0.99) == first
        assert m.chosen(s * 1.01) == second
    assert [m.chosen(float(x)) for x in (1.0, 2.0**31)] == [steps[0], steps[-1]]


def test_h100_ll_to_nvls_crossover_by_hand():
    """(25 - 15) us / (1 / 80.571 - 1 / 205.714) per GB/s = 1.3245 MB."""
    by = {(c.algorithm, c.protocol): c for c in model("h100-sxm", 8).choices}
    s = _crossing(by["ring", "LL"], by["nvls", "Simple"])
    assert s == pytest.approx(10e-6 / (14 / (8 * 141e9) - 14 / (8 * 360e9)), rel=1e-12)
    assert s == pytest.approx(1.3245e6, rel=1e-4)


@pytest.mark.parametrize("hw_id", ["l4", "l40s", "h100-pcie"])
def test_pcie_parts_use_pci_latencies_and_no_ll128_or_nvls(hw_id):
    """PCIe ring LL at p=8: 6.6 + 14 * 1.0 = 20.6 us; bus min(llMaxBw, 0.5 * 0.8 * link)."""
    hw = load_hardware(hw_id)
    m = C.collective_model(hw, "all_reduce", 8)
    assert {c.protocol for c in m.choices} == {"LL", "Simple"}
    assert {c.algorithm for c in m.choices} == {"ring", "tree"}
    bus = hw.interconnect.intra_node.bandwidth_per_direction_bytes_per_s.value * 0.8
    cap = C.LL_MAX_BW[hw.interconnect.nccl.arch][0] * 1e9
    want = 20.6e-6 + 16384 / (min(cap, bus / 2) * 8 / 14)
    assert m.chosen(16384) == ("ring", "LL")
    assert m.seconds(16384) == pytest.approx(want, rel=1e-12)
    by = {(c.algorithm, c.protocol): c for c in m.choices}
    assert by["ring", "Simple"].latency_s == pytest.approx((8.4 + 14 * 5.7) * 1e-6, rel=1e-12)


def test_inter_node_all_reduce_uses_the_network_hops():
    """h100-sxm x 16 = 2 nodes; each node's 8 GPUs drive their own 50 GB/s NICs, one ring
    channel per NIC, so the ring's bus is min(450 NVLink, 8 x 50) x 0.8 = 320 GB/s. Ring LL:
    6.6 + 28 intra hops at max(0.6, 1.0 us net overhead) + 2 network hops * 2.7 = 40.0 us, bus
    min(39.0 Intel-host N2 cap, 160) GB/s. Tree LL: 6.8 + 2 (7 * 0.6 + 1 * 5.0) = 25.2 us, bus
    min(0.92 * 320 / 3.8, 39) GB/s / 2, x 0.7 (treeCorrectionFactor LL at 16 KiB): it wins at
    16 KiB."""
    m = model("h100-sxm", 16)
    assert m.setup is not None and m.setup.nodes == 2
    assert m.setup.bus_bw == pytest.approx(320e9, rel=1e-12)
    by = {(c.algorithm, c.protocol): c for c in m.choices}
    assert ("nvls", "Simple") not in by  # NVLS needs one node here
    assert by["ring", "LL"].latency_s == pytest.approx(40.0e-6, rel=1e-12)
    assert by["ring", "LL"].bandwidth == pytest.approx(39e9 * 16 / 30, rel=1e-12)
    tree_bw = 39 / 2 * 1e9
    want = 25.2e-6 + 16384 / (tree_bw * 0.7)
    assert m.chosen(16384) == ("tree", "LL")
    assert m.seconds(16384) == pytest.approx(want, rel=1e-12)
    # Simple ring across nodes: 8.4 + 28 * max(3.4, 3 * 1.0) + 2 * 14 = 131.6 us, x 1.4 once
    # the message reaches 64 B per channel and rank (the ring plateau)
    simple = by["ring", "Simple"]
    assert simple.latency_s == pytest.approx(131.6e-6, rel=1e-12)
    assert simple.seconds(2**30) == pytest.approx(1.4 * 131.6e-6 + 2**30 / (320e9 * 16 / 30))
    # a point-to-point send across the nodes leaves through one GPU's NIC: 50 x 0.8 GB/s
    assert model("h100-sxm", 16, "p2p").setup.bus_bw == pytest.approx(40e9, rel=1e-12)


def test_a_ring_across_nodes_uses_the_nics_of_a_nodes_members_together():
    """Bus bandwidth across nodes: members per node x the per-GPU NIC rate, capped by the
    intra-node link: A100 (25 GB/s NICs, 300 GB/s NVLink) 16 ranks -> 8 x 25 = 200; 12 ranks on
    2 nodes -> 6 x 25 = 150; L4 (PCIe, 1.5 GB/s per GPU of a shared VM network) -> 8 x 1.5."""
    frac = load_hardware("a100-80gb-sxm").efficiency.link_fraction.value
    assert model("a100-80gb-sxm", 16).setup.bus_bw == pytest.approx(200e9 * frac, rel=1e-12)
    assert model("a100-80gb-sxm", 12).setup.bus_bw == pytest.approx(150e9 * frac, rel=1e-12)
    l4 = load_hardware("l4")
    intra = l4.interconnect.intra_node.bandwidth_per_direction_bytes_per_s.value
    want = min(8 * 1.5e9, intra) * l4.efficiency.link_fraction.value
    assert model("l4", 16).setup.bus_bw == pytest.approx(want, rel=1e-12)


def test_point_to_point_is_one_ring_step_of_the_fastest_protocol():
    """4 MB over NVLink: Simple 8.4 + 3.4 us + 4 MB / 360 GB/s = 22.91 us beats LL128
    (15.9 us + 4 MB / 331.2 GB/s) and LL (7.2 us + 4 MB / 141 GB/s)."""
    t = float(time_op(H100, p2p(4e6)).time_s)
    assert t == pytest.approx(11.8e-6 + 4e6 / 360e9, rel=1e-12)
    assert float(roofline_floor_s(H100, p2p(4e6))) == pytest.approx(4e6 / 450e9, rel=1e-12)
    assert float(time_op(H100, p2p(64.0)).time_s) == pytest.approx(7.2e-6 + 64 / 141e9)


def test_all_gather_and_reduce_scatter_ring_move_p_minus_1_over_p():
    """Ring Simple all-gather of S gathered bytes at p=8: 8.4 + 7 * 3.4 us + (7/8) S / bus."""
    m = C.collective_model(A100, "all_gather", 8)
    by = {(c.algorithm, c.protocol): c for c in m.choices}
    assert ("tree", "LL") not in by  # tree is all-reduce only
    ring = by["ring", "Simple"]
    assert ring.seconds(2**30) == pytest.approx(
        (8.4 + 7 * 3.4) * 1e-6 + 7 / 8 * 2**30 / 240e9, rel=1e-12
    )
    rs = C.collective_model(H100, "reduce_scatter", 8)
    nvls = {(c.algorithm, c.protocol): c for c in rs.choices}["nvls", "Simple"]
    # NVLS reduce-scatter: min(0.85 * 15/16 * 7/8, 1) of the bus, x p / (p-1)
    assert nvls.bandwidth == pytest.approx(0.85 * 15 / 16 * 7 / 8 * 360e9 * 8 / 7, rel=1e-12)


def test_profiles_without_an_nccl_block_keep_the_alpha_beta_ring():
    """mi300x (RCCL over xGMI): 2 * 7 * 8 us + 2 * 7/8 * 1 MB / (448 GB/s * 0.7)."""
    m = model("mi300x", 8)
    assert m.setup is None and m.chosen(1e6) == ("ring", "alpha-beta")
    assert m.seconds(1e6) == pytest.approx(14 * 8e-6 + 1.75e6 / (448e9 * 0.7), rel=1e-12)


def test_every_nvidia_profile_declares_its_nccl_view():
    nvidia = ("h100-sxm", "h200-sxm", "b200", "a100-80gb-sxm", "a100-40gb-sxm", "h100-pcie")
    for hw_id in (*nvidia, "l4", "l40s", "h100-sxm-calibrated", "h200-sxm-calibrated"):
        nccl = load_hardware(hw_id).interconnect.nccl
        assert nccl is not None and nccl.source.strip()
        assert nccl.nvls == (
            hw_id.split("-")[0] in ("h100", "h200", "b200") and "pcie" not in hw_id
        )


def test_unknown_collective_is_refused():
    with pytest.raises(ValueError, match="unknown collective"):
        C.CollectiveModel(H100, "all_to_all", 8)
