"""``hwsim.plan``: search candidates analytically, confirm the best with the simulator.

Steps: summarise the traffic (mean/p95 lengths from a seeded sample), price every candidate's
steady state (:mod:`hwsim.planner.analytic`), rank feasible ones by cost, mark the Pareto
front of cost vs TPOT, then simulate the top few at their per-replica load and report where
the simulated percentiles and the analytic answer differ.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import HwsimError, ProfileError
from hwsim.inference.acceptance import tokens_per_step
from hwsim.inference.deployment import make_deployment
from hwsim.inference.results import Estimate
from hwsim.model.load import load_model
from hwsim.model.param_summary import param_summary
from hwsim.model.positions import require_runnable
from hwsim.planner.analytic import CandidateResult, Workload
from hwsim.planner.decode_variants import CandidatePricing, variant_notes
from hwsim.planner.parallel import evaluate_all, run_jobs
from hwsim.planner.slo_verdict import add_slo_verdict
from hwsim.planner.spec import Candidate, CandidatesSection, CandidatesSpec, ServingSpec
from hwsim.planner.step_model import EngineStepModel
from hwsim.planner.variant_sim import replay_for
from hwsim.profiles.loader import validate
from hwsim.profiles.scenario import Scenario, load_scenario
from hwsim.serving import SchedulerConfig, Slo, TrafficSpec, sample_requests, summarize
from hwsim.serving import simulate as run_simulation
from hwsim.serving.scheduler import deployment_policy_name, deployment_scheduler_fields

WORKLOAD_SAMPLE = 20_000
LONGEST_SAMPLED = f"the longest of {WORKLOAD_SAMPLE:,} sampled requests"


@dataclass
class PlanResult:
    scenario: Scenario
    workload: Workload
    feasible: list[CandidateResult]
    pruned: list[CandidateResult]
    pareto: list[str]
    assumptions: list[str] = field(default_factory=list)

    @property
    def best(self) -> CandidateResult | None:
        return self.feasible[0] if self.feasible else None

    def recommendation_sentence(self) -> str:
        best = self.best
        if best is None:
            return "No candidate meets the SLOs; see the pruned candidates for why."
        if best.candidate.disaggregated:  # two pools (hwsim.planner.disaggregated)
            from hwsim.planner.disaggregated_report import recommendation_sentence

            return recommendation_sentence(self)
        c, d = best.candidate, best.candidate.deployment
        extra = ""
        if c.ep > 1:
            extra += f", ep={c.ep} ({c.ep // d.tp} attention replicas per group)"
        if c.speculative is not None:
            e = tokens_per_step(c.speculative.acceptance, c.speculative.k)
            extra += (
                f", speculative decoding with {c.speculative.draft} k={c.speculative.k} "
                f"(E = {e:.2f} tokens per step)"
            )
        return (
            f"Run {best.replicas} replica(s) of {self.scenario.model} on {c.hardware} "
            f"(tp={d.tp}, pp={d.pp}, weights {d.weight_dtype}, KV {d.kv_dtype}{extra}): "
            f"{best.gpus} GPUs, ${best.cost_per_hour_usd:,.2f}/hour "
            f"(${best.cost_per_hour_usd * 730:,.0f}/month), for "
            f"{self.workload.peak_rate_per_s:g} requests/s at peak with "
            f"{self.scenario.slo.headroom_fraction:.0%} headroom."
        )

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        out = {
            "recommendation": {
                "sentence": self.recommendation_sentence(),
                "candidate": best.to_dict() if best else None,
            },
            "model": param_summary(load_model(self.scenario.model)),
            "workload": self.workload.__dict__,
            "candidates": [r.to_dict() for r in self.feasible + self.pruned],
            "pareto": self.pareto,
            "assumptions": self.assumptions,
        }
        disaggregation = self.disaggregation()
        if disaggregation is not None:  # beside the recommendation (the plan schema is closed)
            out["recommendation"]["disaggregation"] = disaggregation  # type: ignore[index]
        return out

    def disaggregation(self) -> dict[str, Any] | None:
        """With ``candidates.disaggregated`` searched: the best aggregated and disaggregated
        plans side by side (:func:`hwsim.planner.disaggregated_report.comparison`), else None."""
        if not any(r.candidate.disaggregated for r in self.feasible + self.pruned):
            return None
        from hwsim.planner.disaggregated_report import comparison

        return comparison(self)

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per candidate: the feasible ones cheapest first (``rank`` 1, 2, ...),
        then the pruned ones (``rank`` None) with ``reason`` saying why. Keys: ``rank``,
        ``feasible``, ``reason``, ``pareto`` (on the cost-TPOT front), ``candidate.hardware``,
        ``candidate.<deployment field>``, ``candidate.label``, every
        :class:`~hwsim.planner.analytic.CandidateResult` number (``gpus``,
        ``cost_per_hour_usd``, ``tpot_s``, ...) and, for the candidates the simulator replayed,
        ``simulated.*``. A candidate's operating-point estimate stays in ``to_dict()``."""
        from hwsim.tables import flatten, plain

        rows = []
        for i, r in enumerate(self.feasible + self.pruned):
            data = r.to_dict()
            row: dict[str, Any] = {
                "rank": i + 1 if r.feasible else None,
                "feasible": r.feasible,
                "reason": r.reason,
                "pareto": r.candidate.label in self.pareto,
            }
            row.update(flatten({"candidate": data.pop("candidate")}))
            simulated = data.pop("simulated")
            for key in ("feasible", "reason", "estimate"):
                data.pop(key)
            row.update(data)
            row.update(flatten({"simulated": simulated}))
            rows.append({k: plain(v) for k, v in row.items()})
        return rows

    def to_frame(self):
        """A pandas DataFrame of :meth:`to_records` (needs pandas)."""
        from hwsim.tables import to_frame

        return to_frame(self.to_records())

    def _repr_html_(self) -> str:  # notebooks
        from hwsim.tables import html_table

        caption = (
            f"{self.scenario.model}: {len(self.feasible)} feasible, {len(self.pruned)} pruned "
            "candidates (feasible cheapest first)"
        )
        head = f"<p><b>{html.escape(self.recommendation_sentence())}</b></p>"
        table = html_table(self.to_records(), _PLAN_COLUMNS, caption=caption)
        return head + "\n" + table


