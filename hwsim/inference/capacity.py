"""Capacity: how many sequences fit, how long a context fits, and users per GPU.

users per GPU = concurrent sequences at context C that fit in memory and keep the decode step
under the TPOT SLO, divided by the GPUs of one replica. The step time is taken at the mean
context of a request (S + G/2), the same point the reported TPOT averages over.
"""

from __future__ import annotations

import math

import numpy as np

from hwsim.inference.deployment import Deployment, per_deployment
from hwsim.inference.engine import decode_step_cost, make_forward
from hwsim.inference.memory import cache_bytes_per_sequence_per_gpu, ops_workspace_bytes
from hwsim.inference.results import Capacity
from hwsim.labels import label_array
from hwsim.model.graph import forward_ops
from hwsim.model.positions import position_cap

# What limits users per GPU (Capacity.binding_constraint)
BINDING = (
    "memory",
    "memory (not even one sequence fits)",
    "tpot_slo",
    "tpot_slo (unreachable even at batch 1)",
)
MAX_CONTEXT_SEARCH_TOKENS = 2.0**30
MAX_BATCH = 1e7  # cap for attention-free models whose state is tiny
# Serving engines prefill long prompts in chunks; vLLM's default max_num_batched_tokens.
PREFILL_CHUNK_TOKENS = 8192


def on_unique(fn, x) -> np.ndarray:
    """Evaluate ``fn`` once per distinct value of ``x`` (sweeps repeat lengths a lot)."""
    x = np.asarray(x, dtype=float)
    if x.size <= 1:
        return np.asarray(fn(x), dtype=float)
    values, inverse = np.unique(x, return_inverse=True)
    return np.asarray(fn(values), dtype=float)[inverse].reshape(x.shape)


def prefill_workspace_bytes(dep: Deployment, prompt_len) -> np.ndarray:
    """Transient activation memory while a prompt is prefilled the way serving engines do it,
    in chunks: one chunk of at most PREFILL_CHUNK_TOKENS new tokens of one sequence attending
    to the whole prompt (its largest op's held bytes); an encoder's bidirectional forward takes
    the whole sequence at once. The one workspace both ``max_batch`` and ``memory.fits``
    count."""

    whole = dep.model.architecture == "encoder"  # bidirectional: one forward, no chunks

    def workspace(s):
        chunk = s if whole else np.minimum(s, PREFILL_CHUNK_TOKENS)
        return ops_workspace_bytes(forward_ops(make_forward(dep, "prefill", 1.0, chunk, s), dep.pp))

    return on_unique(workspace, prompt_len)


def free_bytes_for_cache(
    dep: Deployment, prompt_len, weights_bytes: float, workspace_bytes=None
) -> np.ndarray:
    """Memory left for KV/state once weights and the workspace of one prefill chunk
    (:func:`prefill_workspace_bytes`, unless given) are resident."""
    if workspace_bytes is None:
        workspace_bytes = prefill_workspace_bytes(dep, prompt_len)
    return np.maximum(dep.usable_bytes - weights_bytes - workspace_bytes, 0.0)


def max_batch(dep: Deployment, context, free_bytes) -> np.ndarray:
    per_seq = cache_bytes_per_sequence_per_gpu(dep, context)
    one = per_seq.ndim == 0 and np.ndim(free_bytes) == 0
    if one and per_seq > 0 and math.isfinite(free_bytes):  # one point: the same quotient
        return np.minimum(np.float64(math.floor(float(free_bytes) / float(per_seq))), MAX_BATCH)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 where nothing is cached
        fit = np.floor(np.where(per_seq > 0, free_bytes / per_seq, MAX_BATCH))
    return np.minimum(fit, MAX_BATCH)


def max_context(dep: Deployment, batch, free_bytes) -> np.ndarray:
    """Largest context whose cache for ``batch`` sequences fits, capped at 2^30 tokens for
    bounded (windowed/recurrent) caches. Closed form where the cache is linear in context
    (every layer keeps every token), else bisection (the cache grows monotonically)."""
    linear = _linear_cache(dep)
    if linear is not None:
        return _max_context_linear(dep, batch, free_bytes, *linear)
    return _max_context_bisect(dep, batch, free_bytes)


@per_deployment
def _linear_cache(dep: Deployment) -> tuple[float, float] | None:
    """(bytes at context 0, bytes per token) when the per-sequence cache is exactly linear in
    context up to the search cap, else None (a window or a state cap bends it)."""
    probe = np.array([0.0, 1.0, MAX_CONTEXT_SEARCH_TOKENS / 2, MAX_CONTEXT_SEARCH_TOKENS])
    cache = np.asarray(cache_bytes_per_sequence_per_gpu(dep, probe), dtype=float)
    base, slope = float(cache[0]), float(cache[1] - cache[0])
    if slope <= 0 or not np.allclose(cache, base + slope * probe, rtol=1e-12, atol=0.0):
        return None
    return base, slope


def _max_context_linear(dep: Deployment, batch, free_bytes, base: float, slope: float):
    """floor((free / batch - base) / slope), nudged by one token where rounding put it on the
    wrong side of the exact test the bisection applies."""
    b, free = np.asarray(batch, dtype=float), np.asarray(free_bytes, dtype=float)
    if b.ndim == 0 and free.ndim == 0 and math.isfinite((free / b - base) / slope):
        return np.asarray(_max_context_point(dep, float(b), float(free), base, slope))
    guess = np.floor((free / b - base) / slope)
    c = np.clip(guess, 0.0, MAX_CONTEXT_SEARCH_TOKENS)

    def fits(x):
        return b * cache_bytes_per_sequence_per_gpu(dep, x) <= free

    c = np.where(fits(c + 1) & (c < MAX_CONTEXT_SEARCH_TOKENS), c + 1, c)
    c = np.where(~fits(c) & (c > 0), c - 1, c)
    return np.where(fits(c), c, 0.0)


