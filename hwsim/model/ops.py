"""Operators as cost descriptors: FLOPs and bytes by category, no time.

Time is the predictor's job (:mod:`hwsim.perf.roofline`). Fields may be floats or numpy arrays that
broadcast against each other (batch x length sweeps). Quantities are per GPU for one
execution of the op; ``count`` says how many times a forward pass runs it (e.g. layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from hwsim.lean import cached_attribute, direct_init

OpClass = Literal["matmul", "attention", "elementwise", "communication"]
BYTE_CATEGORIES = (
    "weight_bytes",
    "act_read_bytes",
    "act_write_bytes",
    "kv_read_bytes",
    "kv_write_bytes",
)


@direct_init
@dataclass(frozen=True)
class Op:
    name: str
    op_class: OpClass
    flops: np.ndarray | float = 0.0
    weight_bytes: np.ndarray | float = 0.0
    act_read_bytes: np.ndarray | float = 0.0
    act_write_bytes: np.ndarray | float = 0.0
    kv_read_bytes: np.ndarray | float = 0.0
    kv_write_bytes: np.ndarray | float = 0.0
    comm_bytes: np.ndarray | float = 0.0
    compute_dtype: str = "bf16"
    count: int = 1
    kernels: int = 1
    collective: Literal["all_reduce", "p2p"] | None = None
    ranks: int = 1
    on_vector_units: bool = False
    meta: dict = field(default_factory=dict, compare=False)
    # The registered kernel call this op is, (name, parameters), so that the measured rung can
    # price it from measurements (:func:`hwsim.perf.ladder.price_op`); None: no such kernel.
    kernel: tuple[str, dict] | None = field(default=None, compare=False)

    @cached_attribute
    def hbm_bytes(self) -> np.ndarray | float:
        """Bytes moved to or from device memory (every category except collective payload);
        computed once per op (sweep-sized arrays are read by the pricing and the totals)."""
        return (
            self.weight_bytes
            + self.act_read_bytes
            + self.act_write_bytes
            + self.kv_read_bytes
            + self.kv_write_bytes
        )

    def times(self, n: int) -> Op:
        """The same op repeated ``n`` times per forward (e.g. once per layer of a group)."""
        # a field-for-field copy of a validated, frozen op: no __init__ needed (several times
        # cheaper, and forward passes build thousands of these in a sweep or a simulation)
        repeated = object.__new__(Op)
        repeated.__dict__.update(self.__dict__, count=self.count * n)
        return repeated