# What a notebook shows of a plan, one row per candidate (to_records() has every number).
_PLAN_COLUMNS = (
    "rank",
    "candidate.label",
    "feasible",
    "pareto",
    "replicas",
    "gpus",
    "cost_per_hour_usd",
    "cost_per_million_output_tokens_usd",
    "batch_at_slo",
    "ttft_p95_s",
    "tpot_s",
    "binding_constraint",
    "reason",
)


def deployment_json(est, model_ref) -> dict[str, Any]:
    """The JSON of one priced deployment (``hwsim plan FILE --json`` without ``traffic:``,
    the web API's estimate): the estimate's sections, the model's parameter counts and the
    per-op rows of both phases."""
    return {
        **est.model_dump(exclude={"prefill_ops", "decode_ops"}),
        "model": param_summary(load_model(model_ref)),
        "ops": {
            "prefill": [r.model_dump() for r in est.prefill_ops],
            "decode": [r.model_dump() for r in est.decode_ops],
        },
    }


@dataclass
class DeploymentPlan(PlanResult):
    """What :func:`plan` returns for a scenario without a ``traffic:`` section: nothing to
    plan, so its one deployment priced by :func:`hwsim.estimate` at the scenario's
    ``workload:`` (batch, prompt_len, gen_len) with its TPOT SLO, the numbers ``hwsim plan
    FILE`` prints for such a file. ``estimate`` holds them and every attribute of an
    :class:`~hwsim.inference.results.Estimate` reads through (``result.latency.ttft_s``);
    no candidates are searched (``feasible``, ``pruned`` and ``pareto`` are empty, ``best`` is
    None) and ``to_dict()`` is the JSON of ``hwsim plan FILE --json``."""

    estimate: Estimate = field(kw_only=True)

    def __getattr__(self, name: str) -> Any:
        if name == "estimate" or name.startswith("__"):  # unset while copying or unpickling
            raise AttributeError(name)
        return getattr(self.estimate, name)

    def recommendation_sentence(self) -> str:
        est, d = self.estimate, self.estimate.config.deployment
        return (
            f"One deployment priced (the scenario has no 'traffic:' section to plan for): "
            f"{est.config.model} on {est.config.hardware} (tp={d.tp}, pp={d.pp}, dp={d.dp}): "
            f"TTFT {est.latency.ttft_s * 1e3:,.2f} ms, TPOT {est.latency.tpot_s * 1e3:,.2f} ms, "
            f"{'fits' if est.memory.fits else 'does NOT fit'} in memory."
        )

    def to_dict(self) -> dict[str, Any]:
        return deployment_json(self.estimate, self.scenario.model)

    def to_records(self) -> list[dict[str, Any]]:
        """The estimate's one record (:meth:`Estimate.to_records`)."""
        return self.estimate.to_records()

    def _repr_html_(self) -> str:  # notebooks
        return self.estimate._repr_html_()


