"""What a simulation returns: per-request records and a per-iteration trace (structs of
read-only numpy arrays), bundled in :class:`SimulationResult`."""

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
class SimulationResult:
    records: RequestRecords
    trace: IterationTrace
    config: SchedulerConfig
    overload: Overload | None = None  # set when the run stopped early (arrivals outran service)
