"""The kernel registry: named op builders a user (or the calibration suite) can price alone.

    kernel_op("gemm", m=4096, n=4096, k=4096, dtype="bf16")   # an Op: FLOPs and bytes, no time

A kernel is an :class:`~hwsim.model.ops.Op` builder registered with :func:`register_kernel`;
its typed keyword parameters are checked by :func:`kernel_params`. Pricing lives elsewhere:
:mod:`hwsim.perf.ladder` walks measured -> calibrated -> roofline for one kernel call.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hwsim.dtypes import DTYPES
from hwsim.errors import HwsimError
from hwsim.model.attention_io import tiled_attention_bytes
from hwsim.model.ops import Op


@dataclass(frozen=True)
class KernelSpec:
    """An op builder, its typed parameters, the size ``axis`` the measured rung interpolates
    over, and ``variant``: the library implementation the suite always measures."""

    name: str
    build: Callable[..., Op]
    params: dict[str, type]
    defaults: dict[str, Any]
    axis: str
    variant: str
    # The name the built op carries (calibration groups key on it) from the parameters, where it
    # depends on them (causal prefill, GQA decode); None: the kernel's own name.
    op_name: Callable[[dict[str, Any]], str] | None = None


KERNELS: dict[str, KernelSpec] = {}


def register_kernel(
    name: str, *, axis: str, variant: str, op_name: Callable[[dict[str, Any]], str] | None = None
) -> Callable:
    """Decorator: register an op builder whose keyword parameters are typed int/bool/str.
    ``op_name``: the built op's name from the parameters, where it is not ``name``."""

    def deco(fn: Callable[..., Op]) -> Callable[..., Op]:
        if name in KERNELS:
            raise RuntimeError(f"kernel {name!r} registered twice")
        hints = typing.get_type_hints(fn)
        sig = inspect.signature(fn)
        params = {p: hints[p] for p in sig.parameters}
        defaults = {p.name: p.default for p in sig.parameters.values() if p.default is not p.empty}
        if axis not in params:
            raise RuntimeError(f"kernel {name!r}: axis {axis!r} is not a parameter")
        KERNELS[name] = KernelSpec(name, fn, params, defaults, axis, variant, op_name)
        return fn

    return deco


def kernel_spec(name: str) -> KernelSpec:
    if name not in KERNELS:
        raise HwsimError(f"unknown kernel {name!r}; allowed: {', '.join(KERNELS)}")
    return KERNELS[name]


def kernel_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check ``params`` against the kernel's signature; fill defaults; name any bad field."""
    spec, where = kernel_spec(name), f"kernel {name!r}"
    if unknown := sorted(set(params) - set(spec.params)):
        raise HwsimError(f"{where}: unknown parameter(s) {unknown}; allowed: {list(spec.params)}")
    out = {**spec.defaults, **params}
    for key, kind in spec.params.items():
        if key not in out:
            raise HwsimError(f"{where}: parameter {key!r} is required")
        v = out[key]
        if kind is bool and not isinstance(v, (bool, np.bool_)):
            raise HwsimError(f"{where}: {key} must be true or false, got {v!r}")
        if kind is int and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0):
            raise HwsimError(f"{where}: {key} must be a positive integer, got {v!r}")
        if key == "dtype" and v not in DTYPES:
            raise HwsimError(f"{where}: unknown dtype {v!r}; allowed: {', '.join(DTYPES)}")
        out[key] = kind(v)
    return {k: out[k] for k in spec.params}


def calibration_name(op: Op) -> str:
    """The kernel name calibration groups key ``op`` under: a model op that is a registered
    kernel call (``op.kernel``) is keyed as that kernel's op would be (a projection as 'gemm',
    a causal prefill as 'attention_prefill_causal'), so kernel_time and a model's forward pass
    look up the same residuals; an op whose builder names its kernel family
    (``meta['kernel_name']``, e.g. a chunked prefill's attention) by that; any other op by its
    own name."""
    named = op.meta.get("kernel_name")
    if named is not None:  # the builder said which kernel family the op runs as
        return named
    if op.kernel is None:
        return op.name
    kernel, params = op.kernel
    spec = KERNELS.get(kernel)
    if spec is None:
        return op.name
    return spec.op_name(params) if spec.op_name is not None else spec.name


def kernel_op(name: str, **params: Any) -> Op:
    """The cost descriptor of one kernel call (FLOPs and bytes; no time), tagged with its
    kernel call as the ladder tags it (a shape-dependent cost, e.g. MXU padding, reads it)."""
    spec = kernel_spec(name)
    full = kernel_params(name, params)
    return replace(spec.build(**full), kernel=(spec.name, full))


# -- kernels ---------------------------------------------------------------------------------
def _elem_bytes(dtype: str) -> float:
    return DTYPES[dtype].bytes_per_element


