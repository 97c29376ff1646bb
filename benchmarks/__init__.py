"""Benchmarks of the paths users run (``python -m benchmarks.bench_<name>``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hwsim"


def missing_bytecode() -> int:
    """How many of hwsim's modules have no up-to-date .pyc: each is compiled again by every
    fresh process where ``PYTHONDONTWRITEBYTECODE`` is set (the README's set-up runs
    ``python3 -m compileall -q hwsim``, as a wheel install does)."""
    stale = 0
    for source in PACKAGE.rglob("*.py"):
        cached = Path(importlib.util.cache_from_source(str(source)))
        if not cached.exists() or cached.stat().st_mtime < source.stat().st_mtime:
            stale += 1
    return stale


def bytecode_note() -> str:
    """A line to print beside start-up timings ('' when every module has its bytecode)."""
    stale = missing_bytecode()
    if not stale:
        return ""
    return (
        f"note: {stale} hwsim modules have no up-to-date bytecode, so each run compiles them "
        "(python3 -m compileall -q hwsim writes it, as the README's set-up does)"
    )
