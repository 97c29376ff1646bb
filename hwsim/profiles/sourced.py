"""Numbers that carry their source: ``{value: 3.35 TB/s, source: "NVIDIA H100 datasheet"}``.

Each sourced type parses its value once, at load, into SI base units (see :mod:`hwsim.units`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, field_validator

from hwsim.units import UnitError, parse_quantity

STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Sourced(BaseModel):
    model_config = STRICT
    dimension: ClassVar[str | None] = None

    value: float
    source: str

    @field_validator("value", mode="before")
    @classmethod
    def _parse(cls, raw: Any) -> float:
        if cls.dimension is None:
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise ValueError(f"expected a number, got {raw!r}")
            return float(raw)
        try:
            return parse_quantity(raw, cls.dimension)
        except UnitError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("value")
    @classmethod
    def _non_negative(cls, v: float) -> float:
        if v < 0:
            raise ValueError(f"must be >= 0, got {v}")
        return v

    @field_validator("source")
    @classmethod
    def _non_empty(cls, s: str) -> str:
        if not s.strip():
            raise ValueError("a source is required: datasheet, paper table or config file")
        return s


class SourcedNumber(_Sourced):
    """A dimensionless count or fraction."""


class SourcedBytes(_Sourced):
    dimension = "bytes"


class SourcedBytesPerS(_Sourced):
    dimension = "bytes_per_s"


class SourcedFlopsPerS(_Sourced):
    dimension = "flops_per_s"


class SourcedSeconds(_Sourced):
    dimension = "s"
