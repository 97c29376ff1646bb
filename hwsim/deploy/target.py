"""What a launch artifact realises: one deployment of a plan, resolved to the numbers an
engine's flags take (model checkpoint, device vendor, replicas, longest sequence).

:func:`from_plan` picks a candidate of a :class:`~hwsim.planner.plan.PlanResult` by rank
among the feasible ones (1: the recommendation); :func:`from_scenario` takes the one
deployment of a scenario without ``traffic:`` (replicas = its ``dp``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsim.errors import HwsimError
from hwsim.planner.analytic import CandidateResult
from hwsim.planner.plan import PlanResult
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.hardware import HardwareProfile
from hwsim.profiles.loader import load_hardware
from hwsim.profiles.model import ModelProfile
from hwsim.profiles.scenario import Scenario

# A shipped profile's source starts with the Hugging Face repository its numbers come from:
# "meta-llama/Llama-3.1-8B config.json (...)".
HF_REPO_IN_SOURCE = re.compile(r"^\s*([A-Za-z0-9][\w.-]*/[\w.-]+)\s+config\.json\b")
VENDOR_GPU_RESOURCE = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}
SET_MODEL = "set MODEL to your checkpoint"


@dataclass(frozen=True)
class LaunchTarget:
    """One replica's deployment plus how many replicas run: everything the emitters read."""

    name: str  # a Kubernetes-safe name (DNS-1123 label)
    model: ModelProfile
    model_id: str  # what the engine loads: a Hugging Face repo id or a local checkpoint path
    model_id_known: bool  # False: the profile id stands in; the artifact says to set MODEL
    hardware: HardwareProfile
    spec: DeploymentSpec
    replicas: int
    max_model_len: int
    weights_bytes_per_gpu: float
    label: str  # which plan candidate this is, in words
    summary: str  # the plan's recommendation sentence (or the scenario's deployment)
    notes: list[str] = field(default_factory=list)
    speculative: Any = None  # hwsim.planner.spec.SpeculativeSpec of the candidate, if any
    ep: int = 1  # expert-parallel degree of the candidate (its replica: ep x pp GPUs)
    pool: str | None = None  # "prefill" or "decode": one pool of a disaggregated plan

    @property
    def gpus_per_replica(self) -> int:
        """GPUs of one replica: an EP group's ep x pp, else the deployment's tp x pp."""
        return self.ep * self.spec.pp if self.ep > 1 else self.spec.gpus_per_replica

    @property
    def vendor(self) -> str:
        return self.hardware.vendor.lower()

    @property
    def gpu_resource(self) -> str:
        """The Kubernetes extended resource a pod requests for this device."""
        try:
            return VENDOR_GPU_RESOURCE[self.vendor]
        except KeyError:
            raise HwsimError(
                f"launch artifacts target NVIDIA and AMD GPUs; {self.hardware.id} is a "
                f"{self.hardware.vendor} {self.hardware.kind}"
            ) from None

    @property
    def devices_per_node(self) -> int:
        return int(self.hardware.interconnect.devices_per_node.value)

    @property
    def trtllm_free_memory_fraction(self) -> float:
        """TensorRT-LLM sizes its KV cache as a share of the memory left *after* the weights
        (``free_gpu_memory_fraction``); hwsim's ``memory_utilization`` is a share of the whole
        device for weights and cache. Same cache: (u x C - W) / (C - W), rounded down."""
        cap = self.hardware.capacity_bytes
        weights = self.weights_bytes_per_gpu
        frac = (self.spec.memory_utilization * cap - weights) / max(cap - weights, 1.0)
        return max(0.01, min(math.floor(frac * 100) / 100, 0.99))


def model_checkpoint(ref: str, model: ModelProfile) -> tuple[str, bool]:
    """The checkpoint an engine should load for the scenario's model reference: the folder of
    a Hugging Face ``config.json`` given by path, the repository a shipped profile's source
    names, else the profile id (``False``: the user must say where the weights are)."""
    if ref.endswith(".json") and Path(ref).name == "config.json":
        return str(Path(ref).parent), True
    match = HF_REPO_IN_SOURCE.match(model.source)
    if match:
        return match.group(1), True
    return model.id, False


