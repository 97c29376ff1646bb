"""Published, independent measurements that hwsim's predictions are compared against.

The rows live in ``validation/published/*.yaml`` (one mapping per file with a ``rows`` list).
Every row is a number somebody else measured and published (a vendor blog, an engine's
benchmark README, a cloud provider's benchmark guide, ...), copied with its source and a
verbatim quote. They are for *comparison only*: nothing in hwsim may be fitted to them.

Units are explicit: workload fields carry their unit in the name (``message_size_bytes``,
``input_len_tokens``, ``request_rate_per_s``) and the metric's unit is a closed vocabulary
(:data:`Unit`) checked against the row's kind. The loader is strict: unknown fields, a missing
source or quote, a non-positive value, a quote that does not contain the value, and duplicate
ids are all errors that name the file, the row and the field.

    from validation.published_set import load_published
    rows = load_published()          # the shipped set
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "DEFAULT_FOLDER",
    "Kind",
    "PublishedRow",
    "PublishedSetError",
    "Source",
    "Unit",
    "Workload",
    "load_published",
    "quote_contains_value",
    "value_digits",
]

DEFAULT_FOLDER = Path(__file__).resolve().parent / "published"

Kind = Literal[
    "gemm",
    "attention_prefill",
    "attention_decode",
    "bandwidth",
    "allreduce",
    "serving",
    "latency",
]

Unit = Literal["TFLOP/s", "TB/s", "GB/s", "ms", "tokens/s", "requests/s"]

# which metric units make sense for each kind (a typo such as a gemm row in GB/s is an error)
UNITS_BY_KIND: dict[str, frozenset[str]] = {
    "gemm": frozenset({"TFLOP/s"}),
    "attention_prefill": frozenset({"TFLOP/s", "ms"}),
    "attention_decode": frozenset({"TB/s", "GB/s", "ms", "TFLOP/s"}),
    "bandwidth": frozenset({"TB/s", "GB/s"}),
    "allreduce": frozenset({"GB/s", "ms"}),
    "serving": frozenset({"ms", "tokens/s", "requests/s"}),
    "latency": frozenset({"ms", "tokens/s"}),
}

# kinds whose workload must name a model and an engine
_END_TO_END = frozenset({"serving", "latency"})

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


class PublishedSetError(ValueError):
    """A published-set file or row is malformed; the message names file, row and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Source(_Strict):
    """Where the number was read. ``url`` is required; ``locator`` says where on the page."""

    url: str = Field(min_length=8)
    title: str = Field(min_length=3)
    locator: str = Field(min_length=3, description="table / section / figure on that page")
    commit: str | None = Field(default=None, description="git commit of the file read, if any")
    date: str | None = Field(default=None, description="publication date as stated, if any")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return v

    @field_validator("commit")
    @classmethod
    def _commit(cls, v: str | None) -> str | None:
        if v is not None and not _SHA_RE.match(v):
            raise ValueError("must be a 40-hex-digit git commit")
        return v


class Workload(_Strict):
    """The exact workload as published. Every field is optional; units are in the names."""

    dtype: str | None = None
    # GEMM: C[m, n] = A[m, k] @ B[k, n] unless shape_note says the source orders them otherwise
    m: int | None = Field(default=None, gt=0)
    n: int | None = Field(default=None, gt=0)
    k: int | None = Field(default=None, gt=0)
    shape_note: str | None = None
    # attention kernels (batch_size is also a static serving batch)
    batch_size: int | None = Field(default=None, gt=0)
    seq_len_tokens: int | None = Field(default=None, gt=0)
    head_dim: int | None = Field(default=None, gt=0)
    num_heads: int | None = Field(default=None, gt=0)
    causal: bool | None = None
    # memory bandwidth / collectives
    operation: str | None = None
    message_size_bytes: int | None = Field(default=None, gt=0)
    nodes: int | None = Field(default=None, gt=0)
    collective_tool: str | None = None
    # serving / latency
    tp: int | None = Field(default=None, gt=0)
    input_len_tokens: int | None = Field(default=None, gt=0)
    output_len_tokens: int | None = Field(default=None, gt=0)
    dataset: str | None = None
    client_mode: (
        Literal["request_rate", "fixed_concurrency", "offline_all_at_once", "fixed_batch"] | None
    ) = None
    request_rate_per_s: float | None = Field(default=None, gt=0)
    concurrency: int | None = Field(default=None, gt=0)
    num_requests: int | None = Field(default=None, gt=0)
    # mean output length of a variable-length dataset run, when the source's own numbers give
    # it (e.g. output token throughput / request throughput of the same run); notes say how
    mean_output_len_tokens: float | None = Field(default=None, gt=0)


