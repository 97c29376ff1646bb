"""Speculative decoding priced on one deployment: a drafter proposes k tokens, the target
verifies them in one forward pass of k + 1 tokens, and on average E tokens come out per step.

The mechanism (Leviathan, Kalman & Matias 2023, arXiv 2211.17192, Algorithm 1; Chen et al.
2023, arXiv 2302.01318): each round the drafter runs k one-token steps, the target runs one
decode forward over the k proposals plus the position after them, accepts the longest prefix
its own sampling agrees with and adds one token of its own, so a round yields 1 to k + 1
tokens.

* **Tokens per verify step.** With acceptance i.i.d. per position at rate alpha (Leviathan
  eq. 1, a capped geometric variable):  E = (1 - alpha^(k+1)) / (1 - alpha).  With a curve
  a_1 .. a_k of conditional acceptances (a_i = P(proposal i accepted | proposals 1 .. i-1
  accepted), as EAGLE reports them per position):  E = 1 + sum_{i=1..k} prod_{j<=i} a_j.
  The i.i.d. formula is the curve with every a_i = alpha. k = 0 is plain decoding (E = 1).
* **Verify step.** One decode forward of the target with ``new_tokens = k + 1`` per sequence
  (:func:`hwsim.inference.engine.make_forward`): the k + 1 queries see ``context`` ..
  ``context + k`` keys, the KV of all k + 1 positions is appended, and logits are computed for
  all k + 1 positions (the engine's op list computes the last position's only, right for plain
  decoding; here the lm_head op is scaled to every new position).
* **Draft cost.** A draft *model* (any model profile, same device, its own tensor-parallel
  degree, by default the target's as vLLM's draft TP defaults to the target's) runs k
  sequential one-token decode steps at contexts ``context`` .. ``context + k - 1``, each
  priced by :func:`~hwsim.inference.engine.decode_step_cost`. Draft *heads* run on the
  target's hidden state: per proposed token ``layers`` decoder layers shaped like the
  target's mean layer (EAGLE: one), a dense projection of ``dense_d2`` x d_model^2 weights
  (EAGLE's FC from 2 d to d: 2; a Medusa ResBlock d x d: 1) and ``lm_heads`` LM-head
  evaluations (d_model x vocab). See :class:`DraftHeads`.
* **Per-token latency.** TPOT_spec = (k t_draft + t_verify) / E, against the plain decode
  step t_base at the same batch and context: speed-up = t_base / TPOT_spec.

Batch effects: at batch 1 a decode step reads every weight for one token, so verifying k + 1
tokens costs little more than one (memory-bound); at a large batch the step is compute-bound
and the verify step costs up to (k + 1) x the plain step while E stays the same: the speed-up
falls below 1. :attr:`SpecResult.verify_cost_ratio` (t_verify / t_base) shows it.

Left out (stated): tree drafts (EAGLE-2, Medusa's tree attention verify several branches in
one pass; a published mean acceptance length tau from a tree can be given as a curve whose
E equals it), the draft's catch-up forward on the bonus token, sampling overheads, and the
draft's KV memory (its weights are reported).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import HwsimError, InfeasibleError, ProfileError
from hwsim.inference.deployment import Deployment, make_deployment
from hwsim.inference.engine import make_forward
from hwsim.inference.memory import weight_bytes_per_gpu
from hwsim.model.forward import Forward
from hwsim.model.graph import forward_ops
from hwsim.model.ops import Op
from hwsim.model.params import count_params
from hwsim.perf.ladder import price_op
from hwsim.perf.roofline import OpTime
from hwsim.profiles.model import ModelProfile

# -- acceptance ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedAcceptance:
    """An acceptance rate (one value: i.i.d. alpha) or a per-position curve, with its source."""

    name: str
    curve: tuple[float, ...]
    source: str

    @property
    def iid(self) -> bool:
        return len(self.curve) == 1


# Every value quoted from the paper's table. Leviathan's alpha is E[min(p, q)] measured on the
# task (Corollary 3.6); EAGLE's n-alpha is the acceptance of the (n+1)-th draft token given the
# earlier ones were accepted, i.e. the conditional curve above.
PUBLISHED_ACCEPTANCE: dict[str, PublishedAcceptance] = {
    p.name: p
    for p in (
        PublishedAcceptance(
            "leviathan-t5xxl-t5small-ende-greedy",
            (0.75,),
            "Leviathan et al. 2023 (arXiv 2211.17192) Table 2: T5-XXL target, T5-small draft, "
            "WMT EnDe, temperature 0, gamma 7: alpha 0.75, walltime speed-up 3.4x (TPU-v4, "
            "batch 1)",
        ),
        PublishedAcceptance(
            "leviathan-t5xxl-t5small-ende-t1",
            (0.62,),
            "Leviathan et al. 2023 Table 2: T5-XXL / T5-small, WMT EnDe, temperature 1, gamma 7: "
            "alpha 0.62, speed-up 2.6x",
        ),
        PublishedAcceptance(
            "leviathan-lamda137b-8b-greedy",
            (0.75,),
            "Leviathan et al. 2023 Table 3: LaMDA 137B target, LaMDA 8B draft, temperature 0: "
            "alpha 0.75 (alpha only; no walltime run)",
        ),
        PublishedAcceptance(
            "leviathan-lamda137b-2b-greedy",
            (0.71,),
            "Leviathan et al. 2023 Table 3: LaMDA 137B / LaMDA 2B, temperature 0: alpha 0.71",
        ),
        PublishedAcceptance(
            "leviathan-lamda137b-100m-greedy",
            (0.61,),
            "Leviathan et al. 2023 Table 3: LaMDA 137B / LaMDA 100M, temperature 0: alpha 0.61",
        ),
        PublishedAcceptance(
            "eagle-llama2chat70b-mtbench",
            (0.75, 0.69, 0.65, 0.64),
            "Li et al. 2024, EAGLE (arXiv 2401.15077), acceptance table: LLaMA2-Chat 70B, "
            "MT-bench, temperature 0: 0-alpha 0.75, 1-alpha 0.69, 2-alpha 0.65, 3-alpha 0.64 "
            "(mean acceptance length tau 3.81 with its draft tree)",
        ),
        PublishedAcceptance(
            "eagle-vicuna7b-mtbench",
            (0.79, 0.74, 0.72, 0.73),
            "Li et al. 2024, EAGLE, acceptance table: Vicuna 7B, MT-bench, temperature 0: "
            "0.79, 0.74, 0.72, 0.73 (tau 3.94 with its draft tree)",
        ),
    )
}

Acceptance = float | Sequence[float] | str | PublishedAcceptance


def acceptance_curve(acceptance: Acceptance, k: int) -> tuple[float, ...]:
    """The conditional acceptance of proposals 1 .. k: alpha repeated k times (a number, i.i.d.
    per position, 0 <= alpha < 1), the first k values of a curve (each in [0, 1]), or a name
    in :data:`PUBLISHED_ACCEPTANCE`."""
    k = _check_k(k)
    if isinstance(acceptance, str):
        if acceptance not in PUBLISHED_ACCEPTANCE:
            known = ", ".join(sorted(PUBLISHED_ACCEPTANCE))
            raise InfeasibleError(f"unknown acceptance {acceptance!r}; published ones: {known}")
        acceptance = PUBLISHED_ACCEPTANCE[acceptance]
    if isinstance(acceptance, PublishedAcceptance):
        acceptance = acceptance.curve[0] if acceptance.iid else acceptance.curve
    if isinstance(acceptance, (int, float)) and not isinstance(acceptance, bool):
        alpha = float(acceptance)
        if not (math.isfinite(alpha) and 0.0 <= alpha < 1.0):
            raise InfeasibleError(
                f"acceptance rate alpha must be in [0, 1), got {acceptance!r} (alpha = 1 would "
                "accept every proposal forever: give a curve to model certain acceptance)"
            )
        return (alpha,) * k
    try:
        curve = tuple(float(a) for a in acceptance)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InfeasibleError(
            "acceptance must be a number in [0, 1), a sequence of per-position acceptances in "
            f"[0, 1] or a published name, got {acceptance!r}"
        ) from None
    bad = [a for a in curve if not (math.isfinite(a) and 0.0 <= a <= 1.0)]
    if bad:
        raise InfeasibleError(f"per-position acceptances must be in [0, 1], got {bad[0]!r}")
    if len(curve) < k:
        raise InfeasibleError(
            f"the acceptance curve covers {len(curve)} positions, fewer than k = {k}; give a "
            "longer curve, a smaller k or one i.i.d. rate"
        )
    return curve[:k]


def tokens_per_step(acceptance: Acceptance, k: int) -> float:
    """Expected tokens one verify step yields: (1 - alpha^(k+1)) / (1 - alpha) for an i.i.d.
    rate (Leviathan et al. 2023 eq. 1), 1 + sum_i prod_{j<=i} a_j for a curve."""
    curve = acceptance_curve(acceptance, k)
    if isinstance(acceptance, (int, float)) and not isinstance(acceptance, bool):
        alpha = float(acceptance)
        return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)
    total, survive = 1.0, 1.0
    for a in curve:
        survive *= a
        total += survive
    return total


def _check_k(k: Any) -> int:
    whole = isinstance(k, (int, np.integer)) or (isinstance(k, float) and k.is_integer())
    if isinstance(k, bool) or not whole:
        raise InfeasibleError(f"k (proposed tokens per step) must be a whole number, got {k!r}")
    if k < 0:
        raise InfeasibleError(f"k (proposed tokens per step) must be >= 0, got {k}")
    return int(k)


# -- drafters -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DraftHeads:
    """Draft heads on the target's hidden state, priced per proposed token as ``layers``
    decoder layers shaped like the target's mean layer (attention at the same context), a
    dense projection of ``dense_d2`` x d_model^2 weights and ``lm_heads`` LM-head evaluations
    (d_model x vocab each), all at the target's batch, dtypes and TP degree.

    ``distinct_per_position``: one set of head weights per position (Medusa: k heads) rather
    than one head run k times (EAGLE); ``own_lm_head``: the heads hold their own LM-head-sized
    projection (Medusa) rather than reusing the target's (EAGLE). Both only change the
    weights reported, not the time."""

    name: str
    layers: float = 1.0
    dense_d2: float = 0.0
    lm_heads: float = 1.0
    distinct_per_position: bool = False
    own_lm_head: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        for field_name in ("layers", "dense_d2", "lm_heads"):
            value = getattr(self, field_name)
            if not (math.isfinite(value) and value >= 0):
                raise InfeasibleError(f"DraftHeads.{field_name} must be >= 0, got {value!r}")


EAGLE = DraftHeads(
    "eagle",
    layers=1.0,
    dense_d2=2.0,
    lm_heads=1.0,
    source="Li et al. 2024, EAGLE (arXiv 2401.15077): the draft head is an FC layer from the "
    "concatenated feature and token embedding (2 d) to d plus one transformer decoder layer; the "
    "embedding and LM head are the target's (frozen); one head run once per draft token",
)
MEDUSA = DraftHeads(
    "medusa",
    layers=0.0,
    dense_d2=1.0,
    lm_heads=1.0,
    distinct_per_position=True,
    own_lm_head=True,
    source="Cai et al. 2024, Medusa (arXiv 2401.10774): head k is one feed-forward layer with a "
    "residual connection (d x d, SiLU) and its own d x vocab projection initialised from the "
    "LM head; one head per proposed position, all run on the same hidden state",
)
HEADS: dict[str, DraftHeads] = {h.name: h for h in (EAGLE, MEDUSA)}

Drafter = DraftHeads | str | Path | ModelProfile


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecResult:
    """One speculative configuration at one batch and context, per sequence."""

    target: str
    draft: str
    hardware: str
    k: int
    acceptance: tuple[float, ...]  # conditional acceptance of proposals 1 .. k
    tokens_per_step: float  # E
    t_draft_s: float  # one draft step (the mean of the k)
    t_draft_total_s: float  # the k draft steps of one round
    t_verify_s: float  # the target's (k + 1)-token decode forward
    tpot_s: float  # (k t_draft + t_verify) / E
    baseline_tpot_s: float  # one plain decode step of the target, same batch and context
    speedup: float  # baseline_tpot_s / tpot_s
    verify_cost_ratio: float  # t_verify / baseline: ~1 memory-bound, -> k + 1 compute-bound
    verify_bound: str  # 'compute' or 'memory': what holds most of the verify step
    baseline_bound: str
    batch: int
    context: int  # keys the plain decode step's new token sees (itself included)
    draft_weight_bytes_per_gpu: float
    tokens_per_s: float  # batch / tpot_s, one replica
    baseline_tokens_per_s: float

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["acceptance"] = list(self.acceptance)
        return out


@dataclass(frozen=True)
class SpecSweep:
    """Results over k (and batch), with the best k per batch (lowest TPOT)."""

    results: tuple[SpecResult, ...]

    def best(self, batch: int | None = None) -> SpecResult:
        rows = [r for r in self.results if batch is None or r.batch == batch]
        if not rows:
            raise InfeasibleError(f"no result at batch {batch}")
        return min(rows, key=lambda r: (r.tpot_s, r.k))

    def to_records(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.results]


# -- pricing --------------------------------------------------------------------------------

_ENDS = ("embedding", "final_norm", "lm_head", "pp.send_activations")


@dataclass(frozen=True)
class _Priced:
    time_s: float
    compute_s: float
    memory_s: float
    times: tuple[OpTime, ...]

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"


def _forward(dep: Deployment, batch: float, new_tokens: float, context: float) -> Forward:
    return make_forward(dep, "decode", batch, new_tokens, context)


def _ops(dep: Deployment, fw: Forward) -> list[Op]:
    """The forward's ops, with logits for every new position (the engine's graph computes the
    last position's only: right for plain decoding, short by k for a verify step)."""
    ops = forward_ops(fw, dep.pp)
    scale = float(np.max(fw.new_tokens))
    if scale == 1.0:
        return ops
    return [_every_position(op, scale) if op.name == "lm_head" else op for op in ops]


