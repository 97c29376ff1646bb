"""Hardware profile schema: a roofline (peak rates, memory), on-chip sizes, links, efficiency.

Every number is a sourced quantity. Peak rates are dense (no 2:4 sparsity).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from hwsim.errors import HwsimError
from hwsim.profiles.sourced import (
    STRICT,
    SourcedBytes,
    SourcedBytesPerS,
    SourcedFlopsPerS,
    SourcedNumber,
    SourcedSeconds,
)

OP_CLASSES = ("matmul", "attention", "elementwise")
DTYPE_NAMES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")


class Memory(BaseModel):
    model_config = STRICT
    capacity_bytes: SourcedBytes
    bandwidth_bytes_per_s: SourcedBytesPerS
    random_access_latency_s: SourcedSeconds | None = Field(
        default=None,
        description="load-to-use latency of one dependent access to a random address in "
        "device memory (a pointer chase past the caches), for graph-index search "
        "(hwsim.rag.search_cost); unset: a documented default per device kind",
    )


class MatrixUnit(BaseModel):
    """A systolic matrix unit's tile: a GEMM's contracting (k) and output (n) dimensions are
    padded to multiples of ``size`` and its rows (m) to multiples of ``sublanes`` (TPU MXUs:
    XLA pads operands to these tiles), so small or odd shapes waste the padding."""

    model_config = STRICT
    size: int = Field(ge=1, description="the MXU is size x size (128 on TPU v4/v5, 256 on v6e)")
    sublanes: int = Field(default=8, ge=1, description="row granularity of the vector registers")
    source: str


class OnChip(BaseModel):
    """On-chip memory: the L2 (or equivalent) and the SRAM a single tiled kernel can use."""

    model_config = STRICT
    l2_bytes: SourcedBytes | None = None
    sram_per_core_bytes: SourcedBytes
    cores: SourcedNumber
    matrix_unit: MatrixUnit | None = None


class Link(BaseModel):
    model_config = STRICT
    bandwidth_per_direction_bytes_per_s: SourcedBytesPerS
    latency_s: SourcedSeconds
    fabric: Literal["nvlink", "pcie", "network"] | None = Field(
        default=None,
        description="what the link is, for NCCL's per-hop latency table (hwLatencies: NVLink, "
        "PCI, network) and its LL128 rule (NVLink only); unset: an intra-node link is read as "
        "NVLink, an inter-node one as the network",
    )


class NcclTopology(BaseModel):
    """What NCCL's cost model (:mod:`hwsim.perf.collectives`) needs that the links lack.

    A profile without it keeps the plain alpha-beta ring (non-NCCL stacks: TPU ICI, RCCL)."""

    model_config = STRICT
    arch: Literal["volta", "ampere", "hopper", "blackwell"] = Field(
        description="NCCL's compute-capability row of its per-architecture bandwidth caps "
        "(ncclTuningGetCompCapIndex: sm70 volta, sm80 ampere, sm90 hopper, sm100 blackwell)"
    )
    nvls: bool = Field(
        default=False,
        description="NVLink SHARP (in-switch reduction, NCCL's NVLS algorithm) available: "
        "third-generation NVSwitch baseboards (HGX H100/H200/B200)",
    )
    channels: SourcedNumber | None = Field(
        default=None,
        description="NCCL ring/tree channels, for its per-channel caps; unset: no per-channel "
        "cap (the caps bind only where bus bandwidth per channel exceeds them)",
    )
    nvls_channels: SourcedNumber | None = Field(
        default=None,
        description="NCCL NVLS channels (NCCL_NVLS_NCHANNELS); unset: NCCL's default, 16",
    )
    source: str

    @field_validator("source")
    @classmethod
    def _non_empty(cls, s: str) -> str:
        if not s.strip():
            raise ValueError("a source is required: NCCL source, docs or datasheet")
        return s


class Interconnect(BaseModel):
    model_config = STRICT
    devices_per_node: SourcedNumber
    intra_node: Link | None = None
    inter_node: Link | None = None
    nccl: NcclTopology | None = None


class EfficiencyCurve(BaseModel):
    """Achievable fraction of peak, saturating with op size, and how well compute hides memory.

    C = (F + F_half) / (peak * compute_fraction)
    M = (B + B_half) / (bandwidth * memory_fraction)
    time = max(C, M) + (1 - overlap) * min(C, M) + kernels * launch_overhead_s
    i.e. efficiency(F) = compute_fraction * F / (F + F_half): small ops pay a fixed cost and
    large ops approach compute_fraction of peak. ``overlap`` is the share of the shorter of the
    two times hidden under the longer one: 1 (the default) is the classic roofline max(C, M),
    0 runs them back to back (C + M). Defaults (F_half = B_half = 0, overlap = 1) are the plain
    roofline scaled by the fractions.
    """

    model_config = STRICT
    compute_fraction: float = Field(gt=0, le=1)
    memory_fraction: float = Field(gt=0, le=1)
    compute_half_flops: float = Field(default=0.0, ge=0)
    memory_half_bytes: float = Field(default=0.0, ge=0)
    launch_overhead_s: float = Field(default=0.0, ge=0)
    overlap: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description=(
            "share of min(compute time, memory time) hidden under the longer one: "
            "time = max(C, M) + (1 - overlap) * min(C, M) + launch; 1 (default) is the classic "
            "roofline max(C, M), 0 is the serial sum C + M"
        ),
    )
    source: str


class Efficiency(BaseModel):
    model_config = STRICT
    default: EfficiencyCurve
    matmul: EfficiencyCurve | None = None
    attention: EfficiencyCurve | None = None
    elementwise: EfficiencyCurve | None = None
    link_fraction: SourcedNumber = Field(
        default=SourcedNumber(value=0.8, source="assumed: NCCL ring reaches ~80% of link rate")
    )

    @field_validator("link_fraction")
    @classmethod
    def _a_fraction(cls, v: SourcedNumber) -> SourcedNumber:
        """Share of the link rate a collective reaches: above 1 would beat the speed of
        light, 0 would make every collective take forever."""
        if not 0 < v.value <= 1:
            raise ValueError(f"link_fraction must be in (0, 1], got {v.value}")
        return v

    def for_class(self, op_class: str) -> EfficiencyCurve:
        return getattr(self, op_class, None) or self.default


class ResidualBand(BaseModel):
    """Quantiles of log(measured / predicted) on held-out calibration points."""

    model_config = STRICT
    p10: float
    p50: float
    p90: float
    n_points: int = Field(ge=1)


class Calibration(BaseModel):
    model_config = STRICT
    calibrated_from: str
    date: str
    device_name: str | None = None
    heldout_median_abs_error: float | None = None
    heldout_p90_abs_error: float | None = None
    heldout_band_coverage: float | None = None
    residuals: dict[str, ResidualBand] = Field(default_factory=dict)


class HardwareProfile(BaseModel):
    model_config = STRICT
    id: str
    name: str
    vendor: str
    kind: Literal["gpu", "tpu", "cpu"]
    match: list[str] = Field(
        default_factory=list,
        description="device-name fragments (as the driver reports them) that a calibration "
        "run maps to this profile; '*' matches any device of the profile's kind",
    )
    matrix_flops_per_s: dict[str, SourcedFlopsPerS]
    vector_flops_per_s: dict[str, SourcedFlopsPerS]
    memory: Memory
    on_chip: OnChip
    interconnect: Interconnect
    price_per_hour_usd: SourcedNumber | None = None
    tdp_watts: SourcedNumber | None = None
    efficiency: Efficiency
    calibration: Calibration | None = None
    notes: str | None = None

    @field_validator("matrix_flops_per_s", "vector_flops_per_s")
    @classmethod
    def _known_dtypes(cls, rates: dict[str, SourcedFlopsPerS]) -> dict[str, SourcedFlopsPerS]:
        unknown = sorted(set(rates) - set(DTYPE_NAMES))
        if unknown:
            raise ValueError(f"unknown dtype(s) {unknown}; allowed: {', '.join(DTYPE_NAMES)}")
        return rates

    @model_validator(mode="after")
    def _has_matrix_rate(self) -> HardwareProfile:
        if not self.matrix_flops_per_s:
            raise ValueError("matrix_flops_per_s needs at least one dtype")
        return self

    # -- convenience accessors (SI units) ---------------------------------------------------
    @property
    def capacity_bytes(self) -> float:
        return self.memory.capacity_bytes.value

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.memory.bandwidth_bytes_per_s.value

    @property
    def sram_per_core_bytes(self) -> float:
        return self.on_chip.sram_per_core_bytes.value

    def matrix_peak_flops_per_s(self, dtype: str) -> float:
        """Dense matrix-unit peak for ``dtype``; fp16 and bf16 stand in for each other."""
        for name in (dtype, *_SUBSTITUTES.get(dtype, ())):
            if name in self.matrix_flops_per_s:
                return self.matrix_flops_per_s[name].value
        raise HwsimError(
            f"hardware {self.id!r} lists no matrix rate for {dtype}; "
            f"it has: {', '.join(self.matrix_flops_per_s)}"
        )

    def has_matrix_dtype(self, dtype: str) -> bool:
        return dtype in self.matrix_flops_per_s

    def vector_peak_flops_per_s(self, dtype: str = "fp32") -> float:
        for name in (dtype, "fp32", *self.vector_flops_per_s):
            if name in self.vector_flops_per_s:
                return self.vector_flops_per_s[name].value
        return self.matrix_peak_flops_per_s("bf16")

    def link_for(self, n_devices: int) -> Link | None:
        """Link for a collective over ``n_devices``: NVLink-class in a node, else the network."""
        per_node = int(self.interconnect.devices_per_node.value)
        if n_devices <= per_node and self.interconnect.intra_node is not None:
            return self.interconnect.intra_node
        return self.interconnect.inter_node or self.interconnect.intra_node


_SUBSTITUTES = {"fp16": ("bf16",), "bf16": ("fp16",), "tf32": ("fp32",)}
