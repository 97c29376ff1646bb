"""Collectives of one parallel group, priced with NCCL's cost model on the links it spans.

Rank order is Megatron's: tensor-parallel ranks adjacent, then data-parallel, then pipeline
(outermost). A group of ``ranks`` members ``stride`` ranks apart spans
ceil(ranks / max(1, devices_per_node // stride)) nodes: the TP group (stride 1) stays in a
node up to devices_per_node; a DP group of stride tp crosses nodes as soon as tp x dp exceeds
a node; pipeline neighbours (stride tp x dp) sit in different nodes once tp x dp fills one.
Where the group spans nodes the network link prices it, at the NICs of the group's members in
a node together (:func:`hwsim.perf.collectives.bus_bandwidth_bytes_per_s`), else the
intra-node link; :mod:`hwsim.perf.collectives` gives the latency and bandwidth per
algorithm and protocol (the fastest wins), or the alpha-beta ring on non-NCCL profiles.
"""

from __future__ import annotations

import math

from hwsim.perf.collectives import (
    NVLS_CHANNELS_DEFAULT,
    Setup,
    bus_bandwidth_bytes_per_s,
    choices,
    ideal_factor,
    members_per_node,
)
from hwsim.profiles.hardware import HardwareProfile


def group_nodes(hw: HardwareProfile, ranks: int, stride: int) -> int:
    per_node = int(hw.interconnect.devices_per_node.value)
    members = max(1, per_node // max(stride, 1))
    return max(1, math.ceil(ranks / members))


def group_collective_s(
    hw: HardwareProfile, collective: str, ranks: int, nodes: int, nbytes: float
) -> float:
    """Seconds of one ``collective`` of ``nbytes`` (the gathered size for all-gather /
    reduce-scatter, the payload for all-reduce / p2p) over ``ranks`` spanning ``nodes``."""
    if ranks <= 1 or nbytes <= 0:
        return 0.0
    ic = hw.interconnect
    link = ic.intra_node if nodes == 1 and ic.intra_node is not None else ic.inter_node
    link = link or ic.intra_node
    if link is None:
        return 0.0
    members = members_per_node(hw, ranks, nodes, collective)
    bw = bus_bandwidth_bytes_per_s(hw, link, nodes, members) * hw.efficiency.link_fraction.value
    nccl = ic.nccl
    if nccl is None:  # the alpha-beta ring (formulas.md's collectives section)
        steps = {"all_reduce": 2 * (ranks - 1), "p2p": 1}.get(collective, ranks - 1)
        return steps * link.latency_s.value + ideal_factor(collective, ranks) * nbytes / bw
    intra = (ic.intra_node.fabric if ic.intra_node is not None else None) or "nvlink"
    setup = Setup(
        ranks=ranks,
        nodes=min(nodes, ranks),
        bus_bw=bw,
        intra="pcie" if intra == "network" else intra,
        arch=nccl.arch,
        nvls=nccl.nvls,
        channels=None if nccl.channels is None else nccl.channels.value,
        nvls_channels=(
            NVLS_CHANNELS_DEFAULT if nccl.nvls_channels is None else nccl.nvls_channels.value
        ),
    )
    return min(c.seconds(nbytes) for c in choices(setup, collective))
