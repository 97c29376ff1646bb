"""Predict every row of the published, independent validation set and compare (``hwsim
validate --published``).

The rows (``validation/published/*.yaml``, loaded by :mod:`validation.published_set`) are
numbers other people measured and published. They are **reserved for evaluation**: this module
only predicts and compares; nothing here fits, tunes or adjusts any hwsim parameter or profile.

Each row is priced through hwsim's public paths, for exactly the workload the row states:

- ``gemm``: ``hwsim.kernel_time(hw, "gemm", m, n, k, dtype)``; TFLOP/s = 2 m n k / time.
  ``k`` is the reduction dimension. For the stas00 mamf-finder rows that is the script's own
  convention: its ``benchmark_mm`` builds ``A = randn(m, k)`` and ``B = randn(n, k).t()`` and
  its ``--k`` help reads "The shared (reduction) dimension" (stas00/ml-engineering,
  ``compute/accelerator/benchmarks/mamf-finder.py``, the cache-resetting version that reports
  the mean over 100 iterations after 50 warmups, which is the version the v2 tables used).
  The mag-/gpu_benchmark rows already store the middle number as k. cuBLASLt and
  hipblaslt-bench m/n/k put the reduction in k too.
- ``bandwidth``: the ``copy`` kernel. BabelStream counts the bytes each kernel moves as arrays
  of ``ARRAY_SIZE`` elements: Copy ``c[i] = a[i]`` moves 2 arrays (one read, one write), Triad
  ``a[i] = b[i] + s * c[i]`` moves 3 (two reads, one write), and the rate is those bytes over
  the kernel time. The defaults are ``ARRAY_SIZE = 2^25`` ("Default size of 2^25") and
  decimal MB/s "as per STREAM" (UoB-HPC/BabelStream ``src/main.cpp``). hwsim's copy kernel of
  ``bytes`` reads and writes ``bytes`` each, so a BabelStream kernel that moves A arrays is
  priced as a copy of A/2 arrays' worth of bytes and reported as A arrays over that time.
- ``allreduce``: the ``all_reduce`` kernel at the row's message size and rank count. nccl-tests
  (NVIDIA/nccl-tests ``doc/PERFORMANCE.md``) defines algbw = S / t and, for all-reduce,
  busbw = algbw * 2 (n - 1) / n. stas00's all_reduce_bench.py reports busbw the same way. With
  more ranks than the profile's ``devices_per_node``, hwsim prices a ring over the profile's
  inter-node link.
- ``serving``: :func:`hwsim.simulate` (the planner's serving simulator) with the row's model,
  hardware, tp, dtype, the engine settings the row states, and its client mode: request rate
  -> Poisson arrivals at that rate; fixed concurrency -> closed-loop clients (``arrivals:
  {kind: concurrency}``, where this hwsim has it); offline / fixed batch -> every request at
  t = 0 (a trace).
  The vLLM launch flags a row's notes quote (``--kv-cache-dtype``, ``--gpu-memory-utilization``,
  ``--max-num-batched-tokens``, ``--max-num-seqs``, ``--enable-chunked-prefill``) become the
  matching deployment settings. The row's engine picks the deployment's ``runtime:`` section
  (:mod:`hwsim.profiles.runtime`: multi-step scheduling, host overheads, CUDA graphs, each
  engine's sourced defaults); the runtime flags its notes quote for that engine
  (vLLM ``--num-scheduler-steps``, ``--enforce-eager``; SGLang ``--disable-cuda-graph``)
  override the defaults. A ShareGPT row prices fixed lengths at the paper's means
  below, except that a row's ``mean_output_len_tokens`` (the run's own mean, from the
  source's numbers) replaces the output mean.
  At most ``max_requests`` requests (default 1000) are simulated per row. The metrics follow
  sglang.bench_serving / vLLM benchmark_serving: median TTFT, and median TPOT where TPOT =
  (e2e - TTFT) / (output tokens - 1) over requests with more than one output token. Output
  throughput = output tokens / (first arrival to last finish); "input plus output" throughput
  counts prompt tokens too.

Every prediction names what priced it: the kernel rung (``KernelTime.rung``) or, for a
simulation, whether the hardware profile is calibrated or datasheet. Rows hwsim cannot
express are kept, with status ``not predictable: <reason>``.

Band coverage: where the kernel rung that priced a row gives a p10-p90 band (``calibrated``:
the calibration's residual band; ``measured``: the measurement's spread), the band becomes the
row's unit (``low``/``high``: the rate at the slow and the fast edge) and the row is counted
inside, below or above it (:func:`band_coverage`, per group). A datasheet-rung prediction has
no band today, nor has a serving row (the simulator's medians are point values): they count as
"no band" with the reason in ``band``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import HwsimError, UnknownProfileError
from hwsim.profiles.hardware import HardwareProfile
from validation.published_prediction import (
    NO_BAND_DATASHEET,
    SEED,
    SHAREGPT_LENGTHS,
    SHAREGPT_SOURCE,
    NotPredictable,
    Prediction,
    _dtype,
)
from validation.published_serving import (
    _serving,
)
from validation.published_set import PublishedRow, load_published

__all__ = [
    "BABELSTREAM_ARRAY_SIZE",
    "NO_BAND_DATASHEET",
    "SHAREGPT_LENGTHS",
    "Prediction",
    "algbw_bytes_per_s",
    "babelstream_bytes",
    "band_coverage",
    "busbw_bytes_per_s",
    "evaluate",
    "evaluate_row",
    "gemm_tflops",
    "report",
    "summarise",
]

DEFAULT_MAX_REQUESTS = 1000

# BabelStream (UoB-HPC/BabelStream src/main.cpp): "Default size of 2^25" elements per array;
# bytes moved per kernel = arrays touched * sizeof(T) * ARRAY_SIZE (Copy/Mul 2, Add/Triad 3).
BABELSTREAM_ARRAY_SIZE = 2**25
BABELSTREAM_ARRAYS = {"copy": 2, "mul": 2, "add": 3, "triad": 3, "nstream": 4}
ELEMENT_BYTES = {"fp64": 8, "fp32": 4, "bf16": 2, "fp16": 2}


# -- unit conversions --------------------------------------------------------------------
def gemm_tflops(m: int, n: int, k: int, time_s: float) -> float:
    """TFLOP/s of a GEMM of 2 m n k FLOPs that took ``time_s``."""
    return 2.0 * m * n * k / time_s / 1e12


def babelstream_bytes(operation: str, element_bytes: int, array_size: int) -> int:
    """Bytes BabelStream counts for one kernel: arrays touched * element bytes * array size."""
    return BABELSTREAM_ARRAYS[operation] * element_bytes * array_size


def algbw_bytes_per_s(size_bytes: float, time_s: float) -> float:
    """nccl-tests algorithm bandwidth: S / t."""
    return size_bytes / time_s


def busbw_bytes_per_s(size_bytes: float, time_s: float, ranks: int) -> float:
    """nccl-tests all-reduce bus bandwidth: algbw * 2 (n - 1) / n."""
    return algbw_bytes_per_s(size_bytes, time_s) * 2.0 * (ranks - 1) / ranks


_RATE_SCALE = {"TB/s": 1e12, "GB/s": 1e9, "TFLOP/s": 1e12}


# -- hardware ----------------------------------------------------------------------------
def _hardware(row: PublishedRow, calibrated: bool) -> HardwareProfile:
    """The row's profile, or its shipped ``<id>-calibrated`` sibling when there is one."""
    from hwsim.profiles.loader import load_hardware

    if row.hardware_profile is None:
        raise NotPredictable("no hwsim hardware profile for this hardware")
    if calibrated:
        try:
            return load_hardware(f"{row.hardware_profile}-calibrated")
        except UnknownProfileError:
            pass
    return load_hardware(row.hardware_profile)


