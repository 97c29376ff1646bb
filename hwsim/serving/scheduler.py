"""Continuous-batching scheduler policy (vLLM-style): configuration and the rules that do not
depend on time.

Policy, per engine iteration (see :mod:`hwsim.serving.simulator` for the loop):

chunked_prefill = True (vLLM v1 / v0 with chunked prefill)
    1. every running decode gets 1 token; 2. running partial prefills continue, oldest first;
    3. waiting requests are admitted FCFS, each taking a chunk of what is left of the
    ``max_num_batched_tokens`` budget. Requires max_num_batched_tokens >= max_num_seqs.
chunked_prefill = False (vLLM v0 default scheduler)
    If the head of the waiting queue can be admitted, the iteration is *prefill-only*: whole
    prompts are admitted FCFS while they fit the token budget; running decodes skip that
    iteration (this is the prefill/decode interference chunked prefill removes). Otherwise
    it is a decode-only iteration. A fresh prompt longer than the budget is rejected (vLLM
    refuses it); a preempted sequence whose recompute prompt exceeds the budget runs alone.

Admission (both modes): FCFS with head-of-line blocking; a request is admitted when a sequence
slot is free (max_num_seqs) and free KV blocks >= blocks for its whole prompt + 1 (headroom).
The whole prompt's blocks are reserved at admission, also when its prefill is chunked.

Preemption (recompute): when the decodes of an iteration need more new blocks than are free,
the most recently admitted running sequence is preempted (repeatedly, as needed): its blocks are
freed and it goes to the head of the waiting queue. Its generated tokens are kept and
re-prefilled with the prompt when it resumes (prompt + generated tokens, all recomputed: the
prefix cache is assumed not to survive preemption).

Rejection: a request that could never complete even alone is rejected up front: KV blocks for
prompt + output tokens + 1 headroom block exceed the capacity ("kv_capacity"), or, without
chunked prefill, its prompt (less any cached prefix) exceeds the token budget ("token_budget").
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from hwsim.serving.fields import SPEC_CONFIG
from hwsim.serving.kv_blocks import blocks_for_tokens

COMPLETED = "completed"
REJECTED_KV = "rejected_kv_capacity"
REJECTED_BUDGET = "rejected_token_budget"


class SchedulerConfig(BaseModel):
    model_config = SPEC_CONFIG
    kv_capacity_tokens: int = Field(ge=1)
    max_num_seqs: int = Field(default=256, ge=1)
    max_num_batched_tokens: int = Field(default=8192, ge=1)
    block_size_tokens: int = Field(default=16, ge=1)
    chunked_prefill: bool = True
    prefix_caching: bool = False
    preemption_mode: Literal["recompute"] = "recompute"

    @model_validator(mode="after")
    def _coherent(self) -> SchedulerConfig:
        if self.kv_capacity_blocks < 2:
            raise ValueError(
                f"kv_capacity_tokens={self.kv_capacity_tokens} holds "
                f"{self.kv_capacity_blocks} blocks of {self.block_size_tokens} tokens; "
                "need at least 2 (one plus the admission headroom)"
            )
        if self.chunked_prefill and self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"with chunked_prefill, max_num_batched_tokens ({self.max_num_batched_tokens}) "
                f"must be >= max_num_seqs ({self.max_num_seqs})"
            )
        return self

    @property
    def kv_capacity_blocks(self) -> int:
        """Whole blocks in the KV capacity (a partial block is unusable)."""
        return self.kv_capacity_tokens // self.block_size_tokens


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
    if not config.chunked_prefill:
        over = prompt - np.asarray(cached_tokens) > config.max_num_batched_tokens
        status[over] = REJECTED_BUDGET
    status[peak_blocks + 1 > config.kv_capacity_blocks] = REJECTED_KV
    return status.astype(str)
