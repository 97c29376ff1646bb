"""The compiled step model's first half: op fields as linear combinations of iteration features.

Per chunk of ``n`` new tokens at context ``c`` every prefill op field is a linear combination
of a few features of (n, c) (:class:`ChunkFeatures`: 1, n, c, n^2, n c, c^2, [c > n], each
attention layer kind's new pairs and FlashAttention block-visit term, experts touched,
Mamba-2's n min(Q, n)); every decode op field one of features of (decodes b, context q)
(:class:`DecodeFeatures`). :func:`fit_quantities` finds the coefficients from the real op
builders at probe shapes and keeps a field only where it reproduces every probe to FIT_RTOL.
:mod:`hwsim.planner.compiled_step` prices iterations from these coefficients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hwsim.inference.deployment import Deployment
from hwsim.model.layers import layer_groups
from hwsim.model.mixers.attention import AttentionMixer
from hwsim.model.mixers.base import Mixer
from hwsim.model.mixers.sliding_window import SlidingWindowAttention
from hwsim.model.mixers.streaming import StreamingAttention
from hwsim.model.ops import Op

SUMMED = (
    "flops",
    "act_read_bytes",
    "act_write_bytes",
    "kv_read_bytes",
    "kv_write_bytes",
    "comm_bytes",
)
CONTEXT_QUANTUM = 16  # decode mean context is rounded to this many tokens for memoisation

# Shapes the fast path prices (others go to the reference); the probes span them.
MAX_CHUNK_TOKENS = 1 << 17
MAX_CONTEXT = 1 << 22
MAX_DECODES = 1 << 14
FIT_RTOL = 1e-10  # a fitted field must reproduce every probe to this (relative) ...
FIT_ATOL = 1e-13  # ... or to this fraction of the field's largest probe value
# The four quantities of an op that time_op reads, from its fields.
QUANTITIES: dict[str, tuple[str, ...]] = {
    "flops": ("flops",),
    "bytes": ("act_read_bytes", "act_write_bytes", "kv_read_bytes", "kv_write_bytes"),
    "weight": ("weight_bytes",),
    "comm": ("comm_bytes",),
}


class NoFastPath(Exception):
    """The op lists lack the structure the fast path assumes."""


_MOE_KEYS = ("expert_bytes", "n_experts", "top_k")


def op_structure(ops: Sequence[Op]) -> tuple:
    """What must not change between two builds of a forward for the fast path to hold."""
    return tuple(
        (
            op.name,
            op.op_class,
            op.count,
            op.kernels,
            op.compute_dtype,
            op.on_vector_units,
            op.collective,
            op.ranks,
            tuple((k, op.meta[k]) for k in _MOE_KEYS if k in op.meta),
        )
        for op in ops
    )


def _pairs_function(mixer: AttentionMixer) -> Callable[[float], float]:
    """The mixer's ``pairs_per_head`` of one float: pure Python for the patterns whose closed
    form is known here (checked against the mixer), the mixer's own method otherwise."""
    cls = type(mixer)

    def generic(x: float) -> float:
        return float(mixer.pairs_per_head(x))

    fn: Callable[[float], float] = generic
    if cls.pairs_per_head is AttentionMixer.pairs_per_head:
        fn = _causal_pairs if mixer.causal else _square
    elif (
        isinstance(mixer, SlidingWindowAttention)
        and cls.pairs_per_head is SlidingWindowAttention.pairs_per_head
    ):
        fn = _windowed_pairs(float(mixer.window))
    elif (
        isinstance(mixer, StreamingAttention)
        and cls.pairs_per_head is StreamingAttention.pairs_per_head
    ):
        fn = _windowed_pairs(float(mixer.cache_tokens))
    if fn is not generic:
        probe = np.round(np.concatenate([np.arange(0.0, 300.0), np.geomspace(1, 2 * MAX_CONTEXT)]))
        want = np.asarray(mixer.pairs_per_head(probe), dtype=float)
        got = np.array([fn(float(x)) for x in probe])
        if not np.array_equal(got, want):
            return generic
    return fn


def _causal_pairs(x: float) -> float:
    return x * (x + 1) / 2


def _square(x: float) -> float:
    return x * x


def _windowed_pairs(w: float) -> Callable[[float], float]:
    def fn(x: float) -> float:
        inside = x if x < w else w
        return inside * (inside + 1) / 2 + (x - w if x > w else 0.0) * w

    return fn


def _distinct_mixers(dep: Deployment) -> list[Mixer]:
    out: list[Mixer] = []
    for mixer, _is_moe, _count in layer_groups(dep.model):
        if not any(mixer == seen for seen in out):
            out.append(mixer)
    return out


