"""The planner's scenario sections: ``candidates`` and ``serving`` (``traffic`` and ``slo``
are :class:`hwsim.serving.traffic.TrafficSpec` and :class:`hwsim.profiles.scenario.SLO`)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hwsim.profiles.deployment import DeploymentSpec

STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _as_list(v):
    return v if isinstance(v, list) else [v]


class DisaggregationSpec(BaseModel):
    """How disaggregated candidates (``candidates.disaggregated: true``) are priced
    (:mod:`hwsim.planner.disaggregated`, :mod:`hwsim.inference.kv_transfer`)."""

    model_config = STRICT
    placement: Literal["auto", "same_node", "cross_node"] = Field(
        default="auto",
        description="where a prefill and a decode replica sit: auto = one node when both fit "
        "(same device), else across nodes; the KV cache moves over NVLink/xGMI or the NIC",
    )
    kv_overlap: Literal["layerwise", "none"] = Field(
        default="layerwise",
        description="layerwise: each layer's KV is sent while the next layers prefill "
        "(Splitwise, DistServe); none: the whole cache after the prefill",
    )
    first_token_from: Literal["decode", "prefill"] = Field(
        default="decode",
        description="decode: the user's stream comes from the decode instance, so the TTFT "
        "includes the exposed KV transfer and one decode step (conservative); prefill: the "
        "prefill instance returns the first token (DistServe, Splitwise) and the transfer "
        "delays the second",
    )


def _bool_list(v):
    """``disaggregated``: true, false or a list of them; anything else is refused by name."""
    values = _as_list(v)
    if not values:
        raise ValueError("needs at least one value: true, false or [false, true]")
    for value in values:
        if not isinstance(value, bool):
            raise ValueError(
                f"expected true, false or a list of them such as [false, true]; {value!r} is "
                "not a boolean"
            )
    return list(dict.fromkeys(values))


class CandidatesSpec(BaseModel):
    """Lists to search over (a single value is a one-element list): ``hardware`` plus any
    :class:`~hwsim.profiles.deployment.DeploymentSpec` field (``tp``, ``weight_dtype``,
    ``attention_impl``, ``memory_utilization``, ``max_num_seqs``, ...). A field not listed
    takes the scenario's deployment value."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    hardware: list[str]
    price_per_gpu_hour_usd: dict[str, float] = Field(
        default_factory=dict, description="overrides of the hardware profiles' prices"
    )
    disaggregated: list[bool] = Field(
        default_factory=lambda: [False],
        description="false: one pool runs prefill and decode (aggregated); true: a prefill "
        "pool and a decode pool, each from the hardware and deployment lists "
        "(hwsim.planner.disaggregated); [false, true] compares both",
    )
    disaggregation: DisaggregationSpec = Field(default_factory=DisaggregationSpec)

    @field_validator("hardware", mode="before")
    @classmethod
    def _listify(cls, v):
        return _as_list(v)

    @field_validator("disaggregated", mode="before")
    @classmethod
    def _bools(cls, v):
        return _bool_list(v)

    @model_validator(mode="after")
    def _deployment_lists(self) -> CandidatesSpec:
        allowed = DeploymentSpec.model_fields
        for key, values in (self.model_extra or {}).items():
            if key not in allowed:
                raise ValueError(
                    f"{key}: unknown field (check the spelling); allowed: hardware, "
                    f"price_per_gpu_hour_usd, disaggregated, disaggregation, "
                    f"{', '.join(allowed)}"
                )
            values = _as_list(values)
            if not values:
                raise ValueError(f"{key}: needs at least one value")
            for value in values:
                try:
                    DeploymentSpec.model_validate({key: value})
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
                    raise ValueError(f"{key}: {msg} (got {value!r})") from None
            self.model_extra[key] = values  # type: ignore[index]
        return self

    @property
    def searched(self) -> dict[str, list]:
        """Deployment field -> the values searched over."""
        return dict(self.model_extra or {})

    def expand(self, base: DeploymentSpec | None = None) -> list[Candidate]:
        """Every combination of hardware and the searched values, over ``base``."""
        base = base or DeploymentSpec()
        keys = list(self.searched)
        return [
            Candidate(hw, base.replace(**dict(zip(keys, combo))))
            for hw in self.hardware
            for combo in itertools.product(*self.searched.values())
        ]


@dataclass(frozen=True)
class Candidate:
    """One configuration the planner prices: a device and how the model is deployed on it."""

    hardware: str
    deployment: DeploymentSpec

    disaggregated = False  # one pool; hwsim.planner.disaggregated's candidates have two

    @property
    def label(self) -> str:
        return f"{self.hardware} {self.deployment.label}"

    def to_dict(self) -> dict:
        return {
            "hardware": self.hardware,
            **self.deployment.model_dump(),
            "label": self.label,
            "disaggregated": self.disaggregated,
        }


class CandidatesSection(BaseModel):
    """``candidates:`` as a section of a scenario file, so that errors name
    ``candidates.<field>`` next to the file."""

    model_config = STRICT
    candidates: CandidatesSpec


class ServingSpec(BaseModel):
    """How the planner confirms its analytic answer with the serving simulator."""

    model_config = STRICT
    simulate_top: int = Field(default=3, ge=0)
    n_requests: int = Field(default=2000, ge=10)
    seed: int = 0
    block_size_tokens: int = Field(default=16, ge=1)
