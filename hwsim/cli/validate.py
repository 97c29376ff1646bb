"""``hwsim validate``: predicted vs measured for every measured kernel, with plots; or, with
``--published [DIR]``, hwsim's prediction for every row of the published, independent
validation set (:mod:`validation.published_eval`) against the published number.

Needs no torch: it reads measurement files and prices them with :mod:`hwsim.perf.kernels`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
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
        published_dir: Path | None = typer.Argument(
            None,
            metavar="DIR",
            show_default=False,
            help="with --published: the folder of published rows (default validation/published)",
        ),
        hardware: str | None = typer.Option(
            None, "--hardware", help="hardware id or YAML path (required without --published)"
        ),
        measurements: Path | None = typer.Option(
            None,
            "--measurements",
            help="measurements directory, e.g. validation/results/<device> (required without "
            "--published)",
        ),
        published: bool = typer.Option(
            False,
            "--published",
            help="predict every row of the published validation set (or of DIR) and compare",
        ),
        datasheet: bool = typer.Option(
            False,
            "--datasheet",
            help="with --published: price with each row's own profile, never its calibrated "
            "sibling",
        ),
        max_requests: int = typer.Option(
            1000, "--max-requests", min=1, help="with --published: requests simulated per row"
        ),
        plots: Path | None = typer.Option(
            None, "--plots", help="write scatter and roofline PNGs here"
        ),
        heldout_only: bool = typer.Option(False, "--heldout-only", help="list held-out rows only"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
    ) -> None:
        """Per-kernel predicted vs measured, error %, median and p90 error per op class; with
        --published, predicted vs published for every published row and per-group errors."""
        from hwsim.profiles.loader import load_hardware

        if published:
            given = [
                name
                for name, value in (
                    ("--hardware", hardware),
                    ("--measurements", measurements),
                    ("--plots", plots),
                    ("--heldout-only", heldout_only or None),
                )
                if value is not None
            ]
            if given:
                raise HwsimError(
                    f"--published takes no {', '.join(given)}: it prices each row on the "
                    "row's own hardware"
                )
            _published(published_dir, not datasheet, max_requests, json_out)
            return
        missing = [
            name
            for name, value in (("--hardware", hardware), ("--measurements", measurements))
            if value is None
        ]
        if missing:
            raise HwsimError(
                f"missing {' and '.join(missing)} (required unless --published is given)"
            )
        if published_dir is not None:
            raise HwsimError(f"unexpected argument {published_dir}: a DIR goes with --published")
        if datasheet or max_requests != 1000:
            raise HwsimError("--datasheet and --max-requests go with --published")
        assert hardware is not None and measurements is not None

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
            console.print(
                "(uncalibrated profile: predictions are the datasheet rung, datasheet peaks "
                "times the profile's stated efficiencies; nothing fitted, no band)"
            )
        for p in written:
            console.print(f"wrote {p}")


def _published(folder: Path | None, calibrated: bool, max_requests: int, json_out: bool) -> None:
    try:
        from validation import published_eval
        from validation.published_set import PublishedSetError
    except ImportError as exc:
        raise HwsimError(f"the validation package is not importable: {exc}") from None
    try:
        out = published_eval.report(folder, calibrated=calibrated, max_requests=max_requests)
    except PublishedSetError as exc:
        raise HwsimError(str(exc)) from None
    if json_out:
        print_json(out)
        return
    _print_published_rows(out["rows"])
    _print_published_summary(out["summary"])
    _print_transfer_bands(out.get("transfer_bands"))
    settings, runtime = out["settings"], out["runtime"]
    profiles = "calibrated sibling where shipped" if calibrated else "each row's as named"
    console.print(
        f"error = predicted / published - 1; rung: the kernel rung, or for serving whether the "
        f"profile is calibrated. Profiles: {profiles}; "
        f"at most {settings['max_requests']} simulated requests per serving row. "
        f"{settings['sharegpt_lengths']}. {escape(out['band_note'])} "
        f"{runtime['wall_s']:.1f} s wall, {runtime['cpu_s']:.1f} s CPU.",
        highlight=False,
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.4g}"


def _band(r: dict) -> str:
    """'low-high' with a mark for where the published value falls, or '-' without a band."""
    low, high = r.get("low"), r.get("high")
    if low is None or high is None:
        return "-"
    mark = "in" if low <= r["published"] <= high else ("below" if r["published"] < low else "above")
    return f"{_num(low)}-{_num(high)} ({mark})"


def _print_published_rows(rows: list[dict]) -> None:
    table = Table(title="predicted vs published (reserved for evaluation: nothing fitted to it)",
                  title_justify="left")  # fmt: skip
    table.add_column("row", overflow="fold", ratio=1)
    table.add_column("metric", overflow="fold")
    for col in ("published", "predicted", "error", "p10-p90"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("rung / status", overflow="fold")
    for r in rows:
        ok = r["status"] == "predicted"
        where = f"{r['rung']} ({r['profile']})" if ok else r["status"]
        table.add_row(
            r["id"],
            f"{r['metric']} [{r['unit']}]",
            _num(r["published"]),
            _num(r["predicted"]),
            "-" if r["error"] is None else f"{r['error']:+.0%}",
            _band(r),
            where,
            style=None if ok else "dim",
        )
    console.print(table)


def _print_published_summary(summary: list[dict]) -> None:
    table = Table(
        title="|error| and p10-p90 band coverage per group (over the predicted rows)",
        title_justify="left",
        caption="band: rows with a p10-p90 band (calibrated or measured rung); in band: share "
        "whose published value lies in it (below / above); width: median high / low - 1; "
        "no band: not scored here, datasheet-rung predictions (their transfer band is built "
        "from these rows: held-out coverage in the table below) and serving predictions "
        "(simulated point values)",
        caption_justify="left",
    )
    cols = ("group", "n", "predicted", "median", "p90", "band", "in band", "width", "no band")
    for col in cols:
        table.add_column(col, justify="left" if col == "group" else "right")
    for s in summary:
        n_band = s.get("n_band", 0)
        table.add_row(
            s["group"],
            str(s["n"]),
            f"{s['n_predicted']} ({s['share_predicted']:.0%})",
            _pct(s["median_abs_error"]),
            _pct(s["p90_abs_error"]),
            str(n_band),
            "-"
            if not n_band
            else f"{_pct(s['band_coverage'])} ({s['n_below_band']} / {s['n_above_band']})",
            _pct(s.get("median_band_width")),
            str(s.get("n_no_band", 0)),
            style="bold" if s["group"] == "all" or " x " not in s["group"] else None,
        )
    console.print(table)


def _print_transfer_bands(bands: dict | None) -> None:
    """Coverage of bands built from other sources' residuals, each source held out in turn."""
    if not bands:
        return
    table = Table(
        title="p10-p90 transfer bands, each source held out (validation.published_bands)",
        title_justify="left",
        caption="shipped: the band hwsim gives a datasheet prediction (hwsim.perf.transfer: "
        "p10/p90 at plotting positions of the other sources' rows); unseen source: random "
        "effects over sources, for contrast (wider)",
        caption_justify="left",
    )
    for col in ("group", "rows", "sources", "shipped", "width", "unseen source", "width "):
        table.add_column(col, justify="left" if col == "group" else "right")
    unseen = {t["group"]: t for t in bands["unseen_source"]}
    for t in bands["pooled"]:
        u = unseen.get(t["group"], {})
        table.add_row(
            t["group"],
            str(t["banded"]),
            str(t["sources"]),
            _pct(t["coverage"]),
            _pct(t["median_width"]),
            _pct(u.get("coverage")),
            _pct(u.get("median_width")),
        )
    console.print(table)


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