def plan_deployment(sc: Scenario) -> DeploymentPlan:
    """A scenario without traffic: its deployment priced at its workload (see
    :class:`DeploymentPlan`)."""
    from hwsim.inference.estimate import estimate

    w = sc.workload
    est = estimate(
        sc.model,
        sc.hardware,
        sc.deployment,
        batch=w.batch,
        prompt_len=w.prompt_len,
        gen_len=w.gen_len,
        tpot_slo_s=sc.slo.tpot_p95_s,
    )
    work = Workload(
        peak_rate_per_s=float("nan"),  # no traffic, no rate
        prompt_mean=float(w.prompt_len),
        prompt_p95=float(w.prompt_len),
        output_mean=float(w.gen_len),
        prefill_mean=float(w.prompt_len),
        longest_tokens=float(w.prompt_len + w.gen_len),
    )
    notes = [
        "No 'traffic:' section: one deployment priced by hwsim.estimate at the scenario's "
        f"workload (batch {w.batch}, prompt {w.prompt_len}, generate {w.gen_len} tokens); "
        "add traffic to plan capacity."
    ]
    return DeploymentPlan(sc, work, [], [], [], notes, estimate=est)


def as_scenario(scenario: str | Path | dict | Scenario) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, dict):
        return validate(Scenario, scenario, "scenario dict")
    return load_scenario(scenario)


def traffic_of(sc: Scenario) -> TrafficSpec:
    if sc.traffic is None:
        raise ProfileError("capacity planning needs a 'traffic:' section", field="traffic")
    return validate(TrafficSpec, sc.traffic, "scenario traffic")


def candidates_of(sc: Scenario, file: str | None = None) -> CandidatesSpec:
    """The scenario's ``candidates:`` section; without one, the scenario's own deployment.
    ``file``: the scenario file errors name (default: 'scenario candidates')."""
    raw = sc.candidates or {"hardware": [sc.hardware]}
    if file is not None:  # name the file and the section
        section = validate(CandidatesSection, {"candidates": raw}, file)
        return section.candidates
    return validate(CandidatesSpec, raw, "scenario candidates")


def serving_of(sc: Scenario) -> ServingSpec:
    return validate(ServingSpec, sc.serving or {}, "scenario serving")


def summarise_workload(traffic: TrafficSpec, seed: int = 0) -> Workload:
    """Mean and p95 lengths from a seeded sample of the traffic (any distribution, sessions)."""
    n = WORKLOAD_SAMPLE
    try:
        req = sample_requests(traffic, n, seed)
    except HwsimError:  # a trace shorter than the sample: take all of it
        req = sample_requests(traffic, None, seed)
    prompt = req.prompt_tokens.astype(float)
    prefilled = prompt - req.cached_prefix_tokens.astype(float)
    return Workload(
        peak_rate_per_s=float(traffic.peak_rate_per_s),
        prompt_mean=float(prompt.mean()),
        prompt_p95=float(np.percentile(prompt, 95)),
        output_mean=float(req.output_tokens.astype(float).mean()),
        prefill_mean=float(prefilled.mean()),
        prefill_scv=float(prefilled.var() / prefilled.mean() ** 2) if prefilled.mean() > 0 else 0.0,
        prompt_p99=float(np.percentile(prompt, 99)),
        longest_tokens=float((prompt + req.output_tokens.astype(float)).max()),
        prompt_scv=float(prompt.var() / prompt.mean() ** 2),
    )


def pareto_front(results: list[CandidateResult]) -> list[str]:
    """Labels not dominated in (cost per hour, TPOT): nothing is both cheaper and faster."""
    front = []
    for r in results:
        dominated = any(
            o.cost_per_hour_usd <= r.cost_per_hour_usd
            and o.tpot_s <= r.tpot_s
            and (o.cost_per_hour_usd < r.cost_per_hour_usd or o.tpot_s < r.tpot_s)
            for o in results
        )
        if not dominated:
            front.append(r.candidate.label)
    return front


