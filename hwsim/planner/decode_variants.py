"""How one candidate replica prices its phases: plain decoding, speculative decoding
(``candidates.speculative``) or an MoE expert-parallel group (``candidates.ep``).

The analytic steady state (:mod:`hwsim.planner.analytic`) asks every candidate the same few
questions, answered here per variant:

* **Weights per GPU**: the target's (TP-sharded), plus the drafter's (a draft model at its own
  tp, by default the target's; draft heads' few layers), or with EP the routed experts spread
  over the ep GPUs as whole experts (:func:`~hwsim.inference.expert_parallel.
  ep_weight_bytes_per_gpu`).
* **Cache share**: what part of the free memory holds the target's KV. A draft model keeps a
  KV cache of its own for every sequence (its KV bytes per token times the context); the
  sequences that fit are free / (target + draft bytes per sequence), i.e. the target's cache
  gets the share target / (target + draft).
* **Prefill** of one prompt: the target's (with EP: the experts over the group), plus the draft
  model's prefill of the same prompt (it needs its own KV; draft heads' one layer is left out).
* **Decode step** for ``b`` sequences per attention replica at a context, and the **tokens per
  step** E it yields per sequence: plain, one token; speculative, one round = k draft steps +
  a (k + 1)-token verify (:func:`~hwsim.inference.speculative.speculative_round`) yielding
  E = (1 - alpha^(k+1)) / (1 - alpha) tokens (Leviathan et al. 2023, eq. 1); EP, the step of
  the group's busiest GPU (:func:`~hwsim.inference.expert_parallel.ep_phase_cost`).
* **Attention replicas** per replica: an EP group of ep GPUs runs ep / tp attention replicas
  side by side, each with its own batch and its own requests (DeepSeek-V3's DP attention with
  EP MoE, DeepSeek-AI 2024, arXiv 2412.19437, section 3.4); the group serves that many times
  one attention replica's rate, on ``ep x pp`` GPUs.

A speculative step's p10-p90 band is the verify step's band with the draft steps at their
point value (the draft runs a different model, whose calibration the target's band does not
cover).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from hwsim.inference.acceptance import PUBLISHED_ACCEPTANCE, acceptance_curve, tokens_per_step
from hwsim.inference.deployment import Deployment, make_deployment
from hwsim.inference.engine import PhaseCost, decode_step_cost, prefill_cost, shifted_band
from hwsim.inference.expert_parallel import ep_phase_cost, ep_weight_bytes_per_gpu
from hwsim.inference.memory import cache_bytes_per_sequence_per_gpu, weight_bytes_per_gpu
from hwsim.inference.speculative import HEADS, SpecRound, speculative_round
from hwsim.planner.spec import Candidate, CandidatesSpec, SpeculativeSpec


@dataclass(frozen=True)
class CandidatePricing:
    """The phases of one candidate replica, as the analytic model asks for them."""

    dep: Deployment
    candidate: Candidate

    @property
    def speculative(self) -> SpeculativeSpec | None:
        return self.candidate.speculative

    @property
    def ep(self) -> int:
        return self.candidate.ep

    @property
    def attention_replicas(self) -> int:
        return self.ep // self.dep.tp if self.ep > 1 else 1

    @property
    def gpus_per_replica(self) -> int:
        return self.candidate.gpus_per_replica or self.dep.gpus_per_replica

    def _draft_dep(self) -> Deployment | None:
        spec = self.speculative
        if spec is None or spec.draft in HEADS:
            return None
        settings = {"tp": spec.draft_tp or self.dep.tp, "pp": 1}
        return make_deployment(spec.draft, self.dep.hardware, self.dep.spec.replace(**settings))

    def _round(self, batch, context) -> SpecRound:
        spec = self.speculative
        assert spec is not None
        return speculative_round(
            self.dep, spec.draft, spec.k, spec.acceptance, batch, context, draft_tp=spec.draft_tp
        )

    @cached_property
    def _draft_memory(self) -> tuple[float, float]:
        """(draft weights per GPU, draft KV bytes per token per GPU)."""
        if self.speculative is None:
            return 0.0, 0.0
        r = self._round(1.0, 1.0)
        return r.draft_weight_bytes_per_gpu, r.draft_kv_bytes_per_token_per_gpu

    def weights_bytes(self) -> float:
        """Weights per GPU: the target's (experts over the EP group) plus the drafter's."""
        if self.ep > 1:
            weights = ep_weight_bytes_per_gpu(self.dep, self.ep)[0]
        else:
            weights = weight_bytes_per_gpu(self.dep)
        return float(weights) + self._draft_memory[0]

    def cache_share(self, context: float) -> float:
        """The target's share of the cache memory at ``context`` (1 without a drafter)."""
        if self.speculative is None:
            return 1.0
        draft_per_token = self._draft_memory[1]
        target = float(np.sum(cache_bytes_per_sequence_per_gpu(self.dep, context)))
        draft = draft_per_token * context
        return target / (target + draft) if target + draft > 0 else 1.0

    def prefill(self, prompt_len: float) -> PhaseCost:
        """One prompt's prefill on one attention replica (plus the draft model's)."""
        if self.ep > 1:
            cost = ep_phase_cost(
                self.dep, self.ep, "prefill", 1.0, prompt_len, self.candidate.ep_imbalance
            )
        else:
            cost = prefill_cost(self.dep, 1.0, prompt_len)
        draft = self._draft_dep()
        if draft is None:
            return cost
        return _plus_seconds(cost, prefill_cost(draft, 1.0, prompt_len).time_s)

    def decode_step(self, batch, context) -> tuple[PhaseCost, float]:
        """(one decode iteration for ``batch`` sequences per attention replica, the tokens it
        yields per sequence)."""
        if self.speculative is not None:
            r = self._round(batch, context)
            return _plus_seconds(r.verify, r.draft_s), r.tokens_per_step
        if self.ep > 1:
            imbalance = self.candidate.ep_imbalance
            return ep_phase_cost(self.dep, self.ep, "decode", batch, context, imbalance), 1.0
        return decode_step_cost(self.dep, batch, context), 1.0


