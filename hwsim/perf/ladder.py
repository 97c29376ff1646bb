"""The pricing ladder: what one op takes on a device, and which predictor answered.

    hwsim.kernel_time("h100-sxm", "gemm", m=4096, n=4096, k=4096, dtype="bf16")

Each rung refuses outside its domain (:class:`~hwsim.errors.RungRefused`) and the result names
the rung that answered and why the ones above it refused (STYLE.md):

1. ``measured``: log-log interpolation of measurements (:mod:`hwsim.perf.measured`), only inside
   the measured range of the kernel's size axis with every other parameter equal.
2. ``calibrated``: :func:`hwsim.perf.roofline.time_op` with the profile's fitted curves, times
   exp(p50) of its calibration residuals for the op (:mod:`hwsim.perf.bands`); band: exp(p10)
   to exp(p90).
3. ``roofline``: speed of light, max(F / peak, B / bandwidth); no efficiency, no overhead.

:func:`price_op` is the ladder for any op (a registered kernel call or an op of a model's
forward pass); :func:`kernel_time` is its front door for one registered kernel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from hwsim.errors import HwsimError, RungRefused
from hwsim.model.ops import Op
from hwsim.perf.bands import calibrated_band
from hwsim.perf.kernels import kernel_params, kernel_spec
from hwsim.perf.measured import MeasurementSet, as_measurement_set
from hwsim.perf.roofline import OpTime, roofline_bound, roofline_floor_s, time_op
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.loader import load_hardware

Rung = Literal["measured", "calibrated", "roofline"]
RUNGS: tuple[Rung, ...] = ("measured", "calibrated", "roofline")


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


def kernel_time(
    hardware: str | Path | HardwareProfile,
    kernel: str,
    *,
    measurements: str | Path | Any | None = None,
    rung: str = "auto",
    variant: str | None = None,
    **params: Any,
) -> KernelTime:
    """Time one kernel call on ``hardware`` (shipped id, YAML path or profile).

    ``measurements``: a directory/file of hwsim measurements (or a loaded
    :class:`hwsim.perf.measured.MeasurementSet`) for the measured rung. ``rung``: 'auto' walks the
    ladder; naming a rung forces it (an error if it refuses). ``variant``: which measured
    implementation to interpolate (default: the fastest one measured at each shape).
    """
    hw, spec, full = load_hardware(hardware), kernel_spec(kernel), kernel_params(kernel, params)
    op = spec.build(**full)
    if rung != "auto" and rung not in RUNGS:
        raise HwsimError(f"unknown rung {rung!r}; allowed: auto, {', '.join(RUNGS)}")
    order: tuple[Rung, ...] = RUNGS if rung == "auto" else (cast(Rung, rung),)
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
        return as_measurement_set(measurements).interpolate(spec.name, params, variant)
    if name == "calibrated":
        return calibrated_band(hw, op)
    floor = float(roofline_floor_s(hw, op))
    return floor, floor, floor


def price_op(hw: HardwareProfile, op: Op, measurements: MeasurementSet | None = None) -> OpTime:
    """One op of a model's forward pass on the ladder: the measured rung where ``op`` is a
    registered kernel call (``op.kernel``) whose shape ``measurements`` covers (its size axis
    may be an array; every other parameter one value), else the efficiency model
    (:func:`~hwsim.perf.roofline.time_op`). A measured op keeps time_op's compute/memory split
    for its bound and carries the measured p10-p90 as its band."""
    modelled = time_op(hw, op)
    if measurements is None or op.kernel is None:
        return modelled
    try:
        median, p10, p90 = measured_times_s(measurements, *op.kernel)
    except RungRefused:
        return modelled
    shape = np.shape(modelled.time_s)
    median, p10, p90 = (np.broadcast_to(x, shape) if shape else x for x in (median, p10, p90))
    return replace(modelled, time_s=median, rung="measured", band_s=(p10, p90))


def measured_times_s(
    measurements: MeasurementSet, kernel: str, params: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, p10, p90) seconds of kernel call ``params`` whose size axis may be an array;
    :class:`RungRefused` unless every other parameter is one value and every size is covered."""
    spec = kernel_spec(kernel)
    axis = np.asarray(params[spec.axis], dtype=float)
    fixed = {}
    for key, value in params.items():
        if key == spec.axis:
            continue
        values = np.unique(np.asarray(value))
        if values.size != 1:
            raise RungRefused(f"{kernel}: {key} varies across the sweep")
        item = values[0].item()
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        fixed[key] = item
    if not np.all(axis == np.round(axis)):
        raise RungRefused(f"{kernel}: {spec.axis} is not a whole number")
    sizes = np.unique(axis).astype(int)
    table = {int(x): measurements.interpolate(kernel, {**fixed, spec.axis: int(x)}) for x in sizes}
    idx = np.searchsorted(sizes, axis.astype(int))
    cols = [np.array([table[int(x)][i] for x in sizes])[idx] for i in range(3)]
    if axis.ndim == 0:
        return cols[0][()], cols[1][()], cols[2][()]
    return cols[0], cols[1], cols[2]
