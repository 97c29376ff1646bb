"""Measurement files keyed by what produced them, with a metadata sidecar.

    validation/results/<device>/<kernel>/<stack>@<version>/measurements.csv
    validation/results/<device>/<kernel>/<stack>@<version>/metadata.json

e.g. ``cpu-amd-epyc/gemm/torch@2.13.0/``. The CSV format is :mod:`hwsim.perf.measured`'s (the
core reads it for the measured rung without torch); the sidecar records the device, driver,
clocks, library versions, thread count, date, hwsim version and git commit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

from hwsim.errors import HwsimError
from hwsim.perf.measured import CSV_NAME, Measurement, MeasurementSet, load_measurements, write_csv
from validation.harness import Device

METADATA_NAME = "metadata.json"
REQUIRED_METADATA = ("device", "device_name", "stack", "date", "torch_version")


def public_version(version: str) -> str:
    """'2.13.0+cpu' -> '2.13.0' (the build tag stays in the metadata)."""
    return version.split("+", 1)[0]


def stack_versions() -> dict[str, str]:
    import torch

    out = {"torch": torch.__version__}
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        pass
    return out


def stack_dir_name(stack: str) -> str:
    versions = stack_versions()
    if stack not in versions:
        raise HwsimError(f"stack {stack!r} is not installed")
    return f"{stack}@{public_version(versions[stack])}"


def result_dir(root: str | Path, device: str, kernel: str, stack: str) -> Path:
    return Path(root) / device / kernel / stack_dir_name(stack)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _hwsim_version() -> str:
    try:
        from importlib.metadata import version

        return version("hwsim")
    except Exception:  # not installed: fall back to the package attribute
        try:
            import hwsim

            return getattr(hwsim, "__version__", "unknown")
        except Exception:
            return "unknown"


def _cpu_clock_mhz() -> float | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def _gpu_facts(index: int) -> dict[str, Any]:
    """Driver and clocks from nvidia-smi where it exists (best effort, never fatal)."""
    query = "driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit"
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                f"--id={index}",
                f"--query-gpu={query}",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    if out.returncode != 0 or not out.stdout.strip():
        return {}
    keys = ("driver_version", "sm_clock_mhz", "max_sm_clock_mhz", "mem_clock_mhz", "power_limit_w")
    return dict(zip(keys, (v.strip() for v in out.stdout.strip().split(","))))


def collect_metadata(device: Device, threads: int, stack: str, extra: dict | None = None) -> dict:
    import torch

    versions = stack_versions()
    meta: dict[str, Any] = {
        "device": device.slug,
        "device_name": device.name,
        "device_kind": device.kind,
        "stack": stack,
        "stack_version": versions.get(stack),
        "torch_version": torch.__version__,
        "triton_version": versions.get("triton"),
        "cuda_version": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "cpu_clock_mhz": _cpu_clock_mhz(),
        "platform": platform.platform(),
        "python_version": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hwsim_version": _hwsim_version(),
        "git_commit": _git_commit(),
    }
    if device.kind == "cuda":
        props = torch.cuda.get_device_properties(device.index)
        meta["gpu_memory_bytes"] = props.total_memory
        meta["gpu_multiprocessors"] = props.multi_processor_count
        meta["compute_capability"] = f"{props.major}.{props.minor}"
        meta.update(_gpu_facts(device.index))
    meta.update(extra or {})
    return meta


def save(
    root: str | Path,
    device: Device,
    measurements: list[Measurement],
    threads: int,
    extra: dict | None = None,
) -> list[Path]:
    """Write one CSV + sidecar per (kernel, stack); replaces files of the same key."""
    groups: dict[tuple[str, str], list[Measurement]] = defaultdict(list)
    for m in measurements:
        groups[(m.kernel, m.variant.split(".", 1)[0])].append(m)
    written = []
    for (kernel, stack), rows in sorted(groups.items()):
        folder = result_dir(root, device.slug, kernel, stack)
        path = write_csv(folder / CSV_NAME, rows)
        meta = collect_metadata(device, threads, stack, extra)
        tmp = folder / (METADATA_NAME + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        tmp.replace(folder / METADATA_NAME)
        written.append(path)
    return written


def read_metadata(folder: str | Path) -> dict:
    """The sidecar of one result directory; a missing, corrupt or partial one is an error."""
    path = Path(folder) / METADATA_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise HwsimError(f"{path}: missing metadata sidecar next to {CSV_NAME}") from None
    except json.JSONDecodeError as exc:
        raise HwsimError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg} "
            "(truncated or partial file?)"
        ) from None
    if not isinstance(data, dict):
        raise HwsimError(f"{path}: expected a JSON object of field: value")
    missing = [k for k in REQUIRED_METADATA if not data.get(k)]
    if missing:
        raise HwsimError(f"{path}: missing field(s) {missing}")
    return data


def load(path: str | Path) -> tuple[MeasurementSet, dict[str, dict]]:
    """Measurements under ``path`` and each result directory's metadata (checked)."""
    measurements = load_measurements(path)
    folders = sorted({str(Path(m.source).parent) for m in measurements.rows})
    metadata = {folder: read_metadata(folder) for folder in folders}
    return measurements, metadata