def _plus_seconds(cost: PhaseCost, extra: Any) -> PhaseCost:
    """``cost`` with ``extra`` seconds added to its time, its band's edges and its
    memory-bound share (a draft step at small batch reads weights)."""
    compute_s, memory_s, comm_s = cost.time_by_bound_s
    return PhaseCost(
        time_s=cost.time_s + extra,
        flops=cost.flops,
        hbm_bytes=cost.hbm_bytes,
        time_by_bound_s=(compute_s, memory_s + extra, comm_s),
        op_times=cost.op_times,
        band=shifted_band(cost, extra),
    )


def variant_notes(cands: CandidatesSpec) -> list[str]:
    """What the plan assumed for speculative and expert-parallel candidates."""
    out = []
    for option in cands.speculative:
        if option is None:
            continue
        curve = acceptance_curve(option.acceptance, option.k)
        e = tokens_per_step(option.acceptance, option.k)
        source = ""
        if isinstance(option.acceptance, str):
            source = f" ({PUBLISHED_ACCEPTANCE[option.acceptance].source})"
        out.append(
            f"Speculative candidates '{option.label}': each decode iteration is {option.k} "
            f"draft steps plus a {option.k + 1}-token verify, yielding E = {e:.2f} tokens per "
            f"sequence at acceptance {', '.join(f'{a:g}' for a in curve)}{source}; the draft "
            "model's weights, KV cache and prefill are counted. The simulator replays a "
            "speculative candidate one iteration per round, each request as its first token "
            "plus ceil((output - 1) / E) rounds (hwsim.planner.variant_sim)."
        )
    if any(ep > 1 for ep in cands.ep):
        out.append(
            "Expert-parallel candidates (ep > 1): one replica is an EP group of ep x pp GPUs "
            "running ep / tp attention replicas with the routed experts spread over the group "
            f"(load imbalance {cands.ep_imbalance:g}); dispatch and combine all-to-alls per MoE "
            "layer. The simulator replays one attention replica at its share of the group's "
            "rate, each iteration with the EP step's surcharge at its tokens "
            "(hwsim.planner.variant_sim)."
        )
    return out
