"""``hwsim validate``: predicted vs measured for every measured kernel, with plots.

Needs no torch: it reads measurement files and prices them with :mod:`hwsim.perf.kernels`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from hwsim.cli.common import console, handle_errors, print_json
from hwsim.errors import HwsimError
from hwsim.format import fmt_range, fmt_time


def _pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def validate(
        hardware: str = typer.Option(..., "--hardware", help="hardware id or YAML path"),
        measurements: Path = typer.Option(
            ..., "--measurements", help="measurements directory (e.g. validation/results/<device>)"
        ),
        plots: Path | None = typer.Option(
            None, "--plots", help="write scatter and roofline PNGs here"
        ),
        heldout_only: bool = typer.Option(False, "--heldout-only", help="list held-out rows only"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    ) -> None:
        """Per-kernel predicted vs measured, error %, median and p90 error per op class."""
        from hwsim.profiles.loader import load_hardware

        try:
            from validation import report, results
        except ImportError as exc:
            raise HwsimError(f"the validation package is not importable: {exc}") from None

        hw = load_hardware(hardware)
        measured, metadata = results.load(measurements)
        rows = report.compare(hw, measured)
        summary = report.summarise(rows)
        devices = sorted({m["device_name"] for m in metadata.values()})
        written = []
        if plots is not None:
            title = f"{hw.id} vs {', '.join(devices)}"
            written.append(report.plot_scatter(rows, plots / "predicted_vs_measured.png", title))
            written.append(report.plot_roofline(rows, hw, plots / "roofline.png", title))
        if json_out:
            print_json(
                {
                    "hardware": hw.id,
                    "devices": devices,
                    "summary": summary,
                    "rows": [r.to_dict() for r in rows],
                    "plots": [str(p) for p in written],
                }
            )
            return
        _print_rows([r for r in rows if r.heldout or not heldout_only], hw.id)
        _print_summary(summary)
        if hw.calibration is None:
            console.print("(uncalibrated profile: predictions are the roofline, a lower bound)")
        for p in written:
            console.print(f"wrote {p}")


def _print_rows(rows, hw_id: str) -> None:
    from validation.report import shape_label

    table = Table(
        title=f"predicted ({hw_id}) vs measured",
        title_justify="left",
        caption="* held out of calibration: an honest accuracy estimate",
        caption_justify="left",
    )
    table.add_column("kernel shape [implementation]", overflow="fold", ratio=1)
    for col in ("measured", "predicted", "error", "p10-p90", "rung"):
        table.add_column(
            col, justify="left" if col in ("p10-p90", "rung") else "right", no_wrap=True
        )
    for r in rows:
        table.add_row(
            f"{'*' if r.heldout else ''}{r.kernel} {shape_label(r.params)} [{r.variant}]",
            fmt_time(r.measured_s),
            fmt_time(r.predicted_s),
            f"{r.error:+.0%}",
            fmt_range(r.low_s, r.high_s),
            r.rung,
        )
    console.print(table)


def _print_summary(summary: dict) -> None:
    table = Table(
        title="absolute error per op class (held: shapes calibration never saw)",
        title_justify="left",
        caption="scored: the fastest implementation of each shape",
        caption_justify="left",
    )
    for col in ("class", "n", "median", "p90", "held n", "held median", "held p90", "held in band"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, s in sorted(summary.items(), key=lambda kv: kv[0] == "all"):
        a, h = s["all"], s["heldout"]
        table.add_row(
            name,
            str(a["n"]),
            _pct(a.get("median_abs_error")),
            _pct(a.get("p90_abs_error")),
            str(h["n"]),
            _pct(h.get("median_abs_error")),
            _pct(h.get("p90_abs_error")),
            _pct(h.get("band_coverage")),
            style="bold" if name == "all" else None,
        )
    console.print(table)
