"""How a model is deployed, as one frozen, validated object: :class:`DeploymentSpec`.

Everything except the model and the hardware: the parallel layout, the dtypes, the attention
implementation, the share of device memory the engine may use, the engine's batching settings
and the engine runtime around the kernels (``runtime``,
:class:`~hwsim.profiles.runtime.RuntimeSpec`). A scenario holds one
(:attr:`hwsim.profiles.scenario.Scenario.deployment`), every planner candidate carries one,
and :func:`hwsim.inference.deployment.make_deployment` resolves one against a model and a
device. Python keyword arguments and CLI flags become a spec in one
place, :meth:`DeploymentSpec.from_settings`.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from hwsim.dtypes import activation_dtype, kv_dtype, weight_dtype
from hwsim.errors import HwsimError, InfeasibleError
from hwsim.profiles.runtime import RuntimeSpec
from hwsim.profiles.sourced import STRICT

DEFAULT_MEMORY_UTILIZATION = 0.9  # vLLM's default gpu_memory_utilization
AttentionImpl = Literal["flash", "naive"]


class DeploymentSpec(BaseModel):
    """A deployment without its model and hardware. Defaults are vLLM's where it has one."""

    model_config = STRICT
    tp: int = Field(default=1, ge=1, description="tensor-parallel degree")
    pp: int = Field(default=1, ge=1, description="pipeline-parallel degree")
    dp: int = Field(default=1, ge=1, description="data-parallel replicas")
    weight_dtype: str = Field(default="bf16", description="fp32|bf16|fp16|fp8|fp6|int8|int4")
    kv_dtype: str = Field(default="bf16", description="fp32|bf16|fp16|fp8|fp6|int8|int4")
    activation_dtype: str = Field(default="bf16", description="fp32|bf16|fp16")
    attention_impl: AttentionImpl = Field(
        default="flash", description="flash (tiled, IO-aware) or naive (materialised scores)"
    )
    memory_utilization: float = Field(
        default=DEFAULT_MEMORY_UTILIZATION,
        gt=0,
        le=1,
        description="share of device memory for weights, KV cache and workspace",
    )
    max_num_seqs: int = Field(default=256, ge=1, description="sequences scheduled at once")
    max_num_batched_tokens: int = Field(
        default=8192, ge=1, description="tokens one engine iteration may process"
    )
    chunked_prefill: bool = Field(
        default=True, description="split long prompts into chunks that share iterations"
    )
    prefix_caching: bool = Field(
        default=False, description="skip the prefill of a prompt prefix already in KV"
    )
    runtime: RuntimeSpec = Field(
        default_factory=RuntimeSpec,
        description="the engine runtime: multi-step scheduling, host overheads, CUDA graphs "
        "(hwsim.profiles.runtime; default: kernels only)",
    )

    @field_validator("weight_dtype")
    @classmethod
    def _weight(cls, v: str) -> str:
        return _known(weight_dtype, v)

    @field_validator("kv_dtype")
    @classmethod
    def _kv(cls, v: str) -> str:
        return _known(kv_dtype, v)

    @field_validator("activation_dtype")
    @classmethod
    def _activation(cls, v: str) -> str:
        return _known(activation_dtype, v)

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def unsharded_settings(self) -> dict[str, int]:
        """The settings that undo the parallel layout: one device, one replica."""
        return {"tp": 1, "pp": 1, "dp": 1}

    @property
    def label(self) -> str:
        """Short description of the layout and dtypes, e.g. 'tp2 pp1 w:fp8 kv:fp8'."""
        return f"tp{self.tp} pp{self.pp} w:{self.weight_dtype} kv:{self.kv_dtype}"

    @classmethod
    def from_settings(cls, base: DeploymentSpec | None = None, **settings: Any) -> DeploymentSpec:
        """``base`` (default: all defaults) with ``settings`` applied; a setting given as None
        is left as it is in ``base``. The one mapping from keyword arguments and CLI flags to a
        spec: an unknown name or a bad value raises :class:`~hwsim.errors.InfeasibleError`
        naming it and what is allowed."""
        unknown = sorted(set(settings) - set(cls.model_fields))
        if unknown:
            raise InfeasibleError(
                f"unknown deployment setting(s) {unknown}; allowed: {', '.join(cls.model_fields)}"
            )
        given = {k: v for k, v in settings.items() if v is not None}
        if not given and (base is None or type(base) is cls):  # immutable, so share it
            return base if base is not None else _default_spec(cls)
        start = base or _default_spec(cls)
        key = _settings_key(cls, start, given)
        held = _SPECS.get(key) if key is not None else None
        if held is not None and held[0] is start:
            return held[1]
        try:
            spec = cls.model_validate(start.model_dump() | given)
        except ValidationError as exc:
            raise InfeasibleError(_describe(exc)) from None
        if key is not None:
            if len(_SPECS) >= SPEC_CACHE_SIZE:
                _SPECS.pop(next(iter(_SPECS)))
            _SPECS[key] = (start, spec)  # the base is held, so its id is not reused meanwhile
        return spec

    def replace(self, **settings: Any) -> DeploymentSpec:
        """This spec with ``settings`` changed (validated; see :meth:`from_settings`)."""
        return DeploymentSpec.from_settings(self, **settings)


@cache
def _default_spec(cls: type[DeploymentSpec]) -> DeploymentSpec:
    return cls()


SPEC_CACHE_SIZE = 256
# (spec class, base spec, settings) -> (base, spec): specs are frozen, so equal settings on
# the same base give an equal spec; a repeated keyword call reuses it instead of revalidating
_SPECS: dict[tuple[Any, ...], tuple[DeploymentSpec, DeploymentSpec]] = {}


def _settings_key(cls: type, base: DeploymentSpec, given: dict[str, Any]) -> tuple | None:
    """A hashable key for ``given`` on ``base``, or None when a value is unhashable (a dict)."""
    items = tuple(sorted((k, type(v), v) for k, v in given.items()))
    try:
        hash(items)
    except TypeError:
        return None
    return (cls, id(base), items)


def _known(lookup, name: str) -> str:
    try:
        lookup(name)
    except HwsimError as exc:
        raise ValueError(str(exc)) from None
    return name


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg} (got {err.get('input')!r})")
    return "; ".join(parts)
