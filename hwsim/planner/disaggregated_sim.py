"""The serving simulator on a disaggregated candidate: both pools and the KV hand-over between.

Requests are sampled at the traffic's peak and dealt round-robin over the P prefill replicas
(a load balancer in front of the pool). Every prefill replica is simulated with its share as
prefill-only requests (one output token each: the iteration that computes the prompt's KV),
which gives each prompt's prefill end. Its cache then moves to the decode pool: the exposed
transfer of :func:`hwsim.inference.kv_transfer.kv_transfer` at the request's own prompt length
(and its own prefill time, which a layer-wise transfer hides behind; interpolated over a grid
of prompt lengths). The decode pool gets the requests in the order their caches arrive, dealt
round-robin over its D replicas; one decode replica is simulated with its share, each request
arriving with its whole prompt cached (``cached_prefix_tokens`` = prompt - 1: the engine
computes the last prompt position and emits the first token from its first step).

Per request, with ``first_token_from: decode`` (the default) the TTFT runs from the arrival to
the decode replica's first token and the TPOT is the decode replica's; with ``prefill`` the
TTFT ends at the prefill's first token and the TPOT spreads the rest of the answer over
G - 1 tokens: (decode finish - prefill end) / (G - 1). The per-request overhead (HTTP,
tokenisation) is paid once, on the prefill side.

Both pools are checked for overload as one-pool candidates are
(:attr:`~hwsim.serving.metrics.ServingSummary.overloaded`): a pool the simulator cannot keep
up with makes the candidate infeasible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim.inference.capacity import free_bytes_for_cache
from hwsim.inference.deployment import Deployment, make_deployment
from hwsim.inference.engine import prefill_cost
from hwsim.inference.kv_transfer import kv_transfer
from hwsim.inference.memory import kv_bytes_per_token_per_gpu, weight_bytes_per_gpu
from hwsim.planner.disaggregated import DisaggregatedCandidate, DisaggregatedResult
from hwsim.planner.slo_verdict import add_slo_verdict
from hwsim.planner.spec import DisaggregationSpec, ServingSpec
from hwsim.planner.step_model import EngineStepModel
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.scenario import Scenario
from hwsim.serving import SchedulerConfig, TrafficSpec, sample_requests
from hwsim.serving import simulate as run_simulation
from hwsim.serving.metrics import Slo, slo_attainment, summarize
from hwsim.serving.records import RequestRecords, SimulationResult
from hwsim.serving.scheduler import deployment_scheduler_fields
from hwsim.serving.traffic import Requests

MAX_SIMULATED_REQUESTS = 40_000  # all prefill replicas together
TRANSFER_GRID_POINTS = 33  # prompt lengths the exposed transfer is priced at
CLOSED_LOOP_NOT_SIMULATED = (
    "analytic (not simulated: closed-loop clients are simulated on one-pool candidates only; "
    "both pools would need the decode pool's finish times to time the next request)"
)


def _config(
    spec: DeploymentSpec, kv_tokens: float, serving: ServingSpec, **overrides: Any
) -> SchedulerConfig:
    """The simulator's scheduler for one pool's replica (as the one-pool confirmation builds
    it: the deployment's scheduling fields and its engine runtime)."""
    engine = deployment_scheduler_fields(spec) | overrides
    kv = int(kv_tokens) if math.isfinite(kv_tokens) else 10**12
    return SchedulerConfig(
        kv_capacity_tokens=max(kv, 1), block_size_tokens=serving.block_size_tokens, **engine
    )


def kv_capacity_tokens(dep: Deployment, workspace_tokens: float) -> float:
    """Tokens of KV cache one replica of ``dep`` holds beside its weights and the workspace
    of a ``workspace_tokens`` prefill chunk."""
    free = float(free_bytes_for_cache(dep, workspace_tokens, weight_bytes_per_gpu(dep)))
    per_token = kv_bytes_per_token_per_gpu(dep)
    return free / per_token if per_token > 0 else float("inf")


def exposed_transfer_by_prompt(
    pre: Deployment, dec: Deployment, prompts: np.ndarray, spec: DisaggregationSpec
) -> np.ndarray:
    """Each request's exposed KV transfer (s), interpolated over a geometric grid of prompt
    lengths from the shortest to the longest (the transfer is smooth in the prompt length)."""
    lo, hi = float(np.min(prompts)), float(np.max(prompts))
    grid = np.unique(np.geomspace(max(lo, 1.0), max(hi, 1.0), TRANSFER_GRID_POINTS).round())
    exposed = [
        kv_transfer(
            pre,
            dec,
            float(x),
            placement=spec.placement,
            overlap=spec.kv_overlap,
            prefill_compute_s=float(np.ravel(prefill_cost(pre, 1.0, float(x)).time_s)[0]),
        ).exposed_s
        for x in grid
    ]
    return np.interp(prompts, grid, exposed)


@dataclass(frozen=True)
class PoolsRun:
    """Both pools simulated on given requests (:func:`simulate_pools`), per request of the
    input (``prefill_end_s``, ``exposed_s``, ``done``) and per request of the simulated
    decode replica (``mine``: their indices in the input; ``records``: them timed end to end,
    arrival, first token as the client sees it, decode finish)."""

    prefill_end_s: np.ndarray
    exposed_s: np.ndarray
    done: np.ndarray
    mine: np.ndarray
    records: RequestRecords
    decode: SimulationResult
    prefill_overloads: list[str]


def simulate_pools(
    model: str,
    c: DisaggregatedCandidate,
    n_p: int,
    n_d: int,
    decode_kv_tokens: float,
    reqs: Requests,
    serving: ServingSpec,
    spec: DisaggregationSpec,
) -> PoolsRun:
    """``reqs`` served by ``n_p`` prefill replicas and (one of) ``n_d`` decode replicas of
    ``c``, the decode replica holding ``decode_kv_tokens`` of KV cache (module docstring)."""
    pre = make_deployment(model, c.prefill_hardware, c.prefill_deployment)
    dec = make_deployment(model, c.hardware, c.deployment)
    prompts = np.asarray(reqs.prompt_tokens, dtype=np.int64)
    outputs = np.asarray(reqs.output_tokens, dtype=np.int64)
    arrival = np.asarray(reqs.arrival_s, dtype=float)
    n = len(arrival)

    # prefill pool: every replica with its round-robin share, one output token each
    p = c.prefill_deployment
    pre_config = _config(p, kv_capacity_tokens(pre, p.max_num_batched_tokens), serving)
    prefill_end = np.full(n, np.nan)
    prefill_overloads = []
    for j in range(n_p):
        idx = np.arange(j, n, n_p)
        share = Requests.from_arrays(
            arrival[idx],
            prompts[idx],
            np.ones(len(idx), dtype=np.int64),
            np.asarray(reqs.session_id)[idx],
            np.asarray(reqs.cached_prefix_tokens)[idx],
        )
        result = run_simulation(share, EngineStepModel(pre), pre_config)
        prefill_end[idx] = result.records.first_token_s
        if result.overload is not None:
            prefill_overloads.append(result.overload.sentence())
    done = np.isfinite(prefill_end)

    # the hand-over, then one decode replica with its round-robin share of the arrivals
    exposed = exposed_transfer_by_prompt(pre, dec, prompts.astype(float), spec)
    at_decode = prefill_end + exposed
    order = np.argsort(np.where(done, at_decode, np.inf), kind="stable")[: int(done.sum())]
    mine = order[::n_d]
    mine = mine[np.argsort(at_decode[mine], kind="stable")]
    from_prefill = spec.first_token_from == "prefill"
    steps = np.maximum(outputs[mine] - 1, 1) if from_prefill else outputs[mine]
    decode_reqs = Requests.from_arrays(
        at_decode[mine],
        prompts[mine],
        steps,
        np.arange(len(mine)),
        np.maximum(prompts[mine] - 1, 0),  # the prompt's KV arrived with it
    )
    d = c.deployment
    dec_config = _config(
        d,
        decode_kv_tokens,
        serving,
        prefix_caching=True,
        request_overhead_s=0.0,  # paid on the prefill side
        # the prompt's KV arrives with the request: its one-token "prefill" rides in a decode
        # iteration, not in a prefill-only one (whatever the engine's prefill_first)
        policy="chunked",
        chunked_prefill=True,
    )
    dec_result = run_simulation(decode_reqs, EngineStepModel(dec), dec_config)
    rec = dec_result.records
    end_to_end = RequestRecords(
        arrival_s=arrival[mine],
        admitted_s=rec.admitted_s,
        first_token_s=prefill_end[mine] if from_prefill else rec.first_token_s,
        finish_s=rec.finish_s,
        prompt_tokens=prompts[mine],
        output_tokens=outputs[mine],
        cached_prefix_tokens=rec.cached_prefix_tokens,
        preemptions=rec.preemptions,
        status=rec.status,
    )
    return PoolsRun(prefill_end, exposed, done, mine, end_to_end, dec_result, prefill_overloads)


def confirm_disaggregated(
    sc: Scenario,
    r: DisaggregatedResult,
    traffic: TrafficSpec,
    serving: ServingSpec,
    spec: DisaggregationSpec,
) -> dict[str, Any]:
    """Simulate both pools of ``r`` at the peak (module docstring); the summary the one-pool
    confirmation gives, plus each pool's own figures."""
    c = r.candidate
    assert isinstance(c, DisaggregatedCandidate)
    n_p, n_d = r.prefill_replicas, r.decode_replicas
    n = min(serving.n_requests * n_d, MAX_SIMULATED_REQUESTS)
    n = max(n, n_d * 10, n_p)
    reqs = sample_requests(traffic, n, serving.seed)
    if not isinstance(reqs, Requests):
        return {"not_simulated": CLOSED_LOOP_NOT_SIMULATED}
    run = simulate_pools(sc.model, c, n_p, n_d, r.kv_capacity_tokens, reqs, serving, spec)
    outputs = np.asarray(reqs.output_tokens, dtype=np.int64)
    arrival = np.asarray(reqs.arrival_s, dtype=float)
    n = len(arrival)
    prefill_end, exposed, done, mine = run.prefill_end_s, run.exposed_s, run.done, run.mine
    dec_result, end_to_end, prefill_overloads = run.decode, run.records, run.prefill_overloads
    rec = dec_result.records
    ok = rec.completed
    if spec.first_token_from == "prefill":
        ttft = prefill_end[mine] - arrival[mine]
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = (rec.finish_s - prefill_end[mine]) / np.maximum(outputs[mine] - 1, 1)
        tpot = np.where(outputs[mine] > 1, tpot, np.nan)
    else:
        ttft = rec.first_token_s - arrival[mine]
        tpot = rec.tpot_s
    e2e = rec.finish_s - arrival[mine]
    ttft, tpot, e2e = (np.where(ok, x, np.nan) for x in (ttft, tpot, e2e))
    slo = sc.slo
    goodput_fraction = None
    if len(mine) and (slo.ttft_p95_s or slo.tpot_p95_s or slo.e2e_p95_s):
        goodput_slo = Slo(ttft_s=slo.ttft_p95_s, tpot_s=slo.tpot_p95_s, e2e_s=slo.e2e_p95_s)
        # requests the prefill pool never finished reach no decode replica: misses, their
        # share of them (1 / D) counted against this replica
        goodput_fraction = slo_attainment(end_to_end, goodput_slo) * float(done.mean())
    dec_summary = summarize(dec_result)
    overload = "; ".join(
        [f"prefill pool: {s}" for s in prefill_overloads[:1]]
        + ([f"decode pool: {dec_summary.overload_reason}"] if dec_summary.overloaded else [])
    )

    def q(x: np.ndarray, pct: float) -> float:
        x = x[np.isfinite(x)]
        return float(np.percentile(x, pct)) if len(x) else float("nan")

    out: dict[str, Any] = {
        "pools_simulated": f"{n_p} prefill replica(s) (all), 1 of {n_d} decode replica(s)",
        "n_requests": int(len(mine)),
        "n_requests_prefill": int(n),
        "ttft_p50_s": q(ttft, 50),
        "ttft_p95_s": q(ttft, 95),
        "ttft_p99_s": q(ttft, 99),
        "tpot_p95_s": q(tpot, 95),
        "e2e_p95_s": q(e2e, 95),
        "prefill_done_p95_s": q(prefill_end - arrival, 95),
        "kv_transfer_exposed_p95_s": q(exposed, 95),
        "decode_queue_delay_p95_s": dec_summary.queue_delay.p95_s,
        "preemptions": dec_summary.preemptions,
        "kv_utilisation_mean": dec_summary.kv.mean_fraction,
        "kv_utilisation_peak": dec_summary.kv.peak_fraction,
        "output_tokens_per_s": dec_summary.output_tokens_per_s,
        "goodput_fraction": goodput_fraction,
        "overloaded": bool(overload),
        "overload": overload or None,
    }
    add_slo_verdict(out, slo, r, bool(overload))
    return out


def confirmation_text(sim: dict[str, Any]) -> str:
    """The report's one-line verdict for a simulated disaggregated candidate."""
    if "not_simulated" in sim:
        return str(sim["not_simulated"])
    verdict = "meets" if sim.get("meets_slo") else "MISSES"
    return (
        f"simulated (both pools): {verdict} SLO (TTFT p95 {sim['ttft_p95_s'] * 1e3:,.0f} ms, "
        f"TPOT p95 {sim['tpot_p95_s'] * 1e3:,.1f} ms)"
    )
