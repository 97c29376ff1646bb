"""Query embedding: an encoder's forward pass over the question tokens, priced on a device.

FLOPs = 2 x encoder parameters x tokens (one multiply-accumulate per parameter per token;
Kaplan et al. 2020, arXiv 2001.08361, section 2.1). This counts the token-embedding table
as if it were multiplied (about a fifth of BERT-base's parameters are that table, so it
overestimates) and leaves out the attention-score FLOPs (4 t^2 d per layer, small for
questions of tens of tokens). Weights are read once per forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.dtypes import activation_dtype
from hwsim.model.ops import Op
from hwsim.perf.roofline import BOUNDS, time_op
from hwsim.profiles.hardware import HardwareProfile

# Default embedder: BERT-base class (Devlin et al. 2019, arXiv 1810.04805, section 3:
# "BERT_BASE (L=12, H=768, A=12, Total Parameters=110M)"), the size of common sentence
# embedders such as all-mpnet-base-v2 and bge-base-en-v1.5 (768-dim outputs).
BERT_BASE_PARAMS = 110_000_000
BERT_BASE_DIM = 768
BERT_BASE_LAYERS = 12
# Kernels per encoder layer (QKV, attention, output projection, 2 add+norm, up, GELU, down):
# each pays the device's launch overhead, which dominates a short query on a GPU.
ENCODER_KERNELS_PER_LAYER = 8


@dataclass(frozen=True)
class EmbeddingCost:
    tokens: np.ndarray | float
    flops: np.ndarray | float
    weight_bytes: float
    time_s: np.ndarray
    bound: np.ndarray


def encoder_flops(params: float, tokens) -> np.ndarray:
    """2 x params x tokens (FLOPs)."""
    return 2.0 * params * np.asarray(tokens, dtype=float)


def encoder_compute_dtype(hw: HardwareProfile, dtype: str) -> str:
    """fp32 runs as TF32 on devices whose matrix units list no plain fp32 rate."""
    if dtype == "fp32" and not hw.has_matrix_dtype("fp32"):
        return "tf32"
    return dtype


def embedding_cost(
    hw: HardwareProfile, params: float, tokens, dtype: str = "fp32", layers: int = 12
) -> EmbeddingCost:
    """Time to embed ``tokens`` tokens (one forward pass) on ``hw``."""
    weight_bytes = params * activation_dtype(dtype).bytes_per_element
    flops = encoder_flops(params, tokens)
    op = Op(
        name="embed",
        op_class="matmul",
        flops=flops,
        weight_bytes=weight_bytes,
        compute_dtype=encoder_compute_dtype(hw, dtype),
        kernels=layers * ENCODER_KERNELS_PER_LAYER,
    )
    t = time_op(hw, op)
    return EmbeddingCost(
        tokens=np.asarray(tokens, dtype=float),
        flops=flops,
        weight_bytes=weight_bytes,
        time_s=np.asarray(t.total_s, dtype=float),
        bound=np.asarray(BOUNDS)[t.bound],
    )
