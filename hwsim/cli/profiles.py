"""``hwsim profiles list|show``: what ships."""

from __future__ import annotations

import typer
import yaml
from rich.table import Table

from hwsim.cli.common import console, handle_errors
from hwsim.errors import HwsimError
from hwsim.format import fmt_bytes
from hwsim.model.layers import layer_groups
from hwsim.model.load import load_model
from hwsim.profiles.loader import load_hardware, shipped_dir, shipped_ids

KINDS = ("hardware", "model")


def _list_table(kind: str) -> Table:
    table = Table(title=f"{kind} profiles", title_justify="left")
    if kind == "hardware":
        for col in ("id", "name", "bf16 dense", "memory", "bandwidth", "calibrated"):
            table.add_column(col, no_wrap=(col != "name"))
        for ref in shipped_ids(kind):
            hw = load_hardware(ref)
            bf16 = hw.matrix_flops_per_s.get("bf16")
            table.add_row(
                hw.id,
                hw.name,
                f"{bf16.value / 1e12:,.1f} TFLOP/s" if bf16 else "-",
                fmt_bytes(hw.capacity_bytes),
                f"{fmt_bytes(hw.bandwidth_bytes_per_s)}/s",
                "yes" if hw.calibration else "no",
            )
    else:
        from hwsim.inference.memory import kv_bytes_per_token_per_gpu  # noqa: F401 (import check)
        from hwsim.model.params import count_params

        for col in ("id", "name", "params", "layers", "mixers", "context"):
            table.add_column(col, no_wrap=(col != "name"))
        for ref in shipped_ids(kind):
            m = load_model(ref)
            kinds = sorted({mixer.kind for mixer, _moe, _c in layer_groups(m)})
            table.add_row(
                m.id,
                m.name,
                f"{count_params(m).total / 1e9:,.2f} B",
                str(m.n_layers),
                ", ".join(kinds),
                f"{m.max_context_tokens:,}",
            )
    return table


def register(app: typer.Typer) -> None:
    profiles = typer.Typer(
        help="List and show the shipped hardware and model profiles.", no_args_is_help=True
    )
    app.add_typer(profiles, name="profiles")

    @profiles.command("list")
    @handle_errors
    def list_(kind: str = typer.Argument("all", help="hardware | model | all")) -> None:
        """List shipped profiles."""
        if kind not in (*KINDS, "all", "models"):
            raise HwsimError(f"unknown kind {kind!r}; allowed: hardware, model, all")
        for k in KINDS if kind == "all" else (kind.rstrip("s"),):
            console.print(_list_table(k))

    @profiles.command("show")
    @handle_errors
    def show(ref: str = typer.Argument(..., help="profile id (hardware or model)")) -> None:
        """Print a shipped profile's YAML (with sources)."""
        for kind, loader in (("hardware", load_hardware), ("model", load_model)):
            if ref in shipped_ids(kind):
                loader(ref)  # validate first
                console.print(
                    (shipped_dir(kind) / f"{ref}.yaml").read_text(), markup=False, highlight=False
                )
                return
        try:
            load_hardware(ref)
        except HwsimError:
            load_model(ref)
        # a path: print its validated YAML
        with open(ref) as fh:
            console.print(yaml.safe_dump(yaml.safe_load(fh), sort_keys=False), markup=False)
