"""Transfer bands: how far a datasheet-rung prediction is from what other people measured.

A datasheet prediction (a device nobody calibrated) has no calibration residuals of its own.
Its band comes from the published validation set instead (``validation/published``: kernel
throughputs and serving results from papers, engine docs and vendor blogs, none of them
measured here): the p10 and p90 of log(published time / predicted time) over the rows of the
op's group, written to ``transfer_bands.json`` beside this module by
``python -m validation.published_bands --write``. The groups, most specific first
(:func:`op_groups`, :func:`phase_groups`): the kernel class with the rung ('gemm/datasheet'),
the class ('gemm'), every kernel row ('kernel'); for a whole forward pass the serving rows of
the metric that measures that phase ('serving/median_tpot/datasheet', 'serving/median_tpot'
for a decode step), then every serving row ('serving/datasheet', 'serving'). A group with
fewer rows than the file's ``min_rows`` defers to the next.

A phase's band is the whole-model band applied to the phase's time, not the sum of its ops'
bands: the serving rows measure whole forward passes, so they carry whatever correlation the
ops' errors have (issue 15: do not assume the ops move together unless the data says so).
Where op bands are added into a phase band (a calibrated profile's), they combine with the
correlation the file's ``op_correlation`` records (:func:`op_correlation`), estimated from the
TPOT rows by :mod:`validation.op_correlation`.

A fitted curve carries a second transfer band: how far one device's fit was from a sibling
device's measurements (:func:`lodo_factors`, ``lodo_bands.json``, written by
``python -m validation.lodo --write``).

How well such a band holds on a source it was not built from is the held-out coverage
``python -m validation.published_bands`` prints (each source left out in turn); the file
records it per group. The point predictions are never fitted to these rows.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

from hwsim.model.ops import Op

BANDS_PATH = Path(__file__).with_name("transfer_bands.json")
LODO_PATH = Path(__file__).with_name("lodo_bands.json")

# hwsim op class -> the published kernel kind whose rows say how far such an op is off
KIND_OF_CLASS = {"matmul": "gemm", "communication": "allreduce", "elementwise": "bandwidth"}


@cache
def shipped_bands() -> dict[str, Any]:
    """The shipped file (see the module docstring); an empty table if it is missing."""
    try:
        return json.loads(BANDS_PATH.read_text())
    except FileNotFoundError:  # a source checkout before the first --write
        return {"min_rows": 0, "bands": {}}


def op_groups(op: Op, rung: str = "datasheet") -> tuple[str, ...]:
    """The band groups of one op, most specific first (:func:`kind_groups` of its kind)."""
    return kind_groups(kind_of_class(op.op_class), rung)


def kind_of_class(op_class: str) -> str:
    """The published kernel kind whose rows say how far an op of ``op_class`` is off
    (:data:`KIND_OF_CLASS`); 'kernel' (every kernel row) for the rest, e.g. attention, which
    has no published kernel rows of its own."""
    return KIND_OF_CLASS.get(op_class, "kernel")


def kind_groups(kind: str, rung: str = "datasheet") -> tuple[str, ...]:
    """Band groups of a kernel kind, most specific first: the kind with the rung, the kind,
    then every kernel row ('kernel' alone for the kind 'kernel')."""
    if kind == "kernel":
        return ("kernel",)
    return (f"{kind}/{rung}", kind, "kernel")


# a forward pass -> the published serving metric that measures it: a decode step is what a
# TPOT is (little queueing in it); a TTFT also holds the queue the planner and the simulator
# model themselves, so a prefill keeps the band of every serving row
METRIC_OF_PHASE = {"decode": "median_tpot"}


def phase_groups(rung: str = "datasheet", phase: str | None = None) -> tuple[str, ...]:
    """The band groups of a whole forward pass, most specific first: for a decode step the
    TPOT rows with the rung, the TPOT rows; then every serving row with the rung, every
    serving row (:data:`METRIC_OF_PHASE`)."""
    metric = METRIC_OF_PHASE.get(phase or "")
    by_metric = (f"serving/{metric}/{rung}", f"serving/{metric}") if metric else ()
    return (*by_metric, f"serving/{rung}", "serving")


def band_factors(groups: tuple[str, ...]) -> tuple[float, float, str] | None:
    """(exp(p10), exp(p90), group) of the first of ``groups`` with at least the file's
    ``min_rows`` rows (the last listed group with any rows otherwise); None if none has rows.
    Looked up once per table and groups (every op of a forward pass asks)."""
    table = shipped_bands()
    held = _FACTORS.get(groups)
    if held is not None and held[0] is table:
        return held[1]
    factors = _band_factors(table, groups)
    if len(_FACTORS) >= FACTOR_CACHE_SIZE:
        _FACTORS.clear()
    _FACTORS[groups] = (table, factors)  # holding the table: a replaced one never matches
    return factors


FACTOR_CACHE_SIZE = 256
_FACTORS: dict[tuple[str, ...], tuple[dict[str, Any], tuple[float, float, str] | None]] = {}


def _band_factors(
    table: dict[str, Any], groups: tuple[str, ...]
) -> tuple[float, float, str] | None:
    """:func:`band_factors` from ``table``, computed."""
    bands, min_rows = table.get("bands", {}), int(table.get("min_rows", 0))
    present = [g for g in groups if g in bands and bands[g]["rows"] > 0]
    for group in present:
        if bands[group]["rows"] >= min_rows:
            break
    else:
        if not present:
            return None
        group = present[-1]
    band = bands[group]
    return math.exp(band["p10"]), math.exp(band["p90"]), group


@cache
def _lodo_classes() -> dict[str, Any]:
    try:
        return json.loads(LODO_PATH.read_text())["classes"]
    except FileNotFoundError:  # a source checkout before the first --write
        return {}


def lodo_factors(op_class: str) -> tuple[float, float] | None:
    """(exp(p10), exp(p90)) of how far one device's fitted curves of ``op_class`` were from a
    sibling device's measurements (leave one device out, :mod:`validation.lodo`); None where
    no such rows are shipped."""
    band = _lodo_classes().get(op_class)
    return None if band is None else (math.exp(band["p10"]), math.exp(band["p90"]))


def op_correlation() -> float:
    """The correlation of different ops' errors the shipped file records (estimated from the
    published TPOT rows, :mod:`validation.op_correlation`); 1 (errors move together, the widest
    band) where it records none."""
    rho = shipped_bands().get("op_correlation", {}).get("rho")
    return 1.0 if rho is None else float(rho)