def k8s_name(*candidates: str | None) -> str:
    """The first candidate made into a DNS-1123 label (lowercase, digits, '-', <= 63)."""
    for text in candidates:
        if not text:
            continue
        name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
        if name:
            return name
    return "hwsim-llm"


def _max_model_len(
    model: ModelProfile, spec: DeploymentSpec, kv_tokens: float, notes: list[str]
) -> int:
    """The longest sequence to configure: the model's context, cut to what one replica's KV
    cache holds (an engine refuses to start otherwise) and, without chunked prefill, to the
    batched-token budget (a prompt must fit one iteration)."""
    length = model.max_position_embeddings
    if math.isfinite(kv_tokens) and kv_tokens < length:
        length = max(int(kv_tokens), 1)
        notes.append(
            f"max model length {length:,} tokens: what one replica's KV cache holds "
            f"(the model allows {model.max_position_embeddings:,})"
        )
    if not spec.chunked_prefill and spec.max_num_batched_tokens < length:
        length = spec.max_num_batched_tokens
        notes.append(
            f"max model length {length:,} tokens: without chunked prefill a prompt must fit "
            "one iteration's batched-token budget"
        )
    return length


def from_plan(result: PlanResult, rank: int = 1) -> LaunchTarget:
    """The feasible candidate at ``rank`` (1 = cheapest, the recommendation)."""
    n = len(result.feasible)
    chosen: CandidateResult = _ranked(result, rank)
    sc = result.scenario
    from hwsim.model.load import load_model

    model = load_model(sc.model)
    spec = chosen.candidate.deployment
    notes: list[str] = []
    length = _max_model_len(model, spec, chosen.kv_capacity_tokens, notes)
    longest = result.workload.longest_tokens
    if longest is not None and longest > length:
        notes.append(
            f"the longest sampled request ({longest:,.0f} tokens) exceeds the max model "
            "length; such requests will be rejected"
        )
    model_id, known = model_checkpoint(sc.model, model)
    summary = (
        result.recommendation_sentence()
        if rank == 1
        else (
            f"Candidate {rank} of {n}: {chosen.replicas} replica(s) on {chosen.candidate.hardware}"
            f", {chosen.gpus} GPUs, ${chosen.cost_per_hour_usd:,.2f}/hour."
        )
    )
    return LaunchTarget(
        name=k8s_name(sc.name, model.id),
        model=model,
        model_id=model_id,
        model_id_known=known,
        hardware=load_hardware(chosen.candidate.hardware),
        spec=spec,
        replicas=chosen.replicas,
        max_model_len=length,
        weights_bytes_per_gpu=chosen.weights_bytes,
        label=f"plan rank {rank} of {n} feasible: {chosen.candidate.label}",
        summary=summary,
        notes=notes,
        speculative=chosen.candidate.speculative,
        ep=chosen.candidate.ep,
    )


