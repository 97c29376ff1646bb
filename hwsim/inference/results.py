"""Typed results: one record whose tables, JSON and plots are all views.

Fields hold floats for scalar calls and numpy arrays for sweeps (same shapes as the inputs
broadcast together). Dotted JSON keys such as ``memory.kv_cache_bytes`` are a stable contract.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, PrivateAttr, computed_field, model_validator

from hwsim.profiles.deployment import DeploymentSpec

Num = Union[float, int, np.ndarray]  # noqa: UP007 - pydantic needs the runtime union
Label = Union[str, np.ndarray]  # noqa: UP007


class _Section(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _plain_scalars(cls, data: Any) -> Any:
        """0-d arrays and numpy scalars become Python floats, bools and str (a scalar call
        reads as plain numbers; sweeps keep their arrays)."""
        if not isinstance(data, dict):
            return data
        return {k: _plain(v) for k, v in data.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value
    if isinstance(value, np.generic):
        return value.item()
    return value


class Memory(_Section):
    """Per GPU (the most loaded one of the group)."""

    weights_bytes: Num
    kv_cache_bytes_per_token: Num
    kv_cache_bytes: Num
    state_bytes_per_sequence: Num
    # transient activations of one prefill chunk (inference.capacity.prefill_workspace_bytes):
    # the same workspace capacity.max_batch leaves room for, so fits == (batch <= max_batch)
    activation_workspace_bytes: Num
    total_bytes: Num
    capacity_bytes: Num
    usable_bytes: Num
    fits: Any


class Prefill(_Section):
    flops: Num
    hbm_bytes: Num
    time_s: Num
    bound: Label
    pipeline_bubble_fraction: Num


class Decode(_Section):
    flops_per_token: Num
    hbm_bytes_per_step: Num
    time_per_token_s: Num
    bound: Label
    bandwidth_floor_s: Num


class Latency(_Section):
    """Point values; on a calibrated profile also the p10-p90 band (``*_low_s``,
    ``*_high_s``; None on an uncalibrated profile, whose values are the fitted-free model)."""

    ttft_s: Num
    tpot_s: Num
    e2e_s: Num
    ttft_low_s: Num | None = None
    ttft_high_s: Num | None = None
    tpot_low_s: Num | None = None
    tpot_high_s: Num | None = None
    e2e_low_s: Num | None = None
    e2e_high_s: Num | None = None
    band: str | None = None


class Throughput(_Section):
    output_tokens_per_s: Num
    decode_tokens_per_s: Num  # NaN where gen_len is 0 (no decode)
    prompt_tokens_per_s: Num = float("nan")  # batch x prompt / TTFT, over dp replicas


class Capacity(_Section):
    context_tokens: Num
    max_batch: Num
    max_context_tokens: Num
    users_per_gpu: Num
    binding_constraint: Label


class Attention(_Section):
    pairs_per_head_per_layer: Num
    score_matrix_elements_per_head_per_layer: Num
    score_matrix_bytes: Num


class Context(_Section):
    max_trained_tokens: int
    max_supported_tokens: int
    extrapolation: Any  # some layer relates positions farther apart than trained or scaled for
    rope_factor_needed: Num
    position_status: Label = "within"  # hwsim.model.positions.STATUSES
    position_note: str = ""


class Config(_Section):
    model: str
    hardware: str
    deployment: DeploymentSpec
    gpus: int
    layers_per_stage: list[int]  # pipeline split of the layers (one entry when pp = 1)
    batch: Num
    prompt_len: Num
    gen_len: Num
    predictor: str
    tpot_slo_s: float | None = None


class OpRow(_Section):
    name: str
    op_class: str
    count: int
    time_s: float
    bound: str
    flops: float
    hbm_bytes: float


class Estimate(_Section):
    config: Config
    memory: Memory
    prefill: Prefill
    decode: Decode
    latency: Latency
    throughput: Throughput
    capacity: Capacity
    attention: Attention
    context: Context
    # (prefill rows, decode rows) built on first read; scalar calls only (None: no rows)
    _op_rows: Callable[[], tuple[list[OpRow], list[OpRow]]] | None = PrivateAttr(default=None)

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def prefill_ops(self) -> list[OpRow]:
        """One row per op of the prefill (scalar calls; empty for sweeps)."""
        return self._rows[0]

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def decode_ops(self) -> list[OpRow]:
        """One row per op of the mean decode step (scalar calls; empty for sweeps)."""
        return self._rows[1]

    @cached_property
    def _rows(self) -> tuple[list[OpRow], list[OpRow]]:
        return self._op_rows() if self._op_rows is not None else ([], [])

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values (the JSON contract)."""
        out: dict[str, Any] = {}

        def walk(prefix: str, values: dict[str, Any]) -> None:
            for key, value in values.items():
                if isinstance(value, dict):
                    walk(f"{prefix}{key}.", value)
                else:
                    out[f"{prefix}{key}"] = value

        walk("", self.model_dump(exclude={"prefill_ops", "decode_ops"}))
        return out

    def _repr_html_(self) -> str:  # notebooks
        from hwsim.inference.display import estimate_html

        return estimate_html(self)

    def __rich__(self):  # rich console
        from hwsim.inference.display import estimate_tables

        return estimate_tables(self)
