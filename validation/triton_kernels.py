"""Triton kernels written for hwsim's suite: a tiled matmul and a fused attention forward.

Measured next to the library kernels on a GPU so calibration sees what a hand-written kernel
reaches. The attention kernel follows FlashAttention-2's forward pass (Dao 2023, arXiv
2307.08691, Algorithm 1): online softmax over key blocks, never materialising the scores;
GQA maps each query head to its KV head; causal masking is bottom-right aligned and skips the
key blocks above the diagonal.

Importable only where triton and a CUDA device are present. Elsewhere importing raises
ImportError, so ``pytest.importorskip`` and :func:`validation.suite.triton_available` skip.
"""

from __future__ import annotations

import math

import torch

try:
    import triton
    import triton.language as tl
except ImportError as exc:  # the CPU case: skip cleanly
    raise ImportError("validation.triton_kernels needs triton (pip install triton)") from exc
if not torch.cuda.is_available():
    raise ImportError("validation.triton_kernels needs a CUDA GPU; torch sees none")


@triton.autotune(
    configs=[
        triton.Config({"BM": 128, "BN": 256, "BK": 64, "GROUP": 8}, num_stages=3, num_warps=8),
        triton.Config({"BM": 128, "BN": 128, "BK": 64, "GROUP": 8}, num_stages=4, num_warps=4),
        triton.Config({"BM": 64, "BN": 128, "BK": 64, "GROUP": 8}, num_stages=4, num_warps=4),
        triton.Config({"BM": 64, "BN": 64, "BK": 64, "GROUP": 8}, num_stages=4, num_warps=4),
        triton.Config({"BM": 16, "BN": 128, "BK": 128, "GROUP": 8}, num_stages=4, num_warps=4),
    ],
    key=["M", "N", "K"],
)
@triton.jit
def _matmul_kernel(
    a_ptr, b_ptr, c_ptr, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    num_m, num_n = tl.cdiv(M, BM), tl.cdiv(N, BN)
    per_group = GROUP * num_n
    first_m = (pid // per_group) * GROUP
    group_rows = min(num_m - first_m, GROUP)
    pid_m = first_m + (pid % per_group) % group_rows  # grouped order: reuse B tiles in L2
    pid_n = (pid % per_group) // group_rows
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_n = pid_n * BN + tl.arange(0, BN)
    offs_k = tl.arange(0, BK)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for kb in range(0, tl.cdiv(K, BK)):
        left = K - kb * BK
        a = tl.load(a_ptrs, mask=(offs_m[:, None] < M) & (offs_k[None, :] < left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_k[:, None] < left) & (offs_n[None, :] < N), other=0.0)
        acc = tl.dot(a, b, acc)
        a_ptrs += BK * stride_ak
        b_ptrs += BK * stride_bk
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(
        c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_n[None, :] < N)
    )


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` for 2-D fp16/bf16 CUDA tensors of any strides (fp32 accumulation)."""
    m, k = a.shape
    k2, n = b.shape
    if k != k2:
        raise ValueError(f"matmul: inner dimensions differ ({k} vs {k2})")
    out = torch.empty((m, n), dtype=a.dtype, device=a.device) if out is None else out

    def grid(meta):
        return (triton.cdiv(m, meta["BM"]) * triton.cdiv(n, meta["BN"]),)

    _matmul_kernel[grid](
        a, b, out, m, n, k, a.stride(0), a.stride(1), b.stride(0), b.stride(1),
        out.stride(0), out.stride(1),
    )  # fmt: skip
    return out


@triton.jit
def _attention_kernel(
    Q, K, V, O, sm_scale,  # noqa: E741 - the paper's names
    sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sob, soh, som, sod,
    H, GROUP, N_Q, N_KV,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
):  # fmt: skip
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b, h = bh // H, bh % H
    kvh = h // GROUP
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(
        Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
        mask=offs_m[:, None] < N_Q, other=0.0,
    )  # fmt: skip
    k_base = K + b * skb + kvh * skh
    v_base = V + b * svb + kvh * svh
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    scale = sm_scale * 1.4426950408889634  # exp(x) = exp2(x log2 e)
    shift = N_KV - N_Q  # bottom-right aligned causal mask
    hi = N_KV
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M + shift, N_KV)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        k = tl.load(
            k_base + cols[None, :] * skn + offs_d[:, None] * skd,
            mask=cols[None, :] < N_KV,
            other=0.0,
        )
        qk = tl.dot(q, k) * scale
        keep = cols[None, :] < N_KV
        if CAUSAL:
            keep = keep & (cols[None, :] <= offs_m[:, None] + shift)
        qk = tl.where(keep, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(
            v_base + cols[:, None] * svn + offs_d[None, :] * svd,
            mask=cols[:, None] < N_KV,
            other=0.0,
        )
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
        m_i = m_new
    acc = acc / l_i[:, None]
    tl.store(
        O + b * sob + h * soh + offs_m[:, None] * som + offs_d[None, :] * sod,
        acc.to(O.dtype.element_ty), mask=offs_m[:, None] < N_Q,
    )  # fmt: skip


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False):
    """softmax(q k^T / sqrt(d)) v for (batch, heads, tokens, head_dim) fp16/bf16 tensors;
    k and v may have fewer heads (GQA)."""
    b, h, n_q, d = q.shape
    hk, n_kv = k.shape[1], k.shape[2]
    if h % hk or d not in (16, 32, 64, 128, 256):
        raise ValueError(f"attention: unsupported heads {h}/{hk} or head_dim {d}")
    o = torch.empty_like(q)
    block_m = 128 if n_q >= 128 else 16
    grid = (triton.cdiv(n_q, block_m), b * h)
    _attention_kernel[grid](
        q, k, v, o, 1.0 / math.sqrt(d), *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        h, h // hk, n_q, n_kv,
        HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=64, CAUSAL=causal,
        num_warps=4 if d <= 64 else 8, num_stages=3,
    )  # fmt: skip
    return o
