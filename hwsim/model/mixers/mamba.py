"""Selective state-space layers: Mamba-1 (Gu & Dao 2023, arXiv 2312.00752) and Mamba-2 / SSD
(Dao & Gu 2024, arXiv 2405.21060), with shapes from state-spaces/mamba ``mamba_simple.py`` and
``mamba2.py``.

Both keep a fixed-size recurrent state per sequence instead of a KV cache
(``kv_bytes_per_token`` = 0), so the cache a sequence holds does not grow with context:

* SSM state: d_inner x d_state elements (Mamba-2: n_heads x headdim x d_state, the same number).
  Stored in ``state_dtype_bits``, default 32 (fp32): the recurrence accumulates long products of
  decays, and formulas.md section 8 sizes the state in fp32. The reference
  ``allocate_inference_cache`` uses the weight dtype instead (its fp32 variant is commented out),
  so ``state_dtype_bits: 16`` reproduces a bf16 cache.
* conv state: the last d_conv inputs of the depthwise causal convolution, d_inner x d_conv
  (Mamba-2: (d_inner + 2 ngroups d_state) x d_conv) -- the reference caches keep d_conv columns
  although d_conv - 1 suffice. Stored in ``conv_state_dtype_bits`` (default 16: the activation
  dtype, a simplification: the conv state is a copy of activations).

Decode is memory-bound on this state: every step reads it and writes it back
(2 x state bytes per sequence per layer, in the ``kv_read/kv_write`` byte categories, which
hold cache traffic). A prefill writes the final state once (and reads an initial state when it
continues a prefix).

Tensor parallelism (Megatron-style, as the ``process_group`` path of ``mamba2.py`` and vLLM's
Mamba layers): d_inner -- and with it the SSM state, the conv state and the heads -- is split
across ranks; in_proj is column-parallel, out_proj row-parallel. Mamba-1's x_proj (row-parallel,
tiny all-reduce of dt_rank + 2 d_state values per token, not modelled) and dt_proj
(column-parallel) follow d_inner. Mamba-2's B/C groups are split when ngroups is a multiple of tp,
otherwise replicated (ngroups = 1 models replicate the 2 d_state B/C channels on every rank).
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from hwsim.model.forward import Forward
from hwsim.model.mixers.base import Mixer, register
from hwsim.model.ops import Op
from hwsim.profiles.model import ModelProfile

_FP32 = 4.0


def recurrent_state_traffic(fw: Forward, state_bytes: float) -> tuple[np.ndarray, np.ndarray]:
    """(read, write) bytes of a fixed per-sequence state in one forward: a decode step reads and
    writes it; a prefill writes the final state, and reads an initial one only when it continues
    a cached prefix (context > new tokens)."""
    per_batch = np.asarray(fw.batch * state_bytes, dtype=float)
    if fw.phase == "decode":
        return per_batch, per_batch
    prefix = np.asarray(fw.context > fw.new_tokens, dtype=float)
    return per_batch * prefix, per_batch * np.ones_like(prefix)


class _SSMMixer(Mixer):
    """State bookkeeping shared by Mamba-1 and Mamba-2."""

    d_state: int = Field(ge=1, description="N, state size per channel")
    d_conv: int = Field(default=4, ge=1, description="depthwise causal conv kernel width")
    expand: int = Field(default=2, ge=1, description="d_inner = expand * d_model")
    conv_bias: bool = True
    bias: bool = Field(default=False, description="biases on in_proj and out_proj")
    state_dtype_bits: int = Field(default=32, ge=1, description="SSM state storage, 32 = fp32")
    conv_state_dtype_bits: int = Field(
        default=16, ge=1, description="conv state storage (activation dtype, bf16 by default)"
    )

    def d_inner(self, model: ModelProfile) -> int:
        return self.expand * model.d_model

    # subclasses: elements on one TP rank
    def ssm_state_elements(self, model: ModelProfile, tp: int = 1) -> float:
        raise NotImplementedError

    def conv_state_elements(self, model: ModelProfile, tp: int = 1) -> float:
        raise NotImplementedError

    def state_elements(self, model: ModelProfile, tp: int = 1) -> float:
        return self.ssm_state_elements(model, tp) + self.conv_state_elements(model, tp)

    def ssm_state_bytes(self, model: ModelProfile, tp: int) -> float:
        return self.ssm_state_elements(model, tp) * self.state_dtype_bits / 8

    def conv_state_bytes(self, model: ModelProfile, tp: int) -> float:
        return self.conv_state_elements(model, tp) * self.conv_state_dtype_bits / 8

    def state_bytes_per_sequence(self, model: ModelProfile, tp: int) -> float:
        return self.ssm_state_bytes(model, tp) + self.conv_state_bytes(model, tp)

    def _conv_op(self, fw: Forward, channels: float) -> Op:
        """Depthwise causal conv + bias + SiLU over ``channels`` (per rank): 2 d_conv FLOPs per
        channel and token for the taps, ~5 for bias and SiLU."""
        t, act = fw.tokens, fw.act.bytes_per_element
        state_bytes = channels * self.d_conv * self.conv_state_dtype_bits / 8
        read, write = recurrent_state_traffic(fw, state_bytes)
        taps = self.d_conv + (1 if self.conv_bias else 0)
        return Op(
            name="ssm.conv1d",
            op_class="elementwise",
            flops=t * channels * (2.0 * self.d_conv + 5.0),
            weight_bytes=channels * taps * fw.weight.bytes_per_element,
            act_read_bytes=t * channels * act,
            act_write_bytes=t * channels * act,
            kv_read_bytes=read,
            kv_write_bytes=write,
            on_vector_units=True,
        )


@register
class Mamba(_SSMMixer):
    """Mamba-1 block (``mamba_simple.Mamba``).

    Parameters per layer (d = d_model, E = d_inner = expand d, R = dt_rank, N = d_state,
    K = d_conv):
    in_proj d x 2E (no bias by default) + conv1d E K + E (bias) + x_proj E (R + 2N) (no bias)
    + dt_proj R E + E (with bias) + A_log E N + D E + out_proj E d. Jamba's variant adds RMSNorms
    on dt, B and C (``inner_layernorms``: R + 2N weights).
    For Mamba-2.8B (d 2560, E 5120, R 160, N 16, K 4): 41,241,600 per layer.

    FLOPs: projections 2 x tokens x in x out. Selective scan (prefill, the hardware-aware
    parallel scan of section 3.3.2): 9 E N per token -- the count Albert Gu gives for the fused
    ``selective_scan`` kernel in state-spaces/mamba issue #110 (discretising A and B, the
    ~2L-operation work-efficient associative scan, and the C contraction), linear in sequence
    length. Decode (sequential recurrence), per state element: exp(dt A) 2 (product, exp),
    B (dt x) 1 (dt x formed once per channel), h exp(dt A) + ... 2, y += C h 2: 7 E N per token.
    Both phases add ~7 E per token for the D skip and the SiLU(z) gate.
    """

    kind_name: ClassVar[str] = "mamba"

    d_state: int = Field(default=16, ge=1)
    dt_rank: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        default="auto", description="rank of the dt projection; 'auto' = ceil(d_model / 16)"
    )
    inner_layernorms: bool = Field(
        default=False, description="RMSNorm on dt, B and C (Jamba's Mamba layers)"
    )

    def resolved_dt_rank(self, model: ModelProfile) -> int:
        return math.ceil(model.d_model / 16) if self.dt_rank == "auto" else int(self.dt_rank)

    def param_count(self, model: ModelProfile) -> int:
        d, e, n, k = model.d_model, self.d_inner(model), self.d_state, self.d_conv
        r = self.resolved_dt_rank(model)
        params = d * 2 * e + e * k + e * (r + 2 * n) + r * e + e + e * n + e + e * d
        if self.conv_bias:
            params += e
        if self.bias:
            params += 2 * e + d
        if self.inner_layernorms:
            params += r + 2 * n
        return params

    def ssm_state_elements(self, model: ModelProfile, tp: int = 1) -> float:
        return self.d_inner(model) / tp * self.d_state

    def conv_state_elements(self, model: ModelProfile, tp: int = 1) -> float:
        return self.d_inner(model) / tp * self.d_conv

    def scan_flops_per_token(self, model: ModelProfile, phase: str, tp: int = 1) -> float:
        e = self.d_inner(model) / tp
        per_state = 9.0 if phase == "prefill" else 7.0
        return per_state * e * self.d_state + 7.0 * e

    def ops(self, fw: Forward) -> list[Op]:
        m = fw.model
        d, n = m.d_model, self.d_state
        e = self.d_inner(m) / fw.tp
        r = self.resolved_dt_rank(m)
        t, act = fw.tokens, fw.act.bytes_per_element
        ops = [
            fw.linear("mamba.in_proj", d, 2 * e, shard=False),
            self._conv_op(fw, e),
            fw.linear("mamba.x_proj", e, r + 2 * n, shard=False),
        ]
        if self.inner_layernorms:
            elems = t * (r + 2 * n)
            ops.append(
                Op(
                    name="mamba.dt_bc_norms",
                    op_class="elementwise",
                    flops=4.0 * elems,
                    act_read_bytes=elems * act,
                    act_write_bytes=elems * act,
                    on_vector_units=True,
                )
            )
        ops.append(fw.linear("mamba.dt_proj", r, e, shard=False))
        read, write = recurrent_state_traffic(fw, self.ssm_state_bytes(m, fw.tp))
        ops.append(
            Op(
                name="ssm.scan",
                op_class="elementwise",
                flops=t * self.scan_flops_per_token(m, fw.phase, fw.tp),
                # A_log (E x N), D and the dt bias, kept in fp32
                weight_bytes=e * (n + 2) * _FP32,
                act_read_bytes=t * (3 * e + 2 * n) * act,  # x, dt, z, B, C
                act_write_bytes=t * e * act,  # y
                kv_read_bytes=read,
                kv_write_bytes=write,
                on_vector_units=True,
                meta={"state_bytes_per_sequence": self.ssm_state_bytes(m, fw.tp)},
            )
        )
        ops.append(fw.linear("mamba.out_proj", e, d, shard=False))
        return ops


@register
class Mamba2(_SSMMixer):
    """Mamba-2 block (``mamba2.Mamba2``, SSD layer).

    Shapes (E = d_inner, P = headdim, H = E / P heads, G = ngroups, N = d_state, K = d_conv):
    in_proj d -> [z E, x E, B G N, C G N, dt H]; conv1d over the x, B, C channels
    (E + 2 G N, weight + bias); dt_bias, A_log and D (one per head); gated RMSNorm weight (E);
    out_proj E -> d. Parameters per layer:
    d (2E + 2GN + H) + (E + 2GN)(K + 1) + 3H + E + E d.
    For Mamba-2 2.7B (d 2560, E 5120, H 80, G 1, N 128): 40,214,000 per layer.

    FLOPs of the chunked SSD algorithm (paper section 6, chunk length Q = ``chunk_size``), per
    token: intra-chunk "attention" C B^T (2 Q N per group) and its product with X (2 Q P per
    head, i.e. 2 Q E), chunk states B^T X (2 N E) and the state-to-output product C h (2 N E):
    2 Q (G N + E) + 4 E N, plus ~10 E for discretisation, D skip and gating. The triangular
    mask is ignored (the kernels compute whole Q x Q blocks); state passing between chunks is
    O(E N / Q) per token and dropped. Q = min(chunk_size, tokens). Linear in sequence length.
    Decode (recurrence per head): h <- exp(dt A) h + dt x B^T (4 per state element) and y = h C
    (2): 6 E N per token, plus the same per-channel terms.
    """

    kind_name: ClassVar[str] = "mamba2"

    d_state: int = Field(default=128, ge=1)
    headdim: int = Field(default=64, ge=1, description="P, channels per SSM head")
    ngroups: int = Field(default=1, ge=1, description="G, B/C groups shared by heads")
    chunk_size: int = Field(default=256, ge=1, description="Q, SSD chunk length")
    rmsnorm: bool = Field(default=True, description="gated RMSNorm before out_proj")

    def check_model(self, model: ModelProfile) -> None:
        if self.d_inner(model) % self.headdim:
            raise ValueError(
                f"mixer 'mamba2': d_inner {self.d_inner(model)} is not a multiple of headdim "
                f"{self.headdim}"
            )

    def n_heads(self, model: ModelProfile) -> int:
        return self.d_inner(model) // self.headdim

    def groups_per_rank(self, tp: int) -> int:
        return math.ceil(self.ngroups / tp)

    def param_count(self, model: ModelProfile) -> int:
        d, e, h = model.d_model, self.d_inner(model), self.n_heads(model)
        gn = self.ngroups * self.d_state
        conv_dim = e + 2 * gn
        params = d * (2 * e + 2 * gn + h) + conv_dim * self.d_conv + 3 * h + e * d
        if self.conv_bias:
            params += conv_dim
        if self.rmsnorm:
            params += e
        if self.bias:
            params += 2 * e + 2 * gn + h + d
        return params

    def ssm_state_elements(self, model: ModelProfile, tp: int = 1) -> float:
        return self.d_inner(model) / tp * self.d_state

    def conv_state_elements(self, model: ModelProfile, tp: int = 1) -> float:
        channels = self.d_inner(model) / tp + 2 * self.groups_per_rank(tp) * self.d_state
        return channels * self.d_conv

    def scan_flops_per_token(self, fw: Forward) -> np.ndarray:
        e = self.d_inner(fw.model) / fw.tp
        gn = self.groups_per_rank(fw.tp) * self.d_state
        if fw.phase == "decode":
            return np.asarray(6.0 * e * self.d_state + 10.0 * e)
        q = np.minimum(float(self.chunk_size), fw.new_tokens)
        return 2.0 * q * (gn + e) + 4.0 * e * self.d_state + 10.0 * e

    def ops(self, fw: Forward) -> list[Op]:
        m = fw.model
        d = m.d_model
        e = self.d_inner(m) / fw.tp
        h = self.n_heads(m) / fw.tp
        gn = self.groups_per_rank(fw.tp) * self.d_state
        t, act = fw.tokens, fw.act.bytes_per_element
        read, write = recurrent_state_traffic(fw, self.ssm_state_bytes(m, fw.tp))
        ops = [
            fw.linear("mamba2.in_proj", d, 2 * e + 2 * gn + h, shard=False),
            self._conv_op(fw, e + 2 * gn),
            Op(
                name="ssm.scan",
                op_class="elementwise",
                flops=t * self.scan_flops_per_token(fw),
                weight_bytes=3 * h * _FP32,  # dt_bias, A_log, D
                act_read_bytes=t * (e + 2 * gn + h) * act,  # x, B, C, dt
                act_write_bytes=t * e * act,  # y
                kv_read_bytes=read,
                kv_write_bytes=write,
                on_vector_units=True,
                meta={"state_bytes_per_sequence": self.ssm_state_bytes(m, fw.tp)},
            ),
        ]
        if self.rmsnorm:
            ops.append(
                Op(
                    name="mamba2.gated_norm",
                    op_class="elementwise",
                    flops=t * e * 10.0,  # y * SiLU(z), square-mean, rsqrt-scale, weight
                    weight_bytes=e * fw.weight.bytes_per_element,
                    act_read_bytes=2 * t * e * act,
                    act_write_bytes=t * e * act,
                    on_vector_units=True,
                )
            )
        ops.append(fw.linear("mamba2.out_proj", e, d, shard=False))
        return ops
