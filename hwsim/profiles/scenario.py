"""Scenario YAML: which model on which hardware, laid out how, serving what workload.

Hardware, model and scenario are three separate documents; the scenario names the first two
by id or path (paths relative to the scenario file). Sections the planner and the RAG
comparison read (``traffic``, ``candidates``, ``rag``) are validated by those components.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.loader import read_yaml, validate
from hwsim.units import UnitError, parse_quantity

STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Workload(BaseModel):
    model_config = STRICT
    batch: int = Field(default=1, ge=1)
    prompt_len: int = Field(default=512, ge=1)
    gen_len: int = Field(default=128, ge=0)  # 0: prefill only (embedding, scoring, encoders)


class SLO(BaseModel):
    """Latency objectives; values may carry units ('50 ms'), plain numbers are seconds."""

    model_config = STRICT
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    ttft_p99_s: float | None = None
    tpot_p95_s: float | None = None
    e2e_p95_s: float | None = None
    headroom_fraction: float = Field(default=0.0, ge=0, lt=1)
    # p50: the planner checks each SLO at the point value (the model's median); p90: at the
    # p10-p90 band's pessimistic (high) edge, on a profile with a band (calibrated, measured)
    confidence: Literal["p50", "p90"] = "p50"

    @field_validator(
        "ttft_p50_s", "ttft_p95_s", "ttft_p99_s", "tpot_p95_s", "e2e_p95_s", mode="before"
    )
    @classmethod
    def _seconds(cls, v: Any) -> Any:
        if v is None:
            return v
        try:
            seconds = parse_quantity(v, "s")
        except UnitError as exc:
            raise ValueError(str(exc)) from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError("must be a finite time > 0")
        return seconds


# Sections of earlier scenario files that are parts of the deployment: section -> {key: field}.
DEPLOYMENT_SECTIONS = {
    "parallel": {"tp": "tp", "pp": "pp", "dp": "dp"},
    "precision": {"weights": "weight_dtype", "kv": "kv_dtype", "activations": "activation_dtype"},
}
DEPLOYMENT_KEYS = ("attention_impl", "memory_utilization")  # top-level keys of the deployment


def fold_deployment(data: Any) -> Any:
    """Scenario YAML -> one ``deployment`` mapping: the ``deployment:`` section plus the
    ``parallel:`` / ``precision:`` sections and top-level ``attention_impl`` /
    ``memory_utilization`` (each setting may be given in one place only)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    deployment = data.get("deployment") or {}
    if not isinstance(deployment, dict):
        raise ValueError("deployment: expected a mapping of setting: value")
    deployment = dict(deployment)
    given_in: dict[str, str] = {k: f"deployment.{k}" for k in deployment}

    def put(field: str, value: Any, where: str) -> None:
        if field in given_in:
            raise ValueError(f"{where}: {field} is already given as {given_in[field]}")
        deployment[field], given_in[field] = value, where

    for section, keys in DEPLOYMENT_SECTIONS.items():
        values = data.pop(section, None) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{section}: expected a mapping, got {values!r}")
        for key, value in values.items():
            if key not in keys:
                raise ValueError(
                    f"{section}.{key}: unknown field (check the spelling); allowed: "
                    f"{', '.join(keys)}"
                )
            put(keys[key], value, f"{section}.{key}")
    for key in DEPLOYMENT_KEYS:
        if key in data:
            put(key, data.pop(key), key)
    data["deployment"] = deployment
    return data


class Scenario(BaseModel):
    """A scenario file: model and hardware references, how the model is deployed, the
    workload of a single estimate, SLOs, and the sections the planner and RAG read."""

    model_config = STRICT
    name: str | None = None
    description: str | None = None
    model: str
    hardware: str
    deployment: DeploymentSpec = DeploymentSpec()
    workload: Workload = Workload()
    slo: SLO = SLO()
    traffic: dict[str, Any] | None = None
    candidates: dict[str, Any] | None = None
    serving: dict[str, Any] | None = None
    rag: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _fold(cls, data: Any) -> Any:
        return fold_deployment(data)


def _resolve_ref(ref: str, base: Path) -> str:
    """A profile reference that names a file next to the scenario becomes that path."""
    candidate = base / ref
    if ref.endswith((".yaml", ".yml", ".json")) and candidate.is_file():
        return str(candidate)
    return ref


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    data = read_yaml(path)
    scenario = validate(Scenario, data, str(path))
    base = path.parent
    return scenario.model_copy(
        update={
            "model": _resolve_ref(scenario.model, base),
            "hardware": _resolve_ref(scenario.hardware, base),
        }
    )
