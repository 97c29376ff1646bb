"""The traffic model: who arrives when, with how many prompt and output tokens.

A :class:`TrafficSpec` is one YAML-able document; :func:`sample_requests` turns it into a
:class:`Requests` struct of arrays, seeded and deterministic.

Rates are *request* rates. With multi-turn sessions every turn is a request; sessions start
as a Poisson process at rate / mean(turns) so that requests still arrive at ``rate``.
Turn k of a session arrives think_time after turn k-1 arrived (open loop: the think time is
understood to include reading the answer; the simulator does not wait for turn k-1 to finish).
Each turn's prompt re-sends the history: prompt_k = sum_{j<k}(new_prompt_j + output_j) +
new_prompt_k. With ``prefix_caching`` that history is reported as ``cached_prefix_tokens``
(the serving engine may skip its prefill if its own prefix_caching is on; it still occupies
KV blocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

from hwsim.errors import HwsimError
from hwsim.serving.arrivals import (
    ConstantRate,
    PoissonArrivals,
    TraceArrivals,
    time_change,
)
from hwsim.serving.distributions import IntDistribution, shorthand
from hwsim.serving.fields import SPEC_CONFIG, Seconds


class SessionSpec(BaseModel):
    model_config = SPEC_CONFIG
    turns: IntDistribution
    think_time_s: Seconds = Field(ge=0)
    think_time_distribution: Literal["exponential", "fixed"] = "exponential"
    prefix_caching: bool = False

    @field_validator("turns", mode="before")
    @classmethod
    def _shorthand(cls, raw: Any) -> Any:
        return shorthand(raw)


class TrafficSpec(BaseModel):
    model_config = SPEC_CONFIG
    arrivals: Annotated[PoissonArrivals | TraceArrivals, Field(discriminator="kind")]
    prompt_tokens: IntDistribution | None = None
    output_tokens: IntDistribution | None = None
    sessions: SessionSpec | None = None

    @field_validator("prompt_tokens", "output_tokens", mode="before")
    @classmethod
    def _shorthand(cls, raw: Any) -> Any:
        return shorthand(raw)

    @model_validator(mode="after")
    def _consistent(self) -> TrafficSpec:
        if isinstance(self.arrivals, PoissonArrivals):
            if self.prompt_tokens is None or self.output_tokens is None:
                raise ValueError("poisson arrivals need prompt_tokens and output_tokens")
        elif self.prompt_tokens or self.output_tokens or self.sessions:
            raise ValueError(
                "a trace gives whole requests: drop prompt_tokens, output_tokens and sessions"
            )
        return self

    @property
    def peak_rate_per_s(self) -> float:
        """Requests/s to size for: the rate's peak (for a trace: its mean rate)."""
        if isinstance(self.arrivals, TraceArrivals):
            return self.arrivals.mean_rate_per_s
        return self.arrivals.rate.peak_rate_per_s

    def at_rate(self, rate_per_s: float) -> TrafficSpec:
        """The same traffic at a constant request rate (for load sweeps in a planner)."""
        if isinstance(self.arrivals, TraceArrivals):
            raise HwsimError("a trace has its own arrival times; it cannot be re-rated")
        arrivals = PoissonArrivals(rate=ConstantRate(rate_per_s=float(rate_per_s)))
        return self.model_copy(update={"arrivals": arrivals})


