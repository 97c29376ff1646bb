"""Collectives priced as NCCL prices them: a latency and a bandwidth per (algorithm, protocol),
time = latency + bytes / algorithm bandwidth, and the fastest enabled choice wins.

This is NCCL's own cost model (the one its tuner ranks algorithms with), transcribed from
NVIDIA/nccl at commit 1fc949c50bbd7e31fb27343def456d8d48993a90 (the ``src/tuning/`` cost model,
2026; the same formulas live in ``src/graph/tuning.cc`` of NCCL 2.20.3, commit
b6475625fbcaa2c3c0e50eed2fa1255d7514d4a2):

* ``src/tuning/cost_model.cc`` ``ncclTunerConstantsDefaults``: base latencies, per-hop
  hardware latencies (NVLink / PCI / network), the per-architecture bandwidth caps
  (llMaxBws, perChMaxRingLL128Bws, perChMaxTreeLL128Bws, perChMaxTreeBws) and
  ``treeCorrectionFactor``; ``isLL128Enabled``: LL128 only where the intra-node path is NVLink.
* ``src/tuning/ring.cc`` (ring), ``src/tuning/tree.cc`` (tree, all-reduce only),
  ``src/tuning/nvls.cc`` (NVLS: NVLink SHARP, the reduction done in the NVSwitch).
* ``src/tuning/tuning_general.cc``: steps (all-reduce 2 (p-1), all-gather / reduce-scatter
  p-1), the hardware index (NVLink if the intra-node path is NVLink, else PCI; the network
  between nodes), time = latency + bytes / (1000 bandwidth) in us with GB/s (one op).

With B the bus bandwidth (GB/s, one direction) and p ranks on n nodes:

* ring: bus B; LL min(llMaxBw, B / 2) (8-byte lines with 4 bytes of data); LL128
  min(0.92 B, channels x perChMaxRingLL128Bw) (120 of 128 bytes); Simple B. Algorithm
  bandwidth = bus x p / steps. Latency = baseLat + (steps - inter steps) hwLat(intra)
  + inter steps hwLat(net), inter steps 2 (n-1) for all-reduce, n-1 otherwise; across nodes
  the intra hop is at least NCCL's network post overhead and Simple all-reduce pays 1.4x
  latency (the ring's "plateau").
* tree (all-reduce): bus min(0.92 B, channels x perChMaxTreeBw); LL min(bus / 3.8, llMaxBw);
  LL128 min(bus x 7/9 (one node) or 120/128, channels x perChMaxTreeLL128Bw); algorithm
  bandwidth bus / 2, times treeCorrectionFactor by size. Latency = baseLat + 2 ((p/n - 1)
  hwLat(intra) + log2(n) hwLat(net)).
* NVLS (one node, > 2 GPUs, NVSwitch with SHARP; Simple only): per channel
  min(2 eff (c-1)/c, 1) B for all-reduce (eff (c-1)/c (p-1)/p for all-gather / reduce-scatter)
  with eff NCCL's nvlsEfficiency and c its NVLS channels; algorithm bandwidth x p / steps;
  latency hwLat(NVLink, NVLS).

hwsim's inputs: B = the link's per-direction rate x ``efficiency.link_fraction`` (NCCL's
topology rates an sm90 NVLink at 20.6 of its 25 GB/s, src/graph/topo.h SM90_NVLINK_BW: 0.82);
across nodes the rate is the group's NICs in a node together, capped by the intra-node link
(:func:`bus_bandwidth_bytes_per_s`: NCCL runs a channel per NIC, busBw = nChannels x bwInter);
the architecture, NVLS and channel counts from the profile's ``interconnect.nccl``. A profile
without that block is not an NCCL system (TPU ICI, RCCL, ...): it keeps the plain alpha-beta
ring (latency_s per step, formulas.md's collectives section).

Assumptions where NCCL reads the machine: an Intel x86 host (llMaxBws' multi-node row and
the network post overhead), the NVLS graph's bandwidth equal to the ring's (NCCL's search
starts both graphs at bwIntra = bwInter), balanced trees (no 0.85 split-tree penalty), the
NIC's own latency (graph latencyInter) zero, one op per launch. Left out: CollNet, NVLS-Tree
(multi-node NVLS), PAT, the symmetric-memory kernels and NCCL's channel/thread tuning.

Point-to-point (send/recv) has no entry in NCCL's cost model; hwsim prices it as one ring
step (the ring's base and per-hop latency and bus bandwidth per protocol, fastest wins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwsim.profiles.hardware import HardwareProfile, Link

NCCL_SOURCE = "NVIDIA/nccl@1fc949c50bbd7e31fb27343def456d8d48993a90 src/tuning/"

ALGORITHMS = ("tree", "ring", "nvls")
PROTOCOLS = ("LL", "LL128", "Simple")  # NCCL_PROTO_LL, NCCL_PROTO_LL128, NCCL_PROTO_SIMPLE
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "p2p")
ARCHS = ("volta", "ampere", "hopper", "blackwell")  # NCCL's compute-capability indexes

# -- NCCL's constants (src/tuning/cost_model.cc ncclTunerConstantsDefaults) -------------------
# baseLatencies [algorithm][LL, LL128, Simple], us
BASE_LATENCY_US: dict[str, tuple[float, float, float]] = {
    "tree": (6.8, 14.0, 8.4),
    "ring": (6.6, 14.0, 8.4),
    "nvls": (0.0, 0.0, 0.0),
}
# hwLatencies [NVLINK, PCI, NET][algorithm][LL, LL128, Simple], us per hop
HW_LATENCY_US: dict[str, dict[str, tuple[float, float, float]]] = {
    "nvlink": {"tree": (0.6, 1.25, 4.0), "ring": (0.6, 1.9, 3.4), "nvls": (0.0, 0.0, 25.0)},
    "pcie": {"tree": (1.0, 1.9, 4.0), "ring": (1.0, 2.5, 5.7), "nvls": (0.0, 0.0, 0.0)},
    "network": {"tree": (5.0, 8.5, 14.0), "ring": (2.7, 4.0, 14.0), "nvls": (0.0, 0.0, 18.0)},
}
# llMaxBws [compcap index (one node) or CPU vendor row (Intel 0, AMD 1)][N1, N2, N4+], GB/s
LL_MAX_BW: dict[str, tuple[float, float, float]] = {
    "volta": (39.0, 39.0, 20.4),
    "ampere": (87.7, 22.5, 19.0),
    "hopper": (141.0, 45.0, 35.0),
    "blackwell": (2 * 141.0, 2 * 45.0, 2 * 35.0),
}
LL_MAX_BW_INTEL_HOST = LL_MAX_BW["volta"]  # multi-node row 0: Intel CPUs (assumed host)
PER_CH_MAX_RING_LL128: dict[str, tuple[float, float, float]] = {
    "volta": (20.0, 20.0, 20.0),
    "ampere": (20.0, 20.0, 20.0),
    "hopper": (36.7, 36.7, 36.7),
    "blackwell": (40.0, 40.0, 40.0),
}
PER_CH_MAX_TREE_LL128: dict[str, tuple[float, float, float]] = {
    "volta": (20.0, 20.0, 20.0),
    "ampere": (20.0, 20.0, 20.0),
    "hopper": (36.7, 36.7, 29.0),
    "blackwell": (55.6, 31.67, 20.0),
}
PER_CH_MAX_TREE: dict[str, tuple[float, float, float]] = {
    "volta": (26.5, 18.5, 10.0),
    "ampere": (24.0, 23.6, 17.8),
    "hopper": (38.7, 41.4, 36.0),
    "blackwell": (70.0, 42.8, 24.0),
}
# treeCorrectionFactor [LL, LL128, Simple][log2(bytes / 64)], sizes 64 B .. 512 MiB
TREE_CORRECTION: tuple[tuple[float, ...], ...] = (
    (1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0, 1.0,
     1.0, 1.0, 1.0),
    (1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .6, .6, .6, .8, .9, .9, .9, .9,
     1.0, 1.0, 1.0),
    (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .6, .7, .8, .7, .7, .8, .9,
     .9, .9),
)  # fmt: skip
TREE_CORRECTION_SIZES = 23  # tree.cc applies it for log2(bytes >> 6) < 23
# src/tuning/nvls.cc nvlsEfficiency [compcap index]
NVLS_EFFICIENCY: dict[str, float] = {"volta": 0.0, "ampere": 0.0, "hopper": 0.85, "blackwell": 0.74}
# src/transport/nvls.cc (NCCL 2.20): NCCL_PARAM(NvlsChannels, "NVLS_NCHANNELS", 16); NVLS
# needs more than 2 GPUs (ncclNvlsInit returns without it for gpuCount <= 2)
NVLS_CHANNELS_DEFAULT = 16
NVLS_MIN_GPUS = 3
# ring.cc / tree.cc model refinements
RING_LL_EFFICIENCY = 0.5  # LL: 8-byte lines carry 4 bytes of data
RING_LL128_EFFICIENCY = 0.92  # LL128: 120 of 128 bytes (NCCL rounds to 0.92)
TREE_EFFICIENCY = 0.92
TREE_LL_DIVISOR = 3.8
TREE_LL128_ONE_NODE = 7.0 / 9.0
TREE_LL128_NODES = 120.0 / 128.0
RING_PLATEAU = 1.4  # ring.cc: Simple all-reduce across nodes, sm80+ (1.9 before)
RING_PLATEAU_VOLTA = 1.9
RING_PLATEAU_MIN_BYTES_PER_CHANNEL_RANK = 64
NET_OVERHEAD_US = 1.0  # ring.cc getNetOverhead: Intel x86 host (AMD 2.0); x3 for Simple
NET_OVERHEAD_SIMPLE_FACTOR = 3.0

PROTO_INDEX = {p: i for i, p in enumerate(PROTOCOLS)}


@dataclass(frozen=True)
class Choice:
    """One (algorithm, protocol) NCCL may run: time = latency_s + bytes / bandwidth (B/s),
    the bandwidth scaled by NCCL's tree correction for its size when ``tree``."""

    algorithm: str
    protocol: str
    latency_s: float
    bandwidth: float  # algorithm bandwidth, bytes per second
    tree: bool = False
    plateau_s: float = 0.0  # extra latency from the ring plateau ...
    plateau_from_bytes: float = math.inf  # ... for messages of at least this size

    def seconds(self, nbytes: float) -> float:
        bw = self.bandwidth
        if self.tree:
            bw *= tree_correction(self.protocol, nbytes)
        lat = self.latency_s + (self.plateau_s if nbytes >= self.plateau_from_bytes else 0.0)
        return lat + nbytes / bw

    def seconds_array(self, nbytes: np.ndarray) -> np.ndarray:
        bw = np.full(np.shape(nbytes), self.bandwidth)
        if self.tree:
            bw = bw * tree_correction_array(self.protocol, nbytes)
        lat = self.latency_s + np.where(nbytes >= self.plateau_from_bytes, self.plateau_s, 0.0)
        return lat + nbytes / bw


