"""A resolved deployment: model + hardware + parallel layout + dtypes, checked once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from hwsim.dtypes import DType, activation_dtype, kv_dtype, weight_dtype
from hwsim.errors import InfeasibleError
from hwsim.model.load import load_model
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.loader import load_hardware
from hwsim.profiles.model import ModelProfile

DEFAULT_MEMORY_UTILIZATION = 0.9  # vLLM's default gpu_memory_utilization


@dataclass(frozen=True)
class Deployment:
    model: ModelProfile
    hardware: HardwareProfile
    tp: int = 1
    pp: int = 1
    dp: int = 1
    weight: DType = weight_dtype("bf16")
    kv: DType = kv_dtype("bf16")
    act: DType = activation_dtype("bf16")
    attention_impl: Literal["flash", "naive"] = "flash"
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

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
    def stage_layer_fraction(self) -> float:
        """Share of the layers on the most loaded pipeline stage."""
        n = self.model.n_layers
        return math.ceil(n / self.pp) / n


def make_deployment(
    model,
    hardware,
    *,
    tp: int = 1,
    pp: int = 1,
    dp: int = 1,
    weight_dtype_name: str = "bf16",
    kv_dtype_name: str = "bf16",
    activation_dtype_name: str = "bf16",
    attention_impl: str = "flash",
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
) -> Deployment:
    m, hw = load_model(model), load_hardware(hardware)
    for name, value in (("tp", tp), ("pp", pp), ("dp", dp)):
        if int(value) != value or value < 1:
            raise InfeasibleError(f"{name} must be a positive integer, got {value}")
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
    if pp > m.n_layers:
        raise InfeasibleError(f"pp={pp} exceeds the {m.n_layers} layers of {m.id}")
    if attention_impl not in ("flash", "naive"):
        raise InfeasibleError(f"attention_impl {attention_impl!r}; allowed: flash, naive")
    if not 0 < memory_utilization <= 1:
        raise InfeasibleError(f"memory_utilization must be in (0, 1], got {memory_utilization}")
    return Deployment(
        model=m,
        hardware=hw,
        tp=int(tp),
        pp=int(pp),
        dp=int(dp),
        weight=weight_dtype(weight_dtype_name),
        kv=kv_dtype(kv_dtype_name),
        act=activation_dtype(activation_dtype_name),
        attention_impl=attention_impl,  # type: ignore[arg-type]
        memory_utilization=memory_utilization,
    )


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
