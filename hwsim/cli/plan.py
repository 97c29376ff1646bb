"""``hwsim plan``: price a deployment from a scenario YAML and/or flags."""

from __future__ import annotations

from pathlib import Path

import typer

from hwsim.cli.common import console, deployment_flags, fail, handle_errors, print_json
from hwsim.errors import ProfileError
from hwsim.inference.estimate import estimate
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.scenario import Scenario, load_scenario


def _overrides(**flags) -> dict:
    return {k: v for k, v in flags.items() if v is not None}


def build_scenario(scenario_path: Path | None, deployment: dict | None = None, **flags) -> Scenario:
    """Flags over the scenario file over defaults. ``deployment``: DeploymentSpec fields from
    flags (None: not given), applied by :meth:`DeploymentSpec.from_settings`."""
    base = load_scenario(scenario_path) if scenario_path else None
    data = base.model_dump() if base else {}
    for key in ("model", "hardware"):
        if flags.get(key) is not None:
            data[key] = flags[key]
    spec = base.deployment if base else None
    data["deployment"] = DeploymentSpec.from_settings(spec, **(deployment or {})).model_dump()
    workload = _overrides(
        batch=flags.get("batch"), prompt_len=flags.get("prompt_len"), gen_len=flags.get("gen_len")
    )
    data["workload"] = {**data.get("workload", {}), **workload}
    if flags.get("tpot_slo_ms") is not None:
        data["slo"] = {**data.get("slo", {}), "tpot_p95_s": flags["tpot_slo_ms"] / 1e3}
    if "model" not in data or "hardware" not in data:
        fail("give a scenario file or both --model and --hardware")
    from hwsim.profiles.loader import validate

    where = str(scenario_path) if scenario_path else "command line"
    sc = validate(Scenario, data, where)
    if sc.traffic is not None and sc.candidates is not None:  # errors name the file
        from hwsim.planner.spec import CandidatesSection

        validate(CandidatesSection, {"candidates": sc.candidates}, where)
    return sc


def _emit_request(
    emit: list[str] | None, out: Path | None, rank: int | None, json_out: bool, force: bool
):
    """``--emit`` parsed and its companions checked before any work; None without --emit."""
    if not emit:
        given = [
            f for f, used in (("--out", out is not None), ("--rank", rank is not None)) if used
        ]
        if given:
            fail(f"{', '.join(given)} only apply with --emit")
        return None
    from hwsim.deploy import check_out, parse_emit

    request = parse_emit(emit)
    if rank is not None and rank < 1:
        fail(f"--rank {rank}: ranks start at 1 (the cheapest feasible candidate)")
    if out is None and json_out:
        fail("--emit prints the artifacts on stdout, --json prints JSON there: pass --out DIR")
    if out is not None:
        check_out(out, request, force)  # fail before minutes of planning, not after
    return request


def run_estimate(sc: Scenario):
    return estimate(
        sc.model,
        sc.hardware,
        sc.deployment,
        batch=sc.workload.batch,
        prompt_len=sc.workload.prompt_len,
        gen_len=sc.workload.gen_len,
        tpot_slo_s=sc.slo.tpot_p95_s,
    )


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    @deployment_flags
    def plan(
        scenario: Path | None = typer.Argument(None, help="scenario YAML (see examples/)"),
        model: str | None = typer.Option(None, help="model id, YAML path or config.json"),
        hardware: str | None = typer.Option(None, help="hardware id or YAML path"),
        batch: int | None = typer.Option(None, help="concurrent sequences"),
        prompt_len: int | None = typer.Option(None, help="prompt tokens"),
        gen_len: int | None = typer.Option(None, help="generated tokens (0: prefill only)"),
        tpot_slo_ms: float | None = typer.Option(None, help="TPOT SLO for users per GPU"),
        json_out: bool = typer.Option(False, "--json", help="print one JSON object"),
        report: Path | None = typer.Option(
            None, help="capacity planning: write report.html + report.md into this folder"
        ),
        force: bool = typer.Option(
            False, help="allow --report and --out to replace existing files"
        ),
        workers: int | None = typer.Option(
            None,
            help="local worker processes for the candidate search and the simulator confirmations "
            "(default: cores)",
        ),
        ray_address: str | None = typer.Option(
            None, help="run the candidate search on Ray: 'auto' or HOST:PORT"
        ),
        simulate_top: int | None = typer.Option(
            None, help="confirm this many top candidates with the serving simulator"
        ),
        emit: list[str] | None = typer.Option(
            None,
            "--emit",
            metavar="ARTIFACTS",
            help="launch artifacts for the plan: vllm, sglang, trtllm (a launch script each), "
            "k8s (Deployment + Service); repeat or comma-separate",
        ),
        out: Path | None = typer.Option(
            None, help="with --emit: write the artifacts into this folder (default: stdout)"
        ),
        rank: int | None = typer.Option(
            None, help="with --emit: the feasible candidate to emit, cheapest = 1 (default)"
        ),
        deployment: dict | None = None,
    ) -> None:
        """Price one deployment, or, when the scenario has a `traffic:` section, plan capacity:
        how many GPUs of which kind, configured how, at what cost."""
        if scenario is not None and not scenario.exists():
            raise ProfileError("scenario file not found", file=str(scenario))
        request = _emit_request(emit, out, rank, json_out, force)
        sc = build_scenario(
            scenario,
            deployment,
            model=model,
            hardware=hardware,
            batch=batch,
            prompt_len=prompt_len,
            gen_len=gen_len,
            tpot_slo_ms=tpot_slo_ms,
        )
        if sc.traffic is not None:
            from hwsim.cli.plan_capacity import run_capacity_plan

            run_capacity_plan(
                sc,
                json_out=json_out,
                report=report,
                force=force,
                workers=workers,
                ray_address=ray_address,
                simulate_top=simulate_top,
                emit=request,
                out=out,
                rank=rank or 1,
            )
            return
        planning_only = {
            "--report": report is not None,
            "--force": force,
            "--workers": workers is not None,
            "--ray-address": ray_address is not None,
            "--simulate-top": simulate_top is not None,
        }
        if request is not None:
            planning_only["--force"] = False  # --force also lets --out replace files
        if given := [flag for flag, used in planning_only.items() if used]:
            fail(
                f"{', '.join(given)} only apply to capacity planning: a scenario with a "
                "'traffic:' section (this run prices one deployment)"
            )
        if request is not None:
            from hwsim.cli.plan_capacity import emit_artifacts
            from hwsim.deploy import from_scenario

            emit_artifacts(request, from_scenario(sc, rank or 1), out=out, force=force)
            if out is None:  # stdout holds the artifacts alone, ready for a pipe
                return
        est = run_estimate(sc)
        if json_out:
            from hwsim.planner.plan import deployment_json

            print_json(deployment_json(est, sc.model))
            return
        console.print(est)
