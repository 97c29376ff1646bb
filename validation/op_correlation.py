"""How much the errors of a forward pass's ops move together, estimated from whole-model rows.

A decode step's log residual r (published TPOT / hwsim's) is, to first order, the time-share
weighted sum of its ops' log errors: r ~ sum_u w_u e_u over the step's distinct ops u (the
executions of one op share a shape and so an error). With each op's error spread sigma_u
taken from the published kernel rows of its kind (the shipped band of the group hwsim would
band it by, sigma = (p90 - p10) / (2 z_0.9)) and one correlation rho between different ops,

    Var(r) = (1 - rho) S1 + rho S2,   S1 = sum_u w_u^2 sigma_u^2,   S2 = (sum_u w_u sigma_u)^2

(S1: independent ops; S2: ops that move together). The method-of-moments estimate over the
rows solves mean Var(r) = (1 - rho) mean S1 + rho mean S2 for rho, the observed variance being
the rows' sample variance about their mean (the mean is the band's offset, not a spread).
Whatever an engine adds beyond its ops (scheduling, host time) counts towards rho here, so the
estimate is an upper bound on the ops' own correlation; clipped to [0, 1].

hwsim uses it where it adds op bands into a phase band (:func:`hwsim.inference.engine.
phase_band_s` on a calibrated profile): the band's half-widths combine as
sqrt((1 - rho) sum d_u^2 + rho (sum d_u)^2), which is the plain sum of the edges at rho = 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hwsim.perf.transfer import kind_groups

Z90 = 1.2815515655446004  # the standard normal's 0.9 quantile: p10-p90 = 2 Z90 sigma


def kind_sigma(bands: dict[str, Any], kind: str, rung: str, min_rows: int) -> float | None:
    """Spread of one op's log error: from the most specific of the kind's band groups with
    ``min_rows`` rows (:func:`hwsim.perf.transfer.kind_groups`); None without one."""
    for group in kind_groups(kind, rung):
        band = bands.get(group)
        if band and band["rows"] >= min_rows:
            return (band["p90"] - band["p10"]) / (2 * Z90)
    return None


def row_moments(
    shares: tuple[tuple[str, str, float], ...], rung: str, bands: dict[str, Any], min_rows: int
) -> tuple[float, float] | None:
    """(S1, S2) of one whole-model row (module docstring); None if an op's kind has no band."""
    s1, s2 = 0.0, 0.0
    for _name, kind, w in shares:
        sigma = kind_sigma(bands, kind, rung, min_rows)
        if sigma is None:
            return None
        s1 += (w * sigma) ** 2
        s2 += w * sigma
    return s1, s2 * s2


def estimate_correlation(res: list[Any], bands: dict[str, Any], min_rows: int) -> dict[str, Any]:
    """The correlation of op errors from the residuals with op shares (module docstring), and
    what it rests on: rows, observed spread, the spreads independence and full correlation
    would give."""
    r, m1, m2 = [], [], []
    for row in res:
        moments = row_moments(row.shares, row.rung, bands, min_rows) if row.shares else None
        if moments is not None:
            r.append(row.residual)
            m1.append(moments[0])
            m2.append(moments[1])
    if len(r) < 3:
        return {"rows": len(r), "rho": None, "note": "fewer than 3 whole-model rows with shares"}
    observed = float(np.var(r, ddof=1))
    s1, s2 = float(np.mean(m1)), float(np.mean(m2))
    raw = (observed - s1) / (s2 - s1) if s2 > s1 else math.nan
    rho = 1.0 if math.isnan(raw) else min(1.0, max(0.0, raw))
    return {
        "rows": len(r),
        "observed_sd": round(math.sqrt(observed), 4),
        "independent_sd": round(math.sqrt(s1), 4),
        "together_sd": round(math.sqrt(s2), 4),
        "rho_unclipped": None if math.isnan(raw) else round(raw, 4),
        "rho": round(rho, 4),
    }
