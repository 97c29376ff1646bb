"""Arrival rates and arrival processes.

Open loop (arrival times fixed before the run): Poisson arrivals at a rate, or a trace. Closed
loop (:class:`ConcurrencyArrivals`): a fixed number of clients, each sending its next request
when its previous answer has finished, as serving benchmarks do.

A rate is either constant or a daily profile of 24 hourly rates. The serving simulator draws
arrivals from the (possibly time-varying) rate; a capacity planner sizes for
:attr:`peak_rate_per_s`.

The Poisson process with a piecewise-constant hourly rate is sampled exactly by a time change:
unit-rate Poisson points E_k (cumulative sums of Exp(1)) are mapped through the inverse of the
cumulative intensity Lambda(t) = integral of rate over [0, t], which is piecewise linear.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr, model_validator

from hwsim.serving.csvio import read_trace
from hwsim.serving.fields import SPEC_CONFIG, FloatTuple, Seconds

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S


class ConstantRate(BaseModel):
    model_config = SPEC_CONFIG
    kind: Literal["constant"] = "constant"
    rate_per_s: float = Field(gt=0)

    @property
    def peak_rate_per_s(self) -> float:
        return self.rate_per_s

    @property
    def mean_rate_per_s(self) -> float:
        return self.rate_per_s


class DailyRate(BaseModel):
    """A day of 24 hourly rates, repeating; hour 0 of the simulation is ``start_hour``.

    Give either ``hourly_multipliers`` (24 numbers >= 0; scaled so the largest is the peak:
    rate[h] = peak_rate_per_s * m[h] / max(m)) or ``peak_hour``, which uses a cosine day:
    m[h] = trough + (1 - trough) * (1 + cos(2 pi (h - peak_hour) / 24)) / 2.
    """

    model_config = SPEC_CONFIG
    kind: Literal["daily"] = "daily"
    peak_rate_per_s: float = Field(gt=0)
    hourly_multipliers: FloatTuple | None = None
    peak_hour: int | None = Field(default=None, ge=0, le=23)
    trough_fraction: float = Field(default=0.25, ge=0, le=1)
    start_hour: int = Field(default=0, ge=0, le=23)

    @model_validator(mode="after")
    def _one_shape(self) -> DailyRate:
        if (self.hourly_multipliers is None) == (self.peak_hour is None):
            raise ValueError("give exactly one of hourly_multipliers (24 values) or peak_hour")
        m = self.hourly_multipliers
        if m is not None:
            if len(m) != 24:
                raise ValueError(f"hourly_multipliers needs 24 values, got {len(m)}")
            if any(not (math.isfinite(v) and v >= 0) for v in m) or max(m) <= 0:
                raise ValueError("hourly_multipliers must be finite, >= 0 and not all zero")
        return self

    @property
    def hourly_rates_per_s(self) -> np.ndarray:
        """Rate in each hour of the day 0..23 (wall-clock hours, not simulation hours)."""
        if self.hourly_multipliers is not None:
            m = np.asarray(self.hourly_multipliers, dtype=np.float64)
        else:
            h = np.arange(24.0)
            peak = float(self.peak_hour or 0)  # set whenever the multipliers are not
            shape = (1.0 + np.cos(2.0 * np.pi * (h - peak) / 24.0)) / 2.0
            m = self.trough_fraction + (1.0 - self.trough_fraction) * shape
        return self.peak_rate_per_s * m / m.max()

    @property
    def mean_rate_per_s(self) -> float:
        return float(self.hourly_rates_per_s.mean())


RateSpec = Annotated[ConstantRate | DailyRate, Field(discriminator="kind")]


def poisson_arrival_times(
    rate: ConstantRate | DailyRate, n: int, rng: np.random.Generator, scale: float = 1.0
) -> np.ndarray:
    """``n`` sorted arrival times (s, from 0) of a Poisson process with ``scale * rate``."""
    return time_change(rate, np.cumsum(rng.exponential(1.0, size=n)), scale)


def time_change(
    rate: ConstantRate | DailyRate, unit_points: np.ndarray, scale: float = 1.0
) -> np.ndarray:
    """Map points of a unit-rate Poisson process to times (s) of one with ``scale * rate``:
    t = Lambda^-1(E), Lambda(t) = integral_0^t scale * rate(u) du (piecewise linear)."""
    unit_points = np.asarray(unit_points, dtype=np.float64)
    if isinstance(rate, ConstantRate):
        return unit_points / (scale * rate.rate_per_s)
    rates = scale * np.roll(rate.hourly_rates_per_s, -rate.start_hour)
    cum = np.concatenate(([0.0], np.cumsum(rates * HOUR_S)))  # Lambda at each hour edge
    days = np.floor(unit_points / cum[-1])
    rem = unit_points - days * cum[-1]
    hour = np.clip(np.searchsorted(cum, rem, side="right") - 1, 0, 23)
    return days * DAY_S + hour * HOUR_S + (rem - cum[hour]) / rates[hour]


class PoissonArrivals(BaseModel):
    model_config = SPEC_CONFIG
    kind: Literal["poisson"] = "poisson"
    rate: RateSpec


class TraceArrivals(BaseModel):
    """Whole requests replayed from a CSV with columns ``arrival_s,prompt_tokens,output_tokens``.

    Read and checked when the spec is built; rows are sorted by arrival (stable).
    """

    model_config = SPEC_CONFIG
    kind: Literal["trace"] = "trace"
    file: str
    _columns: dict[str, np.ndarray] = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        cols = read_trace(self.file)
        order = np.argsort(cols["arrival_s"], kind="stable")
        self._columns = {k: v[order] for k, v in cols.items()}

    @property
    def columns(self) -> dict[str, np.ndarray]:
        return dict(self._columns)

    @property
    def mean_rate_per_s(self) -> float:
        """Requests per second over the trace's span (first to last arrival)."""
        t = self._columns["arrival_s"]
        span = t[-1] - t[0]
        return len(t) / span if span > 0 else math.inf


class ConcurrencyArrivals(BaseModel):
    """A closed loop of ``clients`` clients, as serving benchmarks measure: vLLM
    ``benchmarks/benchmark_serving.py --max-concurrency N`` (an asyncio semaphore of N around
    requests that are all ready at once, ``--request-rate inf``; commit 0049e29c of
    vllm-project/vllm), SGLang ``bench_serving --max-concurrency``, genai-perf ``--concurrency``.

    At t = 0 every client sends a request; when a request's last token is out, its client sends
    its next one ``think`` seconds later (0 by default, as in those tools). Requests are handed
    out in order: the next unsent one goes to the client that is free first. With multi-turn
    sessions a client runs one session at a time: turn k is sent the session's think time
    after turn k-1 finished, and after the last turn the client starts the next unsent
    session after its own think time. So never more than ``clients`` requests are in flight.

    ``requests``: how many to send in all (the benchmark's ``--num-prompts``); an explicit
    request count given to the sampler overrides it.
    """

    model_config = SPEC_CONFIG
    kind: Literal["concurrency"] = "concurrency"
    clients: int = Field(ge=1)
    think_time_s: Seconds = Field(default=0.0, ge=0)
    think_time_distribution: Literal["fixed", "exponential"] = "fixed"
    requests: int | None = Field(default=None, ge=1)

    def think_times_s(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` client think times (s): all ``think_time_s``, or exponential with that mean."""
        if self.think_time_distribution == "exponential" and self.think_time_s > 0:
            return rng.exponential(self.think_time_s, n)
        return np.full(n, float(self.think_time_s))
