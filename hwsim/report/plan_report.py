"""The plan report: one self-contained HTML file (images inlined) and a Markdown twin.

Nothing the user already has is overwritten: if any output file exists the writer stops
with an error naming it (``overwrite=True`` replaces them on purpose).
"""

from __future__ import annotations

import base64
import html
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hwsim.errors import HwsimError
from hwsim.format import fmt_band, fmt_bytes, fmt_time
from hwsim.inference.deployment import make_deployment
from hwsim.model.load import load_model
from hwsim.profiles.loader import load_hardware
from hwsim.report.first_screen import by_hardware, first_screen_rows
from hwsim.safe_write import check_targets, folder_lock, write_atomic

PLOTS = ("latency_vs_load", "users_vs_context", "cost_by_hardware", "memory_breakdown", "roofline")


def _money(x: float) -> str:
    """Dollars: cents from $1 up, three significant digits below (one format everywhere)."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"${x:,.2f}" if x >= 1 else f"${x:.3g}"


def _candidate_rows(result, compact: bool = False) -> list[list[str]]:
    rows = []
    front = set(result.pareto)
    for r in result.feasible:
        sim = r.simulated
        sim_text = "-"
        if sim and compact:
            sim_text = "meets SLO" if sim["meets_slo"] else "MISSES SLO"
        elif sim:
            sim_text = (
                f"TTFT p95 {fmt_time(sim['ttft_p95_s'])}, TPOT p95 "
                f"{fmt_time(sim['tpot_p95_s'])}, {'meets' if sim['meets_slo'] else 'MISSES'}"
                " SLO"
            )
        confirmation = getattr(r, "confirmation", "")  # disaggregated: analytic only
        if confirmation:
            sim_text = confirmation.split(" (")[0] if compact else confirmation
        rows.append(
            [
                r.candidate.label + (" *" if r.candidate.label in front else ""),
                str(r.replicas),
                str(r.gpus),
                _money(r.cost_per_hour_usd),
                _money(r.cost_per_million_output_tokens_usd),
                f"{r.users_per_gpu:,.0f}",
                f"{r.in_flight_per_gpu_at_load:,.1f}",
                fmt_time(r.ttft_p95_at_load_s),
                fmt_time(r.tpot_at_load_s)
                + ("" if compact else fmt_band(r.tpot_at_load_low_s, r.tpot_at_load_high_s)),
                r.binding_constraint,
                r.pricing or "-",
                sim_text,
                getattr(r, "pools_text", "aggregated (one pool)"),
            ]
        )
    return rows


def group_of(r) -> str:
    """The report's group of a candidate: its hardware, or both pools' devices."""
    return getattr(r.candidate, "group", r.candidate.hardware)


def disaggregation_rows(result) -> list[list[str]]:
    """(plan, label, GPUs, prefill + decode GPUs, cost/hour, SLO-meeting rate per GPU, KV
    transfer, confirmed by) for the best aggregated and disaggregated plans."""
    cmp = result.disaggregation()
    if cmp is None:
        return []
    rows = []
    for name, key in (("aggregated", "best_aggregated"), ("disaggregated", "best_disaggregated")):
        d = cmp.get(key)
        if d is None:
            rows.append([name, "none feasible", "-", "-", "-", "-", "-", "-"])
            continue
        pools = f"{d['prefill_gpus']} + {d['decode_gpus']}" if "prefill_gpus" in d else "-"
        kv = (
            f"{fmt_time(d['kv_transfer_s'])} ({fmt_time(d['kv_transfer_exposed_s'])} exposed)"
            if "kv_transfer_s" in d
            else "-"
        )
        rows.append(
            [
                name,
                d["label"],
                str(d["gpus"]),
                pools,
                _money(d["cost_per_hour_usd"]),
                f"{d['highest_goodput_per_gpu']:.3g}",
                kv,
                d["confirmation"],
            ]
        )
    return rows


DISAGGREGATION_HEADER = [
    "best plan",
    "candidate",
    "GPUs",
    "prefill + decode GPUs",
    "cost/hour",
    "highest SLO-meeting req/s per GPU",
    "KV transfer (mean prompt)",
    "confirmed by",
]


HEADER = [
    "candidate (* Pareto)",
    "replicas",
    "GPUs",
    "cost/hour",
    "cost/1M out tokens",
    "max seqs/GPU at SLO",
    "in flight/GPU at peak",
    "TTFT p95 at peak (analytic)",
    "TPOT mean at peak (analytic)",
    "bound by",
    "priced by",
    "simulated",
    "pools (disaggregated: prefill + decode, KV transfer)",
]
COLUMNS = (
    "Columns: max seqs/GPU at SLO = the largest batch per GPU that meets every SLO and fits "
    "(capped by max_num_seqs); in flight/GPU at peak = requests queued, prefilling or decoding "
    "per GPU at each replica's share of the peak (Little's law: rate x mean end-to-end time); "
    "TTFT and TPOT at peak: the analytic model at that share; simulated: the serving "
    "simulator's p95s against the p95 SLOs."
)
PRICED_BY = (
    "Priced by: every candidate's ops go through the same pricing ladder (hwsim.perf.ladder). "
    "'calibrated': the profile's curves were fitted on measurements of that device, with "
    "their residual corrections; 'datasheet': datasheet peaks times the profile's stated "
    "efficiencies, nothing fitted (less certain: its band is the wider transfer band of published "
    "measurements, hwsim.perf.transfer); a mix gives each rung's share of "
    "the decode step's time."
)
COMPACT = (
    "candidate (* Pareto)",
    "GPUs",
    "cost/hour",
    "in flight/GPU at peak",
    "TTFT p95 at peak (analytic)",
    "TPOT mean at peak (analytic)",
    "priced by",
    "simulated",
)


def _figures(result) -> dict[str, bytes]:
    sc, best = result.scenario, result.best
    figs: dict[str, bytes] = {}
    if best is None:
        return figs
    from hwsim.report import plots  # matplotlib loads only when a report is written

    figs["latency_vs_load"] = plots.latency_vs_load(best, sc.slo)
    per_hw: dict[str, Any] = {}
    for r in result.feasible:
        per_hw.setdefault(r.candidate.hardware, r)
    figs["users_vs_context"] = plots.users_vs_context(
        sc.model, list(per_hw.values()), sc.slo.tpot_p95_s
    )
    figs["cost_by_hardware"] = plots.cost_by_hardware(result.feasible)
    figs["memory_breakdown"] = plots.memory_breakdown(best)
    c = best.candidate
    dep = make_deployment(sc.model, c.hardware, c.deployment)
    w = result.workload
    figs["roofline"] = plots.roofline(dep, best, w.prefill_mean, w.prompt_mean + w.output_mean / 2)
    return figs


def _sources(result) -> list[tuple[str, str, str]]:
    """(profile, source, calibration status) for the model and every candidate hardware."""
    model = load_model(result.scenario.model)
    out = [(f"model {model.id}", model.source, "n/a")]
    seen = set()
    for r in result.feasible + result.pruned:
        hw_id = r.candidate.hardware
        if hw_id in seen:
            continue
        seen.add(hw_id)
        try:
            hw = load_hardware(hw_id)
        except HwsimError:
            continue
        src = "; ".join(
            sorted({v.source for v in hw.matrix_flops_per_s.values()})[:2]
            + [hw.memory.bandwidth_bytes_per_s.source]
        )
        status = (
            f"calibrated from {hw.calibration.calibrated_from} on {hw.calibration.date}"
            if hw.calibration
            else "uncalibrated (default efficiency)"
        )
        out.append((f"hardware {hw.id}", src, status))
    return out


def check_writable(out_dir: Path, overwrite: bool) -> list[Path]:
    """The report's files, checked: no symbolic links, nothing overwritten unless asked."""
    out_dir = Path(out_dir)
    if out_dir.is_symlink():
        raise HwsimError(f"{out_dir} is a symbolic link; refusing to write through it")
    targets = [out_dir / "report.html", out_dir / "report.md"]
    targets += [out_dir / "plots" / f"{name}.png" for name in PLOTS]
    try:
        return check_targets(targets, overwrite)
    except HwsimError as exc:
        raise HwsimError(f"{out_dir}: {exc}") from None


