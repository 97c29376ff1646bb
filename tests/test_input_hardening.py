"""Hostile and broken input files: each gets a short, typed error naming the file, never a
hang, a traceback or a silently chosen value."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hwsim.cli.main import app
from hwsim.errors import ProfileError
from hwsim.model.load import load_model
from hwsim.profiles.loader import read_yaml
from hwsim.safe_read import MAX_EXPANDED_NODES, excerpt, expanded_size, load_yaml

runner = CliRunner()


def alias_bomb(levels: int, width: int = 9) -> str:
    """The 'billion laughs' document: each level is ``width`` aliases of the one before."""
    lines = ['l0: &l0 ["lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*l{i - 1}"] * width)
        lines.append(f"l{i}: &l{i} [{refs}]")
    lines += [f"model: *l{levels}", "hardware: h100-sxm"]
    return "\n".join(lines) + "\n"


def test_expanded_size_counts_aliases_without_expanding_them():
    import yaml

    node = yaml.compose("a: &a [1, 2]\nb: [*a, *a, *a]\n")
    # mapping 1 + keys 2 + a's list (1 + 2) + b's list 1 + 3 x a's list (3 each)
    assert expanded_size(node) == 1 + 2 + 3 + 1 + 3 * 3


def test_a_billion_laughs_scenario_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(9))  # 9^9 = 387M values once expanded, 400 bytes on disk
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2
    assert "aliases expand to more than" in result.output
    assert len(result.output) < 400


def test_an_alias_value_under_the_limit_is_quoted_as_a_short_excerpt(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(alias_bomb(4))  # 6,561 values: allowed, but not a string
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2
    assert "field 'model'" in result.output
    assert len(result.output) < 3000


def test_the_limit_is_what_the_documentation_says():
    assert expanded_size(__import__("yaml").compose(alias_bomb(6))) > MAX_EXPANDED_NODES


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("model: llama-2-7b\nhardware: h100-sxm\nmodel: llama-2-13b\n")
    with pytest.raises(ProfileError, match=r"duplicate key 'model' \(first at line 1\)"):
        read_yaml(path)


def test_nested_duplicate_keys_are_refused():
    with pytest.raises(ProfileError, match="duplicate key 'tp'"):
        load_yaml("deployment:\n  tp: 2\n  tp: 4\n", "x.yaml")


def test_merge_keys_still_work():
    data = load_yaml("base: &b {tp: 2, pp: 1}\nmine:\n  <<: *b\n  pp: 2\n", "x.yaml")
    assert data["mine"] == {"tp": 2, "pp": 2}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"model: \xff\xfe\n", "not UTF-8 text"),
        (b"\x00\x01\x02binary", "binary file"),
    ],
)
def test_binary_and_non_utf8_files(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_a_directory_is_not_reported_as_missing(tmp_path):
    folder = tmp_path / "scenario.yaml"
    folder.mkdir()
    result = runner.invoke(app, ["plan", str(folder)])
    assert result.exit_code == 2
    assert "is a directory" in result.output


def test_hf_config_with_duplicate_keys_or_nan_is_refused(tmp_path):
    dup = tmp_path / "dup" / "config.json"
    dup.parent.mkdir()
    dup.write_text('{"model_type": "llama", "hidden_size": 4096, "hidden_size": 8192}')
    with pytest.raises(ProfileError, match="duplicate key 'hidden_size'"):
        load_model(dup)
    nan = tmp_path / "nan" / "config.json"
    nan.parent.mkdir()
    nan.write_text(json.dumps({"model_type": "llama"})[:-1] + ', "rope_theta": NaN}')
    with pytest.raises(ProfileError, match="NaN is not a JSON number"):
        load_model(nan)


def test_excerpt_is_short_for_huge_values():
    assert len(excerpt("x" * 1_000_000)) < 200
    assert len(excerpt([list(range(1000))] * 1000)) < 200
    assert excerpt("tp") == "'tp'"


def test_error_text_with_brackets_is_printed_as_written(tmp_path):
    """Rich markup must not eat '[...]' in messages (e.g. pip install 'hwsim[validation]')."""
    path = tmp_path / "s.yaml"
    path.write_text("model: llama-2-7b\nhardware: h100-sxm\ndeployment: {weight_dtype: '[x]'}\n")
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 2
    assert "'[x]'" in result.output


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_markdown_escape_leaves_no_live_markup(text):
    """Every special character comes out backslash-escaped and no line break survives, so a
    scenario name or description cannot add headings, links, HTML or table cells."""
    from hwsim.report.plan_report import MD_SPECIAL, md_escape

    out = md_escape(text)
    assert "\n" not in out and "\r" not in out
    i = 0
    while i < len(out):
        if out[i] == "\\":
            assert i + 1 < len(out) and out[i + 1] in MD_SPECIAL
            i += 2
            continue
        assert out[i] not in MD_SPECIAL
        i += 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"arrival_s,prompt_tokens,output_tokens\n0,\xff,1\n", "not UTF-8 text"),
        (b"arrival_s,prompt_tokens,output_tokens\n0,1\x00,1\n", "binary file"),
        (b'arrival_s,prompt_tokens,output_tokens\n0,"1,1\n', "2 cells, expected 3"),
    ],
)
def test_broken_trace_files_are_named_not_tracebacks(tmp_path, content, message):
    from hwsim.serving import TraceArrivals

    path = tmp_path / "trace.csv"
    path.write_bytes(content)
    with pytest.raises(ProfileError, match=message):
        TraceArrivals(file=str(path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": 2.5}, "batch must be a whole number"),
        ({"gen_len": float("nan")}, "gen_len must be a whole number"),
        ({"batch": "4"}, "batch must be a number"),
        ({"tpot_slo_s": float("inf")}, "tpot_slo_s must be > 0"),
        ({"lengths": [1000, 1.5]}, "lengths must be positive integers"),
    ],
)
def test_context_sweep_arguments_are_checked(kwargs, message):
    import hwsim
    from hwsim.errors import InfeasibleError

    args = {"lengths": [1000, 4000], **kwargs}
    with pytest.raises(InfeasibleError, match=message):
        hwsim.context_sweep("llama-3.1-8b", "h100-sxm", **args)


@pytest.mark.parametrize("fraction", [0.0, 1.5])
def test_a_link_fraction_outside_0_1_is_refused(tmp_path, fraction):
    """Mutation testing found it: 1.5 let an all-reduce beat its own speed of light."""
    import yaml

    from hwsim.profiles.loader import load_hardware, shipped_dir

    data = yaml.safe_load((shipped_dir("hardware") / "h100-sxm.yaml").read_text())
    data["efficiency"]["link_fraction"] = {"value": fraction, "source": "test"}
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ProfileError, match=r"link_fraction must be in \(0, 1\]"):
        load_hardware(path)
