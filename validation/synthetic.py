"""Synthetic measurements: hwsim's own model with known parameters, plus log-normal noise.

For checking the fit (it must recover the parameters it was given) and for tests that need
measurement files without spending time on real kernels. Never used to calibrate a profile.
"""

from __future__ import annotations

import math

import numpy as np

from hwsim.perf.kernels import kernel_op, kernel_params
from hwsim.perf.measured import Measurement
from hwsim.perf.roofline import time_op
from hwsim.profiles.hardware import EfficiencyCurve, HardwareProfile
from validation.suite import _decode_grid, _gemm_grid, _prefill_grid

Ki, Mi = 2**10, 2**20


def shapes(dtypes=("fp32", "bf16")) -> list[tuple[str, dict]]:
    """A sweep shaped like the CPU quick sweep (about 100 shapes over the three op classes)."""
    out = [
        ("gemm", p)
        for p in _gemm_grid(
            dtypes,
            (128, 256, 512, 1024),
            ((4096, 1024), (1024, 4096), (2048, 2048)),
            (1, 8, 32, 128, 512),
        )
    ]
    out += [
        ("attention_prefill", p)
        for p in _prefill_grid(dtypes, ((8, 8, 64), (8, 2, 128)), (128, 512, 1024))
    ]
    out += [
        ("attention_decode", p)
        for p in _decode_grid(dtypes, ((1, 8, 8, 128), (4, 16, 2, 128)), (256, 1024, 4096))
    ]
    out += [
        ("copy", {"bytes": b, "dtype": d}) for d in dtypes for b in (Mi, 4 * Mi, 16 * Mi, 64 * Mi)
    ]
    out += [
        ("norm", {"tokens": t, "hidden": h, "dtype": d})
        for d in dtypes
        for h in (2048, 4096)
        for t in (1, 16, 128, 1024)
    ]
    return out


def with_curves(hw: HardwareProfile, curves: dict[str, dict]) -> HardwareProfile:
    """``hw`` with the efficiency curves of some op classes replaced (the ground truth)."""
    eff = hw.efficiency.model_copy(
        update={c: EfficiencyCurve(source="synthetic ground truth", **v) for c, v in curves.items()}
    )
    return hw.model_copy(update={"efficiency": eff})


def measurements(
    truth: HardwareProfile,
    shape_list: list[tuple[str, dict]],
    *,
    noise: float = 0.03,
    offsets: dict[str, float] | None = None,
    seed: int = 0,
    device: str = "synthetic",
) -> list[Measurement]:
    """One Measurement per shape: ``time_op(truth) * exp(offset[op name/dtype] + N(0, noise))``."""
    rng = np.random.default_rng(seed)
    offsets = offsets or {}
    rows = []
    for kernel, params in shape_list:
        op = kernel_op(kernel, **params)
        t = float(time_op(truth, op).time_s)
        t *= math.exp(offsets.get(f"{op.name}/{op.compute_dtype}", 0.0) + rng.normal(0, noise))
        spread = math.exp(noise)
        params = kernel_params(kernel, params)
        rows.append(
            Measurement(
                kernel,
                f"synthetic.{kernel}",
                params,
                t,
                t / spread,
                t * spread,
                t * (spread - 1 / spread) / 2,
                20,
                1,
                device=device,
            )
        )
    return rows


def write(root, rows: list[Measurement], device: str = "synthetic") -> list:
    """Save synthetic rows in the results layout (stack 'synthetic@1') with sidecars."""
    import json
    from pathlib import Path

    from hwsim.perf.measured import CSV_NAME, write_csv
    from validation.results import METADATA_NAME

    written = []
    for kernel in sorted({r.kernel for r in rows}):
        folder = Path(root) / device / kernel / "synthetic@1"
        written.append(write_csv(folder / CSV_NAME, [r for r in rows if r.kernel == kernel]))
        meta = {
            "device": device,
            "device_name": "synthetic device",
            "stack": "synthetic",
            "date": "2026-01-01T00:00:00+00:00",
            "torch_version": "none",
        }
        (folder / METADATA_NAME).write_text(json.dumps(meta))
    return written
