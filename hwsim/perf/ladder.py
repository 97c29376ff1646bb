"""The pricing ladder: what one op takes on a device, and which predictor answered.

    hwsim.kernel_time("h100-sxm", "gemm", m=4096, n=4096, k=4096, dtype="bf16")

One ladder prices every op, whether it is asked for alone (:func:`kernel_time`) or is part of
a model's forward pass (:func:`price_op`, which ``estimate``, ``plan`` and the engine use), so
one op, one shape and one profile give one time. Each rung refuses outside its domain
(:class:`~hwsim.errors.RungRefused`) and the result names the rung that answered and why the
ones above it refused (STYLE.md):

1. ``measured``: log-log interpolation of measurements (:mod:`hwsim.perf.measured`), only inside
   the measured range of the kernel's size axis with every other parameter equal; band: the
   measurements' p10-p90.
2. ``calibrated``: :func:`hwsim.perf.roofline.time_op` with the profile's fitted curves, where
   the profile's calibration has residuals for the op; band: exp(p10) to exp(p90) of those
   residuals (:func:`hwsim.perf.bands.op_band_s`), never below the speed of light.
3. ``datasheet``: the same :func:`~hwsim.perf.roofline.time_op` on a profile (or op class) the
   calibration did not fit: datasheet peaks times the profile's stated efficiencies; no band.
4. ``speed_of_light``: max(F / peak, B / bandwidth), no efficiency, no overhead: a bound, not
   an estimate, so only when asked for by name (``rung="speed_of_light"``; ``"roofline"`` is
   accepted as its old name).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hwsim.errors import HwsimError, RungRefused
from hwsim.model.ops import Op
from hwsim.perf.bands import band_source, calibration_refusal, op_band_s
from hwsim.perf.kernels import kernel_params, kernel_spec
from hwsim.perf.measured import MeasurementSet, as_measurement_set
from hwsim.perf.roofline import OpTime, roofline_bound, roofline_floor_s, time_op
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.loader import load_hardware

Rung = Literal["measured", "calibrated", "datasheet", "speed_of_light"]
RUNGS: tuple[Rung, ...] = ("measured", "calibrated", "datasheet", "speed_of_light")
ALIASES = {"roofline": "speed_of_light"}
SPEED_OF_LIGHT_BAND = (
    "none: the speed of light is a bound (no real kernel is faster), not an estimate"
)


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
    band: str = ""  # where low_s / high_s come from (hwsim.perf.bands.band_source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict (a list of one, like every result's ``to_records``): ``kernel``,
        ``hardware``, ``params.<name>`` per kernel parameter, ``time_s``, ``low_s``,
        ``high_s``, ``rung``, ``bound``, ``flops``, ``bytes_moved`` and
        ``refused.<rung>`` (why each rung above the answering one refused)."""
        from hwsim.tables import flatten, plain

        row: dict[str, Any] = {"kernel": self.kernel, "hardware": self.hardware}
        row.update(flatten({"params": self.params}))
        row.update(
            time_s=self.time_s,
            low_s=self.low_s,
            high_s=self.high_s,
            rung=self.rung,
            bound=self.bound,
            flops=self.flops,
            bytes_moved=self.bytes_moved,
        )
        row.update(flatten({"refused": self.refused}))
        return [{k: plain(v) for k, v in row.items()}]

    def to_frame(self):
        """A one-row pandas DataFrame of :meth:`to_records` (needs pandas)."""
        from hwsim.tables import to_frame

        return to_frame(self.to_records())

    def _repr_html_(self) -> str:  # notebooks
        from hwsim.tables import html_table

        row = self.to_records()[0]
        shown = [k for k in row if not k.startswith("refused.")]
        notes = [
            f"{k.partition('.')[2]} refused: {v}"
            for k, v in row.items()
            if k.startswith("refused.")
        ]
        caption = f"{self.kernel} on {self.hardware}: {self.rung} rung"
        return html_table([row], shown, caption=caption, notes=notes)


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
    op = replace(spec.build(**full), kernel=(spec.name, full))
    rung = ALIASES.get(rung, rung)
    if rung != "auto" and rung not in RUNGS:
        raise HwsimError(f"unknown rung {rung!r}; allowed: auto, {', '.join(RUNGS)}")
    moved = op.comm_bytes if op.op_class == "communication" else op.hbm_bytes
    bound = str(np.ravel(roofline_bound(hw, op))[0])

    def result(
        t: float, lo: float, hi: float, name: Any, refused: dict[str, str], band: str
    ) -> KernelTime:
        return KernelTime(kernel, full, hw.id, float(t), float(lo), float(hi), name, bound,
                          float(op.flops), float(moved), refused, band)  # fmt: skip

    if rung == "speed_of_light":
        floor = float(roofline_floor_s(hw, op))
        return result(floor, floor, floor, rung, {}, SPEED_OF_LIGHT_BAND)
    meas = None if measurements is None else as_measurement_set(measurements)
    t, refused = _climb(hw, op, meas, variant)
    if rung != "auto" and t.rung != rung:
        raise RungRefused(refused.get(rung) or f"the {t.rung} rung answers above it")
    lo, hi = op_band_s(hw, t)
    return result(float(t.time_s), float(lo), float(hi), t.rung, refused, band_source(t))


