"""Writing output files safely: never through a symbolic link, never a half-written file,
never over an existing file unless asked, never two runs into one folder at once.

Every file hwsim writes for a user (plan reports and their plots, calibrated profiles and their
reports, context plots) goes through :func:`check_targets` before any work starts and
:func:`write_atomic` at the end; a report folder is held with :func:`folder_lock` meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from hwsim.errors import HwsimError

LOCK_NAME = ".hwsim-writing"


def check_targets(paths: Iterable[Path], overwrite: bool = False) -> list[Path]:
    """Refuse any target that is a symbolic link (dangling or not) or sits under one inside
    its output folder, and any that exists unless ``overwrite``; name what is wrong."""
    paths = [Path(p) for p in paths]
    for path in paths:
        if path.is_symlink():
            raise HwsimError(
                f"{path} is a symbolic link; refusing to write through it (remove the link)"
            )
        if path.parent.is_symlink():
            raise HwsimError(
                f"{path.parent} is a symbolic link; refusing to write through it "
                "(remove the link or choose another folder)"
            )
        if path.exists() and not path.is_file():
            raise HwsimError(f"{path} exists and is not a regular file")
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        shown = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise HwsimError(
            f"would overwrite {shown}: already exists; choose another path or pass --force"
        )
    return paths


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place, so a
    reader sees the old file or the whole new one; a link at ``path`` is replaced, not
    followed (callers check first with :func:`check_targets`)."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600; a report is as readable as any new file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _mode_for(path: Path) -> int:
    """The replaced file's permissions, or those a new file gets under the umask."""
    if path.is_file() and not path.is_symlink():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[Path]:
    """Hold ``folder`` for one writer: a second run into it fails at once with a clear
    message instead of interleaving files. The lock file is removed on exit."""
    folder = Path(folder)
    if folder.is_symlink():
        raise HwsimError(f"{folder} is a symbolic link; refusing to write through it")
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        raise HwsimError(
            f"{folder} is being written by another hwsim run (or one that was killed: "
            f"remove {lock} if none is running)"
        ) from None
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        yield folder
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
