"""``hwsim schema [NAME]``: the JSON Schema (draft 2020-12) of each ``--json`` output.

Generated from the classes the output is built from, so a schema follows the code: pydantic
models give their own schema (:meth:`pydantic.BaseModel.model_json_schema`), dataclasses are
described field by field from their type hints; what a ``to_dict`` adds or drops is applied
here by hand. Every output is one object led by ``"schema_version"``
(:data:`hwsim.cli.common.SCHEMA_VERSION`); non-finite numbers (inf, NaN) are written as
``null``, so every number in a schema may also be null.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

import numpy as np
import typer
from pydantic import BaseModel

from hwsim.cli.common import SCHEMA_VERSION, fail

DIALECT = "https://json-schema.org/draft/2020-12/schema"
Schema = dict[str, Any]


class _Builder:
    """One schema document: ``$defs`` hoisted from every pydantic model it embeds."""

    def __init__(self) -> None:
        self.defs: dict[str, Schema] = {}

    def model(self, cls: type[BaseModel], exclude: tuple[str, ...] = ()) -> Schema:
        schema = cls.model_json_schema(mode="serialization")
        self.defs.update(schema.pop("$defs", {}))
        for name in exclude:
            schema["properties"].pop(name, None)
            if name in schema.get("required", []):
                schema["required"].remove(name)
        return schema

    def dataclass(
        self, cls: type, exclude: tuple[str, ...] = (), description: str | None = None
    ) -> Schema:
        hints = typing.get_type_hints(cls)
        props = {
            f.name: self.hint(hints[f.name])
            for f in dataclasses.fields(cls)
            if f.name not in exclude
        }
        return {
            "title": cls.__name__,
            "description": description or (cls.__doc__ or "").strip().split("\n\n")[0],
            "type": "object",
            "properties": props,
            "required": list(props),
        }

    def hint(self, tp: Any) -> Schema:
        origin, args = get_origin(tp), get_args(tp)
        if origin in (Union, types.UnionType):
            options = [self.hint(a) for a in args if a is not type(None)]
            schema = options[0] if len(options) == 1 else {"anyOf": options}
            return {"anyOf": [schema, {"type": "null"}]} if type(None) in args else schema
        if origin is Literal:
            return {"enum": list(args)}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if origin in (list, tuple) or tp in (list, tuple) or tp is np.ndarray:
            return {"type": "array", "items": self.hint(args[0]) if args else {}}
        if origin is dict or tp is dict:
            return {"type": "object"}
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return self.model(tp)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.dataclass(tp)
        return {}  # Any

    def document(self, title: str, description: str, body: Schema) -> Schema:
        body = dict(body)
        body.pop("title", None)
        body.pop("description", None)
        props = {"schema_version": {"const": SCHEMA_VERSION}, **body["properties"]}
        required = ["schema_version", *[k for k in body.get("required", []) if k in props]]
        doc = {
            "$schema": DIALECT,
            "$id": f"hwsim:{title}/v{SCHEMA_VERSION}",
            "title": title,
            "description": description,
            **body,
            "properties": props,
            "required": required,
        }
        if self.defs:
            doc["$defs"] = dict(sorted(self.defs.items()))
        return _nullable_numbers(doc)


def _nullable_numbers(node: Any) -> Any:
    """Every ``"type": "number"`` may also be null (inf and NaN are written as null)."""
    if isinstance(node, dict):
        out = {k: _nullable_numbers(v) for k, v in node.items()}
        if out.get("type") == "number":
            out["type"] = ["number", "null"]
        return out
    if isinstance(node, list):
        return [_nullable_numbers(v) for v in node]
    return node


# -- the outputs -------------------------------------------------------------------------------

# optional until the outputs carry it: hwsim.model.param_summary.param_summary(model)
MODEL_PARAMS: Schema = {
    "description": "the model's parameter count (hwsim.model.param_summary.param_summary)",
    "type": "object",
    "properties": {
        "params": {"type": "integer"},
        "active_params_per_token": {
            "description": "MoE: parameters one token uses; null without MoE layers",
            "anyOf": [{"type": "integer"}, {"type": "null"}],
        },
    },
    "required": ["params", "active_params_per_token"],
}


def estimate_schema() -> Schema:
    from hwsim.inference.results import Estimate, OpRow

    b = _Builder()
    body = b.model(Estimate, exclude=("prefill_ops", "decode_ops"))
    rows = {"type": "array", "items": b.model(OpRow)}
    body["properties"]["ops"] = {
        "description": "one row per op: the prefill, and the mean decode step",
        "type": "object",
        "properties": {"prefill": rows, "decode": rows},
        "required": ["prefill", "decode"],
        "additionalProperties": False,
    }
    body["required"] = [*body.get("required", []), "ops"]
    body["properties"]["model"] = MODEL_PARAMS
    return b.document(
        "estimate",
        "`hwsim plan --json` for one deployment (a scenario without `traffic:`): memory, "
        "prefill, decode, latency, throughput and capacity of the deployment.",
        body,
    )


def plan_schema() -> Schema:
    from hwsim.planner.analytic import CandidateResult, Workload
    from hwsim.profiles.deployment import DeploymentSpec

    b = _Builder()
    candidate = b.dataclass(CandidateResult, exclude=("load_curve",))
    deployment = b.model(DeploymentSpec)
    candidate["properties"]["candidate"] = {
        "description": "the configuration: hardware, the deployment fields, and a label",
        "type": "object",
        "properties": {
            "hardware": {"type": "string"},
            **deployment["properties"],
            "label": {"type": "string"},
        },
    }
    body = {
        "type": "object",
        "properties": {
            "recommendation": {
                "type": "object",
                "properties": {
                    "sentence": {"type": "string"},
                    "candidate": {"anyOf": [candidate, {"type": "null"}]},
                },
                "required": ["sentence", "candidate"],
            },
            "workload": b.dataclass(Workload),
            "candidates": {
                "description": "feasible candidates cheapest first, then the pruned ones",
                "type": "array",
                "items": candidate,
            },
            "pareto": {
                "description": "labels of the candidates on the cost-TPOT Pareto front",
                "type": "array",
                "items": {"type": "string"},
            },
            "assumptions": {"type": "array", "items": {"type": "string"}},
            "model": MODEL_PARAMS,
        },
        "required": ["recommendation", "workload", "candidates", "pareto", "assumptions"],
        "additionalProperties": False,
    }
    return b.document(
        "plan",
        "`hwsim plan --json` for capacity planning (a scenario with `traffic:`): the "
        "recommendation, the summarised workload, every candidate priced or pruned.",
        body,
    )


def context_schema() -> Schema:
    from hwsim.inference.context import ROW_FIELDS, ContextSweep

    b = _Builder()
    body = b.dataclass(ContextSweep)
    for name in ROW_FIELDS:
        body["properties"][name] = {
            "description": "one value per (variant, length) row",
            "type": "array",
        }
    for name, what in (("assumptions", "assumptions made"), ("notes", "flags worth a footnote")):
        body["properties"][name] = {
            "description": what,
            "type": "array",
            "items": {"type": "string"},
        }
        body["required"].append(name)
    body["additionalProperties"] = False
    return b.document(
        "context",
        "`hwsim context --json`: the settings, then one list per row field, a row per "
        "(variant, context length).",
        body,
    )


def rag_schema() -> Schema:
    from hwsim.inference.results import Estimate
    from hwsim.rag.results import RagComparison

    b = _Builder()
    body = b.model(RagComparison)
    estimate = b.model(Estimate, exclude=("prefill_ops", "decode_ops"))
    for key in ("long_context_estimate", "rag_estimate"):
        body["properties"][key] = estimate
    return b.document(
        "rag",
        "`hwsim rag --json`: long context vs retrieval-augmented generation, per query.",
        body,
    )


def kernel_schema() -> Schema:
    from hwsim.perf.ladder import KernelTime

    b = _Builder()
    body = b.dataclass(KernelTime)
    body["additionalProperties"] = False
    return b.document(
        "kernel", "`hwsim kernel KERNEL --json`: one kernel call priced on one device.", body
    )


def validate_schema() -> Schema:
    b = _Builder()
    body = {
        "type": "object",
        "properties": {
            "hardware": {"type": "string"},
            "devices": {"type": "array", "items": {"type": "string"}},
            "summary": {"type": "object"},
            "rows": {"type": "array", "items": {"type": "object"}},
            "plots": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["hardware", "devices", "summary", "rows", "plots"],
    }
    return b.document(
        "validate",
        "`hwsim validate --measurements DIR --json`: predictions vs measurements, per row, "
        "and error summaries (hand-written; the validation package builds it).",
        body,
    )


SCHEMAS: dict[str, Callable[[], Schema]] = {
    "estimate": estimate_schema,
    "plan": plan_schema,
    "context": context_schema,
    "rag": rag_schema,
    "kernel": kernel_schema,
    "validate": validate_schema,
}


def schema(name: str) -> Schema:
    """The JSON Schema of one output (:data:`SCHEMAS`)."""
    return SCHEMAS[name]()


def register(app: typer.Typer) -> None:
    @app.command("schema")
    def schema_(
        name: str | None = typer.Argument(
            None, help=f"{' | '.join(SCHEMAS)} (default: all, as one object by name)"
        ),
    ) -> None:
        """Print the JSON Schema of a --json output (every output carries "schema_version")."""
        if name is None:
            out: Schema = {key: build() for key, build in SCHEMAS.items()}
        elif name in SCHEMAS:
            out = SCHEMAS[name]()
        else:
            fail(f"unknown schema {name!r}; allowed: {', '.join(SCHEMAS)}")
        typer.echo(json.dumps(out, indent=2))
