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


class SpeculativeSpec(BaseModel):
    """One speculative-decoding option a candidate may run (:mod:`hwsim.inference.speculative`):
    a drafter proposing ``k`` tokens per verify step at an acceptance rate."""

    model_config = STRICT
    draft: str = Field(
        description="a draft model profile (same tokenizer as the target) or draft heads: "
        "'eagle' or 'medusa'"
    )
    k: int = Field(ge=1, le=16, description="tokens proposed per verify step")
    acceptance: float | list[float] | str = Field(
        description="i.i.d. acceptance rate alpha in [0, 1), a per-position curve of "
        "conditional acceptances, or a published name (hwsim.inference.acceptance)"
    )
    draft_tp: int | None = Field(
        default=None,
        ge=1,
        description="the draft model's tensor-parallel degree (default: the target's)",
    )

    @model_validator(mode="after")
    def _known(self) -> SpeculativeSpec:
        from hwsim.errors import HwsimError
        from hwsim.inference.acceptance import acceptance_curve
        from hwsim.inference.speculative import HEADS

        try:
            acceptance_curve(self.acceptance, self.k)
        except HwsimError as exc:
            raise ValueError(f"acceptance: {exc}") from None
        if self.draft not in HEADS:
            from hwsim.model.load import load_model

            try:
                load_model(self.draft)
            except HwsimError as exc:
                raise ValueError(
                    f"draft: {exc} (or draft heads: {', '.join(sorted(HEADS))})"
                ) from None
        return self

    @property
    def label(self) -> str:
        return f"spec {self.draft} k={self.k}"


_OFF = (None, False, "none", "off")


def _speculative_list(v):
    """``speculative``: an option, ``none`` (plain decoding) or a list of them."""
    values = [None if value in _OFF else value for value in _as_list(v)]
    if not values:
        raise ValueError("needs at least one value: none or {draft, k, acceptance}")
    return values


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
    speculative: list[SpeculativeSpec | None] = Field(
        default_factory=lambda: list[SpeculativeSpec | None]([None]),
        description="none: plain decoding; {draft, k, acceptance, draft_tp}: speculative "
        "decoding (hwsim.planner.decode_variants); a list compares them",
    )
    ep: list[int] = Field(
        default_factory=lambda: [1],
        description="expert-parallel degrees (MoE): the routed experts over ep GPUs, ep / tp "
        "attention replicas, all-to-all dispatch and combine (hwsim.inference.expert_parallel)",
    )
    ep_imbalance: float = Field(
        default=1.0,
        ge=1.0,
        description="the busiest EP rank's routed tokens over the average (1: perfectly even)",
    )

    @field_validator("speculative", mode="before")
    @classmethod
    def _speculative(cls, v):
        return _speculative_list(v)

    @field_validator("ep", mode="before")
    @classmethod
    def _eps(cls, v):
        values = _as_list(v)
        if not values:
            raise ValueError("needs at least one value, e.g. [1, 8]")
        return list(dict.fromkeys(values))

    @field_validator("ep")
    @classmethod
    def _positive(cls, v):
        for value in v:
            if value < 1:
                raise ValueError(f"each ep must be >= 1, got {value}")
        return v

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
                    f"price_per_gpu_hour_usd, disaggregated, disaggregation, speculative, ep, "
                    f"ep_imbalance, "
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
            Candidate(hw, base.replace(**dict(zip(keys, combo))), spec, ep, self.ep_imbalance)
            for hw in self.hardware
            for combo in itertools.product(*self.searched.values())
            for spec in self.speculative
            for ep in self.ep
        ]


@dataclass(frozen=True)
class Candidate:
    """One configuration the planner prices: a device and how the model is deployed on it."""

    hardware: str
    deployment: DeploymentSpec
    speculative: SpeculativeSpec | None = None  # plain decoding when None
    ep: int = 1  # expert-parallel degree (MoE)
    ep_imbalance: float = 1.0

    disaggregated = False  # one pool; hwsim.planner.disaggregated's candidates have two

    @property
    def label(self) -> str:
        extra = "" if self.ep == 1 else f" ep{self.ep}"
        if self.speculative is not None:
            extra += f" {self.speculative.label}"
        return f"{self.hardware} {self.deployment.label}{extra}"

    @property
    def plain(self) -> bool:
        """A plain one-pool replica: no drafter, no EP group, not two pools (the layouts the
        disaggregated search builds its pools from)."""
        return not (self.disaggregated or self.speculative is not None or self.ep > 1)

    @property
    def gpus_per_replica(self) -> int | None:
        """GPUs of one replica when the candidate sets it (an EP group: ep x pp), else None
        (the deployment's tp x pp)."""
        return self.ep * self.deployment.pp if self.ep > 1 else None

    def to_dict(self) -> dict:
        return {
            "hardware": self.hardware,
            **self.deployment.model_dump(),
            "label": self.label,
            "disaggregated": self.disaggregated,
            "speculative": None if self.speculative is None else self.speculative.model_dump(),
            "ep": self.ep,
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
