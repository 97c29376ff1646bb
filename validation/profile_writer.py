"""Write a calibrated profile YAML and its JSON report; never over a shipped profile."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from hwsim.errors import HwsimError
from hwsim.safe_write import check_targets, write_atomic
from validation.fit import Calibrated


def shipped_profile_paths() -> set[Path]:
    from hwsim.profiles.loader import shipped_dir

    out = set()
    for folder in {
        shipped_dir("hardware"),
        Path(__file__).resolve().parent.parent / "hardware_profiles",
    }:
        if folder.is_dir():
            out |= {p.resolve() for p in folder.glob("*.y*ml")}
            out.add(folder.resolve())
    return out


def check_writable(path: str | Path, force: bool = False) -> Path:
    """Refuse to overwrite a shipped profile (ever) or an existing file (unless ``force``)."""
    path = Path(path).expanduser()
    resolved = path.resolve()
    shipped = shipped_profile_paths()
    if resolved in shipped or resolved.parent in shipped:
        raise HwsimError(
            f"{path}: refusing to write into the shipped hardware profiles; "
            "choose another --out path"
        )
    if path.suffix not in (".yaml", ".yml"):
        raise HwsimError(f"{path}: the calibrated profile must be a .yaml file")
    check_targets([path, report_path_for(path)], force)
    return path


def report_path_for(path: Path) -> Path:
    """The JSON report written beside a calibrated profile."""
    return path.with_suffix(".calibration.json")


def write_profile(result: Calibrated, path: str | Path, force: bool = False) -> tuple[Path, Path]:
    """Write the calibrated profile YAML and a JSON report beside it."""
    path = check_writable(path, force)
    data = result.profile.model_dump(mode="json", exclude_none=True)
    cal = result.profile.calibration
    header = (
        f"# Calibrated hardware profile written by `hwsim calibrate` on {cal.date}\n"
        f"# from {cal.calibrated_from}. Re-run calibrate rather than editing by hand.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, header + yaml.safe_dump(data, sort_keys=False, width=100))
    report_path = report_path_for(path)
    report = {
        "profile": str(path),
        "overall_heldout": result.overall,
        "uncalibrated_overall_heldout": result.baseline_overall,
        "raised_peaks": result.raised,
        "classes": {c: vars(r) for c, r in result.classes.items()},
        "heldout_points": result.heldout_rows,
    }
    write_atomic(report_path, json.dumps(report, indent=2, default=str) + "\n")
    return path, report_path
