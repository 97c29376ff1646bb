"""Test helpers for hwsim.serving: a linear step-time model and a slow, obviously-written
reference implementation of the documented scheduling policy, to cross-check the fast engine.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from hwsim.serving import Requests, SchedulerConfig


@dataclass(frozen=True)
class LinearStepTimeModel:
    """t = fixed_s + per_new_token_s * sum(new_tokens) + per_context_token_s * sum(context_after)
    (+ per_seq_s * number of sequences). Integer sums are exact, so the time does not depend on
    the order of entries."""

    fixed_s: float = 5e-3
    per_new_token_s: float = 3e-5
    per_context_token_s: float = 4e-8
    per_seq_s: float = 0.0

    def iteration_time_s(self, new_tokens: np.ndarray, context_after: np.ndarray) -> float:
        return (
            self.fixed_s
            + self.per_new_token_s * float(new_tokens.sum())
            + self.per_context_token_s * float(context_after.sum())
            + self.per_seq_s * len(new_tokens)
        )


class _Seq:
    def __init__(self, r: int, prompt_eff: int, done: int, blocks: int):
        self.r, self.prompt_eff, self.done, self.blocks = r, prompt_eff, done, blocks
        self.prefilling = True


def reference_simulate(requests: Requests, model, cfg: SchedulerConfig) -> dict[str, object]:
    """Straightforward per-sequence simulation of the chunked, unchunked and prefill_first
    policies (hwsim.serving.policies) under the shared rules of hwsim.serving.scheduler.

    Returns dict of per-request lists and per-iteration trace lists."""
    n = len(requests)
    bs, total = cfg.block_size_tokens, cfg.kv_capacity_tokens // cfg.block_size_tokens
    prompt = requests.prompt_tokens.tolist()
    output = requests.output_tokens.tolist()
    cached = requests.cached_prefix_tokens.tolist() if cfg.prefix_caching else [0] * n
    servable = []
    for r in range(n):
        fits_kv = math.ceil((prompt[r] + output[r]) / bs) + 1 <= total
        fits_budget = cfg.chunked_prefill or prompt[r] - cached[r] <= cfg.max_num_batched_tokens
        servable.append(fits_kv and fits_budget)
    gen, pre = [0] * n, [0] * n
    admitted, first, finish = [math.nan] * n, [math.nan] * n, [math.nan] * n
    trace: dict[str, list] = {k: [] for k in ("start", "dt", "used", "seqs", "tokens", "waiting")}
    running: list[_Seq] = []  # admission order
    waiting: deque[int] = deque()
    pending = deque(r for r in range(n) if servable[r])
    t = 0.0

    def free() -> int:
        return total - sum(s.blocks for s in running)

    def try_admit(r: int) -> _Seq | None:
        p_eff = prompt[r] + gen[r]
        blocks = math.ceil(p_eff / bs)
        if blocks + 1 > free():
            return None
        done = cached[r] if pre[r] == 0 else 0
        if math.isnan(admitted[r]):
            admitted[r] = t
        return _Seq(r, p_eff, done, blocks)

    def decode_batch() -> list[tuple[_Seq, int]]:
        while True:
            decodes = [s for s in running if not s.prefilling]
            growing = [s for s in decodes if s.done + 1 > s.blocks * bs]
            if len(growing) <= free():
                break
            victim = running.pop()  # most recently admitted
            pre[victim.r] += 1
            waiting.appendleft(victim.r)
        for s in growing:
            s.blocks += 1
        return [(s, 1) for s in decodes]

    while True:
        while pending and requests.arrival_s[pending[0]] <= t:
            waiting.append(pending.popleft())
        if not running and not waiting:
            if not pending:
                break
            t = float(requests.arrival_s[pending[0]])
            continue
        n_waiting = len(waiting)
        batch: list[tuple[_Seq, int]] = []
        if cfg.chunked_prefill:
            prefill_first = cfg.policy_name == "prefill_first"
            batch = [] if prefill_first else decode_batch()
            budget = cfg.max_num_batched_tokens - len(batch)
            for s in running:
                if s.prefilling and budget > 0:
                    chunk = min(s.prompt_eff - s.done, budget)
                    batch.append((s, chunk))
                    budget -= chunk
            while waiting and budget > 0 and len(running) < cfg.max_num_seqs:
                s = try_admit(waiting[0])
                if s is None:
                    break
                waiting.popleft()
                running.append(s)
                chunk = min(s.prompt_eff - s.done, budget)
                batch.append((s, chunk))
                budget -= chunk
            if prefill_first and not batch:  # no prefill work: the decodes alone
                batch = decode_batch()
        else:
            budget = cfg.max_num_batched_tokens
            while waiting and len(running) < cfg.max_num_seqs:
                r = waiting[0]
                todo = prompt[r] + gen[r] - (cached[r] if pre[r] == 0 else 0)
                alone = not batch and todo > cfg.max_num_batched_tokens
                if todo > budget and not alone:
                    break
                s = try_admit(r)
                if s is None:
                    break
                waiting.popleft()
                running.append(s)
                batch.append((s, todo))
                budget -= todo
                if alone:
                    break
            if not batch:
                batch = decode_batch()
        assert batch, "reference stalled"
        new = np.array([k for _, k in batch], dtype=np.int64)
        ctx = np.array([s.done + k for s, k in batch], dtype=np.int64)
        dt = model.iteration_time_s(new, ctx)
        for key, value in zip(
            trace, (t, dt, total - free(), len(batch), int(new.sum()), n_waiting)
        ):
            trace[key].append(value)
        t += dt
        for s, k in batch:
            was_prefilling = s.prefilling
            s.done += k
            if was_prefilling and s.done < s.prompt_eff:
                continue
            s.prefilling = False
            gen[s.r] += 1
            if math.isnan(first[s.r]):
                first[s.r] = t
        for s in [s for s in running if gen[s.r] == output[s.r]]:
            running.remove(s)
            finish[s.r] = t
    return {
        "admitted_s": admitted,
        "first_token_s": first,
        "finish_s": finish,
        "preemptions": pre,
        "servable": servable,
        "trace": trace,
    }
