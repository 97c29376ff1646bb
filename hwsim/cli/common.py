"""Shared CLI plumbing: error reporting, JSON output, the rich consoles, -q/-v settings.

Three consoles: :data:`console` (stdout: results), :data:`err_console` (stderr: progress and
"wrote FILE" chatter, silenced by ``hwsim -q``) and :data:`error_console` (stderr: errors,
never silenced). Written to a pipe or a file rather than a terminal, the consoles are
:data:`PIPE_WIDTH` columns wide, so tables and long lines are not wrapped or cut at 80.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import sys
from collections.abc import Callable
from typing import Any, Optional

import numpy as np
import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from hwsim.errors import HwsimError

PIPE_WIDTH = 4096  # columns when not writing to a terminal: nothing is wrapped or cut with '…'
SCHEMA_VERSION = 1  # the "schema_version" of every JSON output (see `hwsim schema`)


class _Console(Console):
    """A rich console that is :data:`PIPE_WIDTH` wide when its file is not a terminal (a pipe,
    a file, a test runner): rich would otherwise wrap text and shorten table cells to 80."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        isatty = getattr(self.file, "isatty", None)
        try:
            tty = bool(isatty()) if isatty is not None else False
        except ValueError:  # a closed file
            tty = False
        return size if tty else ConsoleDimensions(max(size.width, PIPE_WIDTH), size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console: Console = _Console()
err_console: Console = _Console(stderr=True)  # chatter: `hwsim -q` sets err_console.quiet
error_console: Console = _Console(stderr=True)  # errors: always shown

EXIT_USAGE = 2


class Settings:
    """The global options of the ``hwsim`` callback, set once per invocation."""

    quiet: bool = False
    verbose: bool = False


settings = Settings()


def configure(*, quiet: bool = False, verbose: bool = False) -> None:
    """Apply ``-q/--quiet`` and ``-v/--verbose`` (every invocation sets both, so nothing is
    left over from a previous one in the same process)."""
    settings.quiet = quiet
    settings.verbose = verbose and not quiet
    err_console.quiet = quiet


def info(message: str) -> None:
    """Extra detail on stderr, shown only with ``hwsim -v``."""
    if settings.verbose:
        err_console.print(message, markup=False, highlight=False, soft_wrap=True)


MAX_MESSAGE_CHARS = 1500  # an error fits on one screen, whatever value it quotes


def fail(message: str) -> None:
    """Print ``error: message`` to stderr (cut to one screen) and exit 2."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 40] + f" ... ({len(message):,} characters, cut)"
    error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def check_new_file(flag: str, path, force: bool) -> None:
    """An output file a command will write, checked before any work: no symbolic link, not
    an existing file unless ``force``, and its folder exists (hwsim.safe_write)."""
    from hwsim.safe_write import check_targets

    try:
        check_targets([path], force)
    except HwsimError as exc:
        fail(f"{flag} {exc}")
    if not path.parent.is_dir():
        fail(f"{flag} {path}: folder {path.parent} does not exist")


def _origin(exc: BaseException) -> str:
    """Where an error was raised: ``ProfileError from hwsim.profiles.loader:58 (validate)``."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return type(exc).__name__
    frame = tb.tb_frame
    module = frame.f_globals.get("__name__", "?")
    return f"{type(exc).__name__} from {module}:{tb.tb_lineno} ({frame.f_code.co_name})"


def handle_errors(func: Callable) -> Callable:
    """Turn domain errors into a message and exit code 2 instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HwsimError as exc:
            _explain(exc)
            fail(str(exc))
        except FileNotFoundError as exc:
            _explain(exc)
            fail(f"file not found: {exc.filename}")
        except KeyboardInterrupt:  # pragma: no cover
            sys.exit(130)

    return wrapper


def _explain(exc: BaseException) -> None:
    """``hwsim -v``: which error, raised where (no traceback)."""
    if settings.verbose:
        error_console.print(f"({_origin(exc)})", markup=False, highlight=False, soft_wrap=True)


def to_jsonable(value: Any) -> Any:
    """numpy scalars/arrays and non-finite floats to plain JSON (inf/nan -> null)."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_json(data: dict[str, Any]) -> None:
    """One JSON object on stdout, led by ``"schema_version"`` (:data:`SCHEMA_VERSION`; the
    schemas: ``hwsim schema``)."""
    typer.echo(json.dumps({"schema_version": SCHEMA_VERSION, **to_jsonable(data)}, indent=2))


def parse_int_list(text: str, what: str) -> list[int]:
    """Parse '1k,4k,32k,1M' into integers: k = 1,000 and M = 1,000,000 (decimal);
    Ki = 1,024 and Mi = 1,048,576 for the binary sizes model cards often mean."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        mult = 1
        for suffix, factor in (
            ("Ki", 1024),
            ("Mi", 1024**2),
            ("k", 1000),
            ("K", 1000),
            ("M", 10**6),
        ):
            if part.endswith(suffix):
                part, mult = part[: -len(suffix)], factor
                break
        try:
            value = float(part) * mult
        except ValueError:
            fail(f"{what}: cannot read {part!r}; use integers with optional k, M, Ki, Mi suffix")
        if value <= 0 or value != int(value):
            fail(f"{what}: {value} must be a positive integer")
        out.append(int(value))
    if not out:
        fail(f"{what}: empty list")
    return out


def _flag_type(annotation: Any) -> type:
    """The Python type a DeploymentSpec field takes on the command line (Literal -> str)."""
    if annotation in (int, float, bool, str):
        return annotation
    return str


def deployment_flags(func: Callable) -> Callable:
    """Give a command one ``--flag`` per :class:`~hwsim.profiles.deployment.DeploymentSpec`
    field (``--tp``, ``--kv-dtype``, ``--memory-utilization``, ``--chunked-prefill/--no-...``),
    generated from the spec itself, and pass the given ones to ``func`` as ``deployment``: a
    dict of field -> value (None: not given) for :meth:`DeploymentSpec.from_settings`."""
    from hwsim.profiles.deployment import DeploymentSpec

    fields = DeploymentSpec.model_fields
    sig = inspect.signature(func)
    own = [p for p in sig.parameters.values() if p.name != "deployment"]
    extra = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None,
                f"--{name.replace('_', '-')}"
                + (f"/--no-{name.replace('_', '-')}" if info.annotation is bool else ""),
                help=f"{info.description or name} (default {info.default})",
                show_default=False,
                rich_help_panel="Deployment (each overrides the scenario's)",
            ),
            annotation=Optional[_flag_type(info.annotation)],  # noqa: UP045 - typer reads it
        )
        for name, info in fields.items()
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = {name: kwargs.pop(name, None) for name in fields}
        return func(*args, deployment=settings, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
    return wrapper
