"""Shared pydantic building blocks for the serving specs: strict config and unit-aware fields."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict

from hwsim.units import UnitError, parse_quantity

# Inputs: strict (no silent str -> number coercion), frozen, unknown keys and NaN/inf rejected.
SPEC_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
# Results: the same, but NaN is a legitimate "no value" (a percentile of no requests).
RESULT_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True)


def _seconds(raw: Any) -> Any:
    """Accept a number (already seconds) or a string with a time unit ("50 ms")."""
    if isinstance(raw, str):
        try:
            return parse_quantity(raw, "s")
        except UnitError as exc:
            raise ValueError(str(exc)) from None
    return raw


def _tuple(raw: Any) -> Any:
    """YAML gives lists; frozen specs store tuples."""
    return tuple(raw) if isinstance(raw, list) else raw


Seconds = Annotated[float, BeforeValidator(_seconds)]
FloatTuple = Annotated[tuple[float, ...], BeforeValidator(_tuple)]