def _max_context_point(dep: Deployment, b: float, free: float, base: float, slope: float):
    """:func:`_max_context_linear` of one point in Python floats: the same guess, the same
    one-token nudges, each cache size evaluated once."""
    guess = float(math.floor((free / b - base) / slope))
    c = min(max(guess, 0.0), MAX_CONTEXT_SEARCH_TOKENS)

    def fits(x: float) -> bool:
        return bool(b * cache_bytes_per_sequence_per_gpu(dep, x) <= free)

    fits_c = fits(c + 1) if c < MAX_CONTEXT_SEARCH_TOKENS else None
    if fits_c:  # one more token fits
        c += 1
    else:
        fits_c = fits(c)
    if not fits_c and c > 0:  # rounding put c one past the last that fits
        c -= 1
        fits_c = fits(c)
    return c if fits_c else 0.0


def _max_context_bisect(dep: Deployment, batch, free_bytes) -> np.ndarray:
    lo = np.zeros(np.broadcast(np.asarray(batch), np.asarray(free_bytes)).shape)
    hi = np.full_like(lo, MAX_CONTEXT_SEARCH_TOKENS)
    fits_hi = batch * cache_bytes_per_sequence_per_gpu(dep, hi) <= free_bytes
    for _ in range(32):
        mid = np.floor((lo + hi) / 2)
        ok = batch * cache_bytes_per_sequence_per_gpu(dep, mid) <= free_bytes
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return np.where(fits_hi, MAX_CONTEXT_SEARCH_TOKENS, lo)


def slo_batch(dep: Deployment, context, limit, tpot_slo_s: float) -> np.ndarray:
    """Largest batch <= limit whose decode step at ``context`` meets the SLO (0 if none)."""
    limit = np.asarray(limit, dtype=float)
    lo = np.zeros(np.broadcast(limit, np.asarray(context)).shape)
    hi = np.broadcast_to(limit, lo.shape).astype(float)
    ok_one = decode_step_cost(dep, 1.0, context).time_s <= tpot_slo_s
    for _ in range(int(np.ceil(np.log2(max(float(np.max(hi)), 2.0)))) + 1):
        mid = np.ceil((lo + hi) / 2)
        ok = decode_step_cost(dep, np.maximum(mid, 1.0), context).time_s <= tpot_slo_s
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid - 1)
    return np.where(ok_one & (limit >= 1), np.maximum(lo, 1.0), 0.0)


def capacity_section(
    dep: Deployment,
    prompt_len,
    gen_len,
    weights_bytes: float,
    tpot_slo_s: float | None,
    workspace_bytes=None,
) -> Capacity:
    s, g = np.asarray(prompt_len, dtype=float), np.asarray(gen_len, dtype=float)
    context = s + g
    free = free_bytes_for_cache(dep, s, weights_bytes, workspace_bytes)
    if dep.model.architecture == "encoder":  # no cache: each sequence holds its forward
        return _encoder_capacity(dep, s, weights_bytes, workspace_bytes)
    by_memory = max_batch(dep, context, free)
    binding = np.where(by_memory >= 1, 0, 1)  # index into BINDING
    users = by_memory
    if tpot_slo_s is not None:  # prefill-only points (gen_len 0) have no decode step to meet
        by_slo = slo_batch(dep, s + g / 2, by_memory, tpot_slo_s)
        by_slo = np.where(g > 0, by_slo, by_memory)
        binding = np.where(by_slo < by_memory, np.where(by_slo == 0, 3, 2), binding)
        users = np.minimum(by_memory, by_slo)
    return Capacity.built(
        context_tokens=context,
        max_batch=by_memory,
        max_context_tokens=np.minimum(_max_context_per_free(dep, free), position_cap(dep.model)),
        users_per_gpu=users / dep.gpus_per_replica,
        binding_constraint=label_array(binding, BINDING),
    )


def _encoder_capacity(dep: Deployment, s, weights_bytes: float, workspace_bytes) -> Capacity:
    """An encoder keeps nothing between requests; its sequences run side by side, each with
    the workspace of its own forward: max batch = floor((usable - weights) / workspace)."""
    if workspace_bytes is None:
        workspace_bytes = prefill_workspace_bytes(dep, s)
    per_seq = np.asarray(workspace_bytes, dtype=float)
    room = max(dep.usable_bytes - weights_bytes, 0.0)
    by_memory = np.minimum(np.floor(room / per_seq), MAX_BATCH)
    return Capacity.built(
        context_tokens=s,
        max_batch=by_memory,
        max_context_tokens=np.full(np.shape(s), float(position_cap(dep.model))),
        users_per_gpu=by_memory / dep.gpus_per_replica,
        binding_constraint=label_array(np.where(by_memory >= 1, 0, 1), BINDING),
    )


def _max_context_per_free(dep: Deployment, free) -> np.ndarray:
    """Max context of one sequence for each free-bytes value: elementwise where the cache is
    linear (closed form, cheaper than finding the distinct values), else once per value."""
    linear = _linear_cache(dep)
    if linear is not None:
        return np.asarray(_max_context_linear(dep, 1.0, free, *linear), dtype=float)
    return on_unique(lambda f: _max_context_bisect(dep, 1.0, f), free)
