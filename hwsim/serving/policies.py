"""Scheduling policies of the serving simulator: which work one engine iteration runs.

A policy is one class, registered by name with :func:`register_policy`;
:attr:`SchedulerConfig.policy <hwsim.serving.scheduler.SchedulerConfig>` picks one (by default
``"chunked"`` or ``"unchunked"`` from ``chunked_prefill``). The engine
(:mod:`hwsim.serving.simulator`) instantiates it once per run and calls
:meth:`SchedulingPolicy.schedule` once per iteration. Rules every policy shares (admission
headroom, preemption, rejection) are in :mod:`hwsim.serving.scheduler`.

Registered policies:

``chunked`` (vLLM v1 / v0 with chunked prefill)
    1. every running decode gets 1 token; 2. running partial prefills continue, oldest first;
    3. waiting requests are admitted FCFS, each taking a chunk of what is left of the
    ``max_num_batched_tokens`` budget. Requires max_num_batched_tokens >= max_num_seqs.
``unchunked`` (vLLM v0 default scheduler)
    If the head of the waiting queue can be admitted, the iteration is *prefill-only*: whole
    prompts are admitted FCFS while they fit the token budget; running decodes skip that
    iteration (this is the prefill/decode interference chunked prefill removes). Otherwise
    it is a decode-only iteration. A fresh prompt longer than the budget is rejected (vLLM
    refuses it); a preempted sequence whose recompute prompt exceeds the budget runs alone.
``prefill_first`` (SGLang's default scheduler)
    Prefill chunks as ``chunked`` schedules them (running partial prefills first, then FCFS
    admissions, within ``max_num_batched_tokens``, SGLang's ``--chunked-prefill-size``), but
    an iteration with any prefill chunk runs no decode; only when there is no prefill work
    does a decode-only iteration run. SGLang's ``get_next_batch_to_run`` builds a prefill
    batch first and returns it if there is one ("Run prefill first if possible"), else runs
    the decode batch; prefill and decode share a batch only with ``--enable-mixed-chunk``,
    default False (sgl-project/sglang python/sglang/srt/managers/scheduler.py and
    server_args.py, v0.3 to v0.5). Not modelled: SGLang's conservative admission, which
    also reserves KV for the running requests' future tokens (``new_token_ratio``).

A new policy is one small subclass of :class:`SchedulingPolicy` with a ``name``, a
``chunked_prefill`` flag and a ``schedule`` method, decorated with :func:`register_policy`
(its module must be imported before a config names it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np

from hwsim.errors import HwsimError

if TYPE_CHECKING:
    from hwsim.serving.simulator import _Engine


@dataclass(slots=True)
class PartialPrefill:
    """A running sequence whose prefill is not finished (``engine.prefilling``, oldest first)."""

    request: int
    # Tokens to prefill into KV: the prompt, + the tokens generated before a preemption.
    prompt_tokens: int
    tokens_in_kv: int  # of those, already in KV (cached prefix + chunks scheduled so far)
    blocks: int  # KV blocks reserved for all of prompt_tokens at admission
    admission: int  # admission number (preemption takes the highest first)


class UnknownPolicyError(HwsimError, ValueError):
    """A policy name that is not registered (a ValueError so config validation reports it)."""


class SchedulingPolicy:
    """Base class of a scheduling policy (see the module docstring)."""

    name: ClassVar[str]  # registry key, the value of SchedulerConfig.policy
    # True: a prompt may be prefilled in chunks over several iterations. False: a fresh prompt
    # (less any cached prefix) over max_num_batched_tokens is rejected, and the token budget
    # need not cover one token per sequence.
    chunked_prefill: ClassVar[bool]

    def schedule(
        self, engine: _Engine, new_buf: np.ndarray, ctx_buf: np.ndarray
    ) -> tuple[int, int, int, int]:
        """Choose this iteration's work; return ``(n_sched, tokens, n_dec, n_pf)``.

        Entries ``0..n_dec-1`` of the buffers are the decodes: ``engine.schedule_decodes``
        allocates their blocks (preempting if short), has their contexts in ``ctx_buf`` by
        the time the step model reads them (a policy should not read them itself: with a
        decode-only entry, ``engine.defer_contexts``, the engine fills them only for
        iterations with prefill chunks) and returns ``n_dec`` (``new_buf`` already holds 1
        there). Entries
        ``n_dec..n_sched-1`` are prefill chunks, ``n_pf = n_sched - n_dec`` of them, of
        ``engine.prefilling`` in its order: write the chunk to ``new_buf``, the sequence's
        ``tokens_in_kv`` after it (advanced by the chunk) to ``ctx_buf``.
        ``engine.admit_next()`` admits the head of ``engine.waiting``. ``tokens`` = the sum of
        ``new_buf[:n_sched]``. Scheduling nothing while work is pending is an error.
        """
        raise NotImplementedError


POLICIES: dict[str, type[SchedulingPolicy]] = {}

P = TypeVar("P", bound=type[SchedulingPolicy])


def register_policy(cls: P) -> P:
    """Class decorator: make ``cls`` available as ``SchedulerConfig(policy=cls.name)``."""
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} must set its own `name` (a non-empty str)")
    if not isinstance(getattr(cls, "chunked_prefill", None), bool):
        raise TypeError(f"{cls.__qualname__} must set `chunked_prefill` (a bool)")
    if name in POLICIES:
        raise RuntimeError(
            f"scheduling policy {name!r} registered twice "
            f"({POLICIES[name].__qualname__} and {cls.__qualname__})"
        )
    POLICIES[name] = cls
    return cls


def policy_for(name: str) -> type[SchedulingPolicy]:
    """The policy class registered under ``name``."""
    try:
        return POLICIES[name]
    except KeyError:
        allowed = ", ".join(sorted(POLICIES))
        raise UnknownPolicyError(
            f"unknown scheduling policy {name!r}; allowed: {allowed}"
        ) from None


def _prefill_chunks(
    engine: _Engine, new_buf: np.ndarray, ctx_buf: np.ndarray, first_slot: int, budget: int
) -> tuple[int, int]:
    """Running partial prefills (oldest first), then FCFS admissions, each taking a chunk of
    what is left of ``budget``, into slots from ``first_slot``; return (chunks, tokens)."""
    slot, budget_left = first_slot, budget
    prefilling, waiting = engine.prefilling, engine.waiting
    for ps in prefilling:
        if budget_left <= 0:
            break
        budget_left -= _next_chunk(ps, budget_left, new_buf, ctx_buf, slot)
        slot += 1
    max_seqs = engine.config.max_num_seqs
    while waiting and budget_left > 0 and engine.n_dec + len(prefilling) < max_seqs:
        admitted = engine.admit_next()
        if admitted is None:
            break
        budget_left -= _next_chunk(admitted, budget_left, new_buf, ctx_buf, slot)
        slot += 1
    return slot - first_slot, budget - budget_left


def _next_chunk(
    ps: PartialPrefill, budget_left: int, new_buf: np.ndarray, ctx_buf: np.ndarray, slot: int
) -> int:
    """Schedule the next chunk of ``ps`` (at most ``budget_left`` tokens) into ``slot``."""
    chunk = min(ps.prompt_tokens - ps.tokens_in_kv, budget_left)
    ps.tokens_in_kv += chunk
    new_buf[slot], ctx_buf[slot] = chunk, ps.tokens_in_kv
    return chunk


@register_policy
class ChunkedPrefillPolicy(SchedulingPolicy):
    """``chunked``: decodes, then partial prefills, then admissions, in one token budget."""

    name = "chunked"
    chunked_prefill = True

    def schedule(
        self, engine: _Engine, new_buf: np.ndarray, ctx_buf: np.ndarray
    ) -> tuple[int, int, int, int]:
        n_dec = engine.schedule_decodes(ctx_buf) if engine.n_dec else 0
        if not (engine.prefilling or engine.waiting):  # decodes only (most iterations)
            return n_dec, n_dec, n_dec, 0
        budget = engine.config.max_num_batched_tokens - n_dec
        n_pf, tokens = _prefill_chunks(engine, new_buf, ctx_buf, n_dec, budget)
        return n_dec + n_pf, n_dec + tokens, n_dec, n_pf


@register_policy
class UnchunkedPrefillFirstPolicy(SchedulingPolicy):
    """``unchunked``: a prefill-only iteration if the waiting head can be admitted, else decode."""

    name = "unchunked"
    chunked_prefill = False

    def schedule(
        self, engine: _Engine, new_buf: np.ndarray, ctx_buf: np.ndarray
    ) -> tuple[int, int, int, int]:
        waiting = engine.waiting
        budget = engine.config.max_num_batched_tokens
        budget_left, n_sched, max_seqs = budget, 0, engine.config.max_num_seqs
        while waiting and engine.n_dec + n_sched < max_seqs:
            r = waiting[0]
            p_eff = engine.prompt[r] + engine.gen[r]
            todo = p_eff - (engine.cached[r] if engine.preemptions[r] == 0 else 0)
            alone = n_sched == 0 and todo > budget  # resumed sequence over the budget
            if todo > budget_left and not alone:
                break
            ps = engine.admit_next()
            if ps is None:
                break
            ps.tokens_in_kv = p_eff
            new_buf[n_sched], ctx_buf[n_sched] = todo, p_eff
            n_sched += 1
            budget_left -= todo
            if alone:
                break
        if n_sched:
            return n_sched, budget - budget_left, 0, n_sched
        n_dec = engine.schedule_decodes(ctx_buf) if engine.n_dec else 0
        return n_dec, n_dec, n_dec, 0


@register_policy
class PrefillFirstPolicy(SchedulingPolicy):
    """``prefill_first``: a prefill-only iteration of chunks if there is prefill work, else
    a decode-only iteration (module docstring)."""

    name = "prefill_first"
    chunked_prefill = True

    def schedule(
        self, engine: _Engine, new_buf: np.ndarray, ctx_buf: np.ndarray
    ) -> tuple[int, int, int, int]:
        if engine.prefilling or engine.waiting:
            budget = engine.config.max_num_batched_tokens
            n_pf, tokens = _prefill_chunks(engine, new_buf, ctx_buf, 0, budget)
            if n_pf:
                return n_pf, tokens, 0, n_pf
        n_dec = engine.schedule_decodes(ctx_buf) if engine.n_dec else 0
        return n_dec, n_dec, n_dec, 0