def plan(
    scenario: str | Path | dict | Scenario,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    simulate_top: int | None = None,
) -> PlanResult:
    """Plan capacity for a scenario (file, dict or :class:`Scenario`) with a ``traffic:``
    section: every candidate priced, ranked by cost, the best confirmed in the simulator.

    A scenario without ``traffic:`` describes one deployment, as ``hwsim plan FILE`` reads it:
    the result is then a :class:`DeploymentPlan` (a :class:`PlanResult` with no candidates)
    whose ``estimate`` is :func:`hwsim.estimate` of that deployment at the scenario's workload.
    ``workers``, ``ray_address`` and ``simulate_top`` apply to capacity planning only."""
    sc = as_scenario(scenario)
    if sc.traffic is None:
        given = [
            name
            for name, value in (
                ("workers", workers),
                ("ray_address", ray_address),
                ("simulate_top", simulate_top),
            )
            if value is not None
        ]
        if given:
            raise HwsimError(
                f"{', '.join(given)} only apply to capacity planning: a scenario with a "
                "'traffic:' section (this one describes one deployment)"
            )
        return plan_deployment(sc)
    file = str(scenario) if isinstance(scenario, (str, Path)) else None
    traffic, cands, serving = traffic_of(sc), candidates_of(sc, file), serving_of(sc)
    work = summarise_workload(traffic, serving.seed)
    require_runnable(load_model(sc.model), work.longest_tokens, LONGEST_SAMPLED)
    configurations = cands.expand(sc.deployment)
    results: list[CandidateResult] = []
    if False in cands.disaggregated:
        results = evaluate_all(
            sc.model,
            configurations,
            work,
            sc.slo,
            cands.price_per_gpu_hour_usd,
            workers=workers,
            ray_address=ray_address,
            progress=progress,
        )
    if True in cands.disaggregated:  # prefill and decode pools (hwsim.planner.disaggregated)
        from hwsim.planner.disaggregated import evaluate_disaggregated

        plain = [c for c in configurations if c.plain]  # one pool's layouts
        results += evaluate_disaggregated(
            sc.model,
            list(dict.fromkeys(plain)),
            work,
            sc.slo,
            cands.price_per_gpu_hour_usd,
            cands.disaggregation,
        )
    feasible = sorted(
        (r for r in results if r.feasible), key=lambda r: (r.cost_per_hour_usd, r.tpot_s)
    )
    pruned = [r for r in results if not r.feasible]
    top = serving.simulate_top if simulate_top is None else simulate_top
    # the cheapest few one-pool candidates (disaggregated pairs are replayed below)
    replayed = [r for r in feasible if not r.candidate.disaggregated][:top]
    jobs: list[tuple[Callable, tuple]] = [
        (confirm_with_simulator, (sc, r, traffic, serving)) for r in replayed
    ]
    pairs: list = []
    if True in cands.disaggregated:  # both pools and the hand-over, the cheapest few
        from hwsim.planner.disaggregated import DisaggregatedResult
        from hwsim.planner.disaggregated_sim import confirm_disaggregated

        pairs = [r for r in feasible if isinstance(r, DisaggregatedResult)][:top]
        jobs += [
            (confirm_disaggregated, (sc, r, traffic, serving, cands.disaggregation)) for r in pairs
        ]
    for r, simulated in zip([*replayed, *pairs], run_jobs(jobs, workers), strict=True):
        r.simulated = simulated
    if pairs:
        from hwsim.planner.disaggregated_sim import confirmation_text

        for r in pairs:
            r.confirmation = confirmation_text(r.simulated)
    replayed = [*replayed, *pairs]
    overloaded = [r for r in replayed if r.simulated.get("overloaded")]
    for r in overloaded:  # the analytic answer said yes, the simulated replica could not keep up
        r.feasible = False
        r.reason = f"simulator: {r.simulated['overload']}"
    feasible = [r for r in feasible if r not in overloaded]
    pruned = overloaded + pruned
    for r in feasible[: max(top, 1)]:
        r.estimate = operating_point_estimate(sc, r, work)
    notes = assumptions(sc, work) + confidence_notes(sc, feasible + pruned)
    if True in cands.disaggregated:
        from hwsim.planner.disaggregated_report import assumptions as disaggregation_notes

        notes += disaggregation_notes(cands.disaggregation)
    notes += variant_notes(cands)
    return PlanResult(sc, work, feasible, pruned, pareto_front(feasible), notes)


