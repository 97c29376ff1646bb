"""``hwsim profiles list|show``: what ships, and what a profile file or config.json maps to."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.table import Table

from hwsim.cli.common import console, handle_errors, info
from hwsim.errors import HwsimError
from hwsim.format import fmt_bytes
from hwsim.model.layers import layer_groups
from hwsim.model.load import load_model
from hwsim.model.param_summary import fmt_params, param_summary, params_comment
from hwsim.profiles.loader import load_hardware, shipped_dir, shipped_ids
from hwsim.profiles.model import ModelProfile

KINDS = ("hardware", "model")


def fmt_capacity(value: float, scale: float) -> str:
    """A memory size in one unit, up to two decimals: 80, 74.51, 34.36."""
    return f"{value / scale:,.2f}".rstrip("0").rstrip(".")


def _list_table(kind: str) -> Table:
    table = Table(title=f"{kind} profiles", title_justify="left")
    if kind == "hardware":
        # memory in both units on every row: datasheets say GB (1e9 B) for GPUs, GiB (2^30 B)
        # for TPUs; one column each, so no row mixes them
        cols = ("id", "name", "bf16 dense", "memory GB", "memory GiB", "bandwidth", "calibrated")
        for col in cols:
            table.add_column(
                col,
                no_wrap=(col != "name"),
                justify="right" if "GB" in col or "GiB" in col else "left",
            )
        for ref in shipped_ids(kind):
            hw = load_hardware(ref)
            bf16 = hw.matrix_flops_per_s.get("bf16")
            table.add_row(
                hw.id,
                hw.name,
                f"{bf16.value / 1e12:,.1f} TFLOP/s" if bf16 else "-",
                fmt_capacity(hw.capacity_bytes, 1e9),
                fmt_capacity(hw.capacity_bytes, 2**30),
                f"{fmt_bytes(hw.bandwidth_bytes_per_s)}/s",
                "yes" if hw.calibration else "no",
            )
    else:
        for col in ("id", "name", "params", "active/token", "layers", "mixers", "context"):
            table.add_column(col, no_wrap=(col != "name"))
        for ref in shipped_ids(kind):
            m = load_model(ref)
            kinds = sorted({mixer.kind for mixer, _moe, _c in layer_groups(m)})
            summary = param_summary(m)
            active = summary["active_params_per_token"]
            table.add_row(
                m.id,
                m.name,
                fmt_params(summary["params"]),
                fmt_params(active) if active is not None else "-",
                str(m.n_layers),
                ", ".join(kinds),
                f"{m.max_context_tokens:,}",
            )
    return table


def _echo(text: str) -> None:
    """Plain text to stdout: no rich wrapping, markup or highlighting (YAML that parses)."""
    typer.echo(text, nl=not text.endswith("\n"))


def _with_params(model: ModelProfile, text: str) -> str:
    return f"{params_comment(param_summary(model))}\n{text}"


def show_profile(ref: str) -> str:
    """The YAML ``hwsim profiles show REF`` prints: a shipped or given YAML file as written
    (a model's led by a ``# params:`` comment), or the profile a config.json maps to."""
    for kind in KINDS:
        if ref in shipped_ids(kind):
            path = shipped_dir(kind) / f"{ref}.yaml"
            info(f"read {path}")
            text = path.read_text()
            if kind == "hardware":
                load_hardware(ref)  # validate first
                return text
            return _with_params(load_model(ref), text)
    if ref.endswith(".json"):  # a Hugging Face config.json: show what it maps to
        mapped = load_model(ref)
        info(f"read {Path(ref).resolve()} (Hugging Face config.json)")
        dumped = yaml.safe_dump(mapped.model_dump(mode="json"), sort_keys=False)
        return _with_params(mapped, f"# mapped from the Hugging Face config {ref}\n{dumped}")
    model: ModelProfile | None = None
    try:
        load_hardware(ref)
    except HwsimError:
        model = load_model(ref)
    info(f"read {Path(ref).resolve()}")
    text = Path(ref).read_text()
    return text if model is None else _with_params(model, text)


def register(app: typer.Typer) -> None:
    profiles = typer.Typer(
        help="List and show the shipped hardware and model profiles.", no_args_is_help=True
    )
    app.add_typer(profiles, name="profiles")

    @profiles.command("list")
    @handle_errors
    def list_(kind: str = typer.Argument("all", help="hardware | model | all")) -> None:
        """List shipped profiles (memory in GB = 1e9 B and GiB = 2^30 B; params: B = 1e9)."""
        if kind not in (*KINDS, "all", "models"):
            raise HwsimError(f"unknown kind {kind!r}; allowed: hardware, model, all")
        info(f"profiles from {shipped_dir('hardware')} and {shipped_dir('model')}")
        for k in KINDS if kind == "all" else (kind.rstrip("s"),):
            console.print(_list_table(k))

    @profiles.command("show")
    @handle_errors
    def show(
        ref: str = typer.Argument(
            ..., help="hardware or model id, a profile YAML path, or a Hugging Face config.json"
        ),
    ) -> None:
        """Print a profile as YAML: a shipped or given file as written (with sources; a
        model's first line is a `# params:` comment), or the model a config.json maps to."""
        _echo(show_profile(ref))
