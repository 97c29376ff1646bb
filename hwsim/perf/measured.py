"""Measurement files and the measured rung: read them strictly, interpolate them log-log.

Layout (written by the ``validation`` suite, read here without torch)::

    <root>/<device>/<kernel>/<stack>@<version>/measurements.csv   (+ metadata.json)

One CSV per kernel: ``kernel, variant, <the kernel's parameters>, median_s, p10_s, p90_s,
iqr_s, repeats, inner`` (seconds per call; quantiles over ``repeats`` samples of ``inner``
calls each). A bad file raises :class:`~hwsim.errors.HwsimError` naming the file, the line,
the field and what was wrong.

The measured rung interpolates log(time) linearly in log(size) along the kernel's size axis
(e.g. ``m`` for a GEMM) among rows whose other parameters all equal the query's; outside the
measured range it refuses (:class:`~hwsim.errors.RungRefused`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import HwsimError, RungRefused
from hwsim.perf.kernels import KERNELS, kernel_params, kernel_spec
from hwsim.safe_read import read_text

CSV_NAME = "measurements.csv"
MAX_MEASUREMENT_BYTES = 64 * 1024 * 1024
TIME_COLUMNS = ("median_s", "p10_s", "p90_s", "iqr_s")
COUNT_COLUMNS = ("repeats", "inner")


@dataclass(frozen=True)
class Measurement:
    """One measured shape: seconds per call (median and spread over repeated samples)."""

    kernel: str
    variant: str
    params: dict[str, Any]
    median_s: float
    p10_s: float
    p90_s: float
    iqr_s: float
    repeats: int
    inner: int = 1
    device: str = field(default="", compare=False)
    stack: str = field(default="", compare=False)
    source: str = field(default="", compare=False)

    def key(self) -> tuple:
        return (self.kernel, self.variant, *sorted(self.params.items()))


def columns(kernel: str) -> list[str]:
    return ["kernel", "variant", *kernel_spec(kernel).params, *TIME_COLUMNS, *COUNT_COLUMNS]


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv(path: str | Path, rows: Iterable[Measurement]) -> Path:
    """Write one kernel's rows to ``path`` atomically (never a partial file)."""
    rows = list(rows)
    if not rows:
        raise HwsimError(f"{path}: no measurements to write")
    kernels = {r.kernel for r in rows}
    if len(kernels) != 1:
        raise HwsimError(f"{path}: one kernel per file, got {sorted(kernels)}")
    cols = columns(rows[0].kernel)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        for r in rows:
            values = {"kernel": r.kernel, "variant": r.variant, **kernel_params(r.kernel, r.params)}
            values.update({c: getattr(r, c) for c in (*TIME_COLUMNS, *COUNT_COLUMNS)})
            writer.writerow([_format(values[c]) for c in cols])
    tmp.replace(path)
    return path


def read_csv(path: str | Path) -> list[Measurement]:
    """Read one measurements file; every problem names the file, line and field."""
    path = Path(path)
    text = read_text(path, "measurements CSV", max_bytes=MAX_MEASUREMENT_BYTES)
    try:
        lines = list(csv.reader(text.splitlines()))
    except csv.Error as exc:
        raise HwsimError(f"{path}: not a readable CSV file: {exc}") from None
    if not lines or not any(lines[0]):
        raise HwsimError(f"{path}: empty file (expected a header line and measurement rows)")
    header, body = lines[0], lines[1:]
    if "kernel" not in header:
        raise HwsimError(f"{path} line 1: header has no 'kernel' column (got {header})")
    if not body:
        raise HwsimError(f"{path}: header only, no measurement rows (partial file?)")
    stack, kernel_dir, device = _layout(path)
    rows = []
    for lineno, cells in enumerate(body, start=2):
        if not cells:
            continue
        rows.append(_parse_row(path, lineno, header, cells, device, stack))
        if kernel_dir and rows[-1].kernel != kernel_dir:
            raise HwsimError(
                f"{path} line {lineno}: kernel {rows[-1].kernel!r} in a {kernel_dir}/ directory"
            )
    return rows


def _layout(path: Path) -> tuple[str, str, str]:
    """(stack, kernel, device) from ``<device>/<kernel>/<stack>@<version>/measurements.csv``."""
    parts = path.resolve().parts
    if len(parts) >= 4 and "@" in parts[-2] and parts[-3] in KERNELS:
        return parts[-2], parts[-3], parts[-4]
    return "", "", ""


def _parse_row(path, lineno, header, cells, device, stack) -> Measurement:
    where = f"{path} line {lineno}"
    if len(cells) != len(header):
        raise HwsimError(
            f"{where}: expected {len(header)} fields, got {len(cells)} (truncated or partial row?)"
        )
    raw = dict(zip(header, cells))
    kernel = raw["kernel"]
    if kernel not in KERNELS:
        raise HwsimError(
            f"{where}, field 'kernel': unknown kernel {kernel!r}; allowed: {', '.join(KERNELS)}"
        )
    expected = columns(kernel)
    if header != expected:
        missing = [c for c in expected if c not in header]
        extra = [c for c in header if c not in expected]
        raise HwsimError(
            f"{path} line 1: header does not match kernel {kernel!r}: "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}; expected {expected}"
        )
    spec = kernel_spec(kernel)
    params = {}
    for name, kind in spec.params.items():
        params[name] = _cell(where, name, raw[name], kind)
    try:
        params = kernel_params(kernel, params)
        spec.build(**params)
    except HwsimError as exc:
        raise HwsimError(f"{where}: {exc}") from None
    times = {c: _cell(where, c, raw[c], float) for c in TIME_COLUMNS}
    counts = {c: _cell(where, c, raw[c], int) for c in COUNT_COLUMNS}
    if not times["p10_s"] <= times["median_s"] <= times["p90_s"]:
        raise HwsimError(f"{where}: need p10_s <= median_s <= p90_s, got {times}")
    if not raw["variant"]:
        raise HwsimError(f"{where}, field 'variant': empty")
    return Measurement(
        kernel,
        raw["variant"],
        params,
        **times,
        **counts,
        device=device,
        stack=stack,
        source=str(path),
    )


