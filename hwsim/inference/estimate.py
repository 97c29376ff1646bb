"""``hwsim.estimate``: one deployment and workload -> latency, memory, throughput, capacity."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
from pydantic import BaseModel

from hwsim.errors import HwsimError, InfeasibleError
from hwsim.inference.capacity import capacity_section, prefill_workspace_bytes
from hwsim.inference.deployment import Deployment, make_deployment
from hwsim.inference.engine import PhaseCost, mapped_band, mean_decode_cost, prefill_cost
from hwsim.inference.memory import (
    cache_bytes_per_sequence_per_gpu,
    kv_bytes_per_token_per_gpu,
    state_bytes_per_sequence_per_gpu,
    weight_bytes_per_gpu,
)
from hwsim.inference.results import (
    Attention,
    Config,
    Context,
    Decode,
    Estimate,
    Latency,
    Memory,
    OpRow,
    Prefill,
    Throughput,
)
from hwsim.inference.runtime_terms import with_runtime
from hwsim.model.layers import layer_groups
from hwsim.model.positions import position_note, position_status, require_runnable
from hwsim.perf.roofline import BOUNDS
from hwsim.profiles.deployment import DeploymentSpec


def estimate(
    model,
    hardware,
    spec: DeploymentSpec | None = None,
    *,
    batch=1,
    prompt_len=512,
    gen_len=128,
    tpot_slo_s: float | None = None,
    measurements=None,
    **settings,
) -> Estimate:
    """Predict one deployment. ``batch``, ``prompt_len`` and ``gen_len`` broadcast as arrays.

    model / hardware: shipped id, YAML path (or config.json for models), or a profile object.
    spec / settings: a :class:`~hwsim.profiles.deployment.DeploymentSpec` and/or any of its
    fields as keywords (``tp=2, weight_dtype="fp8", memory_utilization=0.8``, ...).
    measurements: a folder of kernel measurements; ops whose shapes it covers are priced
    from it (the ladder's measured rung), the rest by the efficiency model.
    """
    dep = make_deployment(model, hardware, spec, measurements=measurements, **settings)
    return estimate_deployment(dep, batch, prompt_len, gen_len, tpot_slo_s)


def _check_lengths(batch, prompt_len, gen_len) -> tuple[np.ndarray, ...]:
    """Whole numbers (batch and prompt >= 1, gen_len >= 0: 0 is a prefill-only job such as
    embedding, scoring or an encoder) whose shapes broadcast together."""
    names = ("batch", "prompt_len", "gen_len")
    if all(_whole_number(v, low) for v, low in zip((batch, prompt_len, gen_len), LOWEST)):
        return tuple(np.asarray(float(v)) for v in (batch, prompt_len, gen_len))
    arrays = []
    for name, value, low in zip(names, (batch, prompt_len, gen_len), LOWEST):
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise InfeasibleError(f"{name} must be a number or an array of numbers") from None
        if arr.size == 0:
            raise InfeasibleError(f"{name} is an empty array")
        if not np.all(np.isfinite(arr)) or np.any(arr < low):
            raise InfeasibleError(f"{name} must be finite and >= {low} everywhere, got {arr.min()}")
        if np.any(arr != np.round(arr)):
            raise InfeasibleError(
                f"{name} must be whole numbers, got {arr[arr != np.round(arr)][0]}"
            )
        arrays.append(arr)
    try:
        np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        shapes = ", ".join(f"{n} {a.shape}" for n, a in zip(names, arrays))
        raise InfeasibleError(
            f"array shapes do not broadcast: {shapes}; give equal shapes, or e.g. batch "
            "(n, 1) and prompt_len (1, m) for an n x m grid"
        ) from None
    return tuple(arrays)


LOWEST = (1, 1, 0)  # batch, prompt_len, gen_len


def _whole_number(value, low: int) -> bool:
    """A plain int or float, finite, whole and >= low (no array: those take the checks)."""
    if type(value) is int:
        return value >= low
    return type(value) is float and value >= low and value.is_integer()


def _latency(dep: Deployment, pre: PhaseCost, dec: PhaseCost, g, e2e, band) -> Latency:
    """The point latencies; ``band`` computes their p10-p90 fields when first read."""
    latency = Latency.built(ttft_s=pre.time_s, tpot_s=dec.time_s, e2e_s=e2e)
    latency._band = band
    return latency


def latency_band(dep: Deployment, pre: PhaseCost, dec: PhaseCost, g) -> dict[str, Any] | None:
    """The p10-p90 fields of :class:`Latency` from the phases' bands (None: neither has one);
    a phase without a band (no calibration, no measured op in it) keeps its point value."""
    if pre.band_s is None and dec.band_s is None:
        return None
    t_lo, t_hi = pre.band_s or (pre.time_s, pre.time_s)
    d_lo, d_hi = dec.band_s or (dec.time_s, dec.time_s)
    return {
        "ttft_low_s": t_lo,
        "ttft_high_s": t_hi,
        "tpot_low_s": d_lo,
        "tpot_high_s": d_hi,
        "e2e_low_s": t_lo + _decode_tail_s(g, d_lo),
        "e2e_high_s": t_hi + _decode_tail_s(g, d_hi),
        "band": _band_source(dep),
    }


def _repriced_band(dep: Deployment, b, s, g) -> dict[str, Any] | None:
    """:func:`latency_band` of a sweep, its phases priced again when the band is asked for
    (a sweep's estimate holds no per-op arrays meanwhile)."""
    return latency_band(dep, *_phase_costs(dep, b, s, g), g)


def _decode_tail_s(g, step_s):
    """Seconds after the first token: (g - 1) decode steps, none for g = 0 (whose step is NaN:
    a prefill-only job has no decode)."""
    if np.asarray(g == 0).any():  # (the method: np.any's dispatch costs more than the test)
        return np.maximum(g - 1.0, 0.0) * np.nan_to_num(step_s)
    return (g - 1.0) * step_s


def _without_decode(dec: PhaseCost, none: np.ndarray) -> PhaseCost:
    """``dec`` with NaN where ``none`` (gen_len 0: a prefill-only job has no decode step)."""

    blank = partial(_nan_where, none)
    return replace(
        dec,
        time_s=blank(dec.time_s),
        flops=blank(dec.flops),
        hbm_bytes=blank(dec.hbm_bytes),
        band=mapped_band(dec, blank),
    )


def _nan_where(none: np.ndarray, x) -> np.ndarray:
    return np.where(none, np.nan, x)


def _band_source(dep: Deployment) -> str:
    """What the p10-p90 band is made of, for the reader of an estimate."""
    parts = []
    cal = dep.hardware.calibration
    if cal is not None:
        text = "p10-p90 of calibration residuals"
        text += f" ({cal.device_name})" if cal.device_name else ""
        if cal.heldout_band_coverage is not None:
            text += f"; held-out coverage {cal.heldout_band_coverage:.0%}"
        parts.append(text)
    if dep.measurements is not None:
        parts.append(f"measured kernels: p10-p90 of {dep.measurements.source}")
    transfer = "p10-p90 of published measurements against hwsim's datasheet rung"
    if cal is None and dep.measurements is None:
        parts.append(f"{transfer}, whole-model rows (transfer band; hwsim.perf.transfer)")
    elif cal is None:
        parts.append(f"other ops: {transfer}, by op class (transfer band)")
    else:
        parts.append(
            f"collectives and uncalibrated ops: {transfer} (transfer band); each op and phase "
            "united with the published band against the calibrated rung"
        )
    return "; ".join(parts)


CHUNK_POINTS = 131_072  # sweep points priced at once: bounds the intermediates' memory


def estimate_deployment(
    dep: Deployment, batch, prompt_len, gen_len, tpot_slo_s: float | None = None
) -> Estimate:
    b, s, g = _check_lengths(batch, prompt_len, gen_len)
    shape = np.broadcast_shapes(b.shape, s.shape, g.shape)
    if int(np.prod(shape)) > CHUNK_POINTS:
        return _chunked(dep, b, s, g, tpot_slo_s, shape)
    return _estimate_points(dep, b, s, g, tpot_slo_s)


def _chunked(dep: Deployment, b, s, g, tpot_slo_s, shape: tuple[int, ...]) -> Estimate:
    """A large sweep priced CHUNK_POINTS points at a time into preallocated outputs, so memory
    per point is the outputs' plus a fixed allowance, however many points there are."""
    flat = [np.broadcast_to(x, shape).reshape(-1) for x in (b, s, g)]
    n = flat[0].size
    # the inputs are kept as given (flattened views), not copied chunk by chunk
    inputs = dict(zip(("batch", "prompt_len", "gen_len"), flat))
    out: dict[str, dict[str, Any]] = {"config": dict(inputs)}
    kinds: dict[str, type[BaseModel]] = {}
    for start in range(0, n, CHUNK_POINTS):
        stop = min(start + CHUNK_POINTS, n)
        bs, ss, gs = (x[start:stop] for x in flat)
        part = _estimate_points(dep, bs, ss, gs, tpot_slo_s)
        for name in Estimate.model_fields:
            section = getattr(part, name)
            kinds[name] = type(section)
            values = out.setdefault(name, {})
            for key in type(section).model_fields:
                if name == "config" and key in inputs:
                    continue
                piece = getattr(section, key)
                if not (isinstance(piece, np.ndarray) and piece.ndim == 1):
                    values.setdefault(key, piece)  # the same for every point
                    continue
                held = values.get(key)
                if held is None:
                    held = values[key] = np.empty(n, dtype=piece.dtype)
                elif piece.dtype.itemsize > held.dtype.itemsize:  # a longer string
                    held = values[key] = held.astype(piece.dtype)
                held[start:stop] = piece
    sections: dict[str, Any] = {}
    for name, values in out.items():
        shaped: dict[str, Any] = {
            k: v.reshape(shape) if isinstance(v, np.ndarray) and v.ndim == 1 else v
            for k, v in values.items()
        }
        sections[name] = kinds[name].model_construct(**shaped)
    sections["latency"]._band = partial(_chunked_band, dep, flat[0], flat[1], flat[2], shape)
    return Estimate.model_construct(**sections)


def _chunked_band(dep: Deployment, b, s, g, shape: tuple[int, ...]) -> dict[str, Any] | None:
    """:func:`latency_band` of a chunked sweep (flat inputs), priced again chunk by chunk into
    arrays of ``shape`` when the band is asked for."""
    out: dict[str, Any] = {}
    n = b.size
    for start in range(0, n, CHUNK_POINTS):
        stop = min(start + CHUNK_POINTS, n)
        part = _repriced_band(dep, b[start:stop], s[start:stop], g[start:stop])
        if part is None:
            return None
        for key, value in part.items():
            if key == "band":
                out[key] = value
                continue
            held = out.get(key)
            if held is None:
                held = out[key] = np.empty(n)
            held[start:stop] = value
    return {k: v.reshape(shape) if isinstance(v, np.ndarray) else v for k, v in out.items()}


def _estimate_points(dep: Deployment, b, s, g, tpot_slo_s: float | None) -> Estimate:
    scalar = all(np.ndim(v) == 0 for v in (b, s, g))
    weights = weight_bytes_per_gpu(dep)
    usable = dep.usable_bytes
    if weights > usable:
        raise InfeasibleError(
            f"weights need {weights / 1e9:.1f} GB per GPU but {dep.hardware.id} offers "
            f"{usable / 1e9:.1f} GB usable ({dep.memory_utilization:.0%} of "
            f"{dep.hardware.capacity_bytes / 1e9:.1f} GB); raise tp/pp or quantise the weights"
        )
    encoder = dep.model.architecture == "encoder"
    if encoder and np.any(g > 0):
        raise HwsimError(
            f"{dep.model.id} is an encoder (no autoregressive decode): give gen_len 0 to price "
            "its forward over the prompt (a prefill-only job)"
        )
    final_context = s + g
    require_runnable(dep.model, final_context, "a request of prompt + generated tokens")
    pre, dec = _phase_costs(dep, b, s, g)
    # a scalar call keeps its phases (its op rows read them); a sweep prices them again
    band = (
        partial(latency_band, dep, pre, dec, g) if scalar else partial(_repriced_band, dep, b, s, g)
    )
    ttft, tpot = pre.time_s, dec.time_s
    e2e = ttft + _decode_tail_s(g, tpot)
    kv_total = 0.0 * b if encoder else b * cache_bytes_per_sequence_per_gpu(dep, final_context)
    # one capacity definition: what max_batch leaves room for (a chunked prefill's workspace)
    per_sequence_workspace = prefill_workspace_bytes(dep, s)
    # an encoder runs its batch as one forward: every sequence holds its own workspace
    workspace = b * per_sequence_workspace if encoder else per_sequence_workspace
    total = weights + kv_total + workspace
    est = Estimate.built(
        config=_config(dep, b, s, g, tpot_slo_s),
        memory=Memory.built(
            weights_bytes=weights,
            kv_cache_bytes_per_token=kv_bytes_per_token_per_gpu(dep),
            kv_cache_bytes=kv_total,
            state_bytes_per_sequence=state_bytes_per_sequence_per_gpu(dep),
            activation_workspace_bytes=workspace,
            total_bytes=total,
            capacity_bytes=dep.hardware.capacity_bytes,
            usable_bytes=usable,
            fits=total <= usable,
        ),
        prefill=Prefill.built(
            flops=pre.flops,
            hbm_bytes=pre.hbm_bytes,
            time_s=ttft,
            bound=pre.bound,
            pipeline_bubble_fraction=(dep.pp - 1) / dep.pp,
        ),
        decode=Decode.built(
            flops_per_token=dec.flops / b,
            hbm_bytes_per_step=dec.hbm_bytes,
            time_per_token_s=tpot,
            bound=dec.bound,
            bandwidth_floor_s=dec.hbm_bytes / dep.hardware.bandwidth_bytes_per_s,
        ),
        latency=_latency(dep, pre, dec, g, e2e, band),
        throughput=Throughput.built(
            output_tokens_per_s=b * g / e2e * dep.dp,
            decode_tokens_per_s=b / tpot * dep.dp,
            prompt_tokens_per_s=b * s / ttft * dep.dp,
        ),
        capacity=capacity_section(dep, s, g, weights, tpot_slo_s, per_sequence_workspace),
        attention=_attention_section(dep, b, s),
        context=_context_section(dep, final_context),
    )
    if scalar:
        est._op_rows = partial(_phase_rows, pre, dec)
    return est


def _phase_costs(dep: Deployment, b, s, g) -> tuple[PhaseCost, PhaseCost]:
    """(prefill, mean decode step) as the engine runs them; NaN decode where gen_len is 0."""
    pre = prefill_cost(dep, b, s)
    dec = mean_decode_cost(dep, b, s, np.maximum(g, 1.0))
    if not dep.spec.runtime.is_kernel_only:  # the engine around the kernels (runtime_terms)
        pre, dec = with_runtime(dep, pre, dec, b)
    if np.asarray(g == 0).any():
        dec = _without_decode(dec, g == 0)
    return pre, dec


def _config(dep: Deployment, b, s, g, slo) -> Config:
    calibrated = dep.hardware.calibration is not None
    return Config.built(
        model=dep.model.id,
        hardware=dep.hardware.id,
        deployment=dep.spec,
        gpus=dep.gpus,
        layers_per_stage=dep.stage_layers,
        batch=b,
        prompt_len=s,
        gen_len=g,
        predictor="calibrated" if calibrated else "roofline x default efficiency (uncalibrated)",
        tpot_slo_s=slo,
    )


def _attention_section(dep: Deployment, b, s) -> Attention:
    """Mean over the attention layers (a hybrid's recurrent layers score no pairs)."""
    att = [(m, c) for m, _moe, c in layer_groups(dep.model) if m.is_attention]
    n_att = sum(c for _m, c in att) or 1
    pairs = sum(c * m.pairs_per_head(s) for m, c in att) / n_att if att else 0.0 * s
    elems = sum(c * m.score_matrix_elements_per_head(s) for m, c in att) / n_att if att else 0.0 * s
    heads = dep.model.n_heads // dep.tp
    return Attention.built(
        pairs_per_head_per_layer=pairs,
        score_matrix_elements_per_head_per_layer=elems,
        score_matrix_bytes=b * heads * elems * dep.act.bytes_per_element,
    )


def _context_section(dep: Deployment, context) -> Context:
    m = dep.model
    trained = m.trained_context_tokens
    status = position_status(m, context)
    return Context.built(
        max_trained_tokens=trained,
        max_supported_tokens=m.max_context_tokens,
        extrapolation=status == "extrapolation",
        rope_factor_needed=np.maximum(context / trained, 1.0),
        position_status=status,
        position_note=position_note(m),
    )


def _phase_rows(pre: PhaseCost, dec: PhaseCost) -> tuple[list[OpRow], list[OpRow]]:
    return _op_rows(pre), _op_rows(dec)


def _op_rows(cost: PhaseCost) -> list[OpRow]:
    """One row per op of a scalar call (every field is one number; built unvalidated)."""
    return [
        OpRow.model_construct(
            name=t.op.name,
            op_class=t.op.op_class,
            count=t.op.count,
            time_s=float(t.total_s),
            bound=BOUNDS[int(t.bound)],
            flops=float(t.op.flops) * t.op.count,
            hbm_bytes=float(t.op.hbm_bytes) * t.op.count,
        )
        for t in cost.op_times
    ]
