"""Summaries of a simulation: latency percentiles, throughput, KV utilisation, goodput at SLOs,
and a Little's-law consistency check. Pure functions of :class:`SimulationResult` arrays.

The figures serving benchmarks print (request and token throughput, mean/median/p99 TTFT,
TPOT, inter-token latency and E2E latency, as vLLM's ``benchmark_serving.py`` defines them)
are :func:`hwsim.serving.benchmark.benchmark_summary`."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field, model_validator

from hwsim.serving.fields import RESULT_CONFIG, Seconds
from hwsim.serving.records import IterationTrace, RequestRecords, SimulationResult

PERCENTILES = (50.0, 90.0, 95.0, 99.0)


class LatencyStats(BaseModel):
    """Mean and percentiles (linear interpolation) over the defined values; NaN when none."""

    model_config = RESULT_CONFIG
    count: int
    mean_s: float
    p50_s: float
    p90_s: float
    p95_s: float
    p99_s: float


def latency_stats(values_s: np.ndarray) -> LatencyStats:
    """Stats of ``values_s``, ignoring NaN (undefined or never-happened entries)."""
    v = np.asarray(values_s, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return LatencyStats(
            count=0, mean_s=math.nan, p50_s=math.nan, p90_s=math.nan, p95_s=math.nan, p99_s=math.nan
        )
    p50, p90, p95, p99 = (float(x) for x in np.percentile(v, PERCENTILES))
    return LatencyStats(
        count=int(v.size), mean_s=float(v.mean()), p50_s=p50, p90_s=p90, p95_s=p95, p99_s=p99
    )


class Slo(BaseModel):
    """Per-request latency targets; a request meets the SLO when it completed and every given
    threshold holds. TPOT is undefined for 1-token outputs and counts as met."""

    model_config = RESULT_CONFIG
    ttft_s: Seconds | None = Field(default=None, gt=0)
    tpot_s: Seconds | None = Field(default=None, gt=0)
    e2e_s: Seconds | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _some(self) -> Slo:
        if self.ttft_s is None and self.tpot_s is None and self.e2e_s is None:
            raise ValueError("give at least one of ttft_s, tpot_s, e2e_s")
        return self


def meets_slo(records: RequestRecords, slo: Slo) -> np.ndarray:
    """Boolean per request (rejected requests never meet it)."""
    ok = records.completed.copy()
    if slo.ttft_s is not None:
        ok &= records.ttft_s <= slo.ttft_s
    if slo.tpot_s is not None:
        tpot = records.tpot_s
        ok &= np.isnan(tpot) | (tpot <= slo.tpot_s)
    if slo.e2e_s is not None:
        ok &= records.e2e_s <= slo.e2e_s
    return ok


def slo_attainment(records: RequestRecords, slo: Slo) -> float:
    """SLO attainment: the fraction of all requests that meet every threshold of ``slo``
    jointly, each judged on its own TTFT (first_token - arrival), mean TPOT
    ((finish - first_token) / (output - 1)) and E2E (:func:`meets_slo`); rejected and
    never-served requests count as misses. DistServe (Zhong et al., OSDI 2024) calls a rate
    sustainable when this is at least 90% for TTFT and TPOT together. NaN for no requests."""
    if len(records) == 0:
        return math.nan
    return float(np.count_nonzero(meets_slo(records, slo)) / len(records))


class Goodput(BaseModel):
    model_config = RESULT_CONFIG
    slo: Slo
    n_met: int
    fraction: float  # of all requests, rejected ones included
    rate_per_s: float  # requests meeting the SLO per second of the run


class KvUtilisation(BaseModel):
    """Fractions of the KV block capacity; the series is time-weighted means over equal bins."""

    model_config = RESULT_CONFIG
    mean_fraction: float
    peak_fraction: float
    series_time_s: tuple[float, ...]  # bin centres
    series_fraction: tuple[float, ...]


def kv_utilisation(trace: IterationTrace, t0_s: float, t1_s: float, n_points: int) -> KvUtilisation:
    """Time-weighted KV use over [t0, t1] (idle gaps count as 0), peak, and a binned series.

    The integral of blocks-in-use over time is piecewise linear (constant use within each
    iteration, none between), so bin means come from interpolating it at the bin edges."""
    total = trace.kv_blocks_total
    if len(trace) == 0 or not t1_s > t0_s:
        return KvUtilisation(
            mean_fraction=0.0, peak_fraction=0.0, series_time_s=(), series_fraction=()
        )
    area = trace.kv_blocks_used * trace.duration_s
    after = np.cumsum(area)
    knots_t = np.column_stack((trace.start_s, trace.start_s + trace.duration_s)).ravel()
    knots_v = np.column_stack((after - area, after)).ravel()
    edges = np.linspace(t0_s, t1_s, n_points + 1)
    integral = np.interp(edges, knots_t, knots_v, left=0.0, right=float(after[-1]))
    series = np.diff(integral) / np.diff(edges) / total
    return KvUtilisation(
        mean_fraction=float(after[-1] / (t1_s - t0_s) / total),
        peak_fraction=float(trace.kv_blocks_used.max() / total),
        series_time_s=tuple((0.5 * (edges[:-1] + edges[1:])).tolist()),
        series_fraction=tuple(series.tolist()),
    )


class ServingSummary(BaseModel):
    model_config = RESULT_CONFIG
    n_requests: int
    n_completed: int
    rejected: dict[str, int]  # reason -> count
    duration_s: float  # first arrival to last finish
    ttft: LatencyStats
    tpot: LatencyStats  # outputs of 1 token excluded
    e2e: LatencyStats
    queue_delay: LatencyStats
    output_tokens_per_s: float
    requests_per_s: float
    preemptions: int
    requests_preempted: int
    kv: KvUtilisation
    goodput: Goodput | None
    # set when the run stopped early because arrivals outran service (serving.overload)
    overloaded: bool = False
    sustained_rate_per_s: float | None = None  # requests/s finished while saturated
    overload_reason: str | None = None


def summarize(
    result: SimulationResult, slo: Slo | None = None, n_series_points: int = 200
) -> ServingSummary:
    rec, trace = result.records, result.trace
    done = rec.completed
    t0 = float(rec.arrival_s.min()) if len(rec) else 0.0
    t_end = float(np.nanmax(rec.finish_s)) if done.any() else t0
    duration = t_end - t0
    per_s = (lambda x: x / duration) if duration > 0 else (lambda x: math.nan)
    reasons, counts = np.unique(rec.status[~done], return_counts=True)
    goodput = None
    if slo is not None:
        n_met = int(meets_slo(rec, slo).sum())
        goodput = Goodput(
            slo=slo, n_met=n_met, fraction=n_met / max(len(rec), 1), rate_per_s=per_s(n_met)
        )
    return ServingSummary(
        n_requests=len(rec),
        n_completed=int(done.sum()),
        rejected={str(k): int(c) for k, c in zip(reasons, counts)},
        duration_s=duration,
        ttft=latency_stats(rec.ttft_s),
        tpot=latency_stats(rec.tpot_s),
        e2e=latency_stats(rec.e2e_s),
        queue_delay=latency_stats(rec.queue_delay_s),
        output_tokens_per_s=per_s(float(rec.output_tokens[done].sum())),
        requests_per_s=per_s(float(done.sum())),
        preemptions=int(rec.preemptions.sum()),
        requests_preempted=int(np.count_nonzero(rec.preemptions)),
        kv=kv_utilisation(trace, t0, t_end, n_series_points),
        goodput=goodput,
        overloaded=result.overload is not None,
        sustained_rate_per_s=result.overload.sustained_rate_per_s if result.overload else None,
        overload_reason=result.overload.sentence() if result.overload else None,
    )


class LittlesLawCheck(BaseModel):
    """L (time-average number in system) against lambda * W over a window."""

    model_config = RESULT_CONFIG
    window_s: tuple[float, float]
    mean_in_system: float
    arrival_rate_per_s: float
    mean_time_in_system_s: float
    relative_error: float  # |L - lambda W| / L


def littles_law_check(
    records: RequestRecords, window_s: tuple[float, float] | None = None
) -> LittlesLawCheck:
    """Little's law on completed requests. L integrates the number in system over the window
    (each request contributes the overlap of [arrival, finish] with it); lambda and W use the
    requests arriving in the window. Default window: first to last arrival. Boundary effects
    make the two sides differ by O(W / window length)."""
    done = records.completed
    arrival, finish = records.arrival_s[done], records.finish_s[done]
    a, b = window_s if window_s is not None else (float(arrival.min()), float(arrival.max()))
    if not b > a:
        raise ValueError(f"window must have positive length, got {(a, b)}")
    overlap = np.clip(np.minimum(finish, b) - np.maximum(arrival, a), 0.0, None)
    mean_in_system = float(overlap.sum() / (b - a))
    inside = (arrival >= a) & (arrival < b)
    rate = float(inside.sum() / (b - a))
    w = float((finish - arrival)[inside].mean()) if inside.any() else math.nan
    rel = abs(mean_in_system - rate * w) / mean_in_system if mean_in_system > 0 else math.nan
    return LittlesLawCheck(
        window_s=(a, b),
        mean_in_system=mean_in_system,
        arrival_rate_per_s=rate,
        mean_time_in_system_s=w,
        relative_error=rel,
    )
