"""The ops of one forward pass of a whole model, as one GPU of a TP group sees them.

Layers run one after another through the pipeline stages, so for latency the op list covers
all layers; per-GPU memory divides layers by the pipeline degree elsewhere.
Tensor parallelism (Megatron-LM, Shoeybi et al. 2019, arXiv 1909.08053): projections are
split over ``tp`` ranks and each layer all-reduces its attention output and its MLP output
(one all-reduce when attention and MLP run in parallel, as in Falcon).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hwsim.model.ffn import ffn_ops
from hwsim.model.forward import Forward
from hwsim.model.layers import layer_groups
from hwsim.model.mixers import Mixer
from hwsim.model.ops import Op


def forward_ops(
    fw: Forward, pp: int = 1, mixer_forward: Callable[[Mixer], Forward] | None = None
) -> list[Op]:
    """All ops of one forward pass, each with ``count`` = how often it runs per forward.

    ``mixer_forward``: the forward each layer group's mixer ops are built from (default
    ``fw``; the serving step model prices a windowed group's decode attention at that group's
    own per-sequence context)."""
    model = fw.model
    shared = _context_free_ops(fw, pp)
    ops: list[Op] = [shared.embedding]
    for (mixer, _, count), (norms, rest) in zip(layer_groups(model), shared.groups, strict=True):
        mfw = fw if mixer_forward is None else mixer_forward(mixer)
        ops += norms
        ops += [op.times(count) for op in mixer.ops(mfw)]
        ops += rest
    ops += shared.tail
    return ops


@dataclass(frozen=True)
class _ContextFree:
    """The ops of a forward that do not depend on its context: all but the mixers'."""

    embedding: Op
    groups: tuple[tuple[list[Op], list[Op]], ...]  # per layer group: (norms, FFN + all-reduces)
    tail: list[Op]  # final norm, LM head, pipeline send


def _context_free_ops(fw: Forward, pp: int) -> _ContextFree:
    """:class:`_ContextFree` of ``fw``; for a scalar forward built once per (model, dtypes,
    phase, batch, new tokens, tp, pp): calls that differ only in context (a decode step at
    another length, a prompt of another length at batch x new tokens unchanged) share the
    same op objects, and with them their prices (:func:`hwsim.inference.engine.price_ops`)."""
    if type(fw.batch) is not float or type(fw.new_tokens) is not float:
        return _build_context_free(fw, pp)
    held = (fw.model, fw.weight, fw.act)
    key = (fw.phase, fw.batch, fw.new_tokens, fw.tp, pp, fw.compute_dtype, fw.custom_all_reduce,
           *map(id, held))  # fmt: skip
    hit = _CONTEXT_FREE.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], held, strict=True)):
        return hit[1]
    built = _build_context_free(fw, pp)
    if len(_CONTEXT_FREE) >= CONTEXT_FREE_CACHE_SIZE:
        _CONTEXT_FREE.clear()
    _CONTEXT_FREE[key] = (held, built)  # holding the objects: their ids stay taken
    return built


CONTEXT_FREE_CACHE_SIZE = 1024
_CONTEXT_FREE: dict[tuple, tuple[tuple, _ContextFree]] = {}


def _build_context_free(fw: Forward, pp: int) -> _ContextFree:
    groups = []
    for mixer, is_moe, count in layer_groups(fw.model):
        rest = [*ffn_ops(fw, is_moe), *_tp_all_reduces(fw, mixer)]
        groups.append(([op.times(count) for op in _norms(fw)], [op.times(count) for op in rest]))
    tail = [_norm(fw, "final_norm"), _lm_head(fw)]
    if pp > 1:
        tail.append(_pipeline_send(fw, pp))
    return _ContextFree(_embedding(fw), tuple(groups), tail)


def _norm(fw: Forward, name: str) -> Op:
    elems = fw.tokens * fw.model.d_model
    act = fw.act.bytes_per_element
    return Op(
        name=name,
        op_class="elementwise",
        flops=5.0 * elems,  # square, mean, rsqrt-scale, weight multiply, residual add
        act_read_bytes=2.0 * elems * act,  # input and residual
        act_write_bytes=elems * act,
        on_vector_units=True,
    )


def _norms(fw: Forward) -> list[Op]:
    n = fw.model.norms_per_layer
    return [_norm(fw, "layer_norms").times(n)] if n else []


def _embedding(fw: Forward) -> Op:
    elems = fw.tokens * fw.model.d_model
    return Op(
        name="embedding",
        op_class="elementwise",
        weight_bytes=elems * fw.weight.bytes_per_element,  # gathered rows only
        act_write_bytes=elems * fw.act.bytes_per_element,
        on_vector_units=True,
    )


def _lm_head(fw: Forward) -> Op:
    """Logits for the last position of each sequence only (serving engines skip the rest)."""
    d, vocab = fw.model.d_model, fw.model.vocab_size
    rows = fw.batch
    if fw.model.architecture == "encoder":
        rows = fw.tokens
    return Op(
        name="lm_head",
        op_class="matmul",
        flops=2.0 * rows * d * vocab / fw.tp,
        weight_bytes=d * vocab / fw.tp * fw.weight.bytes_per_element,
        act_read_bytes=rows * d * fw.act.bytes_per_element,
        act_write_bytes=rows * vocab / fw.tp * 4.0,  # fp32 logits
        compute_dtype=fw.compute_dtype,
    )


def _tp_all_reduces(fw: Forward, mixer) -> list[Op]:
    """One all-reduce per row-parallel block output: the mixer's, plus the FFN's unless the
    layer has none or runs attention and MLP in parallel (one shared all-reduce, Falcon)."""
    if fw.tp == 1:
        return []
    has_ffn = fw.model.ffn.type != "none" and not fw.model.parallel_attention_mlp
    per_layer = mixer.tp_all_reduces + (1 if has_ffn else 0)
    payload = fw.tokens * fw.model.d_model * fw.act.bytes_per_element
    if fw.custom_all_reduce:  # the engine's kernel where it applies, else NCCL's model
        meta, kernel = {"custom_all_reduce": True}, None  # (torch.nccl measurements do not apply)
    else:
        meta, kernel = {}, ("all_reduce", {"bytes": payload, "ranks": fw.tp})  # measured rung
    op = Op(
        name="tp.all_reduce",
        op_class="communication",
        comm_bytes=payload,
        collective="all_reduce",
        ranks=fw.tp,
        meta=meta,
        kernel=kernel,
    )
    return [op.times(per_layer)]


def _pipeline_send(fw: Forward, pp: int) -> Op:
    op = Op(
        name="pp.send_activations",
        op_class="communication",
        comm_bytes=fw.tokens * fw.model.d_model * fw.act.bytes_per_element,
        collective="p2p",
        ranks=2,
    )
    return op.times(pp - 1)
