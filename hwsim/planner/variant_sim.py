"""Speculative and expert-parallel candidates in the serving simulator: the target's step model
(:class:`~hwsim.planner.step_model.EngineStepModel`: prefill chunks, decodes, CUDA graphs) plus
each iteration's surcharge for the variant, priced by the analytic pricing
(:class:`~hwsim.planner.decode_variants.CandidatePricing`) once on a grid at construction and
interpolated linearly in the grid's log-spaced axis.

**Speculative decoding.** Each decode iteration is one round (k draft steps and a
(k + 1)-token verify) that yields E tokens per sequence. The simulator advances every running
sequence one position per decode iteration, so a request of O output tokens is replayed as
1 + ceil((O - 1) / E) tokens: its first token from the prefill, then one iteration per round
(E = (1 - alpha^(k+1)) / (1 - alpha), the expected tokens per round,
:func:`hwsim.inference.speculative.speculative_round`; Leviathan et al. 2023, arXiv
2211.17192, eq. 1). Its records carry the real O again, so TPOT = (finish - first token) /
(O - 1) is per real token; inter-token latencies are per round (engines emit a round's
accepted tokens together). The surcharge of n decodes at mean context q is the round's time
over a plain decode step, (draft steps + verify) - plain step, on a grid of n = 1..max_num_seqs
and q. Approximations, small where outputs are short next to prompts: a sequence's context
grows one position per round (E in the engine), so a round's attention is priced at a shorter
context than the engine's; and the KV cache is counted in the simulator's positions, so the
scheduler's capacity is scaled by the sampled requests' mean footprint,
(prompt + rounds) / (prompt + output).

**Expert parallelism.** The simulator replays one of the EP group's ep / tp attention
replicas at its share of the group's rate (each runs its own batch; DeepSeek-V3's DP attention,
arXiv 2412.19437 section 3.4). What EP changes is token-count bound: the routed experts of the
busiest GPU and the dispatch / combine all-to-alls (:func:`hwsim.inference.expert_parallel.
ep_phase_cost`), while attention is the replica's own. The surcharge of an iteration of T new
tokens (decodes and prefill chunks together) is therefore the EP step over the plain tp step at
T tokens, on a grid of T = 1..max_num_batched_tokens (negative where EP is the faster).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from hwsim.inference.engine import decode_step_cost
from hwsim.inference.expert_parallel import ep_phase_cost
from hwsim.planner.decode_variants import CandidatePricing
from hwsim.planner.step_model import EngineStepModel, quantised_context
from hwsim.serving import SchedulerConfig
from hwsim.serving.records import SimulationResult
from hwsim.serving.traffic import ClosedLoopRequests, Requests

GRID_POINTS_PER_DOUBLING = 8  # the surcharge grids' log axis: 2^(1/8) = 9% apart


def rounds_for(output_tokens: np.ndarray, tokens_per_round: float) -> np.ndarray:
    """Tokens a request is replayed as: its first (from the prefill), then one per round of
    E = ``tokens_per_round`` expected tokens, 1 + ceil((O - 1) / E)."""
    out = np.asarray(output_tokens, dtype=np.int64)
    rounds = np.ceil(np.maximum(out - 1, 0) / tokens_per_round).astype(np.int64)
    return np.where(out > 0, 1 + rounds, 0)


def log_grid(low: float, high: float) -> np.ndarray:
    """Points from ``low`` to at least ``high``, GRID_POINTS_PER_DOUBLING per doubling."""
    doublings = max(math.log2(max(high, 2.0 * low) / low), 1.0)
    return np.geomspace(low, low * 2.0**doublings, int(doublings * GRID_POINTS_PER_DOUBLING) + 2)


def interpolated(xs: list[float], ys, x: float) -> float:
    """``ys`` at ``x``, linear between the neighbours in ``xs`` (ascending), clamped at the
    ends."""
    j = min(max(bisect.bisect_left(xs, x), 1), len(xs) - 1)
    w = min(max((x - xs[j - 1]) / (xs[j] - xs[j - 1]), 0.0), 1.0)
    return float(ys[j - 1] + w * (ys[j] - ys[j - 1]))


class SurchargedStepModel:
    """``base``'s iteration time plus :meth:`surcharge_s` of the iteration (a subclass's)."""

    def __init__(self, base: EngineStepModel):
        self.base = base
        self.decode_only_time_s: Callable[[int, int], float] | None = None
        if base.decode_only_time_s is not None:  # (hwsim.serving.simulator)
            self.decode_only_time_s = self._decode_only_s

    def _decode_only_s(self, n_dec: int, decode_context_sum: int) -> float:
        base = self.base.decode_only_time_s
        assert base is not None
        q = quantised_context(decode_context_sum / n_dec)
        return base(n_dec, decode_context_sum) + self.surcharge_s(n_dec, q, n_dec)

    def surcharge_s(self, n_dec: int, q: int, tokens: int) -> float:
        """Seconds the variant adds to an iteration of ``n_dec`` decodes at (quantised) mean
        context ``q`` and ``tokens`` new tokens in all."""
        raise NotImplementedError

    def iteration_time_s(self, new_tokens: np.ndarray, context_after: np.ndarray) -> float:
        t = self.base.iteration_time_s(new_tokens, context_after)
        decodes = np.asarray(new_tokens) == 1
        n = int(np.count_nonzero(decodes))
        q = quantised_context(float(np.asarray(context_after)[decodes].sum()) / n) if n else 0
        return t + self.surcharge_s(n, q, int(np.sum(new_tokens)))

    def split_iteration_time_s(
        self, new_tokens: np.ndarray, context_after: np.ndarray, n_dec: int, decode_context_sum: int
    ) -> float:
        t = self.base.split_iteration_time_s(new_tokens, context_after, n_dec, decode_context_sum)
        q = quantised_context(decode_context_sum / n_dec) if n_dec else 0
        tokens = n_dec if n_dec == len(new_tokens) else int(np.add.reduce(new_tokens))
        return t + self.surcharge_s(n_dec, q, tokens)


class SpeculativeStepModel(SurchargedStepModel):
    """Decodes as speculative rounds: each iteration's n decodes at mean context q cost the
    round's time over a plain decode step (module doc)."""

    def __init__(self, base: EngineStepModel, pricing: CandidatePricing, max_context: float):
        super().__init__(base)
        self._q = log_grid(16.0, max_context)
        n = np.arange(1, pricing.dep.spec.max_num_seqs + 1, dtype=float)
        b, q = np.meshgrid(n, self._q, indexing="ij")
        spec, tokens = pricing.decode_step(b.ravel(), q.ravel())
        plain = decode_step_cost(pricing.dep, b.ravel(), q.ravel())
        surcharge = np.asarray(spec.time_s, dtype=float) - np.asarray(plain.time_s, dtype=float)
        self._grid = surcharge.reshape(b.shape)
        self._q_list = self._q.tolist()
        self.tokens_per_round = float(np.asarray(tokens).ravel()[0])
        self._memo: dict[tuple[int, int], float] = {}

    def surcharge_s(self, n_dec: int, q: int, tokens: int = 0) -> float:
        """The round's seconds over a plain decode step of ``n_dec`` decodes at mean context
        ``q`` (0 without decodes); n beyond the grid (max_num_seqs bounds it) takes the
        largest."""
        if not n_dec:
            return 0.0
        key = (n_dec, q)
        s = self._memo.get(key)
        if s is None:
            row = self._grid[min(n_dec, len(self._grid)) - 1]
            s = self._memo[key] = interpolated(self._q_list, row, q)
        return s


