"""CLI manners (issue 16): --version, completion, -q/-v, piped output that is not cut, profiles
show of a config.json, parameter counts, memory units, JSON schemas, scipy-free core."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hwsim.cli import common
from hwsim.cli.main import app
from hwsim.model.load import load_model
from hwsim.model.param_summary import fmt_params, param_summary
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.hf_config import model_from_hf_config
from hwsim.profiles.loader import load_hardware, shipped_dir, shipped_ids
from hwsim.profiles.model import ModelProfile

ROOT = Path(__file__).resolve().parents[1]
HF = ROOT / "tests" / "hf_configs"
runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None):
    result = runner.invoke(app, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    """hwsim in a fresh interpreter, stdout a real pipe (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


# -- 1. --version --------------------------------------------------------------------------------


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"hwsim {importlib.metadata.version('hwsim')}\n"


# -- 2. completion --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shell", "fragment"),
    [
        ("bash", "complete -o default -F _hwsim_completion hwsim"),
        ("zsh", "#compdef hwsim"),
        ("fish", "complete --command hwsim"),
        ("powershell", "Register-ArgumentCompleter"),
    ],
)
def test_completion_prints_a_script(shell, fragment):
    result = run("completion", shell)
    assert result.exit_code == 0, result.output
    assert fragment in result.stdout and "_HWSIM_COMPLETE" in result.stdout


def test_completion_protocol_answers_and_unknown_shell_is_an_error():
    env = {"_HWSIM_COMPLETE": "complete_bash", "COMP_WORDS": "hwsim prof", "COMP_CWORD": "1"}
    result = runner.invoke(app, [], env=env, prog_name="hwsim")
    assert result.exit_code == 0 and result.stdout.split() == ["profiles"]
    bad = run("completion", "tcsh")
    assert bad.exit_code == 2 and "unknown shell" in bad.stderr


# -- 3. -q / -v -----------------------------------------------------------------------------------


