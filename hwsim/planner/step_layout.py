"""The priced layout of a compiled iteration: its merged ops as one array.

``time_op`` is closed form in an op's FLOPs, bytes and weight bytes, so the merged ops of an
iteration are priced together: :class:`StepStatics` holds what does not vary with the
iteration (peaks, overlaps, launch costs, side corrections, each collective's model), and
:class:`ChunkLayout` maps an iteration's features to the op quantities and folds
max(C, M) + (1 - overlap) min(C, M) into a dot product, an absolute value and a sum. Used by
:class:`hwsim.planner.compiled_step.FastPricer`, which finds the coefficients.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwsim.model.ops import Op
from hwsim.perf.collectives import CollectiveModel, collective_model
from hwsim.perf.corrections import side_factors
from hwsim.perf.custom_allreduce import CustomAllReduce
from hwsim.perf.roofline import peak_flops_per_s, tile_padding
from hwsim.planner.step_fit import (
    Field,
)
from hwsim.profiles.hardware import HardwareProfile


class StepStatics:
    """Per position of a merged op list, what ``time_op`` takes from the op that comes first
    in the merge (class, count, kernels, dtype, collective ...), as scale factors.

    An iteration is one vector Y of 2L + 2 + K entries: [compute seconds of each position, the
    launches, memory seconds of each position, 0, the bytes of each of the K collectives];
    its time is sum(max(Y[:L+1], Y[L+1:2L+2])) (+ the unhidden part of the shorter, for
    overlap < 1) + sum_k count_k x t_k(bytes_k), t_k the collective's NCCL cost model
    (:mod:`hwsim.perf.collectives`, not linear in bytes: a min over algorithms and protocols)."""

    def __init__(self, hw: HardwareProfile, firsts: Sequence[Op]):
        L = self.L = len(firsts)
        self.cf, self.cm = np.zeros(L), np.zeros(L)
        half_c, half_m = np.zeros(L), np.zeros(L)
        self.overlap_rest = np.zeros(L + 1)
        self.const = 0.0
        self.is_comm = np.zeros(L, dtype=bool)
        # the collectives: position j, its column of Y (its bytes), count, cost model, and the
        # engine's custom all-reduce where the op runs it (time_op's faster of the two)
        self.comm: list[tuple[int, int, float, CollectiveModel, CustomAllReduce | None]] = []
        self.comm_col = np.zeros(L, dtype=int)
        self.moe: list[tuple[int, float, float, float]] = []  # (j, E, k, expert bytes x cm)
        for j, op in enumerate(firsts):
            if op.op_class == "communication":
                self.is_comm[j] = True
                col = 2 * L + 2 + len(self.comm)
                self.comm_col[j] = col
                model = collective_model(hw, op.collective or "p2p", op.ranks)
                custom = None
                if op.meta.get("custom_all_reduce"):
                    custom = CustomAllReduce(hw, op.ranks)
                self.comm.append((j, col, float(op.count), model, custom))
                continue
            curve = hw.efficiency.for_class(op.op_class)
            # a calibrated profile's corrections scale F, B and the fixed costs as in time_op
            f_compute, f_memory, f_overhead = side_factors(hw, op)
            cf = op.count / (peak_flops_per_s(hw, op) * curve.compute_fraction)
            cm = op.count / (hw.bandwidth_bytes_per_s * curve.memory_fraction)
            half_c[j] = curve.compute_half_flops * f_overhead * cf
            half_m[j] = curve.memory_half_bytes * f_overhead * cm
            self.cf[j], self.cm[j] = cf * f_compute * tile_padding(hw, op), cm * f_memory
            if curve.overlap < 1.0:
                self.overlap_rest[j] = 1.0 - curve.overlap
            self.const += op.count * op.kernels * curve.launch_overhead_s * f_overhead
            if "expert_bytes" in op.meta:
                m = op.meta
                eb = float(m["expert_bytes"]) * self.cm[j]
                self.moe.append((j, float(m["n_experts"]), float(m["top_k"]), eb))
        self.K = len(self.comm)
        self.width = 2 * L + 2 + self.K
        self.half = np.concatenate([half_c, [0.0], half_m, [0.0], np.zeros(self.K)])
        self.has_half = bool(np.any(self.half))
        self.has_overlap = bool(np.any(self.overlap_rest))

    def place(self, flops, nbytes, comm) -> np.ndarray:
        """Y of the given per-position quantities (arrays of L, weights included in nbytes)."""
        L = self.L
        y = np.zeros(self.width)
        y[L] = self.const
        if not self.K:  # no collective positions: np.where would keep every value as it is
            y[:L] = flops * self.cf
            y[L + 1 : 2 * L + 1] = nbytes * self.cm
            return y
        y[:L] = np.where(self.is_comm, 0.0, flops * self.cf)
        y[L + 1 : 2 * L + 1] = np.where(self.is_comm, 0.0, nbytes * self.cm)
        for j, col, _count, _model, _custom in self.comm:
            y[col] = comm[j]
        return y

    def comm_seconds(self, nbytes: np.ndarray) -> float:
        """Seconds of the K collectives given their bytes (the tail of Y, or of Z)."""
        t = 0.0
        for k, (_j, _col, count, model, custom) in enumerate(self.comm):
            b = float(nbytes[k])
            seconds = model.seconds(b)
            if custom is not None:
                kernel = custom.seconds(b)
                if kernel < seconds:  # False for NaN: where the kernel does not apply
                    seconds = kernel
            t += count * seconds
        return t

    def seconds(self, y: np.ndarray) -> float:
        if self.has_half:
            y = y + self.half * (y > 0.0)
        L1 = self.L + 1
        c, m = y[:L1], y[L1 : 2 * L1]
        t = float(np.add.reduce(np.maximum(c, m)))
        if self.has_overlap:
            t += float(np.dot(self.overlap_rest, np.minimum(c, m)))
        if self.K:
            t += self.comm_seconds(y[2 * L1 :])
        return t


class ChunkLayout:
    """The chunks' side of one kind of iteration (mixed: statics of the decode ops; prefill
    only: of the prefill ops), as coefficients of Y in the chunk features."""

    def __init__(
        self,
        st: StepStatics,
        fields: dict[str, list[Field]],
        n_feat: int,
        decode_fields: dict[str, list[Field]] | None = None,
    ):
        L = st.L
        self.st = st
        W = st.width
        coef = np.zeros((n_feat, W))
        self.base = st.place(
            np.array([f.once for f in fields["flops"][:L]]),
            np.array([f.once for f in fields["bytes"][:L]]),
            np.array([f.once for f in fields["comm"][:L]]),
        )
        self.exact: list[tuple[str, int, int, float]] = []  # (quantity, j, column of Y, scale)
        moe_pos = {j for j, *_ in st.moe}
        self.weight_once = np.zeros(L)
        static: list[int] = []
        dynamic: list[tuple[int, list[tuple[int, float]]]] = []
        exact_w: list[int] = []
        for j in range(L):
            if st.is_comm[j]:
                parts = [("comm", int(st.comm_col[j]), 1.0)]  # its bytes
            else:
                parts = [("flops", j, st.cf[j]), ("bytes", L + 1 + j, st.cm[j])]
            for name, col, scale in parts:
                f = fields[name][j]
                if f.coef is None:
                    self.exact.append((name, j, col, scale))
                else:
                    coef[:, col] += f.coef * scale
            if st.is_comm[j] or j in moe_pos:
                continue
            w = fields["weight"][j]
            self.weight_once[j] = w.once
            if not w.varies:
                static.append(j)
            elif w.coef is None:
                exact_w.append(j)
            else:
                dynamic.append((j, [(int(i), float(w.coef[i])) for i in np.flatnonzero(w.coef)]))
        self.static = np.array(static, dtype=int)
        self.dynamic = dynamic
        self.exact_weight = exact_w
        # extra rows of the coefficients: the dynamic weights, then the MoE experts touched
        extra = np.zeros((len(dynamic) + len(exact_w) + len(st.moe), W))
        for r, (j, _) in enumerate(dynamic):
            extra[r, L + 1 + j] = st.cm[j]
        for r, j in enumerate(exact_w, start=len(dynamic)):
            extra[r, L + 1 + j] = st.cm[j]
        for r, (j, _e, _k, eb) in enumerate(st.moe, start=len(dynamic) + len(exact_w)):
            extra[r, L + 1 + j] = eb
        self.coef = np.vstack([coef, extra])
        self.needs_exact = bool(self.exact or exact_w)
        self._fold(fields, decode_fields)

    def _fold(
        self, fields: dict[str, list[Field]], decode_fields: dict[str, list[Field]] | None
    ) -> None:
        """Fold the iteration's time into one linear map where that is exact.

        max(C, M) + r min(C, M) = (1 + r)/2 (C + M) + (1 - r)/2 |C - M|, so with Z = T Y --
        Z_j = (1 - r_j)/2 (C_j - M_j) for each position j, and Z_L = sum_j (1 + r_j)/2 (C_j +
        M_j) + collectives + launches (>= 0) -- the time is sum |Z|, and Z is linear in the
        features (coefficients ``zcoef``; :meth:`z_base` maps a base). The F_half / B_half
        ramps count where an op's FLOPs or bytes are > 0: they fold into the base where the
        probes show the sign cannot change in this kind of iteration. Where it could, or with
        fields evaluated exactly, ``folded`` is False and :meth:`seconds` takes the long way."""
        st, L = self.st, self.st.L
        moe = {j: eb for j, _e, _k, eb in st.moe}
        sides = [fields] if decode_fields is None else [fields, decode_fields]
        self.folded = not self.needs_exact
        self.half_base = np.zeros(st.width)
        for j in range(L):
            if st.is_comm[j]:
                continue
            for col, keys in ((j, ("flops",)), (L + 1 + j, ("bytes", "weight"))):
                if st.half[col] == 0.0:
                    continue
                parts = [
                    side[k][j] for side in sides for k in keys if not (k == "weight" and j in moe)
                ]
                if any(f.lo < 0 for f in parts):
                    self.folded = False
                elif any(f.lo > 0 for f in parts) or (col > L and moe.get(j, 0.0) > 0):
                    self.half_base[col] = st.half[col]  # always > 0: the ramp always counts
                elif not all(f.hi == 0 for f in parts):
                    self.folded = False  # sometimes 0, sometimes not
        r = st.overlap_rest[:L]
        t = np.zeros((L + 1 + st.K, st.width))
        idx = np.arange(L)
        t[idx, idx] = (1.0 - r) / 2
        t[idx, L + 1 + idx] = -(1.0 - r) / 2
        t[L, :L] = (1.0 + r) / 2
        t[L, L + 1 : 2 * L + 1] = (1.0 + r) / 2
        t[L, L] = 1.0
        t[L, 2 * L + 1] = 1.0
        for k in range(st.K):  # the collectives' bytes pass through (Z_{L+1+k} = bytes_k)
            t[L + 1 + k, 2 * L + 2 + k] = 1.0
        self.t = t
        self.zcoef = self.coef @ t.T

    def z_base(self, base: np.ndarray) -> np.ndarray:
        """Z of a Y base (the half ramps that fold included)."""
        return self.t.dot(base + self.half_base)  # as @ computes it, with less overhead

    def base_with(self, weights: np.ndarray | None) -> tuple[np.ndarray, list[float]]:
        """(Y base, weight floor) given the decode part's weights (None: no decodes); the base
        holds the decode part's other quantities already when called from the mixed path."""
        L = self.st.L
        floor = self.weight_once if weights is None else np.maximum(weights, self.weight_once)
        base = self.base.copy()
        base[L + 1 + self.static] += floor[self.static] * self.st.cm[self.static]
        return base, floor.tolist()

    def seconds(
        self,
        base: np.ndarray,
        floor: list[float],
        rows: list[list[float]],
        total_tokens: float,
        exact: list[dict[str, np.ndarray]] | None,
    ) -> float:
        """Seconds of the iteration: ``base`` is the Z base if the layout is folded, else the
        Y base; ``floor`` the weight bytes the chunks' own must exceed to count."""
        phi = list(rows[0]) if len(rows) == 1 else [sum(col) for col in zip(*rows)]
        for j, terms in self.dynamic:
            w = floor[j]
            for row in rows:
                v = 0.0
                for i, a in terms:
                    v += a * row[i]
                if v > w:
                    w = v
            phi.append(w)
        if exact is not None:
            for j in self.exact_weight:
                w = floor[j]
                for e in exact:
                    v = float(e["weight"][j])
                    if v > w:
                        w = v
                phi.append(w)
        for _j, e_, k, _eb in self.st.moe:
            phi.append(e_ * (1.0 - (1.0 - k / e_) ** total_tokens))
        if self.folded:
            z = np.dot(phi, self.zcoef)
            z += base
            L1 = self.st.L + 1
            if self.st.K:
                return float(np.add.reduce(np.abs(z[:L1]))) + self.st.comm_seconds(z[L1:])
            return float(np.add.reduce(np.abs(z, out=z)))
        y = np.dot(phi, self.coef)
        y += base
        if exact is not None:
            for name, j, col, scale in self.exact:
                y[col] += sum(float(e[name][j]) for e in exact) * scale
        return self.st.seconds(y)
