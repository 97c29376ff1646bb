"""The KV cache a prefill instance hands to a decode instance (disaggregated serving).

After a prefill instance has run a prompt it sends the prompt's KV cache (and any recurrent
state) to the decode instance that will generate the answer (DistServe, Zhong et al. 2024,
arXiv 2401.09670, section 2.3; Splitwise, Patel et al. 2024, arXiv 2311.18677). This module
prices that hand-over for one request; :mod:`hwsim.planner.disaggregated` sizes the pools.

* **Bytes per request.** The cache one sequence holds at the prompt's length, summed over the
  whole model (every layer, every KV head): :func:`hwsim.inference.memory.
  cache_bytes_per_sequence_per_gpu` of the model laid out on one GPU (tp = pp = 1). For full
  attention that is ``prompt x 2 x layers x kv_heads x head_dim x bytes`` (Llama-3.1-70B in
  bf16: 2 x 80 x 8 x 128 x 2 = 327,680 bytes per token); a window caps the tokens a layer
  keeps and a state-space layer sends its fixed state.
* **Bytes per GPU.** Each GPU of the prefill instance holds its shard of that cache (its TP
  share of the KV heads, its pipeline stage's layers) and each GPU of the decode instance must
  receive its own shard, which differs when the two instances are laid out differently (prefill
  tp 2 -> decode tp 4: each sender's heads are split over two receivers). The per-GPU bytes are
  the same function on each side's own deployment; a sender that must feed more receivers than
  it holds shards for (decode KV heads replicated over more ranks) sends the receivers' total
  divided by the senders.
* **Time.** Every GPU moves its shard over its own link at once (one NVLink port or one NIC
  per GPU, as on HGX / DGX nodes), so the hand-over takes the slower side: the most loaded
  sender or receiver, priced as one point-to-point transfer by :mod:`hwsim.perf.collectives`
  (NCCL's ring-step latency and bus bandwidth per protocol, fastest wins; alpha-beta on a
  profile without an NCCL block): ``latency + bytes / (link rate x link_fraction)``. The link
  is the hardware profile's ``interconnect.intra_node`` (NVLink, xGMI) when the two instances
  sit in one node, else ``inter_node`` (the NIC); two different devices are always in
  different nodes and the slower NIC of the two sets the pace.
* **Overlap.** ``layerwise`` (the default): each layer's KV is sent as soon as the prefill
  has computed that layer, while the next layers compute (Splitwise section 4.3 and its
  Figure 11b: "at the end of each layer, we trigger an asynchronous transfer of the KV-cache
  for that layer"; its section 6.1 measures about 8 ms (A100) and 5 ms (H100) left exposed).
  With L layers on the sender, c = t_prefill / L of compute and x = latency + bytes /
  (L x bandwidth) of transfer per layer, the last layer's KV lands max(x, L x - (L - 1) c)
  after the prefill ends: only that much is exposed (one layer's transfer when the link keeps
  up). ``none`` (Splitwise's "serialized" transfer, its Figure 11a): the whole cache is sent
  in one message after the prefill, all of it exposed. The exposed part delays the decode
  instance's first step: the second token when the prefill instance returns the first one
  (DistServe section 2.3, Splitwise section 4.3), the first token when the user's stream
  comes from the decode instance.

Left out (stated): contention of several transfers for one link (each request is priced on an
idle link; at the planner's loads a transfer is a few per cent of a link's time), a KV dtype
conversion between instances (the planner pairs instances with the same KV dtype), and the
host-side bookkeeping of the KV connector.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from hwsim.errors import InfeasibleError
from hwsim.inference.deployment import Deployment
from hwsim.inference.memory import cache_bytes_per_sequence_per_gpu
from hwsim.perf.collectives import choices, collective_model, setup_for
from hwsim.profiles.hardware import HardwareProfile

__all__ = [
    "KvTransfer",
    "Overlap",
    "Placement",
    "exposed_transfer_s",
    "kv_bytes_per_request",
    "kv_transfer",
    "p2p_seconds",
    "same_node_possible",
]

Overlap = Literal["layerwise", "none"]
Placement = Literal["same_node", "cross_node"]
OVERLAPS: tuple[str, ...] = ("layerwise", "none")


@dataclass(frozen=True)
class KvTransfer:
    """The hand-over of one request's cache from a prefill to a decode instance."""

    prompt_tokens: float
    bytes_per_request: float  # the whole model's cache at the prompt's length
    send_bytes_per_gpu: float  # the most loaded prefill GPU
    receive_bytes_per_gpu: float  # the most loaded decode GPU
    placement: str  # "same_node" or "cross_node"
    link: str  # what carries it: "intra_node (nvlink)", "inter_node (network)", ...
    messages: int  # 1 (overlap none) or the sender's layers (layerwise)
    transfer_s: float  # the whole hand-over on an idle link, start to end
    exposed_s: float  # what is left after the prefill ends (the overlap's gain removed)
    overlap: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _whole_model(dep: Deployment) -> Deployment:
    return dep.with_settings(**dep.spec.unsharded_settings)


def kv_bytes_per_request(dep: Deployment, prompt_tokens) -> np.ndarray:
    """Cache bytes of one sequence at ``prompt_tokens`` over the whole model (all layers, all
    KV heads: the model on one GPU), in the deployment's KV dtype."""
    return cache_bytes_per_sequence_per_gpu(_whole_model(dep), prompt_tokens)


