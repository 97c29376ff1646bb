"""``hwsim train``: memory per GPU, step time, MFU / HFU and run cost of a training layout.

    hwsim train --model gpt-3-175b --hardware a100-80gb-sxm --gpus 64 --tp 8 --pp 8 \\
        --global-batch 64 --seq-len 2048 --recompute selective --sequence-parallel
    hwsim train examples/train-gpt3-175b-a100.yaml --json
    hwsim train --model llama-3.1-8b --hardware h100-sxm --gpus 16 --global-batch 64 --search
    hwsim train examples/train-llama31-8b-h100.yaml --report out/train

A scenario file holds ``model``, ``hardware``, ``gpus``, optionally ``total_tokens`` and a
``training:`` mapping of :class:`~hwsim.training.spec.TrainingSpec` settings by their short
names (``tp``, ``pp``, ``dp``, ``micro_batch``, ...); flags override it. The settings' flags
are generated from the spec (one ``--flag`` per field), so they never drift from it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from hwsim.cli.common import console, handle_errors, print_json
from hwsim.errors import HwsimError, ProfileError
from hwsim.format import fmt_bytes, fmt_time

SCENARIO_KEYS = ("model", "hardware", "gpus", "total_tokens", "training", "curriculum")


def _flag_type(annotation: Any) -> type:
    if annotation in (int, float, bool, str):
        return annotation
    text = str(annotation)
    if "int" in text and "Literal" not in text:
        return int
    if "float" in text:
        return float
    return str


def training_flags(func: Callable) -> Callable:
    """One ``--flag`` per :class:`TrainingSpec` field, by its short name (``--tp``,
    ``--micro-batch``, ``--sequence-parallel/--no-sequence-parallel``); the given ones reach
    ``func`` as ``settings`` (name -> value, None: not given)."""
    from hwsim.training.spec import TrainingSpec

    names = []
    extra = []
    for field, info in TrainingSpec.model_fields.items():
        name = info.alias or field
        names.append(name)
        flag = f"--{name.replace('_', '-')}"
        if info.annotation is bool:
            flag += f"/--no-{name.replace('_', '-')}"
        extra.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(
                    None,
                    flag,
                    help=f"{info.description or name} (default {info.default})",
                    show_default=False,
                    rich_help_panel="Training layout (each overrides the scenario's)",
                ),
                annotation=Optional[_flag_type(info.annotation)],  # noqa: UP045 - typer reads it
            )
        )
    sig = inspect.signature(func)
    own = [p for p in sig.parameters.values() if p.name != "settings"]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        settings = {name: kwargs.pop(name, None) for name in names}
        return func(*args, settings=settings, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
    return wrapper


def _scenario(path: Path) -> dict[str, Any]:
    from hwsim.safe_read import load_yaml, read_text

    data = load_yaml(read_text(path, "training scenario"), str(path))
    if not isinstance(data, dict):
        raise ProfileError("a training scenario is a mapping", file=str(path))
    unknown = sorted(set(data) - set(SCENARIO_KEYS))
    if unknown:
        raise ProfileError(
            f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(SCENARIO_KEYS)}",
            file=str(path),
        )
    training = data.get("training") or {}
    if not isinstance(training, dict):
        raise ProfileError("'training' must be a mapping of settings", file=str(path))
    curriculum = data.get("curriculum")
    if curriculum is not None:
        if not isinstance(curriculum, list) or not curriculum:
            raise ProfileError(
                "'curriculum' must be a list of stages (tokens: ..., and any training setting)",
                file=str(path),
            )
        if data.get("total_tokens") is not None:
            raise ProfileError(
                "give 'total_tokens' or 'curriculum', not both: each stage has its own tokens",
                file=str(path),
            )
        from hwsim.training.curriculum import check_stage

        for i, stage in enumerate(curriculum):
            try:
                check_stage(stage, i)
            except HwsimError as exc:
                raise ProfileError(str(exc), file=str(path)) from None
    return data


def _curriculum_table(run) -> Table:
    t = Table(
        title=f"curriculum: {len(run.stages)} stages, {run.total_tokens:.3g} tokens",
        title_justify="left",
    )
    for col in ("stage", "GPUs", "layout", "seq len", "step", "tokens/s", "MFU", "days", "cost"):
        t.add_column(col)
    for name, r in zip(run.names, run.stages, strict=True):
        lay = r.layout
        layout = f"tp {lay['tp']} cp {lay['cp']} pp {lay['pp']} dp {lay['dp']}"
        cost = "-" if r.run.cost_usd is None else f"${r.run.cost_usd:,.0f}"
        t.add_row(
            name,
            str(r.gpus),
            layout,
            f"{lay['seq_len']:,}",
            fmt_time(r.step.time_s),
            f"{r.throughput.tokens_per_s:,.0f}",
            f"{r.throughput.mfu:.1%}",
            f"{(r.run.time_s or 0.0) / 86400:.1f}",
            cost,
        )
    total = "-" if run.cost_usd is None else f"${run.cost_usd:,.0f}"
    t.add_row("total", "", "", "", "", "", "", f"{run.time_s / 86400:.1f}", total)
    return t


def _number(value: Any) -> float | None:
    """A YAML number; '300e9' (YAML 1.1 reads it as a string) is accepted too."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    try:
        return float(str(value))
    except ValueError:
        raise HwsimError(f"total_tokens: {value!r} is not a number") from None


