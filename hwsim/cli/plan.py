"""``hwsim plan``: price a deployment from a scenario YAML and/or flags."""

from __future__ import annotations

from pathlib import Path

import typer

from hwsim.cli.common import console, deployment_flags, fail, handle_errors, print_json
from hwsim.errors import ProfileError
from hwsim.inference.estimate import estimate
from hwsim.model.load import load_model
from hwsim.model.param_summary import param_summary
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

    return validate(Scenario, data, str(scenario_path) if scenario_path else "command line")


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
        force: bool = typer.Option(False, help="allow --report to replace existing files"),
        workers: int | None = typer.Option(
            None, help="local worker processes for the candidate search (default: cores)"
        ),
        ray_address: str | None = typer.Option(
            None, help="run the candidate search on Ray: 'auto' or HOST:PORT"
        ),
        simulate_top: int | None = typer.Option(
            None, help="confirm this many top candidates with the serving simulator"
        ),
        deployment: dict | None = None,
    ) -> None:
        """Price one deployment, or, when the scenario has a `traffic:` section, plan capacity:
        how many GPUs of which kind, configured how, at what cost."""
        if scenario is not None and not scenario.exists():
            raise ProfileError("scenario file not found", file=str(scenario))
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
            )
            return
        planning_only = {
            "--report": report is not None,
            "--force": force,
            "--workers": workers is not None,
            "--ray-address": ray_address is not None,
            "--simulate-top": simulate_top is not None,
        }
        if given := [flag for flag, used in planning_only.items() if used]:
            fail(
                f"{', '.join(given)} only apply to capacity planning: a scenario with a "
                "'traffic:' section (this run prices one deployment)"
            )
        est = run_estimate(sc)
        if json_out:
            print_json(
                {
                    **est.model_dump(exclude={"prefill_ops", "decode_ops"}),
                    "model": param_summary(load_model(sc.model)),
                    "ops": {
                        "prefill": [r.model_dump() for r in est.prefill_ops],
                        "decode": [r.model_dump() for r in est.decode_ops],
                    },
                }
            )
            return
        console.print(est)