def same_node_possible(prefill: Deployment, decode: Deployment) -> bool:
    """A prefill and a decode replica fit in one node with a link between them: the same
    device, both replicas' GPUs within ``devices_per_node``, an intra-node link."""
    hw = prefill.hardware
    per_node = int(hw.interconnect.devices_per_node.value)
    return (
        prefill.hardware.id == decode.hardware.id
        and hw.interconnect.intra_node is not None
        and prefill.gpus_per_replica + decode.gpus_per_replica <= per_node
    )


def p2p_seconds(hw: HardwareProfile, nbytes: float, cross_node: bool) -> float:
    """One point-to-point transfer of ``nbytes`` from one GPU of ``hw`` to another, in one node
    (the intra-node link) or in two (one GPU's NIC: the profile's per-GPU network rate, not a
    node's aggregate, since every GPU of an instance moves its own shard at once). Priced by
    :mod:`hwsim.perf.collectives`: NCCL's p2p choices (ring-step latency with a network hop,
    bus bandwidth per protocol, fastest wins), or the alpha-beta step without an NCCL block."""
    if not cross_node:
        model = collective_model(hw, "p2p", 2)
        if model.free:
            raise InfeasibleError(f"{hw.id} has no intra-node link in its profile")
        return float(model.seconds(float(nbytes)))
    link = hw.interconnect.inter_node
    if link is None:
        raise InfeasibleError(
            f"{hw.id} has no inter-node link in its profile to move the KV cache over"
        )
    bw = link.bandwidth_per_direction_bytes_per_s.value * hw.efficiency.link_fraction.value
    base = setup_for(hw, 2)
    if base is None:  # not an NCCL system: one alpha-beta step
        return link.latency_s.value + float(nbytes) / bw
    two_nodes = replace(base, ranks=2, nodes=2, bus_bw=bw)
    return min(c.seconds(float(nbytes)) for c in choices(two_nodes, "p2p"))


def _link_name(hw: HardwareProfile, cross_node: bool) -> str:
    link = hw.interconnect.inter_node if cross_node else hw.interconnect.intra_node
    kind = "inter_node" if cross_node else "intra_node"
    fabric = (link.fabric if link is not None else None) or ("network" if cross_node else "nvlink")
    return f"{kind} ({fabric})"


def exposed_transfer_s(per_message_s: float, messages: int, prefill_compute_s: float) -> float:
    """What the transfer adds after the prefill ends. ``messages`` = 1: all of it (sent after
    the prefill). ``messages`` = L layers streamed as each layer finishes (module docstring):
    max(x, L x - (L - 1) c) with x the per-layer transfer and c = prefill / L per layer."""
    if messages <= 1:
        return per_message_s
    per_layer_compute = prefill_compute_s / messages
    return max(per_message_s, messages * per_message_s - (messages - 1) * per_layer_compute)


def kv_transfer(
    prefill: Deployment,
    decode: Deployment,
    prompt_tokens: float,
    *,
    placement: Placement | Literal["auto"] = "auto",
    overlap: Overlap = "layerwise",
    prefill_compute_s: float = 0.0,
) -> KvTransfer:
    """Price the hand-over of one ``prompt_tokens``-token request from ``prefill`` to
    ``decode`` (module docstring). ``placement``: ``auto`` puts the two in one node when
    :func:`same_node_possible`, else across nodes; ``same_node`` raises
    :class:`~hwsim.errors.InfeasibleError` where they cannot share one. ``prefill_compute_s``:
    the prompt's prefill time, which a ``layerwise`` transfer hides behind."""
    if overlap not in OVERLAPS:
        raise InfeasibleError(f"overlap {overlap!r}: expected one of {', '.join(OVERLAPS)}")
    if prefill.kv.name != decode.kv.name:
        raise InfeasibleError(
            f"the prefill instance's KV cache is {prefill.kv.name} and the decode instance's "
            f"{decode.kv.name}: pair instances with the same kv_dtype"
        )
    together = same_node_possible(prefill, decode)
    if placement == "same_node" and not together:
        raise InfeasibleError(
            "placement same_node: a prefill replica "
            f"({prefill.gpus_per_replica} x {prefill.hardware.id}) and a decode replica "
            f"({decode.gpus_per_replica} x {decode.hardware.id}) do not fit in one node"
        )
    cross = placement == "cross_node" or not together
    whole = float(np.ravel(kv_bytes_per_request(prefill, prompt_tokens))[0])
    held = float(np.ravel(cache_bytes_per_sequence_per_gpu(prefill, prompt_tokens))[0])
    receive = float(np.ravel(cache_bytes_per_sequence_per_gpu(decode, prompt_tokens))[0])
    send = max(held, receive * decode.gpus_per_replica / prefill.gpus_per_replica)
    messages = 1
    if overlap == "layerwise":
        messages = max(1, math.ceil(prefill.model.n_layers * prefill.stage_layer_fraction))

    def seconds(nbytes_send: float, nbytes_receive: float) -> float:
        """The slower side: the busiest sender or receiver over its own link."""
        return max(
            p2p_seconds(prefill.hardware, nbytes_send, cross),
            p2p_seconds(decode.hardware, nbytes_receive, cross),
        )

    per_message = seconds(send / messages, receive / messages)
    total = per_message * messages
    exposed = exposed_transfer_s(per_message, messages, prefill_compute_s)
    return KvTransfer(
        prompt_tokens=float(prompt_tokens),
        bytes_per_request=whole,
        send_bytes_per_gpu=send,
        receive_bytes_per_gpu=receive,
        placement="cross_node" if cross else "same_node",
        link=_link_name(prefill.hardware, cross),
        messages=messages,
        transfer_s=total,
        exposed_s=exposed,
        overlap=overlap,
    )
