"""Multi-head latent attention (MLA): DeepSeek-V2 (arXiv 2405.04434, section 2.1) and V3
(arXiv 2412.19437, section 2.1.1).

Structure (H heads, d = d_model, d_c = kv_lora_rank, d_c' = q_lora_rank, d_n = qk_nope_head_dim,
d_r = qk_rope_head_dim, d_v = v_head_dim; names follow the HF ``modeling_deepseek`` modules):

* query: ``q_a_proj`` d -> d_c' (no bias), RMSNorm(d_c'), ``q_b_proj`` d_c' -> H (d_n + d_r);
  without a query LoRA (``q_lora_rank: null``, DeepSeek-V2-Lite) one ``q_proj`` d -> H (d_n + d_r).
* key/value: ``kv_a_proj_with_mqa`` d -> d_c + d_r gives the latent c_KV and one decoupled RoPE key
  shared by all heads; RMSNorm(d_c); ``kv_b_proj`` d_c -> H (d_n + d_v) decompresses per-head
  no-RoPE keys (W^UK) and values (W^UV).
* output: ``o_proj`` H d_v -> d.

Parameters per layer = d d_c' + d_c' + d_c' H (d_n + d_r) + d (d_c + d_r) + d_c
+ d_c H (d_n + d_v) + H d_v d (with d_c' = 0 and no norm when there is no query LoRA, the
query term becomes d H (d_n + d_r)).

Cache: per token per layer only c_KV and the shared RoPE key, (d_c + d_r) elements (V2 paper,
Table 1: (d_c + d_h^R) l). DeepSeek-V3: 61 (512 + 64) = 35,136 elements = 70,272 B/token in BF16.
Every head reads the whole latent, so under tensor parallelism (heads split over ranks) the
latent cache is **replicated on every TP rank**: its per-rank size does not shrink with tp.

FLOPs. A scored query-key pair costs, per head:

* non-absorbed (decompress K and V per head, then ordinary attention): 2 (d_n + d_r) for QK^T and
  2 d_v for PV; decompression adds ``kv_b_proj`` on every context token,
  2 d_c H (d_n + d_v) per token.
* absorbed (V2 section 2.1.2: W^UK is folded into the query and W^UV into the output, so scores are
  taken against the latent itself): 2 (d_c + d_r) for QK^T and 2 d_c for PV, plus per new token
  and head 2 d_n d_c (query times W^UK) and 2 d_c d_v (latent output times W^UV).

Which form runs: with ``absorbed: true`` (default) prefill uses the non-absorbed form and decode the
absorbed form -- the split vLLM's MLA backend makes (vllm/v1/attention/backends/mla/common.py:
a "compute friendly" path for prefill, a "data-movement friendly" one for decode):
in prefill every latent is decompressed once and each pair then costs 2(d_n + d_r) + 2 d_v
(640 FLOPs for V3) instead of 2(2 d_c + d_r) (2,176); in decode one query meets the whole context,
so decompressing C latents (2 d_c H (d_n + d_v) C FLOPs) would dominate and the absorbed form
reads only the cached latents, like MQA with one 576-wide key head. ``absorbed: false`` uses the
non-absorbed form in both phases (decode decompresses the cached latents every step, as the
reference HF implementation does).

Tensor parallelism: heads split over ranks; the down projections (q_a, kv_a) are replicated on
every rank (their outputs are needed whole by every head), q_b / kv_b are column-parallel and
o_proj is row-parallel.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

import numpy as np
from pydantic import Field

from hwsim.model.forward import Forward
from hwsim.model.mixers.attention import AttentionMixer
from hwsim.model.mixers.base import register
from hwsim.model.ops import Op
from hwsim.profiles.model import ModelProfile


@register
class MultiHeadLatentAttention(AttentionMixer):
    """Full causal MLA; pair/key counting is inherited from full attention."""

    kind_name: ClassVar[str] = "mla"

    q_lora_rank: int | None = Field(default=None, ge=1, description="d_c'; null: plain q_proj")
    kv_lora_rank: int = Field(ge=1, description="d_c, width of the cached latent c_KV")
    qk_nope_head_dim: int = Field(ge=1, description="d_n, per-head key/query part without RoPE")
    qk_rope_head_dim: int = Field(ge=0, description="d_r, decoupled RoPE key shared by heads")
    v_head_dim: int = Field(ge=1, description="d_v, per-head value width")
    absorbed: bool = Field(
        default=True, description="decode in the weight-absorbed form (prefill stays decompressed)"
    )

    # -- model-level -----------------------------------------------------------------------
    def check_model(self, model: ModelProfile) -> None:
        if model.n_heads <= 0:
            raise ValueError(f"mixer {self.kind!r} needs n_heads")

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def cache_elements_per_token(self) -> int:
        return self.kv_lora_rank + self.qk_rope_head_dim

    def param_count(self, model: ModelProfile) -> int:
        d, h = model.d_model, model.n_heads
        q_out = h * self.qk_head_dim
        if self.q_lora_rank:
            q = d * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * q_out
        else:
            q = d * q_out
        kv_a = d * self.cache_elements_per_token + self.kv_lora_rank  # + latent RMSNorm
        kv_b = self.kv_lora_rank * h * (self.qk_nope_head_dim + self.v_head_dim)
        o = h * self.v_head_dim * d
        params = q + kv_a + kv_b + o
        if model.linear_bias:  # no DeepSeek model has biases; kept for completeness
            params += q_out + self.cache_elements_per_token + d
        return params

    def kv_bytes_per_token(self, model: ModelProfile, kv, tp: int) -> float:
        """(d_c + d_r) elements, replicated on every TP rank (no division by tp)."""
        if model.architecture == "encoder":
            return 0.0
        return float(self.cache_elements_per_token) * kv.bytes_per_element

    def uses_absorbed(self, fw: Forward) -> bool:
        return self.absorbed and fw.phase == "decode"

    # -- ops --------------------------------------------------------------------------------
    def ops(self, fw: Forward) -> list[Op]:
        m = fw.model
        d, h = m.d_model, fw.heads_per_rank
        ops: list[Op] = []
        if self.q_lora_rank:
            ops.append(fw.linear("mla.q_a_proj", d, self.q_lora_rank, shard=False))
            q_out = h * self.qk_head_dim
            ops.append(fw.linear("mla.q_b_proj", self.q_lora_rank, q_out, shard=False))
        else:
            ops.append(fw.linear("mla.q_proj", d, h * self.qk_head_dim, shard=False))
        ops.append(fw.linear("mla.kv_a_proj", d, self.cache_elements_per_token, shard=False))
        ops.append(self._latent_norms(fw))
        if self.uses_absorbed(fw):
            ops.append(
                fw.linear("mla.q_absorb_uk", self.qk_nope_head_dim, self.kv_lora_rank, shard=False)
            )
            ops[-1] = _times_heads(ops[-1], h, fw)
            ops.append(self._absorbed_core(fw))
            uv = fw.linear("mla.out_absorb_uv", self.kv_lora_rank, self.v_head_dim, shard=False)
            ops.append(_times_heads(uv, h, fw))
        else:
            ops.append(self._decompress(fw))
            ops.append(self._decompressed_core(fw))
        ops.append(fw.linear("mla.o_proj", h * self.v_head_dim, d, shard=False))
        return ops

    def _latent_norms(self, fw: Forward) -> Op:
        width = self.kv_lora_rank + (self.q_lora_rank or 0)
        elems = fw.tokens * width
        act = fw.act.bytes_per_element
        return Op(
            name="mla.latent_norms",
            op_class="elementwise",
            flops=4.0 * elems,
            act_read_bytes=elems * act,
            act_write_bytes=elems * act,
            on_vector_units=True,
        )

    def _kv_write(self, fw: Forward) -> np.ndarray:
        if fw.model.architecture != "decoder":
            return np.zeros_like(np.asarray(fw.tokens, dtype=float))
        return fw.tokens * self.cache_elements_per_token * fw.kv.bytes_per_element

    def _decompress(self, fw: Forward) -> Op:
        """kv_b_proj on the latents of every context token (prefill: the new tokens; decode
        without absorption: the whole cached context, every step)."""
        h = fw.heads_per_rank
        out = h * (self.qk_nope_head_dim + self.v_head_dim)
        rows = fw.batch * fw.context
        act = fw.act.bytes_per_element
        latent_bytes = rows * self.kv_lora_rank
        from_cache = fw.phase == "decode"
        return Op(
            name="mla.kv_b_proj",
            op_class="matmul",
            flops=2.0 * rows * self.kv_lora_rank * out,
            weight_bytes=self.kv_lora_rank * out * fw.weight.bytes_per_element,
            act_read_bytes=0.0 if from_cache else latent_bytes * act,
            kv_read_bytes=latent_bytes * fw.kv.bytes_per_element if from_cache else 0.0,
            act_write_bytes=rows * out * act,
            compute_dtype=fw.compute_dtype,
        )

    def _decompressed_core(self, fw: Forward) -> Op:
        h, b = fw.heads_per_rank, fw.batch
        dqk, dv = self.qk_head_dim, self.v_head_dim
        pairs = self.new_pairs_per_head(fw)
        act = fw.act.bytes_per_element
        if fw.phase == "decode":
            keys = self.keys_per_decode_step(fw.context) * fw.new_tokens
            # decompressed K_nope / V come from kv_b_proj's output; the RoPE key from the cache
            kv_read = b * keys * self.qk_rope_head_dim * fw.kv.bytes_per_element
            k_v = keys * (self.qk_nope_head_dim + dv)
            act_read = b * h * (k_v + fw.new_tokens * dqk) * act
            act_write = b * h * fw.new_tokens * dv * act
        else:  # FlashAttention-2 order (hwsim.model.attention_io): Q, K, V read, O written once
            kv_read = 0.0
            keys = self.keys_read(fw)
            act_read = b * h * (fw.new_tokens * dqk + keys * (dqk + dv)) * act
            act_write = b * h * fw.new_tokens * dv * act
        return Op(
            name="attn.core",
            op_class="attention",
            flops=b * h * pairs * (2.0 * dqk + 2.0 * dv),
            act_read_bytes=act_read,
            act_write_bytes=act_write,
            kv_read_bytes=kv_read,
            kv_write_bytes=self._kv_write(fw),
            compute_dtype=fw.compute_dtype if fw.act.float_like else "bf16",
            meta={"pairs_per_head": pairs, "mla_form": "decompressed"},
        )

    def _absorbed_core(self, fw: Forward) -> Op:
        """Scores against the latent: MQA with a (d_c + d_r)-wide key and d_c-wide value; the
        latents are read once per sequence for all heads of the rank (FlashMLA-style)."""
        h, b = fw.heads_per_rank, fw.batch
        dc = self.kv_lora_rank
        pairs = self.new_pairs_per_head(fw)
        keys = self.keys_per_decode_step(fw.context) * fw.new_tokens
        act = fw.act.bytes_per_element
        q_read = b * h * fw.new_tokens * self.cache_elements_per_token * act
        o_write = b * h * fw.new_tokens * dc * act
        return Op(
            name="attn.core",
            op_class="attention",
            flops=b * h * pairs * (2.0 * (dc + self.qk_rope_head_dim) + 2.0 * dc),
            act_read_bytes=q_read,
            act_write_bytes=o_write,
            kv_read_bytes=b * keys * self.cache_elements_per_token * fw.kv.bytes_per_element,
            kv_write_bytes=self._kv_write(fw),
            compute_dtype=fw.compute_dtype if fw.act.float_like else "bf16",
            meta={"pairs_per_head": pairs, "mla_form": "absorbed"},
        )


def _times_heads(op: Op, heads: int, fw: Forward) -> Op:
    """A per-head projection (batched GEMM over heads): FLOPs, weights and activations x heads."""
    return replace(
        op,
        flops=op.flops * heads,
        weight_bytes=op.weight_bytes * heads,
        act_read_bytes=op.act_read_bytes * heads,
        act_write_bytes=op.act_write_bytes * heads,
    )
