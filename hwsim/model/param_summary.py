"""A model's parameter count in two numbers, for tables, ``profiles show`` and JSON output.

:func:`hwsim.model.params.count_params` has the breakdown (layers, embedding, LM head, other);
this is the summary a reader wants: how many parameters the weights hold, and for a
mixture-of-experts model how many of them one token uses.
"""

from __future__ import annotations

from typing import TypedDict

from hwsim.model.layers import layer_groups
from hwsim.model.params import count_params
from hwsim.profiles.model import ModelProfile


class ParamSummary(TypedDict):
    params: int
    """Every parameter the weights hold (embedding, layers, LM head when untied, norms)."""
    active_params_per_token: int | None
    """MoE models: parameters one token uses (top-k routed + shared experts, every dense part);
    None for a model without MoE layers, where every token uses every parameter."""


def param_summary(model: ModelProfile) -> ParamSummary:
    """``{"params": total, "active_params_per_token": active or None}`` for ``model``."""
    counts = count_params(model)
    is_moe = any(moe for _mixer, moe, _count in layer_groups(model))
    return {
        "params": int(counts.total),
        "active_params_per_token": int(counts.active) if is_moe else None,
    }


def fmt_params(n: int) -> str:
    """A short parameter count: '8.03B', '124M', '1.64T'."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}" if n < 100 * scale else f"{n / scale:,.0f}{unit}"
    return str(n)


def params_comment(summary: ParamSummary) -> str:
    """One YAML comment line: ``# params: 46,702,792,704 (active per token: 12,879,925,248)``."""
    line = f"# params: {summary['params']:,}"
    if summary["active_params_per_token"] is not None:
        line += f" (active per token: {summary['active_params_per_token']:,})"
    return line
