"""What context costs: one model (or several attention/memory designs) swept over context length.

:func:`context_sweep` prices, for every (variant, length) row, the quantities that decide
whether a long context pays: query-key pairs scored, prefill FLOPs, the KV cache or recurrent
state one sequence holds, the bytes a naive kernel materialises for the score matrix against
the HBM traffic of naive and tiled (FlashAttention) attention, TTFT, TPOT and users per GPU,
plus flags for lengths beyond what the model supports.

A *variant* is a model's attention/memory design. It is either another model (shipped id, YAML
path, config.json or :class:`~hwsim.profiles.model.ModelProfile`) or a mixer override of the
base model written ``kind[:param=value,...]`` (``sliding_window:window=4096``): every layer of
the base model gets that mixer, everything else stays.

Each variant is priced by one engine call per quantity with the whole length array (the engine
broadcasts). Model-structure quantities (pairs, score bytes, attention HBM bytes, KV bytes) are
taken at tp = pp = 1, so they describe the model, not the layout; TTFT, TPOT and users per GPU
use the requested layout. Encoders (Longformer, BigBird) have no autoregressive decode: their
"TTFT" is the time of one forward over the sequence and TPOT, users per GPU and KV bytes are NaN.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from hwsim.errors import InfeasibleError, ProfileError
from hwsim.inference.capacity import capacity_section, prefill_workspace_bytes
from hwsim.inference.deployment import Deployment, make_deployment
from hwsim.inference.engine import PhaseCost, mean_decode_cost, prefill_cost
from hwsim.inference.memory import cache_bytes_per_sequence_per_gpu, weight_bytes_per_gpu
from hwsim.model.layers import layer_groups
from hwsim.model.load import load_model, model_from_data
from hwsim.model.mixers import registered_kinds
from hwsim.model.positions import position_note, position_status
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.loader import load_hardware
from hwsim.profiles.model import ModelProfile

WORDS_PER_TOKEN = 0.75
WORDS_ASSUMPTION = (
    "words equivalent = tokens x 0.75 (assumption: OpenAI's rule of thumb for English text with "
    "a BPE tokenizer, 1 token ~ 3/4 of a word; code and other languages differ)"
)

# Per-row arrays of a sweep, in table/JSON order.
ROW_FIELDS = (
    "variant",
    "model",
    "architecture",
    "length_tokens",
    "words_equivalent",
    "pairs_per_head_per_layer",
    "score_matrix_elements_per_head_per_layer",
    "score_matrix_elements_total",
    "prefill_flops",
    "attention_flops",
    "kv_state_bytes_per_sequence",
    "score_matrix_bytes_per_layer",
    "attention_hbm_bytes_per_layer_naive",
    "attention_hbm_bytes_per_layer_tiled",
    "ttft_s",
    "tpot_s",
    "users_per_gpu",
    "max_trained_tokens",
    "max_supported_tokens",
    "rope_scaling_factor",
    "rope_factor_needed",
    "extrapolation",
    "position_status",
    "position_note",
    "weights_fit",
    "fits",
    "memory_bytes_per_gpu",
    "cost_per_million_prompt_tokens_usd",
    "cost_per_million_output_tokens_usd",
)
# Row fields a length that cannot run (past a learned position table) leaves unpriced (NaN);
# the model's arithmetic at that length (pairs, FLOPs, bytes) stays, as a what-if.
PRICED_FIELDS = (
    "ttft_s",
    "tpot_s",
    "users_per_gpu",
    "cost_per_million_prompt_tokens_usd",
    "cost_per_million_output_tokens_usd",
)

# What a notebook shows of a sweep (to_records() has every row field).
_HTML_COLUMNS = (
    "variant",
    "length_tokens",
    "prefill_flops",
    "kv_state_bytes_per_sequence",
    "ttft_s",
    "tpot_s",
    "users_per_gpu",
    "fits",
    "position_status",
    "cost_per_million_output_tokens_usd",
)


@dataclass(frozen=True)
class ContextSweep:
    """One row per (variant, length); every row field is a numpy array of the same length.

    Units are SI base units (bytes, FLOPs, seconds). "Per layer" quantities are means over the
    attention layers, all heads of the layer; "total" sums over heads and layers. Quantities of
    a forward (FLOPs, score/attention bytes, TTFT) are for ``batch`` sequences.

    Row fields: ``variant`` (label), ``model`` (profile id), ``architecture``,
    ``length_tokens``, ``words_equivalent`` (x ``words_per_token``),
    ``pairs_per_head_per_layer`` (query-key pairs a prefill scores),
    ``score_matrix_elements_per_head_per_layer`` and ``_total`` (what a naive kernel
    materialises), ``prefill_flops`` and ``attention_flops`` (whole model, prefill of that
    length), ``kv_state_bytes_per_sequence`` (KV + recurrent state, whole model, at that
    context; NaN for encoders), ``score_matrix_bytes_per_layer`` (activation dtype),
    ``attention_hbm_bytes_per_layer_naive`` / ``_tiled`` (HBM traffic of the attention core in
    prefill), ``ttft_s``, ``tpot_s`` (mean decode step over ``gen_len`` tokens after that
    context), ``users_per_gpu`` (sequences that fit at that context and meet the TPOT SLO, per
    GPU), ``max_trained_tokens``, ``max_supported_tokens`` (trained x RoPE scaling),
    ``rope_scaling_factor`` (the profile's), ``rope_factor_needed`` (length / trained context,
    at least 1; NaN without RoPE), ``extrapolation`` (some layer relates positions farther apart
    than supported), ``position_status`` (:data:`hwsim.model.positions.STATUSES`; lengths that
    ``cannot_run`` have TTFT, TPOT, users and costs NaN), ``position_note`` (how the variant
    encodes positions, its scaling and what that asks of the weights, with sources),
    ``weights_fit``, ``fits`` (weights, the
    ``batch`` sequences' cache at length + ``gen_len`` and the prefill workspace within the
    usable memory), ``memory_bytes_per_gpu`` (that total), ``cost_per_million_prompt_tokens_usd``
    (GPU-hours of the prefill at the hardware's price, per 1M prompt tokens) and
    ``cost_per_million_output_tokens_usd`` (of the decode step at ``batch``; NaN for encoders or
    without a price).
    """

    hardware: str
    batch: float
    gen_len: float
    deployment: DeploymentSpec
    tpot_slo_s: float | None
    predictor: str
    words_per_token: float
    price_per_gpu_hour_usd: float
    price_source: str
    variant: np.ndarray
    model: np.ndarray
    architecture: np.ndarray
    length_tokens: np.ndarray
    words_equivalent: np.ndarray
    pairs_per_head_per_layer: np.ndarray
    score_matrix_elements_per_head_per_layer: np.ndarray
    score_matrix_elements_total: np.ndarray
    prefill_flops: np.ndarray
    attention_flops: np.ndarray
    kv_state_bytes_per_sequence: np.ndarray
    score_matrix_bytes_per_layer: np.ndarray
    attention_hbm_bytes_per_layer_naive: np.ndarray
    attention_hbm_bytes_per_layer_tiled: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    users_per_gpu: np.ndarray
    max_trained_tokens: np.ndarray
    max_supported_tokens: np.ndarray
    rope_scaling_factor: np.ndarray
    rope_factor_needed: np.ndarray
    extrapolation: np.ndarray
    position_status: np.ndarray
    position_note: np.ndarray
    weights_fit: np.ndarray
    fits: np.ndarray
    memory_bytes_per_gpu: np.ndarray
    cost_per_million_prompt_tokens_usd: np.ndarray
    cost_per_million_output_tokens_usd: np.ndarray

    @property
    def variants(self) -> list[str]:
        """Variant labels in the order given."""
        return list(dict.fromkeys(self.variant.tolist()))

    def select(self, variant: str) -> dict[str, np.ndarray]:
        """The row fields of one variant (rows in the order of the lengths given)."""
        mask = self.variant == variant
        if not mask.any():
            raise KeyError(f"no variant {variant!r}; have {', '.join(self.variants)}")
        return {name: getattr(self, name)[mask] for name in ROW_FIELDS}

    def notes(self) -> list[str]:
        """Assumptions and flags worth a footnote, one line each."""
        lines = [WORDS_ASSUMPTION]
        for name in self.variants:
            lines += self._variant_notes(name, self.select(name))
        return lines

    def _variant_notes(self, name: str, rows: dict[str, np.ndarray]) -> list[str]:
        lines = []
        supported = int(rows["max_supported_tokens"][0])
        status, note = rows["position_status"], rows["position_note"][0]
        if rows["extrapolation"].any():
            need = rows["rope_factor_needed"][rows["extrapolation"]]
            factor = (
                f"; RoPE factor needed up to {np.nanmax(need):.3g} over the trained "
                f"{int(rows['max_trained_tokens'][0]):,}"
                if np.isfinite(need).any()
                else ""
            )
            lines.append(
                f"{name}: extrapolation at {_tokens(rows, rows['extrapolation'])} tokens "
                f"(supported {supported:,}{factor})"
            )
        if (status == "cannot_run").any():
            lines.append(f"{name}: cannot run at {_tokens(rows, status == 'cannot_run')} ({note})")
        if (status == "bounded").any():
            bound = note.rsplit("; ", 1)[-1]  # "no layer relates positions more than w apart"
            lines.append(
                f"{name}: {_tokens(rows, status == 'bounded')} tokens exceed the supported "
                f"{supported:,}, but {bound}: no extrapolation"
            )
        short = ~rows["fits"] & (status != "cannot_run")
        if short.any() and rows["weights_fit"].all():
            lines.append(
                f"{name}: does not fit on {self.hardware} at {_tokens(rows, short)} tokens "
                f"(batch {self.batch:g}, tp={self.deployment.tp}): priced, but cannot be served"
            )
        if not rows["weights_fit"].all():
            lines.append(
                f"{name}: weights do not fit on {self.hardware} at tp={self.deployment.tp}"
            )
        if rows["architecture"][0] == "encoder":
            lines.append(
                f"{name}: encoder, one forward over the sequence priced (TTFT column); "
                "no decode, no KV cache"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """One flat JSON-able object: the settings, then a list per row field."""
        out: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ROW_FIELDS
        }
        out["deployment"] = self.deployment.model_dump()
        out["assumptions"] = [WORDS_ASSUMPTION]
        out["notes"] = self.notes()[1:]
        for name in ROW_FIELDS:
            out[name] = getattr(self, name).tolist()
        return out

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per (variant, length) row, in row order: the row fields
        (:data:`ROW_FIELDS`), then the sweep's settings (``hardware``, ``batch``, ``gen_len``,
        ``tpot_slo_s``, ``predictor``, ``words_per_token``, ``price_per_gpu_hour_usd``,
        ``price_source``) and its layout (``deployment.tp``, ``deployment.kv_dtype``, ...),
        repeated on every row; plain Python values."""
        from hwsim.tables import broadcast_records, flatten

        columns: dict[str, Any] = {name: np.asarray(getattr(self, name)) for name in ROW_FIELDS}
        for f in dataclasses.fields(self):
            if f.name not in ROW_FIELDS and f.name != "deployment":
                columns[f.name] = getattr(self, f.name)
        columns.update(flatten(self.deployment.model_dump(), "deployment."))
        return broadcast_records(columns)

    def to_frame(self):
        """A pandas DataFrame of :meth:`to_records`, one row per (variant, length)."""
        from hwsim.tables import to_frame

        return to_frame(self.to_records())

    def _repr_html_(self) -> str:  # notebooks
        from hwsim.tables import html_table

        caption = (
            f"context sweep on {self.hardware} ({self.deployment.label}), batch {self.batch:g}, "
            f"gen_len {self.gen_len:g}: {len(self.variant)} rows"
        )
        return html_table(self.to_records(), _HTML_COLUMNS, caption=caption, notes=self.notes()[1:])


def _tokens(rows: dict[str, np.ndarray], where: np.ndarray) -> str:
    """The lengths of the rows ``where`` selects, as "1,000, 4,096"."""
    return ", ".join(f"{int(n):,}" for n in rows["length_tokens"][where])


# -- variants ----------------------------------------------------------------------------------


def parse_mixer_override(text: str) -> dict[str, Any] | None:
    """``'sliding_window:window=4096'`` -> ``{'kind': 'sliding_window', 'window': 4096}``;
    None when ``text`` does not name a registered mixer kind. Values are read as YAML scalars
    or flow lists (``dilation=[1,2]``)."""
    kind, _, rest = text.partition(":")
    kind = kind.strip()
    if kind not in registered_kinds():
        return None
    spec: dict[str, Any] = {"kind": kind}
    for item in _split_top_level(rest):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ProfileError(
                f"variant {text!r}: expected param=value, got {item!r} "
                "(form: kind:param=value,param=value)"
            )
        try:
            spec[key.strip()] = yaml.safe_load(value.strip())
        except yaml.YAMLError:
            raise ProfileError(f"variant {text!r}: cannot read value {value!r}") from None
    return spec


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def with_mixer(base: ModelProfile, spec: dict[str, Any], label: str) -> ModelProfile:
    """``base`` with every layer's mixer replaced by ``spec`` (re-validated, clean errors)."""
    data = base.model_copy(update={"mixer": spec, "layer_pattern": None}).model_dump(
        exclude_none=True
    )
    data["id"] = label
    return model_from_data(data, file=f"variant {label!r}")


def resolve_variant(base: ModelProfile, ref: Any) -> tuple[str, ModelProfile]:
    """A variant reference -> (label, profile). See the module docstring for the forms."""
    if isinstance(ref, ModelProfile):
        return ref.id, ref
    text = str(ref)
    spec = parse_mixer_override(text)
    if spec is not None:
        label = f"{base.id}[{text.strip()}]"
        return label, with_mixer(base, spec, label)
    kind = text.partition(":")[0]
    if ":" in text and not text.endswith((".yaml", ".yml", ".json")):
        raise ProfileError(
            f"variant {text!r}: unknown mixer kind {kind!r}; allowed: "
            f"{', '.join(registered_kinds())} (or give a model id or path)"
        )
    model = load_model(text)
    return model.id, model


# -- the sweep ---------------------------------------------------------------------------------


def context_sweep(
    model,
    hardware,
    lengths: Sequence[int] | np.ndarray,
    *,
    variants: Sequence[Any] | None = None,
    batch: float = 1,
    gen_len: float = 1,
    tpot_slo_s: float | None = None,
    spec: DeploymentSpec | None = None,
    **settings,
) -> ContextSweep:
    """Price ``model`` and each of ``variants`` at every context length in ``lengths``.

    model / hardware: shipped id, YAML path (config.json for models) or profile object.
    variants: more models or mixer overrides of ``model`` (``'kind:param=value,...'``).
    batch: concurrent sequences priced in TTFT / TPOT; gen_len: tokens whose mean decode step
    is TPOT (1: the step right after the context; 0: prefill only, TPOT NaN). tpot_slo_s caps
    users per GPU.
    spec / settings: how each design is deployed, a :class:`DeploymentSpec` and/or any of its
    fields as keywords (``tp=2``, ``attention_impl="naive"``, ...).
    """
    n = _check_lengths(lengths)
    for name, value in (("batch", batch), ("gen_len", gen_len)):
        if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
            raise InfeasibleError(f"{name} must be a number, got {type(value).__name__}")
        low = 0 if name == "gen_len" else 1  # gen_len 0: prefill only, no decode step
        if not np.isfinite(value) or value < low or value != round(value):
            raise InfeasibleError(f"{name} must be a whole number >= {low}, got {value}")
    if tpot_slo_s is not None and not 0 < tpot_slo_s < float("inf"):
        raise InfeasibleError(f"tpot_slo_s must be > 0, got {tpot_slo_s}")
    base = load_model(model)
    hw = load_hardware(hardware)
    designs = [(base.id, base)] + [resolve_variant(base, ref) for ref in variants or ()]
    labels = [label for label, _ in designs]
    duplicate = next((x for x in labels if labels.count(x) > 1), None)
    if duplicate:
        raise InfeasibleError(f"variant {duplicate!r} given more than once")

    spec = DeploymentSpec.from_settings(spec, **settings)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in ROW_FIELDS}
    for label, profile in designs:
        dep = make_deployment(profile, hw, spec)
        try:
            rows = _price_variant(dep, n, float(batch), float(gen_len), tpot_slo_s)
        except NotImplementedError as exc:  # a mixer that cannot count this configuration
            raise InfeasibleError(f"variant {label!r}: {exc}") from None
        rows["variant"] = np.full(n.shape, label, dtype=object)
        for name in ROW_FIELDS:
            columns[name].append(np.broadcast_to(rows[name], n.shape))
    arrays = {name: np.concatenate(parts) for name, parts in columns.items()}
    for name in ("variant", "model", "architecture", "position_status", "position_note"):
        arrays[name] = arrays[name].astype(str)
    return ContextSweep(
        hardware=hw.id,
        batch=float(batch),
        gen_len=float(gen_len),
        deployment=spec,
        tpot_slo_s=tpot_slo_s,
        predictor=(
            "calibrated"
            if hw.calibration is not None
            else "roofline x default efficiency (uncalibrated)"
        ),
        words_per_token=WORDS_PER_TOKEN,
        price_per_gpu_hour_usd=_price_per_gpu_hour(make_deployment(base, hw, spec))[0],
        price_source=_price_per_gpu_hour(make_deployment(base, hw, spec))[1],
        **arrays,
    )