def _log2i(n: int) -> int:
    """NCCL's log2i: floor(log2(n)), 0 for n <= 1."""
    return max(int(n).bit_length() - 1, 0)


def tree_correction(protocol: str, nbytes: float) -> float:
    log_size = _log2i(int(nbytes) >> 6)
    if log_size < TREE_CORRECTION_SIZES:
        return TREE_CORRECTION[PROTO_INDEX[protocol]][log_size]
    return 1.0


def tree_correction_array(protocol: str, nbytes: np.ndarray) -> np.ndarray:
    table = np.array(TREE_CORRECTION[PROTO_INDEX[protocol]][:TREE_CORRECTION_SIZES] + (1.0,))
    whole = np.floor(np.asarray(nbytes, dtype=float)) / 64.0
    log_size = np.floor(np.log2(np.maximum(np.floor(whole), 1.0))).astype(int)
    return table[np.minimum(log_size, TREE_CORRECTION_SIZES)]


@dataclass(frozen=True)
class Setup:
    """What NCCL's model reads for one communicator: ranks, nodes, the bus bandwidth and
    the kinds of hop (inputs of :func:`choices`)."""

    ranks: int
    nodes: int
    bus_bw: float  # B/s per direction (the link rate x link_fraction)
    intra: str  # "nvlink" or "pcie"
    arch: str
    nvls: bool = False
    channels: float | None = None
    nvls_channels: float = NVLS_CHANNELS_DEFAULT

    @property
    def per_node(self) -> int:
        return self.ranks // self.nodes

    @property
    def size_index(self) -> int:  # ncclTuningGetConstantsIndexes index2: N1, N2, N4+
        return min(self.nodes, 3) - 1


