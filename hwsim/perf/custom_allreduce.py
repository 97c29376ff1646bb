"""The custom all-reduce kernels serving engines run for small tensor-parallel messages.

vLLM (and SGLang, which started from vLLM's kernels) replace NCCL for an all-reduce inside one
node when the GPUs are fully connected and the message is small: each rank reads its peers'
buffers directly (``vllm/distributed/device_communicators/custom_all_reduce.py``,
``csrc/custom_all_reduce.cuh``):

* eligible: GPUs, 2, 4, 6 or 8 ranks (``CustomAllreduce._SUPPORTED_WORLD_SIZES``) in one node, every
  pair linked directly (NVLink / NVSwitch, or AMD's xGMI mesh; "not supported on more than
  two PCIe-only GPUs"; hwsim: an intra-node link whose ``fabric`` is not ``pcie``), messages
  under ``max_size = 8192 * 1024`` bytes;
* one-shot (``cross_device_reduce_1stage``: every rank reads all p - 1 peers' inputs and
  reduces, (p - 1) S bytes in per rank) for 2 ranks, and for 4 ranks under 512 KiB or up to
  8 ranks under 256 KiB; two-shot otherwise (``cross_device_reduce_2stage``: a reduce-scatter
  and an all-gather inside the kernel, 2 (p - 1) / p S bytes per rank).

Time = latency + bytes in per rank / bandwidth, with the latencies and the bandwidth fitted to
the only published measurement of these kernels found: SGLang PR #2904
(github.com/sgl-project/sglang/pull/2904, 2025-01-15), "unit test performance in H100 (without
cuda graph)", vLLM's kernel at tp 2/4/8 and 512 B to 1 MiB (18 latencies, e.g. tp 8: 0.0101 ms
at 512 B, 0.0450 ms at 1 MiB). Least squares in log time gives one-shot 8.82 us, two-shot
16.03 us and 64.2 GB/s of peer reads per rank (median error 3.9%, every point within
13%); the bandwidth is kept
as its share of the H100's NVLink (450 GB/s per direction, 0.143), so another device scales
it by its own link. Measured without CUDA graphs (each call copies its input into the shared
buffer and is launched from the host), so under an engine's graph replay it is an upper
bound. Under vLLM's one-shot threshold the time is the faster of the two kernels: the table
measures one-shot at 8 ranks only up to 32 KiB, and the fitted one-shot would be slower than
two-shot just under 256 KiB, which is not what the threshold was chosen for; this also keeps
more bytes from ever costing less. Messages over the table's 1 MiB stay on NCCL's model
(:mod:`hwsim.perf.collectives`): the fit does not reach them, although vLLM would run its
kernel up to 8 MiB. The price of an all-reduce is the faster of this kernel and NCCL's
modelled time (:func:`hwsim.perf.roofline.time_op`): the kernel wins on the small decode
messages it exists for; where NCCL's model is faster (NVLS from a few hundred KiB at 8 ranks)
hwsim does not let the extrapolated fit make a larger message cheaper than a smaller one. The
latencies are the H100's on every device: no other device's measurement was found.
"""

from __future__ import annotations

import math

import numpy as np

from hwsim.profiles.hardware import HardwareProfile

SUPPORTED_RANKS = (2, 4, 6, 8)  # vLLM CustomAllreduce._SUPPORTED_WORLD_SIZES
MEASURED_MAX_BYTES = 1024 * 1024  # the largest message of the source's table
ONE_SHOT_LATENCY_S = 8.82e-6
TWO_SHOT_LATENCY_S = 16.03e-6
PEER_READ_LINK_FRACTION = 64.2e9 / 450e9  # fitted bandwidth over the H100's NVLink


def one_shot_below_bytes(ranks: int) -> float:
    """Messages under this run vLLM's one-shot kernel, the others two-shot (module docstring)."""
    if ranks == 2:
        return math.inf
    return (512 if ranks <= 4 else 256) * 1024


def one_shot_s(ranks: int, nbytes, bandwidth: float):
    """One-shot kernel seconds: every rank reads its p - 1 peers' inputs (floats or arrays)."""
    return ONE_SHOT_LATENCY_S + (ranks - 1) * nbytes / bandwidth


def two_shot_s(ranks: int, nbytes, bandwidth: float):
    """Two-shot kernel seconds: reduce-scatter and all-gather, 2 (p - 1) / p of the bytes."""
    return TWO_SHOT_LATENCY_S + 2.0 * (ranks - 1) / ranks * nbytes / bandwidth


def one_shot(ranks: int, nbytes) -> np.ndarray:
    """Where vLLM runs its one-shot kernel, else the two-shot one."""
    return np.asarray(nbytes) < one_shot_below_bytes(ranks)


def eligible(hw: HardwareProfile, ranks: int) -> bool:
    """Whether ``ranks`` GPUs of ``hw`` can run the custom kernel: GPUs (the kernel is CUDA /
    HIP), a supported count inside one node, an intra-node link that is not PCIe."""
    return _peer_link_bytes_per_s(hw, ranks) is not None


def _peer_link_bytes_per_s(hw: HardwareProfile, ranks: int) -> float | None:
    """The intra-node link's per-direction rate where the kernel applies, else None."""
    ic = hw.interconnect
    if hw.kind != "gpu" or ic is None or ic.intra_node is None or ranks not in SUPPORTED_RANKS:
        return None
    if ranks > ic.devices_per_node.value or ic.intra_node.fabric == "pcie":
        return None
    return float(ic.intra_node.bandwidth_per_direction_bytes_per_s.value)


class CustomAllReduce:
    """The kernel's price for ``ranks`` GPUs of ``hw``, set up once: :meth:`seconds` for one
    message in Python floats (the step model's fast path prices one per iteration),
    :func:`custom_all_reduce_s` for arrays. NaN where it does not apply."""

    def __init__(self, hw: HardwareProfile, ranks: int):
        self.ranks = ranks
        link = _peer_link_bytes_per_s(hw, ranks)
        self.applies = link is not None
        self.bandwidth = (link or 1.0) * PEER_READ_LINK_FRACTION
        self.one_shot_below = one_shot_below_bytes(ranks)

    def seconds(self, nbytes: float) -> float:
        if not self.applies or nbytes > MEASURED_MAX_BYTES:
            return math.nan
        two = two_shot_s(self.ranks, nbytes, self.bandwidth)
        if nbytes < self.one_shot_below:
            return min(one_shot_s(self.ranks, nbytes, self.bandwidth), two)
        return two


def custom_all_reduce_s(hw: HardwareProfile, ranks: int, nbytes) -> np.ndarray:
    """Seconds of the custom all-reduce of ``nbytes`` over ``ranks`` GPUs of ``hw``; NaN where
    it does not apply (ineligible, or a message past the source's measured range)."""
    size = np.asarray(nbytes, dtype=float)
    kernel = CustomAllReduce(hw, ranks)
    if not kernel.applies:
        return np.full(size.shape, np.nan)
    one = one_shot_s(ranks, size, kernel.bandwidth)
    two = two_shot_s(ranks, size, kernel.bandwidth)
    seconds = np.where(one_shot(ranks, size), np.minimum(one, two), two)
    return np.where(size <= MEASURED_MAX_BYTES, seconds, np.nan)
