"""Op-level API: what would one kernel take on a device, and how far to trust the answer.

    hwsim.kernel_time("h100-sxm", "gemm", m=4096, n=4096, k=4096, dtype="bf16")

Kernels are :class:`~hwsim.ops.Op` builders registered with :func:`register_kernel`. A ladder
prices the op (STYLE.md); each rung refuses outside its domain (:class:`RungRefused`) and the
result names the rung that answered and why the ones above it refused:

1. ``measured``: log-log interpolation of measurements (:mod:`hwsim.measured`), only inside
   the measured range of the kernel's size axis with every other parameter equal.
2. ``calibrated``: :func:`hwsim.predict.time_op` with the profile's fitted curves, times
   exp(p50) of its calibration residuals for the op; band: exp(p10) to exp(p90). Where the
   profile has an overhead key for the kernel ('<kernel>/<dtype>/overhead'), the fixed per-call
   part of the time (launch, dispatch, F_half/B_half) is scaled by that key instead and only
   the size-proportional part by the op's own key (:func:`time_parts`).
3. ``roofline``: speed of light, max(F / peak, B / bandwidth); no efficiency, no overhead.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hwsim.dtypes import DTYPES
from hwsim.errors import HwsimError
from hwsim.ops import Op
from hwsim.predict import overlapped_s, peak_flops_per_s, roofline_floor_s, time_op
from hwsim.profiles.hardware import HardwareProfile, ResidualBand
from hwsim.profiles.loader import load_hardware

Rung = Literal["measured", "calibrated", "roofline"]
RUNGS: tuple[Rung, ...] = ("measured", "calibrated", "roofline")


class RungRefused(HwsimError):
    """A predictor rung cannot price this op (outside its domain); the ladder moves on."""


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


KERNELS: dict[str, KernelSpec] = {}


def register_kernel(name: str, *, axis: str, variant: str) -> Callable:
    """Decorator: register an op builder whose keyword parameters are typed int/bool/str."""

    def deco(fn: Callable[..., Op]) -> Callable[..., Op]:
        if name in KERNELS:
            raise RuntimeError(f"kernel {name!r} registered twice")
        hints = typing.get_type_hints(fn)
        sig = inspect.signature(fn)
        params = {p: hints[p] for p in sig.parameters}
        defaults = {p.name: p.default for p in sig.parameters.values() if p.default is not p.empty}
        if axis not in params:
            raise RuntimeError(f"kernel {name!r}: axis {axis!r} is not a parameter")
        KERNELS[name] = KernelSpec(name, fn, params, defaults, axis, variant)
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


def kernel_op(name: str, **params: Any) -> Op:
    """The cost descriptor of one kernel call (FLOPs and bytes; no time)."""
    return kernel_spec(name).build(**kernel_params(name, params))


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


@register_kernel("attention_prefill", axis="seq_len", variant="torch.sdpa")
def _attention_prefill(batch: int, heads: int, kv_heads: int, seq_len: int, head_dim: int,
                       causal: bool = True, dtype: str = "bf16") -> Op:  # fmt: skip
    """Fused attention over a whole prompt: 4 d_h FLOPs per scored query-key pair per head
    (QK^T and PV), S(S+1)/2 pairs when causal; ideal I/O reads Q, K, V once and writes O
    (FlashAttention, Dao et al. 2022, arXiv 2205.14135). GQA: K and V have ``kv_heads``."""
    _check_gqa(heads, kv_heads)
    b, s, d, e = batch, float(seq_len), head_dim, _elem_bytes(dtype)
    pairs = s * (s + 1) / 2 if causal else s * s
    name = "attention_prefill_causal" if causal else "attention_prefill"
    return Op(name, "attention", flops=4.0 * b * heads * d * pairs,
              act_read_bytes=b * heads * s * d * e, act_write_bytes=b * heads * s * d * e,
              kv_read_bytes=2.0 * b * kv_heads * s * d * e, compute_dtype=dtype,
              meta={"head_dim": head_dim})  # fmt: skip


@register_kernel("attention_decode", axis="context_len", variant="torch.sdpa")
def _attention_decode(batch: int, heads: int, kv_heads: int, context_len: int, head_dim: int,
                      dtype: str = "bf16") -> Op:  # fmt: skip
    """One new query per sequence against a KV cache of ``context_len`` tokens: reads the whole
    cache (2 b h_kv C d_h elements), 4 b h C d_h FLOPs; the memory-bound case. GQA decode (a
    group of queries per KV head) is its own op name: kernels batch the group very differently."""
    _check_gqa(heads, kv_heads)
    b, c, d, e = batch, float(context_len), head_dim, _elem_bytes(dtype)
    name = "attention_decode_gqa" if kv_heads < heads else "attention_decode"
    return Op(name, "attention", flops=4.0 * b * heads * d * c, act_read_bytes=b * heads * d * e,
              act_write_bytes=b * heads * d * e, kv_read_bytes=2.0 * b * kv_heads * c * d * e,
              compute_dtype=dtype, meta={"head_dim": head_dim})  # fmt: skip


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


# -- the ladder ------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelTime:
    """One kernel priced on one device: point value, band and the rung that produced it."""

    kernel: str
    params: dict[str, Any]
    hardware: str
    time_s: float
    low_s: float
    high_s: float
    rung: Rung
    bound: str
    flops: float
    bytes_moved: float
    refused: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def roofline_bound(hw: HardwareProfile, op: Op) -> np.ndarray:
    """'compute' or 'memory' (per element) by the bare roofline: F / peak vs B / bandwidth."""
    if op.op_class == "communication":
        return np.full(np.shape(op.comm_bytes), "communication")
    compute = np.asarray(op.flops, dtype=float) / peak_flops_per_s(hw, op)
    memory = np.asarray(op.hbm_bytes, dtype=float) / hw.bandwidth_bytes_per_s
    return np.where(compute >= memory, "compute", "memory")


def group_key(op: Op, bound: str) -> str:
    """'<kernel>/<dtype>/<bound>', e.g. 'gemm/bf16/memory': the calibration group of ``op``."""
    return f"{op.name}/{op.compute_dtype}/{bound}"


def shape_factor(op: Op) -> str | None:
    """A shape parameter the calibration may key on beyond FLOPs and bytes: 'head_dim=<d>' for
    attention built here. FlashAttention-style kernels run the softmax exponentials on the
    special-function units (about 3.9 T exp/s against 989 TFLOP/s of bf16 MMA on an H100), one
    per score whatever the head dim, so a head dim of 64 reaches a lower fraction of matrix
    peak than 128 (Shah et al. 2024, FlashAttention-3, arXiv 2407.08608)."""
    d = op.meta.get("head_dim")
    return f"head_dim={d}" if d is not None else None


def residual_keys(op: Op, bound: str) -> tuple[str, ...]:
    """Calibration residual keys for ``op``, most specific first: '<kernel>/<dtype>/<bound>'
    (e.g. 'gemm/bf16/memory'), preceded by '<kernel>/<dtype>/<bound>/<shape factor>' where
    :func:`shape_factor` has one, then '<kernel>/<dtype>', '<op class>/<dtype>', '<op class>'."""
    d, group, factor = op.compute_dtype, group_key(op, bound), shape_factor(op)
    keys = (group, f"{op.name}/{d}", f"{op.op_class}/{d}", op.op_class)
    return (f"{group}/{factor}", *keys) if factor else keys


def overhead_key(op: Op) -> str:
    """Calibration residual key of the fixed per-call cost of ``op``'s kernel (launch and
    dispatch, the curve's F_half and B_half): '<kernel>/<dtype>/overhead'. A library's per-call
    overhead is its own number, not its throughput's; one log offset for both cannot fit a
    kernel's small and large shapes at once."""
    return f"{op.name}/{op.compute_dtype}/overhead"


