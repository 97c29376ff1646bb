"""The capacity-planning face of ``hwsim plan``: progress, summary table, JSON, report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hwsim.cli.common import console, err_console, fail, print_json
from hwsim.planner.plan import plan
from hwsim.profiles.scenario import Scenario
from hwsim.report.first_screen import by_hardware, first_screen_rows
from hwsim.report.plan_report import (
    COMPACT,
    HEADER,
    _candidate_rows,
    check_writable,
    group_of,
    write_report,
)

if TYPE_CHECKING:
    from hwsim.deploy import EmitRequest, LaunchTarget


def run_capacity_plan(
    sc: Scenario,
    *,
    json_out: bool,
    report: Path | None,
    force: bool,
    workers: int | None,
    ray_address: str | None,
    simulate_top: int | None,
    emit: EmitRequest | None = None,
    out: Path | None = None,
    rank: int = 1,
) -> None:
    if report is not None:
        check_writable(report, force)  # fail before minutes of work, not after
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=json_out,
    ) as bar:
        task = bar.add_task("pricing candidates", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = plan(
            sc,
            workers=workers,
            ray_address=ray_address,
            progress=progress,
            simulate_top=simulate_top,
        )
    if result.best is None:
        reasons = "; ".join(f"{r.candidate.label}: {r.reason}" for r in result.pruned[:5])
        fail(f"no candidate meets the SLOs ({len(result.pruned)} pruned). {reasons}")
    target = None
    if emit is not None:
        from hwsim.deploy import from_plan, pool_targets

        if 1 <= rank <= len(result.feasible) and result.feasible[rank - 1].candidate.disaggregated:
            pools = pool_targets(result, rank)
            if out is None:  # stdout holds the artifacts alone
                err_console.print(pools[0].summary, markup=False, highlight=False)
            elif json_out:
                print_json(result.to_dict())
            else:
                _print_summary(result)
            emit_pools(emit, pools, out=out, force=force)
            if report is not None:
                paths = write_report(result, report, overwrite=force)
                err_console.print(f"report: {paths['html']} and {paths['markdown']}")
            return
        target = from_plan(result, rank)
    if target is not None and out is None:  # stdout holds the artifacts alone
        err_console.print(f"{target.summary}\n{target.label}", markup=False, highlight=False)
    elif json_out:
        print_json(result.to_dict())
    else:
        _print_summary(result)
    if emit is not None and target is not None:
        emit_artifacts(emit, target, out=out, force=force)
    if report is not None:
        paths = write_report(result, report, overwrite=force)
        err_console.print(f"report: {paths['html']} and {paths['markdown']}")


def emit_artifacts(
    request: EmitRequest, target: LaunchTarget, *, out: Path | None, force: bool
) -> None:
    """``--emit``: the artifacts on stdout, or written into ``out``."""
    from hwsim.deploy import render

    _deliver(render(request, target), target.label, out=out, force=force)


def emit_pools(
    request: EmitRequest, pools: tuple[LaunchTarget, LaunchTarget], *, out: Path | None, force: bool
) -> None:
    """``--emit`` for a disaggregated candidate: each pool's launch script."""
    from hwsim.deploy import render_pools

    _deliver(render_pools(request, pools), "both pools", out=out, force=force)


def _deliver(files: dict[str, str], label: str, *, out: Path | None, force: bool) -> None:
    """Rendered artifacts on stdout, or written into ``out`` (never replacing without force)."""
    from hwsim.deploy import for_stdout, write

    if out is None:
        typer.echo(for_stdout(files), nl=False)
        return
    paths = write(out, files, overwrite=force)
    err_console.print(f"launch artifacts ({label}): " + ", ".join(str(p) for p in paths))


def _print_summary(result) -> None:
    """The first screen (recommendation, SLO margins, cost, price, launch command), then the
    candidates grouped by hardware, the best few of each."""
    first = Table(show_header=False, title_justify="left", box=None, pad_edge=False)
    first.add_column("what", style="cyan", no_wrap=True)
    first.add_column("value", overflow="fold")
    for label, text in first_screen_rows(result):
        first.add_row(label, escape(text), style="bold green" if label == "recommendation" else "")
    console.print(first)
    w = result.workload
    console.print(
        f"workload: peak {w.peak_rate_per_s:g} req/s, prompt mean {w.prompt_mean:,.0f} "
        f"(p95 {w.prompt_p95:,.0f}), output mean {w.output_mean:,.0f} tokens"
    )
    table = Table(title="feasible candidates by hardware, cheapest first", title_justify="left")
    comparison = result.disaggregation()
    compact = COMPACT if comparison is None else (*COMPACT, HEADER[-1])  # + the pools
    keep = [HEADER.index(c) for c in compact]
    for i in keep:
        table.add_column(HEADER[i], no_wrap=True)
    rows = _candidate_rows(result, compact=True)
    hardware = [group_of(r) for r in result.feasible]
    for hw, shown, folded in by_hardware(rows, hardware):
        for row in shown:
            table.add_row(*(row[i] for i in keep))
        if folded:
            table.add_row(f"  + {len(folded)} more on {hw} (--json or --report)")
        table.add_section()
    console.print(table)
    if comparison is not None:
        console.print(f"disaggregated vs aggregated: {comparison['sentence']}", markup=False)
    if result.pruned:
        pruned = Table(title="pruned", title_justify="left")
        pruned.add_column("candidate", no_wrap=True)
        pruned.add_column("why")
        for r in result.pruned[:15]:
            pruned.add_row(r.candidate.label, r.reason)
        console.print(pruned)
        if len(result.pruned) > 15:
            console.print(f"... and {len(result.pruned) - 15} more pruned (see --json or --report)")
