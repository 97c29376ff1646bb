"""``hwsim sweep``: a grid of estimates as one table (CSV or Parquet), one row per point.

    hwsim sweep --model llama-3.1-8b,mistral-7b --hardware h100-sxm,mi300x --tp 1,2 \\
        --batch 1,8,64 --prompt-len 512,4096 --gen-len 128 --out sweep.csv

The grid is models x hardware x layouts (tp x pp x weight dtype x KV dtype) x batch x prompt
length x generated length. Each deployment is priced by one vectorised estimate over its
batch x prompt x gen points; the row of a point carries ``model``, ``hardware`` and ``layout``
(as given), then the columns of :meth:`hwsim.inference.results.Estimate.to_records`, then
``error``: empty, or why that combination cannot run (weights do not fit, tp does not divide
the heads, a context past what the model can run); such a row keeps its inputs and leaves the
results empty, so one infeasible combination never stops the grid.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import typer

from hwsim.cli.common import check_new_file, err_console, fail, handle_errors, parse_int_list
from hwsim.errors import HwsimError
from hwsim.inference.deployment import make_deployment
from hwsim.inference.estimate import estimate_deployment
from hwsim.model.load import load_model
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.loader import load_hardware
from hwsim.safe_write import write_atomic
from hwsim.tables import PARQUET_HINT, columns_of, flatten, to_csv, to_parquet

FORMATS = {".csv": "csv", ".parquet": "parquet"}
# the layout axes of the grid: DeploymentSpec field -> the flag that lists its values
LAYOUT_AXES = ("tp", "pp", "weight_dtype", "kv_dtype")


def _names(text: str, what: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        fail(f"{what}: empty list")
    return list(dict.fromkeys(items))


def _lengths(text: str, what: str, allow_zero: bool = False) -> list[int]:
    """Comma-separated whole numbers (k, M, Ki, Mi suffixes); ``allow_zero``: 0 may appear
    (gen_len 0: prefill only)."""
    values: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if allow_zero and part == "0":
            values.append(0)
        elif part:
            values += parse_int_list(part, what)
    if not values:
        fail(f"{what}: empty list")
    return list(dict.fromkeys(values))


def layouts(axes: dict[str, list[Any]]) -> list[DeploymentSpec]:
    """Every combination of the layout axes given (an axis not given: the spec's default)."""
    given = {name: values for name, values in axes.items() if values}
    names = list(given)
    specs = []
    for combo in itertools.product(*given.values()):
        try:
            specs.append(DeploymentSpec.from_settings(None, **dict(zip(names, combo))))
        except HwsimError as exc:
            fail(str(exc))
    return specs


def grid_records(
    models: list[str],
    hardware: list[str],
    specs: list[DeploymentSpec],
    batch: list[int],
    prompt_len: list[int],
    gen_len: list[int],
    tpot_slo_s: float | None = None,
) -> list[dict[str, Any]]:
    """One record per point of the grid, in grid order (model, hardware, layout, batch,
    prompt, gen; the last fastest). A model or hardware that does not load (an unknown id, a
    malformed file) is the caller's mistake and raises; a combination that cannot run is a
    row with an ``error``."""
    for ref in models:
        load_model(ref)
    for ref in hardware:
        load_hardware(ref)
    b = np.asarray(batch, dtype=float)[:, None, None]
    s = np.asarray(prompt_len, dtype=float)[None, :, None]
    g = np.asarray(gen_len, dtype=float)[None, None, :]
    points = list(itertools.product(batch, prompt_len, gen_len))
    rows: list[dict[str, Any]] = []
    for model, hw, spec in itertools.product(models, hardware, specs):
        head = {"model": model, "hardware": hw, "layout": spec.label}
        try:
            dep = make_deployment(model, hw, spec)
        except HwsimError as exc:  # tp does not divide the heads, pp exceeds the layers, ...
            rows += [_failed(head, spec, p, str(exc)) for p in points]
            continue
        try:
            records = estimate_deployment(dep, b, s, g, tpot_slo_s).to_records()
        except HwsimError:  # some points cannot run: price them one by one to say which
            records = []
            for p in points:
                try:
                    records += estimate_deployment(dep, *p, tpot_slo_s).to_records()
                except HwsimError as exc:
                    records.append(_failed(head, spec, p, str(exc)))
        rows += [r if "error" in r else {**head, **r, "error": None} for r in records]
    return rows


def _failed(
    head: dict[str, Any], spec: DeploymentSpec, point: tuple[int, ...], why: str
) -> dict[str, Any]:
    """The row of a point that cannot run: its model, hardware, layout and inputs, and why."""
    inputs = zip(("config.batch", "config.prompt_len", "config.gen_len"), point)
    return {
        **head,
        **flatten(spec.model_dump(), "config.deployment."),
        **{k: float(v) for k, v in inputs},
        "error": why,
    }


def table_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key, in the order of a priced row (then any others), with ``error`` last."""
    priced = [r for r in rows if r["error"] is None][:1]
    return [c for c in columns_of(priced + rows) if c != "error"] + ["error"]


def check_out(out: Path, force: bool) -> str:
    """The format ``out`` asks for, checked before any work (suffix, pyarrow, overwrite)."""
    kind = FORMATS.get(out.suffix.lower())
    if kind is None:
        fail(f"--out {out}: unknown table type {out.suffix!r}; use .csv or .parquet")
    if kind == "parquet":
        import importlib.util

        missing = [m for m in ("pandas", "pyarrow") if importlib.util.find_spec(m) is None]
        if missing:
            fail(f"--out {out}: Parquet needs {' and '.join(missing)}: {PARQUET_HINT}")
    check_new_file("--out", out, force)
    return str(kind)


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def sweep(
        model: str = typer.Option(..., help="model ids or paths, comma-separated"),
        hardware: str = typer.Option(..., help="hardware ids or paths, comma-separated"),
        tps: str = typer.Option("1", "--tp", help="tensor-parallel degrees, e.g. 1,2,4"),
        pps: str = typer.Option("1", "--pp", help="pipeline-parallel degrees"),
        weight_dtypes: str | None = typer.Option(
            None, "--weight-dtype", help="weight dtypes, e.g. bf16,fp8 (default bf16)"
        ),
        kv_dtypes: str | None = typer.Option(
            None, "--kv-dtype", help="KV-cache dtypes, e.g. bf16,fp8 (default bf16)"
        ),
        batch: str = typer.Option("1", help="batch sizes, e.g. 1,8,64"),
        prompt_len: str = typer.Option("512", help="prompt lengths (k = 1,000), e.g. 512,4k"),
        gen_len: str = typer.Option("128", help="generated lengths (0: prefill only)"),
        tpot_slo_ms: float | None = typer.Option(None, help="TPOT SLO for users per GPU"),
        out: Path | None = typer.Option(
            None,
            help="write the table here: .csv, or .parquet with pyarrow (default: CSV on stdout)",
        ),
        force: bool = typer.Option(False, help="allow --out to replace an existing file"),
    ) -> None:
        """A grid of estimates, one row per model x hardware x layout x batch x prompt x gen
        point; combinations that cannot run are rows with an `error`, not a failure."""
        kind = check_out(out, force) if out is not None else "csv"
        if tpot_slo_ms is not None and not 0 < tpot_slo_ms < float("inf"):
            fail(f"--tpot-slo-ms must be a finite number > 0, got {tpot_slo_ms}")
        axes: dict[str, list[Any]] = dict.fromkeys(LAYOUT_AXES, [])
        axes["tp"] = parse_int_list(tps, "--tp")
        axes["pp"] = parse_int_list(pps, "--pp")
        if weight_dtypes is not None:
            axes["weight_dtype"] = _names(weight_dtypes, "--weight-dtype")
        if kv_dtypes is not None:
            axes["kv_dtype"] = _names(kv_dtypes, "--kv-dtype")
        rows = grid_records(
            _names(model, "--model"),
            _names(hardware, "--hardware"),
            layouts(axes),
            _lengths(batch, "--batch"),
            _lengths(prompt_len, "--prompt-len"),
            _lengths(gen_len, "--gen-len", allow_zero=True),
            tpot_slo_s=tpot_slo_ms / 1e3 if tpot_slo_ms is not None else None,
        )
        columns = table_columns(rows)
        if out is None:
            typer.echo(to_csv(rows, columns), nl=False)
            return
        data = to_csv(rows, columns) if kind == "csv" else to_parquet(rows, columns)
        try:
            write_atomic(out, data)
        except OSError as exc:
            fail(f"--out {out}: cannot write ({exc.strerror or exc})")
        errors = sum(r["error"] is not None for r in rows)
        err_console.print(f"wrote {out}: {len(rows):,} rows ({errors:,} with an error)")
