"""Results as flat tables: records (one dict per row), pandas frames, CSV, Parquet and HTML.

Every result type (``Estimate``, ``ContextSweep``, ``KernelTime``, ``PlanResult``) has
``to_records()`` (a list of flat dicts: dotted keys such as ``latency.ttft_s``, plain Python
values: float, int, bool, str or None), ``to_frame()`` (a pandas DataFrame of those records)
and ``_repr_html_()`` (what a notebook cell shows). The shared logic lives here, below every
layer that has a result, so it knows nothing about them: it turns nested mappings and
broadcasting arrays into rows, and rows into the formats.

pandas (``to_frame``) and pyarrow (Parquet) are optional: ``pip install 'hwsim[notebook]'``.
"""

from __future__ import annotations

import csv
import html
import importlib
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from hwsim.errors import HwsimError
from hwsim.format import fmt_bytes, fmt_count, fmt_flops, fmt_time

MAX_HTML_ROWS = 50  # rows a notebook table shows before "... N more"
INSTALL_HINT = "pip install pandas (or pip install 'hwsim[notebook]')"
PARQUET_HINT = "pip install pyarrow (or pip install 'hwsim[notebook]')"

Record = dict[str, Any]


def plain(value: Any) -> Any:
    """A record value: numpy scalars and 0-d arrays as Python scalars, a list or tuple of
    scalars (a pipeline split) as its items joined by '+' ("16+16"), anything else unchanged."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return "+".join(str(plain(v)) for v in value)
    return value


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> one level of dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def broadcast_records(columns: Mapping[str, Any], limit: int | None = None) -> list[Record]:
    """One record per point of the shape the array values broadcast to (C order: the last
    axis fastest); scalar values repeat on every record. No arrays: one record. ``limit``:
    only the first that many points (a table's head of a large sweep, without the rest)."""
    shapes = [np.shape(v) for v in columns.values() if isinstance(v, np.ndarray)]
    try:
        shape = np.broadcast_shapes(*shapes) if shapes else ()
    except ValueError:
        raise HwsimError(f"columns of shapes {sorted(set(shapes))} do not broadcast") from None
    n = math.prod(shape) if limit is None else min(limit, math.prod(shape))
    lists: dict[str, list[Any]] = {}
    for key, value in columns.items():
        if isinstance(value, np.ndarray):
            lists[key] = np.broadcast_to(value, shape).flat[:n].tolist()
        else:
            lists[key] = [plain(value)] * n
    keys = list(lists)
    return [dict(zip(keys, row)) for row in zip(*lists.values())] if keys else [{}] * n


def columns_of(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key of ``records``, in the order first seen (rows may lack some keys)."""
    seen: dict[str, None] = {}
    for record in records:
        seen.update(dict.fromkeys(record))
    return list(seen)


def _pandas() -> Any:
    try:
        return importlib.import_module("pandas")  # optional: typed as a module, no stubs needed
    except ImportError:
        message = f"to_frame() needs pandas, which is not installed: {INSTALL_HINT}"
        raise ImportError(message) from None


def to_frame(records: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None):
    """A pandas DataFrame of ``records`` (missing keys: None); needs pandas."""
    pd = _pandas()
    cols = list(columns) if columns is not None else columns_of(records)
    return pd.DataFrame([[r.get(c) for c in cols] for r in records], columns=cols)


def broadcast_frame(columns: Mapping[str, Any]):
    """The DataFrame of :func:`broadcast_records` built column by column (no dict per row:
    fast for a sweep of millions of points); needs pandas."""
    pd = _pandas()
    shapes = [np.shape(v) for v in columns.values() if isinstance(v, np.ndarray)]
    shape = np.broadcast_shapes(*shapes) if shapes else ()
    n = math.prod(shape)
    data = {  # a scalar repeats down its column (pandas broadcasts it over the index)
        k: np.broadcast_to(v, shape).ravel() if isinstance(v, np.ndarray) else plain(v)
        for k, v in columns.items()
    }
    return pd.DataFrame(data, index=pd.RangeIndex(n), columns=list(columns))


def csv_cell(value: Any) -> str:
    """How a record value is written to CSV: None -> empty, floats in their shortest exact
    form (``repr``: parses back to the same float), the rest as ``str``."""
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def to_csv(records: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text of ``records``: a header of ``columns`` (default: every key, first seen
    first), then one line per record (missing keys and None: empty cells)."""
    cols = list(columns) if columns is not None else columns_of(records)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(cols)
    for r in records:
        writer.writerow([csv_cell(r.get(c)) for c in cols])
    return buffer.getvalue()


def to_parquet(records: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> bytes:
    """Parquet bytes of ``records``; needs pandas and pyarrow."""
    for name, hint in (("pandas", INSTALL_HINT), ("pyarrow", PARQUET_HINT)):
        try:
            importlib.import_module(name)
        except ImportError:
            message = f"Parquet output needs {name}, which is not installed: {hint}"
            raise HwsimError(message) from None
    cols = list(columns) if columns is not None else columns_of(records)
    mixed = set()  # columns mixing kinds of value (text and numbers): written as text
    for c in cols:
        kinds = {type(r.get(c)) for r in records} - {type(None)}
        if len(kinds) > 1 and not kinds <= {int, float}:
            mixed.add(c)
    rows = [
        {c: str(r[c]) if c in mixed and r.get(c) is not None else r.get(c) for c in cols}
        for r in records
    ]
    frame = to_frame(rows, cols)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


# -- HTML ----------------------------------------------------------------------------------------


def fmt_cell(key: str, value: Any) -> str:
    """A value as a notebook cell shows it, in the unit its key names (``*_s``: time, but
    ``*_per_s`` is a rate; ``*bytes*``: bytes; ``*flops*``: FLOPs;
    ``*_usd``: dollars; other numbers as counts)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        name = key.rsplit(".", 1)[-1]
        if name.endswith("_s") and not name.endswith("_per_s"):
            return fmt_time(value)
        if "bytes" in name:
            return fmt_bytes(value)
        if "flops" in name:
            return fmt_flops(value)
        if name.endswith("_usd") and math.isfinite(value):
            return f"${value:,.2f}"
        if isinstance(value, float) and math.isfinite(value) and 0 < abs(value) < 0.1:
            return f"{value:.3g}"
        return fmt_count(value)
    return str(value)


def html_table(
    records: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    caption: str | None = None,
    max_rows: int = MAX_HTML_ROWS,
    notes: Sequence[str] = (),
    total: int | None = None,
) -> str:
    """An HTML ``<table>`` of ``records`` (``columns``: which keys, default all), at most
    ``max_rows`` rows with a line saying how many were left out of ``total`` (default: the
    records given); ``notes``: lines below."""
    cols = list(columns) if columns is not None else columns_of(records)
    out = ["<table>"]
    if caption:
        out.append(f"<caption style='text-align:left'><b>{html.escape(caption)}</b></caption>")
    out.append("<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>")
    for r in records[:max_rows]:
        cells = []
        for c in cols:
            value = r.get(c)
            align = " style='text-align:right'" if isinstance(value, (int, float)) else ""
            cells.append(f"<td{align}>{html.escape(fmt_cell(c, value))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    total = len(records) if total is None else total
    if total > min(max_rows, len(records)):
        out.append(
            f"<p><i>first {min(max_rows, len(records))} of {total:,} rows shown; to_frame() "
            "or to_records() has them all</i></p>"
        )
    out += [f"<p>{html.escape(line)}</p>" for line in notes]
    return "\n".join(out)
