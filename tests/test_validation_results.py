"""Measurement files: round trip, layout keys, and clear errors for corrupt or partial files."""

from __future__ import annotations

import json

import pytest

from hwsim.errors import HwsimError
from hwsim.perf.measured import CSV_NAME, Measurement, load_measurements, read_csv, write_csv
from validation import results, synthetic


def _row(m: int = 16, t: float = 1e-3) -> Measurement:
    return Measurement(
        "gemm",
        "torch.mm",
        {"m": m, "n": 64, "k": 32, "dtype": "bf16"},
        t,
        t * 0.9,
        t * 1.2,
        t * 0.1,
        25,
        2,
    )


def _layout(tmp_path):
    return tmp_path / "cpu-test" / "gemm" / "torch@2.13.0" / CSV_NAME


def test_round_trip_keeps_every_field_and_reads_the_layout(tmp_path):
    path = write_csv(_layout(tmp_path), [_row(16), _row(32, 2e-3)])
    rows = read_csv(path)
    assert [r.params["m"] for r in rows] == [16, 32]
    assert rows[0] == _row(16)
    assert rows[0].device == "cpu-test" and rows[0].stack == "torch@2.13.0"
    assert load_measurements(tmp_path).rows == tuple(rows)


def test_bool_parameters_round_trip(tmp_path):
    params = {
        "batch": 1,
        "heads": 4,
        "kv_heads": 2,
        "seq_len": 64,
        "head_dim": 64,
        "causal": False,
        "dtype": "fp32",
    }
    row = Measurement("attention_prefill", "torch.sdpa", params, 1e-3, 9e-4, 2e-3, 1e-4, 10)
    (back,) = read_csv(write_csv(tmp_path / CSV_NAME, [row]))
    assert back.params["causal"] is False


def _write(tmp_path, text: str):
    path = _layout(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


HEADER = "kernel,variant,m,n,k,dtype,median_s,p10_s,p90_s,iqr_s,repeats,inner\n"


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ("", ["empty file"]),
        (HEADER, ["header only", "partial"]),
        (
            HEADER + "gemm,torch.mm,16,64,32,bf16,0.001,0.0009\n",
            ["line 2", "expected 12 fields, got 8"],
        ),
        (
            HEADER + "gemm,torch.mm,16,64,32,bf16,abc,0.0009,0.002,0.0001,10,1\n",
            ["line 2", "field 'median_s'", "'abc'"],
        ),
        (
            HEADER + "gemm,torch.mm,-4,64,32,bf16,0.001,0.0009,0.002,0.0001,10,1\n",
            ["line 2", "field 'm'", "positive"],
        ),
        (
            HEADER + "gemm,torch.mm,16,64,32,bf16,0.001,0.002,0.003,0.0001,10,1\n",
            ["line 2", "p10_s <= median_s"],
        ),
        (
            HEADER + "gemm,torch.mm,16,64,32,bf77,0.001,0.0009,0.002,0.0001,10,1\n",
            ["line 2", "unknown dtype"],
        ),
        (
            HEADER.replace("iqr_s,", "") + "gemm,torch.mm,16,64,32,bf16,0.001,0.0009,0.002,10,1\n",
            ["line 1", "missing ['iqr_s']"],
        ),
        ("kernel,variant\nconv,x\n", ["field 'kernel'", "unknown kernel 'conv'"]),
    ],
)
def test_corrupt_or_partial_files_name_file_line_and_field(tmp_path, body, fragments):
    path = _write(tmp_path, body)
    with pytest.raises(HwsimError) as info:
        load_measurements(tmp_path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_a_row_in_the_wrong_kernel_directory_is_caught(tmp_path):
    path = tmp_path / "dev" / "copy" / "torch@1" / CSV_NAME
    write_csv(path, [_row()])
    with pytest.raises(HwsimError, match="in a copy/ directory"):
        read_csv(path)


def test_missing_directory_and_empty_directory(tmp_path):
    with pytest.raises(HwsimError, match="not found"):
        load_measurements(tmp_path / "nope")
    with pytest.raises(HwsimError, match="no measurements.csv"):
        load_measurements(tmp_path)


def test_metadata_sidecar_errors(tmp_path):
    rows = synthetic.measurements(synthetic.with_curves(_cpu(), {}), [("copy", {"bytes": 4096})])
    (csv_path,) = synthetic.write(tmp_path, rows)
    meta = csv_path.parent / results.METADATA_NAME
    measured, metadata = results.load(tmp_path)
    assert len(measured) == 1 and next(iter(metadata.values()))["device"] == "synthetic"
    meta.write_text('{"device": "x", "device_name": ')
    with pytest.raises(HwsimError, match=r"metadata.json: not valid JSON at line 1"):
        results.load(tmp_path)
    meta.write_text(json.dumps({"device": "x"}))
    with pytest.raises(HwsimError, match="missing field"):
        results.load(tmp_path)
    meta.unlink()
    with pytest.raises(HwsimError, match="missing metadata sidecar"):
        results.load(tmp_path)


def test_save_writes_keyed_directories_with_metadata(tmp_path):
    pytest.importorskip("torch")
    from validation.harness import Device

    dev = Device("cpu", "Test CPU 9000")
    rows = [
        _row(),
        Measurement(
            "copy", "torch.copy", {"bytes": 4096, "dtype": "fp32"}, 1e-6, 9e-7, 2e-6, 1e-7, 10
        ),
    ]
    paths = results.save(tmp_path, dev, rows, threads=2, extra={"sweep": "test"})
    stack = results.stack_dir_name("torch")
    assert stack.startswith("torch@") and "+" not in stack
    assert {p.relative_to(tmp_path).parts[:3] for p in paths} == {
        ("cpu-test-cpu-9000", "copy", stack),
        ("cpu-test-cpu-9000", "gemm", stack),
    }
    meta = results.read_metadata(paths[0].parent)
    for key in (
        "device_name",
        "torch_version",
        "date",
        "hwsim_version",
        "torch_threads",
        "cpu_count",
        "sweep",
    ):
        assert key in meta
    assert meta["torch_threads"] == 2


def _cpu():
    from hwsim.profiles.loader import load_hardware

    return load_hardware("cpu")
