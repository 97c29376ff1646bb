"""Predicted vs measured: one record per measurement, summaries per op class, two plots.

The prediction for each measured shape comes from :func:`hwsim.perf.ladder.kernel_time` without
measurements (calibrated rung on a calibrated profile, else the roofline), so the report
checks the same code path users call. Rows the calibration held out are marked: only their
errors and band coverage are honest estimates of accuracy.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.perf.kernels import kernel_op
from hwsim.perf.ladder import kernel_time
from hwsim.perf.measured import MeasurementSet, best_per_shape
from hwsim.profiles.hardware import HardwareProfile
from validation.bands import error_summary
from validation.curve import is_heldout


@dataclass(frozen=True)
class Row:
    kernel: str
    variant: str
    params: dict[str, Any]
    op_class: str
    measured_s: float
    predicted_s: float
    low_s: float
    high_s: float
    rung: str
    heldout: bool
    flops: float
    bytes_moved: float

    @property
    def error(self) -> float:
        """Signed relative error (predicted - measured) / measured."""
        return (self.predicted_s - self.measured_s) / self.measured_s

    @property
    def inside_band(self) -> bool:
        return self.low_s <= self.measured_s <= self.high_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error": self.error, "inside_band": self.inside_band}


def compare(hw: HardwareProfile, measurements: MeasurementSet) -> list[Row]:
    """Predict every measured row (every implementation) on ``hw``."""
    rows = []
    for m in measurements.rows:
        op = kernel_op(m.kernel, **m.params)
        if op.op_class == "communication" and hw.link_for(op.ranks) is None:
            continue
        # No measurements passed: the calibrated rung where the profile has residuals for
        # the op, else the roofline (and the row says which).
        t = kernel_time(hw, m.kernel, **m.params)
        rows.append(
            Row(
                m.kernel,
                m.variant,
                m.params,
                op.op_class,
                m.median_s,
                t.time_s,
                t.low_s,
                t.high_s,
                t.rung,
                is_heldout(m),
                t.flops,
                t.bytes_moved,
            )
        )
    return rows


def fastest(rows: list[Row]) -> list[Row]:
    """The fastest implementation of each shape: what hwsim predicts, and what calibration
    fitted (a slower library path of the same shape is listed but not scored)."""
    return best_per_shape(rows, time_of=lambda r: r.measured_s)


def summarise(rows: list[Row]) -> dict[str, dict[str, dict[str, float]]]:
    """Per op class (and 'all'): error statistics over every shape and over held-out shapes,
    scoring the fastest implementation of each shape."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in fastest(rows):
        groups[r.op_class].append(r)
        groups["all"].append(r)
    out = {}
    for name, rs in groups.items():
        held = [r for r in rs if r.heldout]
        out[name] = {
            "all": error_summary([abs(r.error) for r in rs], [r.inside_band for r in rs]),
            "heldout": error_summary([abs(r.error) for r in held], [r.inside_band for r in held]),
        }
    return out


_ABBREV = {
    "batch": "b",
    "heads": "h",
    "kv_heads": "kv",
    "seq_len": "s",
    "head_dim": "d",
    "context_len": "ctx",
    "tokens": "t",
    "hidden": "h",
    "ranks": "p",
}


def shape_label(params: dict[str, Any]) -> str:
    """Compact shape: 'm32 n1024 k4096 bf16', 'b1 h8 kv2 s1024 d128 causal fp32', '64 MiB bf16'."""
    parts = []
    for k, v in params.items():
        if isinstance(v, bool):
            parts.append(k if v else f"non-{k}")
        elif k == "dtype":
            parts.append(str(v))
        elif k == "bytes":
            parts.append(f"{v / 2**20:g} MiB" if v >= 2**20 else f"{v / 2**10:g} KiB")
        else:
            parts.append(f"{_ABBREV.get(k, k)}{v}")
    return " ".join(parts)


# -- plots -----------------------------------------------------------------------------------
_COLORS = {
    "matmul": "tab:blue",
    "attention": "tab:orange",
    "elementwise": "tab:green",
    "communication": "tab:purple",
}


def plot_scatter(rows: list[Row], path: str | Path, title: str) -> Path:
    """Predicted vs measured, log-log, with the y = x line; held-out points filled; slower
    implementations of a shape (hwsim predicts the fastest) in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 6))
    best = fastest(rows)
    slower = [r for r in rows if r not in best]
    if slower:
        ax.scatter(
            [r.measured_s for r in slower],
            [r.predicted_s for r in slower],
            s=8,
            color="0.6",
            marker=".",
            label="slower implementation of a shape (not scored)",
        )
    for op_class in sorted({r.op_class for r in best}):
        for held in (False, True):
            rs = [r for r in best if r.op_class == op_class and r.heldout == held]
            if not rs:
                continue
            ax.scatter(
                [r.measured_s for r in rs],
                [r.predicted_s for r in rs],
                s=22,
                color=_COLORS.get(op_class, "gray"),
                alpha=0.9 if held else 0.45,
                marker="o" if held else "x",
                label=f"{op_class} ({'held-out' if held else 'train'})",
            )
    values = [v for r in rows for v in (r.measured_s, r.predicted_s) if v > 0]
    lo, hi = min(values) / 1.5, max(values) * 1.5
    ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x")
    ax.fill_between(
        [lo, hi],
        [lo / 1.25, hi / 1.25],
        [lo * 1.25, hi * 1.25],
        color="k",
        alpha=0.06,
        label="±25%",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="measured time per call (s)",
        ylabel="predicted time per call (s)",
        title=title,
    )
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(True, which="both", alpha=0.2)
    return _save(fig, path)


def plot_roofline(rows: list[Row], hw: HardwareProfile, path: str | Path, title: str) -> Path:
    """Attainable FLOP/s vs arithmetic intensity: the profile's roofs and measured points.

    Zero-FLOP kernels (copies) have no intensity and are left off."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.flops > 0 and r.bytes_moved > 0]
    fig, ax = plt.subplots(figsize=(7, 5))
    intensity = np.array([r.flops / r.bytes_moved for r in pts]) if pts else np.array([1.0])
    x = np.logspace(np.log10(intensity.min() / 4), np.log10(intensity.max() * 4), 200)
    bw = hw.bandwidth_bytes_per_s
    dtypes = sorted({r.params.get("dtype") for r in pts if r.params.get("dtype")})
    for dtype in dtypes or ["bf16"]:
        try:
            peak = hw.matrix_peak_flops_per_s(dtype)
        except Exception:
            continue
        ax.plot(
            x,
            np.minimum(peak, x * bw),
            lw=1.2,
            label=f"roofline {dtype}: {peak / 1e12:.3g} TFLOP/s, {bw / 1e9:.3g} GB/s",
        )
    for op_class in sorted({r.op_class for r in pts}):
        rs = [r for r in pts if r.op_class == op_class]
        ax.scatter(
            [r.flops / r.bytes_moved for r in rs],
            [r.flops / r.measured_s for r in rs],
            s=16,
            color=_COLORS.get(op_class, "gray"),
            label=f"measured {op_class}",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="arithmetic intensity (FLOP / byte)",
        ylabel="attained FLOP/s",
        title=title,
    )
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.2)
    return _save(fig, path)


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