def _table(r) -> Table:
    lay = r.layout
    title = (
        f"train {r.model} on {r.gpus} x {r.hardware}: tp {lay['tp']} "
        + (f"cp {lay['cp']} " if lay.get("cp", 1) > 1 else "")
        + f"pp {lay['pp']} dp {lay['dp']}, micro-batch {lay['micro_batch']}, global batch "
        f"{lay['global_batch']} x {lay['seq_len']} tokens"
    )
    t = Table(title=title, title_justify="left", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    mem = r.memory
    t.add_row(
        "memory / GPU",
        f"{fmt_bytes(mem.total_bytes)} of {fmt_bytes(mem.usable_bytes)} "
        f"usable ({'fits' if mem.fits else 'DOES NOT FIT'}; stage {mem.stage})",
    )
    t.add_row(
        "  weights / grads / optimizer",
        " / ".join(fmt_bytes(x) for x in (mem.params_bytes, mem.grads_bytes, mem.optimizer_bytes)),
    )
    t.add_row("  activations", fmt_bytes(mem.activations_bytes))
    t.add_row("  max micro-batch / seq len", f"{mem.max_micro_batch} / {mem.max_seq_len}")
    st = r.step
    t.add_row("step time", fmt_time(st.time_s))
    if st.cp_comm_s > 0:
        t.add_row("  CP ring exposed / micro-batch", fmt_time(st.cp_comm_s))
    t.add_row(
        "  compute / comm / bubble",
        " / ".join(fmt_time(x) for x in (st.compute_s, st.communication_s, st.bubble_s)),
    )
    t.add_row("  micro-batches", str(st.micro_batches))
    th = r.throughput
    t.add_row("tokens/s", f"{th.tokens_per_s:,.0f} ({th.tokens_per_s_per_gpu:,.0f} per GPU)")
    t.add_row(
        "model TFLOP/s / GPU",
        f"{th.model_tflops_per_gpu:.1f} (MFU {th.mfu:.1%}, HFU "
        f"{th.hfu:.1%} of {th.peak_tflops_per_gpu:.0f})",
    )
    run = r.run
    if run.time_s is not None:
        cost = "no price in the profile" if run.cost_usd is None else f"${run.cost_usd:,.0f}"
        t.add_row("run", f"{run.time_s / 86400:.1f} days, {run.gpu_hours:,.0f} GPU-hours, {cost}")
    t.add_row("priced by", ", ".join(st.priced_by))
    return t


def _search_output(fitting, pruned, json_out: bool, top: int) -> None:
    if json_out:
        print_json(
            {
                "fitting": [
                    {
                        **c.settings,
                        "step_time_s": c.result.step.time_s,
                        "mfu": c.result.throughput.mfu,
                        "memory_bytes": c.result.memory.total_bytes,
                    }
                    for c in fitting
                ],
                "pruned": [{**c.settings, "reason": c.reason} for c in pruned],
            }
        )
        return
    t = Table(title=f"{len(fitting)} layouts fit, ranked by step time", title_justify="left")
    for col in ("tp", "pp", "dp", "micro-batch", "recompute", "zero", "step", "MFU", "mem/GPU"):
        t.add_column(col)
    for c in fitting[:top]:
        s, r = c.settings, c.result
        t.add_row(
            *(str(s[k]) for k in ("tp", "pp", "dp", "micro_batch", "recompute", "zero")),
            fmt_time(r.step.time_s),
            f"{r.throughput.mfu:.1%}",
            fmt_bytes(r.memory.total_bytes),
        )
    console.print(t)
    if pruned:
        p = Table(
            title=f"{len(pruned)} pruned (first {min(top, len(pruned))})", title_justify="left"
        )
        for col in ("tp", "pp", "dp", "micro-batch", "recompute", "zero", "why"):
            p.add_column(col)
        for c in pruned[:top]:
            s = c.settings
            p.add_row(
                *(str(s[k]) for k in ("tp", "pp", "dp", "micro_batch", "recompute", "zero")),
                c.reason or "",
            )
        console.print(p)


def register(app: typer.Typer) -> None:
    @app.command("train")
    @handle_errors
    @training_flags
    def train_command(
        scenario: Optional[Path] = typer.Argument(  # noqa: UP045 - typer reads it
            None, help="training scenario YAML (model, hardware, gpus, training: {...})"
        ),
        model: Optional[str] = typer.Option(None, "--model", help="model id or path"),  # noqa: UP045
        hardware: Optional[str] = typer.Option(None, "--hardware", help="hardware id or path"),  # noqa: UP045
        gpus: Optional[int] = typer.Option(None, "--gpus", help="GPUs (default tp x cp x pp x dp)"),  # noqa: UP045
        total_tokens: Optional[float] = typer.Option(  # noqa: UP045
            None, "--total-tokens", help="tokens of the whole run (for run time and cost)"
        ),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
        search_mode: bool = typer.Option(
            False, "--search", help="list the layouts of --gpus that fit, ranked by step time"
        ),
        top: int = typer.Option(20, "--top", help="rows shown by --search"),
        report: Optional[Path] = typer.Option(  # noqa: UP045 - typer reads it
            None,
            "--report",
            help="write memory vs sequence length per recomputation policy, the step-time "
            "breakdown (PNGs) and training.json into this folder",
        ),
        force: bool = typer.Option(False, "--force", help="with --report: overwrite its files"),
        settings: dict[str, Any] | None = None,
    ) -> None:
        """Memory per GPU, step time, MFU / HFU and run cost of a training layout."""
        from hwsim.training import search, train
        from hwsim.training.spec import TrainingSpec

        data = _scenario(scenario) if scenario is not None else {}
        model = model or data.get("model")
        hardware = hardware or data.get("hardware")
        gpus = gpus if gpus is not None else data.get("gpus")
        total = total_tokens if total_tokens is not None else _number(data.get("total_tokens"))
        if not model or not hardware:
            raise HwsimError("give --model and --hardware (or a scenario file naming them)")
        base = TrainingSpec.from_settings(None, **(data.get("training") or {}))
        spec = TrainingSpec.from_settings(base, **(settings or {}))
        if search_mode:
            if gpus is None:
                raise HwsimError("--search needs --gpus")
            fitting, pruned = search(model, hardware, int(gpus), spec)
            _search_output(fitting, pruned, json_out, top)
            return
        if report is not None:
            if search_mode:
                raise HwsimError("--report describes one layout; drop --search or --report")
            from hwsim.training.report import check_report_dir

            check_report_dir(report, force)  # fail before the sweep, not after
        if data.get("curriculum"):
            if report is not None or search_mode:
                raise HwsimError("--report and --search describe one layout, not a curriculum")
            from hwsim.training.curriculum import train_curriculum

            run = train_curriculum(model, hardware, gpus, spec, stages=data["curriculum"])
            if json_out:
                print_json(run.to_dict())
            else:
                console.print(_curriculum_table(run))
            return
        result = train(model, hardware, gpus, spec, total_tokens=total)
        if report is not None:
            from hwsim.training.report import write_training_report

            written = write_training_report(result, model, hardware, report, force)
            if not json_out:
                console.print(f"report: {', '.join(str(p) for p in written)}")
        if json_out:
            print_json(result.to_dict())
        else:
            console.print(_table(result))