def bus_bandwidth_bytes_per_s(
    hw: HardwareProfile, link: Link, nodes: int, members_per_node: int
) -> float:
    """Per-direction bandwidth one ring over a group carries (before ``link_fraction``).

    In one node: the link's rate. Across nodes: the group's members in a node each drive
    their own NIC (the profiles' network rate is per GPU: one NIC per GPU on HGX / DGX
    nodes, a node's share per GPU on cloud VMs), and NCCL lays one ring channel over each
    NIC, so the ring's inter-node bandwidth is members per node x the per-GPU rate (NCCL's
    nChannels x bwInter), never more than the intra-node link carries."""
    rate = link.bandwidth_per_direction_bytes_per_s.value
    intra = hw.interconnect.intra_node
    if nodes <= 1 or link is intra:
        return rate
    aggregate = rate * max(1, members_per_node)
    if intra is not None:
        aggregate = min(aggregate, intra.bandwidth_per_direction_bytes_per_s.value)
    return max(aggregate, rate)


def members_per_node(
    hw: HardwareProfile, ranks: int, nodes: int, collective: str | None = None
) -> int:
    """Members of a group of ``ranks`` spread evenly over ``nodes`` nodes, per node, whose
    NICs carry one collective's ring channels together; 1 for point-to-point (and the
    pairwise exchanges of an all-to-all), whose bytes leave through one GPU's own NIC."""
    if collective == "p2p":
        return 1
    per_node = int(hw.interconnect.devices_per_node.value)
    return min(per_node, math.ceil(ranks / max(nodes, 1)))