def confidence_notes(sc: Scenario, results: list[CandidateResult]) -> list[str]:
    """With ``slo.confidence: p90``: what the SLO checks used, and which candidates had no
    p10-p90 band (their point value was checked instead)."""
    if sc.slo.confidence != "p90":
        return []
    out = [
        "slo.confidence p90: each SLO is met at the p10-p90 band's pessimistic (high) edge: "
        "decode step and prefills at their p90 edge, for the batch search and the "
        "per-replica rate alike."
    ]
    no_band = [r.candidate.label for r in results if r.slo_confidence == "p50 (no band)"]
    if no_band:
        shown = ", ".join(no_band[:5]) + (
            f" and {len(no_band) - 5} more" if len(no_band) > 5 else ""
        )
        out.append(
            f"No band on {len(no_band)} candidate(s) ({shown}): no calibration band "
            "and no shipped transfer band (hwsim/perf/transfer_bands.json) priced them, so "
            "their SLOs were checked at the point value."
        )
    return out


def operating_point_estimate(sc: Scenario, r: CandidateResult, work: Workload) -> dict:
    """:func:`hwsim.estimate` of the candidate's deployment at its SLO batch, flat; empty for
    an EP group (the estimate prices tp-sharded experts, not experts spread over the group)."""
    import hwsim

    c = r.candidate
    if c.ep > 1:
        return {}
    est = hwsim.estimate(
        sc.model,
        c.hardware,
        c.deployment,
        batch=max(r.batch_at_slo, 1),
        prompt_len=round(work.prompt_mean),
        gen_len=max(round(work.output_mean), 1),
        tpot_slo_s=sc.slo.tpot_p95_s,
    )
    return est.flat()


def scheduler_config(r: CandidateResult, serving: ServingSpec) -> SchedulerConfig:
    kv_tokens = r.kv_capacity_tokens
    if not math.isfinite(kv_tokens):
        kv_tokens = 1e12
    return SchedulerConfig(
        kv_capacity_tokens=int(kv_tokens),
        block_size_tokens=serving.block_size_tokens,
        **deployment_scheduler_fields(r.candidate.deployment),
    )


def confirm_with_simulator(
    sc: Scenario, r: CandidateResult, traffic: TrafficSpec, serving: ServingSpec
) -> dict:
    """Simulate one replica at its share of the peak and compare with the analytic answer: a
    speculative one round by round, an EP group as one of its attention replicas at its share
    (hwsim.planner.variant_sim)."""
    c = r.candidate
    dep = make_deployment(sc.model, c.hardware, c.deployment)
    pricing = CandidatePricing(dep, c)
    rate = r.load_rate_per_s / pricing.attention_replicas
    try:
        replica_traffic = traffic.at_rate(rate)
    except HwsimError:
        replica_traffic = traffic
    requests = sample_requests(replica_traffic, serving.n_requests, serving.seed)
    replay = replay_for(pricing, requests, scheduler_config(r, serving))
    result = replay.real_result(run_simulation(replay.requests, replay.step_model, replay.config))
    slo = sc.slo
    goodput_slo = None
    if slo.ttft_p95_s or slo.tpot_p95_s or slo.e2e_p95_s:
        goodput_slo = Slo(ttft_s=slo.ttft_p95_s, tpot_s=slo.tpot_p95_s, e2e_s=slo.e2e_p95_s)
    summary = summarize(result, goodput_slo)
    out: dict[str, Any] = {
        "rate_per_s": rate,
        "n_requests": summary.n_requests,
        "ttft_p50_s": summary.ttft.p50_s,
        "ttft_p95_s": summary.ttft.p95_s,
        "ttft_p99_s": summary.ttft.p99_s,
        "tpot_p95_s": summary.tpot.p95_s,
        "e2e_p95_s": summary.e2e.p95_s,
        "queue_delay_p95_s": summary.queue_delay.p95_s,
        "preemptions": summary.preemptions,
        "kv_utilisation_mean": summary.kv.mean_fraction,
        "kv_utilisation_peak": summary.kv.peak_fraction,
        "goodput_fraction": summary.goodput.fraction if summary.goodput else None,
        "output_tokens_per_s": summary.output_tokens_per_s,
        "overloaded": summary.overloaded,
        "overload": summary.overload_reason,
        "sustained_rate_per_s": summary.sustained_rate_per_s,
    }
    add_slo_verdict(out, slo, r, bool(summary.overloaded))
    return out


