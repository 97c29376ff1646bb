"""Launch artifacts for a plan: the engine command that realises a deployment (vLLM, SGLang,
TensorRT-LLM) and a Kubernetes manifest that runs its replicas (``hwsim plan --emit``).

- :mod:`hwsim.deploy.target`: a plan candidate (by rank) or a scenario's one deployment,
  resolved to a :class:`~hwsim.deploy.target.LaunchTarget` (checkpoint, vendor, replicas,
  longest sequence).
- :mod:`hwsim.deploy.engines`: each engine's flag table (flag -> where documented, engine
  version) and the builders mapping hwsim values to engine values.
- :mod:`hwsim.deploy.k8s`: Deployment + Service (+ ConfigMap for TensorRT-LLM).
- :mod:`hwsim.deploy.artifacts`: ``--emit`` parsing, file names, text, safe writing.
"""

from hwsim.deploy.artifacts import (
    EMIT_CHOICES,
    EmitRequest,
    check_out,
    for_stdout,
    launch_script,
    parse_emit,
    render,
    render_pools,
    write,
)
from hwsim.deploy.engines import ENGINES, EngineCommand, engine_command
from hwsim.deploy.k8s import manifest, manifest_documents
from hwsim.deploy.target import LaunchTarget, from_plan, from_scenario, pool_targets

__all__ = [
    "EMIT_CHOICES",
    "ENGINES",
    "EmitRequest",
    "EngineCommand",
    "LaunchTarget",
    "check_out",
    "engine_command",
    "for_stdout",
    "from_plan",
    "from_scenario",
    "launch_script",
    "manifest",
    "manifest_documents",
    "parse_emit",
    "pool_targets",
    "render",
    "render_pools",
    "write",
]