def setup_for(hw: HardwareProfile, ranks: int, collective: str | None = None) -> Setup | None:
    """NCCL's view of a collective over ``ranks`` devices of ``hw``; None: no NCCL block in
    the profile (the alpha-beta ring prices it) or nothing to price (one rank, no link).
    ``collective`` 'p2p': across nodes one GPU's NIC, not its node's (:func:`members_per_node`)."""
    nccl = hw.interconnect.nccl
    link = hw.link_for(ranks)
    if nccl is None or link is None or ranks <= 1:
        return None
    intra_link = hw.interconnect.intra_node
    nodes = 1
    if link is not intra_link:
        nodes = max(1, math.ceil(ranks / int(hw.interconnect.devices_per_node.value)))
    intra = _fabric(intra_link, "nvlink") if intra_link is not None else "pcie"
    if intra == "network":
        intra = "pcie"
    members = members_per_node(hw, ranks, nodes, collective)
    bus = bus_bandwidth_bytes_per_s(hw, link, nodes, members)
    bw = bus * hw.efficiency.link_fraction.value
    return Setup(
        ranks=ranks,
        nodes=nodes,
        bus_bw=bw,
        intra=intra,
        arch=nccl.arch,
        nvls=nccl.nvls,
        channels=None if nccl.channels is None else nccl.channels.value,
        nvls_channels=(
            NVLS_CHANNELS_DEFAULT if nccl.nvls_channels is None else nccl.nvls_channels.value
        ),
    )


def _fabric(link: Link, default: str) -> str:
    return link.fabric or default


def _ll128_enabled(s: Setup) -> bool:
    """isLL128Enabled: the intra-node path must be NVLink (PATH_NVB or better); the NIC path
    (PXB / PXN) is assumed RDMA-capable next to the GPU, as on HGX / DGX nodes."""
    return s.intra == "nvlink"


def choices(s: Setup, collective: str) -> list[Choice]:
    """Every (algorithm, protocol) NCCL's cost model prices for ``collective`` on ``s``."""
    if collective not in COLLECTIVES:
        raise ValueError(f"unknown collective {collective!r}; known: {', '.join(COLLECTIVES)}")
    if collective == "p2p":
        return _p2p(s)
    out = _ring(s, collective)
    if collective == "all_reduce":
        out += _tree(s)
    out += _nvls(s, collective)
    return out


def _steps(collective: str, p: int) -> int:
    return 2 * (p - 1) if collective == "all_reduce" else p - 1


def _caps(s: Setup, table: dict[str, tuple[float, float, float]]) -> float:
    """channels x a per-channel cap (GB/s); no cap where the channel count is unknown."""
    if s.channels is None:
        return math.inf
    return s.channels * table[s.arch][s.size_index]


def _ll_max(s: Setup) -> float:
    return (LL_MAX_BW[s.arch] if s.nodes == 1 else LL_MAX_BW_INTEL_HOST)[s.size_index]


def _ring_bus_bw(s: Setup, proto: str, bus: float) -> float:
    """A ring's bus bandwidth (GB/s) under ``proto``: LL half the bus up to llMaxBw (8-byte
    lines, 4 of data), LL128 0.92 of it up to the channels' caps, Simple all of it."""
    if proto == "LL":
        return min(_ll_max(s), bus * RING_LL_EFFICIENCY)
    if proto == "LL128":
        return min(bus * RING_LL128_EFFICIENCY, _caps(s, PER_CH_MAX_RING_LL128))
    return bus


