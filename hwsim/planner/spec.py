"""The planner's scenario sections: ``candidates`` and ``serving`` (``traffic`` and ``slo``
are :class:`hwsim.serving.traffic.TrafficSpec` and :class:`hwsim.profiles.scenario.SLO`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

STRICT = ConfigDict(extra="forbid", frozen=True)


def _as_list(v):
    return v if isinstance(v, list) else [v]


class CandidatesSpec(BaseModel):
    """Lists to search over (a single value is a one-element list)."""

    model_config = STRICT
    hardware: list[str]
    tp: list[int] = [1]
    pp: list[int] = [1]
    weight_dtype: list[str] = ["bf16"]
    kv_dtype: list[str] = ["bf16"]
    max_num_seqs: list[int] = [256]
    max_num_batched_tokens: list[int] = [8192]
    chunked_prefill: bool = True
    prefix_caching: bool = False
    price_per_gpu_hour_usd: dict[str, float] = Field(
        default_factory=dict, description="overrides of the hardware profiles' prices"
    )

    @field_validator(
        "hardware",
        "tp",
        "pp",
        "weight_dtype",
        "kv_dtype",
        "max_num_seqs",
        "max_num_batched_tokens",
        mode="before",
    )
    @classmethod
    def _listify(cls, v):
        return _as_list(v)

    @field_validator("tp", "pp", "max_num_seqs", "max_num_batched_tokens")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(x < 1 for x in v):
            raise ValueError(f"needs positive integers, got {v}")
        return v

    def expand(self) -> list[Candidate]:
        return [
            Candidate(hw, tp, pp, wd, kd, seqs, tokens, self.chunked_prefill, self.prefix_caching)
            for hw, tp, pp, wd, kd, seqs, tokens in itertools.product(
                self.hardware,
                self.tp,
                self.pp,
                self.weight_dtype,
                self.kv_dtype,
                self.max_num_seqs,
                self.max_num_batched_tokens,
            )
        ]


@dataclass(frozen=True)
class Candidate:
    hardware: str
    tp: int
    pp: int
    weight_dtype: str
    kv_dtype: str
    max_num_seqs: int
    max_num_batched_tokens: int
    chunked_prefill: bool
    prefix_caching: bool

    @property
    def label(self) -> str:
        return f"{self.hardware} tp{self.tp} pp{self.pp} w:{self.weight_dtype} kv:{self.kv_dtype}"


class ServingSpec(BaseModel):
    """How the planner confirms its analytic answer with the serving simulator."""

    model_config = STRICT
    simulate_top: int = Field(default=3, ge=0)
    n_requests: int = Field(default=2000, ge=10)
    seed: int = 0
    block_size_tokens: int = Field(default=16, ge=1)
