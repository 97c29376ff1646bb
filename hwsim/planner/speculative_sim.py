"""Speculative candidates in the serving simulator: each decode iteration is one speculative
round (k draft steps and a (k + 1)-token verify) that yields E tokens per sequence.

The simulator advances every running sequence one position per decode iteration. A request of
O output tokens is therefore replayed as 1 + ceil((O - 1) / E) tokens: its first token from the
prefill, then one iteration per round (E = (1 - alpha^(k+1)) / (1 - alpha), the expected
tokens per round, :func:`hwsim.inference.speculative.speculative_round`; Leviathan et al.
2023, arXiv 2211.17192, eq. 1). Its records carry the real O again, so TPOT = (finish - first
token) / (O - 1) is per real token; inter-token latencies are per round (engines emit a
round's accepted tokens together).

An iteration costs what the target's step model prices (:class:`~hwsim.planner.step_model.
EngineStepModel`: prefill chunks, decodes, CUDA graphs) plus, for its n decodes at mean
context q, the round's surcharge over a plain decode step: (draft steps + verify) - plain
step, both priced by the analytic pricing (:class:`~hwsim.planner.decode_variants.
CandidatePricing`), once on a grid of n = 1..max_num_seqs and log-spaced q at construction
and interpolated in q.

Approximations, both small where outputs are short next to prompts: a sequence's context in
the simulator grows one position per round (E in the engine), so a round's attention is priced
at a shorter context than the engine's; and the KV cache is counted in the simulator's
positions, so the scheduler's capacity is scaled by the sampled requests' mean footprint,
(prompt + steps) / (prompt + output).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, replace

import numpy as np

from hwsim.inference.engine import decode_step_cost
from hwsim.planner.decode_variants import CandidatePricing
from hwsim.planner.step_model import EngineStepModel, quantised_context
from hwsim.serving import SchedulerConfig
from hwsim.serving.records import SimulationResult
from hwsim.serving.traffic import ClosedLoopRequests, Requests

GRID_POINTS_PER_DOUBLING = 8  # the surcharge's q grid: 2^(1/8) = 9% apart


def rounds_for(output_tokens: np.ndarray, tokens_per_round: float) -> np.ndarray:
    """Tokens a request is replayed as: its first (from the prefill), then one per round of
    E = ``tokens_per_round`` expected tokens, 1 + ceil((O - 1) / E)."""
    out = np.asarray(output_tokens, dtype=np.int64)
    rounds = np.ceil(np.maximum(out - 1, 0) / tokens_per_round).astype(np.int64)
    return np.where(out > 0, 1 + rounds, 0)


class SpeculativeStepModel:
    """The target's step model plus each iteration's speculative surcharge for its decodes."""

    def __init__(self, base: EngineStepModel, pricing: CandidatePricing, max_context: float):
        self.base = base
        n_max = pricing.dep.spec.max_num_seqs
        doublings = max(math.log2(max(max_context, 32.0) / 16.0), 1.0)
        self._q = np.geomspace(
            16.0, 16.0 * 2.0**doublings, int(doublings * GRID_POINTS_PER_DOUBLING) + 2
        )
        n = np.arange(1, n_max + 1, dtype=float)
        b, q = np.meshgrid(n, self._q, indexing="ij")
        spec, tokens = pricing.decode_step(b.ravel(), q.ravel())
        plain = decode_step_cost(pricing.dep, b.ravel(), q.ravel())
        surcharge = np.asarray(spec.time_s, dtype=float) - np.asarray(plain.time_s, dtype=float)
        self._grid = surcharge.reshape(b.shape)
        self._q_list = self._q.tolist()
        self.tokens_per_round = float(np.asarray(tokens).ravel()[0])
        self._memo: dict[tuple[int, int], float] = {}

    def surcharge_s(self, n: int, q: int) -> float:
        """Seconds a round of ``n`` decodes at mean context ``q`` costs over a plain decode
        step: linear in q between the grid's neighbours (clamped at its ends); n beyond the
        grid (never: max_num_seqs bounds it) takes the largest."""
        key = (n, q)
        s = self._memo.get(key)
        if s is None:
            row = self._grid[min(n, len(self._grid)) - 1]
            qs = self._q_list
            j = min(max(bisect.bisect_left(qs, q), 1), len(qs) - 1)
            w = min(max((q - qs[j - 1]) / (qs[j] - qs[j - 1]), 0.0), 1.0)
            s = float(row[j - 1] + w * (row[j] - row[j - 1]))
            self._memo[key] = s
        return s

    def iteration_time_s(self, new_tokens: np.ndarray, context_after: np.ndarray) -> float:
        t = self.base.iteration_time_s(new_tokens, context_after)
        decodes = np.asarray(new_tokens) == 1
        n = int(np.count_nonzero(decodes))
        if n:
            mean = float(np.asarray(context_after)[decodes].sum()) / n
            t += self.surcharge_s(n, quantised_context(mean))
        return t

    def split_iteration_time_s(
        self, new_tokens: np.ndarray, context_after: np.ndarray, n_dec: int, decode_context_sum: int
    ) -> float:
        t = self.base.split_iteration_time_s(new_tokens, context_after, n_dec, decode_context_sum)
        if n_dec:
            t += self.surcharge_s(n_dec, quantised_context(decode_context_sum / n_dec))
        return t


@dataclass(frozen=True)
class SpeculativeReplay:
    """What the simulator runs for a speculative candidate, and how its result reads back."""

    requests: Requests | ClosedLoopRequests  # outputs in rounds (rounds_for)
    step_model: SpeculativeStepModel
    config: SchedulerConfig
    output_tokens: np.ndarray  # the real ones

    def real_result(self, result: SimulationResult) -> SimulationResult:
        """``result`` with each request's real output tokens in its records."""
        return replace(result, records=replace(result.records, output_tokens=self.output_tokens))


def speculative_replay(
    pricing: CandidatePricing,
    requests: Requests | ClosedLoopRequests,
    config: SchedulerConfig,
) -> SpeculativeReplay:
    """The replay of ``requests`` on the speculative candidate ``pricing`` (module doc)."""
    base = EngineStepModel(pricing.dep)
    prompt = requests.prompt_tokens.astype(float)
    longest = float(np.max(prompt + requests.output_tokens)) if len(prompt) else 1.0
    step = SpeculativeStepModel(base, pricing, longest)
    rounds = rounds_for(requests.output_tokens, step.tokens_per_round)
    real = float(np.sum(prompt + requests.output_tokens))
    replayed = float(np.sum(prompt + rounds))
    share = replayed / real if real > 0 else 1.0
    capacity = max(int(config.kv_capacity_tokens * share), 1)
    return SpeculativeReplay(
        requests=replace(requests, output_tokens=rounds),
        step_model=step,
        config=SchedulerConfig.model_validate(
            {**config.model_dump(), "kv_capacity_tokens": capacity}
        ),
        output_tokens=requests.output_tokens.copy(),
    )
