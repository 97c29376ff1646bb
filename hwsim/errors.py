"""Domain errors. The CLI turns every :class:`HwsimError` into a message and exit code 2."""

from __future__ import annotations


class HwsimError(Exception):
    """Base class for every error hwsim reports to a user (never a traceback)."""


class ProfileError(HwsimError):
    """A profile or scenario file is malformed: names the file, field, value and what is allowed."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file = file
        self.field = field
        where = " ".join(
            p for p in (f"{file}:" if file else "", f"field '{field}':" if field else "") if p
        )
        super().__init__(f"{where} {message}".strip())


class UnknownProfileError(HwsimError):
    """An id that matches no shipped profile; the message lists close matches."""


class InfeasibleError(HwsimError):
    """A configuration that cannot run: weights do not fit, TP does not divide heads, ..."""


class RungRefused(HwsimError):
    """A predictor rung cannot price this op (outside its domain); the ladder moves on."""