def _check_lengths(lengths) -> np.ndarray:
    n = np.atleast_1d(np.asarray(lengths, dtype=float))
    if n.ndim != 1 or n.size == 0:
        raise InfeasibleError("lengths must be a non-empty list of token counts")
    if not np.all(np.isfinite(n)) or np.any(n < 1) or np.any(n != np.round(n)):
        raise InfeasibleError(f"lengths must be positive integers, got {n.tolist()}")
    return n


def _price_variant(
    dep: Deployment, n: np.ndarray, batch: float, gen_len: float, slo: float | None
) -> dict[str, Any]:
    m = dep.model
    encoder = m.architecture == "encoder"
    ref = dep.with_settings(**dep.spec.unsharded_settings)  # the model itself, no layout
    tiled = prefill_cost(ref.with_settings(attention_impl="flash"), batch, n)
    naive = prefill_cost(ref.with_settings(attention_impl="naive"), batch, n)
    actual = tiled if ref == dep and dep.attention_impl == "flash" else prefill_cost(dep, batch, n)

    att = [(mixer, count) for mixer, _moe, count in layer_groups(m) if mixer.is_attention]
    n_att = sum(count for _mixer, count in att)
    pairs = sum((c * mx.pairs_per_head(n) for mx, c in att), np.zeros_like(n))
    elems = sum((c * mx.score_matrix_elements_per_head(n) for mx, c in att), np.zeros_like(n))
    per_layer = 1.0 / max(n_att, 1)

    nan = np.full_like(n, np.nan)
    kv: np.ndarray | float
    tpot: np.ndarray | float
    users: np.ndarray | float
    weights = weight_bytes_per_gpu(dep)
    workspace = prefill_workspace_bytes(dep, n)
    if encoder:  # one forward of the batch, each sequence with its workspace, no cache kept
        memory = weights + batch * workspace
        kv, tpot, users = nan, nan, nan
    else:
        memory = weights + batch * cache_bytes_per_sequence_per_gpu(dep, n + gen_len) + workspace
        kv = cache_bytes_per_sequence_per_gpu(ref, n)
        tpot = mean_decode_cost(dep, batch, n, max(gen_len, 1.0)).time_s if gen_len else nan
        users = capacity_section(dep, n, gen_len, weights, slo, workspace).users_per_gpu
    trained = m.trained_context_tokens
    rope = m.position_embedding == "rope"
    status = position_status(m, n)
    gpu_s_per_usd = dep.gpus * _price_per_gpu_hour(dep)[0] / 3600.0
    rows = {
        "model": np.full(n.shape, m.id, dtype=object),
        "architecture": np.full(n.shape, m.architecture, dtype=object),
        "length_tokens": n,
        "words_equivalent": n * WORDS_PER_TOKEN,
        "pairs_per_head_per_layer": pairs * per_layer,
        "score_matrix_elements_per_head_per_layer": elems * per_layer,
        "score_matrix_elements_total": elems * m.n_heads,
        "prefill_flops": tiled.flops,
        "attention_flops": _attention(tiled, "flops"),
        "kv_state_bytes_per_sequence": kv,
        "score_matrix_bytes_per_layer": (
            batch * m.n_heads * elems * per_layer * ref.act.bytes_per_element
        ),
        "attention_hbm_bytes_per_layer_naive": _attention(naive, "hbm_bytes") * per_layer,
        "attention_hbm_bytes_per_layer_tiled": _attention(tiled, "hbm_bytes") * per_layer,
        "ttft_s": actual.time_s,
        "tpot_s": tpot,
        "users_per_gpu": users,
        "max_trained_tokens": np.full(n.shape, trained),
        "max_supported_tokens": np.full(n.shape, m.max_context_tokens),
        "rope_scaling_factor": np.full(n.shape, m.rope_scaling_factor if rope else np.nan),
        "rope_factor_needed": np.maximum(n / trained, 1.0) if rope else nan,
        "extrapolation": status == "extrapolation",
        "position_status": status,
        "position_note": np.full(n.shape, position_note(m), dtype=object),
        "weights_fit": np.full(n.shape, weights <= dep.usable_bytes),
        "fits": (memory <= dep.usable_bytes) & (status != "cannot_run"),
        "memory_bytes_per_gpu": memory,
        # dollars per token = GPU-seconds per token x dollars per GPU-second, x 1e6 tokens
        "cost_per_million_prompt_tokens_usd": actual.time_s * gpu_s_per_usd / (batch * n) * 1e6,
        "cost_per_million_output_tokens_usd": np.asarray(tpot) * gpu_s_per_usd / batch * 1e6,
    }
    unpriced = status == "cannot_run"
    for name in PRICED_FIELDS:
        rows[name] = np.where(unpriced, np.nan, np.broadcast_to(rows[name], n.shape))
    return rows


def _price_per_gpu_hour(dep: Deployment) -> tuple[float, str]:
    """The hardware profile's price per GPU-hour and its source (NaN, "" when it has none)."""
    price = dep.hardware.price_per_hour_usd
    return (float(price.value), price.source) if price is not None else (float("nan"), "")


def _attention(cost: PhaseCost, what: str) -> np.ndarray:
    """Sum of an attention-core quantity over the layers of one forward (tp = 1)."""
    parts = [
        np.asarray(getattr(t.op, what), dtype=float) * t.op.count
        for t in cost.op_times
        if t.op.op_class == "attention"
    ]
    return sum(parts, np.zeros_like(np.asarray(cost.time_s, dtype=float)))
