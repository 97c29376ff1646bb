"""Discrete-event simulator of a continuous-batching LLM server (one engine replica).

Time advances one engine iteration at a time by ``StepTimeModel.iteration_time_s``; when the
engine is idle it jumps to the next arrival. Arrivals are fixed in advance (:class:`Requests`,
open loop) or sent by the clients of a closed loop as earlier requests finish
(:class:`ClosedLoopRequests`, :mod:`hwsim.serving.clients`); the engine is the same. What each
iteration runs is the configured scheduling policy's choice (:mod:`hwsim.serving.policies`);
the rules all policies share are in :mod:`hwsim.serving.scheduler`. Deterministic: the same
requests, model and config give the same result (no randomness inside; seeds live in the
traffic sampler).

Engine runtime (:mod:`hwsim.serving.scheduler`): with ``num_scheduler_steps`` k > 1 one
scheduling decision runs a block of up to k iterations (the policy schedules the first, the
rest decode the running sequences; a first iteration with prefill tokens is a block of its own)
and everything the block produces (tokens, first tokens,
finishes) comes out at the block's end; ``iteration_overhead_s`` is added to each block's first
iteration and a request reaches the engine ``request_overhead_s`` after it is sent.

Token accounting (vLLM): the iteration that finishes a sequence's prefill also emits its
first output token (at the iteration's end, which is its first_token_s). That token enters
the KV cache in the next iteration, a decode, which processes 1 new token and emits the next.
So a request with P prompt and O output tokens runs one prefill (possibly chunked) with
context_after = P, then O - 1 decodes with context_after = P + 1, ..., P + O - 1.

Speed: per iteration the Python work is O(1) plus one numpy op over the decoding batch and
the step-model call; per request it is O(1) per event (admit, first token, finish, preempt).
The decoding batch is an unordered struct of arrays with swap-remove; each decoding
sequence's context is ``base + D`` with D a global decode-step counter, so no per-token update
is ever written, and finishes come off a heap keyed by the step at which they happen; the sum
of the bases is kept too, so a step model that takes it (:class:`SplitStepTimeModel`) is told
the decodes' total context without adding it up. Token times are kept the same way
(:class:`~hwsim.serving.records.TokenTimeline`): the end time of each decode step, and per
request the prefill end and first step of each stint of decoding.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Protocol, cast

import numpy as np

from hwsim.errors import HwsimError
from hwsim.serving.clients import ClientPool
from hwsim.serving.kv_blocks import DecodeBlockDemand
from hwsim.serving.overload import Overload, OverloadMonitor, arrivals_per_sample
from hwsim.serving.policies import PartialPrefill, policy_for
from hwsim.serving.records import IterationTrace, RequestRecords, SimulationResult, TokenTimeline
from hwsim.serving.scheduler import (
    COMPLETED,
    NOT_SERVED_OVERLOAD,
    SchedulerConfig,
    effective_cached_tokens,
    rejection_reasons,
)
from hwsim.serving.traffic import ClosedLoopRequests, Requests


class StepTimeModel(Protocol):
    """Duration of one engine iteration.

    Called once per iteration with one entry per scheduled sequence: ``new_tokens`` = tokens it
    processes this iteration (its prefill chunk, or 1 for a decode) and ``context_after`` = its
    context length (tokens in KV) after the iteration. Entry order carries no meaning. The
    arrays are int64 views into buffers the simulator reuses: read them during the call only.
    Must return a finite time > 0 in seconds.
    """

    def iteration_time_s(self, new_tokens: np.ndarray, context_after: np.ndarray) -> float: ...


class SplitStepTimeModel(StepTimeModel, Protocol):
    """A step model that can also be told which entries are the decodes.

    Optional: when the model has ``split_iteration_time_s``, the simulator calls it instead of
    ``iteration_time_s`` with the same arrays and two facts it knows for free: the first
    ``n_dec`` entries are the decodes (1 new token each; the prefill chunks follow) and their
    contexts add up to ``decode_context_sum`` (the engine keeps that sum as sequences join and
    leave the batch). The model need not search the arrays for the decodes nor add up their
    contexts; it must return what ``iteration_time_s(new_tokens, context_after)`` returns."""

    def split_iteration_time_s(
        self,
        new_tokens: np.ndarray,
        context_after: np.ndarray,
        n_dec: int,
        decode_context_sum: int,
    ) -> float: ...


# Optional too: a model's ``decode_only_time_s`` attribute, a callable (n_dec,
# decode_context_sum) -> seconds of an iteration of decodes alone, or None where the model
# needs the contexts themselves. The simulator calls it for decode-only iterations (most of
# them) without slicing its buffers; it must return what split_iteration_time_s returns.


def simulate(
    requests: Requests | ClosedLoopRequests,
    step_model: StepTimeModel,
    config: SchedulerConfig,
    *,
    stop_on_overload: bool = True,
) -> SimulationResult:
    """Serve ``requests`` on one engine; return per-request records and the iteration trace.

    ``stop_on_overload``: end the run once arrivals are seen to outrun service
    (:mod:`hwsim.serving.overload`); the result's ``overload`` says what was measured and the
    requests not served by then have status ``not_served_overload``. A closed loop cannot
    outrun its server (at most ``clients`` requests wait), so it always runs to the end."""
    engine = _Engine(requests, step_model, config)
    closed = engine.pool is not None
    return engine.run(OverloadMonitor() if stop_on_overload and not closed else None)


class _Engine:
    """State of one simulation run. Hot fields are copied into locals inside :meth:`run`.

    The scheduling policy reads this state and calls :meth:`schedule_decodes` and
    :meth:`admit_next` (see :meth:`~hwsim.serving.policies.SchedulingPolicy.schedule`)."""

    def __init__(
        self,
        requests: Requests | ClosedLoopRequests,
        step_model: StepTimeModel,
        config: SchedulerConfig,
    ):
        n = len(requests)
        self.requests, self.model, self.config = requests, step_model, config
        self.policy = policy_for(config.policy_name)()
        self.bs = config.block_size_tokens
        self.total_blocks = config.kv_capacity_blocks
        self.cached_arr = effective_cached_tokens(requests.cached_prefix_tokens, config)
        self.status = rejection_reasons(
            requests.prompt_tokens, requests.output_tokens, self.cached_arr, config
        )
        self.pool = (
            ClientPool(requests, self.status == COMPLETED)
            if isinstance(requests, ClosedLoopRequests)
            else None
        )
        self.prompt = requests.prompt_tokens.tolist()
        self.output = requests.output_tokens.tolist()
        self.cached = self.cached_arr.tolist()
        # Per-request progress (Python lists: scalar access is the hot path).
        nan = math.nan
        self.gen = [0] * n  # output tokens generated (up to date when not decoding)
        self.preemptions = [0] * n
        self.admitted_s, self.first_token_s, self.finish_s = [nan] * n, [nan] * n, [nan] * n
        # Decoding set: unordered slots 0..n_dec-1, swap-remove.
        cap = config.max_num_seqs
        self.base = np.zeros(cap, dtype=np.int64)  # context = base + D
        self.base_py = [0] * cap
        self.base_sum = 0  # sum of base[:n_dec]: the decodes' contexts add up to it + n_dec D
        self.slot_req, self.slot_adm = [0] * cap, [0] * cap
        self.req_slot = [0] * n
        self.n_dec = 0
        self.entry_step, self.entry_gen, self.epoch = [0] * n, [0] * n, [0] * n
        self.stint_start_s = [nan] * n  # end of the prefill that began the current stint
        self.cut_stints: list[tuple[int, float, int, int]] = []  # ended by a preemption
        self.finish_heap: list[tuple[int, int, int]] = []  # (decode step, request, epoch)
        self.demand = DecodeBlockDemand(self.bs)
        self.prefilling: deque[PartialPrefill] = deque()  # oldest first
        self.waiting: deque[int] = deque()
        self.used = 0  # KV blocks in use
        self.step = 0  # D: decode steps run so far
        self.adm_counter = 0
        self.t = 0.0
        self.n_finished = 0
        self.defer_contexts = False  # run() sets it: decode contexts filled where read

    # --- events -------------------------------------------------------------------------
    def admit_next(self) -> PartialPrefill | None:
        """Try to admit the head of the waiting queue: if blocks for its whole prompt + 1
        headroom block are free, reserve them, move it to the end of ``prefilling`` and return
        its entry (``tokens_in_kv`` = its cached prefix, if any); else return None."""
        r = self.waiting[0]
        p_eff = self.prompt[r] + self.gen[r]
        blocks = -(-p_eff // self.bs)
        if blocks + 1 > self.total_blocks - self.used:
            return None
        self.waiting.popleft()
        self.used += blocks
        done = self.cached[r] if self.preemptions[r] == 0 else 0
        if self.admitted_s[r] != self.admitted_s[r]:  # NaN: first admission
            self.admitted_s[r] = self.t
        ps = PartialPrefill(r, p_eff, done, blocks, self.adm_counter)
        self.adm_counter += 1
        self.prefilling.append(ps)
        return ps

    def finish_prefill(self, ps: PartialPrefill, t_end: float) -> None:
        """Prefill done at ``t_end``: it emitted a token; finish or join the decoding set."""
        r, p_eff = ps.request, ps.prompt_tokens
        self.gen[r] += 1
        if self.first_token_s[r] != self.first_token_s[r]:
            self.first_token_s[r] = t_end
        self.stint_start_s[r] = t_end
        remaining = self.output[r] - self.gen[r]
        if remaining <= 0:
            self.finish_s[r] = t_end
            self.n_finished += 1
            self.used -= -(-p_eff // self.bs)
            self.entry_gen[r] = self.gen[r]  # its last stint has no decodes
            if self.pool is not None:
                self.pool.finished(r, t_end)
            return
        slot, b = self.n_dec, p_eff - self.step
        self.base[slot] = b
        self.base_py[slot], self.slot_req[slot], self.slot_adm[slot] = b, r, ps.admission
        self.req_slot[r] = slot
        self.n_dec += 1
        self.base_sum += b
        self.demand.add(b)
        self.entry_step[r], self.entry_gen[r] = self.step, self.gen[r]
        self.epoch[r] += 1
        heapq.heappush(self.finish_heap, (self.step + remaining, r, self.epoch[r]))

    def remove_decoding(self, r: int) -> None:
        """Take ``r`` out of the decoding set, free its blocks, bring ``gen`` up to date."""
        slot, last = self.req_slot[r], self.n_dec - 1
        b = self.base_py[slot]
        if slot != last:
            moved = self.slot_req[last]
            self.base[slot] = self.base_py[slot] = self.base_py[last]
            self.slot_req[slot], self.slot_adm[slot] = moved, self.slot_adm[last]
            self.req_slot[moved] = slot
        self.n_dec = last
        self.base_sum -= b
        self.demand.remove(b)
        self.epoch[r] += 1  # invalidates its finish-heap entry
        self.used -= -(-(b + self.step) // self.bs)
        self.gen[r] = self.entry_gen[r] + self.step - self.entry_step[r]

    def make_room(self, need: int) -> int:
        """Preempt the newest running sequences until ``need`` new decode blocks are free;
        return the (possibly smaller) number of new blocks still needed."""
        while need > self.total_blocks - self.used and (self.n_dec or self.prefilling):
            if self.prefilling:  # partial prefills are always the newest admissions
                ps = self.prefilling.pop()
                r = ps.request
                self.used -= ps.blocks
            else:
                adm = self.slot_adm[: self.n_dec]
                slot = adm.index(max(adm))
                r = self.slot_req[slot]
                if (self.base_py[slot] + self.step) % self.bs == 0:
                    need -= 1
                e = self.entry_step[r]
                self.cut_stints.append((r, self.stint_start_s[r], e, self.step - e))
                self.remove_decoding(r)
            self.preemptions[r] += 1
            self.waiting.appendleft(r)
        return need

    def pop_finished(self, t_end: float, held: list[int] | None = None) -> None:
        """Take the sequences whose last decode step has run out of the batch; report them
        finished at ``t_end``, or, inside a multi-step block, append them to ``held`` (they
        are reported at the block's end, :meth:`release_held`)."""
        heap, epoch, step = self.finish_heap, self.epoch, self.step
        while heap and heap[0][0] <= step:
            _, r, ep = heapq.heappop(heap)
            if ep == epoch[r]:
                self.remove_decoding(r)
                if held is not None:
                    held.append(r)
                    continue
                self.finish_s[r] = t_end
                self.n_finished += 1
                if self.pool is not None:
                    self.pool.finished(r, t_end)

    def release_held(self, held: list[int], t_end: float) -> None:
        """Report the requests that finished inside a multi-step block, at its end."""
        for r in held:
            self.finish_s[r] = t_end
            self.n_finished += 1
            if self.pool is not None:
                self.pool.finished(r, t_end)
        held.clear()

    # --- main loop ----------------------------------------------------------------------
    def run(self, monitor: OverloadMonitor | None = None) -> SimulationResult:
        cfg = self.config
        overload: Overload | None = None
        step = arrivals_per_sample(len(self.requests))
        next_check = step
        servable = np.flatnonzero(self.status == COMPLETED)
        n_servable = len(servable)
        if self.pool is None:
            arrivals = cast(Requests, self.requests).arrival_s[servable].tolist() + [math.inf]
            order = servable.tolist()
        else:  # the pool inserts sends into these lists as requests finish
            self.pool.start()
            arrivals, order = self.pool.times, self.pool.order
        cap = cfg.max_num_seqs
        new_buf = np.ones(cap, dtype=np.int64)
        ctx_buf = np.zeros(cap, dtype=np.int64)
        iteration = self.model.iteration_time_s
        split = getattr(self.model, "split_iteration_time_s", None)  # a SplitStepTimeModel's
        decode_only = getattr(self.model, "decode_only_time_s", None) if split else None
        # decode-only iterations then read no per-sequence contexts: fill them only for the
        # iterations that do (schedule_decodes)
        self.defer_contexts = decode_only is not None
        policy = self.policy
        schedule = policy.schedule
        waiting, prefilling = self.waiting, self.prefilling
        t_start_l, dt_l, used_l, seqs_l, tokens_l, wait_l = [], [], [], [], [], []
        step_end_l: list[float] = []  # end time of each decode step
        step_end = step_end_l.append
        nxt = 0
        # The engine runtime (scheduler module doc): k decode steps per scheduling decision,
        # host time per decision, the delay before a sent request reaches the engine.
        k = cfg.num_scheduler_steps
        overhead = cfg.iteration_overhead_s
        delay = cfg.request_overhead_s
        block_left = 0  # decode-only iterations still to run in the current block
        block_first_step = 0  # index in step_end_l of the block's first decode step
        held: list[int] = []  # finished inside the block, reported at its end
        deciding = True  # this iteration is a block's first (a scheduling decision)
        while True:
            t = self.t
            while arrivals[nxt] + delay <= t:
                waiting.append(order[nxt])
                nxt += 1
            n_waiting = len(waiting)
            if block_left == 0:  # a scheduling decision: the policy's choice
                if not (self.n_dec or prefilling or waiting):
                    if nxt >= n_servable:
                        break
                    self.t = arrivals[nxt] + delay
                    continue
                n_sched, tokens, n_dec, n_pf = schedule(self, new_buf, ctx_buf)
                if n_sched == 0:
                    raise HwsimError(
                        f"serving simulator stalled: policy {policy.name!r} scheduled nothing "
                        "while work is pending (a bug in the policy)"
                    )
                block_first_step = len(step_end_l)
                # a batch with prefill tokens runs a single step (vLLM's multi-step)
                block_left = k - 1 if n_dec and not n_pf else 0
                deciding = True
            else:  # inside a multi-step block: the running decodes only
                n_dec = n_sched = tokens = self.schedule_decodes(ctx_buf) if self.n_dec else 0
                n_pf = 0
                block_left -= 1
                deciding = False
                if n_dec == 0:  # every decode was preempted: the block ends here
                    block_left = 0
                    self._end_block(block_first_step, step_end_l, held, t)
                    continue
            if split is None:
                dt = iteration(new_buf[:n_sched], ctx_buf[:n_sched])
            else:  # the decodes' contexts are base + D + 1 (schedule_decodes; D not yet run)
                dec_sum = self.base_sum + n_dec * (self.step + 1) if n_dec else 0
                if n_pf == 0 and decode_only is not None:
                    dt = decode_only(n_dec, dec_sum)
                else:
                    if n_dec and self.defer_contexts:
                        np.add(self.base[:n_dec], self.step + 1, out=ctx_buf[:n_dec])
                    dt = split(new_buf[:n_sched], ctx_buf[:n_sched], n_dec, dec_sum)
            if not 0.0 < dt < math.inf:
                raise HwsimError(f"step model returned iteration time {dt!r}; need finite > 0")
            if overhead and deciding:
                dt += overhead  # host time, once per scheduling decision
            t_end = t + dt
            self.t = t_end
            t_start_l.append(t)
            dt_l.append(dt)
            used_l.append(self.used)
            seqs_l.append(n_sched)
            tokens_l.append(tokens)
            wait_l.append(n_waiting)
            if n_dec:
                self.step += 1
                step_end(t_end)
            if n_pf:
                new_buf[n_dec:n_sched] = 1  # restore decode entries for the next iteration
            if k == 1:
                if n_pf:
                    self._complete_prefills(t_end)
                if n_dec and self.finish_heap and self.finish_heap[0][0] <= self.step:
                    self.pop_finished(t_end)
            else:
                if n_dec and self.finish_heap and self.finish_heap[0][0] <= self.step:
                    self.pop_finished(t_end, held)
                if block_left == 0 or not self.n_dec:
                    block_left = 0
                    self._end_block(block_first_step, step_end_l, held, t_end)
            if monitor is not None and nxt >= next_check:
                next_check += step
                overload = monitor.sample(t_end, nxt, self.n_finished, len(waiting))
                if overload is not None:
                    self._mark_unserved()
                    break
        trace = IterationTrace(
            start_s=np.asarray(t_start_l, dtype=np.float64),
            duration_s=np.asarray(dt_l, dtype=np.float64),
            kv_blocks_used=np.asarray(used_l, dtype=np.int64),
            num_seqs=np.asarray(seqs_l, dtype=np.int64),
            num_tokens=np.asarray(tokens_l, dtype=np.int64),
            num_waiting=np.asarray(wait_l, dtype=np.int64),
            kv_blocks_total=self.total_blocks,
        )
        return SimulationResult(
            records=self._records(),
            trace=trace,
            config=cfg,
            overload=overload,
            timeline=self._timeline(step_end_l),
            clients=self.pool.clients if self.pool is not None else None,
        )

    def _mark_unserved(self) -> None:
        """Requests a run stopped for overload did not finish: say so in their status."""
        status = self.status.astype(object)
        unfinished = np.isnan(np.asarray(self.finish_s, dtype=np.float64))
        status[(status == COMPLETED) & unfinished] = NOT_SERVED_OVERLOAD
        self.status = status.astype(str)

    def schedule_decodes(self, ctx_buf: np.ndarray) -> int:
        """Allocate this iteration's decode blocks (preempting if short); fill decode contexts
        (with ``defer_contexts``, the step model's decode-only entry needs none: the loop
        fills them before an iteration with prefill chunks)."""
        need = self.demand.at_next_step(self.step)
        if need > self.total_blocks - self.used:
            need = self.make_room(need)
        n_dec = self.n_dec
        if n_dec:
            self.used += need
            if not self.defer_contexts:
                np.add(self.base[:n_dec], self.step + 1, out=ctx_buf[:n_dec])
        return n_dec

    def _end_block(
        self, first_step: int, step_end_s: list[float], held: list[int], t_end: float
    ) -> None:
        """End of a multi-step block at ``t_end``: its tokens, its prefills' first tokens
        and its finished requests all come out now."""
        for i in range(first_step, len(step_end_s)):
            step_end_s[i] = t_end
        if self.prefilling:
            self._complete_prefills(t_end)
        if held:
            self.release_held(held, t_end)

    def _complete_prefills(self, t_end: float) -> None:
        prefilling = self.prefilling
        while prefilling and (ps := prefilling[0]).tokens_in_kv == ps.prompt_tokens:
            prefilling.popleft()
            self.finish_prefill(ps, t_end)

    def _timeline(self, step_end_s: list[float]) -> TokenTimeline:
        """Stints of the completed requests: those cut by preemptions, then each last one."""
        done = np.flatnonzero(~np.isnan(np.asarray(self.finish_s, dtype=np.float64)))
        cut = [c for c in self.cut_stints if self.finish_s[c[0]] == self.finish_s[c[0]]]
        cut_cols = np.array(cut, dtype=np.float64).reshape(-1, 4).T
        last_decodes = np.asarray(self.output)[done] - np.asarray(self.entry_gen)[done]
        return TokenTimeline(
            decode_step_end_s=np.asarray(step_end_s, dtype=np.float64),
            stint_request=np.concatenate((cut_cols[0], done)).astype(np.int64),
            stint_start_s=np.concatenate((cut_cols[1], np.asarray(self.stint_start_s)[done])),
            stint_first_step=np.concatenate(
                (cut_cols[2], np.asarray(self.entry_step)[done])
            ).astype(np.int64),
            stint_decodes=np.concatenate((cut_cols[3], last_decodes)).astype(np.int64),
        )

    def _records(self) -> RequestRecords:
        req = self.requests
        if isinstance(req, ClosedLoopRequests):
            arrival_s = np.asarray(self.pool.sent_s if self.pool else [], dtype=np.float64)
        else:
            arrival_s = req.arrival_s.copy()
        return RequestRecords(
            arrival_s=arrival_s,
            admitted_s=np.asarray(self.admitted_s, dtype=np.float64),
            first_token_s=np.asarray(self.first_token_s, dtype=np.float64),
            finish_s=np.asarray(self.finish_s, dtype=np.float64),
            prompt_tokens=req.prompt_tokens.copy(),
            output_tokens=req.output_tokens.copy(),
            cached_prefix_tokens=self.cached_arr.copy(),
            preemptions=np.asarray(self.preemptions, dtype=np.int64),
            status=self.status,
        )