def _ring(s: Setup, collective: str) -> list[Choice]:
    p, n = s.ranks, s.nodes
    steps = _steps(collective, p)
    inter_steps = 0 if n == 1 else (2 * (n - 1) if collective == "all_reduce" else n - 1)
    bus = s.bus_bw / 1e9
    out = []
    for i, proto in enumerate(PROTOCOLS):
        if proto == "LL128" and not _ll128_enabled(s):
            continue
        bw = _ring_bus_bw(s, proto, bus)
        intra_lat = HW_LATENCY_US[s.intra]["ring"][i]
        inter_lat = intra_lat if n == 1 else HW_LATENCY_US["network"]["ring"][i]
        if n > 1:
            overhead = NET_OVERHEAD_US * (NET_OVERHEAD_SIMPLE_FACTOR if proto == "Simple" else 1)
            intra_lat = max(intra_lat, overhead)
        lat = BASE_LATENCY_US["ring"][i] + (steps - inter_steps) * intra_lat
        lat += inter_steps * inter_lat
        plateau_s, plateau_from = 0.0, math.inf
        if proto == "Simple" and n > 1 and collective == "all_reduce":
            factor = RING_PLATEAU_VOLTA if s.arch == "volta" else RING_PLATEAU
            plateau_s = lat * (factor - 1.0) * 1e-6
            plateau_from = RING_PLATEAU_MIN_BYTES_PER_CHANNEL_RANK * (s.channels or 1.0) * p
        out.append(
            Choice("ring", proto, lat * 1e-6, bw * p / steps * 1e9, False, plateau_s, plateau_from)
        )
    return out


