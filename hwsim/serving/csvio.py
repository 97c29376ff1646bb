"""Read the small CSV inputs of the traffic model (request traces, length histograms).

Every error is a :class:`~hwsim.errors.ProfileError` naming the file, the line (1-based,
counting the header) and the column (name and 1-based position), so a bad cell in a
million-line trace can be found and fixed.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hwsim.errors import ProfileError
from hwsim.safe_read import read_text

MAX_CSV_BYTES = 256 * 1024 * 1024  # a request trace of a few million rows

# A cell parser returns the parsed value or raises ValueError with a short reason.
CellParser = Callable[[str], float]


def positive_int(cell: str) -> float:
    """An integer >= 1 (``"12"``; ``"12.0"`` is accepted, ``"12.5"`` is not)."""
    value = float(cell)
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise ValueError("expected an integer >= 1")
    return value


def non_negative_float(cell: str) -> float:
    """A finite number >= 0."""
    value = float(cell)
    if not math.isfinite(value) or value < 0:
        raise ValueError("expected a finite number >= 0")
    return value


def read_columns(
    path: str | Path, columns: Sequence[tuple[str, CellParser]]
) -> dict[str, np.ndarray]:
    """Read a CSV whose header is exactly the given column names (any order).

    Returns one float64 array per column. Blank lines are skipped; there must be at least one
    data row.
    """
    path = Path(path)
    wanted = [name for name, _ in columns]
    parsers = dict(columns)
    text = read_text(path, "CSV file", max_bytes=MAX_CSV_BYTES)
    try:
        return _parse_columns(path, csv.reader(io.StringIO(text, newline="")), wanted, parsers)
    except csv.Error as exc:
        raise ProfileError(f"not a readable CSV file: {exc}", file=str(path)) from None


def _parse_columns(path: Path, reader, wanted: list[str], parsers) -> dict[str, np.ndarray]:
    """The rows of a CSV (already decoded) as one float64 array per wanted column."""
    header = next(reader, None)
    if header is None:
        raise ProfileError(
            f"line 1: empty file; expected header {','.join(wanted)}", file=str(path)
        )
    header = [h.strip() for h in header]
    if sorted(header) != sorted(wanted):
        raise ProfileError(
            f"line 1: header {','.join(header)!s} must name exactly the columns {','.join(wanted)}",
            file=str(path),
        )
    order = [(i, name, parsers[name]) for i, name in enumerate(header)]
    values: list[list[float]] = [[] for _ in order]
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ProfileError(
                f"line {line}: {len(row)} cells, expected {len(header)} ({','.join(header)})",
                file=str(path),
            )
        for slot, (i, name, parse) in enumerate(order):
            cell = row[i].strip()
            try:
                values[slot].append(parse(cell))
            except ValueError as exc:
                reason = str(exc) if "expected" in str(exc) else "not a number"
                raise ProfileError(
                    f"line {line}, column {i + 1} '{name}': {cell!r} is invalid ({reason})",
                    file=str(path),
                ) from None
    if not values[0]:
        raise ProfileError("no data rows after the header", file=str(path))
    return {
        name: np.asarray(values[slot], dtype=np.float64) for slot, (_, name, _) in enumerate(order)
    }


def read_trace(path: str | Path) -> dict[str, np.ndarray]:
    """A request trace: columns arrival_s (s, >= 0), prompt_tokens, output_tokens (ints >= 1)."""
    cols = read_columns(
        path,
        [
            ("arrival_s", non_negative_float),
            ("prompt_tokens", positive_int),
            ("output_tokens", positive_int),
        ],
    )
    return {
        "arrival_s": cols["arrival_s"],
        "prompt_tokens": cols["prompt_tokens"].astype(np.int64),
        "output_tokens": cols["output_tokens"].astype(np.int64),
    }


def read_histogram(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """An empirical histogram: columns value (integer >= 1) and weight (>= 0, not all zero).

    Returns (values as int64, probabilities summing to 1).
    """
    cols = read_columns(path, [("value", positive_int), ("weight", non_negative_float)])
    weights = cols["weight"]
    total = weights.sum()
    if not total > 0:
        raise ProfileError("column 'weight': all weights are zero", file=str(path))
    return cols["value"].astype(np.int64), weights / total