@register_kernel("gemm", axis="m", variant="torch.mm")
def _gemm(m: int, n: int, k: int, dtype: str = "bf16") -> Op:
    """C[m, n] = A[m, k] @ W[k, n], 2 m n k FLOPs; fp8 writes bf16, int8 int32 (cuBLASLt)."""
    e = _elem_bytes(dtype)
    out_e = {"fp8": 2.0, "int8": 4.0}.get(dtype, e)
    return Op("gemm", "matmul", flops=2.0 * m * n * k, weight_bytes=k * n * e,
              act_read_bytes=m * k * e, act_write_bytes=m * n * out_e,
              compute_dtype=dtype)  # fmt: skip


def _check_gqa(heads: int, kv_heads: int) -> None:
    if heads % kv_heads:
        raise HwsimError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")


def _prefill_name(params: dict[str, Any]) -> str:
    return "attention_prefill_causal" if params.get("causal", True) else "attention_prefill"


def _decode_name(params: dict[str, Any]) -> str:
    gqa = np.all(np.asarray(params["kv_heads"]) < np.asarray(params["heads"]))
    return "attention_decode_gqa" if gqa else "attention_decode"


@register_kernel("attention_prefill", axis="seq_len", variant="torch.sdpa", op_name=_prefill_name)
def _attention_prefill(batch: int, heads: int, kv_heads: int, seq_len: int, head_dim: int,
                       causal: bool = True, dtype: str = "bf16") -> Op:  # fmt: skip
    """Fused attention over a whole prompt: 4 d_h FLOPs per scored query-key pair per head
    (QK^T and PV), S(S+1)/2 pairs when causal; reads Q, K, V once and writes O, the I/O a
    model's attention layer has (:mod:`hwsim.model.attention_io`). GQA: K and V have
    ``kv_heads``."""
    _check_gqa(heads, kv_heads)
    b, s, d, e = batch, float(seq_len), head_dim, _elem_bytes(dtype)
    pairs = s * (s + 1) / 2 if causal else s * s
    q, o, kv = tiled_attention_bytes(b, heads, kv_heads, s, s, d, e, e)
    return Op(_prefill_name({"causal": causal}), "attention", flops=4.0 * b * heads * d * pairs,
              act_read_bytes=q, act_write_bytes=o, kv_read_bytes=kv, compute_dtype=dtype,
              meta={"head_dim": head_dim})  # fmt: skip


@register_kernel("attention_decode", axis="context_len", variant="torch.sdpa", op_name=_decode_name)
def _attention_decode(batch: int, heads: int, kv_heads: int, context_len: int, head_dim: int,
                      dtype: str = "bf16") -> Op:  # fmt: skip
    """One new query per sequence against a KV cache of ``context_len`` tokens: reads the whole
    cache (2 b h_kv C d_h elements), 4 b h C d_h FLOPs; the memory-bound case. GQA decode (a
    group of queries per KV head) is its own op name: kernels batch the group very differently."""
    _check_gqa(heads, kv_heads)
    b, c, d, e = batch, float(context_len), head_dim, _elem_bytes(dtype)
    q, o, kv = tiled_attention_bytes(b, heads, kv_heads, 1.0, c, d, e, e)
    return Op(_decode_name({"heads": heads, "kv_heads": kv_heads}), "attention",
              flops=4.0 * b * heads * d * c, act_read_bytes=q, act_write_bytes=o,
              kv_read_bytes=kv, compute_dtype=dtype, meta={"head_dim": head_dim})  # fmt: skip


@register_kernel("copy", axis="bytes", variant="torch.copy")
def _copy(bytes: int, dtype: str = "bf16") -> Op:  # noqa: A002 - the issue's parameter name
    """Device-memory copy of a ``bytes``-sized buffer: that many read and that many written."""
    if bytes % _elem_bytes(dtype):
        raise HwsimError(f"copy: bytes={bytes} is not a whole number of {dtype} elements")
    return Op("copy", "elementwise", act_read_bytes=float(bytes), act_write_bytes=float(bytes),
              compute_dtype=dtype, on_vector_units=True)  # fmt: skip


@register_kernel("norm", axis="tokens", variant="torch.rms_norm")
def _norm(tokens: int, hidden: int, dtype: str = "bf16") -> Op:
    """RMSNorm of ``tokens`` rows of ``hidden``: square, sum, scale, weight multiply = 4 FLOPs
    per element on the vector units; reads x and the weight, writes y."""
    e = _elem_bytes(dtype)
    return Op("norm", "elementwise", flops=4.0 * tokens * hidden, weight_bytes=hidden * e,
              act_read_bytes=tokens * hidden * e, act_write_bytes=tokens * hidden * e,
              compute_dtype=dtype, on_vector_units=True)  # fmt: skip


@register_kernel("all_reduce", axis="bytes", variant="torch.nccl")
def _all_reduce(bytes: int, ranks: int) -> Op:  # noqa: A002
    """All-reduce of a ``bytes`` buffer over ``ranks`` devices (ring: 2 (p-1)/p S per link)."""
    return Op("all_reduce", "communication", comm_bytes=float(bytes), collective="all_reduce",
              ranks=ranks)  # fmt: skip
