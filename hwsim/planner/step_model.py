"""Iteration time of a continuous-batching engine, priced by the same op builder as
``hwsim.estimate``.

One iteration runs the decode sequences (one new token each) and any prefill chunks together:
weights are read once, per-token work adds up. The decode part is priced at the batch's
mean context (exact for attention whose keys grow linearly with context, and for recurrent
layers; for windowed layers it is the mean context, not the mean of the windowed keys) and
memoised, since consecutive iterations repeat the same shapes.

Speed: :class:`~hwsim.planner.compiled_step.FastPricer` computes the same iteration time
in closed form (see that module); :meth:`EngineStepModel._reference_iteration_time_s` is the
definition it is checked against.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np

from hwsim.inference.deployment import Deployment
from hwsim.inference.engine import make_forward
from hwsim.inference.memory import cache_bytes_per_sequence_per_gpu, kv_bytes_per_token_per_gpu
from hwsim.inference.runtime_terms import launch_overhead_s
from hwsim.model.ffn import expected_distinct_experts
from hwsim.model.graph import forward_ops
from hwsim.model.ops import Op
from hwsim.perf.roofline import time_op
from hwsim.planner.compiled_step import FastPricer
from hwsim.planner.step_fit import CONTEXT_QUANTUM, SUMMED

_INT64 = np.dtype(np.int64)
_ONES: dict[int, bytes] = {}  # size -> bytes of that many int64 ones


class EngineStepModel:
    """``iteration_time_s(new_tokens, context_after)`` for one deployment (one replica).

    ``fast=False`` prices every iteration by the reference (the op builders and ``time_op``).
    With the deployment's ``runtime.cuda_graphs`` a decode-only iteration is priced without
    its per-kernel launch overhead (:func:`launch_overhead_s`; a graph replay launches the
    step once); iterations with prefill tokens keep it. The runtime's host overheads are the
    simulator's (:class:`~hwsim.serving.scheduler.SchedulerConfig`), not this model's."""

    def __init__(self, dep: Deployment, *, fast: bool = True):
        self.dep = dep
        self._decode_ops = lru_cache(maxsize=65536)(self._decode_ops_uncached)
        self._decode_time = lru_cache(maxsize=65536)(self._decode_time_uncached)
        # decode-only iterations under CUDA graphs skip this (the same for every batch and
        # context: the decode op list's kernels do not change with them)
        self.graph_saving_s = 0.0
        if dep.spec.runtime.cuda_graphs:
            self.graph_saving_s = launch_overhead_s(
                dep.hardware, self._decode_ops(1, float(CONTEXT_QUANTUM))
            )
        self._fast: FastPricer | None = None
        self.fast_path_note = "reference only (fast=False)"
        if fast:
            self._fast, self.fast_path_note = FastPricer.build(self)

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
        if new.tobytes() == ones:  # decodes only (a bytes compare is the quickest test)
            if size == 0:
                return 0.0
            # integer sum, so the mean is the reference's float
            q = round(int(np.add.reduce(ctx)) / size / CONTEXT_QUANTUM) * CONTEXT_QUANTUM
            if q < CONTEXT_QUANTUM:
                q = CONTEXT_QUANTUM
            t = fast.decode_only.get((size, q))
            if t is None:
                t = fast.decode_only_time_s(size, q)
            return t - self.graph_saving_s
        idx = (new != 1).nonzero()[0]
        chunk_new: list[int] = new[idx].tolist()
        chunk_ctx: list[int] = ctx[idx].tolist()
        n_dec = size - len(chunk_new)
        q = 0
        if n_dec:
            q = round((int(np.add.reduce(ctx)) - sum(chunk_ctx)) / n_dec / CONTEXT_QUANTUM)
            q = q * CONTEXT_QUANTUM if q > 1 else CONTEXT_QUANTUM
        t = fast.time_s(n_dec, q, chunk_new, chunk_ctx)
        if t is None:
            return self._reference_iteration_time_s(new, ctx)
        return t

    # -- the definition ------------------------------------------------------------------
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
            mean_ctx = float(ctx[decoding].mean())
            quantised = max(CONTEXT_QUANTUM, round(mean_ctx / CONTEXT_QUANTUM) * CONTEXT_QUANTUM)
            if n_dec == new.size:
                return self._decode_time(n_dec, quantised) - self.graph_saving_s
            parts.append(self._decode_ops(n_dec, quantised))
        if n_dec < new.size:
            fw = make_forward(self.dep, "prefill", 1.0, new[~decoding], ctx[~decoding])
            parts.append(forward_ops(fw, self.dep.pp))
        total_tokens = float(new.sum())
        merged = [self._merge(ops, total_tokens) for ops in zip(*parts)]
        return float(sum(float(np.sum(time_op(self.dep.hardware, op).total_s)) for op in merged))

    def _decode_time_uncached(self, n_seqs: int, context: float) -> float:
        ops = self._decode_ops(n_seqs, context)
        return float(sum(float(np.sum(time_op(self.dep.hardware, op).total_s)) for op in ops))

    def _decode_ops_uncached(self, n_seqs: int, context: float) -> list[Op]:
        return forward_ops(
            make_forward(self.dep, "decode", float(n_seqs), 1.0, context), self.dep.pp
        )

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
