"""The planning web page's request bodies, read the way the CLI reads files: JSON or YAML
within a size limit, a scenario validated with the CLI's messages, whole numbers and positive
numbers by field, context lengths with k/M suffixes. Errors are
:class:`~hwsim.errors.HwsimError` (a :class:`RequestError` carries the HTTP status)."""

from __future__ import annotations

import math
from typing import Any

from hwsim.errors import HwsimError, ProfileError
from hwsim.profiles.loader import validate
from hwsim.profiles.scenario import Scenario
from hwsim.safe_read import excerpt, load_json_object, load_yaml

DEFAULT_LENGTHS = "1k,4k,32k,128k,1M"  # as `hwsim context`

MAX_BODY_BYTES = 1 << 20  # a scenario is a few KiB; refuse anything far larger
JSON_TYPES = ("application/json",)
# none of these is a CORS "simple" type: another site's page cannot post one without asking
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


class RequestError(HwsimError):
    """Bad input with an HTTP status other than 400 (415: wrong content type, 404: no such
    plan, 422: a plan with no feasible candidate)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# -- request bodies ----------------------------------------------------------------------------


def parse_body(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """A request body as a dict: JSON (an object) or, for a scenario, YAML (a mapping)."""
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(f"request body of {len(raw):,} bytes; at most {MAX_BODY_BYTES:,}", 413)
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in JSON_TYPES + YAML_TYPES:
        raise RequestError(
            f"Content-Type {kind or '(none)'!r}: send application/json, or application/yaml "
            "with a scenario YAML",
            415,
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError("not UTF-8 text", file="request body") from None
    if kind in JSON_TYPES:
        return load_json_object(text, "request body")
    data = load_yaml(text, "request body")
    if not isinstance(data, dict):
        raise ProfileError(
            "expected a mapping of field: value at the top level", file="request body"
        )
    return data


def split_options(body: dict[str, Any], allowed: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Split a body into its scenario and its options. The body is either a scenario itself
    or ``{"scenario": <mapping or YAML text>, <option>: ...}``."""
    if "scenario" not in body:
        return body, dict(allowed)
    unknown = sorted(set(body) - {"scenario", *allowed})
    if unknown:
        raise ProfileError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: "
            f"{', '.join(['scenario', *allowed])}",
            file="request body",
        )
    return body["scenario"], {k: body.get(k, v) for k, v in allowed.items()}


def scenario_of(raw: Any) -> Scenario:
    """A scenario from a mapping or YAML text, validated like a scenario file."""
    if isinstance(raw, str):
        data = load_yaml(raw, "scenario YAML")
        if not isinstance(data, dict):
            raise ProfileError(
                "expected a mapping of field: value at the top level", file="scenario YAML"
            )
        return validate(Scenario, data, "scenario YAML")
    if not isinstance(raw, dict):
        raise ProfileError(
            f"scenario: expected a mapping or YAML text, got {type(raw).__name__}",
            file="request body",
        )
    return validate(Scenario, raw, "scenario")


def whole_field(value: Any, name: str, low: int, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ProfileError(
            f"must be a whole number >= {low}, got {excerpt(value)}",
            file="request body",
            field=name,
        )
    return value


def positive_field(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e300:
        raise ProfileError(
            f"must be a finite number > 0, got {excerpt(value)}", file="request body", field=name
        )
    return float(value)


SUFFIXES = (("Ki", 1024), ("Mi", 1024**2), ("k", 1000), ("K", 1000), ("M", 10**6))


def parse_lengths(value: Any) -> list[int]:
    """Context lengths: a list of whole numbers, or text as ``hwsim context --lengths`` reads
    it ('1k,4k,32k,1M': k = 1,000, M = 1,000,000; Ki = 1,024, Mi = 1,048,576)."""
    what = "lengths"
    if isinstance(value, list):
        parts: list[Any] = value
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
    else:
        raise ProfileError(
            f"expected a list of token counts or text like {DEFAULT_LENGTHS!r}, got "
            f"{excerpt(value)}",
            file="request body",
            field=what,
        )
    out = []
    for part in parts:
        number: float
        if isinstance(part, bool):
            number = float("nan")
        elif isinstance(part, (int, float)):
            number = float(part)
        elif isinstance(part, str):
            text, mult = part, 1
            for suffix, factor in SUFFIXES:
                if text.endswith(suffix):
                    text, mult = text[: -len(suffix)], factor
                    break
            try:
                number = float(text) * mult
            except ValueError:
                raise ProfileError(
                    f"cannot read {part!r}; use integers with optional k, M, Ki, Mi suffix",
                    file="request body",
                    field=what,
                ) from None
        else:
            number = float("nan")
        if not (math.isfinite(number) and number > 0) or number != int(number):
            raise ProfileError(
                f"{excerpt(part)} must be a positive integer", file="request body", field=what
            )
        out.append(int(number))
    if not out:
        raise ProfileError("empty list", file="request body", field=what)
    return out
