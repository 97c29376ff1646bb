"""``hwsim kernel``, ``hwsim calibrate`` and ``hwsim validate`` through typer's CliRunner,
including the error paths (exit 2 with a message, never a traceback)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hwsim.cli.main import app
from hwsim.profiles.loader import load_hardware, shipped_dir
from validation import synthetic

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_kernel_gemm_json():
    res = run(
        "kernel", "gemm", "--m", 4096, "--n", 4096, "--k", 4096, "--hardware", "h100-sxm", "--json"
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["rung"] == "datasheet" and data["bound"] == "compute"
    # the profile's efficiency block, not the bare peak (the speed of light is asked by name)
    assert data["time_s"] > 2 * 4096**3 / 989.4e12
    sol = run("kernel", "gemm", "--m", 4096, "--n", 4096, "--k", 4096, "--hardware", "h100-sxm",
              "--rung", "speed_of_light", "--json")  # fmt: skip
    assert json.loads(sol.output)["time_s"] == pytest.approx(2 * 4096**3 / 989.4e12)


@pytest.mark.parametrize(
    "args",
    [
        ("attention-prefill", "--seq-len", 4096, "--heads", 32, "--kv-heads", 8, "--no-causal"),
        ("attention-decode", "--context-len", 8192, "--heads", 32, "--kv-heads", 8, "--batch", 8),
        ("copy", "--bytes", "1 GiB"),
        ("norm", "--tokens", 4096, "--hidden", 8192),
    ],
)
def test_other_kernels_print_a_table(args):
    res = run("kernel", *args, "--hardware", "h100-sxm")
    assert res.exit_code == 0, res.output
    assert "datasheet" in res.output and "band" in res.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("gemm", "--m", 1, "--n", 1, "--k", 1, "--hardware", "h100-sx"), "did you mean h100-sxm"),
        (
            ("gemm", "--m", 1, "--n", 1, "--k", 1, "--hardware", "h100-sxm", "--dtype", "fp7"),
            "unknown dtype",
        ),
        (("copy", "--bytes", "12 parsecs", "--hardware", "h100-sxm"), "--bytes"),
        (
            (
                "gemm",
                "--m",
                1,
                "--n",
                1,
                "--k",
                1,
                "--hardware",
                "h100-sxm",
                "--rung",
                "calibrated",
            ),
            "no calibration block",
        ),
        (
            (
                "gemm",
                "--m",
                1,
                "--n",
                1,
                "--k",
                1,
                "--hardware",
                "h100-sxm",
                "--measurements",
                "/nonexistent/dir",
            ),
            "not found",
        ),
    ],
)
def test_kernel_errors_exit_2_without_traceback(args, fragment):
    res = run("kernel", *args)
    assert res.exit_code == 2, res.output
    assert fragment in res.output and "Traceback" not in res.output


@pytest.fixture()
def measured_dir(tmp_path):
    truth = synthetic.with_curves(load_hardware("cpu"), {})
    rows = synthetic.measurements(truth, synthetic.shapes(), noise=0.04, seed=5, device="cpu-test")
    synthetic.write(tmp_path / "results", rows, device="cpu-test")
    return tmp_path / "results"


def _calibrate_from(measured_dir, out, *extra):
    """Fit existing measurements (no torch kernels run): --reuse-measurements, faked device."""
    return run(
        "calibrate",
        "--device",
        "cpu",
        "--out",
        out,
        "--measurements-dir",
        measured_dir,
        "--reuse-measurements",
        *extra,
    )


@pytest.fixture()
def cpu_test_device(monkeypatch):
    pytest.importorskip("torch")
    from validation import harness

    monkeypatch.setattr(harness, "select_device", lambda requested: harness.Device("cpu", "test"))


def test_calibrate_then_validate_end_to_end(measured_dir, tmp_path, cpu_test_device):
    out = tmp_path / "my-cpu.yaml"
    res = _calibrate_from(measured_dir, out)
    assert res.exit_code == 0, res.output
    assert "held-out accuracy" in res.output and out.exists()
    hw = load_hardware(str(out))
    assert hw.calibration is not None and hw.id == "my-cpu"
    plots = tmp_path / "plots"
    res = run("validate", "--hardware", out, "--measurements", measured_dir, "--plots", plots)
    assert res.exit_code == 0, res.output
    assert "held" in res.output and "calibrated" in res.output and "*gemm" in res.output
    assert (plots / "predicted_vs_measured.png").stat().st_size > 1000
    assert (plots / "roofline.png").stat().st_size > 1000
    res = run("validate", "--hardware", out, "--measurements", measured_dir, "--json")
    data = json.loads(res.output)
    assert data["summary"]["all"]["heldout"]["n"] > 0 and data["rows"][0]["rung"] == "calibrated"


def test_calibrate_refuses_to_overwrite(measured_dir, tmp_path, cpu_test_device):
    out = tmp_path / "exists.yaml"
    out.write_text("keep me")
    res = _calibrate_from(measured_dir, out)
    assert res.exit_code == 2 and "already exists" in res.output
    assert out.read_text() == "keep me"
    assert _calibrate_from(measured_dir, out, "--force").exit_code == 0


def test_calibrate_never_touches_a_shipped_profile(measured_dir, cpu_test_device):
    target = shipped_dir("hardware") / "cpu.yaml"
    before = target.read_text()
    res = _calibrate_from(measured_dir, target, "--force")
    assert res.exit_code == 2 and "shipped" in res.output
    assert target.read_text() == before


def test_calibrate_reuse_with_missing_measurements(tmp_path, cpu_test_device):
    res = _calibrate_from(tmp_path / "none", tmp_path / "x.yaml")
    assert res.exit_code == 2 and "not found" in res.output


def test_validate_error_paths(tmp_path, measured_dir):
    res = run("validate", "--hardware", "cpu", "--measurements", tmp_path / "missing")
    assert res.exit_code == 2 and "not found" in res.output and "Traceback" not in res.output
    res = run("validate", "--hardware", "no-such-gpu", "--measurements", measured_dir)
    assert res.exit_code == 2 and "unknown hardware profile" in res.output
    bad = next(measured_dir.rglob("measurements.csv"))
    bad.write_text(bad.read_text()[:-20])  # truncate the last row
    res = run("validate", "--hardware", "cpu", "--measurements", measured_dir)
    assert res.exit_code == 2 and str(bad) in res.output and "fields" in res.output


def test_validate_uncalibrated_profile_uses_the_datasheet_rung(measured_dir):
    res = run("validate", "--hardware", "cpu", "--measurements", measured_dir, "--heldout-only")
    assert res.exit_code == 0, res.output
    assert "datasheet" in res.output and "nothing fitted" in res.output