def assumptions(sc: Scenario, work: Workload) -> list[str]:
    return [
        f"Traffic summarised from a seeded sample of {WORKLOAD_SAMPLE:,} requests: mean prompt "
        f"{work.prompt_mean:,.0f} tokens (p95 {work.prompt_p95:,.0f}), mean output "
        f"{work.output_mean:,.0f} tokens; sized for the peak rate {work.peak_rate_per_s:g}/s.",
        "Analytic steady state: continuous batching; prefill share rho = rate x prefill time; "
        "TPOT = decode step / (1 - rho); TTFT = p95 prompt's prefill + one decode step + M/D/1 "
        "wait; Little's law links batch and rate.",
        "Decode step priced at the mean context (prompt + output/2); KV capacity after weights "
        "and a chunked-prefill workspace at "
        f"{sc.deployment.memory_utilization:.0%} of device memory (each candidate's own "
        "memory_utilization where the search varies it).",
        "Replicas = ceil(peak / (per-replica rate at the SLO x (1 - headroom))); cost = GPUs x "
        "price per GPU-hour (hardware profile unless overridden); a month = 730 hours.",
        "Simulator: continuous batching with paged KV blocks, recompute preemption, the "
        "scheduling policy of each candidate's runtime (hwsim.serving.policies; the scenario's "
        f"deployment runs '{deployment_policy_name(sc.deployment)}'), iteration time from the "
        "same op-level engine; one replica at its share of the peak.",
        sc.deployment.runtime.describe(),
    ]


def simulate(scenario: str | Path | dict | Scenario, n_requests: int | None = None, seed: int = 0):
    """Simulate the scenario's own deployment (one replica at rate / dp, or a closed loop's
    clients / dp) with its traffic. ``n_requests``: default the traffic's own count
    (``arrivals.requests`` of a closed loop), else 2000.

    Returns ``(SimulationResult, ServingSummary)``: per-request records (arrival_s,
    first_token_s, finish_s, prompt and output tokens, preemptions) and the percentiles;
    ``hwsim.serving.benchmark_summary(result)`` gives the benchmark-style figures."""
    sc = as_scenario(scenario)
    traffic = traffic_of(sc)
    dep = make_deployment(sc.model, sc.hardware, sc.deployment)
    if dep.dp > 1:
        traffic = traffic.per_replica(dep.dp)
    probe = evaluate_single(sc, dep, Candidate(sc.hardware, sc.deployment))
    config = scheduler_config(probe, serving_of(sc))
    if n_requests is None:
        n_requests = traffic.requests_per_run or 2000
    requests = sample_requests(traffic, n_requests, seed)
    longest = (requests.prompt_tokens + requests.output_tokens).max()
    require_runnable(dep.model, longest, "the longest simulated request")
    result = run_simulation(requests, EngineStepModel(dep), config)
    slo = sc.slo
    goodput = None
    if slo.ttft_p95_s or slo.tpot_p95_s or slo.e2e_p95_s:
        goodput = Slo(ttft_s=slo.ttft_p95_s, tpot_s=slo.tpot_p95_s, e2e_s=slo.e2e_p95_s)
    return result, summarize(result, goodput)


def evaluate_single(sc: Scenario, dep, cand) -> CandidateResult:
    """KV capacity of the scenario's deployment (what the scheduler may fill)."""
    from hwsim.inference.capacity import free_bytes_for_cache
    from hwsim.inference.memory import kv_bytes_per_token_per_gpu, weight_bytes_per_gpu

    weights = weight_bytes_per_gpu(dep)
    free = float(free_bytes_for_cache(dep, float(dep.spec.max_num_batched_tokens), weights))
    per_token = kv_bytes_per_token_per_gpu(dep)
    kv_tokens = free / per_token if per_token > 0 else float("inf")
    if free <= 0:
        raise HwsimError(f"{sc.model} does not fit on {dep.hardware.id} with tp={dep.tp}")
    return CandidateResult(cand, True, kv_capacity_tokens=kv_tokens)
