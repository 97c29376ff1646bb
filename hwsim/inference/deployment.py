"""A resolved deployment: a model, a device and a :class:`DeploymentSpec`, checked once."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hwsim.dtypes import DType, activation_dtype, kv_dtype, weight_dtype
from hwsim.errors import InfeasibleError
from hwsim.lean import per_object
from hwsim.model.load import load_model
from hwsim.perf.measured import MeasurementSet, as_measurement_set
from hwsim.profiles.deployment import AttentionImpl, DeploymentSpec
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.loader import load_hardware
from hwsim.profiles.model import ModelProfile


@dataclass(frozen=True)
class Deployment:
    """A :class:`~hwsim.profiles.deployment.DeploymentSpec` resolved against a model and a
    device: dtypes looked up, the layout checked against the model's heads and layers.
    ``measurements``: kernel measurements the pricing ladder prefers where they cover a shape."""

    model: ModelProfile
    hardware: HardwareProfile
    spec: DeploymentSpec
    weight: DType
    kv: DType
    act: DType
    measurements: MeasurementSet | None = None

    def with_settings(self, **settings: Any) -> Deployment:
        """The same model and device with some DeploymentSpec fields changed (re-checked)."""
        return make_deployment(
            self.model,
            self.hardware,
            self.spec.replace(**settings),
            measurements=self.measurements,
        )

    @property
    def tp(self) -> int:
        return self.spec.tp

    @property
    def pp(self) -> int:
        return self.spec.pp

    @property
    def dp(self) -> int:
        return self.spec.dp

    @property
    def attention_impl(self) -> AttentionImpl:
        return self.spec.attention_impl

    @property
    def memory_utilization(self) -> float:
        return self.spec.memory_utilization

    @property
    def usable_bytes(self) -> float:
        """Device memory the engine may fill: capacity x memory_utilization."""
        return self.hardware.capacity_bytes * self.spec.memory_utilization

    @property
    def gpus_per_replica(self) -> int:
        return self.spec.gpus_per_replica

    @property
    def gpus(self) -> int:
        return self.spec.gpus

    @property
    def compute_dtype(self) -> str:
        """Matmul dtype: fp8/int8 weights run on fp8/int8 units when the device has them
        (W8A8); other quantised weights are dequantised and multiplied in the activation dtype."""
        if self.weight.name in ("fp8", "int8") and self.hardware.has_matrix_dtype(self.weight.name):
            return self.weight.name
        if self.weight.name == "fp32":
            return "fp32" if self.hardware.has_matrix_dtype("fp32") else "tf32"
        return self.act.name

    @property
    def stage_layers(self) -> list[int]:
        """Layers on each pipeline stage: as even as possible, the first stages take the extra
        ones (Megatron-LM's default split); the fullest stage sets memory and pace."""
        n, pp = self.model.n_layers, self.pp
        return [n // pp + (1 if i < n % pp else 0) for i in range(pp)]

    @property
    def stage_layer_fraction(self) -> float:
        """Share of the layers on the most loaded pipeline stage."""
        n = self.model.n_layers
        return math.ceil(n / self.pp) / n


def make_deployment(
    model: str | Path | ModelProfile,
    hardware: str | Path | HardwareProfile,
    spec: DeploymentSpec | None = None,
    *,
    measurements: str | Path | MeasurementSet | None = None,
    **settings: Any,
) -> Deployment:
    """Resolve ``spec`` (default: all defaults) with any ``settings`` (DeploymentSpec fields,
    e.g. ``tp=2, weight_dtype="fp8"``) against ``model`` and ``hardware``."""
    spec = DeploymentSpec.from_settings(spec, **settings)
    m, hw = load_model(model), load_hardware(hardware)
    if measurements is not None:
        return _resolve(m, hw, spec, as_measurement_set(measurements))
    key = (id(m), id(hw), id(spec))
    held = _RESOLVED.get(key)
    # the held objects are kept alive with it, so an id is never reused while it is held
    if held is not None and held.model is m and held.hardware is hw and held.spec is spec:
        return held
    dep = _resolve(m, hw, spec, None)
    if len(_RESOLVED) >= RESOLVED_CACHE_SIZE:
        _RESOLVED.pop(next(iter(_RESOLVED)))
    _RESOLVED[key] = dep
    return dep


RESOLVED_CACHE_SIZE = 128
# (model, device, spec) -> Deployment: the profiles and specs are immutable and the loader
# hands back the same objects until a file changes, so a repeated call reuses its resolution
_RESOLVED: dict[tuple[int, int, int], Deployment] = {}


def _resolve(
    m: ModelProfile, hw: HardwareProfile, spec: DeploymentSpec, measured: MeasurementSet | None
) -> Deployment:
    """Check ``spec``'s layout against the model and look its dtypes up."""
    tp = spec.tp
    if m.n_heads and m.n_heads % tp:
        raise InfeasibleError(
            f"tp={tp} does not divide the {m.n_heads} attention heads of {m.id}; "
            f"allowed tp: {', '.join(str(d) for d in _divisors(m.n_heads))}"
        )
    kvh = m.kv_heads
    if kvh and kvh % tp and tp % kvh:
        raise InfeasibleError(
            f"tp={tp} neither divides nor is a multiple of the {kvh} KV heads of {m.id}"
        )
    if spec.pp > m.n_layers:
        raise InfeasibleError(f"pp={spec.pp} exceeds the {m.n_layers} layers of {m.id}")
    return Deployment(
        model=m,
        hardware=hw,
        spec=spec,
        weight=weight_dtype(spec.weight_dtype),
        kv=kv_dtype(spec.kv_dtype),
        act=activation_dtype(spec.activation_dtype),
        measurements=measured,
    )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


T = TypeVar("T")


def per_deployment(fn: Callable[[Deployment], T]) -> Callable[[Deployment], T]:
    """Memoise ``fn(dep)``, a pure function of an (immutable) deployment, per deployment
    object (:func:`hwsim.lean.per_object`)."""
    return per_object(fn)
