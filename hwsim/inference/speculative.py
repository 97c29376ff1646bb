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

__all__ = [
    "EAGLE",
    "MEDUSA",
    "PUBLISHED_ACCEPTANCE",
    "DraftHeads",
    "PublishedAcceptance",
    "SpecResult",
    "SpecRound",
    "SpecSweep",
    "acceptance_curve",
    "heads_step_s",
    "speculative_decode",
    "speculative_round",
    "speculative_sweep",
    "tokens_per_step",
]

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import InfeasibleError
from hwsim.inference.acceptance import (
    PUBLISHED_ACCEPTANCE,
    Acceptance,
    PublishedAcceptance,
    acceptance_curve,
    check_k,
    tokens_per_step,
)
from hwsim.inference.deployment import Deployment, make_deployment
from hwsim.inference.engine import PhaseCost, decode_step_cost, make_forward, price_ops
from hwsim.inference.memory import kv_bytes_per_token_per_gpu, weight_bytes_per_gpu
from hwsim.model.forward import Forward
from hwsim.model.graph import forward_ops
from hwsim.model.ops import Op
from hwsim.model.params import count_params
from hwsim.perf.ladder import price_op
from hwsim.perf.roofline import OpTime
from hwsim.profiles.model import ModelProfile

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


def _forward(dep: Deployment, batch: Any, new_tokens: float, context: Any) -> Forward:
    """``batch`` and ``context``: numbers or arrays (a sweep)."""
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
        assert self.heads is not None
        return float(heads_step_s(self.dep, self.heads, self.batch, ctx))

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


def _summed_s(times: Sequence[OpTime], keep) -> Any:
    """Sum of the kept ops' seconds (arrays broadcast: one value per batch)."""
    total: Any = 0.0
    for t in times:
        if keep(t.op.name):
            total = total + t.total_s
    return total


def heads_step_s(dep: Deployment, heads: DraftHeads, batch, ctx) -> Any:
    """Seconds for the draft heads to propose one token for ``batch`` sequences (a number or an
    array) at ``ctx`` keys: ``layers`` mean target layers, the dense projection, the LM heads
    (:class:`DraftHeads`)."""
    fw = _forward(dep, batch, 1, ctx)
    priced = _price(dep, _ops(dep, fw))
    layer_s = _summed_s(priced.times, lambda name: name not in _ENDS) / dep.model.n_layers
    lm_s = _summed_s(priced.times, lambda name: name == "lm_head")
    dense_s: Any = 0.0
    if heads.dense_d2 > 0:
        d = dep.model.d_model
        op = fw.linear("draft_heads.dense", d, heads.dense_d2 * d)
        dense_s = price_op(dep.hardware, op, dep.measurements).total_s
    return heads.layers * layer_s + heads.lm_heads * lm_s + dense_s


@dataclass(frozen=True)
class SpecRound:
    """One speculative round for an array of batches (what the planner prices): the k draft
    steps together, the k + 1-token verify step, the expected tokens out, and what the drafter
    adds to each GPU's memory."""

    k: int
    tokens_per_step: float
    draft_s: Any  # the k draft steps, seconds (per batch)
    verify: PhaseCost
    draft_weight_bytes_per_gpu: float
    draft_kv_bytes_per_token_per_gpu: float

    @property
    def time_s(self) -> Any:
        return self.draft_s + self.verify.time_s


def speculative_round(
    dep: Deployment,
    draft: Drafter,
    k: int,
    acceptance: Acceptance,
    batch,
    context,
    *,
    draft_tp: int | None = None,
) -> SpecRound:
    """Price one round of speculative decoding on ``dep`` for ``batch`` sequences (a number or
    an array) at ``context`` keys: the draft model's k one-token steps at contexts context ..
    context + k - 1 (or the draft heads' k proposals), the target's verify forward over k + 1
    tokens at context + k, and E = :func:`tokens_per_step` (module docstring). The drafter's
    KV per token: a draft model's own; draft heads' ``layers`` mean target layers."""
    k = check_k(k)
    e = tokens_per_step(acceptance, k)
    draft_dep, heads, _name = _drafter(draft, dep, draft_tp, None)
    verify = price_ops(
        dep, _ops(dep, _forward(dep, batch, k + 1, np.asarray(context) + k)), "decode"
    )
    draft_s: Any = 0.0
    for i in range(k):
        if draft_dep is not None:
            draft_s = draft_s + decode_step_cost(draft_dep, batch, np.asarray(context) + i).time_s
        else:
            assert heads is not None
            draft_s = draft_s + heads_step_s(dep, heads, batch, np.asarray(context) + i)
    if draft_dep is not None:
        weights = weight_bytes_per_gpu(draft_dep) if k else 0.0
        kv = kv_bytes_per_token_per_gpu(draft_dep) if k else 0.0
    else:
        assert heads is not None
        weights = _heads_weight_bytes(dep, heads, k)
        kv = heads.layers * kv_bytes_per_token_per_gpu(dep) / dep.model.n_layers if k else 0.0
    return SpecRound(k, e, draft_s, verify, float(weights), float(kv))


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
    k = check_k(k)
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
    ks = [check_k(k) for k in ks]
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