@dataclass(frozen=True)
class OpBand:
    """log(measured / time_op) quantiles for one op (arrays where the op's sizes are): its
    group's band where the op has no overhead key, else the blend :func:`residual_band`
    describes."""

    p10: np.ndarray | float
    p50: np.ndarray | float
    p90: np.ndarray | float
    n_points: int


def residual_band(
    hw: HardwareProfile, op: Op, bound: str, time_s: np.ndarray | None = None
) -> ResidualBand | OpBand | None:
    """The calibration residuals of log(measured / time_op) for ``op``: the most specific key
    the profile has (:func:`residual_keys`). Where it also has the kernel's
    :func:`overhead_key`, that key prices the fixed per-call part of the time and the group key
    the size-proportional part (:func:`time_parts`): time_op exp(p) = work exp(p_group) +
    fixed exp(p_overhead), quantile by quantile. ``time_s``: time_op's time of ``op`` where the
    caller has it already."""
    res = hw.calibration.residuals if hw.calibration else {}
    band = next((res[k] for k in residual_keys(op, bound) if k in res), None)
    overhead = res.get(overhead_key(op))
    if band is None or overhead is None:
        return band
    work, fixed = time_parts(hw, op, time_s)
    total = np.maximum(work + fixed, np.finfo(float).tiny)

    def blend(q: str) -> np.ndarray:
        return np.log(
            (work * np.exp(getattr(band, q)) + fixed * np.exp(getattr(overhead, q))) / total
        )

    return OpBand(blend("p10"), blend("p50"), blend("p90"), band.n_points)


