"""Measured request traces (validation/published/traces/) and their replay in hwsim.

A measured trace is a CSV with one row per request, sorted by arrival: ``arrival_offset_s``
(seconds after the run's first request), ``prompt_tokens``, ``output_tokens`` and the latencies
the source measured, ``ttft_s`` (first token - issue), ``tpot_s`` ((complete - first token) /
(output - 1)) and ``e2e_s`` (complete - issue). Each folder's ``manifest.yaml`` says where
every file comes from. Nothing here may be fitted to these files: they are for evaluation.

:func:`replay` serves a trace's exact arrivals and lengths through :func:`hwsim.planner.plan.
simulate` (the planner's path: ``make_deployment``, the deployment's KV capacity,
``scheduler_config``, ``EngineStepModel``) with a CSV trace as the traffic;
:func:`replay_disaggregated` serves it through both pools of a disaggregated pair
(:func:`hwsim.planner.disaggregated_sim.simulate_pools`, the path of the planner's two-pool
confirmation) with the trace's requests instead of sampled ones.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from hwsim.serving import RequestRecords, SimulationResult, Slo, slo_attainment
from hwsim.serving.csvio import non_negative_float, positive_int, read_columns
from hwsim.serving.scheduler import COMPLETED
from hwsim.serving.traffic import Requests

if TYPE_CHECKING:
    from hwsim.planner.disaggregated_sim import PoolsRun

TRACES = Path(__file__).resolve().parent / "published" / "traces"
DISTSERVE_OPT13B = TRACES / "distserve-opt13b-sharegpt"

COLUMNS = (
    ("arrival_offset_s", non_negative_float),
    ("prompt_tokens", positive_int),
    ("output_tokens", positive_int),
    ("ttft_s", non_negative_float),
    ("tpot_s", non_negative_float),
    ("e2e_s", non_negative_float),
)


def load_manifest(folder: Path = DISTSERVE_OPT13B) -> dict[str, Any]:
    """The folder's manifest.yaml: ``source`` (shared provenance) and ``runs`` (one per CSV)."""
    doc = yaml.safe_load((folder / "manifest.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def load_measured(path: Path) -> dict[str, np.ndarray]:
    """One measured trace as float64 columns (token counts as int64), in file order."""
    cols = read_columns(path, COLUMNS)
    for name in ("prompt_tokens", "output_tokens"):
        cols[name] = cols[name].astype(np.int64)
    return cols


def measured_records(trace: dict[str, np.ndarray]) -> RequestRecords:
    """The measured run as hwsim records (every request completed), so that hwsim's own
    metrics (:func:`hwsim.serving.slo_attainment`) judge measurement and prediction alike."""
    arrival = trace["arrival_offset_s"]
    n = len(arrival)
    return RequestRecords(
        arrival_s=arrival,
        admitted_s=arrival,
        first_token_s=arrival + trace["ttft_s"],
        finish_s=arrival + trace["e2e_s"],
        prompt_tokens=trace["prompt_tokens"],
        output_tokens=trace["output_tokens"],
        cached_prefix_tokens=np.zeros(n, dtype=np.int64),
        preemptions=np.zeros(n, dtype=np.int64),
        status=np.full(n, COMPLETED),
    )


def metrics(records: RequestRecords, slo: Slo) -> dict[str, float]:
    """Median and p90 TTFT and per-request TPOT, mean E2E (s), and the SLO attainment."""
    ttft, tpot = records.ttft_s, records.tpot_s
    done = records.completed
    tpot = tpot[done & ~np.isnan(tpot)]
    return {
        "ttft_p50_s": float(np.median(ttft[done])),
        "ttft_p90_s": float(np.percentile(ttft[done], 90)),
        "tpot_p50_s": float(np.median(tpot)),
        "tpot_p90_s": float(np.percentile(tpot, 90)),
        "e2e_mean_s": float(np.mean(records.e2e_s[done])),
        "attainment": slo_attainment(records, slo),
    }


def scenario(model: str, trace_csv: Path, hardware: str, deployment: dict[str, Any]) -> dict:
    """A scenario whose traffic is the CSV trace ``trace_csv`` (arrival_s, lengths)."""
    return {
        "name": f"replay {trace_csv.stem}",
        "model": model,
        "hardware": hardware,
        "deployment": dict(deployment),
        "traffic": {"arrivals": {"kind": "trace", "file": str(trace_csv)}},
    }


def replay(
    trace: dict[str, np.ndarray], model: str, hardware: str, deployment: dict[str, Any]
) -> SimulationResult:
    """Serve the trace's exact arrivals and lengths on one replica of ``deployment``."""
    from hwsim.planner.plan import simulate

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.csv"
        rows = zip(
            trace["arrival_offset_s"], trace["prompt_tokens"], trace["output_tokens"], strict=True
        )
        lines = [
            "arrival_s,prompt_tokens,output_tokens",
            *(f"{float(a)!r},{p},{o}" for a, p, o in rows),
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result, _ = simulate(scenario(model, path, hardware, deployment), len(trace["ttft_s"]))
    return result


def trace_requests(trace: dict[str, np.ndarray]) -> Requests:
    """The trace's exact arrivals and lengths as simulator requests (nothing cached)."""
    return Requests.from_arrays(
        np.asarray(trace["arrival_offset_s"], dtype=float),
        np.asarray(trace["prompt_tokens"], dtype=np.int64),
        np.asarray(trace["output_tokens"], dtype=np.int64),
    )


def replay_disaggregated(
    trace: dict[str, np.ndarray],
    model: str,
    hardware: str,
    prefill: dict[str, Any],
    decode: dict[str, Any],
    disaggregation: dict[str, Any],
) -> PoolsRun:
    """Serve the trace on one prefill replica (deployment fields ``prefill``) and one decode
    replica (``decode``) of ``hardware``; the decode replica's KV capacity as the planner
    sizes a decode pool (:func:`hwsim.planner.disaggregated.decode_pool`: the memory left
    beside the weights and one step's workspace)."""
    from hwsim.inference.deployment import make_deployment
    from hwsim.planner.disaggregated import DisaggregatedCandidate
    from hwsim.planner.disaggregated_sim import kv_capacity_tokens, simulate_pools
    from hwsim.planner.spec import DisaggregationSpec, ServingSpec
    from hwsim.profiles.deployment import DeploymentSpec

    pre_spec, dec_spec = DeploymentSpec(**prefill), DeploymentSpec(**decode)
    cand = DisaggregatedCandidate(
        hardware=hardware,
        deployment=dec_spec,
        prefill_hardware=hardware,
        prefill_deployment=pre_spec,
    )
    dec = make_deployment(model, hardware, dec_spec)
    kv = kv_capacity_tokens(dec, min(dec_spec.max_num_seqs, dec_spec.max_num_batched_tokens))
    spec = DisaggregationSpec(**disaggregation)
    return simulate_pools(model, cand, 1, 1, kv, trace_requests(trace), ServingSpec(), spec)