def write_report(result, out_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
    out_dir = Path(out_dir)
    check_writable(out_dir, overwrite)
    figs = _figures(result)
    with folder_lock(out_dir):
        check_writable(out_dir, overwrite)  # again, now that the folder is ours
        (out_dir / "plots").mkdir(exist_ok=True)
        for name, png in figs.items():
            write_atomic(out_dir / "plots" / f"{name}.png", png)
        html_path, md_path = out_dir / "report.html", out_dir / "report.md"
        write_atomic(html_path, _html(result, figs))
        write_atomic(md_path, _markdown(result, figs))
    return {"html": html_path, "markdown": md_path}


def _pruned_rows(result) -> list[list[str]]:
    return [[r.candidate.label, r.reason] for r in result.pruned]


def _html(result, figs: dict[str, bytes]) -> str:
    sc = result.scenario
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>hwsim plan: {esc(sc.name or sc.model)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
        "color:#222}table{border-collapse:collapse;font-size:13px;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}.rec{font-size:1.25em;background:#eef6ee;"
        "padding:1em;border-left:5px solid #3a3}img{max-width:100%}</style></head><body>",
        f"<h1>Capacity plan: {esc(sc.name or sc.model)}</h1>",
        f"<p class='rec'>{esc(result.recommendation_sentence())}</p>",
        _html_first_screen(result),
        f"<p>{esc(sc.description or '')}</p>",
        "<h2>Feasible candidates by hardware (cheapest first)</h2>",
        *_html_groups(result),
        f"<p>{esc(COLUMNS)}</p>",
        f"<p>{esc(PRICED_BY)}</p>",
        *_html_disaggregation(result),
        "<h2>Pruned candidates</h2>",
        _html_table(["candidate", "why"], _pruned_rows(result)) if result.pruned else "<p>none</p>",
        "<h2>Plots</h2>",
    ]
    for name, png in figs.items():
        data = base64.b64encode(png).decode()
        parts.append(
            f"<figure><img alt='{name}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{esc(name.replace('_', ' '))}</figcaption></figure>"
        )
    parts += [
        "<h2>Assumptions</h2><ul>",
        *[f"<li>{esc(a)}</li>" for a in result.assumptions],
        "</ul>",
        "<h2>Sources and calibration</h2>",
        _html_table(["profile", "source", "calibration"], [list(s) for s in _sources(result)]),
        f"<p><small>hwsim, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</small></p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _html_disaggregation(result) -> list[str]:
    cmp = result.disaggregation()
    if cmp is None:
        return []
    return [
        "<h2>Disaggregated vs aggregated</h2>",
        f"<p>{html.escape(cmp['sentence'])}</p>",
        _html_table(DISAGGREGATION_HEADER, disaggregation_rows(result)),
    ]


def _md_disaggregation(result) -> list[str]:
    cmp = result.disaggregation()
    if cmp is None:
        return []
    return [
        "## Disaggregated vs aggregated",
        "",
        md_escape(cmp["sentence"]),
        "",
        _md_table(DISAGGREGATION_HEADER, disaggregation_rows(result)),
        "",
    ]


def _html_first_screen(result) -> str:
    """The SLOs with their margins, the cost, the price and the launch command."""
    esc = html.escape
    rows = first_screen_rows(result)[1:]  # the recommendation is the banner above
    cells = []
    for label, text in rows:
        shown = f"<code>{esc(text)}</code>" if label.startswith("launch") else esc(text)
        cells.append(f"<tr><th>{esc(label)}</th><td style='text-align:left'>{shown}</td></tr>")
    return "<table class='first'>" + "".join(cells) + "</table>"


def _groups(result) -> list[tuple[str, list, list]]:
    hardware = [group_of(r) for r in result.feasible]
    return by_hardware(_candidate_rows(result), hardware)


def _html_groups(result) -> list[str]:
    out = []
    for hw, shown, folded in _groups(result):
        out += [f"<h3>{html.escape(hw)}</h3>", _html_table(HEADER, shown)]
        if folded:
            out.append(
                f"<details><summary>{len(folded)} more on {html.escape(hw)}</summary>"
                f"{_html_table(HEADER, folded)}</details>"
            )
    return out


def _md_groups(result) -> list[str]:
    out: list[str] = []
    for hw, shown, folded in _groups(result):
        out += [f"### {md_escape(hw)}", "", _md_table(HEADER, shown), ""]
        if folded:
            out += [
                f"<details><summary>{len(folded)} more on {html.escape(hw)}</summary>",
                "",
                _md_table(HEADER, folded),
                "",
                "</details>",
                "",
            ]
    return out


def _md_first_screen(result) -> list[str]:
    lines = []
    for label, text in first_screen_rows(result)[1:]:
        if label.startswith("launch"):
            lines += [f"- **{md_escape(label)}**:", "", "  ```sh", f"  {text}", "  ```"]
        else:
            lines.append(f"- **{md_escape(label)}**: {md_escape(text)}")
    return lines


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


MD_SPECIAL = set("\\`*_{}[]()<>#+-!|~")


def md_escape(text: object) -> str:
    """Text as Markdown shows it literally: special characters backslash-escaped, line breaks
    folded (a user's scenario name cannot add headings, links, HTML or table cells)."""
    flat = " ".join(str(text).split())
    return "".join(f"\\{ch}" if ch in MD_SPECIAL else ch for ch in flat)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(result, figs: dict[str, bytes]) -> str:
    sc = result.scenario
    w = result.workload
    parts = [
        f"# Capacity plan: {md_escape(sc.name or sc.model)}",
        "",
        f"**{md_escape(result.recommendation_sentence())}**",
        "",
        *_md_first_screen(result),
        "",
        md_escape(sc.description or ""),
        "",
        f"Workload: peak {w.peak_rate_per_s:g} requests/s, mean prompt {w.prompt_mean:,.0f} "
        f"tokens (p95 {w.prompt_p95:,.0f}), mean output {w.output_mean:,.0f}.",
        "",
        "## Feasible candidates by hardware (cheapest first)",
        "",
        *_md_groups(result),
        COLUMNS,
        "",
        PRICED_BY,
        "",
        *_md_disaggregation(result),
        "## Pruned candidates",
        "",
        _md_table(["candidate", "why"], _pruned_rows(result)) if result.pruned else "none",
        "",
        "## Plots",
        "",
    ]
    parts += [f"![{name}](plots/{name}.png)" for name in figs]
    parts += [
        "",
        "## Assumptions",
        "",
        *[f"- {md_escape(a)}" for a in result.assumptions],
        "",
        "## Sources and calibration",
        "",
        _md_table(["profile", "source", "calibration"], [list(s) for s in _sources(result)]),
        "",
    ]
    if result.best is not None:
        m = result.best.estimate
        parts += [
            f"Top candidate memory per GPU: weights {fmt_bytes(m.get('memory.weights_bytes'))},"
            f" KV {fmt_bytes(m.get('memory.kv_cache_bytes'))}.",
            "",
        ]
    return "\n".join(parts)