def _rate_band(out: Prediction, t: Any, work: float) -> None:
    """The band of a rate ``work / time`` from a kernel time's p10-p90 band: the slow edge
    (high_s) gives the low rate. Only a calibrated or measured rung has a band; a zero-width
    band (an op class the calibration did not measure, communication) counts as none."""
    if t.rung in ("calibrated", "measured") and t.high_s > t.low_s > 0:
        out.low, out.high = work / t.high_s, work / t.low_s
    elif t.rung in ("calibrated", "measured"):
        out.band = f"no band: the {t.rung} rung gives a zero-width band for this op"
    else:
        out.band = NO_BAND_DATASHEET


def _gemm(row: PublishedRow, hw: HardwareProfile, out: Prediction) -> None:
    import hwsim

    w = row.workload
    if not (w.m and w.n and w.k):
        raise NotPredictable("GEMM shape (m, n, k) not stated")
    if row.unit != "TFLOP/s":
        raise NotPredictable(f"unit {row.unit} is not a GEMM rate")
    dtype = _dtype(w.dtype, "bf16")
    t = hwsim.kernel_time(hw, "gemm", m=w.m, n=w.n, k=w.k, dtype=dtype)
    out.predicted, out.rung = gemm_tflops(w.m, w.n, w.k, t.time_s), t.rung
    _rate_band(out, t, 2.0 * w.m * w.n * w.k / 1e12)