def _cell(where: str, name: str, text: str, kind: type) -> Any:
    text = text.strip()
    if kind is bool:
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise HwsimError(f"{where}, field '{name}': expected true or false, got {text!r}")
    if kind is str:
        return text
    try:
        value = int(text) if kind is int else float(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise HwsimError(f"{where}, field '{name}': cannot read {text!r} as {what}") from None
    if name == "iqr_s":
        ok = math.isfinite(value) and value >= 0
    else:
        ok = math.isfinite(value) and value > 0
    if not ok:
        raise HwsimError(f"{where}, field '{name}': must be positive and finite, got {text!r}")
    return value


class MeasurementSet:
    """Measurements loaded from one directory tree (or file); the measured rung's data."""

    def __init__(self, rows: Iterable[Measurement], source: str = ""):
        self.rows: tuple[Measurement, ...] = tuple(rows)
        self.source = source

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def devices(self) -> list[str]:
        return sorted({r.device for r in self.rows if r.device})

    def select(self, kernel: str, variant: str | None = None) -> list[Measurement]:
        """Rows of ``kernel``: of one ``variant``, or (None) the fastest variant per shape."""
        rows = [r for r in self.rows if r.kernel == kernel]
        if variant is not None:
            return [r for r in rows if r.variant == variant]
        return best_per_shape(rows)

    def interpolate(
        self, kernel: str, params: dict[str, Any], variant: str | None = None
    ) -> tuple[float, float, float]:
        """(median, p10, p90) seconds at ``params``, interpolated log-log along the kernel's
        size axis; :class:`RungRefused` where the measurements do not cover the shape.
        ``variant`` None: the fastest measured implementation of each shape."""
        spec = kernel_spec(kernel)
        params = kernel_params(kernel, params)
        rows = self.select(kernel, variant)
        if not rows:
            which = f" of variant {variant!r}" if variant else ""
            raise RungRefused(f"no {kernel} measurements{which} in {self.source}")
        others = {k: v for k, v in params.items() if k != spec.axis}
        group = [r for r in rows if all(r.params[k] == v for k, v in others.items())]
        if not group:
            shown = ", ".join(f"{k}={v}" for k, v in others.items())
            raise RungRefused(f"no {kernel} measurements with {shown}")
        x = float(params[spec.axis])
        by_x: dict[float, list[Measurement]] = {}
        for r in group:
            by_x.setdefault(float(r.params[spec.axis]), []).append(r)
        xs = np.array(sorted(by_x))
        if not xs[0] <= x <= xs[-1]:
            raise RungRefused(
                f"{spec.axis}={params[spec.axis]} outside the measured range "
                f"{xs[0]:g}-{xs[-1]:g} of {kernel}"
            )
        out = []
        for col in ("median_s", "p10_s", "p90_s"):
            ys = [np.mean([math.log(getattr(r, col)) for r in by_x[v]]) for v in xs]
            out.append(float(np.exp(np.interp(math.log(x), np.log(xs), ys))))
        return out[0], out[1], out[2]


def best_per_shape(rows: Iterable, time_of=lambda r: r.median_s) -> list:
    """The fastest implementation (lowest ``time_of``, the median by default) of each
    (kernel, parameters) shape: what a well-configured engine would run. ``rows``: anything
    with ``kernel`` and ``params`` (measurements, validation report rows)."""
    best: dict[tuple, Any] = {}
    for r in rows:
        key = (r.kernel, *sorted(r.params.items()))
        if key not in best or time_of(r) < time_of(best[key]):
            best[key] = r
    return list(best.values())


def load_measurements(path: str | Path) -> MeasurementSet:
    """Every ``measurements.csv`` under ``path`` (a directory) or ``path`` itself (a file)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise HwsimError(f"measurements directory not found: {path}")
    files = [path] if path.is_file() else sorted(path.rglob(CSV_NAME))
    if not files:
        raise HwsimError(f"{path}: no {CSV_NAME} files found under it")
    rows = [row for f in files for row in read_csv(f)]
    return MeasurementSet(rows, source=str(path))


@lru_cache(maxsize=16)
def _cached(path: str, stamp: tuple) -> MeasurementSet:
    return load_measurements(path)


def as_measurement_set(value: str | Path | MeasurementSet) -> MeasurementSet:
    """A loaded set as is; a path loaded once (re-read when a file in it changes)."""
    if isinstance(value, MeasurementSet):
        return value
    path = Path(value).expanduser().resolve()
    if not path.exists():
        raise HwsimError(f"measurements directory not found: {path}")
    files = [path] if path.is_file() else sorted(path.rglob(CSV_NAME))
    stamp = tuple((str(f), f.stat().st_mtime_ns) for f in files)
    return _cached(str(path), stamp)
