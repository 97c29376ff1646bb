"""RWKV blocks: RWKV-6 "Finch" (Peng et al. 2024, arXiv 2404.05892) and RWKV-7 "Goose"
(Peng et al. 2025, arXiv 2503.14456).

One RWKV layer is a time-mix (the token mixer: token shift, data-dependent LoRAs, r/k/v(/g)
projections, the WKV recurrence over an N x N matrix state per head, GroupNorm, output
projection) followed by a channel-mix (the FFN). The channel-mix also uses token shift, so it is
part of this mixer and a model using it sets ``ffn.type: none``; the block's two LayerNorms are the
model's ``norms_per_layer: 2``.

Parameter shapes (C = d_model, H = C / N heads of N = head_size, F = ffn_size):

RWKV-7 (BlinkDL/RWKV-LM ``RWKV-v7`` ``RWKV_Tmix_x070`` / ``RWKV_CMix_x070``; HF/fla ``rwkv7``
configs name the LoRA ranks ``decay_low_rank_dim``, ``a_low_rank_dim``, ``v_low_rank_dim``,
``gate_low_rank_dim``):
  time-mix: six token-shift mix vectors x_r, x_w, x_k, x_v, x_a, x_g (6C); decay LoRA
  w1 C x r_w, w2 r_w x C, w0 C; in-context-rate LoRA a1, a2, a0 (2 C r_a + C); value-residual
  LoRA v1, v2, v0 (2 C r_v + C); gate LoRA g1, g2 (2 C r_g, no bias); k_k, k_a, r_k (3C);
  receptance, key, value, output C x C (4C^2); ln_x GroupNorm(H, C) weight + bias (2C).
  channel-mix: x_k (C), key C x F, value F x C (no receptance in v7).
RWKV-6 (``RWKV_Tmix_x060`` / ``RWKV_CMix_x060``; fla ``rwkv6`` ``proj_low_rank_dim``,
``decay_low_rank_dim``):
  time-mix: time_maa_x, _w, _k, _v, _r, _g (6C); mix LoRA time_maa_w1 C x 5 r_m and time_maa_w2
  5 x r_m x C; time_decay C, decay LoRA C x r_d and r_d x C; time_faaaa (bonus u, C);
  receptance, key, value, gate, output (5C^2); ln_x (2C).
  channel-mix: time_maa_k, time_maa_r (2C), key C x F, receptance C x C, value F x C.

Layer-0 details a per-layer mixer cannot express: RWKV-7's first layer has no value-residual
LoRA in the HF/fla layout (it defines v_first), and block 0 carries an extra LayerNorm (ln0, 2C)
on the embeddings. Counting every layer alike overcounts by 2 C r_v + C - 2C (about 0.26M for a
2048-wide model, < 0.02 % of 1.5B).

State per sequence and layer: the WKV matrix state H N^2 = C N elements, kept in fp32 by the
reference kernels (``state_dtype_bits``, default 32), plus the token-shift vectors of the
time-mix and the channel-mix, 2C elements (``shift_state_dtype_bits``, default 16 = the
activation dtype). Constant in context length.

FLOPs of the WKV recurrence per token and head (N x N state S):
  RWKV-6: S <- diag(w) S + k^T v, y = r (S + diag(u) k^T v): decay N^2, outer product and add
  2 N^2, r S 2 N^2 (the bonus term is O(N)) = 5 N^2.
  RWKV-7: S <- S (diag(w) + a^T b) + v^T k, y = S r: S diag(w) N^2, S a 2 N^2, (S a) b^T 2 N^2,
  v^T k 2 N^2, S r 2 N^2 = 9 N^2.
Prefill runs the same recurrence (the reference CUDA kernel walks the tokens of a chunk in
order; chunking only checkpoints states), so prefill FLOPs are linear in length.
Decode reads and writes the whole state each step (memory-bound, like an SSM).

Tensor parallelism: heads split across ranks (WKV state and r/k/v/g columns per rank); the
token-shift state is the full C-wide previous hidden state and is replicated. RWKV-7's LoRA
up-projections produce per-head quantities and are split; their down-projections and RWKV-6's
mix LoRA (whose outputs feed every projection) are replicated. The output and channel-mix
value projections are row-parallel; RWKV-6's channel-mix receptance, which gates the full-width
output, is replicated.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from hwsim.model.forward import Forward
from hwsim.model.mixers.base import Mixer, register
from hwsim.model.mixers.mamba import recurrent_state_traffic
from hwsim.model.ops import Op
from hwsim.profiles.model import ModelProfile

_V7_LORAS = ("decay_lora_rank", "a_lora_rank", "v_lora_rank", "gate_lora_rank")
_V6_LORAS = ("mix_lora_rank", "decay_lora_rank")


@register
class RWKV(Mixer):
    """RWKV-6 or RWKV-7 time-mix + channel-mix (see the module docstring for formulas)."""

    kind_name: ClassVar[str] = "rwkv"
    tp_all_reduces: ClassVar[int] = 2  # time-mix output and channel-mix output

    version: Literal[6, 7] = 7
    head_size: int = Field(default=64, ge=1, description="N, channels per WKV head")
    ffn_size: int = Field(ge=1, description="F, channel-mix hidden width")
    decay_lora_rank: int | None = Field(default=None, ge=1, description="w LoRA (v6 and v7)")
    a_lora_rank: int | None = Field(default=None, ge=1, description="v7 in-context-rate LoRA")
    v_lora_rank: int | None = Field(default=None, ge=1, description="v7 value-residual LoRA")
    gate_lora_rank: int | None = Field(default=None, ge=1, description="v7 output-gate LoRA")
    mix_lora_rank: int | None = Field(default=None, ge=1, description="v6 token-shift mix LoRA")
    state_dtype_bits: int = Field(default=32, ge=1, description="WKV state storage, 32 = fp32")
    shift_state_dtype_bits: int = Field(default=16, ge=1, description="token-shift storage")

    @model_validator(mode="after")
    def _ranks_for_version(self) -> RWKV:
        needed = _V7_LORAS if self.version == 7 else _V6_LORAS
        missing = [n for n in needed if getattr(self, n) is None]
        if missing:
            raise ValueError(f"rwkv version {self.version} needs {', '.join(missing)}")
        unused = (set(_V7_LORAS) | set(_V6_LORAS)) - set(needed)
        extra = [n for n in sorted(unused) if getattr(self, n) is not None]
        if extra:
            raise ValueError(f"rwkv version {self.version} has no {', '.join(extra)}")
        return self

    # -- model-level -----------------------------------------------------------------------
    def check_model(self, model: ModelProfile) -> None:
        if model.d_model % self.head_size:
            raise ValueError(
                f"mixer 'rwkv': d_model {model.d_model} is not a multiple of head_size "
                f"{self.head_size}"
            )

    def n_heads(self, model: ModelProfile) -> int:
        return model.d_model // self.head_size

    def heads_per_rank(self, model: ModelProfile, tp: int) -> int:
        return math.ceil(self.n_heads(model) / tp)

    def _rank(self, name: str) -> int:
        """A LoRA rank this version needs (check_model has made sure it is set)."""
        rank = getattr(self, name)
        if rank is None:
            raise ValueError(f"RWKV-{self.version} needs {name}")
        return int(rank)

    def time_mix_params(self, model: ModelProfile) -> int:
        c = model.d_model
        if self.version == 7:
            loras = (
                2
                * c
                * (
                    self._rank("decay_lora_rank")
                    + self._rank("a_lora_rank")
                    + self._rank("v_lora_rank")
                    + self._rank("gate_lora_rank")
                )
            )
            vectors = 6 * c + 3 * c + 3 * c  # x_*; w0, a0, v0; k_k, k_a, r_k
            return vectors + loras + 4 * c * c + 2 * c
        loras = 2 * c * 5 * self._rank("mix_lora_rank") + 2 * c * self._rank("decay_lora_rank")
        vectors = 6 * c + c + c  # time_maa_*; time_decay; time_faaaa
        return vectors + loras + 5 * c * c + 2 * c

    def channel_mix_params(self, model: ModelProfile) -> int:
        c, f = model.d_model, self.ffn_size
        if self.version == 7:
            return c + 2 * c * f
        return 2 * c + 2 * c * f + c * c

    def param_count(self, model: ModelProfile) -> int:
        return self.time_mix_params(model) + self.channel_mix_params(model)

    def wkv_state_elements(self, model: ModelProfile, tp: int = 1) -> float:
        return float(self.heads_per_rank(model, tp) * self.head_size**2)

    def shift_state_elements(self, model: ModelProfile, tp: int = 1) -> float:
        return 2.0 * model.d_model

    def state_elements(self, model: ModelProfile, tp: int = 1) -> float:
        return self.wkv_state_elements(model, tp) + self.shift_state_elements(model, tp)

    def state_bytes_per_sequence(self, model: ModelProfile, tp: int) -> float:
        return (
            self.wkv_state_elements(model, tp) * self.state_dtype_bits / 8
            + self.shift_state_elements(model, tp) * self.shift_state_dtype_bits / 8
        )

    def wkv_flops_per_token(self, model: ModelProfile, tp: int = 1) -> float:
        per_state = 9.0 if self.version == 7 else 5.0
        return per_state * self.heads_per_rank(model, tp) * self.head_size**2

    # -- ops --------------------------------------------------------------------------------
    def _shift_op(self, fw: Forward, name: str, lerps: int) -> Op:
        """Token shift: x_prev - x once, then ``lerps`` mixes x + (x_prev - x) mu (2 FLOPs each);
        the previous token's C-wide vector is the shift state (read and written in decode)."""
        c, t, act = fw.model.d_model, fw.tokens, fw.act.bytes_per_element
        read, write = recurrent_state_traffic(fw, c * self.shift_state_dtype_bits / 8)
        return Op(
            name=name,
            op_class="elementwise",
            flops=t * c * (1.0 + 2.0 * lerps),
            weight_bytes=lerps * c * fw.weight.bytes_per_element,
            act_read_bytes=t * c * act,
            act_write_bytes=t * c * lerps * act,
            kv_read_bytes=read,
            kv_write_bytes=write,
            on_vector_units=True,
        )

    def _elementwise(self, fw: Forward, name: str, elems, flops_per, reads: int) -> Op:
        act = fw.act.bytes_per_element
        return Op(
            name=name,
            op_class="elementwise",
            flops=elems * flops_per,
            act_read_bytes=reads * elems * act,
            act_write_bytes=elems * act,
            on_vector_units=True,
        )

    def ops(self, fw: Forward) -> list[Op]:
        m = fw.model
        c, tp = m.d_model, fw.tp
        c_r = self.heads_per_rank(m, tp) * self.head_size  # time-mix channels on this rank
        f_r = self.ffn_size / tp
        t, act = fw.tokens, fw.act.bytes_per_element
        ops: list[Op] = []
        # time-mix
        if self.version == 7:
            ops.append(self._shift_op(fw, "rwkv.time_shift", 6))
            ranks = sum(self._rank(name) for name in _V7_LORAS)
            ops.append(fw.linear("rwkv.lora_down", c, ranks, shard=False))
            ops.append(self._elementwise(fw, "rwkv.lora_act", t * ranks, 4.0, 1))
            ops.append(fw.linear("rwkv.lora_up", ranks, c_r, shard=False))
            ops.append(fw.linear("rwkv.rkv_proj", c, 3 * c_r, shard=False))
            wkv_inputs = 6  # r, w, k, v, a (-kk), b (kk a)
        else:
            ops.append(self._shift_op(fw, "rwkv.time_shift", 1))
            mix = 5 * self._rank("mix_lora_rank")
            decay = self._rank("decay_lora_rank")
            ops.append(fw.linear("rwkv.mix_lora_down", c, mix, shard=False))
            ops.append(fw.linear("rwkv.mix_lora_up", mix, c, shard=False))
            ops.append(self._elementwise(fw, "rwkv.mix_lerps", t * c, 11.0, 6))
            ops.append(fw.linear("rwkv.decay_lora_down", c, decay, shard=False))
            ops.append(fw.linear("rwkv.decay_lora_up", decay, c_r, shard=False))
            ops.append(fw.linear("rwkv.rkvg_proj", c, 4 * c_r, shard=False))
            wkv_inputs = 4  # r, w, k, v
        state_bytes = self.wkv_state_elements(m, tp) * self.state_dtype_bits / 8
        read, write = recurrent_state_traffic(fw, state_bytes)
        ops.append(
            Op(
                name="rwkv.wkv",
                op_class="elementwise",
                flops=t * self.wkv_flops_per_token(m, tp),
                act_read_bytes=t * wkv_inputs * c_r * act,
                act_write_bytes=t * c_r * act,
                kv_read_bytes=read,
                kv_write_bytes=write,
                on_vector_units=True,
                meta={"state_bytes_per_sequence": state_bytes},
            )
        )
        # GroupNorm, bonus term and output gate
        ops.append(self._elementwise(fw, "rwkv.ln_x_gate", t * c_r, 12.0, 3))
        ops.append(fw.linear("rwkv.output", c_r, c, shard=False))
        # channel-mix
        ops.append(self._shift_op(fw, "rwkv.channel_shift", 1 if self.version == 7 else 2))
        ops.append(fw.linear("rwkv.ffn_key", c, f_r, shard=False))
        ops.append(self._elementwise(fw, "rwkv.ffn_relu_sq", t * f_r, 2.0, 1))
        ops.append(fw.linear("rwkv.ffn_value", f_r, c, shard=False))
        if self.version == 6:
            ops.append(fw.linear("rwkv.ffn_receptance", c, c, shard=False))
            ops.append(self._elementwise(fw, "rwkv.ffn_gate", t * c, 5.0, 2))
        return ops
