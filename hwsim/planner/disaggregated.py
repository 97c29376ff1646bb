"""Disaggregated serving: a prefill pool and a decode pool, sized against the TTFT and TPOT SLOs.

A disaggregated candidate runs each request's prefill on a *prefill instance* and its decode
steps on a *decode instance*; the prompt's KV cache moves from one to the other
(:mod:`hwsim.inference.kv_transfer`). Each pool has its own device, layout (tp, pp) and count
(DistServe, Zhong et al. 2024, arXiv 2401.09670, section 4.1, Algorithm 1: optimise each
phase's configuration for its per-GPU goodput, then replicate each to the traffic rate;
Splitwise, Patel et al. 2024, arXiv 2311.18677, section 4.4: prompt and token machine pools,
possibly of different devices). ``candidates.disaggregated: [false, true]`` adds, next to the
aggregated candidates, every pair (prefill configuration, decode configuration) of the same
expanded hardware x deployment list whose weight and KV dtypes agree.

**Prefill pool.** A prefill replica runs one prompt at a time, first come first served: an
M/G/1 queue (DistServe section 3.1 models it as M/D/1, eq. 1; variable prompt lengths make it
M/G/1), priced with the analytic planner's Pollaczek-Khinchine wait and exponential tail
(:func:`hwsim.planner.analytic.prefill_wait_quantile_s`). At utilisation rho a replica takes
lambda_p = rho / t_pf(mean prefilled prompt) requests/s and

    TTFT_q = t_pf(q-quantile prompt) + wait_q(rho) + request overhead [+ first-token terms]

where the first-token terms apply with ``first_token_from: decode`` (the default, conservative:
the user's stream comes from the decode instance, as behind vLLM's disaggregated-prefill
proxy): the exposed KV transfer of the q-quantile prompt plus one decode step at the decode
pool's operating batch (and the wait for a block boundary with multi-step scheduling). With
``first_token_from: prefill`` (DistServe section 2.3, Splitwise section 4.3: the prefill
instance emits the first token) the TTFT is the prefill's alone and the exposed transfer
delays the second token, which adds exposed / (G - 1) to the request's TPOT. The planner takes
the largest rho (a grid of 999 utilisations) that meets the TTFT p95 / p99 SLOs and the
end-to-end SLO (TTFT + (G - 1) TPOT with the decode pool's TPOT), and sizes
P = ceil(peak / (lambda_p (1 - headroom))) prefill replicas.

**Decode pool.** A decode replica holds b sequences, each decoding every step with no prefill
in between: TPOT(b) = t_dec(b) (the engine's decode step at the mean context, prompt +
output / 2, with the runtime's host overhead and CUDA-graph saving). b is capped by memory (the
KV of b sequences at prompt + output tokens after weights and a b-token workspace) and by
max_num_seqs, and is the largest that meets the TPOT SLO. A request occupies a slot for its
exposed transfer plus its decode steps (G with ``first_token_from: decode``, G - 1 with
``prefill``), so by Little's law (L = lambda W, Little 1961) a replica serves
lambda_d = b / (exposed + steps x t_dec(b)) requests/s and the pool needs
D = ceil(peak / (lambda_d (1 - headroom))) replicas.

**Cost and goodput.** GPUs = P x prefill GPUs per replica + D x decode GPUs per replica, each
at its own price. ``goodput_per_gpu`` is the SLO-meeting rate per GPU before rounding and
headroom, 1 / (g_p / lambda_p + g_d / lambda_d) (DistServe's per-GPU goodput), comparable with
an aggregated candidate's lambda / GPUs per replica.

What a disaggregated result's shared fields mean: ``replicas`` and ``gpus`` are both pools
together, ``per_replica_rate_per_s`` / ``load_rate_per_s`` / ``load_curve`` are a *prefill*
replica's (TTFT against its load), ``batch_at_slo`` / ``users_per_gpu`` /
``kv_capacity_tokens`` / ``weights_bytes`` / ``pricing`` are the *decode* pool's (per decode
GPU), and the ``prefill_*`` / ``decode_*`` / ``kv_*`` fields give each pool and the transfer.

Not modelled (stated): batching several short prompts in one prefill iteration (DistServe
batches prompts below its saturation length L_m: this model is pessimistic for short prompts),
pipeline bubbles of pp > 1 prefill instances with uneven prompts, contention for the links, and
the decode instance's queue when its KV memory is full (DistServe's pull-based transfer keeps
waiting requests on the prefill side). The serving simulator replays the cheapest
``serving.simulate_top`` disaggregated candidates with both pools and the hand-over
(:mod:`hwsim.planner.disaggregated_sim`); the others stay analytic (:data:`ANALYTIC_ONLY`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwsim.errors import HwsimError
from hwsim.inference.capacity import free_bytes_for_cache, max_batch
from hwsim.inference.deployment import Deployment, make_deployment
from hwsim.inference.engine import PhaseCost, decode_step_cost, prefill_cost, pricing_label
from hwsim.inference.kv_transfer import KvTransfer, kv_transfer
from hwsim.inference.memory import (
    cache_bytes_per_sequence_per_gpu,
    kv_bytes_per_token_per_gpu,
    weight_bytes_per_gpu,
)
from hwsim.inference.runtime_terms import RuntimeTerms, runtime_terms
from hwsim.planner.analytic import CandidateResult, Workload, prefill_wait_quantile_s, price_of
from hwsim.planner.spec import Candidate, DisaggregationSpec
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.scenario import SLO

ANALYTIC_ONLY = "analytic only (beyond serving.simulate_top: not replayed)"
PREFILL_LOADS = np.linspace(0.001, 0.999, 999)  # prefill-server utilisations searched


@dataclass(frozen=True, kw_only=True)
class DisaggregatedCandidate(Candidate):
    """A prefill pool and a decode pool. ``hardware`` and ``deployment`` (what every consumer
    of a :class:`Candidate` reads) are the decode pool's; ``prefill_*`` the prefill pool's."""

    prefill_hardware: str
    prefill_deployment: DeploymentSpec

    disaggregated = True

    @property
    def prefill_label(self) -> str:
        return f"{self.prefill_hardware} {self.prefill_deployment.label}"

    @property
    def decode_label(self) -> str:
        return f"{self.hardware} {self.deployment.label}"

    @property
    def label(self) -> str:
        return f"P {self.prefill_label} + D {self.decode_label}"

    @property
    def group(self) -> str:
        """How the report groups it: by both devices."""
        return f"disaggregated: prefill {self.prefill_hardware}, decode {self.hardware}"

    def to_dict(self) -> dict:
        prefill = {"hardware": self.prefill_hardware, **self.prefill_deployment.model_dump()}
        decode = {"hardware": self.hardware, **self.deployment.model_dump()}
        return {
            **super().to_dict(),
            "prefill": {**prefill, "label": self.prefill_label},
            "decode": {**decode, "label": self.decode_label},
        }


@dataclass
class DisaggregatedResult(CandidateResult):
    """A :class:`~hwsim.planner.analytic.CandidateResult` with both pools and the transfer
    (module docstring: which shared fields are which pool's)."""

    confirmation: str = ANALYTIC_ONLY
    prefill_replicas: int = 0
    decode_replicas: int = 0
    prefill_gpus: int = 0
    decode_gpus: int = 0
    prefill_rate_per_replica_s: float = float("nan")  # at the SLO, before headroom
    decode_rate_per_replica_s: float = float("nan")
    prefill_utilisation_at_slo: float = float("nan")
    decode_batch_at_load: float = float("nan")
    prefill_binding: str = ""
    decode_binding: str = ""
    prefill_price_per_gpu_hour_usd: float = float("nan")
    decode_price_per_gpu_hour_usd: float = float("nan")
    goodput_per_gpu: float = float("nan")  # 1 / (g_p / lambda_p + g_d / lambda_d)
    first_token_from: str = "decode"
    kv_bytes_per_request: float = float("nan")  # at the mean prompt
    kv_transfer_s: float = float("nan")  # the whole hand-over, mean prompt
    kv_transfer_exposed_s: float = float("nan")  # after the overlap, mean prompt
    kv_transfer_exposed_p95_s: float = float("nan")  # the p95 prompt's
    kv_transfer: dict = field(default_factory=dict)  # KvTransfer of the mean prompt

    @property
    def pools_text(self) -> str:
        """One line for the report: both pools and the transfer."""
        c = self.candidate
        assert isinstance(c, DisaggregatedCandidate)
        return (
            f"prefill {self.prefill_replicas} x tp{c.prefill_deployment.tp}"
            f"{_pp(c.prefill_deployment)} = {self.prefill_gpus} GPUs, decode "
            f"{self.decode_replicas} x tp{c.deployment.tp}{_pp(c.deployment)} = "
            f"{self.decode_gpus} GPUs; KV {self.kv_bytes_per_request / 1e9:,.2f} GB per request "
            f"in {self.kv_transfer_s * 1e3:,.2f} ms over "
            f"{self.kv_transfer.get('link', '?')} ({self.kv_transfer_exposed_s * 1e3:,.2f} ms "
            "exposed)"
        )


def _pp(spec: DeploymentSpec) -> str:
    return f" pp{spec.pp}" if spec.pp > 1 else ""


# -- each pool on its own ----------------------------------------------------------------------
@dataclass
class _Pool:
    """One candidate configuration priced as a prefill or a decode instance (or why not)."""

    cand: Candidate
    reason: str = ""
    dep: Deployment | None = None
    rt: RuntimeTerms | None = None
    weights: float = float("nan")
    price: float = float("nan")
    band_used: bool = False
    # prefill: kernel seconds of the mean / p95 / p99 prompt and the host overhead per prefill
    t_pf: tuple[float, float, float] = (float("nan"),) * 3
    host_s: float = 0.0
    # decode: batches searched, their step times, what capped them, KV tokens per GPU
    b: np.ndarray = field(default_factory=lambda: np.zeros(0))
    t_dec: np.ndarray = field(default_factory=lambda: np.zeros(0))
    step: PhaseCost | None = None
    limit: int = 0
    by_memory: int = 0
    kv_tokens: float = float("nan")


def _edge_time(cost: PhaseCost, edge: int | None) -> np.ndarray:
    """A phase's time at the band's p90 edge (``edge`` 1, never below the point value) or its
    point value (None, or no band)."""
    t = np.asarray(cost.time_s, dtype=float)
    if edge is None or cost.band_s is None:
        return t
    return np.maximum(np.asarray(cost.band_s[edge], dtype=float), t)


def _deploy(model, cand: Candidate, prices: dict[str, float]) -> _Pool:
    pool = _Pool(cand)
    try:
        dep = make_deployment(model, cand.hardware, cand.deployment)
    except HwsimError as exc:
        pool.reason = str(exc)
        return pool
    pool.dep, pool.rt = dep, runtime_terms(dep)
    pool.weights = weight_bytes_per_gpu(dep)
    pool.price = price_of(dep, prices)
    if pool.weights > dep.usable_bytes:
        pool.reason = (
            f"weights do not fit: {pool.weights / 1e9:.1f} GB > {dep.usable_bytes / 1e9:.1f} GB "
            "usable per GPU"
        )
    return pool


def prefill_pool(model, cand: Candidate, work: Workload, slo: SLO, prices) -> _Pool:
    """``cand`` as a prefill instance: its prefill times (mean, p95, p99 prompt) and whether
    one longest prompt's cache fits beside the weights."""
    pool = _deploy(model, cand, prices)
    if pool.reason or pool.dep is None:
        return pool
    dep = pool.dep
    work = work.for_engine(dep.spec.prefix_caching)
    p99 = work.prompt_p99 or work.prompt_p95
    free = float(free_bytes_for_cache(dep, min(p99, dep.spec.max_num_batched_tokens), pool.weights))
    need = float(np.ravel(cache_bytes_per_sequence_per_gpu(dep, p99))[0])
    if need > free:
        pool.reason = (
            f"the KV cache of one {p99:,.0f}-token prompt ({need / 1e9:.1f} GB per GPU) does not "
            f"fit in the {free / 1e9:.1f} GB left after the weights"
        )
        return pool
    edge = 1 if slo.confidence == "p90" else None
    costs = [prefill_cost(dep, 1.0, x) for x in (work.prefill_mean, work.prompt_p95, p99)]
    pool.band_used = edge is not None and all(c.band_s is not None for c in costs)
    mean, p95, q99 = (float(np.ravel(_edge_time(c, edge))[0]) for c in costs)
    pool.t_pf = (mean, p95, q99)
    pool.host_s = dep.spec.runtime.iteration_overhead_s  # each prefill is one decision
    return pool


def decode_pool(model, cand: Candidate, work: Workload, slo: SLO, prices) -> _Pool:
    """``cand`` as a decode instance: step times for every batch memory and max_num_seqs allow."""
    pool = _deploy(model, cand, prices)
    if pool.reason or pool.dep is None or pool.rt is None:
        return pool
    dep, rt = pool.dep, pool.rt
    g = work.output_mean
    context = work.prompt_mean + g
    tokens = min(dep.spec.max_num_seqs, dep.spec.max_num_batched_tokens)  # one step's tokens
    free = float(free_bytes_for_cache(dep, tokens, pool.weights))
    per_token = kv_bytes_per_token_per_gpu(dep)
    pool.kv_tokens = free / per_token if per_token > 0 else float("inf")
    pool.by_memory = int(max_batch(dep, context, free))
    pool.limit = min(pool.by_memory, dep.spec.max_num_seqs)
    if pool.limit < 1:
        pool.reason = f"the KV cache of one {context:,.0f}-token sequence does not fit"
        return pool
    edge = 1 if slo.confidence == "p90" else None
    pool.b = np.arange(1, pool.limit + 1, dtype=float)
    pool.step = decode_step_cost(dep, pool.b, work.prompt_mean + g / 2)
    pool.band_used = edge is not None and pool.step.band_s is not None
    pool.t_dec = np.asarray(rt.decode_step_s(_edge_time(pool.step, edge), pool.b), dtype=float)
    return pool


# -- a pair of pools ---------------------------------------------------------------------------
def _last_ok(ok: np.ndarray) -> int:
    """Index of the last True before the first False (ok[0] is True)."""
    return int(np.argmin(ok)) - 1 if not ok.all() else len(ok) - 1


def evaluate_pair(
    pre: _Pool, dec: _Pool, work: Workload, slo: SLO, spec: DisaggregationSpec
) -> DisaggregatedResult:
    """Size both pools of one pair against the SLOs at the traffic's peak (module docstring)."""
    cand = DisaggregatedCandidate(
        hardware=dec.cand.hardware,
        deployment=dec.cand.deployment,
        prefill_hardware=pre.cand.hardware,
        prefill_deployment=pre.cand.deployment,
    )
    out = DisaggregatedResult(cand, False, first_token_from=spec.first_token_from)
    if pre.reason:
        out.reason = f"prefill pool: {pre.reason}"
        return out
    if dec.reason:
        out.reason = f"decode pool: {dec.reason}"
        return out
    p, d = pre.cand.deployment, dec.cand.deployment
    if (p.weight_dtype, p.kv_dtype) != (d.weight_dtype, d.kv_dtype):
        out.reason = (
            f"the pools' dtypes differ (prefill w:{p.weight_dtype} kv:{p.kv_dtype}, decode "
            f"w:{d.weight_dtype} kv:{d.kv_dtype}): the decode instance reads the KV cache "
            "the prefill instance computed"
        )
        return out
    g = work.output_mean
    if g <= 0:
        out.reason = "no output tokens: nothing to decode, disaggregation does not apply"
        return out
    assert pre.dep is not None and dec.dep is not None and dec.rt is not None
    assert pre.rt is not None and dec.step is not None
    p99 = work.prompt_p99 or work.prompt_p95
    lengths = (work.prompt_mean, work.prompt_p95, p99)
    try:
        moves: list[KvTransfer] = [
            kv_transfer(
                pre.dep,
                dec.dep,
                x,
                placement=spec.placement,
                overlap=spec.kv_overlap,
                prefill_compute_s=t,
            )
            for x, t in zip(lengths, pre.t_pf)
        ]
    except HwsimError as exc:
        out.reason = f"KV transfer: {exc}"
        return out
    x_mean, x95, x99 = (m.exposed_s for m in moves)
    from_prefill = spec.first_token_from == "prefill"

    # decode pool: the largest batch that meets the TPOT SLO, Little's law for its rate
    stretch = x95 / (g - 1) if from_prefill and g > 1 else 0.0
    tpot = dec.t_dec + stretch
    steps = max(g - 1.0, 1.0) if from_prefill else g
    lam_d = dec.b / (x_mean + steps * dec.t_dec)
    ok = np.ones_like(dec.b, dtype=bool)
    if slo.tpot_p95_s is not None:
        ok = tpot <= slo.tpot_p95_s
        if not ok[0]:
            out.reason = (
                f"decode pool: tpot_p95 SLO unreachable even at batch 1: "
                f"{tpot[0] * 1e3:.1f} ms > {slo.tpot_p95_s * 1e3:.1f} ms"
            )
            return out
    last = _last_ok(ok)
    i = int(np.argmax(lam_d[: last + 1]))
    if ok.all():
        decode_binding = "memory" if dec.limit == dec.by_memory else "max_num_seqs"
    else:
        decode_binding = "tpot_p95 SLO"
    t_dec = float(dec.t_dec[i])

    # prefill pool: the largest utilisation that meets the TTFT (and end-to-end) SLOs
    rho = PREFILL_LOADS
    t_mean = pre.t_pf[0] + pre.host_s
    caching = pre.dep is not None and pre.dep.spec.prefix_caching
    scv = work.for_engine(caching).prefill_scv
    head = pre.rt.request_overhead_s
    first95 = first99 = 0.0
    if not from_prefill:
        block = dec.rt.steps * t_dec / 2 if dec.rt.steps > 1 else 0.0
        first95, first99 = x95 + t_dec + block, x99 + t_dec + block
    ttft95 = (
        pre.t_pf[1] + pre.host_s + head + first95
        + prefill_wait_quantile_s(rho, t_mean, scv, 0.95)
    )  # fmt: skip
    ttft99 = (
        pre.t_pf[2] + pre.host_s + head + first99
        + prefill_wait_quantile_s(rho, t_mean, scv, 0.99)
    )  # fmt: skip
    e2e = ttft95 + (g - 1) * float(tpot[i])
    checks = {
        name: (target, value)
        for name, target, value in (
            ("ttft_p95", slo.ttft_p95_s, ttft95),
            ("ttft_p99", slo.ttft_p99_s, ttft99),
            ("e2e_p95", slo.e2e_p95_s, e2e),
        )
        if target is not None
    }
    okp = np.logical_and.reduce([v <= t for t, v in checks.values()] or [np.ones_like(rho, bool)])
    if not okp[0]:
        name = next(k for k, (t, v) in checks.items() if v[0] > t)
        target, value = checks[name]
        out.reason = (
            f"prefill pool: {name} SLO unreachable even at an idle prefill replica: "
            f"{value[0] * 1e3:.1f} ms > {target * 1e3:.1f} ms"
        )
        return out
    j = _last_ok(okp)
    prefill_binding = (
        "prefill utilisation"
        if okp.all()
        else next(f"{k} SLO" for k, (t, v) in checks.items() if v[j + 1] > t)
    )
    lam_p = rho / t_mean

    # both pools at the peak
    keep = 1.0 - slo.headroom_fraction
    rate_p, rate_d = float(lam_p[j]) * keep, float(lam_d[i]) * keep
    n_p = math.ceil(work.peak_rate_per_s / rate_p)
    n_d = math.ceil(work.peak_rate_per_s / rate_d)
    g_p, g_d = pre.dep.gpus_per_replica, dec.dep.gpus_per_replica
    gpus_p, gpus_d = n_p * g_p, n_d * g_d
    cost = gpus_p * pre.price + gpus_d * dec.price
    load_p, load_d = work.peak_rate_per_s / n_p, work.peak_rate_per_s / n_d
    ttft_at_load = float(np.interp(load_p, lam_p, ttft95))
    rising = lam_d[: i + 1]
    if np.all(np.diff(rising) > 0):
        tpot_at_load = float(np.interp(load_d, rising, tpot[: i + 1]))
        batch_at_load = float(np.interp(load_d, rising, dec.b[: i + 1]))
    else:  # a step time that grows faster than the batch: keep the operating point
        tpot_at_load, batch_at_load = float(tpot[i]), float(dec.b[i])
    rho_load = load_p * t_mean
    mean_wait = rho_load * t_mean * (1.0 + scv) / (2.0 * (1.0 - rho_load))
    first_mean = 0.0 if from_prefill else x_mean + t_dec
    in_system = t_mean + head + mean_wait + first_mean + (g - 1) * tpot_at_load
    tokens_per_hour = work.peak_rate_per_s * g * 3600

    out.feasible, out.reason = True, ""
    out.replicas, out.gpus = n_p + n_d, gpus_p + gpus_d
    out.price_per_gpu_hour_usd = cost / (gpus_p + gpus_d)  # the pools' mean price per GPU
    out.cost_per_hour_usd = cost
    out.cost_per_million_output_tokens_usd = cost / tokens_per_hour * 1e6
    out.per_replica_rate_per_s = rate_p
    out.batch_at_slo = int(dec.b[i])
    out.users_per_gpu = float(dec.b[i]) / g_d
    out.ttft_p95_s = float(ttft95[j])
    out.tpot_s = float(tpot[i])
    out.e2e_s = float(e2e[j])
    out.weights_bytes = dec.weights
    out.kv_capacity_tokens = dec.kv_tokens
    out.binding_constraint = f"prefill: {prefill_binding}; decode: {decode_binding}"
    out.load_rate_per_s = load_p
    out.ttft_p95_at_load_s = ttft_at_load
    out.in_flight_per_gpu_at_load = work.peak_rate_per_s * in_system / (gpus_p + gpus_d)
    out.tpot_at_load_s = tpot_at_load
    out.pricing = pricing_label(dec.step, i)
    out.load_curve = {
        "rate_per_s": lam_p,
        "ttft_s": ttft95,
        "tpot_s": np.full_like(rho, tpot_at_load),
        "batch": np.ones_like(rho),
    }
    out.slo_confidence = slo.confidence
    if slo.confidence == "p90":
        if pre.band_used and dec.band_used:
            out.slo_band = "SLOs checked at the p10-p90 band's high (p90) edge, both pools"
        else:
            out.slo_confidence = "p50 (no band)"
            out.slo_band = (
                "no band: a pool's profile gives no p10-p90 band (datasheet); SLOs checked "
                "at the point value"
            )
    out.prefill_replicas, out.decode_replicas = n_p, n_d
    out.prefill_gpus, out.decode_gpus = gpus_p, gpus_d
    out.prefill_rate_per_replica_s, out.decode_rate_per_replica_s = (
        float(lam_p[j]),
        float(lam_d[i]),
    )
    out.prefill_utilisation_at_slo = float(rho[j])
    out.decode_batch_at_load = batch_at_load
    out.prefill_binding, out.decode_binding = prefill_binding, decode_binding
    out.prefill_price_per_gpu_hour_usd = pre.price
    out.decode_price_per_gpu_hour_usd = dec.price
    out.goodput_per_gpu = 1.0 / (g_p / float(lam_p[j]) + g_d / float(lam_d[i]))
    out.kv_bytes_per_request = moves[0].bytes_per_request
    out.kv_transfer_s = moves[0].transfer_s
    out.kv_transfer_exposed_s = x_mean
    out.kv_transfer_exposed_p95_s = x95
    out.kv_transfer = moves[0].to_dict()
    return out


def evaluate_disaggregated(
    model,
    configurations: list[Candidate],
    work: Workload,
    slo: SLO,
    prices: dict[str, float],
    spec: DisaggregationSpec | None = None,
) -> list[DisaggregatedResult]:
    """Every (prefill, decode) pair of ``configurations`` (the expanded candidate list) as a
    disaggregated candidate; each configuration is priced once per role."""
    spec = spec or DisaggregationSpec()
    pre = [prefill_pool(model, c, work, slo, prices) for c in configurations]
    dec = [decode_pool(model, c, work, slo, prices) for c in configurations]
    return [evaluate_pair(p, d, work, slo, spec) for p in pre for d in dec]


# -- what the plan says about it ---------------------------------------------------------------
def is_disaggregated(r: CandidateResult) -> bool:
    return bool(getattr(r.candidate, "disaggregated", False))


def aggregated_goodput_per_gpu(r: CandidateResult, headroom: float) -> float:
    """An aggregated candidate's SLO-meeting rate per GPU, before rounding and headroom."""
    return r.per_replica_rate_per_s / (1.0 - headroom) / r.candidate.deployment.gpus_per_replica


def goodput_per_gpu(r: CandidateResult, headroom: float) -> float:
    if isinstance(r, DisaggregatedResult):
        return r.goodput_per_gpu
    return aggregated_goodput_per_gpu(r, headroom)