class ChunkFeatures:
    """Features of one prefill chunk (n new tokens, context c after it) that the fields of
    its ops combine (module docstring)."""

    def __init__(self, dep: Deployment):
        model = dep.model
        sram_elements = dep.hardware.sram_per_core_bytes / dep.act.bytes_per_element
        self.names = ["1", "n", "c", "n^2", "n c", "c^2", "c > n"]
        # per attention layer kind: its pairs and the block widths of its tiled kernel
        self.attention: list[tuple[Callable[[float], float], list[float]]] = []
        self.ssd_chunks: list[float] = []
        self.windows = _windows(dep)
        for i, mixer in enumerate(_distinct_mixers(dep)):
            if isinstance(mixer, AttentionMixer):
                widths: set[float] = set()
                if model.head_size > 0:  # attention.py: B_c = ceil(M / 4 d)
                    widths.add(max(1.0, math.ceil(sram_elements / (4 * model.head_size))))
                qk, v = getattr(mixer, "qk_head_dim", None), getattr(mixer, "v_head_dim", None)
                if isinstance(qk, int) and isinstance(v, int) and qk + v > 0:  # MLA's
                    widths.add(max(1.0, math.ceil(sram_elements / (2 * (qk + v)))))
                self.attention.append((_pairs_function(mixer), sorted(widths)))
                self.names += [f"pairs[{i}]"] + [f"tiled[{i}, {w:g}]" for w in sorted(widths)]
            chunk = getattr(mixer, "chunk_size", None)
            if isinstance(chunk, int) and float(chunk) not in self.ssd_chunks:
                self.ssd_chunks.append(float(chunk))
                self.names.append(f"n min({chunk}, n)")
        self.moe = _moe_of(dep)
        self.names += [f"experts({e:g}, {k:g}; n)" for e, k in self.moe]
        self.size = len(self.names)

    def bends(self) -> list[float]:
        """Token counts where some feature bends (probed on both sides)."""
        out = self.ssd_chunks + self.windows
        for _, widths in self.attention:
            out += widths
        return out

    def row(self, n: float, c: float) -> list[float]:
        out = [1.0, n, c, n * n, n * c, c * c, 1.0 if c > n else 0.0]
        nc = n * c
        for pairs, widths in self.attention:
            p = pairs(c) - pairs(c - n)
            out.append(p)
            density = p / nc if nc > 0 else 0.0
            for w in widths:
                t = math.ceil(c / w) * density
                out.append(n * (t if t > 1.0 else 1.0))
        for q in self.ssd_chunks:
            out.append(n * (q if q < n else n))
        for e, k in self.moe:
            out.append(e * (1.0 - (1.0 - k / e) ** n))
        return out

    def probes(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(new tokens, context) of the probe chunks: random over the priced range, dense at
        small sizes and on both sides of every known bend."""
        rng = np.random.default_rng(seed)
        m = 360
        n = np.round(np.exp(rng.uniform(np.log(2), np.log(MAX_CHUNK_TOKENS), m)))
        extra = np.round(np.exp(rng.uniform(0.0, np.log(MAX_CONTEXT - MAX_CHUNK_TOKENS), m)))
        extra[rng.random(m) < 0.3] = 0.0
        ns: list[float] = list(n)
        cs: list[float] = list(n + extra)
        for small in range(2, 12):
            for more in (0, 1, 2, 5, 37, 1000):
                ns.append(small)
                cs.append(small + more)
        for t in self.bends():
            for a in (t - 1.0, t, t + 1.0, 2.0 * t + 1.0):
                for b in (t - 1.0, t, t + 1.0, 3.0 * t):
                    if a >= 2 and b >= a:
                        ns.append(a)
                        cs.append(b)
        ns += [MAX_CHUNK_TOKENS, MAX_CHUNK_TOKENS, 2]
        cs += [MAX_CHUNK_TOKENS, MAX_CONTEXT, MAX_CONTEXT]
        return np.asarray(ns, dtype=float), np.asarray(cs, dtype=float)


class DecodeFeatures:
    """Features of a decode part (b sequences, one new token each, at context q). The ops of
    a windowed layer group follow the group's own context (the decodes' mean of min(c_i, W);
    :mod:`hwsim.planner.step_model`): its fields are these features at that context."""

    def __init__(self, dep: Deployment):
        self.names = ["1", "b", "q", "b q", "b^2", "q^2", "b q^2"]
        self.keys: list[Callable[[float], float]] = []
        self.pairs: list[Callable[[float], float]] = []
        self.windows = _windows(dep)
        for i, mixer in enumerate(_distinct_mixers(dep)):
            if isinstance(mixer, AttentionMixer):
                self.keys.append(_keys_function(mixer))
                self.pairs.append(_pairs_function(mixer))
                self.names += [f"b keys[{i}](q)", f"b pairs[{i}](q, 1)"]
        self.moe = _moe_of(dep)
        self.names += [f"experts({e:g}, {k:g}; b)" for e, k in self.moe]
        self.size = len(self.names)

    def row(self, b: float, q: float) -> list[float]:
        out = [1.0, b, q, b * q, b * b, q * q, b * q * q]
        for keys, pairs in zip(self.keys, self.pairs):
            out.append(b * keys(q))
            out.append(b * (pairs(q) - pairs(q - 1.0)))
        for e, k in self.moe:
            out.append(e * (1.0 - (1.0 - k / e) ** b))
        return out

    def probes(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        m = 300
        b = np.round(np.exp(rng.uniform(0.0, np.log(MAX_DECODES), m)))
        q = np.round(np.exp(rng.uniform(np.log(1.0), np.log(MAX_CONTEXT), m)))
        q[: m // 2] = np.maximum(np.round(q[: m // 2] / CONTEXT_QUANTUM), 1) * CONTEXT_QUANTUM
        bs, qs = list(b), list(q)
        for bb in (1.0, 2.0, 3.0, 7.0, 64.0, float(MAX_DECODES)):
            for qq in (1.0, 2.0, 16.0, 17.0, 32.0, 1000.0, 4096.0, float(MAX_CONTEXT)):
                bs.append(bb)
                qs.append(qq)
        for w in self.windows:
            for qq in (w - 16.0, w - 1.0, w, w + 1.0, w + 16.0, 2.0 * w):
                if qq >= 1:
                    bs.append(float(rng.integers(1, 300)))
                    qs.append(qq)
        return np.asarray(bs, dtype=float), np.asarray(qs, dtype=float)


def _windows(dep: Deployment) -> list[float]:
    """Windows of the model's attention layers (where pairs and keys bend)."""
    out: list[float] = []
    for mixer in _distinct_mixers(dep):
        for name in ("window", "cache_tokens", "block_size", "stride"):
            w = getattr(mixer, name, None)
            if isinstance(w, int) and float(w) not in out:
                out.append(float(w))
    return out


