"""The numbers serving benchmarks print, from a simulation: :func:`benchmark_summary`.

Definitions are those of vLLM's ``benchmarks/benchmark_serving.py`` (vllm-project/vllm, commit
0049e29c41fd383bda519a3f250e3227713081ef, ``calculate_metrics`` and ``benchmark``), which SGLang
``bench_serving`` and genai-perf follow under other labels:

- only successful requests count (here: status "completed");
- duration: from the first request sent to the last answer finished (``benchmark_duration``,
  perf_counter before the first send to after ``asyncio.gather`` of all requests);
- request throughput = successful requests / duration (req/s); output token throughput = their
  output tokens / duration (tok/s); total token throughput = (their prompt tokens + output
  tokens) / duration (tok/s);
- TTFT: first token - send; E2EL: last token - send ("latency");
- TPOT per request, for outputs of more than 1 token: (E2EL - TTFT) / (output tokens - 1);
- ITL: every gap between consecutive tokens of a request, pooled over all requests
  (``itls += outputs[i].itl``), so long outputs weigh more than in TPOT;
- mean, median (``np.median``), standard deviation (``np.std``) and the 99th percentile
  (``np.percentile``, linear interpolation; ``--metric-percentiles`` defaults to "99").
  With no values vLLM prints 0; here they are NaN.

Times are seconds inside; :meth:`BenchmarkSummary.table` prints milliseconds as vLLM does.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel

from hwsim.serving.fields import RESULT_CONFIG
from hwsim.serving.records import SimulationResult, TokenTimeline

PERCENTILE = 99.0


class BenchmarkLatency(BaseModel):
    """Mean, median, standard deviation and 99th percentile (s); NaN with no values."""

    model_config = RESULT_CONFIG
    count: int
    mean_s: float
    median_s: float
    std_s: float
    p99_s: float


def weighted_percentile(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """``np.percentile(np.repeat(values, counts), q)`` (linear) without building the repeat."""
    order = np.argsort(values, kind="stable")
    v, c = np.asarray(values, dtype=np.float64)[order], np.asarray(counts)[order]
    cum = np.cumsum(c)
    h = (cum[-1] - 1) * q / 100.0
    lo = math.floor(h)
    x_lo = v[np.searchsorted(cum, lo, side="right")]
    x_hi = v[np.searchsorted(cum, min(lo + 1, cum[-1] - 1), side="right")]
    return float(x_lo + (h - lo) * (x_hi - x_lo))


def latency_of(values_s: np.ndarray, counts: np.ndarray | None = None) -> BenchmarkLatency:
    """Stats of ``values_s`` (NaN entries dropped), each taken ``counts`` times if given."""
    v = np.asarray(values_s, dtype=np.float64)
    c = np.ones(v.shape, dtype=np.int64) if counts is None else np.asarray(counts, np.int64)
    keep = ~np.isnan(v) & (c > 0)
    v, c = v[keep], c[keep]
    n = int(c.sum())
    if n == 0:
        nan = math.nan
        return BenchmarkLatency(count=0, mean_s=nan, median_s=nan, std_s=nan, p99_s=nan)
    mean = float(np.dot(v, c) / n)
    return BenchmarkLatency(
        count=n,
        mean_s=mean,
        median_s=weighted_percentile(v, c, 50.0),
        std_s=float(math.sqrt(max(np.dot((v - mean) ** 2, c) / n, 0.0))),
        p99_s=weighted_percentile(v, c, PERCENTILE),
    )


def inter_token_gaps(timeline: TokenTimeline) -> tuple[np.ndarray, np.ndarray]:
    """Every gap (s) between consecutive tokens of each request, as (values, counts).

    Within a stint (:class:`~hwsim.serving.records.TokenTimeline`) the gaps are the prefill end
    to the first decode step's end, then the durations between consecutive decode-step ends;
    between two stints of a request, its last token before the preemption to the re-prefill's
    token. The decode-step durations are shared by all sequences decoding in both steps, so
    they come once each, with the number of such sequences as their count."""
    ends = timeline.decode_step_end_s
    e, n = timeline.stint_first_step, timeline.stint_decodes
    start, req = timeline.stint_start_s, timeline.stint_request
    # interior gaps of a stint: diff index j = e .. e + n - 2 (step j + 1 to step j + 2)
    steps = max(len(ends) - 1, 0)
    marks = np.zeros(steps + 1, dtype=np.int64)
    long = n >= 2
    np.add.at(marks, e[long], 1)
    np.add.at(marks, e[long] + n[long] - 1, -1)
    interior_counts = np.cumsum(marks)[:steps]
    decoded = n >= 1
    first_gaps = ends[e[decoded]] - start[decoded]
    order = np.lexsort((start, req))
    last = np.where(decoded, ends[np.maximum(e + n - 1, 0)] if len(ends) else start, start)
    same = req[order][1:] == req[order][:-1]
    between = start[order][1:][same] - last[order][:-1][same]
    extra = np.concatenate((first_gaps, between))
    values = np.concatenate((np.diff(ends), extra))
    counts = np.concatenate((interior_counts, np.ones(len(extra), dtype=np.int64)))
    return values, counts


class BenchmarkSummary(BaseModel):
    """What ``benchmark_serving.py`` prints, for one simulated run (see the module doc)."""

    model_config = RESULT_CONFIG
    max_concurrency: int | None  # the closed loop's clients; None: open-loop arrivals
    successful_requests: int
    failed_requests: int  # rejected up front, or not served before an overload stop
    duration_s: float
    total_input_tokens: int
    total_output_tokens: int
    request_throughput_per_s: float
    output_token_throughput_per_s: float
    total_token_throughput_per_s: float
    ttft: BenchmarkLatency
    tpot: BenchmarkLatency
    itl: BenchmarkLatency
    e2el: BenchmarkLatency

    def table(self) -> str:
        """The result block as vLLM prints it (same labels; milliseconds)."""
        lines = ["{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="=")]

        def row(label: str, value: float | int, fmt: str = ".2f") -> None:
            lines.append(f"{label:<40} {value:<10{fmt}}")

        row("Successful requests:", self.successful_requests, "")
        row("Benchmark duration (s):", self.duration_s)
        row("Total input tokens:", self.total_input_tokens, "")
        row("Total generated tokens:", self.total_output_tokens, "")
        row("Request throughput (req/s):", self.request_throughput_per_s)
        row("Output token throughput (tok/s):", self.output_token_throughput_per_s)
        row("Total Token throughput (tok/s):", self.total_token_throughput_per_s)
        for name, header, stats in self._latencies():
            lines.append("{s:{c}^{n}}".format(s=header, n=50, c="-"))
            row(f"Mean {name} (ms):", stats.mean_s * 1e3)
            row(f"Median {name} (ms):", stats.median_s * 1e3)
            row(f"P99 {name} (ms):", stats.p99_s * 1e3)
        lines.append("=" * 50)
        return "\n".join(lines)

    def vllm_result(self) -> dict[str, float | int | None]:
        """The keys of vLLM's ``--save-result`` JSON (``duration`` s, latencies ms)."""
        out: dict[str, float | int | None] = {
            "duration": self.duration_s,
            "completed": self.successful_requests,
            "total_input_tokens": self.total_input_tokens,
            "total_output_tokens": self.total_output_tokens,
            "request_throughput": self.request_throughput_per_s,
            "output_throughput": self.output_token_throughput_per_s,
            "total_token_throughput": self.total_token_throughput_per_s,
            "max_concurrency": self.max_concurrency,
        }
        for name, _, stats in self._latencies():
            key = name.lower()
            out[f"mean_{key}_ms"] = stats.mean_s * 1e3
            out[f"median_{key}_ms"] = stats.median_s * 1e3
            out[f"std_{key}_ms"] = stats.std_s * 1e3
            out[f"p99_{key}_ms"] = stats.p99_s * 1e3
        return out

    def _latencies(self) -> tuple[tuple[str, str, BenchmarkLatency], ...]:
        return (
            ("TTFT", "Time to First Token", self.ttft),
            ("TPOT", "Time per Output Token (excl. 1st token)", self.tpot),
            ("ITL", "Inter-token Latency", self.itl),
            ("E2EL", "End-to-end Latency", self.e2el),
        )


