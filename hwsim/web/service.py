"""What the planning web page and its JSON API do, without the web framework.

Each function takes a parsed request body (a dict) and returns JSON-able data or file bytes;
bad input raises :class:`~hwsim.errors.HwsimError` with the text the CLI would print, and
:mod:`hwsim.web.app` turns it into a 4xx answer. Plan and context results are kept in a small
in-memory store keyed by a hash of what was asked, so the page's plots, report and launch
artifacts come from the plan it just showed (and the same request twice is planned once).
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwsim.cli.common import SCHEMA_VERSION, to_jsonable
from hwsim.errors import ProfileError
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.scenario import Scenario
from hwsim.safe_read import excerpt
from hwsim.web.requests import (
    DEFAULT_LENGTHS,
    RequestError,
    parse_lengths,
    positive_field,
    scenario_of,
    split_options,
    whole_field,
)

if TYPE_CHECKING:
    from hwsim.inference.context import ContextSweep
    from hwsim.planner.plan import PlanResult

STORE_SIZE = 16  # plans and context sweeps kept for the page's plots and downloads
REPORT_FILES = ("report.html", "report.md", "report.zip")


def _key(kind: str, data: Any) -> str:
    text = json.dumps([kind, data], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- a small store of results ------------------------------------------------------------------


class Store:
    """The last :data:`STORE_SIZE` results by id (least recently used goes first)."""

    def __init__(self, size: int = STORE_SIZE):
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: str, item: Any) -> None:
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


# matplotlib's pyplot keeps global state: one figure at a time across the server's threads
PLOT_LOCK = threading.Lock()


@dataclass
class _Lazy:
    """Files made once on first use (plots and reports), guarded by a lock."""

    files: dict[str, bytes] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, make: Callable[[], dict[str, bytes]]) -> dict[str, bytes]:
        with self.lock:
            if self.files is None:
                with PLOT_LOCK:
                    self.files = make()
            return self.files


@dataclass
class PlanEntry:
    id: str
    result: PlanResult
    report: _Lazy = field(default_factory=_Lazy)


@dataclass
class ContextEntry:
    id: str
    sweep: ContextSweep
    plot: _Lazy = field(default_factory=_Lazy)


class Service:
    """The API's work. ``workers``: local processes for the candidate search (default 1: the
    server prices in its own process rather than forking from a threaded one)."""

    def __init__(self, workers: int | None = 1):
        self.workers = workers
        self.plans = Store()
        self.contexts = Store()

    # -- profiles ------------------------------------------------------------------------------

    def profiles(self) -> dict[str, Any]:
        from hwsim.deploy import EMIT_CHOICES
        from hwsim.model.load import load_model
        from hwsim.model.param_summary import param_summary
        from hwsim.profiles.loader import load_hardware, shipped_ids
        from hwsim.report.plan_report import PLOTS

        models = []
        for ref in shipped_ids("model"):
            m = load_model(ref)
            models.append(
                {
                    "id": m.id,
                    "name": m.name,
                    **param_summary(m),
                    "max_context_tokens": m.max_context_tokens,
                }
            )
        hardware = []
        for ref in shipped_ids("hardware"):
            hw = load_hardware(ref)
            price = hw.price_per_hour_usd
            hardware.append(
                {
                    "id": hw.id,
                    "name": hw.name,
                    "memory_bytes": hw.capacity_bytes,
                    "bandwidth_bytes_per_s": hw.bandwidth_bytes_per_s,
                    "price_per_hour_usd": price.value if price else None,
                    "calibrated": hw.calibration is not None,
                }
            )
        return {
            "schema_version": SCHEMA_VERSION,
            "models": models,
            "hardware": hardware,
            "artifacts": list(EMIT_CHOICES),
            "plots": list(PLOTS),
        }

    # -- plan ----------------------------------------------------------------------------------

    def plan(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``hwsim plan --json`` for a scenario with ``traffic:``; (plan id, JSON)."""
        raw, opts = split_options(body, {"simulate_top": None})
        entry = self._plan(
            scenario_of(raw), whole_field(opts["simulate_top"], "simulate_top", 0, optional=True)
        )
        return entry.id, self.plan_json(entry)

    def _plan(self, sc: Scenario, simulate_top: int | None) -> PlanEntry:
        from hwsim.planner.plan import plan

        if sc.traffic is None:
            raise ProfileError(
                "capacity planning needs a 'traffic:' section (POST /api/estimate prices one "
                "deployment)",
                field="traffic",
            )
        key = _key("plan", {"scenario": sc.model_dump(mode="json"), "simulate_top": simulate_top})
        entry = self.plans.get(key)
        if entry is not None:
            return entry
        result = plan(sc, workers=self.workers, simulate_top=simulate_top)
        if result.best is None:  # as `hwsim plan` says it
            reasons = "; ".join(f"{r.candidate.label}: {r.reason}" for r in result.pruned[:5])
            raise RequestError(
                f"no candidate meets the SLOs ({len(result.pruned)} pruned). {reasons}", 422
            )
        entry = PlanEntry(key, result)
        self.plans.put(key, entry)
        return entry

    @staticmethod
    def plan_json(entry: PlanEntry) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **to_jsonable(entry.result.to_dict())}

    def plan_entry(self, plan_id: str) -> PlanEntry:
        entry = self.plans.get(plan_id)
        if entry is None:
            raise RequestError(
                f"no plan {excerpt(plan_id)} here (the server keeps the last {STORE_SIZE}; "
                "POST /api/plan again)",
                404,
            )
        return entry

    def summary(self, plan_id: str) -> dict[str, Any]:
        """The plan's first screen, as the terminal summary and the report lead with it: the
        recommendation, each SLO with its margin, the cost, the price and its source, and the
        launch command."""
        from hwsim.report.first_screen import first_screen_rows

        rows = first_screen_rows(self.plan_entry(plan_id).result)
        return {
            "schema_version": SCHEMA_VERSION,
            "rows": [{"label": label, "text": text} for label, text in rows],
        }

    def report_files(self, plan_id: str) -> dict[str, bytes]:
        """``report.html``, ``report.md``, ``plots/NAME.png`` (as ``hwsim plan --report``
        writes them) and ``report.zip`` holding all of them."""
        entry = self.plan_entry(plan_id)

        def make() -> dict[str, bytes]:
            from hwsim.report.plan_report import write_report

            with tempfile.TemporaryDirectory(prefix="hwsim-web-") as tmp:
                write_report(entry.result, tmp)
                root = Path(tmp)
                files = {
                    p.relative_to(root).as_posix(): p.read_bytes()
                    for p in sorted(root.rglob("*"))
                    if p.is_file()
                }
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, data in files.items():
                    zf.writestr(f"hwsim-plan/{name}", data)
            files["report.zip"] = buffer.getvalue()
            return files

        return entry.report.get(make)

    def plot(self, plan_id: str, name: str) -> bytes:
        from hwsim.report.plan_report import PLOTS

        files = self.report_files(plan_id)
        png = files.get(f"plots/{name}.png")
        if png is None:
            raise RequestError(f"no plot {excerpt(name)}; the plots: {', '.join(PLOTS)}", 404)
        return png

    def report(self, plan_id: str, name: str) -> bytes:
        if name not in REPORT_FILES:
            raise RequestError(f"no file {excerpt(name)}; allowed: {', '.join(REPORT_FILES)}", 404)
        return self.report_files(plan_id)[name]

    # -- launch artifacts ----------------------------------------------------------------------

    def plan_artifact(
        self, plan_id: str, artifact: str, rank: int = 1, engine: str = "vllm"
    ) -> tuple[str, str]:
        """One launch artifact of a stored plan: (file name, text). ``artifact``: an engine
        (a launch script) or ``k8s`` (a manifest running ``engine``)."""
        from hwsim.deploy import EMIT_CHOICES, ENGINES, from_plan, launch_script, manifest

        if artifact not in EMIT_CHOICES:
            raise RequestError(
                f"unknown artifact {excerpt(artifact)}; allowed: {', '.join(EMIT_CHOICES)}", 404
            )
        if engine not in ENGINES:
            raise ProfileError(
                f"unknown engine {excerpt(engine)}; allowed: {', '.join(ENGINES)}",
                file="request",
                field="engine",
            )
        target = from_plan(self.plan_entry(plan_id).result, rank)
        if artifact == "k8s":
            return "deployment.yaml", manifest(target, engine)
        return f"launch-{artifact}.sh", launch_script(target, artifact)

    def artifacts(self, body: dict[str, Any]) -> dict[str, Any]:
        """``hwsim plan --emit``: launch artifacts for a posted scenario (its plan's candidate
        at ``rank`` when it has ``traffic:``, else its one deployment)."""
        from hwsim.deploy import EMIT_CHOICES, from_plan, from_scenario, parse_emit, render

        raw, opts = split_options(
            body, {"emit": list(EMIT_CHOICES), "rank": 1, "simulate_top": None}
        )
        emit = opts["emit"]
        if isinstance(emit, str):
            emit = [emit]
        if not isinstance(emit, list) or not all(isinstance(e, str) for e in emit):
            raise ProfileError(
                f"expected a list of artifacts ({', '.join(EMIT_CHOICES)}), got {excerpt(emit)}",
                file="request body",
                field="emit",
            )
        request = parse_emit(emit)
        rank = whole_field(opts["rank"], "rank", 1)
        assert rank is not None
        sc = scenario_of(raw)
        if sc.traffic is not None:
            top = whole_field(opts["simulate_top"], "simulate_top", 0, optional=True)
            target = from_plan(self._plan(sc, top).result, rank)
        else:
            target = from_scenario(sc, rank)
        return {
            "schema_version": SCHEMA_VERSION,
            "label": target.label,
            "summary": target.summary,
            "notes": list(target.notes),
            "files": render(request, target),
        }

    # -- one deployment ------------------------------------------------------------------------

    def estimate(self, body: dict[str, Any]) -> dict[str, Any]:
        """``hwsim plan --json`` for a scenario without ``traffic:``: one deployment priced at
        the scenario's ``workload:`` (a ``traffic:`` section is ignored here)."""
        from hwsim.cli.plan import run_estimate

        raw, _ = split_options(body, {})
        sc = scenario_of(raw)
        est = run_estimate(sc)
        from hwsim.planner.plan import deployment_json

        data = deployment_json(est, sc.model)
        return {"schema_version": SCHEMA_VERSION, **to_jsonable(data)}

    # -- context -------------------------------------------------------------------------------

    CONTEXT_FIELDS: dict[str, Any] = {
        "model": None,
        "hardware": None,
        "deployment": {},
        "plan": None,
        "rank": 1,
        "lengths": DEFAULT_LENGTHS,
        "variants": [],
        "compare_models": [],
        "batch": 1,
        "gen_len": 1,
        "tpot_slo_ms": None,
    }
    FROM_PLAN = ("model", "hardware", "deployment")

    def context(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``hwsim context --json``: what each context length costs; (sweep id, JSON). The
        design is ``model`` on ``hardware`` with ``deployment``, or a stored ``plan``'s model
        on its candidate at ``rank`` (TPOT SLO: the plan's, unless ``tpot_slo_ms``)."""
        from hwsim.inference.context import context_sweep

        unknown = sorted(set(body) - set(self.CONTEXT_FIELDS))
        if unknown:
            raise ProfileError(
                f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: "
                f"{', '.join(self.CONTEXT_FIELDS)}",
                file="request body",
            )
        opts = {k: body.get(k, v) for k, v in self.CONTEXT_FIELDS.items()}
        slo_ms = positive_field(opts["tpot_slo_ms"], "tpot_slo_ms")
        if opts["plan"] is not None:
            if given := [k for k in self.FROM_PLAN if k in body]:
                raise ProfileError(
                    f"give a plan or {', '.join(self.FROM_PLAN)}, not both ({', '.join(given)})",
                    file="request body",
                )
            if not isinstance(opts["plan"], str):
                raise ProfileError("expected a plan id", file="request body", field="plan")
            result = self.plan_entry(opts["plan"]).result
            rank = whole_field(opts["rank"], "rank", 1)
            assert rank is not None
            if rank > len(result.feasible):
                raise ProfileError(
                    f"the plan has {len(result.feasible)} feasible candidate(s); choose 1 to "
                    f"{len(result.feasible)}",
                    file="request body",
                    field="rank",
                )
            chosen = result.feasible[rank - 1].candidate
            model, hardware, spec = result.scenario.model, chosen.hardware, chosen.deployment
            slo_s = result.scenario.slo.tpot_p95_s
            if slo_ms is not None:
                slo_s = slo_ms / 1e3
        else:
            for name in ("model", "hardware"):
                if not isinstance(opts[name], str) or not opts[name]:
                    raise ProfileError(
                        "give a model id (or path) and a hardware id (or path), or a plan id",
                        file="request body",
                        field=name,
                    )
            if not isinstance(opts["deployment"], dict):
                raise ProfileError(
                    "expected a mapping of deployment setting: value",
                    file="request body",
                    field="deployment",
                )
            model, hardware = str(opts["model"]), str(opts["hardware"])
            spec = DeploymentSpec.from_settings(None, **opts["deployment"])
            slo_s = slo_ms / 1e3 if slo_ms is not None else None
        lengths = parse_lengths(opts["lengths"])
        variants: list[str] = []
        for name in ("variants", "compare_models"):
            value = opts[name]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ProfileError(
                    f"expected a list of strings, got {excerpt(value)}",
                    file="request body",
                    field=name,
                )
            variants += value
        batch = whole_field(opts["batch"], "batch", 1)
        gen_len = whole_field(opts["gen_len"], "gen_len", 0)
        asked = {
            "model": model,
            "hardware": hardware,
            "spec": spec.model_dump(),
            "lengths": lengths,
            "variants": variants,
            "batch": batch,
            "gen_len": gen_len,
            "tpot_slo_s": slo_s,
        }
        key = _key("context", asked)
        entry = self.contexts.get(key)
        if entry is None:
            sweep = context_sweep(
                model,
                hardware,
                lengths,
                variants=variants,
                batch=batch or 1,
                gen_len=gen_len or 0,
                tpot_slo_s=slo_s,
                spec=spec,
            )
            entry = ContextEntry(key, sweep)
            self.contexts.put(key, entry)
        return entry.id, {"schema_version": SCHEMA_VERSION, **to_jsonable(entry.sweep.to_dict())}

    def context_plot(self, sweep_id: str) -> bytes:
        """``hwsim context --plot``: the sweep's log-log chart as PNG."""
        entry = self.contexts.get(sweep_id)
        if entry is None:
            raise RequestError(
                f"no context sweep {excerpt(sweep_id)} here (the server keeps the last "
                f"{STORE_SIZE}; POST /api/context again)",
                404,
            )

        def make() -> dict[str, bytes]:
            from hwsim.cli.context import plot_sweep

            with tempfile.TemporaryDirectory(prefix="hwsim-web-") as tmp:
                path = Path(tmp) / "context.png"
                plot_sweep(entry.sweep, path)
                return {"context.png": path.read_bytes()}

        return entry.plot.get(make)["context.png"]
