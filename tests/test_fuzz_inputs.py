"""Fuzzing the input boundary: mutated shipped examples, profiles, config.json files,
measurement CSVs and flags, through every command. A run either succeeds or exits 2 with a
short message; it never shows a traceback. Bounded for CI (a few hundred cases in all)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hf_config import LLAMA_2_7B
from typer.testing import CliRunner

from hwsim.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
FUZZ = settings(
    max_examples=int(os.environ.get("HWSIM_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same cases every run: CI failures reproduce
)
ONE_SCREEN_CHARS = 2500

ODD_VALUES = st.one_of(
    st.sampled_from([None, 0, -1, 1, 2.5, -0.0, 1e308, -1e308, True, False, "", "nan", "inf"]),
    st.sampled_from(["-1 ms", "1e400", "fp7", "[x]", "x" * 5000, "12 parsecs", "0x10"]),
    st.sampled_from([[], {}, [1, 2], {"kind": "nope"}, [[[[]]]]]),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)


def paths_of(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into nested dicts and lists."""
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for k, v in data.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths_of(v, (*prefix, i))
    return out


def parent_of(data: Any, path: tuple) -> Any:
    for key in path[:-1]:
        data = data[key]
    return data


@st.composite
def mutated(draw, original: dict) -> dict:
    """``original`` with one to three edits: a value replaced, a key removed, a key added."""
    data = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_of(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = parent_of(data, path)
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = copy.deepcopy(draw(ODD_VALUES))
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            key = draw(st.sampled_from(["extra", "tp", "model", "kind", "value", "rate"]))
            parent[key] = copy.deepcopy(draw(ODD_VALUES))
    return data


def assert_clean(result) -> None:
    """Exit 0, or exit 2 with a one-screen message; never an unhandled exception."""
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        raise AssertionError(f"unhandled {type(exc).__name__}: {str(exc)[:300]}") from exc
    assert result.exit_code in (0, 2), result.output[-300:]
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert 0 < len(result.output) <= ONE_SCREEN_CHARS, result.output[:300]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def quick_plan(data: dict) -> dict:
    """A capacity scenario kept cheap to run: a couple of candidates, no simulation."""
    if isinstance(data.get("candidates"), dict):
        data["candidates"] = {**data["candidates"], "hardware": ["h100-sxm"]}
    data["serving"] = {"simulate_top": 0}
    return data


def write_yaml(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


@FUZZ
@given(data=st.data())
def test_mutated_single_deployment_scenarios(tmp_path, data):
    name = data.draw(
        st.sampled_from(["llama2-7b-a100.yaml", "llama31-70b-h100-tp4.yaml"]), label="example"
    )
    scenario = data.draw(mutated(load(ROOT / "examples" / name)), label="scenario")
    path = write_yaml(tmp_path, "s.yaml", scenario)
    assert_clean(runner.invoke(app, ["plan", str(path), "--json"]))


@FUZZ
@given(data=st.data())
def test_mutated_capacity_scenarios(tmp_path, data):
    original = quick_plan(load(ROOT / "examples" / "chat-service.yaml"))
    scenario = data.draw(mutated(original), label="scenario")
    if isinstance(scenario, dict):
        scenario["serving"] = {"simulate_top": 0}
    path = write_yaml(tmp_path, "s.yaml", scenario)
    assert_clean(runner.invoke(app, ["plan", str(path), "--json"]))


@FUZZ
@given(data=st.data())
def test_mutated_rag_scenarios(tmp_path, data):
    scenario = data.draw(mutated(load(ROOT / "examples" / "rag-vs-long-context.yaml")))
    path = write_yaml(tmp_path, "s.yaml", scenario)
    assert_clean(runner.invoke(app, ["rag", str(path), "--json"]))


@FUZZ
@given(data=st.data())
def test_mutated_hardware_profiles(tmp_path, data):
    stem = data.draw(st.sampled_from(["h100-sxm", "mi300x", "cpu", "h100-sxm-calibrated"]))
    profile = data.draw(mutated(load(ROOT / "hardware_profiles" / f"{stem}.yaml")))
    path = write_yaml(tmp_path, "hw.yaml", profile)
    args = ["plan", "--model", "llama-2-7b", "--hardware", str(path), "--json"]
    assert_clean(runner.invoke(app, args))


@FUZZ
@given(data=st.data())
def test_mutated_model_profiles(tmp_path, data):
    stem = data.draw(st.sampled_from(["llama-3.1-8b", "mixtral-8x7b", "jamba-1.5-mini", "rwkv-7"]))
    profile = data.draw(mutated(load(ROOT / "model_profiles" / f"{stem}.yaml")))
    path = write_yaml(tmp_path, "m.yaml", profile)
    for args in (
        ["plan", "--model", str(path), "--hardware", "h100-sxm", "--json"],
        ["context", "--model", str(path), "--hardware", "h100-sxm", "--lengths", "1k,8k"],
    ):
        assert_clean(runner.invoke(app, args))


LLAMA_CONFIG = {**LLAMA_2_7B, "rope_scaling": {"type": "linear", "factor": 2.0}}


@FUZZ
@given(config=mutated(LLAMA_CONFIG))
def test_mutated_hf_configs(tmp_path, config):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config, allow_nan=True))
    args = ["plan", "--model", str(path), "--hardware", "h100-sxm", "--json"]
    assert_clean(runner.invoke(app, args))


