"""One dtype table: storage bits per element plus quantisation-scale overhead.

Scale overhead follows the common group-quantisation layouts: int4 weights in groups of
128 with an fp16 scale and fp16 zero point (GPTQ/AWQ default group size 128) add 32 bits
per 128 elements = 0.25 bit/element; int8 KV with one fp16 scale per token per head of
head_dim 128 adds 16/128 = 0.125 bit/element; int4 KV likewise with groups of 64
(KIVI, arXiv 2402.02750, uses groups of 32-128) adds 0.5 bit. fp8 uses per-tensor scales
(negligible). fp6 is the OCP Microscaling format MXFP6 (OCP MX specification v1.0, 2023,
§5.3: E2M3 or E3M2 elements, one shared 8-bit E8M0 scale per block of 32): 8/32 = 0.25 bit
per element, 6.25 bits in all; the ~6-bit caches MLA and KV-quantisation papers assume.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.errors import HwsimError
from hwsim.lean import cached_attribute


@dataclass(frozen=True)
class DType:
    name: str
    bits: int
    scale_bits_per_element: float = 0.0
    float_like: bool = True

    @cached_attribute  # read by every op builder: computed once per dtype
    def bytes_per_element(self) -> float:
        return (self.bits + self.scale_bits_per_element) / 8.0


DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        DType("fp32", 32),
        DType("tf32", 32),
        DType("bf16", 16),
        DType("fp16", 16),
        DType("fp8", 8),
        DType("int8", 8, 0.0, float_like=False),
        DType("int4", 4, 0.25, float_like=False),
    )
}

# KV caches keep scales per token and head, so their overhead differs from weights'.
KV_DTYPES: dict[str, DType] = {
    "fp32": DTYPES["fp32"],
    "bf16": DTYPES["bf16"],
    "fp16": DTYPES["fp16"],
    "fp8": DTYPES["fp8"],
    "fp6": DType("fp6", 6, 0.25),
    "int8": DType("int8", 8, 0.125, float_like=False),
    "int4": DType("int4", 4, 0.5, float_like=False),
}

WEIGHT_DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")


def weight_dtype(name: str) -> DType:
    return _lookup(name, {k: DTYPES[k] for k in WEIGHT_DTYPES}, "weight dtype")


def kv_dtype(name: str) -> DType:
    return _lookup(name, KV_DTYPES, "KV-cache dtype")


def activation_dtype(name: str) -> DType:
    return _lookup(name, {k: DTYPES[k] for k in ("fp32", "bf16", "fp16")}, "activation dtype")


def _lookup(name: str, table: dict[str, DType], what: str) -> DType:
    try:
        return table[name]
    except KeyError:
        raise HwsimError(f"unknown {what} {name!r}; allowed: {', '.join(table)}") from None