def _climb(
    hw: HardwareProfile, op: Op, measurements: MeasurementSet | None, variant: str | None = None
) -> tuple[OpTime, dict[str, str]]:
    """``op`` priced by the first rung that accepts it, and why the rungs above refused."""
    refused: dict[str, str] = {}
    reason = calibration_refusal(hw, op)
    modelled = time_op(hw, op, rung="datasheet" if reason else "calibrated")
    if measurements is None:
        refused["measured"] = "no measurements given"
    elif op.kernel is None:
        refused["measured"] = f"{op.name} is no registered kernel call"
    else:
        try:
            median, p10, p90 = measured_times_s(measurements, *op.kernel, variant=variant)
        except RungRefused as exc:
            refused["measured"] = str(exc)
        else:
            shape = np.shape(modelled.time_s)
            median, p10, p90 = (
                np.broadcast_to(x, shape) if shape else x for x in (median, p10, p90)
            )
            return replace(modelled, time_s=median, rung="measured", band_s=(p10, p90)), refused
    if reason is not None:
        refused["calibrated"] = reason
    return modelled, refused


def price_op(
    hw: HardwareProfile,
    op: Op,
    measurements: MeasurementSet | None = None,
    variant: str | None = None,
) -> OpTime:
    """One op (a registered kernel call, or an op of a model's forward pass) on the ladder: the
    measured rung where ``op`` is a kernel call (``op.kernel``) whose shape ``measurements``
    covers (its size axis may be an array; every other parameter one value), else
    :func:`~hwsim.perf.roofline.time_op`, named 'calibrated' where the profile's calibration
    has residuals for the op and 'datasheet' where not. A measured op keeps time_op's
    compute/memory split for its bound and carries the measured p10-p90 as its band."""
    if measurements is None:  # no measured rung to try: time_op, named as _climb names it
        return time_op(hw, op, rung="datasheet" if calibration_refusal(hw, op) else "calibrated")
    return _climb(hw, op, measurements, variant)[0]


def measured_times_s(
    measurements: MeasurementSet, kernel: str, params: dict[str, Any], variant: str | None = None
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
    table = {
        int(x): measurements.interpolate(kernel, {**fixed, spec.axis: int(x)}, variant)
        for x in sizes
    }
    idx = np.searchsorted(sizes, axis.astype(int))
    cols = [np.array([table[int(x)][i] for x in sizes])[idx] for i in range(3)]
    if axis.ndim == 0:
        return cols[0][()], cols[1][()], cols[2][()]
    return cols[0], cols[1], cols[2]