def test_quiet_drops_chatter_but_not_results_or_errors(tmp_path):
    args = ["context", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--lengths", "1k"]
    loud = run(*args, "--plot", str(tmp_path / "a.png"))
    assert loud.exit_code == 0 and "wrote" in loud.stderr
    quiet = run("-q", *args, "--plot", str(tmp_path / "b.png"))
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and "llama-3.1-8b" in quiet.stdout
    assert (tmp_path / "b.png").is_file()
    err = run("-q", "plan", "--model", "lama-2-7b", "--hardware", "h100-sxm")
    assert err.exit_code == 2 and "error:" in err.stderr and "did you mean" in err.stderr
    # the setting does not leak into the next invocation in the same process
    assert run("profiles", "list", "hardware").exit_code == 0
    assert common.err_console.quiet is False and common.settings.quiet is False


def test_verbose_shows_paths_and_where_an_error_came_from():
    result = run("-v", "profiles", "show", "tpu-v4")
    assert result.exit_code == 0
    assert str(shipped_dir("hardware") / "tpu-v4.yaml") in result.stderr
    assert yaml.safe_load(result.stdout)["id"] == "tpu-v4"  # chatter stays off stdout
    err = run("-v", "profiles", "show", "nonexistent-thing")
    assert err.exit_code == 2 and "UnknownProfileError from hwsim." in err.stderr
    assert "Traceback" not in err.output
    assert run("profiles", "show", "tpu-v4").stderr == ""  # -v does not leak either
    assert "-q" in run("--help").stdout and "--verbose" in run("--help").stdout


# -- 4. output to a pipe: profiles show round-trips, profiles list is not cut ---------------------


def _assert_round_trips(kind: str, ref: str, output: str) -> None:
    loaded = yaml.safe_load(output)
    source = yaml.safe_load((shipped_dir(kind) / f"{ref}.yaml").read_text())
    assert loaded == source, ref
    if kind == "model":
        assert ModelProfile.model_validate(loaded).model_dump() == load_model(ref).model_dump()
    else:
        profile = HardwareProfile.model_validate(loaded)
        assert profile.model_dump() == load_hardware(ref).model_dump()


@pytest.mark.parametrize(
    ("kind", "ref"), [(k, r) for k in ("hardware", "model") for r in shipped_ids(k)]
)
def test_profiles_show_is_yaml_that_round_trips(kind, ref):
    result = run("profiles", "show", ref, env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    _assert_round_trips(kind, ref, result.stdout)


def test_profiles_show_through_a_real_pipe():
    proc = run_python("from hwsim.cli.main import app; app()", "profiles", "show", "mamba-2.8b")
    assert proc.returncode == 0, proc.stderr
    _assert_round_trips("model", "mamba-2.8b", proc.stdout)


def _table_rows(output: str, title: str) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of the rich table titled ``title`` in ``output``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    header: list[str] = []
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("└"):
            break
        if line.startswith("┃"):
            header = [c.strip() for c in line.strip("┃").split("┃")]
        elif line.startswith("│"):
            rows.append([c.strip() for c in line.strip("│").split("│")])
    return header, rows


def test_profiles_list_in_a_pipe_is_not_cut():
    result = run("profiles", "list", env={"COLUMNS": "60"})
    assert result.exit_code == 0
    assert "…" not in result.output
    for kind in ("hardware", "model"):
        _, rows = _table_rows(result.stdout, f"{kind} profiles")
        assert [r[0] for r in rows] == shipped_ids(kind)  # one line per profile, ids whole


# -- 5. profiles show of a Hugging Face config.json -----------------------------------------------


@pytest.mark.parametrize("name", ["llama-llama-3.1-8b.json", "mixtral-mixtral-8x7b-v0.1.json"])
def test_profiles_show_config_json_prints_the_mapped_profile(name):
    path = HF / name
    result = run("profiles", "show", str(path))
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert "model_type" not in data and "n_layers" in data  # the profile, not the JSON echoed
    mapped = model_from_hf_config(path)
    assert ModelProfile.model_validate(data).model_dump() == mapped.model_dump()
    first = result.stdout.splitlines()[0]
    assert first == f"# params: {param_summary(mapped)['params']:,}" + (
        f" (active per token: {param_summary(mapped)['active_params_per_token']:,})"
        if "mixtral" in name
        else ""
    )


# -- 6. parameter counts --------------------------------------------------------------------------


def test_param_summary_dense_and_moe():
    dense = param_summary(load_model("llama-3.1-8b"))
    assert dense == {"params": 8_030_261_248, "active_params_per_token": None}
    moe = param_summary(load_model("mixtral-8x7b"))
    active = moe["active_params_per_token"]
    assert active is not None and 12e9 < active < 13e9 < 46e9 < moe["params"] < 47e9
    assert fmt_params(8_030_261_248) == "8.03B" and fmt_params(405_853_388_800) == "406B"
    assert fmt_params(124_439_808) == "124M"


def test_profiles_show_and_list_give_params():
    shown = run("profiles", "show", "mixtral-8x7b").stdout.splitlines()[0]
    assert shown.startswith("# params: 46,") and "(active per token: 12," in shown
    assert run("profiles", "show", "llama-3.1-8b").stdout.startswith("# params: 8,030,261,248\n")
    header, rows = _table_rows(run("profiles", "list", "model").stdout, "model profiles")
    by_id = {r[0]: dict(zip(header, r)) for r in rows}
    assert by_id["llama-3.1-8b"]["params"] == "8.03B"
    assert by_id["llama-3.1-8b"]["active/token"] == "-"
    assert by_id["mixtral-8x7b"]["params"] == "46.7B"
    assert by_id["mixtral-8x7b"]["active/token"] == "12.9B"


# -- 7. memory units ------------------------------------------------------------------------------


def test_profiles_list_memory_in_gb_and_gib_on_every_row():
    header, rows = _table_rows(run("profiles", "list", "hardware").stdout, "hardware profiles")
    assert "memory GB" in header and "memory GiB" in header and "memory" not in header
    by_id = {r[0]: dict(zip(header, r)) for r in rows}
    assert (by_id["tpu-v4"]["memory GB"], by_id["tpu-v4"]["memory GiB"]) == ("34.36", "32")
    assert (by_id["h100-sxm"]["memory GB"], by_id["h100-sxm"]["memory GiB"]) == ("80", "74.51")
    for ref, row in by_id.items():
        capacity = load_hardware(ref).capacity_bytes
        assert float(row["memory GB"].replace(",", "")) == pytest.approx(capacity / 1e9, abs=5e-3)
        assert float(row["memory GiB"].replace(",", "")) == pytest.approx(
            capacity / 2**30, abs=5e-3
        )
        assert " " not in row["memory GB"] + row["memory GiB"]  # the unit is in the header


# -- 8. schemas and schema_version ----------------------------------------------------------------


def _schemas() -> dict:
    result = run("schema")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_schemas_are_valid_json_schema():
    schemas = _schemas()
    assert {"estimate", "plan", "context"} <= set(schemas)
    for name, schema in schemas.items():
        assert schema["properties"]["schema_version"] == {"const": 1}, name
        assert json.loads(run("schema", name).stdout) == schema
    jsonschema = pytest.importorskip("jsonschema")
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    assert run("schema", "nope").exit_code == 2


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("estimate", ["plan", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--json"]),
        (
            "context",
            ["context", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--lengths", "1k,32k"]
            + ["--json"],
        ),
    ],
)
def test_json_outputs_carry_schema_version_and_match_their_schema(name, args):
    schema = json.loads(run("schema", name).stdout)
    result = run(*args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema_version"] == 1 and next(iter(data)) == "schema_version"
    assert set(data) <= set(schema["properties"])
    assert set(schema["required"]) <= set(data)
    try:
        import jsonschema
    except ImportError:  # pragma: no cover
        return
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)


# -- 9. packaging: scipy is optional --------------------------------------------------------------


def test_core_runs_without_scipy():
    code = (
        "import sys; sys.modules['scipy'] = None\n"  # any `import scipy` now fails
        "from hwsim.cli.main import app\n"
        "app(['plan', '--model', 'llama-3.1-8b', '--hardware', 'h100-sxm', '--json'])\n"
    )
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["schema_version"] == 1


def test_pyproject_scipy_is_an_extra_and_classifiers():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("scipy") for d in project["dependencies"])
    assert any(d.startswith("scipy") for d in project["optional-dependencies"]["validation"])
    assert "Topic :: Scientific/Engineering" in project["classifiers"]
    assert "Programming Language :: Python :: 3.10" in project["classifiers"]


def test_plan_json_carries_the_models_parameter_counts(tmp_path):
    """Mixtral 8x7B: 46,702,792,704 parameters (HF safetensors index), 12.9B active per token
    (Mistral's release); the single-deployment and capacity JSON both say so."""
    out = CliRunner().invoke(
        app, ["plan", "--model", "mixtral-8x7b", "--hardware", "h100-sxm", "--tp", "2", "--json"]
    )
    assert out.exit_code == 0, out.output
    model = json.loads(out.output)["model"]
    assert model["params"] == 46_702_792_704
    assert abs(model["active_params_per_token"] / 12.9e9 - 1) < 0.01
    from hwsim.planner.plan import plan

    text = (Path(__file__).parent.parent / "examples" / "chat-service.yaml").read_text()
    scenario = tmp_path / "s.yaml"
    scenario.write_text(text.replace("simulate_top: 3", "simulate_top: 0"))
    summary = plan(scenario).to_dict()["model"]
    assert summary == {"params": 8_030_261_248, "active_params_per_token": None}
