"""Softmax attention: full causal / bidirectional attention with MHA, GQA or MQA.

Other attention variants subclass :class:`AttentionMixer` and override the three counting
methods (``pairs_per_head``, ``keys_per_decode_step``, ``kv_tokens_held``); the FLOP and byte
accounting below is shared.

FLOPs: each scored query-key pair costs 2*d_h for QK^T and 2*d_h for PV (multiply-adds
count 2), so attention core FLOPs = 4 * d_h * pairs per head (Kaplan et al. 2020, Table 1,
forward ~ 2*n_ctx*d_attn per token per layer for full non-causal context).
HBM bytes: a tiled (FlashAttention-2 order) kernel reads Q and the keys/values it meets and
writes O once (:mod:`hwsim.model.attention_io`, shared with the registered kernels); a naive
kernel also materialises the scores, Theta(N*d + N^2) accesses. The new tokens' K and V are
written into the cache by a separate op (``attn.kv_append``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from hwsim.model.attention_io import kv_append_bytes, tiled_attention_bytes
from hwsim.model.forward import Forward
from hwsim.model.mixers.base import Mixer, register
from hwsim.model.ops import Op
from hwsim.profiles.model import ModelProfile


class AttentionMixer(Mixer):
    """Shared accounting of softmax-attention layers (Q, K, V, O projections + core)."""

    is_attention: ClassVar[bool] = True
    causal: bool = True

    # -- counting: the three methods a variant overrides ---------------------------------
    def pairs_per_head(self, n):
        if type(n) is float:  # one length: the same arithmetic, a numpy float as before
            return np.float64(n * (n + 1) / 2 if self.causal else n * n)
        n = np.asarray(n, dtype=float)
        return n * (n + 1) / 2 if self.causal else n * n

    def keys_per_decode_step(self, context):
        return np.asarray(context, dtype=float)

    def kv_tokens_held(self, context):
        return np.asarray(context, dtype=float)

    def score_matrix_elements_per_head(self, n):
        """A naive kernel materialises the dense n x n score matrix, masked or not."""
        n = np.asarray(n, dtype=float)
        return n * n

    # -- model-level -----------------------------------------------------------------------
    def check_model(self, model: ModelProfile) -> None:
        if model.n_heads <= 0 or model.head_size <= 0:
            raise ValueError(f"mixer {self.kind!r} needs n_heads and head_dim")

    def param_count(self, model: ModelProfile) -> int:
        d, dh = model.d_model, model.head_size
        q_out, kv_out = model.n_heads * dh, model.kv_heads * dh
        params = d * (q_out + 2 * kv_out) + q_out * d
        if model.qkv_bias or model.linear_bias:
            params += q_out + 2 * kv_out
        if model.linear_bias:
            params += d
        return params

    def kv_bytes_per_token(self, model: ModelProfile, kv, tp: int) -> float:
        if model.architecture == "encoder":
            return 0.0
        kv_heads_per_rank = math.ceil(model.kv_heads / tp)
        return 2.0 * kv_heads_per_rank * model.head_size * kv.bytes_per_element

    # -- ops ------------------------------------------------------------------------------
    def ops(self, fw: Forward) -> list[Op]:
        m, dh = fw.model, fw.model.head_size
        h, hk = fw.heads_per_rank, fw.kv_heads_per_rank
        qkv = fw.linear("attn.qkv_proj", m.d_model, (h + 2 * hk) * dh, shard=False)
        out = fw.linear("attn.o_proj", h * dh, m.d_model, shard=False)
        caches = m.architecture == "decoder"  # an encoder keeps no cache
        return [qkv, *([self.kv_append_op(fw)] if caches else []), self.core_op(fw), out]

    def new_pairs_per_head(self, fw: Forward) -> np.ndarray:
        """Pairs scored by the new tokens of this forward: pairs(c) - pairs(c - new)."""
        return self.pairs_per_head(fw.context) - self.pairs_per_head(fw.context - fw.new_tokens)

    def keys_read(self, fw: Forward) -> np.ndarray:
        """Distinct keys the new queries of this forward meet: the newest query's keys plus one
        per earlier new query, at most the context (a window caps the span)."""
        newest = self.keys_per_decode_step(fw.context)
        return np.minimum(fw.context, newest + np.maximum(fw.new_tokens - 1.0, 0.0))

    def kv_append_op(self, fw: Forward) -> Op:
        """The new tokens' keys and values written into the cache, a kernel of its own in the
        engines (see :mod:`hwsim.model.attention_io`)."""
        read, written = kv_append_bytes(
            fw.batch,
            fw.kv_heads_per_rank,
            fw.new_tokens,
            fw.model.head_size,
            fw.act.bytes_per_element,
            fw.kv.bytes_per_element,
        )
        return Op(
            name="attn.kv_append",
            op_class="elementwise",
            act_read_bytes=read,
            kv_write_bytes=written,
            on_vector_units=True,
        )

    def core_op(self, fw: Forward) -> Op:
        m, dh = fw.model, fw.model.head_size
        h, hk = fw.heads_per_rank, fw.kv_heads_per_rank
        b, new = fw.batch, fw.new_tokens
        pairs = self.new_pairs_per_head(fw)
        # every path reads Q and the keys/values it meets and writes O (attention_io); a
        # decoder reads them from its cache, an encoder's are activations
        caches = m.architecture == "decoder"
        act = fw.act.bytes_per_element
        kv = fw.kv.bytes_per_element if caches else act
        q_read, o_write, kv_read = tiled_attention_bytes(
            b, h, hk, new, self.keys_read(fw), dh, act, kv
        )
        act_read, act_write = q_read, o_write
        if not caches:
            act_read, kv_read = act_read + kv_read, np.zeros_like(kv_read)
        if fw.attention_impl == "naive":  # ... and a materialising kernel passes over S and P
            extra = self._naive_score_bytes(fw)
            act_read, act_write = act_read + extra / 2, act_write + extra / 2
        return Op(
            name="attn.core",
            op_class="attention",
            flops=4.0 * b * h * dh * self.computed_pairs_per_head(fw),
            act_read_bytes=act_read,
            act_write_bytes=act_write,
            kv_read_bytes=kv_read,
            compute_dtype=fw.compute_dtype if fw.act.float_like else "bf16",
            kernels=1 if fw.attention_impl == "flash" else 3,
            meta={
                "pairs_per_head": pairs,
                "workspace_bytes": self._held_bytes(fw),
                "kernel_name": self._kernel_family(fw),
                "head_dim": dh,  # a calibration shape factor (hwsim.perf.corrections)
            },
            kernel=self.kernel_call(fw),
        )

    def kernel_call(self, fw: Forward) -> tuple[str, dict] | None:
        """The registered kernel call the core is, for the measured rung (None: none is)."""
        return None

    def computed_pairs_per_head(self, fw: Forward) -> np.ndarray:
        """Query-key pairs the kernel computes: the scored pairs, unless a block-sparse
        variant computes whole blocks (it overrides this)."""
        return self.new_pairs_per_head(fw)

    def _kernel_family(self, fw: Forward) -> str:
        """The registered kernel this layer's core runs as, for its calibration group, whether
        or not the shape is one whole kernel call (a chunked prefill runs the prefill kernel
        against the cache): see :func:`hwsim.perf.kernels.calibration_name`."""
        if fw.phase == "decode":
            gqa = fw.kv_heads_per_rank < fw.heads_per_rank
            return "attention_decode_gqa" if gqa else "attention_decode"
        return "attention_prefill_causal" if self.causal else "attention_prefill"

    def _held_bytes(self, fw: Forward) -> np.ndarray:
        """Memory the kernel holds at once: Q, K, V and O (a tiled kernel keeps its tiles in
        SRAM); a naive kernel also holds the score matrix S and the probabilities P."""
        dh, act = fw.model.head_size, fw.act.bytes_per_element
        b, h, hk = fw.batch, fw.heads_per_rank, fw.kv_heads_per_rank
        held = b * (2 * h * fw.new_tokens + 2 * hk * fw.context) * dh * act
        if fw.attention_impl == "naive":
            held = held + 2 * b * h * fw.new_tokens * fw.context * act
        return held

    def _naive_score_bytes(self, fw: Forward) -> np.ndarray:
        """Score traffic of a materialising kernel: write S, read S, write P, read P
        (4 passes over new_tokens x context scores per head)."""
        scores = fw.new_tokens * fw.context
        return 4.0 * fw.batch * fw.heads_per_rank * scores * fw.act.bytes_per_element


@register
class FullAttention(AttentionMixer):
    """Every query attends to every (earlier, if causal) key."""

    kind_name: ClassVar[str] = "attention"

    def kernel_call(self, fw: Forward) -> tuple[str, dict] | None:
        """The registered fused-attention kernel this layer's core is (:mod:`hwsim.perf.kernels`),
        for the measured rung: a whole-prompt prefill or a one-token decode, tiled kernel only."""
        if fw.attention_impl != "flash":
            return None
        common = {
            "batch": fw.batch,
            "heads": fw.heads_per_rank,
            "kv_heads": fw.kv_heads_per_rank,
            "head_dim": fw.model.head_size,
            "dtype": fw.compute_dtype if fw.act.float_like else "bf16",
        }
        if fw.phase == "decode" and _all_ones(fw.new_tokens):
            return "attention_decode", {**common, "context_len": fw.context}
        if fw.phase == "prefill" and _equal(fw.new_tokens, fw.context):
            return "attention_prefill", {**common, "seq_len": fw.context, "causal": self.causal}
        return None


def _all_ones(x) -> bool:
    """Every element of ``x`` is 1 (a Python float compared directly)."""
    return x == 1 if type(x) is float else bool(np.all(np.asarray(x) == 1))


def _equal(a, b) -> bool:
    """``np.array_equal(a, b)`` (Python floats compared directly)."""
    return a == b if type(a) is float and type(b) is float else np.array_equal(a, b)