def _bandwidth(row: PublishedRow, hw: HardwareProfile, out: Prediction) -> None:
    import hwsim

    w = row.workload
    op = (w.operation or "").lower().removeprefix("babelstream").strip()
    if "babelstream" not in row.metric or op not in BABELSTREAM_ARRAYS:
        raise NotPredictable(f"not a BabelStream kernel: {w.operation!r}")
    element = ELEMENT_BYTES.get(w.dtype or "fp64")
    if element is None:
        raise NotPredictable(f"dtype {w.dtype!r}: element size unknown")
    moved = babelstream_bytes(op, element, BABELSTREAM_ARRAY_SIZE)
    # hwsim's copy of B bytes moves 2 B; it has no fp64, so the same bytes as fp32 elements
    t = hwsim.kernel_time(hw, "copy", bytes=moved // 2, dtype="fp32")
    out.predicted = moved / t.time_s / _RATE_SCALE[row.unit]
    out.rung = t.rung
    _rate_band(out, t, moved / _RATE_SCALE[row.unit])
    out.notes.append(
        f"BabelStream default array 2^25 x {element} B; {op} moves "
        f"{BABELSTREAM_ARRAYS[op]} arrays; priced as an hwsim copy of the same bytes"
    )


def _allreduce(row: PublishedRow, hw: HardwareProfile, out: Prediction) -> None:
    import hwsim

    w = row.workload
    if w.message_size_bytes is None:
        raise NotPredictable(f"message size not stated (operation: {w.operation!r})")
    ranks = row.num_devices
    per_node = int(hw.interconnect.devices_per_node.value)
    nodes = w.nodes or 1
    if nodes > 1 and hw.interconnect.inter_node is None:
        raise NotPredictable(f"{hw.id} has no inter-node link")
    if ranks > nodes * per_node:
        raise NotPredictable(f"{ranks} ranks on {nodes} node(s) of {per_node} devices")
    if nodes > 1 and ranks <= per_node:
        raise NotPredictable(
            f"{ranks} ranks over {nodes} nodes: hwsim picks the link by rank count only"
        )
    if row.unit != "GB/s":
        raise NotPredictable(f"unit {row.unit} is not a bandwidth")
    t = hwsim.kernel_time(hw, "all_reduce", bytes=w.message_size_bytes, ranks=ranks)
    size = float(w.message_size_bytes)
    if "busbw" in row.metric:
        value = busbw_bytes_per_s(size, t.time_s, ranks)
    elif "algbw" in row.metric:
        value = algbw_bytes_per_s(size, t.time_s)
    else:
        raise NotPredictable(f"metric {row.metric!r} is neither busbw nor algbw")
    out.predicted, out.rung = value / 1e9, t.rung
    _rate_band(out, t, value / 1e9 * t.time_s)
    link = "inter-node" if ranks > per_node else "intra-node"
    out.notes.append(f"ring over the profile's {link} link, {ranks} ranks")


# -- driver ------------------------------------------------------------------------------
def evaluate_row(
    row: PublishedRow, *, calibrated: bool = True, max_requests: int = DEFAULT_MAX_REQUESTS
) -> Prediction:
    """hwsim's prediction for one published row (never raises for an inexpressible row: its
    status says why)."""
    out = Prediction(
        id=row.id,
        kind=row.kind,
        hardware=row.hardware_profile,
        engine=row.engine,
        metric=row.metric,
        unit=row.unit,
        published=row.value,
    )
    try:
        hw = _hardware(row, calibrated)
        out.profile = hw.id
        if row.kind == "gemm":
            _gemm(row, hw, out)
        elif row.kind == "bandwidth":
            _bandwidth(row, hw, out)
        elif row.kind == "allreduce":
            _allreduce(row, hw, out)
        elif row.kind == "serving":
            _serving(row, hw, out, max_requests)
        else:
            raise NotPredictable(f"no harness for kind {row.kind!r}")
    except (NotPredictable, HwsimError) as exc:
        out.predicted, out.rung, out.status = None, None, f"not predictable: {exc}"
        out.low = out.high = out.band = None
        return out
    if out.predicted is None or not math.isfinite(out.predicted) or out.predicted <= 0:
        out.status = f"not predictable: prediction {out.predicted!r}"
        out.predicted = out.low = out.high = out.band = None
        return out
    out.error = out.predicted / out.published - 1.0
    return out


def evaluate(
    rows: list[PublishedRow] | None = None,
    folder: str | Path | None = None,
    *,
    calibrated: bool = True,
    max_requests: int = DEFAULT_MAX_REQUESTS,
) -> list[Prediction]:
    """Predictions for ``rows`` (default: every row in ``folder``, default the shipped set)."""
    rows = load_published(folder) if rows is None else rows
    return [evaluate_row(r, calibrated=calibrated, max_requests=max_requests) for r in rows]


def band_coverage(preds: list[Prediction]) -> dict[str, Any]:
    """Over the predicted rows: how many have a p10-p90 band, how many of those hold the
    published value in [low, high] (and how many fall below or above), the coverage share and
    the median relative band width high / low - 1; rows without a band are counted apart."""
    done = [p for p in preds if p.ok]
    banded = [p for p in done if p.in_band is not None]
    inside = sum(1 for p in banded if p.in_band)
    below = sum(1 for p in banded if p.low is not None and p.published < p.low)
    widths = [p.high / p.low - 1.0 for p in banded if p.low and p.high]
    return {
        "n_band": len(banded),
        "n_no_band": len(done) - len(banded),
        "n_in_band": inside,
        "n_below_band": below,
        "n_above_band": len(banded) - inside - below,
        "band_coverage": inside / len(banded) if banded else None,
        "median_band_width": float(np.median(widths)) if widths else None,
    }


def _stats(preds: list[Prediction]) -> dict[str, Any]:
    errs = np.array([abs(p.error) for p in preds if p.ok and p.error is not None])
    return {
        "n": len(preds),
        "n_predicted": int(errs.size),
        "share_predicted": errs.size / len(preds) if preds else math.nan,
        "median_abs_error": float(np.median(errs)) if errs.size else None,
        "p90_abs_error": float(np.percentile(errs, 90)) if errs.size else None,
        **band_coverage(preds),
    }


def summarise(preds: list[Prediction]) -> list[dict[str, Any]]:
    """Per group (kind x hardware, kind x engine for serving, each kind, all): n, the share
    predicted, median and p90 of |predicted / published - 1| over the predicted rows, and the
    p10-p90 band coverage (:func:`band_coverage`)."""
    groups: dict[str, list[Prediction]] = {}
    for p in preds:
        groups.setdefault(f"{p.kind} x {p.hardware}", []).append(p)
    for p in preds:
        if p.kind == "serving":
            groups.setdefault(f"serving x {p.engine}", []).append(p)
    for p in preds:
        groups.setdefault(p.kind, []).append(p)
    groups["all"] = list(preds)
    return [{"group": name, **_stats(members)} for name, members in groups.items()]


BAND_NOTE = (
    "band: the p10-p90 band of a calibrated or measured kernel rung, as the row's unit; "
    "coverage = share of the rows with a band whose published value lies in [low, high]; "
    "width = median high / low - 1. A datasheet-rung prediction's band is the transfer band "
    "built from these very rows (hwsim.perf.transfer), so it is not scored here (its held-out "
    "coverage, each source left out, is the transfer-band table); the serving simulator gives "
    "a point value: those rows count as 'no band'."
)


def report(
    folder: str | Path | None = None,
    *,
    calibrated: bool = True,
    max_requests: int = DEFAULT_MAX_REQUESTS,
) -> dict[str, Any]:
    """The whole comparison as one JSON-able object: settings, rows, summary, runtime."""
    rows = load_published(folder)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    preds = evaluate(rows, calibrated=calibrated, max_requests=max_requests)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "settings": {
            "folder": str(folder) if folder is not None else "validation/published",
            "calibrated_profiles": calibrated,
            "max_requests": max_requests,
            "seed": SEED,
            "sharegpt_lengths": SHAREGPT_SOURCE,
        },
        "rows": [p.to_dict() for p in preds],
        "summary": summarise(preds),
        "not_predictable": [
            {"id": p.id, "reason": p.status.removeprefix("not predictable: ")}
            for p in preds
            if not p.ok
        ],
        "band_note": BAND_NOTE,
        "transfer_bands": _transfer_bands(preds, rows),
        "runtime": {"wall_s": wall, "cpu_s": cpu},
    }


def _transfer_bands(preds: list[Prediction], rows: list[PublishedRow]) -> dict[str, Any]:
    """Held-out-by-source coverage of bands built from the other sources' residuals
    (:mod:`validation.published_bands`): for an unseen source, and the plain p10/p90."""
    from validation.published_bands import coverage_table, held_out_bands, residuals

    res = residuals(preds, {r.id: r for r in rows})
    return {
        "unseen_source": coverage_table(held_out_bands(res, "sources")),
        "pooled": coverage_table(held_out_bands(res, "pooled")),
    }
