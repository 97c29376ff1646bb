"""A :class:`TrainingSpec` checked against a model and a GPU count: the resolved layout.

Rules (each a clear :class:`~hwsim.errors.InfeasibleError`): gpus = tp x cp x pp x dp; tp
divides the attention heads (and divides or is a multiple of the KV heads); pp <= layers; ep
divides dp and the expert count; the global batch is a multiple of micro_batch x dp; sequence
parallelism needs tp > 1; context parallelism needs flash attention and a sequence that
splits into 2 cp equal chunks (Megatron-Core's load-balanced causal split: rank i holds
chunks i and 2cp - 1 - i). Model families: decoder-only models whose every layer is full
softmax attention (MHA / GQA / MQA) with a dense or MoE FFN; anything else is refused with
what is missing (:func:`check_supported`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.errors import HwsimError, InfeasibleError
from hwsim.model.layers import layer_groups
from hwsim.profiles.model import ModelProfile
from hwsim.training.spec import TrainingSpec


class UnsupportedModelError(HwsimError):
    """A model family the training estimate does not cover yet."""


@dataclass(frozen=True)
class Layout:
    spec: TrainingSpec
    gpus: int
    data_parallel: int
    global_batch: int
    micro_batches: int  # per pipeline (per DP replica) per optimizer step

    n_layers: int

    @property
    def stage_layers(self) -> list[int]:
        """Layers per pipeline stage (Megatron's even split; the first stages take extras)."""
        return split_layers(self.n_layers, self.spec.pp)


def split_layers(n: int, pp: int) -> list[int]:
    return [n // pp + (1 if i < n % pp else 0) for i in range(pp)]


def check_supported(model: ModelProfile) -> None:
    """Refuse model families whose training activations / FLOPs are not derived here."""
    if model.architecture != "decoder":
        raise UnsupportedModelError(
            f"{model.id} is an {model.architecture} model; training estimates cover "
            "decoder-only language models so far (an encoder's loss and masking are not "
            "modelled)"
        )
    kinds = sorted({mixer.kind_name for mixer, _, _ in layer_groups(model)})
    other = [k for k in kinds if k != "attention"]
    if other:
        raise UnsupportedModelError(
            f"{model.id} has {', '.join(other)} layers; training estimates cover full softmax "
            "attention (MHA / GQA / MQA) only so far: the stored activations and backward "
            f"FLOPs of {', '.join(other)} are not derived yet"
        )
    if model.ffn.type == "none":
        raise UnsupportedModelError(f"{model.id} has no FFN; not covered by training estimates")


def resolve_layout(model: ModelProfile, gpus: int | None, spec: TrainingSpec) -> Layout:
    check_supported(model)
    tp, pp, ep = spec.tp, spec.pp, spec.ep
    heads, kvh = model.n_heads, model.kv_heads
    if heads % tp:
        allowed = ", ".join(str(d) for d in range(1, heads + 1) if heads % d == 0)
        raise InfeasibleError(
            f"tp={tp} does not divide the {heads} attention heads of {model.id}; allowed tp: "
            f"{allowed}"
        )
    if kvh and kvh % tp and tp % kvh:
        raise InfeasibleError(
            f"tp={tp} neither divides nor is a multiple of the {kvh} KV heads of {model.id}"
        )
    if pp > model.n_layers:
        raise InfeasibleError(f"pp={pp} exceeds the {model.n_layers} layers of {model.id}")
    if spec.interleave > 1 and pp == 1:
        raise InfeasibleError("interleave > 1 needs pipeline parallelism (pp > 1)")
    if spec.interleave > 1 and model.n_layers % (pp * spec.interleave):
        raise InfeasibleError(
            f"interleave={spec.interleave} x pp={pp} does not divide the {model.n_layers} layers"
        )
    if spec.sequence_parallel and tp == 1:
        raise InfeasibleError("sequence parallelism splits the TP group's tokens: it needs tp > 1")
    cp = spec.cp
    if cp > 1 and spec.attention != "flash":
        raise InfeasibleError(
            f"cp={cp} splits each sequence over a ring of GPUs that exchange K/V blocks: it "
            "needs attention 'flash' (tiled, no score matrix), not 'naive'"
        )
    if cp > 1 and spec.seq_len % (2 * cp):
        raise InfeasibleError(
            f"seq_len={spec.seq_len} does not split into 2 x cp = {2 * cp} equal chunks "
            "(context parallelism's load-balanced causal split)"
        )
    dp = spec.data_parallel
    model_group = tp * cp * pp
    if gpus is None:
        gpus = model_group * (dp or 1)
    if gpus < 1:
        raise InfeasibleError(f"gpus={gpus} must be at least 1")
    if dp is None:
        if gpus % model_group:
            raise InfeasibleError(
                f"gpus={gpus} is not a multiple of tp x cp x pp = {tp} x {cp} x {pp} = "
                f"{model_group}"
            )
        dp = gpus // model_group
    if model_group * dp != gpus:
        raise InfeasibleError(
            f"gpus={gpus} != tp x cp x pp x dp = {tp} x {cp} x {pp} x {dp} = {model_group * dp}"
        )
    moe = model.ffn.moe
    if ep > 1:
        if moe is None:
            raise InfeasibleError(f"ep={ep} needs a mixture-of-experts model; {model.id} is dense")
        if dp % ep:
            raise InfeasibleError(f"ep={ep} must divide dp={dp} (experts are sharded within DP)")
        if moe.n_experts % ep:
            raise InfeasibleError(f"ep={ep} does not divide the {moe.n_experts} experts")
    b = spec.micro_batch
    global_batch = spec.global_batch or b * dp
    if global_batch % (b * dp):
        raise InfeasibleError(
            f"global batch {global_batch} is not a multiple of micro_batch x dp = {b} x {dp} = "
            f"{b * dp}"
        )
    return Layout(spec, gpus, dp, global_batch, global_batch // (b * dp), model.n_layers)