CSV_HEADER = "kernel,variant,m,n,k,dtype,median_s,p10_s,p90_s,iqr_s,repeats,inner"
CSV_ROW = "gemm,torch.mm,{m},4096,4096,bf16,{t},{t},{t},0.0,10,1"


@FUZZ
@given(
    cell=st.integers(0, 11),
    value=st.one_of(st.text(max_size=8), st.sampled_from(["", "-1", "nan", "1e999", "0"])),
)
def test_mutated_measurement_csvs(tmp_path, cell, value):
    rows = [CSV_ROW.format(m=m, t=m * 1e-6) for m in (16, 64, 256)]
    cells = rows[1].split(",")
    cells[cell] = value.replace(",", ";").replace("\n", " ")
    rows[1] = ",".join(cells)
    folder = tmp_path / "meas"
    folder.mkdir(exist_ok=True)
    (folder / "measurements.csv").write_text("\n".join([CSV_HEADER, *rows]) + "\n")
    args = ["kernel", "gemm", "--m", "100", "--n", "4096", "--k", "4096"]
    args += ["--hardware", "h100-sxm", "--measurements", str(folder)]
    assert_clean(runner.invoke(app, args))


FLAG_VALUES = st.sampled_from(["0", "-3", "1.5", "nan", "inf", "abc", "", "1e9", "[x]", "2"])
PLAN_FLAGS = ["--tp", "--pp", "--batch", "--prompt-len", "--gen-len", "--tpot-slo-ms"]
PLAN_FLAGS += ["--weight-dtype", "--kv-dtype", "--memory-utilization", "--attention-impl"]


@FUZZ
@given(flags=st.lists(st.tuples(st.sampled_from(PLAN_FLAGS), FLAG_VALUES), max_size=3))
def test_fuzzed_plan_flags(flags):
    args = ["plan", "--model", "llama-2-7b", "--hardware", "a100-80gb-sxm", "--json"]
    for flag, value in flags:
        args += [flag, value]
    assert_clean(runner.invoke(app, args))


@FUZZ
@given(
    lengths=st.sampled_from(["1k,4k", "0", "-1", "1.5k", "abc", "", "1e3", "1M,2M", "64Ki"]),
    variant=st.sampled_from(["", "sliding_window:window=4096", "nope", "sliding_window:window=x"]),
)
def test_fuzzed_context_flags(lengths, variant):
    args = ["context", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--lengths", lengths]
    if variant:
        args += ["--variant", variant]
    assert_clean(runner.invoke(app, args))


@pytest.mark.parametrize(
    "command",
    [
        ["plan", "{file}"],
        ["rag", "{file}"],
        ["plan", "--model", "{file}", "--hardware", "h100-sxm"],
        ["plan", "--model", "llama-2-7b", "--hardware", "{file}"],
    ],
)
@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe\x00binary",
        b"model: [unclosed",
        b"a: &a [x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        b"f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\nmodel: *f\n",
        b"model: a\nmodel: b\n",
        b"- just\n- a list\n",
        b"",
    ],
)
def test_broken_files_through_every_command(tmp_path, command, content):
    path = tmp_path / "input.yaml"
    path.write_bytes(content)
    result = runner.invoke(app, [part.format(file=path) for part in command])
    assert_clean(result)
    assert result.exit_code == 2