def _tree(s: Setup) -> list[Choice]:
    p, n = s.ranks, s.nodes
    out = []
    for i, proto in enumerate(PROTOCOLS):
        if proto == "LL128" and not _ll128_enabled(s):
            continue
        bw = min(s.bus_bw / 1e9 * TREE_EFFICIENCY, _caps(s, PER_CH_MAX_TREE))
        if proto == "LL":
            bw = min(bw / TREE_LL_DIVISOR, _ll_max(s))
        elif proto == "LL128":
            ratio = TREE_LL128_ONE_NODE if n == 1 else TREE_LL128_NODES
            bw = min(bw * ratio, _caps(s, PER_CH_MAX_TREE_LL128))
        intra_lat = HW_LATENCY_US[s.intra]["tree"][i]
        inter_lat = intra_lat if n == 1 else HW_LATENCY_US["network"]["tree"][i]
        lat = BASE_LATENCY_US["tree"][i] + 2 * ((p // n - 1) * intra_lat + _log2i(n) * inter_lat)
        out.append(Choice("tree", proto, lat * 1e-6, bw * 0.5 * 1e9, tree=True))
    return out


def _nvls(s: Setup, collective: str) -> list[Choice]:
    eff = NVLS_EFFICIENCY[s.arch]
    c = s.nvls_channels
    if not s.nvls or s.nodes > 1 or s.ranks < NVLS_MIN_GPUS or eff == 0.0 or c < 2:
        return []
    frac = eff * (c - 1) / c
    if collective == "all_reduce":
        frac *= 2.0
    else:
        frac *= (s.per_node - 1) / s.per_node
    bw = min(frac, 1.0) * s.bus_bw  # per channel min(intraBw, interBw), interBw = bwIntra
    lat = HW_LATENCY_US["nvlink"]["nvls"][PROTO_INDEX["Simple"]]
    p = s.ranks
    return [Choice("nvls", "Simple", lat * 1e-6, bw * p / _steps(collective, p))]


def _p2p(s: Setup) -> list[Choice]:
    """One ring step per protocol (hwsim's: NCCL's cost model has no send/recv entry)."""
    hop = s.intra if s.nodes == 1 else "network"
    bus = s.bus_bw / 1e9
    out = []
    for i, proto in enumerate(PROTOCOLS):
        if proto == "LL128" and not _ll128_enabled(s):
            continue
        bw = _ring_bus_bw(s, proto, bus)
        lat = BASE_LATENCY_US["ring"][i] + HW_LATENCY_US[hop]["ring"][i]
        out.append(Choice("p2p", proto, lat * 1e-6, bw * 1e9))
    return out


# -- the model hwsim prices with --------------------------------------------------------------
def ideal_factor(collective: str, p: int) -> float:
    """Bytes each link carries per payload byte (ring): 2 (p-1)/p all-reduce, (p-1)/p
    all-gather / reduce-scatter (of the gathered size), 1 point-to-point."""
    if collective == "all_reduce":
        return 2 * (p - 1) / p
    if collective in ("all_gather", "reduce_scatter"):
        return (p - 1) / p
    return 1.0


class CollectiveModel:
    """Seconds of one collective over ``ranks`` of ``hw`` as a function of its bytes:
    NCCL's fastest choice (:func:`choices`) where the profile is an NCCL system, the
    alpha-beta ring otherwise, 0 with one rank or no link."""

    def __init__(self, hw: HardwareProfile, collective: str, ranks: int):
        if collective not in COLLECTIVES:
            raise ValueError(f"unknown collective {collective!r}; known: {', '.join(COLLECTIVES)}")
        self.collective, self.ranks = collective, ranks
        self.setup = setup_for(hw, ranks, collective)
        self.choices: list[Choice] = [] if self.setup is None else choices(self.setup, collective)
        link = hw.link_for(ranks)
        self.free = link is None or ranks <= 1
        self.full_bw = 0.0
        if link is not None:
            per_node = int(hw.interconnect.devices_per_node.value)
            nodes = 1 if link is hw.interconnect.intra_node else math.ceil(ranks / per_node)
            members = members_per_node(hw, ranks, nodes, collective)
            self.full_bw = bus_bandwidth_bytes_per_s(hw, link, nodes, members)
        self.factor = ideal_factor(collective, ranks) if ranks > 1 else 0.0
        # the alpha-beta ring (no NCCL block): steps x latency + factor x bytes / bw
        self.alpha = self.beta = 0.0
        if not self.free and self.setup is None and link is not None:
            steps = {"all_reduce": 2 * (ranks - 1), "p2p": 1}.get(collective, ranks - 1)
            self.alpha = steps * link.latency_s.value
            self.beta = self.factor / (self.full_bw * hw.efficiency.link_fraction.value)

    def seconds(self, nbytes: float) -> float:
        """Scalar seconds (pure Python: the compiled step model's per-iteration path)."""
        if self.free:
            return 0.0
        if not self.choices:
            return self.alpha + self.beta * nbytes
        best = math.inf
        for c in self.choices:
            t = c.seconds(nbytes)
            if t < best:
                best = t
        return best

    def seconds_array(self, nbytes) -> np.ndarray:
        size = np.asarray(nbytes, dtype=float)
        if self.free:
            return np.zeros_like(size)
        if size.ndim == 0 and not math.isnan(size):  # one size: the same sums in Python floats
            return np.float64(self.seconds(float(size)))
        if not self.choices:
            return self.alpha + self.beta * size
        out = self.choices[0].seconds_array(size)
        for c in self.choices[1:]:
            out = np.minimum(out, c.seconds_array(size))
        return out

    def chosen(self, nbytes: float) -> tuple[str, str]:
        """(algorithm, protocol) NCCL's model picks for ``nbytes`` (("ring", "alpha-beta")
        without an NCCL block; ("none", "none") when free)."""
        if self.free:
            return ("none", "none")
        if not self.choices:
            return ("ring", "alpha-beta")
        best = min(self.choices, key=lambda c: c.seconds(nbytes))
        return best.algorithm, best.protocol

    def ideal_seconds(self, nbytes) -> np.ndarray:
        """The speed of light: the ring's bytes per link at the full link rate, no latency."""
        size = np.asarray(nbytes, dtype=float)
        if self.free:
            return np.zeros_like(size)
        return self.factor * size / self.full_bw


_MODELS: dict[tuple[int, str, int], tuple[HardwareProfile, CollectiveModel]] = {}


def collective_model(hw: HardwareProfile, collective: str, ranks: int) -> CollectiveModel:
    """The (memoised) model of one collective kind over ``ranks`` devices of ``hw``."""
    key = (id(hw), collective, ranks)
    hit = _MODELS.get(key)
    if hit is not None and hit[0] is hw:
        return hit[1]
    model = CollectiveModel(hw, collective, ranks)
    if len(_MODELS) > 4096:
        _MODELS.clear()
    _MODELS[key] = (hw, model)
    return model


def collective_time_s(hw: HardwareProfile, collective: str, ranks: int, nbytes) -> np.ndarray:
    """Seconds of one ``collective`` of ``nbytes`` (array-like) over ``ranks`` of ``hw``."""
    return collective_model(hw, collective, ranks).seconds_array(nbytes)
