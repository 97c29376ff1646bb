"""``hwsim calibrate``: measure this device, fit a profile's efficiency curves, write a new
profile YAML that records what it was calibrated from and its held-out error.

Imports the ``validation`` package (and torch) only when run.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from hwsim.cli.common import console, err_console, handle_errors, print_json
from hwsim.errors import HwsimError
from hwsim.profiles.device_match import profile_for_device


def import_validation():
    """The validation package, or a clear error naming what to install."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise HwsimError(
            "measuring needs torch: pip install 'hwsim[validation]' (or torch itself)"
        ) from None
    try:
        import validation.suite  # noqa: F401
    except ImportError as exc:
        raise HwsimError(f"the validation package is not importable: {exc}") from None
    import validation

    return validation


def profile_id_for(out: Path) -> str:
    from hwsim.profiles.loader import shipped_ids
    from validation.harness import slugify

    pid = slugify(out.stem)
    return f"{pid}-calibrated" if pid in shipped_ids("hardware") else pid


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def calibrate(
        out: Path = typer.Option(
            ..., "--out", help="calibrated profile YAML to write (a new file)"
        ),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
        quick: bool = typer.Option(
            False, "--quick", help="short sweep (~1 min on a busy 2-core CPU; adaptive repeats)"
        ),
        measurements_dir: Path = typer.Option(
            Path("validation/results"),
            "--measurements-dir",
            help="where measurements are written (<dir>/<device>/<kernel>/<stack>@<version>/)",
        ),
        base_profile: str | None = typer.Option(
            None, "--base-profile", help="hardware profile to start from (default: from the device)"
        ),
        reuse: bool = typer.Option(
            False,
            "--reuse-measurements",
            help="fit what --measurements-dir already holds for this device; measure nothing",
        ),
        from_dir: Path | None = typer.Option(
            None,
            "--from-measurements",
            help="fit one device's measurements taken elsewhere (a <results>/<device> folder, "
            "e.g. from a GPU machine); measures nothing and needs no torch",
        ),
        force: bool = typer.Option(
            False, "--force", help="overwrite --out (never a shipped profile)"
        ),
        json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    ) -> None:
        """Measure kernels on this device and fit a calibrated hardware profile."""
        from hwsim.profiles.loader import load_hardware

        if from_dir is None:
            import_validation()
        from validation import fit, harness, profile_writer, results, suite

        profile_writer.check_writable(out, force)  # fail before minutes of measuring
        if from_dir is not None:
            measured, meta = results.load(from_dir)
            dev = _device_of(meta, from_dir)
        else:
            dev = harness.select_device(device)
        base = load_hardware(base_profile or profile_for_device(dev.kind, dev.name))
        folder = from_dir or measurements_dir / dev.slug
        if from_dir is None and reuse:
            measured, _meta = results.load(folder)
        if from_dir is not None or reuse:
            rows, skipped = list(measured.rows), []
            source = f"{len(rows)} measurements in {folder}"
        else:
            cases = suite.plan(dev, quick)
            policy = harness.QUICK if quick else harness.FULL
            pool = harness.pool_bytes_for_profile(base)
            err_console.print(f"measuring {len(cases)} shapes on {dev.name} ({dev.slug})")
            run = suite.run_suite(
                cases,
                dev,
                policy=policy,
                pool_bytes=pool,
                console=err_console,
                progress=not json_out,
            )
            extra = {
                "sweep": "quick" if quick else "full",
                "load_before": run.load_before,
                "load_after": run.load_after,
                "pool_bytes": pool,
            }
            results.save(measurements_dir, dev, run.measurements, run.threads, extra)
            rows, skipped = run.measurements, run.skipped
            source = (
                f"{len(rows)} measurements ({'quick' if quick else 'full'} sweep, "
                f"torch {results.stack_versions()['torch']}) in {folder}"
            )
        result = fit.calibrate(
            base, rows, profile_id=profile_id_for(out), calibrated_from=source, device_name=dev.name
        )
        path, report = profile_writer.write_profile(result, out, force)
        summary = {
            "profile": str(path),
            "report": str(report),
            "device": dev.slug,
            "measurements_dir": str(folder),
            "measured": len(rows),
            "skipped": [{"case": c, "reason": r} for c, r in skipped],
            "heldout": result.overall,
            "uncalibrated_heldout": result.baseline_overall,
            "classes": {c: r.heldout for c, r in result.classes.items()},
            "raised_peaks": result.raised,
        }
        if json_out:
            print_json(summary)
            return
        _print_summary(result, summary)


def _device_of(metadata: dict[str, dict], folder: Path):
    """The one device that took the measurements under ``folder`` (from their sidecars)."""
    from validation.harness import Device

    devices = {(m["device_kind"], m["device_name"]) for m in metadata.values()}
    if len(devices) != 1:
        names = sorted(name for _, name in devices)
        raise HwsimError(
            f"{folder}: --from-measurements needs one device's folder "
            f"(e.g. validation/results/<device>); found {names or 'none'}"
        )
    kind, name = devices.pop()
    if kind not in ("cpu", "cuda"):
        raise HwsimError(f"{folder}: metadata device_kind {kind!r}; allowed: cpu, cuda")
    return Device(kind, name)


def _pct(d: dict, key: str) -> str:
    v = d.get(key)
    return "-" if v is None else f"{v:.1%}"


def _print_summary(result, summary: dict) -> None:
    table = Table(
        title="held-out accuracy: |error| on shapes the fit never saw",
        title_justify="left",
        caption="uncal: the base profile before calibration",
        caption_justify="left",
    )
    for col in ("class", "train", "held", "median", "p90", "in band", "uncal median", "uncal p90"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for c, r in result.classes.items():
        h, b = r.heldout, r.baseline
        table.add_row(
            c,
            str(r.n_train),
            str(h.get("n", 0)),
            _pct(h, "median_abs_error"),
            _pct(h, "p90_abs_error"),
            _pct(h, "band_coverage"),
            _pct(b, "median_abs_error"),
            _pct(b, "p90_abs_error"),
        )
    o, b = result.overall, result.baseline_overall
    table.add_row(
        "all",
        "",
        str(o.get("n", 0)),
        _pct(o, "median_abs_error"),
        _pct(o, "p90_abs_error"),
        _pct(o, "band_coverage"),
        _pct(b, "median_abs_error"),
        _pct(b, "p90_abs_error"),
        style="bold",
    )
    console.print(table)
    for line in result.raised:
        console.print(f"raised peak: {line}")
    if summary["skipped"]:
        console.print(f"{len(summary['skipped'])} shape(s) skipped:")
        for s in summary["skipped"][:10]:
            console.print(f"  {s['case']}: {s['reason']}", markup=False)
    console.print(f"measurements: {summary['measurements_dir']}")
    console.print(f"wrote {summary['profile']} (report: {summary['report']})")
