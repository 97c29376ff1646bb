"""Error bands from cross-validated residuals, and error summaries.

The offsets and the spread of out-of-fold residuals become the profile's calibration residuals
(``p50`` = the offset plus the residuals' median, ``p10``/``p90`` its band) under the group
keys, '<group>/head_dim=<d>' and the overhead keys, read back by
:func:`hwsim.perf.bands.residual_band` and :func:`hwsim.perf.bands.calibrated_band`.

Honesty rules: a deterministic 70/30 split by a hash of the shape keeps a held-out set the
fit never sees; every band comes from 5-fold cross-validation inside the training set (never
in-sample residuals), as predictive quantiles (:func:`quantiles`), and a group with few
out-of-fold points borrows the spread of its pool (:func:`pooled_band`), so its coverage on
the held-out set is an honest check. Peaks are only raised, never lowered, and only when a
training GEMM (matrix peak) or copy (bandwidth) beats them: the base profile's number was then
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from validation.curve import ClassFit

BAND_PRIOR_POINTS = 10  # a group's band: its own spread weighted n : 10 against its class's


def quantiles(values: np.ndarray) -> tuple[float, float, float]:
    """p10, p50, p90 of ``values`` as predictive quantiles: the Weibull plotting position
    p (n + 1), so the p10-p90 range of n points covers a new point from the same spread 80% of
    the time on average (numpy's default interpolation covers only (n - 1) / (n + 1) * 80%,
    e.g. 65% with ten points)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0.0, 0.0, 0.0
    if v.size < 3:
        return float(v.min()), float(np.median(v)), float(v.max())
    q10, q50, q90 = np.percentile(v, [10, 50, 90], method="weibull")
    return float(q10), float(q50), float(q90)


def _mad(v: np.ndarray) -> float:
    return float(np.median(np.abs(v - np.median(v))))


def pooled_band(mine: np.ndarray, pool: np.ndarray) -> tuple[float, float, float]:
    """A group's residual (p10, p50, p90): the class pool's p10-p90 spread around its median,
    moved to the group's median and scaled by the group's robust spread (median absolute
    deviation) against the pool's, both shrunk towards the pool with weight n : n +
    :data:`BAND_PRIOR_POINTS`. Three points do not make a band, nor does one outlier in eight
    (the plain p90 of eight points is their maximum)."""
    mine, pool = mine[np.isfinite(mine)], pool[np.isfinite(pool)]
    q10, center, q90 = quantiles(pool)
    n = mine.size
    w = n / (n + BAND_PRIOR_POINTS)
    loc = w * float(np.median(mine)) + (1 - w) * center if n else center
    scale = 1.0
    if n >= 3 and _mad(pool) > 0:
        scale = float(np.exp(w * np.log(max(_mad(mine), 1e-6) / _mad(pool))))
    return loc - (center - q10) * scale, loc, loc + (q90 - center) * scale


def error_summary(errors: list[float], inside: list[bool] | None = None) -> dict[str, float]:
    e = np.asarray(errors, dtype=float)
    out = {"n": int(e.size)}
    if e.size:
        out["median_abs_error"] = float(np.median(e))
        out["p90_abs_error"] = float(np.percentile(e, 90))
    if inside is not None and len(inside):
        out["band_coverage"] = float(np.mean(inside))
    return out


def class_bands(cf: ClassFit, overhead_pool: np.ndarray) -> dict[str, dict]:
    """Residual bands by key from out-of-fold residuals only.

    Each point counts towards the band of the part of its time that dominates it: the group's
    key when the size-proportional part does, the kernel's overhead key when the fixed
    per-call part does. The two scatter differently (achieved bandwidth or FLOP rate against
    host dispatch jitter), so each borrows from its own pool: the class's size-dominated
    points, and ``overhead_pool``, the overhead-dominated points of every class (dispatch
    jitter is the host's and the framework's, not the op class's). A pool of fewer than
    :data:`BAND_PRIOR_POINTS` falls back to all the class's points."""
    fit, p, corrected, raw = cf.fit, cf.points, cf.corrected, cf.raw
    ok = np.isfinite(corrected)
    work_regime, overhead_regime = ~cf.overhead_bound, cf.overhead_bound
    work_pool = corrected[work_regime & ok]
    pools = {
        "work": work_pool if work_pool.size >= BAND_PRIOR_POINTS else corrected[ok],
        "overhead": overhead_pool if overhead_pool.size >= BAND_PRIOR_POINTS else corrected[ok],
    }
    combos = tuple(f"{g}/{f}" if f else g for g, f in zip(p.groups, p.factors))
    offset_of = {g: fit.offsets.get(g, 0.0) for g in (*p.groups, *p.overhead_groups)}
    for combo, g, f in zip(combos, p.groups, p.factors):
        offset_of[combo] = fit.offsets.get(g, 0.0) + (fit.offsets.get(f, 0.0) if f else 0.0)
    residuals: dict[str, dict] = {}
    for keys, regime, pool in (
        (p.groups, work_regime, pools["work"]),
        (combos, work_regime, pools["work"]),
        (p.overhead_groups, overhead_regime, pools["overhead"]),
    ):
        keys = np.array(keys)
        for g in sorted(set(keys) - set(residuals)):
            mine = corrected[(keys == g) & regime & ok]
            a, b, c = pooled_band(mine, pool)
            off = offset_of[g]
            residuals[g] = {
                "p10": off + a,
                "p50": off + b,
                "p90": off + c,
                # the group's own points; none: the band is its pool's
                "n_points": int(mine.size or pool.size or 1),
            }
    # Coarser keys, for ops the groups do not cover: the curve alone, no group offset.
    coarse = defaultdict(list)
    for g, r in zip(p.groups, raw):
        name, dtype, _bound = g.split("/")
        coarse[f"{name}/{dtype}"].append(r)
        coarse[f"{cf.op_class}/{dtype}"].append(r)
    for key, values in coarse.items():
        a, b, c = quantiles(np.array(values))
        residuals[key] = {"p10": a, "p50": b, "p90": c, "n_points": len(values)}
    a, b, c = quantiles(raw)
    residuals[cf.op_class] = {"p10": a, "p50": b, "p90": c, "n_points": max(int(ok.sum()), 1)}
    return residuals
