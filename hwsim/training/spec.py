"""One training run's layout and settings, validated once: :class:`TrainingSpec`.

The parallel degrees are spelled ``tp`` / ``pp`` / ``dp`` / ``ep`` on the way in (keyword
arguments, CLI flags, YAML keys, JSON) and stored under their long names
(``tensor_parallel`` ...): the layout travels as one object, like a
:class:`~hwsim.profiles.deployment.DeploymentSpec` does for inference.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hwsim.errors import HwsimError

Recompute = Literal["none", "selective", "full"]
Precision = Literal["bf16", "fp8", "fp16", "fp32"]
Attention = Literal["flash", "naive"]


class TrainingSpec(BaseModel):
    """How one training step runs (per-GPU memory and time follow from it and the model)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    tensor_parallel: int = Field(1, alias="tp", ge=1, description="tensor-parallel degree")
    pipeline_parallel: int = Field(1, alias="pp", ge=1, description="pipeline-parallel degree")
    context_parallel: int = Field(
        1,
        alias="cp",
        ge=1,
        description="context-parallel degree: each sequence split over cp GPUs, attention as "
        "a ring exchange of K/V (needs flash attention)",
    )
    data_parallel: int | None = Field(
        None, alias="dp", ge=1, description="data-parallel degree (None: gpus / (tp x cp x pp))"
    )
    expert_parallel: int = Field(
        1, alias="ep", ge=1, description="expert-parallel degree (MoE; carved out of dp)"
    )
    micro_batch: int = Field(1, ge=1, description="sequences per micro-batch")
    global_batch: int | None = Field(
        None, ge=1, description="sequences per optimizer step (None: micro_batch x dp)"
    )
    seq_len: int = Field(2048, ge=1, description="tokens per sequence")
    recompute: Recompute = Field(
        "none", description="activation recomputation: none|selective|full"
    )
    zero: int = Field(0, ge=0, le=3, description="ZeRO stage (3 = FSDP)")
    sequence_parallel: bool = Field(False, description="Megatron sequence parallelism (needs tp)")
    precision: Precision = Field(
        "bf16",
        description="mixed precision (bf16/fp16), fp8 GEMMs with bf16 activations "
        "(Transformer Engine), or plain fp32",
    )
    attention: Attention = Field("flash", description="attention kernel: flash (tiled) or naive")
    dropout: bool = Field(
        True, description="dropout masks stored (Korthikanti et al. 2022 assume dropout)"
    )
    interleave: int = Field(1, ge=1, description="virtual pipeline stages per GPU (interleaved)")
    dp_overlap: float = Field(
        0.0, ge=0.0, le=1.0, description="share of the DP gradient traffic hidden under compute"
    )
    memory_fraction: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="share of device memory training may fill (the rest: CUDA context, NCCL "
        "buffers, allocator fragmentation; assumed)",
    )

    @classmethod
    def from_settings(cls, base: TrainingSpec | None = None, **settings: Any) -> TrainingSpec:
        """``base`` (default: all defaults) with the given settings (None = not given)."""
        given = {k: v for k, v in settings.items() if v is not None}
        data = {} if base is None else base.model_dump(by_alias=True, exclude_unset=True)
        data.update(given)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise HwsimError(
                f"training setting {loc}: {first['msg']} (got {first.get('input')!r})"
            ) from None

    def replace(self, **settings: Any) -> TrainingSpec:
        data = self.model_dump(by_alias=True)
        data.update(settings)
        return TrainingSpec.model_validate(data)

    @property
    def tp(self) -> int:
        return self.tensor_parallel

    @property
    def pp(self) -> int:
        return self.pipeline_parallel

    @property
    def ep(self) -> int:
        return self.expert_parallel

    @property
    def cp(self) -> int:
        return self.context_parallel

    @property
    def local_seq_len(self) -> float:
        """Tokens of each sequence one GPU holds: seq_len / cp."""
        return self.seq_len / self.context_parallel


def setting_names() -> list[str]:
    """The spec's settings by their short (alias) names, in order: the CLI's flags."""
    return [info.alias or name for name, info in TrainingSpec.model_fields.items()]