def _keys_function(mixer: AttentionMixer) -> Callable[[float], float]:
    def keys(x: float) -> float:
        return float(mixer.keys_per_decode_step(x))

    return keys


def _moe_of(dep: Deployment) -> list[tuple[float, float]]:
    moe = dep.model.ffn.moe
    if moe is None or moe.n_experts <= 0:
        return []
    return [(float(moe.n_experts), float(moe.top_k))]


@dataclass
class Field:
    """A quantity of op j: ``once`` (not per chunk) + ``coef . features`` per chunk (``coef``
    None: no combination reproduces it; it is evaluated exactly)."""

    once: float
    coef: np.ndarray | None
    varies: bool  # depends on the shape at all
    lo: float  # smallest and largest value (once part included) over the probes
    hi: float


def _fit(phi_scaled: np.ndarray, scale: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Coefficients c with phi @ c == y on every probe (to FIT_RTOL), or None."""
    k = phi_scaled.shape[1]
    top = float(np.max(np.abs(y)))
    if top == 0.0:
        return np.zeros(k)
    tol = FIT_RTOL * np.abs(y) + FIT_ATOL * top
    # one feature alone (most fields: a constant times n, or times the pairs)
    norms = np.einsum("pk,pk->k", phi_scaled, phi_scaled)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = (phi_scaled.T @ y) / norms
        good = (norms > 0) & np.all(np.abs(phi_scaled * a - y[:, None]) <= tol[:, None], axis=0)
    if good.any():
        out = np.zeros(k)
        first = int(np.flatnonzero(good)[0])
        out[first] = a[first]
        return out / scale
    full = np.linalg.lstsq(phi_scaled, y, rcond=None)[0]
    keep = np.abs(full) > 1e-9 * float(np.max(np.abs(full)))
    sparse = np.zeros(k)
    sparse[keep] = np.linalg.lstsq(phi_scaled[:, keep], y, rcond=None)[0]
    for cand in (sparse, full):
        if np.all(np.abs(phi_scaled @ cand - y) <= tol):
            return cand / scale
    return None


def fit_quantities(
    ops: Sequence[Op], other: Sequence[Op], phi: np.ndarray
) -> dict[str, list[Field]]:
    """The four quantities of every op of a forward built on the probe shapes (one per row of
    ``phi``), as fitted fields. ``other``: the same forward on other shapes, which a field that
    does not vary must not notice."""
    n_probe = phi.shape[0]
    scale = np.max(np.abs(phi), axis=0)
    scale[scale == 0.0] = 1.0
    phi_scaled = phi / scale
    out: dict[str, list[Field]] = {key: [] for key in QUANTITIES}
    for op, op2 in zip(ops, other):
        for key, names in QUANTITIES.items():
            once, per = 0.0, np.zeros(n_probe)
            varies = False
            for name in names:
                v = np.asarray(getattr(op, name), dtype=float)
                if v.ndim == 0:
                    v2 = np.asarray(getattr(op2, name), dtype=float)
                    if v2.ndim != 0 or float(v2) != float(v):
                        raise NoFastPath(f"{op.name}.{name} is a reduction over the shapes")
                    once += float(v)
                elif v.shape == (n_probe,):
                    per = per + v
                    varies = True
                else:
                    raise NoFastPath(f"{op.name}.{name} has shape {v.shape}")
            if not (np.all(np.isfinite(per)) and math.isfinite(once)):
                raise NoFastPath(f"{op.name}.{key} is not finite on the probes")
            coef = _fit(phi_scaled, scale, per) if varies else np.zeros(phi.shape[1])
            values = once + per if varies else np.array([once])
            lo, hi = float(np.min(values)), float(np.max(values))
            out[key].append(Field(once, coef, varies, lo, hi))
    return out