def time_parts(
    hw: HardwareProfile, op: Op, time_s: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(work, fixed) seconds of :func:`hwsim.predict.time_op`: ``work`` the size-proportional
    time, max(C, M) + (1 - overlap) min(C, M) without F_half and B_half; ``fixed`` the rest
    (F_half, B_half and the launch overhead), so work + fixed is time_op's time (``time_s``,
    computed here unless the caller has it)."""
    curve = hw.efficiency.for_class(op.op_class)
    flops, nbytes = np.asarray(op.flops, dtype=float), np.asarray(op.hbm_bytes, dtype=float)
    compute = flops / (peak_flops_per_s(hw, op) * curve.compute_fraction)
    memory = nbytes / (hw.bandwidth_bytes_per_s * curve.memory_fraction)
    work = overlapped_s(compute, memory, curve.overlap)
    total = np.asarray(time_op(hw, op).time_s if time_s is None else time_s, dtype=float)
    return work, np.maximum(total - work, 0.0)


def calibrated_band(hw: HardwareProfile, op: Op) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time, low, high) in seconds per execution of ``op`` on a calibrated profile: time_op
    times exp(p50), exp(p10), exp(p90) of :func:`residual_band`; never below the roofline.
    Raises :class:`RungRefused` without residuals for the op class."""
    if hw.calibration is None:
        raise RungRefused(f"profile {hw.id!r} has no calibration block")
    bound = roofline_bound(hw, op)
    base = np.asarray(time_op(hw, op).time_s, dtype=float)
    bands = {b: residual_band(hw, op, b, base) for b in np.unique(bound)}
    if any(band is None for band in bands.values()):
        raise RungRefused(f"profile {hw.id!r} has no calibration residuals for {op.op_class!r}")
    floor = np.asarray(roofline_floor_s(hw, op), dtype=float)

    def scaled(q: str) -> np.ndarray:
        log_factor = sum(np.where(bound == b, getattr(band, q), 0.0) for b, band in bands.items())
        return np.maximum(floor, base * np.exp(log_factor))

    return scaled("p50"), scaled("p10"), scaled("p90")


def kernel_time(
    hardware: str | Path | HardwareProfile,
    kernel: str,
    *,
    measurements: str | Path | Any | None = None,
    rung: Rung | Literal["auto"] = "auto",
    variant: str | None = None,
    **params: Any,
) -> KernelTime:
    """Time one kernel call on ``hardware`` (shipped id, YAML path or profile).

    ``measurements``: a directory/file of hwsim measurements (or a loaded
    :class:`hwsim.measured.MeasurementSet`) for the measured rung. ``rung``: 'auto' walks the
    ladder; naming a rung forces it (an error if it refuses). ``variant``: which measured
    implementation to interpolate (default: the fastest one measured at each shape).
    """
    hw, spec, full = load_hardware(hardware), kernel_spec(kernel), kernel_params(kernel, params)
    op = spec.build(**full)
    if rung != "auto" and rung not in RUNGS:
        raise HwsimError(f"unknown rung {rung!r}; allowed: auto, {', '.join(RUNGS)}")
    order = RUNGS if rung == "auto" else (rung,)
    refused: dict[str, str] = {}
    for name in order:
        try:
            t, lo, hi = _price(name, hw, spec, full, op, measurements, variant)
        except RungRefused as exc:
            refused[name] = str(exc)
            if rung != "auto":
                raise
            continue
        moved = op.comm_bytes if op.op_class == "communication" else op.hbm_bytes
        bound = str(np.ravel(roofline_bound(hw, op))[0])
        return KernelTime(kernel, full, hw.id, float(t), float(lo), float(hi), name, bound,
                          float(op.flops), float(moved), refused)  # fmt: skip
    raise AssertionError("the roofline rung never refuses")  # pragma: no cover


def _price(name, hw, spec, params, op, measurements, variant):
    if name == "measured":
        if measurements is None:
            raise RungRefused("no measurements given")
        from hwsim.measured import as_measurement_set

        return as_measurement_set(measurements).interpolate(spec.name, params, variant)
    if name == "calibrated":
        return calibrated_band(hw, op)
    floor = float(roofline_floor_s(hw, op))
    return floor, floor, floor