def _every_position(op: Op, rows: float) -> Op:
    return replace(
        op,
        flops=op.flops * rows,
        act_read_bytes=op.act_read_bytes * rows,
        act_write_bytes=op.act_write_bytes * rows,
    )


def _price(dep: Deployment, ops: Sequence[Op]) -> _Priced:
    times = tuple(price_op(dep.hardware, op, dep.measurements) for op in ops)
    total = compute = memory = 0.0
    for t in times:
        s = float(np.sum(t.total_s))
        total += s
        if t.op.op_class == "communication":
            continue
        if int(np.max(t.bound)) == 0:
            compute += s
        else:
            memory += s
    return _Priced(total, compute, memory, times)


class _Pricer:
    """Prices one target / drafter pair at one batch and context, caching per-step costs."""

    def __init__(
        self,
        dep: Deployment,
        draft_dep: Deployment | None,
        heads: DraftHeads | None,
        batch: int,
        context: int,
    ):
        self.dep, self.draft_dep, self.heads = dep, draft_dep, heads
        self.batch, self.context = batch, context
        self._draft: dict[int, float] = {}
        self._verify: dict[int, _Priced] = {}
        self.baseline = self.verify(0)

    def verify(self, k: int) -> _Priced:
        if k not in self._verify:
            fw = _forward(self.dep, self.batch, k + 1, self.context + k)
            self._verify[k] = _price(self.dep, _ops(self.dep, fw))
        return self._verify[k]

    def draft_step_s(self, i: int) -> float:
        """The i-th draft step of a round (0-based): at context + i keys."""
        if i not in self._draft:
            ctx = self.context + i
            if self.draft_dep is not None:
                fw = _forward(self.draft_dep, self.batch, 1, ctx)
                self._draft[i] = _price(self.draft_dep, _ops(self.draft_dep, fw)).time_s
            else:
                self._draft[i] = self._heads_s(ctx)
        return self._draft[i]

    def _heads_s(self, ctx: int) -> float:
        heads, dep = self.heads, self.dep
        assert heads is not None
        fw = _forward(dep, self.batch, 1, ctx)
        priced = _price(dep, _ops(dep, fw))
        layer_s = sum(float(np.sum(t.total_s)) for t in priced.times if t.op.name not in _ENDS)
        layer_s /= dep.model.n_layers
        lm_s = sum(float(np.sum(t.total_s)) for t in priced.times if t.op.name == "lm_head")
        dense_s = 0.0
        if heads.dense_d2 > 0:
            d = dep.model.d_model
            op = fw.linear("draft_heads.dense", d, heads.dense_d2 * d)
            dense_s = float(np.sum(price_op(dep.hardware, op, dep.measurements).total_s))
        return heads.layers * layer_s + heads.lm_heads * lm_s + dense_s

    def result(self, k: int, acceptance: Acceptance, draft_name: str, draft_bytes) -> SpecResult:
        curve = acceptance_curve(acceptance, k)
        e = tokens_per_step(acceptance, k)
        steps = [self.draft_step_s(i) for i in range(k)]
        total_draft = float(sum(steps))
        verify = self.verify(k)
        base = self.baseline.time_s
        tpot = (total_draft + verify.time_s) / e
        return SpecResult(
            target=self.dep.model.id,
            draft=draft_name,
            hardware=self.dep.hardware.id,
            k=k,
            acceptance=curve,
            tokens_per_step=e,
            t_draft_s=total_draft / k if k else 0.0,
            t_draft_total_s=total_draft,
            t_verify_s=verify.time_s,
            tpot_s=tpot,
            baseline_tpot_s=base,
            speedup=base / tpot,
            verify_cost_ratio=verify.time_s / base,
            verify_bound=verify.bound,
            baseline_bound=self.baseline.bound,
            batch=self.batch,
            context=self.context,
            draft_weight_bytes_per_gpu=float(draft_bytes(k)),
            tokens_per_s=self.batch / tpot,
            baseline_tokens_per_s=self.batch / base,
        )


