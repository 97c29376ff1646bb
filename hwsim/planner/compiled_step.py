"""The engine-backed step model compiled: one deployment's iteration time in closed form.

Speed. The definition is :meth:`EngineStepModel._reference_iteration_time_s`: build the ops of
the prefill chunks (``make_forward`` + ``forward_ops``), merge op i of the decode part with op
i of the chunks (per-token fields summed, weights read once, MoE experts recounted for all the
iteration's tokens) and price every merged op with ``time_op``: about 1 ms an iteration.
:class:`FastPricer` computes the same number with a few vector operations:

* Every field of every prefill op is, per chunk of ``n`` new tokens at context ``c``, a linear
  combination of a few features of (n, c): 1, n, c, n^2, n c, c^2, [c > n], each attention
  layer kind's new query-key pairs and its FlashAttention block-visit term, the experts a
  chunk touches, Mamba-2's n min(Q, n). Likewise every decode op field is a combination of
  features of (decodes b, context q): 1, b, q, b q, b^2, q^2, b q^2, b x the keys each
  attention layer kind reads and b x the pairs its new query scores, the experts b tokens
  touch. The coefficients are found once per deployment from the real op builders at a few
  hundred probe shapes and kept only where they reproduce every probe to 1e-10 (relative);
  the features and that fit live in :mod:`hwsim.planner.step_fit`, the pricing here.
  A model with windowed layer groups prices each window W's mixer ops at the decodes' mean
  of min(c_i, W) (:mod:`hwsim.planner.step_model`): every decode op is found to follow one of
  those contexts or the mean context (probes that move one at a time; an op that follows two
  declines the fast path) and its fit is evaluated at that context (checked on probes whose
  contexts all differ); the memo keys carry the windowed means.
  A prefill field no combination reproduces is evaluated exactly per chunk by the op builders
  (memoised on the chunk's shape); if a decode field has none, the decode part comes from the
  reference's memoised decode ops. Fields that do not depend on the chunks are counted once,
  as the reference's sum over a scalar does.
* ``time_op`` is closed form in an op's FLOPs, bytes and weight bytes, so the merged ops of an
  iteration are priced as one array: max(C, M) + (1 - overlap) min(C, M) + launches; as
  max + r min is a sum of a linear part and |C - M|, an iteration is one dot product, an
  absolute value and a sum (:mod:`hwsim.planner.step_layout`). A collective's bytes are
  linear in the features too, but its time is not (NCCL's cost model, a min over algorithms and
  protocols): each collective's bytes ride along in Y and are priced at the end.

Every model compares its fast path with the reference on random iterations when it is built
and uses the reference alone (``fast_path_active`` False; ``fast_path_note`` says why) if they
differ, or if the op lists lack the structure the fast path assumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from hwsim.inference.engine import make_forward
from hwsim.model.graph import forward_ops
from hwsim.model.ops import Op
from hwsim.planner.step_fit import (
    FIT_ATOL,
    FIT_RTOL,
    MAX_CHUNK_TOKENS,
    MAX_CONTEXT,
    MAX_DECODES,
    QUANTITIES,
    ChunkFeatures,
    DecodeFeatures,
    NoFastPath,
    fit_quantities,
    op_structure,
)
from hwsim.planner.step_layout import ChunkLayout, StepStatics

if TYPE_CHECKING:
    from hwsim.planner.step_model import EngineStepModel

MEMO_SIZE = 65536  # entries per memo (decode parts, exact chunks) before it starts over
SELF_CHECK_RTOL = 1e-7  # fast vs reference on the random iterations checked when built


class FastPricer:
    """The iteration time of :class:`EngineStepModel` in closed form (module docstring)."""

    @classmethod
    def build(cls, model: EngineStepModel) -> tuple[FastPricer | None, str]:
        try:
            pricer = cls(model)
        except NoFastPath as exc:
            return None, f"reference only: {exc}"
        except Exception as exc:  # whatever it is, the reference reports it when called
            return None, f"reference only: {type(exc).__name__}: {exc}"
        model._fast = pricer
        try:
            worst = pricer.self_check()
            note = f"off by {worst:.3g} (relative)"
        except Exception as exc:
            worst, note = math.inf, f"{type(exc).__name__}: {exc}"
        finally:
            model._fast = None
        if not worst <= SELF_CHECK_RTOL:
            return None, f"reference only: the fast path is {note} in its self-check"
        return pricer, f"fast path (self-check: max relative difference {worst:.2g})"

    def __init__(self, model: EngineStepModel):
        self.model = model
        dep = self.dep = model.dep
        hw = dep.hardware
        # decode side
        self.decode_features = dfeat = DecodeFeatures(dep)
        b_probe, q_probe = dfeat.probes(seed=0)
        dec = self._decode_probe_ops(b_probe, q_probe)
        self.decode_structure = op_structure(dec)
        dec_other = self._decode_probe_ops(b_probe[::-1] + 1.0, q_probe[::-1] + 1.0)
        for ops in (dec_other, model._decode_ops(3, 1024), model._decode_ops(57, 4096)):
            if op_structure(ops) != self.decode_structure:
                raise NoFastPath("the decode op list changes with the batch or context")
        phi = np.array([dfeat.row(float(b), float(q)) for b, q in zip(b_probe, q_probe)])
        self.decode_fields = fit_quantities(dec, dec_other, phi)
        self.decode_fitted = all(
            f.coef is not None for fields in self.decode_fields.values() for f in fields
        )
        self.decode_coef: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if self.decode_fitted:
            for key, fields in self.decode_fields.items():
                coef = np.array([f.coef for f in fields]).T.reshape(dfeat.size, len(fields))
                self.decode_coef[key] = (coef, np.array([f.once for f in fields]))
        # per decode op, the context it follows: 0 the mean, 1 + g the g-th window's
        self.decode_slots = np.zeros(len(dec), dtype=int)
        self._decode_columns = np.arange(len(dec))
        if model.windows:
            self._fit_window_slots(b_probe, q_probe)
        # chunk side
        self.features = feat = ChunkFeatures(dep)
        n_probe, c_probe = feat.probes(seed=0)
        pf = self._prefill_ops(n_probe, c_probe)
        self.prefill_structure = op_structure(pf)
        pf_other = self._prefill_ops(n_probe[::-1] + 1.0, c_probe[::-1] + 1.0)
        singles = (
            self._prefill_ops(np.array([300.0]), np.array([300.0])),
            self._prefill_ops(np.array([7.0, 5000.0]), np.array([90.0, 5000.0])),
        )
        for ops in (pf_other, *singles):
            if op_structure(ops) != self.prefill_structure:
                raise NoFastPath("the prefill op list changes with the chunks")
        phi = np.array([feat.row(float(n), float(c)) for n, c in zip(n_probe, c_probe)])
        self.fields = fit_quantities(pf, pf_other, phi)
        L = min(len(dec), len(pf))  # zip() in the merge stops at the shorter list
        self.decode_statics = StepStatics(hw, dec)
        self.mixed = ChunkLayout(
            StepStatics(hw, dec[:L]), self.fields, feat.size, self.decode_fields
        )
        self.prefill_only = ChunkLayout(StepStatics(hw, pf), self.fields, feat.size)
        base, floor = self.prefill_only.base_with(None)
        if self.prefill_only.folded:
            base = self.prefill_only.z_base(base)
        self.prefill_base = base, floor
        self.decode_only: dict[tuple, float] = {}
        self._decode_parts: dict[tuple, tuple[np.ndarray, list[float]] | None] = {}
        self._mixed: dict[tuple, float] = {}  # whole iterations with chunks, by their shape
        self._exact_chunks: dict[tuple[float, float], dict[str, np.ndarray] | None] = {}

    def _decode_probe_ops(self, b: np.ndarray, q: np.ndarray, windowed=None) -> list[Op]:
        return self.model.build_decode_ops(b, q, windowed)

    def _fit_window_slots(self, b_probe: np.ndarray, q_probe: np.ndarray) -> None:
        """Which context each decode op follows (``decode_slots``): probes whose mean and
        windowed contexts all differ, then each moved alone; and whether the fits, evaluated
        at each op's own context, reproduce those probes (else the decode part comes from the
        reference's decode ops)."""
        windows = self.model.windows
        rng = np.random.default_rng(7)
        n = len(q_probe)
        ctx = [q_probe] + [np.round(rng.uniform(1.0, float(w), n)) for w in windows]
        moved = [q_probe * 2.0 + 1.0] + [np.where(x > 1.0, x - 1.0, x + 1.0) for x in ctx[1:]]
        base = self._decode_probe_ops(b_probe, ctx[0], ctx[1:])
        if op_structure(base) != self.decode_structure:
            raise NoFastPath("the decode op list changes with the windowed contexts")
        values = [self._quantity_arrays(base, n)]
        for s in range(len(ctx)):
            other = list(ctx)
            other[s] = moved[s]
            ops = self._decode_probe_ops(b_probe, other[0], other[1:])
            if op_structure(ops) != self.decode_structure:
                raise NoFastPath("the decode op list changes with the windowed contexts")
            values.append(self._quantity_arrays(ops, n))
        L = len(base)
        slots = np.zeros(L, dtype=int)
        for j in range(L):
            follows = [
                s for s in range(len(ctx)) if not np.array_equal(values[0][j], values[1 + s][j])
            ]
            if len(follows) > 1:
                raise NoFastPath(f"decode op {base[j].name} follows two contexts")
            if follows:
                slots[j] = follows[0]
        self.decode_slots = slots
        if not self.decode_fitted:
            return
        rows = [
            np.array([self.decode_features.row(float(b), float(c)) for b, c in zip(b_probe, x)])
            for x in ctx
        ]
        for key, (coef, once) in self.decode_coef.items():
            want = values[0][:, list(QUANTITIES).index(key)]  # (op, probe)
            got = np.stack([rows[slots[j]] @ coef[:, j] for j in range(L)]) + once[:, None]
            top = np.max(np.abs(want), axis=1, keepdims=True)
            tol = FIT_RTOL * np.abs(want) + FIT_ATOL * top
            if not np.all(np.abs(got - want) <= tol):
                self.decode_fitted = False
                self.decode_coef = {}
                return

    @staticmethod
    def _quantity_arrays(ops: Sequence[Op], n: int) -> np.ndarray:
        """(op, quantity, probe): each op's four quantities (QUANTITIES order) on n probes."""
        out = np.zeros((len(ops), len(QUANTITIES), n))
        for j, op in enumerate(ops):
            for k, names in enumerate(QUANTITIES.values()):
                for name in names:
                    out[j, k] += np.asarray(getattr(op, name), dtype=float)
        return out

    def _prefill_ops(self, new: np.ndarray, ctx: np.ndarray) -> list[Op]:
        return forward_ops(make_forward(self.dep, "prefill", 1.0, new, ctx), self.dep.pp)

    # -- decode part -----------------------------------------------------------------------
    def _decode_quantities(
        self, b: int, q: int, xs: tuple[int, ...] = ()
    ) -> dict[str, np.ndarray] | None:
        """The four quantities of every decode op at (b, q; the windowed contexts xs): fitted,
        or from the reference's memoised decode ops where a field has no fit; None:
        unexpected op list."""
        if self.decode_fitted and b <= MAX_DECODES and q <= MAX_CONTEXT:
            row = self.decode_features.row
            if not xs:  # ndarray.dot: the product @ computes, without @'s dispatch cost
                r = np.array(row(float(b), float(q)))
                return {key: r.dot(coef) + once for key, (coef, once) in self.decode_coef.items()}
            rows = np.array([row(float(b), float(c)) for c in (q, *xs)])
            pick = (self.decode_slots, self._decode_columns)
            return {
                key: (rows @ coef)[pick] + once for key, (coef, once) in self.decode_coef.items()
            }
        ops = self.model._decode_ops(b, q, xs)
        if op_structure(ops) != self.decode_structure:
            return None
        return {
            key: np.array([sum(float(np.sum(getattr(op, n))) for n in names) for op in ops])
            for key, names in QUANTITIES.items()
        }

    def decode_only_time_s(self, b: int, q: int, xs: tuple[int, ...] = ()) -> float:
        """Seconds of a decode-only iteration of b decodes at mean context q and windowed
        contexts xs (the model's windows; () for a model without), memoised on them."""
        key: tuple = (b, q, xs) if xs else (b, q)
        t = self.decode_only.get(key)
        if t is None:
            qs = self._decode_quantities(b, q, xs) if self.decode_fitted else None
            if qs is None:
                t = self.model._decode_time(b, q, xs)
            else:
                st = self.decode_statics
                t = st.seconds(st.place(qs["flops"], qs["bytes"] + qs["weight"], qs["comm"]))
            if len(self.decode_only) >= MEMO_SIZE:
                self.decode_only.clear()
            self.decode_only[key] = t
        return t

    def _decode_part(
        self, b: int, q: int, xs: tuple[int, ...] = ()
    ) -> tuple[np.ndarray, list[float]] | None:
        """(Y base, weight floor) of a mixed iteration: the chunks' once parts plus the
        decode ops' quantities, on the mixed layout."""
        qs = self._decode_quantities(b, q, xs)
        if qs is None:
            return None
        lay = self.mixed
        L = lay.st.L
        base, floor = lay.base_with(qs["weight"][:L])
        base += lay.st.place(qs["flops"][:L], qs["bytes"][:L], qs["comm"][:L])
        base[L] -= lay.st.const  # place() adds the constants, which the layout base has
        if lay.folded:
            base = lay.z_base(base)
        return base, floor

    # -- per iteration -------------------------------------------------------------------
    def time_s(
        self, n_dec: int, q: int, chunk_new: list, chunk_ctx: list, xs: tuple[int, ...] = ()
    ) -> float | None:
        """Seconds of an iteration of ``n_dec`` decodes at (quantised) mean context ``q`` and
        windowed contexts ``xs`` (the model's windows; () for a model without), and prefill
        chunks (new tokens, context after); None: outside what the fast path prices.

        Memoised on all of that: traffic whose prompts share a length (a benchmark's fixed
        lengths, a chunked prompt's full-budget chunks) repeats the same iteration shapes."""
        key = (n_dec, q, xs, *chunk_new, *chunk_ctx)
        t = self._mixed.get(key)
        if t is None:
            t = self._time_s_uncached(n_dec, q, chunk_new, chunk_ctx, xs)
            if t is not None:
                if len(self._mixed) >= MEMO_SIZE:
                    self._mixed.clear()
                self._mixed[key] = t
        return t

    def _time_s_uncached(
        self, n_dec: int, q: int, chunk_new: list, chunk_ctx: list, xs: tuple[int, ...]
    ) -> float | None:
        rows = []
        row = self.features.row
        for n, c in zip(chunk_new, chunk_ctx):
            if not (2 <= n <= MAX_CHUNK_TOKENS and n <= c <= MAX_CONTEXT):
                return None
            rows.append(row(float(n), float(c)))
        if n_dec:
            layout = self.mixed
            key: tuple = (n_dec, q, xs) if xs else (n_dec, q)
            parts = self._decode_parts.get(key)
            if parts is None:
                if key in self._decode_parts:
                    return None
                if len(self._decode_parts) >= MEMO_SIZE:
                    self._decode_parts.clear()
                parts = self._decode_parts[key] = self._decode_part(n_dec, q, xs)
                if parts is None:
                    return None
            base, floor = parts
        else:
            layout = self.prefill_only
            base, floor = self.prefill_base
        exact = None
        if layout.needs_exact:
            exact = []
            for n, c in zip(chunk_new, chunk_ctx):
                e = self._exact_chunk(float(n), float(c))
                if e is None:
                    return None
                exact.append(e)
        return layout.seconds(base, floor, rows, float(n_dec + sum(chunk_new)), exact)

    def _exact_chunk(self, n: float, c: float) -> dict[str, np.ndarray] | None:
        """The varying part of every quantity of one chunk's ops from the op builders (for
        fields no feature combination reproduces), memoised on the chunk."""
        key = (n, c)
        if key in self._exact_chunks:
            return self._exact_chunks[key]
        ops = self._prefill_ops(np.array([n]), np.array([c]))
        out: dict[str, np.ndarray] | None = None
        if op_structure(ops) == self.prefill_structure:
            out = {}
            for q, names in QUANTITIES.items():
                vals = np.zeros(len(ops))
                for j, op in enumerate(ops):
                    for name in names:
                        v = np.asarray(getattr(op, name), dtype=float)
                        if v.ndim:  # per chunk (scalars are the once parts, counted apart)
                            vals[j] += float(np.sum(v))
                out[q] = vals
        if len(self._exact_chunks) >= MEMO_SIZE:
            self._exact_chunks.clear()
        self._exact_chunks[key] = out
        return out

    # -- construction check ----------------------------------------------------------------
    def self_check(self, n_iterations: int = 12, seed: int = 1) -> float:
        """Largest relative difference, fast vs reference, over random iterations (inf if the
        fast path declines one of them)."""
        rng = np.random.default_rng(seed)
        worst = 0.0
        model = self.model
        for i in range(n_iterations):
            # (a quarter of them small: the decode messages custom all-reduces run on)
            n_dec = 0 if i % 4 == 0 else int(rng.integers(1, 5 if i % 4 == 1 else 200))
            k = 0 if i % 4 == 3 else int(rng.integers(1, 4))
            dec_ctx = rng.integers(1, 40_000, n_dec)
            chunk = rng.integers(2, 3000, k)
            ctx = chunk + np.where(rng.random(k) < 0.5, 0, rng.integers(1, 60_000, k))
            new = np.concatenate([np.ones(n_dec, dtype=np.int64), chunk]).astype(np.int64)
            after = np.concatenate([dec_ctx, ctx]).astype(np.int64)
            if k:
                q, xs = model.decode_contexts(dec_ctx) if n_dec else (0, ())
                if self.time_s(n_dec, q, chunk.tolist(), ctx.tolist(), xs) is None:
                    return math.inf
            got = model.iteration_time_s(new, after)
            ref = model._reference_iteration_time_s(new, after)
            if not math.isfinite(got):
                return math.inf
            worst = max(worst, abs(got - ref) / abs(ref) if ref else abs(got))
        return worst
