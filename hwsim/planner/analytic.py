"""Analytic steady state of one candidate replica under continuous batching.

A replica serving lambda requests/s with b sequences decoding at once spends a share
rho = lambda * t_pf(S) of its time on prefill, so each decode step stretches to
t_dec(b) / (1 - rho). Little's law (L = lambda W, Little 1961) with W ~ G * TPOT gives
b = lambda * G * t_dec(b) / (1 - rho), i.e. lambda(b) = b / (G t_dec(b) + b t_pf(S)).
TTFT at quantile q is the q-quantile prompt's prefill plus one decode iteration plus the
q-quantile wait for the prefill "server", an M/G/1 queue: Pollaczek-Khinchine mean wait
W = rho t_pf (1 + c^2) / (2 (1 - rho)) with c^2 the squared coefficient of variation of the
prefilled prompt lengths (Kleinrock 1975, Queueing Systems I, eq. 5.85), and the usual
exponential tail for the wait, P(wait > t) = rho exp(-rho t / W), so that
wait_q = (W / rho) ln(rho / (1 - q)) when rho > 1 - q, else 0.
The planner takes the largest b that meets every SLO and fits in memory, then sizes
replicas = ceil(peak / (lambda(b) (1 - headroom))).

``slo.confidence: p90`` checks every SLO in the band's pessimistic world: the decode step and
the prefills at their p90 edge (``PhaseCost.band_s[1]``, never below the point value), so
lambda, rho, TPOT and TTFT are all computed from the slow edge and the binding batch and the
per-replica rate are those of that world; each step time can only grow, so p90 never gives a
larger batch or a higher rate (fewer replicas) than p50. A calibrated profile's band is its
calibration residuals'; a datasheet profile's the transfer band of published measurements
(:mod:`hwsim.perf.transfer`), wider: a device nobody calibrated is less certain.

The engine runtime (``DeploymentSpec.runtime``, :mod:`hwsim.profiles.runtime`): with CUDA
graphs a decode step drops its per-kernel launch overhead; the host overhead h of a scheduling
decision is paid once per k = ``num_scheduler_steps`` steps, t_dec = kernels + h / k (without
chunked prefill a prefill iteration is a decision of its own: t_pf + h). For k > 1 a new
request waits for the running block to end, ~k t_dec / 2 on average (an iteration with prefill
tokens is a block of its own, so its first token comes out at its end). Every TTFT adds the
per-request overhead (HTTP, tokenization).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from hwsim.errors import HwsimError
from hwsim.inference.capacity import free_bytes_for_cache, max_batch
from hwsim.inference.deployment import Deployment, make_deployment
from hwsim.inference.engine import pricing_label
from hwsim.inference.memory import kv_bytes_per_token_per_gpu
from hwsim.inference.runtime_terms import runtime_terms
from hwsim.planner.decode_variants import CandidatePricing
from hwsim.planner.spec import Candidate
from hwsim.profiles.scenario import SLO


@dataclass(frozen=True)
class Workload:
    """What the traffic asks of a replica, summarised for the analytic model."""

    peak_rate_per_s: float
    prompt_mean: float
    prompt_p95: float
    output_mean: float
    prefill_mean: float  # prompt tokens actually prefilled (prefix caching skips history)
    prefill_scv: float = 0.0  # squared coefficient of variation of the prefilled tokens
    prompt_p99: float | None = None  # defaults to prompt_p95
    longest_tokens: float | None = None  # the longest sampled request, prompt + output
    prompt_scv: float | None = None  # of the whole prompts (None: as prefill_scv)

    def for_engine(self, prefix_caching: bool) -> Workload:
        """What an engine prefills: the traffic's cacheable prefixes (multi-turn history, a
        shared system prompt) are skipped only with prefix caching on; without it every
        prompt is prefilled whole."""
        if prefix_caching or self.prefill_mean == self.prompt_mean:
            return self
        scv = self.prefill_scv if self.prompt_scv is None else self.prompt_scv
        return replace(self, prefill_mean=self.prompt_mean, prefill_scv=scv)


@dataclass
class CandidateResult:
    candidate: Candidate
    feasible: bool
    reason: str = ""
    replicas: int = 0
    gpus: int = 0
    price_per_gpu_hour_usd: float = float("nan")
    cost_per_hour_usd: float = float("nan")
    cost_per_million_output_tokens_usd: float = float("nan")
    per_replica_rate_per_s: float = float("nan")
    batch_at_slo: int = 0
    users_per_gpu: float = 0.0
    ttft_p95_s: float = float("nan")
    tpot_s: float = float("nan")
    e2e_s: float = float("nan")
    weights_bytes: float = float("nan")
    kv_capacity_tokens: float = float("nan")
    binding_constraint: str = ""
    load_rate_per_s: float = float("nan")
    ttft_p95_at_load_s: float = float("nan")
    # Little's law at the planned load: requests in flight (queued, prefilling or decoding)
    # per GPU = load x end-to-end time at that load / GPUs per replica
    in_flight_per_gpu_at_load: float = float("nan")
    tpot_at_load_s: float = float("nan")
    tpot_at_load_low_s: float | None = None  # p10-p90 band on a calibrated profile
    tpot_at_load_high_s: float | None = None
    ttft_p95_at_load_low_s: float | None = None  # the TTFT's band (prefill and decode bands)
    ttft_p95_at_load_high_s: float | None = None
    # the SLO checks' confidence: 'p50' (point values) or 'p90' (the band's high edge); with
    # p90 on a profile without a band, 'p50 (no band)': the point value, and slo_band says so
    slo_confidence: str = "p50"
    slo_band: str = ""
    pricing: str = ""  # the ladder rungs that priced the decode step, by share of its time
    simulated: dict = field(default_factory=dict)
    estimate: dict = field(default_factory=dict)
    load_curve: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("candidate", "load_curve")}
        out["candidate"] = self.candidate.to_dict()
        return out


def price_of(dep: Deployment, overrides: dict[str, float]) -> float:
    if dep.hardware.id in overrides:
        return overrides[dep.hardware.id]
    price = dep.hardware.price_per_hour_usd
    return price.value if price else float("nan")


def evaluate(
    model, cand: Candidate, work: Workload, slo: SLO, prices: dict[str, float]
) -> CandidateResult:
    try:
        dep = make_deployment(model, cand.hardware, cand.deployment)
    except HwsimError as exc:
        return CandidateResult(cand, False, str(exc))
    try:
        pricing = CandidatePricing(dep, cand)
        weights = pricing.weights_bytes()
    except HwsimError as exc:
        return CandidateResult(cand, False, str(exc))
    usable = dep.usable_bytes
    if weights > usable:
        return CandidateResult(
            cand,
            False,
            f"weights do not fit: {weights / 1e9:.1f} GB > {usable / 1e9:.1f} GB usable per GPU",
            weights_bytes=weights,
        )
    work = work.for_engine(dep.spec.prefix_caching)
    try:
        return _steady_state(pricing, work, slo, price_of(dep, prices), weights)
    except HwsimError as exc:
        return CandidateResult(cand, False, str(exc), weights_bytes=weights)


def prefill_wait_quantile_s(rho, t_pf: float, scv: float, q: float) -> np.ndarray:
    """q-quantile of the wait in an M/G/1 prefill queue (module docstring): Pollaczek-Khinchine
    mean wait with an exponential tail beyond the probability rho of waiting at all."""
    rho = np.asarray(rho, dtype=float)
    mean_wait = rho * t_pf * (1.0 + scv) / (2.0 * (1.0 - rho))
    tail = 1.0 - q
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = mean_wait / rho * np.log(rho / tail)
    return np.where(rho > tail, wait, 0.0)


def _steady_state(
    pricing: CandidatePricing, work: Workload, slo: SLO, price: float, weights: float
) -> CandidateResult:
    dep, cand = pricing.dep, pricing.candidate
    g = work.output_mean
    rt = runtime_terms(dep)
    pf = rt.prefill_overhead_s
    p99_len = work.prompt_p99 or work.prompt_p95
    lengths = (work.prefill_mean, work.prompt_p95, p99_len)
    prefills = [pricing.prefill(x) for x in lengths]
    t_pf, t_pf_p95, t_pf_p99 = (float(np.ravel(c.time_s)[0]) + pf for c in prefills)
    context = work.prompt_mean + g
    free = free_bytes_for_cache(dep, min(work.prompt_p95, dep.spec.max_num_batched_tokens), weights)
    free = free * pricing.cache_share(context)
    by_memory = int(max_batch(dep, context, free))
    replicas_inside = pricing.attention_replicas  # an EP group's attention replicas
    gpus_per_replica = pricing.gpus_per_replica
    limit = min(by_memory, dep.spec.max_num_seqs)
    per_token = kv_bytes_per_token_per_gpu(dep)
    kv_tokens = float(free) / per_token if per_token > 0 else float("inf")
    base = CandidateResult(
        cand,
        False,
        weights_bytes=weights,
        price_per_gpu_hour_usd=price,
        kv_capacity_tokens=kv_tokens,
    )
    if limit < 1:
        base.reason = f"KV cache for one {context:.0f}-token sequence does not fit"
        return base
    if g == 0:
        h = rt.decode_overhead_s * rt.steps if rt.chunked else 0.0  # every prefill decides
        t_pfs = (t_pf + h, t_pf_p95 + h, t_pf_p99 + h)
        base.slo_confidence = slo.confidence
        if slo.confidence == "p90":
            base.slo_confidence = "p50 (no band)"
            base.slo_band = "no band used: a prefill-only workload is checked at the point value"
        return _prefill_only(pricing, work, slo, base, t_pfs, rt.request_overhead_s)
    b = np.arange(1, limit + 1, dtype=float)
    step, per_step = pricing.decode_step(b, work.prompt_mean + g / 2)
    steps = g / per_step  # decode iterations per request (speculation yields E tokens each)

    def world(edge: int | None):
        """(lam, rho, t_dec, tpot, ttft, ttft_p99) with every step at ``edge`` of its band
        (0: p10, 1: p90; None: the point); a phase without a band keeps its point value."""
        kernels = step.time_s if edge is None or step.band_s is None else step.band_s[edge]
        if edge == 1:
            kernels = np.maximum(kernels, step.time_s)
        pfs = []
        for cost in prefills:
            t = float(cost.time_s)
            if edge is not None and cost.band_s is not None:
                t = float(np.ravel(cost.band_s[edge])[0])
                t = max(t, float(cost.time_s)) if edge == 1 else t
            pfs.append(t + pf)
        t_pf, t_pf_p95, t_pf_p99 = pfs
        t_dec = rt.decode_step_s(kernels, b)
        lam = b / (steps * t_dec + b * t_pf)  # per attention replica
        rho = lam * t_pf
        extra = rt.ttft_extra_s(t_dec)
        scv = work.prefill_scv
        ttft = t_pf_p95 + t_dec + extra + prefill_wait_quantile_s(rho, t_pf, scv, 0.95)
        ttft_p99 = t_pf_p99 + t_dec + extra + prefill_wait_quantile_s(rho, t_pf, scv, 0.99)
        return lam, rho, t_dec, t_dec / per_step / (1 - rho), ttft, ttft_p99, t_pf

    has_band = step.band_s is not None or any(c.band_s is not None for c in prefills)
    lam, rho, t_dec, tpot, ttft, ttft_p99, t_pf = world(None)
    extra = rt.ttft_extra_s(t_dec)
    e2e = ttft + (g - 1) * tpot
    base.slo_confidence = slo.confidence
    if slo.confidence == "p90" and has_band:
        base.slo_band = "SLOs checked at the p10-p90 band's high (p90) edge" + (
            " (transfer band: published measurements against hwsim's datasheet rung, for a "
            "device nobody calibrated)"
            if dep.hardware.calibration is None and dep.measurements is None
            else ""
        )
        s_lam, _, _, s_tpot, s_ttft, s_ttft_p99, _ = world(1)
        s_e2e = s_ttft + (g - 1) * s_tpot
    else:
        if slo.confidence == "p90":
            base.slo_confidence = "p50 (no band)"
            base.slo_band = (
                "no band: this profile gives no p10-p90 band (datasheet); SLOs checked at "
                "the point value"
            )
        s_lam, s_tpot, s_ttft, s_ttft_p99, s_e2e = lam, tpot, ttft, ttft_p99, e2e
    checks = {
        "tpot_p95": (slo.tpot_p95_s, s_tpot),
        "ttft_p95": (slo.ttft_p95_s, s_ttft),
        "ttft_p99": (slo.ttft_p99_s, s_ttft_p99),
        "e2e_p95": (slo.e2e_p95_s, s_e2e),
    }
    edge = " at p90" if base.slo_confidence == "p90" else ""
    for name, (target, value) in list(checks.items()):
        if target is None:
            del checks[name]
        elif value[0] > target:
            base.reason = (
                f"{name} SLO unreachable even at batch 1{edge}: "
                f"{value[0] * 1e3:.1f} ms > {target * 1e3:.1f} ms"
            )
            return base
    ok = np.logical_and.reduce([v <= t for t, v in checks.values()] or [np.ones_like(b, bool)])
    i = int(np.argmin(ok)) - 1 if not ok.all() else len(b) - 1  # last b before the first miss
    if ok.all():
        binding = "memory" if limit == by_memory else "max_num_seqs"
    else:
        binding = next(f"{k} SLO{edge}" for k, (t, v) in checks.items() if v[i + 1] > t)
    rate = float(s_lam[i]) * replicas_inside * (1 - slo.headroom_fraction)
    replicas = math.ceil(work.peak_rate_per_s / rate)
    gpus = replicas * gpus_per_replica
    cost = gpus * price
    tokens_per_hour = work.peak_rate_per_s * g * 3600
    load = work.peak_rate_per_s / replicas  # what each replica actually serves at the peak
    mean_wait = rho * t_pf * (1.0 + work.prefill_scv) / (2.0 * (1.0 - rho))  # P-K mean
    e2e_mean = t_pf + t_dec + extra + mean_wait + (g - 1) * tpot
    curves = {"ttft": ttft, "tpot": tpot, "e2e_mean": e2e_mean}
    if has_band:  # the band at the planned load, against the point world's rate
        curves |= {"ttft_low": world(0)[4], "ttft_high": world(1)[4]}
    if step.band_s is not None:
        low, high = (rt.decode_step_s(x, b) / per_step for x in step.band_s)
        curves |= {"tpot_low": low / (1 - rho), "tpot_high": high / (1 - rho)}
    inside = load / replicas_inside  # what each attention replica serves
    at_load = {k: float(np.interp(inside, lam, v)) for k, v in curves.items()}
    return CandidateResult(
        cand,
        True,
        replicas=replicas,
        gpus=gpus,
        price_per_gpu_hour_usd=price,
        cost_per_hour_usd=cost,
        cost_per_million_output_tokens_usd=cost / tokens_per_hour * 1e6,
        per_replica_rate_per_s=rate,
        batch_at_slo=int(b[i]) * replicas_inside,
        users_per_gpu=float(b[i]) * replicas_inside / gpus_per_replica,
        ttft_p95_s=float(ttft[i]),
        tpot_s=float(tpot[i]),
        e2e_s=float(e2e[i]),
        weights_bytes=weights,
        kv_capacity_tokens=kv_tokens,
        binding_constraint=binding,
        load_rate_per_s=load,
        ttft_p95_at_load_s=at_load["ttft"],
        in_flight_per_gpu_at_load=load * at_load["e2e_mean"] / gpus_per_replica,
        tpot_at_load_s=at_load["tpot"],
        tpot_at_load_low_s=at_load.get("tpot_low"),
        tpot_at_load_high_s=at_load.get("tpot_high"),
        ttft_p95_at_load_low_s=at_load.get("ttft_low"),
        ttft_p95_at_load_high_s=at_load.get("ttft_high"),
        slo_confidence=base.slo_confidence,
        slo_band=base.slo_band,
        pricing=pricing_label(step, i),
        load_curve={
            "rate_per_s": lam * replicas_inside,
            "ttft_s": ttft,
            "tpot_s": tpot,
            "batch": b * replicas_inside,
        },
    )


PREFILL_ONLY_LOADS = np.linspace(0.005, 0.995, 199)  # prefill server utilisations searched


def _prefill_only(
    pricing: CandidatePricing,
    work: Workload,
    slo: SLO,
    base: CandidateResult,
    t_pfs: tuple,
    ttft_extra_s: float = 0.0,
) -> CandidateResult:
    """No output tokens (embedding, scoring, reranking, an encoder): a request is one prefill,
    so a replica is the M/G/1 prefill server alone (module docstring): lambda = rho / t_pf,
    TTFT_q = t_pf(q-quantile prompt) + wait_q(rho) = end to end. The planner takes the
    largest rho that meets the TTFT and e2e SLOs; a TPOT SLO does not apply (no decode)."""
    inside = pricing.attention_replicas
    t_pf, t_pf_p95, t_pf_p99 = t_pfs
    rho = PREFILL_ONLY_LOADS
    lam = rho / t_pf
    ttft = t_pf_p95 + ttft_extra_s + prefill_wait_quantile_s(rho, t_pf, work.prefill_scv, 0.95)
    ttft_p99 = t_pf_p99 + ttft_extra_s + prefill_wait_quantile_s(rho, t_pf, work.prefill_scv, 0.99)
    checks = {
        "ttft_p95": (slo.ttft_p95_s, ttft),
        "ttft_p99": (slo.ttft_p99_s, ttft_p99),
        "e2e_p95": (slo.e2e_p95_s, ttft),
    }
    checks = {k: v for k, v in checks.items() if v[0] is not None}
    ok = np.logical_and.reduce([v <= t for t, v in checks.values()] or [np.ones_like(rho, bool)])
    if not ok[0]:
        name = next(k for k, (t, v) in checks.items() if v[0] > t)
        base.reason = f"{name} SLO unreachable even at an idle replica: {ttft[0] * 1e3:.1f} ms"
        return base
    i = int(np.argmin(ok)) - 1 if not ok.all() else len(rho) - 1
    binding = (
        "prefill utilisation"
        if ok.all()
        else next(f"{k} SLO" for k, (t, v) in checks.items() if v[i + 1] > t)
    )
    rate = float(lam[i]) * inside * (1 - slo.headroom_fraction)
    replicas = math.ceil(work.peak_rate_per_s / rate)
    gpus = replicas * pricing.gpus_per_replica
    load = work.peak_rate_per_s / replicas / inside  # per attention replica
    mean_wait = rho * t_pf * (1.0 + work.prefill_scv) / (2.0 * (1.0 - rho))
    in_flight = lam * (t_pf + mean_wait)  # Little's law: requests waiting or in prefill
    nan = np.full_like(rho, np.nan)
    prefill = pricing.prefill(work.prefill_mean)
    base.feasible, base.reason = True, ""
    base.replicas, base.gpus = replicas, gpus
    base.cost_per_hour_usd = gpus * base.price_per_gpu_hour_usd
    base.per_replica_rate_per_s = rate
    base.batch_at_slo = 1
    base.users_per_gpu = float(in_flight[i]) * inside / pricing.gpus_per_replica
    base.ttft_p95_s, base.e2e_s = float(ttft[i]), float(ttft[i])
    base.binding_constraint = binding
    base.load_rate_per_s = load * inside
    base.ttft_p95_at_load_s = float(np.interp(load, lam, ttft))
    wait_at_load = float(np.interp(load, lam, mean_wait))
    base.in_flight_per_gpu_at_load = (
        load * inside * (t_pf + wait_at_load) / pricing.gpus_per_replica
    )
    base.pricing = pricing_label(prefill)
    base.load_curve = {
        "rate_per_s": lam * inside,
        "ttft_s": ttft,
        "tpot_s": nan,
        "batch": rho * 0 + 1,
    }
    return base
