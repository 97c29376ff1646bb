"""Position limits: at which lengths a model runs as trained, runs past it, or cannot run.

RoPE (Su et al. 2021, arXiv 2104.09864) and ALiBi (Press et al. 2022, arXiv 2108.12409) make a
score depend only on the query-key distance, so a layer that never relates positions farther
apart than w never leaves its trained distances, however long the text: a sliding window of w
keys (Mistral 7B, Jiang et al. 2023) sees distances up to w - 1, and StreamingLLM gives tokens
their place in the cache rather than in the text (Xiao et al. 2023, arXiv 2309.17453, §3.2),
bounding distances by sinks + window. A model is only as bounded as its least bounded layer:
one global layer (Gemma 2's odd layers) or a recurrent state that carries the whole prefix
(Mamba) relates any two positions.

A learned absolute position table (GPT-2/3, BERT-style encoders such as Longformer and
BigBird) has no row past its size: longer inputs cannot run at all.

Statuses, per length n: ``within`` (n <= the supported context), ``bounded`` (n is longer, but
no layer relates positions farther apart than the supported context), ``extrapolation``
(some layer relates positions farther apart than it was trained or scaled for), ``cannot_run``
(past a learned position table).
"""

from __future__ import annotations

import numpy as np

from hwsim.errors import InfeasibleError
from hwsim.lean import per_object
from hwsim.model.layers import model_layers
from hwsim.profiles.model import ModelProfile

STATUSES = ("within", "bounded", "extrapolation", "cannot_run")

# What each RoPE scaling type asks of the weights, with the source that says so.
SCALING_NOTES = {
    "linear": (
        "linear Position Interpolation: needs fine-tuning at the new length (Chen et al. 2023, "
        "arXiv 2306.15595: within 1000 steps); without it quality falls as the factor grows"
    ),
    "dynamic": (
        "dynamic NTK-aware scaling: applied at inference without fine-tuning, the base grows "
        "with the length; perplexity rises with the factor (Peng et al. 2023, arXiv "
        "2309.00071, compare it with fine-tuned YaRN)"
    ),
    "yarn": (
        "YaRN: NTK-by-parts interpolation plus attention temperature; fine-tuned on ~0.1% of "
        "the pre-training tokens (Peng et al. 2023, arXiv 2309.00071, 400 steps)"
    ),
    "llama3": (
        "Llama 3 frequency-dependent scaling: part of the long-context pre-training stage "
        "(Dubey et al. 2024, arXiv 2407.21783, §3.4.2), so the scaled length is trained"
    ),
    "longrope": (
        "LongRoPE: searched per-dimension factors with progressive fine-tuning (Ding et al. "
        "2024, arXiv 2402.13753)"
    ),
}
SCALING_NOTES["ntk"] = SCALING_NOTES["dynamic"]
EXTRAPOLATION_NOTE = {
    "rope": "RoPE past its trained distances degrades sharply without scaling (Chen et al. 2023)",
    "alibi": "ALiBi was designed to extrapolate past its training length (Press et al. 2022)",
    "none": "no position encoding: length generalisation past the trained length is untested",
}


@per_object
def max_query_key_distance(model: ModelProfile) -> float:
    """The largest distance any layer of ``model`` relates (inf when some layer is unbounded)."""
    return max(m.max_query_key_distance() for m in model_layers(model).pattern)


def position_status(model: ModelProfile, length) -> np.ndarray:
    """One of :data:`STATUSES` per length (a numpy array of strings, ``length``'s shape)."""
    n = np.asarray(length, dtype=float)
    if model.position_embedding == "learned":
        return np.where(n > model.max_position_embeddings, "cannot_run", "within")
    supported = model.max_context_tokens
    reach = np.minimum(n, max_query_key_distance(model) + 1)  # positions one layer relates
    return np.where(
        n <= supported, "within", np.where(reach <= supported, "bounded", "extrapolation")
    )


ENCODING_NAMES = {"rope": "RoPE", "alibi": "ALiBi", "none": "no position encoding"}


def position_cap(model: ModelProfile) -> float:
    """The longest context the model's positions allow: its supported context, except where
    no layer relates positions farther apart than that (inf), or its learned table."""
    if model.position_embedding == "learned":
        return float(model.max_position_embeddings)
    if max_query_key_distance(model) + 1 <= model.max_context_tokens:
        return float("inf")
    return float(model.max_context_tokens)


@per_object
def position_note(model: ModelProfile) -> str:
    """How the model encodes positions and what its scaling, if any, asks of the weights."""
    if model.position_embedding == "learned":
        return (
            f"learned absolute positions: a table of {model.max_position_embeddings:,} rows, "
            "no longer input can run"
        )
    parts = [ENCODING_NAMES[model.position_embedding]]
    scaling = model.rope.scaling if model.rope else None
    if scaling is not None:
        parts.append(
            f"x{scaling.factor:g} '{scaling.type}' scaling of {model.trained_context_tokens:,} "
            f"trained tokens, {SCALING_NOTES[scaling.type]}"
        )
    distance = max_query_key_distance(model)
    if np.isfinite(distance):
        parts.append(f"no layer relates positions more than {int(distance):,} apart")
    else:
        parts.append(EXTRAPOLATION_NOTE[model.position_embedding])
    return "; ".join(parts)


def require_runnable(model: ModelProfile, length, what: str) -> None:
    """Raise :class:`InfeasibleError` when any ``length`` is past a learned position table."""
    if model.position_embedding != "learned":  # only a learned table has a hard end
        return
    n = np.asarray(length, dtype=float)
    status = position_status(model, n)
    if (status == "cannot_run").any():
        longest = int(np.max(n[status == "cannot_run"]))
        raise InfeasibleError(
            f"{model.id}: {what} ({longest:,} tokens) cannot run: its learned position table "
            f"holds {model.max_position_embeddings:,} positions (allowed: prompt + generated "
            f"tokens <= {model.max_position_embeddings:,})"
        )