def _readonly(a: np.ndarray, dtype: type) -> np.ndarray:
    out: np.ndarray = np.array(a, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class Requests:
    """Struct of arrays, one entry per request, sorted by arrival (ties keep their order).

    ``prompt_tokens`` includes any re-sent history; ``cached_prefix_tokens`` (< prompt_tokens)
    is the part of it an engine with prefix caching need not prefill again.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    session_id: np.ndarray
    cached_prefix_tokens: np.ndarray

    def __post_init__(self) -> None:
        n = len(np.atleast_1d(self.arrival_s))
        for name, dtype in (
            ("arrival_s", np.float64),
            ("prompt_tokens", np.int64),
            ("output_tokens", np.int64),
            ("session_id", np.int64),
            ("cached_prefix_tokens", np.int64),
        ):
            value = _readonly(np.atleast_1d(getattr(self, name)), dtype)
            if value.shape != (n,):
                raise HwsimError(f"Requests.{name}: shape {value.shape}, expected ({n},)")
            object.__setattr__(self, name, value)
        t = self.arrival_s
        if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) < 0):
            raise HwsimError("Requests.arrival_s must be finite, >= 0 and non-decreasing")
        if np.any(self.prompt_tokens < 1) or np.any(self.output_tokens < 1):
            raise HwsimError("Requests: prompt_tokens and output_tokens must be >= 1")
        cached = self.cached_prefix_tokens
        if np.any(cached < 0) or np.any(cached >= self.prompt_tokens):
            raise HwsimError("Requests.cached_prefix_tokens must be in [0, prompt_tokens)")

    @classmethod
    def from_arrays(
        cls,
        arrival_s: np.ndarray,
        prompt_tokens: np.ndarray,
        output_tokens: np.ndarray,
        session_id: np.ndarray | None = None,
        cached_prefix_tokens: np.ndarray | None = None,
    ) -> Requests:
        """Build from arrays; defaults: one session per request, nothing cached."""
        n = len(np.atleast_1d(arrival_s))
        return cls(
            arrival_s=arrival_s,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            session_id=np.arange(n) if session_id is None else session_id,
            cached_prefix_tokens=np.zeros(n)
            if cached_prefix_tokens is None
            else cached_prefix_tokens,
        )

    def __len__(self) -> int:
        return len(self.arrival_s)


def sample_requests(spec: TrafficSpec, n_requests: int | None = None, seed: int = 0) -> Requests:
    """Draw ``n_requests`` requests (for a trace: its first n rows, or all when None)."""
    if isinstance(spec.arrivals, TraceArrivals):
        cols = spec.arrivals.columns
        total = len(cols["arrival_s"])
        n = total if n_requests is None else n_requests
        if not 1 <= n <= total:
            raise HwsimError(f"{spec.arrivals.file}: asked for {n} requests, trace has {total}")
        return Requests.from_arrays(
            *(cols[k][:n] for k in ("arrival_s", "prompt_tokens", "output_tokens"))
        )
    if n_requests is None or n_requests < 1:
        raise HwsimError(f"n_requests must be >= 1 for Poisson arrivals, got {n_requests}")
    rng = np.random.default_rng(seed)
    if spec.sessions is None:
        rate = _poisson(spec).rate
        arrival = time_change(rate, np.cumsum(rng.exponential(1.0, n_requests)))
        prompt_dist, output_dist = _lengths(spec)
        prompt = prompt_dist.sample(n_requests, rng)
        output = output_dist.sample(n_requests, rng)
        return Requests.from_arrays(arrival, prompt, output)
    return _sample_sessions(spec, n_requests, rng)


def _poisson(spec: TrafficSpec) -> PoissonArrivals:
    """The Poisson arrivals of a spec that is not a trace (the spec's validator made sure)."""
    if not isinstance(spec.arrivals, PoissonArrivals):
        raise HwsimError("a trace has no arrival rate to sample from")
    return spec.arrivals


def _lengths(spec: TrafficSpec) -> tuple[IntDistribution, IntDistribution]:
    """Prompt and output length distributions (required without a trace)."""
    if spec.prompt_tokens is None or spec.output_tokens is None:
        raise HwsimError("traffic needs prompt_tokens and output_tokens distributions")
    return spec.prompt_tokens, spec.output_tokens


def _sessions(spec: TrafficSpec) -> SessionSpec:
    if spec.sessions is None:
        raise HwsimError("traffic has no sessions section")
    return spec.sessions


def _segment_cumsum(x: np.ndarray, first: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum restarting at each segment (segments start at ``first``)."""
    c = np.cumsum(x)
    return c - np.repeat(c[first] - x[first], lengths)


def _sample_sessions(spec: TrafficSpec, n: int, rng: np.random.Generator) -> Requests:
    """Draw sessions chunk by chunk until the first ``n`` turns by arrival are all known: once
    n turns arrive before the latest session start, no later session can change them."""
    s = _sessions(spec)
    chunk = max(16, math.ceil(1.25 * n / s.turns.mean))
    parts: list[dict[str, np.ndarray]] = []
    unit_clock, n_sessions = 0.0, 0
    while True:
        unit_points = unit_clock + np.cumsum(rng.exponential(1.0, chunk))
        unit_clock = float(unit_points[-1])
        starts = time_change(_poisson(spec).rate, unit_points, scale=1.0 / s.turns.mean)
        parts.append(_session_turns(spec, starts, n_sessions, rng))
        n_sessions += chunk
        arrival = np.concatenate([p["arrival_s"] for p in parts])
        if np.count_nonzero(arrival <= starts[-1]) >= n:
            break
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(cols["arrival_s"], kind="stable")[:n]
    return Requests(**{k: v[order] for k, v in cols.items()})


def _session_turns(
    spec: TrafficSpec, starts: np.ndarray, first_id: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    s = _sessions(spec)
    m = len(starts)
    turns = s.turns.sample(m, rng)
    k = int(turns.sum())
    first = np.concatenate(([0], np.cumsum(turns)[:-1]))
    prompt_dist, output_dist = _lengths(spec)
    new_prompt = prompt_dist.sample(k, rng)
    output = output_dist.sample(k, rng)
    if s.think_time_distribution == "exponential":
        think = rng.exponential(s.think_time_s, k) if s.think_time_s > 0 else np.zeros(k)
    else:
        think = np.full(k, s.think_time_s)
    think[first] = 0.0
    history = _segment_cumsum(new_prompt + output, first, turns) - (new_prompt + output)
    return {
        "arrival_s": np.repeat(starts, turns) + _segment_cumsum(think, first, turns),
        "prompt_tokens": history + new_prompt,
        "output_tokens": output,
        "session_id": np.repeat(np.arange(first_id, first_id + m), turns),
        "cached_prefix_tokens": history if s.prefix_caching else np.zeros(k, dtype=np.int64),
    }
