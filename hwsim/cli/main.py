"""Entry point: ``hwsim``. Each sub-command lives in its own module with ``register(app)``.

Domain errors (:class:`hwsim.errors.HwsimError`) print a one-line message and exit with code 2;
no traceback reaches the user. Global options (before the command): ``--version``,
``-q/--quiet``, ``-v/--verbose``; ``hwsim completion SHELL`` prints a completion script.
"""

from __future__ import annotations

import importlib

import typer

from hwsim.cli.common import configure, err_console, info

app = typer.Typer(
    name="hwsim",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion, and the completion protocol
    pretty_exceptions_enable=False,
)

COMMAND_MODULES = (
    "plan",
    "profiles",
    "context",
    "rag",
    "calibrate",
    "validate",
    "kernel",
    "schema",
    "serve",
    "sweep",
    "train",
)


def _version(value: bool) -> None:
    if value:
        from hwsim import __version__

        typer.echo(f"hwsim {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        help="Print `hwsim VERSION` and exit.",
    ),
    quiet: bool = typer.Option(
        False,
        "-q",
        "--quiet",
        help="Print results and errors only: no progress bars, no 'wrote FILE' lines on stderr.",
    ),
    verbose: bool = typer.Option(
        False,
        "-v",
        "--verbose",
        help="Also print, on stderr, where profiles are read from and, with an error, which "
        "error was raised where (no traceback). -q wins over -v.",
    ),
) -> None:
    """Analytic performance simulator and capacity planner for LLM inference.

    Results go to stdout: tables, or one JSON object with --json (see `hwsim schema`).
    Progress and errors go to stderr; errors exit with code 2.
    """
    configure(quiet=quiet, verbose=verbose)
    if verbose and not quiet:
        from hwsim import __version__
        from hwsim.errors import ProfileError
        from hwsim.profiles.loader import shipped_dir

        info(f"hwsim {__version__}")
        for kind in ("hardware", "model"):
            try:
                info(f"shipped {kind} profiles: {shipped_dir(kind)}")
            except ProfileError as exc:
                err_console.print(str(exc), markup=False)


SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


@app.command("completion")
def completion(shell: str = typer.Argument(..., help="bash | zsh | fish | powershell")) -> None:
    """Print the shell completion script for SHELL, e.g. `eval "$(hwsim completion bash)"`.

    Or install it with `hwsim --install-completion`."""
    from typer._completion_shared import get_completion_script

    if shell not in SHELLS:
        from hwsim.cli.common import fail

        fail(f"unknown shell {shell!r}; allowed: {', '.join(SHELLS[:-1])}")
    typer.echo(
        get_completion_script(prog_name="hwsim", complete_var="_HWSIM_COMPLETE", shell=shell)
    )


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