def benchmark_duration_s(result: SimulationResult) -> float:
    """First send to the last answer: a finish, or a rejection (it fails when it is sent)."""
    rec = result.records
    if len(rec) == 0:
        return 0.0
    answered = np.where(rec.completed, rec.finish_s, rec.arrival_s)
    answered = answered[rec.status != "not_served_overload"]
    last = float(np.nanmax(answered)) if answered.size else math.nan
    return last - float(np.nanmin(rec.arrival_s))


def benchmark_summary(result: SimulationResult) -> BenchmarkSummary:
    """vLLM ``benchmark_serving.py`` metrics of a run (definitions in the module doc)."""
    rec = result.records
    done = rec.completed
    duration = benchmark_duration_s(result)
    n_in = int(rec.prompt_tokens[done].sum())
    n_out = int(rec.output_tokens[done].sum())

    def per_s(x: float) -> float:
        return x / duration if duration > 0 else math.nan

    if result.timeline is None:
        itl = latency_of(np.zeros(0))
    else:
        itl = latency_of(*inter_token_gaps(result.timeline))
    return BenchmarkSummary(
        max_concurrency=result.clients,
        successful_requests=int(done.sum()),
        failed_requests=int((~done).sum()),
        duration_s=duration,
        total_input_tokens=n_in,
        total_output_tokens=n_out,
        request_throughput_per_s=per_s(float(done.sum())),
        output_token_throughput_per_s=per_s(n_out),
        total_token_throughput_per_s=per_s(n_in + n_out),
        ttft=latency_of(rec.ttft_s[done]),
        tpot=latency_of(rec.tpot_s[done]),
        itl=itl,
        e2el=latency_of(rec.e2e_s[done]),
    )
