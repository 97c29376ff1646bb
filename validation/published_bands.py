"""Transfer bands from the published set: how far a prediction is from what other people
measured, as p10-p90 of log residuals, checked on whole sources held out.

    python -m validation.published_bands           # the held-out coverage table
    python -m validation.published_bands --json    # also every group's band over all rows
    python -m validation.published_bands --write   # write hwsim/perf/transfer_bands.json

A row's residual is log(published time / predicted time) (a rate's inverse: log(predicted /
published)), so every residual says how much longer the real thing took than hwsim said. The
rows are grouped by what a user's prediction would be (:func:`group_keys`): a kernel class and
the rung that priced it ('gemm/datasheet'), then the class alone, then every kernel; a serving
metric with the rung ('serving/calibrated'), then all serving rows (a TPOT, a TTFT and an
output rate of one run are all times of that run, so one source's throughput rows say how far
another's TPOT may be off). A band is the p10 and p90 of a group's residuals, taken from the
most specific group with at least :data:`MIN_ROWS` rows.

Held out by source (:func:`source_of`: the repository, or site and first path segment, so a
fork of a benchmark guide is the same source as the guide): each source's rows get bands built
from the other sources' rows only, and coverage is the share of rows whose published value lies
inside their band. Nothing here changes a point prediction; the bands only say how far to trust
one (issue 15). :func:`shipped_table` is what hwsim ships as the datasheet rung's band
(``hwsim/perf/transfer_bands.json``, :mod:`hwsim.perf.transfer`); :func:`source_band` the wider
random-effects band for an unseen source, whose held-out coverage is printed for contrast.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np

from validation.op_correlation import estimate_correlation

MIN_ROWS = 8  # a band from fewer rows borrows a broader group's (p10/p90 of 8 rows is coarse)
KERNEL_KINDS = ("gemm", "bandwidth", "allreduce")
LOW_Q, HIGH_Q = 0.10, 0.90


@dataclass(frozen=True)
class Residual:
    """One predicted row: its groups (most specific first), its source and its residual."""

    id: str
    kind: str
    metric: str
    rung: str
    source: str
    residual: float  # log(published time / predicted time)
    # a whole-model row: (op name, kind, share of hwsim's time) per distinct op
    # (validation.published_serving.decode_step_shares); () for the rest
    shares: tuple[tuple[str, str, float], ...] = ()

    @property
    def groups(self) -> tuple[str, ...]:
        return group_keys(self.kind, self.rung, self.metric)


def group_keys(kind: str, rung: str, metric: str | None = None) -> tuple[str, ...]:
    """Band groups of a prediction, most specific first: 'gemm/datasheet', 'gemm', 'kernel';
    'serving/calibrated', 'serving', after the metric's own groups for a metric that measures
    a forward pass hwsim bands by it ('serving/median_tpot/calibrated', 'serving/median_tpot':
    :data:`hwsim.perf.transfer.METRIC_OF_PHASE`), so a row is scored against the band hwsim
    would give it."""
    from hwsim.perf.transfer import METRIC_OF_PHASE, kind_groups

    if kind in KERNEL_KINDS:
        return kind_groups(kind, rung)
    banded = metric in METRIC_OF_PHASE.values()
    by_metric = (f"{kind}/{metric}/{rung}", f"{kind}/{metric}") if banded else ()
    return (*by_metric, f"{kind}/{rung}", kind)


def source_of(url: str) -> str:
    """A row's source: 'github:<repository>' (the owner dropped: a fork is the same
    source), else '<host>/<first path segment>'."""
    parsed = urlparse(url)
    parts = [p for p in parsed.path.split("/") if p]
    if parsed.netloc == "github.com" and len(parts) >= 2:
        return f"github:{parts[1].lower()}"
    return f"{parsed.netloc}/{parts[0] if parts else ''}"


def time_residual(published: float, predicted: float, unit: str) -> float:
    """log(published time / predicted time): for a rate (anything per second), the inverse."""
    is_rate = "/s" in unit
    ratio = predicted / published if is_rate else published / predicted
    return math.log(ratio)


def residuals(preds: Iterable[Any], rows: dict[str, Any]) -> list[Residual]:
    """Residuals of the predicted rows (``preds``: :class:`validation.published_eval.Prediction`
    or their dicts; ``rows``: the published rows by id, for their sources)."""
    out = []
    for p in preds:
        d = p if isinstance(p, dict) else p.to_dict()
        if d["status"] != "predicted" or not d.get("predicted") or d.get("rung") is None:
            continue
        row = rows[d["id"]]
        r = time_residual(d["published"], d["predicted"], d["unit"])
        shares = tuple(tuple(s) for s in d.get("op_shares") or ())
        source = source_of(row.source.url)
        out.append(Residual(d["id"], d["kind"], d["metric"], d["rung"], source, r, shares))
    return out


def band_for(
    groups: tuple[str, ...], pool: list[Residual], method: str = "sources"
) -> tuple[str, float, float, int]:
    """(group, p10, p90, rows) from the most specific of ``groups`` with >= MIN_ROWS rows in
    ``pool`` (the broadest group however few it has); NaN edges where it has none.
    ``method``: 'sources' (:func:`source_band`, for a source the pool has not seen) or
    'pooled' (:func:`prediction_interval` of the pool's residuals)."""
    for i, group in enumerate(groups):
        members = [r for r in pool if group in r.groups]
        if len(members) >= MIN_ROWS or (i == len(groups) - 1 and members):
            if method == "pooled":
                lo, hi = prediction_interval([r.residual for r in members])
            else:
                lo, hi = source_band(members)
            return group, float(lo), float(hi), len(members)
    return groups[-1], math.nan, math.nan, 0


def prediction_interval(values: list[float]) -> tuple[float, float]:
    """The p10-p90 band of a new row from ``values``' distribution: the sample quantiles at
    plotting positions p (n + 1) (Hyndman & Fan 1996, The American Statistician 50:361,
    definition 6; numpy's 'weibull' method). For exchangeable rows the k-th smallest of n
    values sits at the k / (n + 1) quantile of their distribution on average, so a new row
    falls between the two edges with probability 80% in expectation; numpy's default
    (definition 7, p (n - 1) + 1) is narrower and covers a new row less often than that."""
    lo, hi = np.quantile(np.asarray(values, dtype=float), [LOW_Q, HIGH_Q], method="weibull")
    return float(lo), float(hi)


def source_band(members: list[Residual]) -> tuple[float, float]:
    """p10-p90 of the residual of a row from a source not among ``members``' sources.

    One-way random effects (residual = mu + source offset + row noise): mu the mean of the
    source means, sigma^2 the pooled within-source variance, tau^2 the between-source variance
    of the offsets (the variance of the source means less what within-source noise explains,
    at least 0). A new source's row varies by tau^2 (1 + 1/k) + sigma^2; with k sources the
    interval takes Student's t with k - 1 degrees of freedom (few sources: wide). With one
    source there is no between-source estimate: the plain p10/p90."""
    from scipy.stats import t as student_t

    by_source: dict[str, list[float]] = {}
    for r in members:
        by_source.setdefault(r.source, []).append(r.residual)
    k = len(by_source)
    values = [r.residual for r in members]
    if k < 2:
        lo, hi = np.quantile(values, [LOW_Q, HIGH_Q])
        return float(lo), float(hi)
    means = np.array([np.mean(v) for v in by_source.values()])
    sizes = np.array([len(v) for v in by_source.values()])
    dof_within = len(values) - k
    ss_within = sum(float(np.sum((np.array(v) - np.mean(v)) ** 2)) for v in by_source.values())
    sigma2 = ss_within / dof_within if dof_within > 0 else 0.0
    tau2 = max(0.0, float(np.var(means, ddof=1)) - sigma2 * float(np.mean(1.0 / sizes)))
    sd = math.sqrt(tau2 * (1.0 + 1.0 / k) + sigma2)
    half = float(student_t.ppf(HIGH_Q, k - 1)) * sd
    mu = float(np.mean(means))
    return mu - half, mu + half


def held_out_bands(res: list[Residual], method: str = "sources") -> list[dict[str, Any]]:
    """Each row's band built from the other sources' rows, and whether it holds the row."""
    out = []
    for r in res:
        pool = [o for o in res if o.source != r.source]
        group, lo, hi, n = band_for(r.groups, pool, method)
        inside = None if math.isnan(lo) else bool(lo <= r.residual <= hi)
        out.append({"id": r.id, "kind": r.kind, "metric": r.metric, "rung": r.rung,
                    "source": r.source, "residual": r.residual, "band_group": group,
                    "low": lo, "high": hi, "train_rows": n, "inside": inside})  # fmt: skip
    return out


def coverage_table(held: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Held-out coverage per group: every kernel row, each kernel class, serving rows by
    metric (TPOT, TTFT, output throughput) and all serving rows; with the median band width
    exp(p90 - p10) - 1 and how many rows fell below or above."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for h in held:
        family = "kernels" if h["kind"] in KERNEL_KINDS else "serving"
        groups.setdefault(family, []).append(h)
        label = h["kind"] if family == "kernels" else f"serving {h['metric']}"
        groups.setdefault(label, []).append(h)
    table = []
    for name, members in groups.items():
        banded = [m for m in members if m["inside"] is not None]
        inside = sum(m["inside"] for m in banded)
        below = sum(1 for m in banded if m["residual"] < m["low"])
        widths = [math.exp(m["high"] - m["low"]) - 1.0 for m in banded]
        table.append({
            "group": name, "rows": len(members), "banded": len(banded),
            "coverage": inside / len(banded) if banded else None,
            "below": below, "above": len(banded) - inside - below,
            "median_width": float(np.median(widths)) if widths else None,
            "sources": len({m["source"] for m in members}),
        })  # fmt: skip
    return table


def shipped_table(res: list[Residual]) -> dict[str, Any]:
    """What hwsim ships (``hwsim/perf/transfer_bands.json``, read by
    :mod:`hwsim.perf.transfer`): every group's plain p10 / p50 / p90 over all rows, and the
    held-out coverage of bands built that way without each row's source. The pooled quantiles
    are the shipped band: held out by source they cover 75-85% of kernel and TPOT rows, where
    the random-effects band for an unseen source (:func:`source_band`) is several times wider
    and covers ~90-100% (both printed by :func:`main`)."""
    held = held_out_bands(res, "pooled")
    keys = sorted({g for r in res for g in r.groups})
    bands = {}
    for key in keys:
        values = [r.residual for r in res if key in r.groups]
        p10, p90 = prediction_interval(values)
        p50 = float(np.median(values))
        members = [h for h in held if key in group_keys(h["kind"], h["rung"], h["metric"])]
        banded = [m for m in members if m["inside"] is not None]
        bands[key] = {
            "p10": round(p10, 4),
            "p50": round(p50, 4),
            "p90": round(p90, 4),
            "rows": len(values),
            "sources": len({r.source for r in res if key in r.groups}),
            "heldout_coverage": _coverage(banded),
        }
    return {
        "op_correlation": estimate_correlation(res, bands, MIN_ROWS),
        "description": (
            "p10/p50/p90 of log(published time / predicted time) over the published validation "
            "set (validation/published), by kernel class or serving and by the rung that priced "
            "the row; heldout_coverage: the share of the group's rows inside such a band built "
            "without their source. Written by python -m validation.published_bands --write; "
            "read by hwsim.perf.transfer for datasheet-rung bands. op_correlation: the "
            "correlation of different ops' errors estimated from the TPOT rows "
            "(validation.op_correlation), with which a calibrated profile's op bands add. The "
            "point predictions are not fitted to these rows."
        ),
        "min_rows": MIN_ROWS,
        "quantiles": [LOW_Q, 0.5, HIGH_Q],
        "bands": bands,
    }


def _coverage(banded: list[dict[str, Any]]) -> float | None:
    """Share of ``banded`` (held-out rows that got a band) inside it, to 3 places."""
    return round(sum(m["inside"] for m in banded) / len(banded), 3) if banded else None


def write_shipped(table: dict[str, Any]) -> str:
    """Write ``table`` (:func:`shipped_table`) to hwsim's transfer-band file; its path."""
    from hwsim.perf.transfer import BANDS_PATH

    BANDS_PATH.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    return str(BANDS_PATH)


def evaluate(calibrated: bool = True) -> tuple[list[Residual], list[dict[str, Any]]]:
    """Predict the shipped published set and hold out each source in turn."""
    from validation.published_eval import evaluate as predict
    from validation.published_set import load_published

    rows = load_published()
    preds = predict(rows, calibrated=calibrated)
    res = residuals(preds, {r.id: r for r in rows})
    return res, held_out_bands(res)


def _print(table: list[dict[str, Any]]) -> None:
    print(f"{'group':<34}{'rows':>5}{'srcs':>5}{'cover':>7}{'below':>6}{'above':>6}{'width':>8}")
    for t in table:
        cov = "-" if t["coverage"] is None else f"{t['coverage']:.0%}"
        width = "-" if t["median_width"] is None else f"{t['median_width']:.0%}"
        print(f"{t['group']:<34}{t['banded']:>5}{t['sources']:>5}{cov:>7}{t['below']:>6}"
              f"{t['above']:>6}{width:>8}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print every group's band as JSON")
    parser.add_argument(
        "--write", action="store_true", help="write hwsim/perf/transfer_bands.json (shipped)"
    )
    args = parser.parse_args(argv)
    res, held = evaluate()
    print("held out by source, the shipped band (plain p10/p90 of the other sources' rows):")
    _print(coverage_table(held_out_bands(res, "pooled")))
    print("\nfor contrast, a band for an unseen source (random effects over sources):")
    _print(coverage_table(held))
    table = shipped_table(res)
    corr = table["op_correlation"]
    print(
        f"\nop-error correlation from {corr['rows']} TPOT rows: rho = {corr['rho']} "
        f"(unclipped {corr.get('rho_unclipped')}); spread of log residuals observed "
        f"{corr.get('observed_sd')}, independent ops would give {corr.get('independent_sd')}, "
        f"ops moving together {corr.get('together_sd')}"
    )
    if args.json:
        print(json.dumps(table, indent=1))
    if args.write:
        print(f"wrote {write_shipped(table)}")


if __name__ == "__main__":
    main()
