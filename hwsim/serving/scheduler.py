"""Continuous-batching scheduler (vLLM-style): configuration and the rules that do not depend
on time.

What one engine iteration runs is the scheduling policy's choice, ``SchedulerConfig.policy``:
``"chunked"`` (vLLM v1 / v0 with chunked prefill), ``"unchunked"`` (vLLM v0 default) or
``"prefill_first"`` (SGLang), described in :mod:`hwsim.serving.policies`, or any policy
registered there. Left unset it is
``"chunked"`` if ``chunked_prefill`` else ``"unchunked"``; when it is set, ``chunked_prefill``
follows it (giving both, they must agree). See :mod:`hwsim.serving.simulator` for the loop.

Rules the engine applies under every policy:

Admission (``engine.admit_next``, FCFS with head-of-line blocking in the built-in policies): a
request is admitted when a sequence slot is free (max_num_seqs) and free KV blocks >= blocks for
its whole prompt + 1 (headroom). The whole prompt's blocks are reserved at admission, also when
its prefill is chunked.

Preemption (recompute): when the decodes of an iteration need more new blocks than are free,
the most recently admitted running sequence is preempted (repeatedly, as needed): its blocks are
freed and it goes to the head of the waiting queue. Its generated tokens are kept and
re-prefilled with the prompt when it resumes (prompt + generated tokens, all recomputed: the
prefix cache is assumed not to survive preemption).

Multi-step scheduling (``num_scheduler_steps`` k > 1, vLLM ``--num-scheduler-steps``): one
scheduling decision runs a *block* of up to k iterations. The policy schedules the block's first
iteration as usual (admissions, prefill chunks, decodes); if it is decodes only, the other
k - 1 are decode-only iterations of the same sequences, so new requests are admitted only at
block boundaries. A first iteration with prefill tokens is a block of one iteration, as vLLM
0.6's multi-step does ("Force Single Step: We force single step when there are prefill
requests in a batch", github.com/vllm-project/vllm/pull/7000; later versions run the rest of
the block as decodes). Everything a block produces comes out at its end: the tokens of its k
decode steps (all at the block's end time), the first tokens of the prefills it finished, the
requests that finished during it (they leave the batch at their last token, but are reported
finished, and a closed-loop client sends its next request, at the block's end). A block ends
early if no decode is left in it. ``iteration_overhead_s`` (host time per scheduling decision)
is added to the first iteration of every block, so multi-step pays it once per k steps. A
request reaches the engine ``request_overhead_s`` after it is sent (HTTP, tokenization): its
arrival stays the send time, so its TTFT includes the overhead. k = 1 with no overheads is
iteration-level scheduling.

Rejection: a request that could never complete even alone is rejected up front: KV blocks for
prompt + output tokens + 1 headroom block exceed the capacity ("kv_capacity"), or, under a
policy without chunked prefill, its prompt (less any cached prefix) exceeds the token budget
("token_budget").
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, field_validator, model_validator

from hwsim.serving.fields import SPEC_CONFIG
from hwsim.serving.kv_blocks import blocks_for_tokens
from hwsim.serving.policies import UnknownPolicyError, policy_for

if TYPE_CHECKING:
    from hwsim.profiles.deployment import DeploymentSpec

COMPLETED = "completed"
REJECTED_KV = "rejected_kv_capacity"
REJECTED_BUDGET = "rejected_token_budget"
NOT_SERVED_OVERLOAD = "not_served_overload"  # a run stopped because arrivals outran service


class SchedulerConfig(BaseModel):
    model_config = SPEC_CONFIG
    kv_capacity_tokens: int = Field(ge=1)
    max_num_seqs: int = Field(default=256, ge=1)
    max_num_batched_tokens: int = Field(default=8192, ge=1)
    block_size_tokens: int = Field(default=16, ge=1)
    chunked_prefill: bool = True
    # A registered scheduling policy (hwsim.serving.policies); None: from chunked_prefill.
    policy: str | None = None
    prefix_caching: bool = False
    preemption_mode: Literal["recompute"] = "recompute"
    # The engine runtime (a deployment's ``runtime:``, hwsim.profiles.runtime), see the module
    # doc: decode steps per scheduling decision, host seconds per decision, seconds before a
    # request reaches the engine. The defaults are iteration-level scheduling, no overheads.
    num_scheduler_steps: int = Field(default=1, ge=1)
    iteration_overhead_s: float = Field(default=0.0, ge=0)
    request_overhead_s: float = Field(default=0.0, ge=0)

    @field_validator("policy")
    @classmethod
    def _registered(cls, name: str | None) -> str | None:
        if name is not None:
            policy_for(name)  # UnknownPolicyError (a ValueError) lists the allowed names
        return name

    @model_validator(mode="before")
    @classmethod
    def _chunking_from_policy(cls, data: Any) -> Any:
        """A given policy sets chunked_prefill when that is not given too."""
        name = data.get("policy") if isinstance(data, dict) else None
        if isinstance(name, str) and "chunked_prefill" not in data:
            with contextlib.suppress(UnknownPolicyError):  # _registered reports it
                data = {**data, "chunked_prefill": policy_for(name).chunked_prefill}
        return data

    @model_validator(mode="after")
    def _coherent(self) -> SchedulerConfig:
        chunked = policy_for(self.policy_name).chunked_prefill
        if self.chunked_prefill != chunked:
            raise ValueError(
                f"policy {self.policy!r} {'chunks' if chunked else 'does not chunk'} prefills "
                f"but chunked_prefill={self.chunked_prefill}; give one of the two, or both agreeing"
            )
        if self.kv_capacity_blocks < 2:
            raise ValueError(
                f"kv_capacity_tokens={self.kv_capacity_tokens} holds "
                f"{self.kv_capacity_blocks} blocks of {self.block_size_tokens} tokens; "
                "need at least 2 (one plus the admission headroom)"
            )
        if chunked and self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"with chunked prefill, max_num_batched_tokens ({self.max_num_batched_tokens}) "
                f"must be >= max_num_seqs ({self.max_num_seqs})"
            )
        return self

    @property
    def policy_name(self) -> str:
        """The scheduling policy this config runs (``policy``, else from chunked_prefill)."""
        if self.policy is not None:
            return self.policy
        return default_policy_name(self.chunked_prefill)

    @property
    def kv_capacity_blocks(self) -> int:
        """Whole blocks in the KV capacity (a partial block is unusable)."""
        return self.kv_capacity_tokens // self.block_size_tokens


def default_policy_name(chunked_prefill: bool) -> str:
    """The policy a config without ``policy`` runs."""
    return "chunked" if chunked_prefill else "unchunked"


def deployment_policy_name(spec: DeploymentSpec) -> str:
    """The scheduling policy the simulator runs for ``spec``."""
    return deployment_scheduler_fields(spec).get(
        "policy", default_policy_name(spec.chunked_prefill)
    )


def deployment_scheduler_fields(spec: DeploymentSpec) -> dict[str, Any]:
    """The :class:`SchedulerConfig` fields a deployment sets: its batching settings (the token
    budget at least one token per sequence), its engine runtime's overheads and steps, and
    the policy its runtime runs (``prefill_first`` with chunked prefill where the engine
    runs prefill-only iterations first, :attr:`RuntimeSpec.prefill_first
    <hwsim.profiles.runtime.RuntimeSpec>`; else from ``chunked_prefill``)."""
    fields = {k: v for k, v in spec.model_dump().items() if k in SchedulerConfig.model_fields}
    fields["max_num_batched_tokens"] = max(spec.max_num_batched_tokens, spec.max_num_seqs)
    rt = spec.runtime
    fields["num_scheduler_steps"] = rt.num_scheduler_steps
    fields["iteration_overhead_s"] = rt.iteration_overhead_s
    fields["request_overhead_s"] = rt.request_overhead_s
    if rt.prefill_first and spec.chunked_prefill:
        fields["policy"] = "prefill_first"
    return fields


def effective_cached_tokens(
    cached_prefix_tokens: np.ndarray, config: SchedulerConfig
) -> np.ndarray:
    """Prompt tokens whose prefill is skipped: the cached prefix when prefix caching is on."""
    cached = np.asarray(cached_prefix_tokens, dtype=np.int64)
    return cached if config.prefix_caching else np.zeros_like(cached)


def rejection_reasons(
    prompt_tokens: np.ndarray,
    output_tokens: np.ndarray,
    cached_tokens: np.ndarray,
    config: SchedulerConfig,
) -> np.ndarray:
    """Per request: ``COMPLETED`` if it can be served, else why not (see module doc)."""
    prompt = np.asarray(prompt_tokens, dtype=np.int64)
    peak_blocks = blocks_for_tokens(prompt + np.asarray(output_tokens), config.block_size_tokens)
    status = np.full(prompt.shape, COMPLETED, dtype=object)
    if not policy_for(config.policy_name).chunked_prefill:
        over = prompt - np.asarray(cached_tokens) > config.max_num_batched_tokens
        status[over] = REJECTED_BUDGET
    status[peak_blocks + 1 > config.kv_capacity_blocks] = REJECTED_KV
    return status.astype(str)