class ExpertParallelStepModel(SurchargedStepModel):
    """One attention replica of an EP group: each iteration of T new tokens costs the EP step
    over the plain tp step at T tokens (module doc)."""

    def __init__(self, base: EngineStepModel, pricing: CandidatePricing):
        super().__init__(base)
        dep, cand = pricing.dep, pricing.candidate
        spec = dep.spec
        self._t = log_grid(1.0, float(max(spec.max_num_batched_tokens, spec.max_num_seqs)))
        ep = ep_phase_cost(dep, cand.ep, "decode", self._t, 1.0, cand.ep_imbalance)
        plain = decode_step_cost(dep, self._t, 1.0)
        self._grid = np.asarray(ep.time_s, dtype=float) - np.asarray(plain.time_s, dtype=float)
        self._t_list = self._t.tolist()
        self._memo: dict[int, float] = {}

    def surcharge_s(self, n_dec: int, q: int, tokens: int) -> float:
        s = self._memo.get(tokens)
        if s is None:
            s = self._memo[tokens] = interpolated(self._t_list, self._grid, float(tokens))
        return s


@dataclass(frozen=True)
class Replay:
    """What the simulator runs for one candidate replica, and how its result reads back."""

    requests: Requests | ClosedLoopRequests  # a speculative candidate's outputs in rounds
    step_model: EngineStepModel | SurchargedStepModel
    config: SchedulerConfig
    output_tokens: np.ndarray  # the real ones

    def real_result(self, result: SimulationResult) -> SimulationResult:
        """``result`` with each request's real output tokens in its records."""
        if result.records.output_tokens is self.output_tokens:
            return result
        return replace(result, records=replace(result.records, output_tokens=self.output_tokens))


def replay_for(
    pricing: CandidatePricing, requests: Requests | ClosedLoopRequests, config: SchedulerConfig
) -> Replay:
    """The replay of ``requests`` on candidate ``pricing``: plain, speculative or one attention
    replica of an EP group (module doc)."""
    base = EngineStepModel(pricing.dep)
    real_outputs = requests.output_tokens
    if pricing.ep > 1:
        return Replay(requests, ExpertParallelStepModel(base, pricing), config, real_outputs)
    if pricing.speculative is None:
        return Replay(requests, base, config, real_outputs)
    prompt = requests.prompt_tokens.astype(float)
    longest = float(np.max(prompt + real_outputs)) if len(prompt) else 1.0
    step = SpeculativeStepModel(base, pricing, longest)
    rounds = rounds_for(real_outputs, step.tokens_per_round)
    real = float(np.sum(prompt + real_outputs))
    share = float(np.sum(prompt + rounds)) / real if real > 0 else 1.0
    capacity = max(int(config.kv_capacity_tokens * share), 1)
    return Replay(
        requests=replace(requests, output_tokens=rounds),
        step_model=step,
        config=SchedulerConfig.model_validate(
            {**config.model_dump(), "kv_capacity_tokens": capacity}
        ),
        output_tokens=real_outputs.copy(),
    )
