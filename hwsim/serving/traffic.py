"""The traffic model: who arrives when, with how many prompt and output tokens.

A :class:`TrafficSpec` is one YAML-able document; :func:`sample_requests` turns it into a
:class:`Requests` struct of arrays, seeded and deterministic.

Rates are *request* rates. With multi-turn sessions every turn is a request; sessions start
as a Poisson process at rate / mean(turns) so that requests still arrive at ``rate``.
Turn k of a session arrives think_time after turn k-1 arrived (open loop: the think time is
understood to include reading the answer; the simulator does not wait for turn k-1 to finish).
Under ``arrivals: {kind: concurrency}`` (a closed loop of clients, see
:class:`~hwsim.serving.arrivals.ConcurrencyArrivals`) arrival times are not known in advance:
:func:`sample_requests` returns :class:`ClosedLoopRequests` (lengths and think times) and the
simulator sends turn k think_time after turn k-1 *finished*.
Each turn's prompt re-sends the history: prompt_k = sum_{j<k}(new_prompt_j + output_j) +
new_prompt_k. With ``prefix_caching`` that history is reported as ``cached_prefix_tokens``
(the serving engine may skip its prefill if its own prefix_caching is on; it still occupies
KV blocks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

from hwsim.errors import HwsimError
from hwsim.serving.arrivals import (
    ConcurrencyArrivals,
    ConstantRate,
    PoissonArrivals,
    TraceArrivals,
    time_change,
)
from hwsim.serving.distributions import Fixed, IntDistribution, shorthand
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
    arrivals: Annotated[
        PoissonArrivals | TraceArrivals | ConcurrencyArrivals, Field(discriminator="kind")
    ]
    prompt_tokens: IntDistribution | None = None
    output_tokens: IntDistribution | None = None
    sessions: SessionSpec | None = None
    system_prompt_tokens: int = Field(
        0,
        ge=0,
        description="tokens of a system prompt every request starts with (the same for all: "
        "after the first request an engine with prefix caching need not prefill it again)",
    )

    @field_validator("prompt_tokens", "output_tokens", mode="before")
    @classmethod
    def _shorthand(cls, raw: Any) -> Any:
        return shorthand(raw)

    @field_validator("prompt_tokens")
    @classmethod
    def _prompts_have_tokens(cls, dist: Any) -> Any:
        if isinstance(dist, Fixed) and dist.value < 1:
            raise ValueError("a prompt has at least 1 token (output_tokens may be 0)")
        return dist

    @model_validator(mode="after")
    def _consistent(self) -> TrafficSpec:
        if not isinstance(self.arrivals, TraceArrivals):
            if self.prompt_tokens is None or self.output_tokens is None:
                raise ValueError(
                    f"{self.arrivals.kind} arrivals need prompt_tokens and output_tokens"
                )
        elif self.prompt_tokens or self.output_tokens or self.sessions:
            raise ValueError(
                "a trace gives whole requests: drop prompt_tokens, output_tokens and sessions"
            )
        elif self.system_prompt_tokens:
            raise ValueError(
                "a trace gives whole requests: put the system prompt in its prompt_tokens and "
                "drop system_prompt_tokens"
            )
        return self

    @property
    def peak_rate_per_s(self) -> float:
        """Requests/s to size for: the rate's peak (for a trace: its mean rate). A closed loop
        has none (its rate is what the server sustains): HwsimError."""
        if isinstance(self.arrivals, TraceArrivals):
            return self.arrivals.mean_rate_per_s
        if isinstance(self.arrivals, ConcurrencyArrivals):
            raise HwsimError(
                f"traffic.arrivals: kind 'concurrency' ({self.arrivals.clients} clients, a closed "
                "loop) has no arrival rate to size replicas for; simulate it with "
                "hwsim.simulate(scenario), or plan capacity with arrivals of kind 'poisson' "
                "or 'trace'"
            )
        return self.arrivals.rate.peak_rate_per_s

    @property
    def is_closed_loop(self) -> bool:
        """Arrival times depend on when earlier requests finish (kind 'concurrency')."""
        return isinstance(self.arrivals, ConcurrencyArrivals)

    @property
    def requests_per_run(self) -> int | None:
        """The request count the spec itself gives (a closed loop's ``requests``), else None."""
        return self.arrivals.requests if isinstance(self.arrivals, ConcurrencyArrivals) else None

    def at_rate(self, rate_per_s: float) -> TrafficSpec:
        """The same traffic at a constant request rate (for load sweeps in a planner); a closed
        loop becomes open-loop Poisson arrivals with the same lengths and sessions."""
        if isinstance(self.arrivals, TraceArrivals):
            raise HwsimError("a trace has its own arrival times; it cannot be re-rated")
        arrivals = PoissonArrivals(rate=ConstantRate(rate_per_s=float(rate_per_s)))
        return self.model_copy(update={"arrivals": arrivals})

    def per_replica(self, replicas: int) -> TrafficSpec:
        """What one of ``replicas`` data-parallel replicas sees: open loop, the peak rate /
        replicas (:meth:`at_rate`); closed loop, ceil(clients / replicas) clients sending
        ceil(requests / replicas) requests (the busiest replica under round-robin)."""
        if not isinstance(self.arrivals, ConcurrencyArrivals):
            return self.at_rate(self.peak_rate_per_s / replicas)
        a = self.arrivals
        share = {"clients": -(-a.clients // replicas)}
        if a.requests is not None:
            share["requests"] = -(-a.requests // replicas)
        return self.model_copy(update={"arrivals": a.model_copy(update=share)})


def _readonly(a: np.ndarray, dtype: type) -> np.ndarray:
    out: np.ndarray = np.array(a, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


_LENGTH_COLUMNS = (
    ("prompt_tokens", np.int64),
    ("output_tokens", np.int64),
    ("session_id", np.int64),
    ("cached_prefix_tokens", np.int64),
)


def _freeze_columns(obj: Any, label: str, columns: tuple[tuple[str, type], ...]) -> None:
    """Replace each column of a frozen dataclass by a read-only 1-d copy; all the same length."""
    n = len(np.atleast_1d(getattr(obj, columns[0][0])))
    for name, dtype in columns:
        value = _readonly(np.atleast_1d(getattr(obj, name)), dtype)
        if value.shape != (n,):
            raise HwsimError(f"{label}.{name}: shape {value.shape}, expected ({n},)")
        object.__setattr__(obj, name, value)


def _check_lengths(obj: Any, label: str) -> None:
    if np.any(obj.prompt_tokens < 1) or np.any(obj.output_tokens < 0):
        raise HwsimError(
            f"{label}: prompt_tokens must be >= 1 and output_tokens >= 0 (0: prefill only)"
        )
    cached = obj.cached_prefix_tokens
    if np.any(cached < 0) or np.any(cached >= obj.prompt_tokens):
        raise HwsimError(f"{label}.cached_prefix_tokens must be in [0, prompt_tokens)")


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
        _freeze_columns(self, "Requests", (("arrival_s", np.float64), *_LENGTH_COLUMNS))
        t = self.arrival_s
        if not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) < 0):
            raise HwsimError("Requests.arrival_s must be finite, >= 0 and non-decreasing")
        _check_lengths(self, "Requests")

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
            **_session_defaults(n, session_id, cached_prefix_tokens),
        )

    def __len__(self) -> int:
        return len(self.arrival_s)


@dataclass(frozen=True)
class ClosedLoopRequests:
    """Requests of a closed loop (:class:`~hwsim.serving.arrivals.ConcurrencyArrivals`): struct
    of arrays in hand-out order, each session's turns consecutive (same ``session_id``).

    Send times are decided while the simulator runs: at t = 0 the first ``clients`` sessions
    send their first turn; when request r finishes, its client sends ``think_s[r + 1]`` later
    either r + 1 (when it continues r's session) or the first turn of the next session not yet
    handed out. ``think_s`` of the first ``clients`` first turns is not used.
    """

    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    session_id: np.ndarray
    cached_prefix_tokens: np.ndarray
    think_s: np.ndarray
    clients: int

    def __post_init__(self) -> None:
        _freeze_columns(self, "ClosedLoopRequests", (*_LENGTH_COLUMNS, ("think_s", np.float64)))
        _check_lengths(self, "ClosedLoopRequests")
        if not np.all(np.isfinite(self.think_s)) or np.any(self.think_s < 0):
            raise HwsimError("ClosedLoopRequests.think_s must be finite and >= 0")
        if self.clients < 1:
            raise HwsimError(f"ClosedLoopRequests.clients must be >= 1, got {self.clients}")

    @classmethod
    def from_arrays(
        cls,
        prompt_tokens: np.ndarray,
        output_tokens: np.ndarray,
        clients: int,
        think_s: float | np.ndarray = 0.0,
        session_id: np.ndarray | None = None,
        cached_prefix_tokens: np.ndarray | None = None,
    ) -> ClosedLoopRequests:
        """Build from arrays; defaults: one session per request, nothing cached."""
        n = len(np.atleast_1d(prompt_tokens))
        return cls(
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            **_session_defaults(n, session_id, cached_prefix_tokens),
            think_s=np.broadcast_to(np.asarray(think_s, dtype=np.float64), (n,)),
            clients=int(clients),
        )

    def __len__(self) -> int:
        return len(self.prompt_tokens)


def _session_defaults(n: int, session_id, cached_prefix_tokens) -> dict[str, np.ndarray]:
    """from_arrays' defaults for n requests: one session per request, nothing cached."""
    return {
        "session_id": np.arange(n) if session_id is None else session_id,
        "cached_prefix_tokens": np.zeros(n)
        if cached_prefix_tokens is None
        else cached_prefix_tokens,
    }


def sample_requests(
    spec: TrafficSpec, n_requests: int | None = None, seed: int = 0
) -> Requests | ClosedLoopRequests:
    """Draw ``n_requests`` requests (for a trace: its first n rows, or all when None; for a
    closed loop: the spec's ``requests`` when None). A closed loop gives
    :class:`ClosedLoopRequests` (no arrival times: the simulator decides them)."""
    if isinstance(spec.arrivals, ConcurrencyArrivals):
        closed = _sample_closed_loop(spec, spec.arrivals, n_requests, seed)
        return _with_system_prompt(closed, spec.system_prompt_tokens)
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
        plain = Requests.from_arrays(arrival, prompt, output)
        return _with_system_prompt(plain, spec.system_prompt_tokens)
    return _with_system_prompt(_sample_sessions(spec, n_requests, rng), spec.system_prompt_tokens)


def _with_system_prompt(req, tokens: int):
    """``req`` with a shared ``tokens``-token system prompt before every prompt: prompts grow
    by it, and every request after the first (by arrival, or hand-out order in a closed loop)
    reports it as a cached prefix, which an engine with prefix caching does not prefill
    again (each request still holds its own KV blocks for it: no block sharing is modelled)."""
    if not tokens:
        return req
    cached = np.asarray(req.cached_prefix_tokens, dtype=np.int64) + tokens
    cached[0] -= tokens  # the first request computes the system prompt
    return replace(
        req,
        prompt_tokens=np.asarray(req.prompt_tokens, dtype=np.int64) + tokens,
        cached_prefix_tokens=cached,
    )


def reusable_prefix_fraction(req) -> float:
    """Share of the prompt tokens an engine with prefix caching need not prefill: the cached
    prefixes (multi-turn history, a shared system prompt) over all prompt tokens."""
    total = float(np.sum(req.prompt_tokens, dtype=np.float64))
    return float(np.sum(req.cached_prefix_tokens, dtype=np.float64)) / total if total else 0.0


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
    """Columns of the turns of sessions starting at ``starts`` (open loop: turn k arrives the
    think time after turn k-1 arrived)."""
    cols, turns = _session_columns(spec, len(starts), first_id, rng)
    first = np.concatenate(([0], np.cumsum(turns)[:-1]))
    think = cols.pop("think_s")
    cols["arrival_s"] = np.repeat(starts, turns) + _segment_cumsum(think, first, turns)
    return cols


def _session_columns(
    spec: TrafficSpec, m: int, first_id: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns of the turns of ``m`` sessions, with each turn's think time before it (0 for
    first turns), and the turns per session."""
    s = _sessions(spec)
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
    cols = {
        "think_s": think,
        "prompt_tokens": history + new_prompt,
        "output_tokens": output,
        "session_id": np.repeat(np.arange(first_id, first_id + m), turns),
        "cached_prefix_tokens": history if s.prefix_caching else np.zeros(k, dtype=np.int64),
    }
    return cols, turns


def _sample_closed_loop(
    spec: TrafficSpec, arrivals: ConcurrencyArrivals, n_requests: int | None, seed: int
) -> ClosedLoopRequests:
    """The first ``n`` requests in hand-out order; a session cut by ``n`` keeps its first turns.
    First turns get the client think time, later turns the session's."""
    n = arrivals.requests if n_requests is None else n_requests
    if n is None or n < 1:
        raise HwsimError(
            "a closed loop needs a request count: give traffic.arrivals.requests "
            f"(the benchmark's --num-prompts) or n_requests >= 1, got {n_requests}"
        )
    rng = np.random.default_rng(seed)
    prompt_dist, output_dist = _lengths(spec)
    if spec.sessions is None:
        cols = {
            "prompt_tokens": prompt_dist.sample(n, rng),
            "output_tokens": output_dist.sample(n, rng),
            "session_id": np.arange(n),
            "cached_prefix_tokens": np.zeros(n, dtype=np.int64),
        }
        think = arrivals.think_times_s(n, rng)
    else:
        cols = _closed_loop_sessions(spec, n, rng)
        think = cols.pop("think_s")
        sid = cols["session_id"]
        first = np.flatnonzero(np.concatenate(([True], sid[1:] != sid[:-1])))
        think[first] = arrivals.think_times_s(len(first), rng)
    return ClosedLoopRequests(**cols, think_s=think, clients=arrivals.clients)


def _closed_loop_sessions(spec: TrafficSpec, n: int, rng: np.random.Generator) -> dict:
    """Whole sessions, drawn in chunks until they hold ``n`` turns; the first ``n`` turns."""
    chunk = max(16, math.ceil(1.25 * n / _sessions(spec).turns.mean))
    parts: list[dict[str, np.ndarray]] = []
    total = 0
    while total < n:
        cols, turns = _session_columns(spec, chunk, len(parts) * chunk, rng)
        parts.append(cols)
        total += int(turns.sum())
    return {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}
