"""Iteration time of a continuous-batching engine, priced by the same op builder as
``hwsim.estimate``.

One iteration runs the decode sequences (one new token each) and any prefill chunks together:
weights are read once, per-token work adds up. The decode part is priced per layer group from
the sequences' own contexts c_i: a group whose decode cost is linear in the context (full
attention, MLA, the recurrent layers, which do not depend on it) at the batch's mean context,
so its keys are sum_i c_i; a group capped at W keys (sliding window, the local layers of a
local/global model, StreamingLLM's sinks + window: :func:`decode_window_caps`) at the mean of
min(c_i, W), so its keys are sum_i min(c_i, W) -- not b min(mean c, W), which counts a short
sequence's keys as if it were as long as the mean (1,000 and 15,000 tokens, W 4,096: 5,096
keys, not 8,192). Both means are rounded to CONTEXT_QUANTUM tokens and the decode part memoised
on them, since consecutive iterations repeat the same shapes. Other attention patterns
(block-sparse, strided, memory-augmented) are priced at the mean context.

Speed: :class:`~hwsim.planner.compiled_step.FastPricer` computes the same iteration time
in closed form (see that module); :meth:`EngineStepModel._reference_iteration_time_s` is the
definition it is checked against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache

import numpy as np

from hwsim.inference.deployment import Deployment
from hwsim.inference.engine import make_forward
from hwsim.inference.memory import cache_bytes_per_sequence_per_gpu, kv_bytes_per_token_per_gpu
from hwsim.inference.runtime_terms import launch_overhead_s
from hwsim.model.ffn import expected_distinct_experts
from hwsim.model.graph import forward_ops
from hwsim.model.layers import layer_groups
from hwsim.model.mixers.base import Mixer
from hwsim.model.mixers.sliding_window import SlidingWindowAttention
from hwsim.model.mixers.streaming import StreamingAttention
from hwsim.model.ops import Op
from hwsim.perf.roofline import time_op
from hwsim.planner.compiled_step import FastPricer
from hwsim.planner.step_fit import CONTEXT_QUANTUM, QUANTITIES, SUMMED

_INT64 = np.dtype(np.int64)
_ONES: dict[int, bytes] = {}  # size -> bytes of that many int64 ones


def _lengths(x):
    """A context as the op builders take it (as ``make_forward`` makes it): a float, or a
    float array."""
    arr = np.asarray(x, dtype=float)
    return float(arr) if arr.ndim == 0 else arr


def quantised_context(mean: float) -> int:
    """A decode part's mean context (or mean windowed context) as priced and memoised: rounded
    to CONTEXT_QUANTUM tokens, at least one quantum."""
    q = round(mean / CONTEXT_QUANTUM) * CONTEXT_QUANTUM
    return q if q >= CONTEXT_QUANTUM else CONTEXT_QUANTUM


def _window_cap(mixer: Mixer) -> int | None:
    """W if the mixer is a causal window of W keys by its class (its counting methods the
    class's own); None otherwise."""
    cls = type(mixer)
    if (
        isinstance(mixer, SlidingWindowAttention)
        and cls.keys_per_decode_step is SlidingWindowAttention.keys_per_decode_step
        and cls.pairs_per_head is SlidingWindowAttention.pairs_per_head
    ):
        return int(mixer.window)
    if (
        isinstance(mixer, StreamingAttention)
        and cls.keys_per_decode_step is StreamingAttention.keys_per_decode_step
        and cls.pairs_per_head is StreamingAttention.pairs_per_head
    ):
        return int(mixer.cache_tokens)
    return None


def decode_window_caps(dep: Deployment) -> dict[int, tuple[Mixer, int]]:
    """id(mixer) -> (mixer, W) for the layer groups whose decode ops see the context only through
    min(context, W) and linearly below W (sliding window, StreamingLLM; the local layers of a
    local/global model): checked on the op builders, so a kernel whose traffic grows with the
    whole context (``attention_impl: naive`` materialises a score per cached token) is not."""
    caps: dict[int, tuple[Mixer, int]] = {}
    for mixer, _is_moe, _count in layer_groups(dep.model):
        w = _window_cap(mixer)
        if w is None:
            continue

        def quantities(context: float, mixer: Mixer = mixer) -> list[float]:
            ops = mixer.ops(make_forward(dep, "decode", 3.0, 1.0, context))
            return [
                float(np.sum(getattr(op, name)))
                for op in ops
                for names in QUANTITIES.values()
                for name in names
            ]

        at_cap = quantities(float(w))
        if all(quantities(float(c)) == at_cap for c in (w + 1, 2 * w + 37, 8 * w)):
            caps[id(mixer)] = (mixer, w)
    return caps


class EngineStepModel:
    """``iteration_time_s(new_tokens, context_after)`` for one deployment (one replica).

    ``fast=False`` prices every iteration by the reference (the op builders and ``time_op``).
    With the deployment's ``runtime.cuda_graphs`` a decode-only iteration of at most
    ``runtime.cuda_graph_max_batch`` sequences is priced without its per-kernel launch
    overhead (:func:`launch_overhead_s`; a graph replay launches the step once); larger ones
    and iterations with prefill tokens keep it. The runtime's host overheads are the
    simulator's (:class:`~hwsim.serving.scheduler.SchedulerConfig`), not this model's."""

    def __init__(self, dep: Deployment, *, fast: bool = True):
        self.dep = dep
        # the windowed layer groups: their caps W (sorted, distinct; the decode part's
        # windowed contexts follow this order) and each such mixer's slot (1 + index of W)
        caps = decode_window_caps(dep)
        self.windows: tuple[int, ...] = tuple(sorted({w for _m, w in caps.values()}))
        self._window_mixers = {
            key: (mixer, 1 + self.windows.index(w)) for key, (mixer, w) in caps.items()
        }
        self._window_slot = {key: slot for key, (_m, slot) in self._window_mixers.items()}
        self._window_arrays = tuple(np.int64(w) for w in self.windows)
        self._decode_ops = lru_cache(maxsize=65536)(self._decode_ops_uncached)
        self._decode_time = lru_cache(maxsize=65536)(self._decode_time_uncached)
        # decode-only iterations under CUDA graphs skip this (the same for every batch and
        # context: the decode op list's kernels do not change with them)
        self.graph_saving_s = 0.0
        self.graph_max_batch = dep.spec.runtime.cuda_graph_max_batch  # larger batches: eager
        if dep.spec.runtime.cuda_graphs:
            self.graph_saving_s = launch_overhead_s(
                dep.hardware, self._decode_ops(1, float(CONTEXT_QUANTUM))
            )
        self._fast: FastPricer | None = None
        self.fast_path_note = "reference only (fast=False)"
        if fast:
            self._fast, self.fast_path_note = FastPricer.build(self)
        # the simulator's entry for decode-only iterations (hwsim.serving.simulator): where
        # the decode part needs no per-sequence contexts (the fast path, no windowed layers)
        self.decode_only_time_s: Callable[[int, int], float] | None = None
        if self._fast is not None and not self.windows:
            self.decode_only_time_s = self._decode_only_by_sum_s

    @property
    def fast_path_active(self) -> bool:
        return self._fast is not None

    def iteration_time_s(self, new_tokens, context_after) -> float:
        fast = self._fast
        new, ctx = new_tokens, context_after
        if not (  # the simulator's int64 vectors; anything else is normalised first
            type(new) is np.ndarray
            and type(ctx) is np.ndarray
            and new.dtype is _INT64
            and ctx.dtype is _INT64
            and new.ndim == 1
            and ctx.shape == new.shape
        ):
            new, ctx = np.asarray(new_tokens), np.asarray(context_after)
            if not (
                new.ndim == 1
                and ctx.shape == new.shape
                and new.dtype.kind in "iu"
                and ctx.dtype.kind in "iu"
            ):
                return self._reference_iteration_time_s(new_tokens, context_after)
            new, ctx = new.astype(np.int64), ctx.astype(np.int64)
        if fast is None:
            return self._reference_iteration_time_s(new, ctx)
        size = new.size
        ones = _ONES.get(size)
        if ones is None:
            ones = _ONES[size] = np.ones(size, dtype=np.int64).tobytes()
        windows = self._window_arrays
        if new.tobytes() == ones:  # decodes only (a bytes compare is the quickest test)
            if size == 0:
                return 0.0
            # integer sum, so the mean is the reference's float
            q = quantised_context(int(np.add.reduce(ctx)) / size)
            xs = self._windowed_contexts(ctx, size) if windows else ()
            return self._decode_only_s(size, q, xs)
        idx = (new != 1).nonzero()[0]
        chunk_new: list[int] = new[idx].tolist()
        chunk_ctx: list[int] = ctx[idx].tolist()
        n_dec = size - len(chunk_new)
        q = 0
        windowed: tuple[int, ...] = ()
        if n_dec:
            q = quantised_context((int(np.add.reduce(ctx)) - sum(chunk_ctx)) / n_dec)
            if windows:
                windowed = self._windowed_contexts(ctx[new == 1], n_dec)
        t = fast.time_s(n_dec, q, chunk_new, chunk_ctx, windowed)
        if t is None:
            return self._reference_iteration_time_s(new, ctx)
        return t

    def split_iteration_time_s(
        self, new_tokens: np.ndarray, context_after: np.ndarray, n_dec: int, decode_context_sum: int
    ) -> float:
        """``iteration_time_s`` of the simulator's int64 arrays, told that the first ``n_dec``
        entries are decodes whose contexts add up to ``decode_context_sum``
        (:class:`~hwsim.serving.simulator.SplitStepTimeModel`): the fast path without the
        array passes that find the decodes and add up their contexts."""
        fast = self._fast
        if fast is None or self.windows:  # the windowed means need the contexts themselves
            return self.iteration_time_s(new_tokens, context_after)
        size = len(new_tokens)
        if n_dec == size:
            # the same float as iteration_time_s's integer sum / size
            return self._decode_only_s(size, quantised_context(decode_context_sum / size))
        chunk_new: list[int] = new_tokens[n_dec:].tolist()
        if 1 in chunk_new:  # a 1-token chunk is priced as a decode (new == 1, the definition)
            return self.iteration_time_s(new_tokens, context_after)
        chunk_ctx: list[int] = context_after[n_dec:].tolist()
        q = 0
        if n_dec:
            q = quantised_context(decode_context_sum / n_dec)
        t = fast.time_s(n_dec, q, chunk_new, chunk_ctx)
        if t is None:
            return self._reference_iteration_time_s(new_tokens, context_after)
        return t

    def _decode_only_by_sum_s(self, n_dec: int, decode_context_sum: int) -> float:
        """``split_iteration_time_s`` of ``n_dec`` decodes alone, told their contexts' sum."""
        return self._decode_only_s(n_dec, quantised_context(decode_context_sum / n_dec))

    def _windowed_contexts(self, dec_ctx: np.ndarray, n_dec: int) -> tuple[int, ...]:
        """Per window W (``self.windows``), the decodes' quantised mean of min(c_i, W), from
        their int64 contexts (integer sums, so the means are the reference's floats)."""
        out = []
        for w in self._window_arrays:
            out.append(quantised_context(int(np.add.reduce(np.minimum(dec_ctx, w))) / n_dec))
        return tuple(out)

    def _decode_only_s(self, size: int, q: int, windowed: tuple[int, ...] = ()) -> float:
        """A decode-only iteration of ``size`` sequences at quantised mean context ``q``
        (``windowed``: per window, the quantised mean of min(c, W)), memoised by the fast
        pricer, less what a CUDA-graph replay saves."""
        fast = self._fast
        assert fast is not None
        key = (size, q, windowed) if windowed else (size, q)
        t = fast.decode_only.get(key)
        if t is None:
            t = fast.decode_only_time_s(size, q, windowed)
        return t - self._graph_saving_s(size)

    def _graph_saving_s(self, size: int) -> float:
        """What a graph replay saves on a decode-only iteration of ``size`` sequences."""
        return self.graph_saving_s if size <= self.graph_max_batch else 0.0

    # -- the definition ------------------------------------------------------------------
    def decode_contexts(self, dec_ctx) -> tuple[int, tuple[int, ...]]:
        """The contexts a decode part of sequences at contexts ``dec_ctx`` is priced at:
        (the quantised mean context, for every window W of ``self.windows`` the quantised mean
        of min(c_i, W))."""
        c = np.asarray(dec_ctx, dtype=float)
        n = c.size
        mean = quantised_context(float(c.mean()))
        return mean, tuple(
            quantised_context(float(np.minimum(c, w).sum()) / n) for w in self.windows
        )

    def _reference_iteration_time_s(self, new_tokens, context_after) -> float:
        """The iteration time by definition: the ops built and merged, each priced by
        ``time_op`` (what :meth:`iteration_time_s` reproduces, faster)."""
        new = np.asarray(new_tokens, dtype=float)
        ctx = np.asarray(context_after, dtype=float)
        if new.size == 0:
            return 0.0
        decoding = new == 1
        parts: list[list[Op]] = []
        n_dec = int(decoding.sum())
        if n_dec:
            quantised, windowed = self.decode_contexts(ctx[decoding])
            if n_dec == new.size:
                t = self._decode_time(n_dec, quantised, windowed)
                return t - self._graph_saving_s(n_dec)
            parts.append(self._decode_ops(n_dec, quantised, windowed))
        if n_dec < new.size:
            fw = make_forward(self.dep, "prefill", 1.0, new[~decoding], ctx[~decoding])
            parts.append(forward_ops(fw, self.dep.pp))
        total_tokens = float(new.sum())
        merged = [self._merge(ops, total_tokens) for ops in zip(*parts)]
        return float(sum(float(np.sum(time_op(self.dep.hardware, op).total_s)) for op in merged))

    def _decode_time_uncached(
        self, n_seqs: int, context: float, windowed: tuple[float, ...] | None = None
    ) -> float:
        ops = self._decode_ops(n_seqs, context, windowed)
        return float(sum(float(np.sum(time_op(self.dep.hardware, op).total_s)) for op in ops))

    def _decode_ops_uncached(
        self, n_seqs: int, context: float, windowed: tuple[float, ...] | None = None
    ) -> list[Op]:
        return self.build_decode_ops(float(n_seqs), context, windowed)

    def build_decode_ops(self, batch, context, windowed: Sequence | None = None) -> list[Op]:
        """The ops of ``batch`` decodes: the windowed groups' mixers at ``windowed`` (one mean
        windowed context per W of ``self.windows``; None: ``context`` for all, i.e. every
        sequence at that context), the rest at the mean ``context``. Scalars or arrays (the
        fast path's probes)."""
        dep = self.dep
        fw = make_forward(dep, "decode", batch, 1.0, context)
        if not self.windows:
            return forward_ops(fw, dep.pp)
        if windowed is None:
            windowed = (context,) * len(self.windows)
        if len(windowed) != len(self.windows):
            raise ValueError(f"{len(windowed)} windowed contexts for windows {self.windows}")
        fws = [fw, *(replace(fw, context=_lengths(x)) for x in windowed)]
        return forward_ops(fw, dep.pp, lambda mixer: fws[self._slot_of(mixer)])

    def _slot_of(self, mixer: Mixer) -> int:
        """The windowed context a layer group's mixer follows: 1 + index of its W, 0 (the mean
        context) if it is not windowed."""
        slot = self._window_slot.get(id(mixer))
        if slot is not None:
            return slot
        for known, known_slot in self._window_mixers.values():  # the same mixer, rebuilt
            if known == mixer:
                return known_slot
        return 0

    @staticmethod
    def _merge(ops: tuple[Op, ...], total_tokens: float) -> Op:
        """One op of the iteration: per-token work summed, weights read once."""
        first = ops[0]
        summed = {f: float(sum(np.sum(getattr(op, f)) for op in ops)) for f in SUMMED}
        weight = max(float(np.max(op.weight_bytes)) for op in ops)
        if "expert_bytes" in first.meta:  # experts touched by all tokens of the iteration
            m = first.meta
            weight = float(
                expected_distinct_experts(total_tokens, m["n_experts"], m["top_k"])
                * m["expert_bytes"]
            )
        return replace(first, weight_bytes=weight, **summed)  # type: ignore[arg-type]

    # -- memory the scheduler may fill ---------------------------------------------------
    def kv_capacity_tokens(self, weights_bytes: float, workspace_bytes: float = 0.0) -> int:
        """Tokens of KV the replica can hold after weights and workspace (per GPU view)."""
        dep = self.dep
        usable = dep.usable_bytes
        free = usable - weights_bytes - workspace_bytes
        per_token = kv_bytes_per_token_per_gpu(dep)
        if per_token <= 0:  # recurrent-only: bounded by per-sequence state instead
            state = float(cache_bytes_per_sequence_per_gpu(dep, 1.0))
            return int(max(free, 0) / max(state, 1.0)) * 1_000_000
        return int(max(free, 0.0) // per_token)


# ---------------------------------------------------------------------------------------
# The fast path
# ---------------------------------------------------------------------------------------
