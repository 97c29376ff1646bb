"""Typed results: one record whose tables, JSON and plots are all views.

Fields hold floats for scalar calls and numpy arrays for sweeps (same shapes as the inputs
broadcast together). Dotted JSON keys such as ``memory.kv_cache_bytes`` are a stable contract.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property, partial
from typing import Any, TypeVar, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, PrivateAttr, computed_field, model_validator

from hwsim.profiles.deployment import DeploymentSpec

Num = Union[float, int, np.ndarray]  # noqa: UP007 - pydantic needs the runtime union
Label = Union[str, np.ndarray]  # noqa: UP007
S = TypeVar("S", bound="_Section")


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

    @classmethod
    def built(cls: type[S], **values: Any) -> S:
        """An instance of values hwsim computed itself, whose types hold by construction:
        the same plain scalars as validation makes (:meth:`_plain_scalars`), without
        validating each field again (a scalar ``estimate`` builds ten of these)."""
        return cls.model_construct(**{k: _plain(v) for k, v in values.items()})


def _plain(value: Any) -> Any:
    kind = type(value)
    if kind is float or kind is str or kind is int or value is None:
        return value
    if kind is np.float64:  # (a float subclass: float() is its .item())
        return float(value)
    if kind is np.ndarray:
        return value.item() if value.ndim == 0 else value
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


BAND_FIELDS = (
    "ttft_low_s",
    "ttft_high_s",
    "tpot_low_s",
    "tpot_high_s",
    "e2e_low_s",
    "e2e_high_s",
    "band",
)


def _band_field(name: str):
    """A computed field of :class:`Latency` read from its band (None where there is none)."""

    def read(self: Latency) -> Num | str | None:
        return self._band_fields.get(name)

    read.__name__ = name
    return computed_field(return_type=Union[Num, str, None])(property(read))  # noqa: UP007


class Latency(_Section):
    """Point values, and their p10-p90 band: ``*_low_s``, ``*_high_s`` and ``band`` (where
    the band comes from, in words), None where no rung gives one. The band is computed when
    one of its fields is first read, or the record is dumped: a sweep or a call that reads
    only the point values never prices it."""

    ttft_s: Num
    tpot_s: Num
    e2e_s: Num
    # computes the band's fields (a dict keyed by BAND_FIELDS, or None: no band)
    _band: Callable[[], dict[str, Any] | None] | None = PrivateAttr(default=None)

    ttft_low_s = _band_field("ttft_low_s")
    ttft_high_s = _band_field("ttft_high_s")
    tpot_low_s = _band_field("tpot_low_s")
    tpot_high_s = _band_field("tpot_high_s")
    e2e_low_s = _band_field("e2e_low_s")
    e2e_high_s = _band_field("e2e_high_s")
    band = _band_field("band")

    @model_validator(mode="wrap")
    @classmethod
    def _given_band(cls, data: Any, handler: Any) -> Any:
        """A record read back (e.g. ``model_validate`` of a dump) gives its band's fields as
        values: they are the band."""
        if not isinstance(data, dict) or not any(k in data for k in BAND_FIELDS):
            return handler(data)
        given = {k: data[k] for k in BAND_FIELDS if k in data}
        latency = handler({k: v for k, v in data.items() if k not in given})
        latency._band = partial(dict, given)
        return latency

    @cached_property
    def _band_fields(self) -> dict[str, Any]:
        fields = self._band() if self._band is not None else None
        return {} if fields is None else {k: _plain(v) for k, v in fields.items()}


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

    @property
    def is_sweep(self) -> bool:
        """True when some field is an array (batch, prompt_len or gen_len given as arrays)."""
        return any(isinstance(v, np.ndarray) for v in self.flat().values())

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape batch, prompt_len and gen_len broadcast to (``()`` for a scalar call)."""
        shapes = [np.shape(v) for v in self.flat().values() if isinstance(v, np.ndarray)]
        return tuple(np.broadcast_shapes(*shapes)) if shapes else ()

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per point of :attr:`shape` (C order: the last axis fastest; a scalar
        call gives one), keyed like :meth:`flat` (``config.batch``, ``latency.ttft_s``, ...):
        the point's inputs (``config.batch``, ``config.prompt_len``, ``config.gen_len``), the
        deployment (``config.deployment.tp``, ...) and every result field, as plain Python
        values (the pipeline split ``config.layers_per_stage`` as "16+16")."""
        from hwsim.tables import broadcast_records

        return broadcast_records(self.flat())

    def to_frame(self):
        """A pandas DataFrame of :meth:`to_records`, one row per point (needs pandas; built
        column by column, so a sweep of millions of points is quick)."""
        from hwsim.tables import broadcast_frame

        return broadcast_frame(self.flat())

    def _head(self) -> list[dict[str, Any]]:
        """The first points' records, the columns a notebook shows (a large sweep is not
        turned into records whole to show 50 rows)."""
        from hwsim.tables import MAX_HTML_ROWS, broadcast_records

        flat = self.flat()
        return broadcast_records({k: flat[k] for k in _SWEEP_COLUMNS}, limit=MAX_HTML_ROWS)

    def _repr_html_(self) -> str:  # notebooks
        if not self.is_sweep:
            from hwsim.inference.display import estimate_html

            return estimate_html(self)
        from hwsim.tables import html_table

        return html_table(
            self._head(), _SWEEP_COLUMNS, caption=self._sweep_title(), total=math.prod(self.shape)
        )

    def _sweep_title(self) -> str:
        c = self.config
        points = "x".join(map(str, self.shape))
        return (
            f"{c.model} on {c.hardware}  {c.deployment.label}: {points} points "
            f"({math.prod(self.shape):,}) of batch x prompt_len x gen_len"
        )

    def __rich__(self):  # rich console
        if not self.is_sweep:
            from hwsim.inference.display import estimate_tables

            return estimate_tables(self)
        from rich.table import Table

        from hwsim.tables import fmt_cell

        table = Table(title=self._sweep_title(), title_justify="left")
        short = [name.rsplit(".", 1)[-1] for name in _SWEEP_COLUMNS]
        for name, head in zip(_SWEEP_COLUMNS, short):
            table.add_column(head if short.count(head) == 1 else name, justify="right")
        records = self._head()
        for r in records:
            table.add_row(*(fmt_cell(name, r[name]) for name in _SWEEP_COLUMNS))
        total = math.prod(self.shape)
        if total > len(records):
            table.caption = f"first {len(records)} of {total:,} points (to_records() has all)"
        return table


# What a notebook shows of a sweep, one row per point (to_records() has every field).
_SWEEP_COLUMNS = (
    "config.batch",
    "config.prompt_len",
    "config.gen_len",
    "latency.ttft_s",
    "latency.tpot_s",
    "latency.e2e_s",
    "throughput.output_tokens_per_s",
    "memory.total_bytes",
    "memory.fits",
    "capacity.max_batch",
    "capacity.users_per_gpu",
    "prefill.bound",
    "decode.bound",
)