def _whole(name: str, value: Any, low: int) -> int:
    try:
        ok = float(value).is_integer() and float(value) >= low and not isinstance(value, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InfeasibleError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def _drafter(
    draft: Drafter, dep: Deployment, draft_tp: int | None, measurements
) -> tuple[Deployment | None, DraftHeads | None, str]:
    if isinstance(draft, str) and draft in HEADS:
        draft = HEADS[draft]
    if isinstance(draft, DraftHeads):
        return None, draft, f"heads:{draft.name}"
    settings: dict[str, Any] = {"tp": draft_tp or dep.tp, "pp": 1}
    draft_dep = make_deployment(
        draft, dep.hardware, dep.spec.replace(**settings), **_m(measurements)
    )
    if draft_dep.model.vocab_size != dep.model.vocab_size:
        raise InfeasibleError(
            f"draft {draft_dep.model.id} has a vocabulary of {draft_dep.model.vocab_size}, the "
            f"target {dep.model.id} {dep.model.vocab_size}: speculative sampling compares their "
            "distributions token by token, so they must share a tokenizer"
        )
    return draft_dep, None, draft_dep.model.id


def _m(measurements) -> dict[str, Any]:
    return {} if measurements is None else {"measurements": measurements}


def _heads_weight_bytes(dep: Deployment, heads: DraftHeads, k: int) -> float:
    m = dep.model
    layer_params = count_params(m).layers / m.n_layers
    per_head = heads.layers * layer_params + heads.dense_d2 * m.d_model**2
    if heads.own_lm_head:
        per_head += heads.lm_heads * m.d_model * m.vocab_size
    copies = k if heads.distinct_per_position else (1 if k else 0)
    return copies * per_head / dep.tp * dep.weight.bytes_per_element


def _setup(target, draft, hardware, batch, context, draft_tp, measurements, deployment):
    b = _whole("batch", batch, 1)
    c = _whole("context", context, 1)
    if draft_tp is not None:
        draft_tp = _whole("draft_tp", draft_tp, 1)
    dep = make_deployment(target, hardware, **_m(measurements), **deployment)
    draft_dep, heads, name = _drafter(draft, dep, draft_tp, measurements)
    pricer = _Pricer(dep, draft_dep, heads, b, c)

    def draft_bytes(k: int) -> float:
        if draft_dep is not None:
            return weight_bytes_per_gpu(draft_dep) if k else 0.0
        assert heads is not None
        return _heads_weight_bytes(dep, heads, k)

    return pricer, name, draft_bytes


def speculative_decode(
    target,
    draft: Drafter,
    hardware,
    k: int,
    acceptance: Acceptance,
    batch: int = 1,
    context: int = 2048,
    *,
    draft_tp: int | None = None,
    measurements=None,
    **deployment: Any,
) -> SpecResult:
    """Price speculative decoding of ``target`` on ``hardware``.

    draft: a model (id, path or profile; same device, ``draft_tp`` ranks, by default the
    target's tp) or draft heads (:data:`EAGLE`, :data:`MEDUSA`, a :class:`DraftHeads`, or
    the name 'eagle' / 'medusa'). k: tokens proposed per verify step (0: plain decoding).
    acceptance: i.i.d. rate alpha in [0, 1), a per-position curve, or a name in
    :data:`PUBLISHED_ACCEPTANCE` (required: acceptance depends on the pair and the task).
    batch: sequences decoded together; context: keys the plain decode step's new token sees.
    deployment: DeploymentSpec fields of the target (``tp=4, weight_dtype="fp8"``, ...).
    """
    k = _check_k(k)
    acceptance_curve(acceptance, k)  # bad input fails before any pricing
    pricer, name, draft_bytes = _setup(
        target, draft, hardware, batch, context, draft_tp, measurements, deployment
    )
    return pricer.result(k, acceptance, name, draft_bytes)


def speculative_sweep(
    target,
    draft: Drafter,
    hardware,
    ks: Sequence[int],
    acceptance: Acceptance,
    batches: Sequence[int] = (1,),
    context: int = 2048,
    *,
    draft_tp: int | None = None,
    measurements=None,
    **deployment: Any,
) -> SpecSweep:
    """:func:`speculative_decode` over every k in ``ks`` and batch in ``batches`` (each step
    priced once per batch); :meth:`SpecSweep.best` picks the k with the lowest TPOT."""
    ks = [_check_k(k) for k in ks]
    if not ks:
        raise InfeasibleError("ks is empty: give the k values to sweep")
    for k in ks:
        acceptance_curve(acceptance, k)
    results = []
    for batch in batches:
        pricer, name, draft_bytes = _setup(
            target, draft, hardware, batch, context, draft_tp, measurements, deployment
        )
        results += [pricer.result(k, acceptance, name, draft_bytes) for k in ks]
    return SpecSweep(tuple(results))


# -- example files: python -m hwsim.inference.speculative FILE.yaml -------------------------

EXAMPLE_KEYS = {"target", "hardware", "deployment", "candidates", "k", "batch", "context", "notes"}
CANDIDATE_KEYS = {"draft", "acceptance", "draft_tp", "k", "notes"}


def run_file(path: str | Path) -> list[SpecSweep]:
    """Price the sweeps an example file describes: one per entry of ``candidates:`` (a
    drafter with its acceptance, optionally its own ``k`` list and ``draft_tp``), each over
    the file's ``k`` values and ``batch`` values at ``context`` (keys: :data:`EXAMPLE_KEYS`,
    :data:`CANDIDATE_KEYS`; ``k`` and ``batch`` may be one value or a list)."""
    from hwsim.safe_read import load_yaml, read_text

    file = str(path)
    data = load_yaml(read_text(path, "speculative example"), file)
    if not isinstance(data, dict):
        raise ProfileError("expected a mapping", file=file)
    _keys(data, EXAMPLE_KEYS, {"target", "hardware", "candidates"}, file, None)
    deployment = data.get("deployment") or {}
    if not isinstance(deployment, dict):
        raise ProfileError("expected DeploymentSpec fields", file=file, field="deployment")
    candidates = data["candidates"]
    if not isinstance(candidates, list) or not candidates:
        raise ProfileError("expected a list of drafters", file=file, field="candidates")
    sweeps = []
    for i, cand in enumerate(candidates):
        where = f"candidates[{i}]"
        if not isinstance(cand, dict):
            raise ProfileError("expected a mapping", file=file, field=where)
        _keys(cand, CANDIDATE_KEYS, {"draft", "acceptance"}, file, where)
        sweeps.append(
            speculative_sweep(
                data["target"],
                cand["draft"],
                data["hardware"],
                _listed(cand.get("k", data.get("k", list(range(0, 9))))),
                cand["acceptance"],
                _listed(data.get("batch", 1)),
                data.get("context", 2048),
                draft_tp=cand.get("draft_tp"),
                **deployment,
            )
        )
    return sweeps


def _listed(value: Any) -> list:
    return list(value) if isinstance(value, list) else [value]


def _keys(data: dict, allowed: set[str], required: set[str], file: str, field: str | None):
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ProfileError(
            f"unknown keys {unknown}; allowed: {sorted(allowed)}", file=file, field=field
        )
    missing = sorted(required - set(data))
    if missing:
        raise ProfileError(f"missing keys {missing}", file=file, field=field)


def format_sweep(sweep: SpecSweep) -> str:
    from hwsim.format import fmt_time

    first = sweep.results[0]
    lines = [
        f"{first.target} on {first.hardware}, drafter {first.draft}, context {first.context}",
        f"{'batch':>6} {'k':>3} {'E':>6} {'draft':>10} {'verify':>10} {'verify/base':>11} "
        f"{'TPOT':>10} {'base TPOT':>10} {'speed-up':>8}  verify bound",
    ]
    for r in sweep.results:
        lines.append(
            f"{r.batch:>6} {r.k:>3} {r.tokens_per_step:>6.3f} {fmt_time(r.t_draft_total_s):>10} "
            f"{fmt_time(r.t_verify_s):>10} {r.verify_cost_ratio:>11.2f} {fmt_time(r.tpot_s):>10} "
            f"{fmt_time(r.baseline_tpot_s):>10} {r.speedup:>7.2f}x  {r.verify_bound}"
        )
    for batch in dict.fromkeys(r.batch for r in sweep.results):
        best = sweep.best(batch)
        lines.append(f"best k at batch {batch}: {best.k} ({best.speedup:.2f}x)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m hwsim.inference.speculative FILE.yaml", file=sys.stderr)
        return 2
    try:
        print("\n\n".join(format_sweep(sweep) for sweep in run_file(args[0])))
    except HwsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
