"""Scenario YAML: which model on which hardware, laid out how, serving what workload.

Hardware, model and scenario are three separate documents; the scenario names the first two
by id or path (paths relative to the scenario file). Sections the planner and the RAG
comparison read (``traffic``, ``candidates``, ``rag``) are validated by those components.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hwsim.inference.deployment import DEFAULT_MEMORY_UTILIZATION
from hwsim.profiles.loader import read_yaml, validate
from hwsim.units import UnitError, parse_quantity

STRICT = ConfigDict(extra="forbid", frozen=True)


class Parallel(BaseModel):
    model_config = STRICT
    tp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    dp: int = Field(default=1, ge=1)


class Precision(BaseModel):
    model_config = STRICT
    weights: str = "bf16"
    kv: str = "bf16"
    activations: str = "bf16"


class Workload(BaseModel):
    model_config = STRICT
    batch: int = Field(default=1, ge=1)
    prompt_len: int = Field(default=512, ge=1)
    gen_len: int = Field(default=128, ge=1)


class SLO(BaseModel):
    """Latency objectives; values may carry units ('50 ms'), plain numbers are seconds."""

    model_config = STRICT
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    ttft_p99_s: float | None = None
    tpot_p95_s: float | None = None
    e2e_p95_s: float | None = None
    headroom_fraction: float = Field(default=0.0, ge=0, lt=1)

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
        if seconds <= 0:
            raise ValueError(f"must be > 0, got {v!r}")
        return seconds


class Scenario(BaseModel):
    model_config = STRICT
    name: str | None = None
    description: str | None = None
    model: str
    hardware: str
    parallel: Parallel = Parallel()
    precision: Precision = Precision()
    workload: Workload = Workload()
    slo: SLO = SLO()
    attention_impl: Literal["flash", "naive"] = "flash"
    memory_utilization: float = Field(default=DEFAULT_MEMORY_UTILIZATION, gt=0, le=1)
    traffic: dict[str, Any] | None = None
    candidates: dict[str, Any] | None = None
    serving: dict[str, Any] | None = None
    rag: dict[str, Any] | None = None


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