class PublishedRow(_Strict):
    """One published number with everything needed to reproduce the comparison."""

    id: str
    kind: Kind
    hardware_profile: str | None = Field(
        default=None, description="hwsim hardware profile id (hardware_profiles/<id>.yaml)"
    )
    hardware_published: str = Field(min_length=2, description="the hardware as the source names it")
    num_devices: int = Field(default=1, gt=0)
    model_profile: str | None = Field(
        default=None, description="hwsim model profile id (model_profiles/<id>.yaml)"
    )
    model_published: str | None = Field(
        default=None, description="the model as the source names it (HF name where given)"
    )
    engine: str | None = None
    engine_version: str | None = None
    software: str | None = Field(default=None, description="libraries/versions as stated")
    workload: Workload
    metric: str = Field(min_length=2)
    value: float = Field(gt=0)
    unit: Unit
    source: Source
    quote: str = Field(min_length=4, description="verbatim excerpt containing the value")
    notes: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError("must be lower-case [a-z0-9_.-], starting with a letter or digit")
        return v

    @field_validator("hardware_profile", "model_profile")
    @classmethod
    def _profile_id(cls, v: str | None) -> str | None:
        if v is not None and not _ID_RE.match(v):
            raise ValueError("not a profile id (lower-case [a-z0-9_.-])")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PublishedRow:
        allowed = UNITS_BY_KIND[self.kind]
        if self.unit not in allowed:
            raise ValueError(
                f"unit {self.unit!r} does not fit kind {self.kind!r}: {sorted(allowed)}"
            )
        if self.kind in _END_TO_END:
            if not (self.model_profile or self.model_published):
                raise ValueError(f"a {self.kind} row needs model_profile or model_published")
            if not self.engine:
                raise ValueError(f"a {self.kind} row needs an engine")
        if not quote_contains_value(self):
            raise ValueError(
                f"quote does not contain the value's digits {value_digits(self.value)!r}"
            )
        return self


def value_digits(value: float) -> str:
    """The value as its shortest decimal string: 1745.0 -> '1745', 72.45 -> '72.45'."""
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = f"{value:f}".rstrip("0")
    if text.endswith(".0"):
        text = text[:-2]
    return text.rstrip(".")


def quote_contains_value(row: PublishedRow) -> bool:
    """True when the quote (thousands separators removed) contains the value's digits.

    '2.9' matches a quote saying '2.90'; '15163' matches '15,163'. A value that was rounded or
    converted before being stored fails, which is the point: store what the source printed.
    """
    quote = re.sub(r"(?<=\d),(?=\d{3})", "", row.quote)
    return value_digits(row.value) in quote


def _loc(loc: Iterable[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "<row>"


def _row_label(raw: Any, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        return f"row {raw['id']!r} (#{index})"
    return f"row #{index}"


def _load_file(path: Path) -> list[PublishedRow]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PublishedSetError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or "rows" not in doc:
        raise PublishedSetError(f"{path}: top level must be a mapping with a 'rows' list")
    extra = set(doc) - {"rows", "description"}
    if extra:
        raise PublishedSetError(f"{path}: unknown top-level keys {sorted(extra)}")
    raw_rows = doc["rows"]
    if not isinstance(raw_rows, list) or not raw_rows:
        raise PublishedSetError(f"{path}: 'rows' must be a non-empty list")
    rows: list[PublishedRow] = []
    for index, raw in enumerate(raw_rows):
        label = _row_label(raw, index)
        if not isinstance(raw, dict):
            raise PublishedSetError(f"{path}: {label}: must be a mapping")
        try:
            rows.append(PublishedRow.model_validate(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"field '{_loc(err['loc'])}': {err['msg']}" for err in exc.errors()
            )
            raise PublishedSetError(f"{path}: {label}: {problems}") from None
    return rows


def load_published(folder: str | Path | None = None) -> list[PublishedRow]:
    """Read every ``*.yaml`` in ``folder`` (default: the shipped set), validate, check ids.

    Files are read in name order; the returned rows keep file order then row order.
    Raises :class:`PublishedSetError` naming file, row id and field on any bad input.
    """
    root = Path(folder) if folder is not None else DEFAULT_FOLDER
    if not root.is_dir():
        raise PublishedSetError(f"{root}: not a folder")
    files = sorted(root.glob("*.yaml"))
    if not files:
        raise PublishedSetError(f"{root}: no *.yaml files")
    seen: dict[str, Path] = {}
    out: list[PublishedRow] = []
    for path in files:
        for row in _load_file(path):
            if row.id in seen:
                raise PublishedSetError(
                    f"{path}: row {row.id!r}: field 'id': duplicate id, first defined in "
                    f"{seen[row.id]}"
                )
            seen[row.id] = path
            out.append(row)
    return out
