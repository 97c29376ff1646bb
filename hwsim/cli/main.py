"""Entry point: ``hwsim``. Each sub-command lives in its own module with ``register(app)``.

Domain errors (:class:`hwsim.errors.HwsimError`) print a one-line message and exit with code 2;
no traceback reaches the user.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="hwsim",
    help="Analytic performance simulator and capacity planner for LLM inference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMAND_MODULES = ("plan", "profiles", "context", "rag", "calibrate", "validate", "kernel")

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"hwsim.cli.{_name}")
    except ModuleNotFoundError as exc:  # a command module not written yet
        if exc.name != f"hwsim.cli.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:  # pragma: no cover - console script shim
    app()
