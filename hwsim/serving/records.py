"""What a simulation returns: per-request records, a per-iteration trace and when each output
token came out (structs of read-only numpy arrays), bundled in :class:`SimulationResult`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from hwsim.serving.overload import Overload
from hwsim.serving.scheduler import COMPLETED, SchedulerConfig


def _freeze(obj: Any) -> None:
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            value.setflags(write=False)


@dataclass(frozen=True)
class RequestRecords:
    """One entry per request, in the order of the input :class:`Requests`.

    Times are absolute simulation times (s); NaN where an event never happened (rejected
    requests). ``status`` is "completed", "rejected_kv_capacity" or "rejected_token_budget".
    """

    arrival_s: np.ndarray
    admitted_s: np.ndarray  # first admission into the running batch
    first_token_s: np.ndarray
    finish_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    cached_prefix_tokens: np.ndarray  # prefill skipped thanks to prefix caching (0 if off)
    preemptions: np.ndarray
    status: np.ndarray

    def __post_init__(self) -> None:
        _freeze(self)

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def completed(self) -> np.ndarray:
        return self.status == COMPLETED

    @property
    def ttft_s(self) -> np.ndarray:
        """Time to first token: first_token - arrival."""
        return self.first_token_s - self.arrival_s

    @property
    def e2e_s(self) -> np.ndarray:
        """End-to-end latency: finish - arrival."""
        return self.finish_s - self.arrival_s

    @property
    def queue_delay_s(self) -> np.ndarray:
        """Waiting before first admission: admitted - arrival."""
        return self.admitted_s - self.arrival_s

    @property
    def tpot_s(self) -> np.ndarray:
        """Time per output token after the first: (finish - first_token) / (output - 1).
        NaN for 1-token outputs (undefined)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            tpot = (self.finish_s - self.first_token_s) / (self.output_tokens - 1)
        return np.where(self.output_tokens > 1, tpot, np.nan)


@dataclass(frozen=True)
class IterationTrace:
    """One entry per engine iteration. KV blocks are counted after this iteration's allocation
    (i.e. what the iteration runs with)."""

    start_s: np.ndarray
    duration_s: np.ndarray
    kv_blocks_used: np.ndarray
    num_seqs: np.ndarray  # sequences scheduled (decodes + prefill chunks)
    num_tokens: np.ndarray  # new tokens processed
    num_waiting: np.ndarray  # waiting queue length when the iteration was scheduled
    kv_blocks_total: int

    def __post_init__(self) -> None:
        _freeze(self)

    def __len__(self) -> int:
        return len(self.start_s)


@dataclass(frozen=True)
class TokenTimeline:
    """When every output token was emitted, without one entry per token.

    Every decoding sequence decodes in every decode step (:mod:`hwsim.serving.simulator`), so a
    request's tokens come in *stints*: a prefill (or, after a preemption, the re-prefill) emits
    one token at its end, ``start_s``; then the sequence decodes ``decodes`` steps in a row,
    steps ``first_step + 1 .. first_step + decodes``, emitting one token at the end of each.
    Decode step k (1-based) ended at ``decode_step_end_s[k - 1]``. The stints of each completed
    request are listed (with those cut short by a preemption); a request's token times are its
    stints' in order of ``start_s``.
    """

    decode_step_end_s: np.ndarray
    stint_request: np.ndarray
    stint_start_s: np.ndarray
    stint_first_step: np.ndarray
    stint_decodes: np.ndarray

    def __post_init__(self) -> None:
        _freeze(self)

    def token_times_s(self, request: int) -> np.ndarray:
        """Emission times (s) of one request's output tokens, in order (for tests and plots)."""
        mine = np.flatnonzero(self.stint_request == request)
        mine = mine[np.argsort(self.stint_start_s[mine], kind="stable")]
        parts: list[np.ndarray] = []
        for i in mine:
            e, n = int(self.stint_first_step[i]), int(self.stint_decodes[i])
            parts.append(self.stint_start_s[i : i + 1])
            parts.append(self.decode_step_end_s[e : e + n])
        return np.concatenate(parts) if parts else np.zeros(0)


@dataclass(frozen=True)
class SimulationResult:
    records: RequestRecords
    trace: IterationTrace
    config: SchedulerConfig
    overload: Overload | None = None  # set when the run stopped early (arrivals outran service)
    timeline: TokenTimeline | None = None  # token emission times (inter-token latencies)
    clients: int | None = None  # a closed loop's number of clients; None: open loop
