"""Shared by the mutation-kill tests of the mixers: a one-forward builder and the field-by-field
comparison of an op list with a table derived by hand.

The state-mixer tables keep weights and the KV cache in fp32 (4 B) and activations in bf16
(2 B), with a batch of 3 and tp = 2, so that a confused dtype, a byte size divided instead of
multiplied, a lost batch factor or a missing division by tp changes a number.
"""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.dtypes import DTYPES, DType
from hwsim.model.forward import Forward

BF16, FP32, FP8, INT8 = DTYPES["bf16"], DTYPES["fp32"], DTYPES["fp8"], DTYPES["int8"]
B = 3  # sequences

FIELDS = ("flops", "weight_bytes", "act_read_bytes", "act_write_bytes", "kv_read_bytes")
FIELDS += ("kv_write_bytes",)


def one_forward(
    model,
    phase,
    new,
    ctx,
    *,
    weight: DType = FP32,
    kv: DType = FP32,
    act: DType = BF16,
    compute: str = "bf16",
    tp: int = 2,
    impl: str = "flash",
    sram: float = 228 * 1024,
) -> Forward:
    """One forward of B sequences, ``new`` tokens each at context ``ctx``, dtypes as given."""
    return Forward(
        phase=phase,
        model=model,
        batch=np.asarray(float(B)),
        new_tokens=np.asarray(float(new)),
        context=np.asarray(float(ctx)),
        weight=weight,
        kv=kv,
        act=act,
        compute_dtype=compute,
        tp=tp,
        attention_impl=impl,  # type: ignore[arg-type]
        sram_bytes=sram,
    )


def linear_row(name, t, k, n):
    """A per-rank projection of t tokens, k -> n features: 2 t k n FLOPs, k n fp32 weights (4 B),
    t k bf16 inputs read and t n outputs written."""
    return dict(
        name=name,
        op_class="matmul",
        flops=2 * t * k * n,
        weight_bytes=k * n * 4,
        act_read_bytes=t * k * 2,
        act_write_bytes=t * n * 2,
    )


def check_ops(ops, table):
    assert [o.name for o in ops] == [row["name"] for row in table]
    for o, row in zip(ops, table, strict=True):
        assert o.op_class == row["op_class"], o.name
        for f in FIELDS:
            got, want = float(np.asarray(getattr(o, f))), float(row.get(f, 0.0))
            assert got == pytest.approx(want, rel=1e-12, abs=0.0), (o.name, f)
        assert o.on_vector_units == (row["op_class"] == "elementwise"), o.name
        assert o.compute_dtype == row.get("compute_dtype", "bf16"), o.name