def pool_targets(result: PlanResult, rank: int = 1) -> tuple[LaunchTarget, LaunchTarget]:
    """The prefill pool and the decode pool of the disaggregated candidate at ``rank``: each
    pool's device, layout and replica count; every instance keeps the whole max model
    length (a prefill instance holds the prompt's cache until the decode instance pulls it)."""
    from hwsim.inference.deployment import make_deployment
    from hwsim.inference.memory import weight_bytes_per_gpu
    from hwsim.model.load import load_model
    from hwsim.planner.disaggregated import DisaggregatedCandidate, DisaggregatedResult
    from hwsim.planner.disaggregated_sim import kv_capacity_tokens

    chosen = _ranked(result, rank)
    if not isinstance(chosen, DisaggregatedResult):
        raise HwsimError(f"--rank {rank} is not a disaggregated candidate")
    c = chosen.candidate
    assert isinstance(c, DisaggregatedCandidate)
    sc = result.scenario
    model = load_model(sc.model)
    model_id, known = model_checkpoint(sc.model, model)
    n = len(result.feasible)
    summary = (
        result.recommendation_sentence()
        if rank == 1
        else f"Candidate {rank} of {n}: {c.label}, ${chosen.cost_per_hour_usd:,.2f}/hour."
    )
    proxy = (
        "requests go through a proxy that sends each one to a prefill instance (max_tokens 1) "
        "and then to a decode instance, which pulls the prompt's KV over NIXL (vLLM's "
        "tests/v1/kv_connector/nixl_integration/toy_proxy_server.py, "
        "docs/features/nixl_connector_usage.md); NixlConnector needs vLLM's V1 engine and "
        "the nixl package (pip install nixl)"
    )
    pools = []
    for pool, hardware, spec, replicas in (
        ("prefill", c.prefill_hardware, c.prefill_deployment, chosen.prefill_replicas),
        ("decode", c.hardware, c.deployment, chosen.decode_replicas),
    ):
        notes = [proxy]
        dep = make_deployment(model, hardware, spec)
        kv_tokens = kv_capacity_tokens(dep, spec.max_num_batched_tokens)
        length = _max_model_len(model, spec, kv_tokens, notes)
        pools.append(
            LaunchTarget(
                name=k8s_name(sc.name, model.id) + f"-{pool}",
                model=model,
                model_id=model_id,
                model_id_known=known,
                hardware=load_hardware(hardware),
                spec=spec,
                replicas=replicas,
                max_model_len=length,
                weights_bytes_per_gpu=weight_bytes_per_gpu(dep),
                label=f"plan rank {rank} of {n} feasible, {pool} pool: {c.label}",
                summary=summary,
                notes=notes,
                pool=pool,
            )
        )
    return pools[0], pools[1]


def _ranked(result: PlanResult, rank: int) -> CandidateResult:
    n = len(result.feasible)
    if rank < 1 or rank > n:
        raise HwsimError(
            f"--rank {rank}: the plan has {n} feasible candidate(s); choose 1 to {n}"
            if n
            else "no candidate meets the SLOs; nothing to emit"
        )
    return result.feasible[rank - 1]


def from_scenario(sc: Scenario, rank: int = 1) -> LaunchTarget:
    """A scenario without ``traffic:``: its one deployment, ``dp`` replicas."""
    if rank != 1:
        raise HwsimError(
            f"--rank {rank}: a scenario without 'traffic:' has one deployment; only --rank 1"
        )
    from hwsim.inference.deployment import make_deployment
    from hwsim.inference.memory import weight_bytes_per_gpu
    from hwsim.planner.plan import evaluate_single
    from hwsim.planner.spec import Candidate

    dep = make_deployment(sc.model, sc.hardware, sc.deployment)
    probe = evaluate_single(sc, dep, Candidate(dep.hardware.id, sc.deployment))
    notes: list[str] = []
    length = _max_model_len(dep.model, sc.deployment, probe.kv_capacity_tokens, notes)
    model_id, known = model_checkpoint(sc.model, dep.model)
    spec = sc.deployment
    return LaunchTarget(
        name=k8s_name(sc.name, dep.model.id),
        model=dep.model,
        model_id=model_id,
        model_id_known=known,
        hardware=dep.hardware,
        spec=spec,
        replicas=spec.dp,
        max_model_len=length,
        weights_bytes_per_gpu=float(weight_bytes_per_gpu(dep)),
        label=f"scenario deployment: {dep.hardware.id} {spec.label}, {spec.dp} replica(s)",
        summary=(
            f"{spec.dp} replica(s) of {dep.model.id} on {dep.hardware.id} "
            f"(tp={spec.tp}, pp={spec.pp}): {spec.gpus} GPUs."
        ),
        notes=notes,
    )
