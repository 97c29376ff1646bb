"""A run in stages: a sequence-length curriculum (e.g. 8K-token pre-training, then long-context
stages with context parallelism), each stage its own layout and token count.

    from hwsim.training.curriculum import train_curriculum
    run = train_curriculum("llama-3.1-405b", "h100-sxm", 16384, stages=[
        {"tokens": 15e12, "tp": 8, "pp": 16, "seq_len": 8192, "global_batch": 2048},
        {"tokens": 8e11, "tp": 8, "cp": 16, "pp": 16, "seq_len": 131072, "global_batch": 128},
    ])
    run.time_s, run.cost_usd, [s.throughput.mfu for s in run.stages]

Each stage is :func:`hwsim.training.train` of the base settings with the stage's overrides
(any :class:`~hwsim.training.spec.TrainingSpec` setting by its short name, and ``gpus``) and
``total_tokens`` = the stage's ``tokens``; the run's time, GPU-hours and cost are the stages'
sums (the switch between stages is not priced).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from hwsim.errors import HwsimError
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.model import ModelProfile
from hwsim.training.results import TrainingResult
from hwsim.training.spec import TrainingSpec, setting_names

STAGE_KEYS = ("tokens", "gpus", "name")


class CurriculumResult(BaseModel):
    """The stages' results and the run's totals."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stages: list[TrainingResult]
    names: list[str]
    total_tokens: float
    time_s: float
    gpu_hours: float
    cost_usd: float | None  # None where a stage's hardware has no price

    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [
                {"name": n, **s.to_dict()} for n, s in zip(self.names, self.stages, strict=True)
            ],
            "run": {
                "total_tokens": self.total_tokens,
                "time_s": self.time_s,
                "gpu_hours": self.gpu_hours,
                "cost_usd": self.cost_usd,
            },
        }


def check_stage(stage: Any, index: int) -> dict[str, Any]:
    """A stage is a mapping with positive ``tokens`` and known setting names."""
    where = f"curriculum[{index}]"
    if not isinstance(stage, dict):
        raise HwsimError(f"{where}: a stage is a mapping (tokens: ..., seq_len: ..., ...)")
    allowed = set(STAGE_KEYS) | set(setting_names())
    unknown = sorted(set(stage) - allowed)
    if unknown:
        raise HwsimError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    tokens = stage.get("tokens")
    try:
        value = float(str(tokens)) if tokens is not None else None
    except ValueError:
        value = None
    if value is None or not value > 0:
        raise HwsimError(f"{where}.tokens: a positive number of tokens, got {tokens!r}")
    return {**stage, "tokens": value}


def train_curriculum(
    model: str | Path | ModelProfile,
    hardware: str | Path | HardwareProfile,
    gpus: int | None,
    spec: TrainingSpec | None = None,
    *,
    stages: list[dict[str, Any]],
) -> CurriculumResult:
    """Price every stage (module docstring) and add them up."""
    from hwsim.training.api import train

    if not stages:
        raise HwsimError("curriculum: give at least one stage")
    results, names = [], []
    for i, raw in enumerate(stages):
        stage = check_stage(raw, i)
        settings = {k: v for k, v in stage.items() if k not in STAGE_KEYS}
        try:
            r = train(
                model,
                hardware,
                stage.get("gpus", gpus),
                TrainingSpec.from_settings(spec, **settings),
                total_tokens=stage["tokens"],
            )
        except HwsimError as exc:
            raise HwsimError(f"curriculum[{i}]: {exc}") from None
        results.append(r)
        names.append(str(stage.get("name") or f"stage {i + 1}"))
    costs = [r.run.cost_usd for r in results]
    return CurriculumResult(
        stages=results,
        names=names,
        total_tokens=sum(float(r.run.total_tokens or 0.0) for r in results),
        time_s=sum(float(r.run.time_s or 0.0) for r in results),
        gpu_hours=sum(float(r.run.gpu_hours or 0.0) for r in results),
        cost_usd=None if any(c is None for c in costs) else sum(c for c in costs if c is not None),
    )
