"""A Kubernetes manifest for a plan: a Deployment of ``replicas`` pods, each requesting the
GPUs of one replica (``nvidia.com/gpu`` or ``amd.com/gpu``, the device plugins' extended
resources) and running the engine's command, ready when the engine's health endpoint answers;
a Service in front; for TensorRT-LLM a ConfigMap holding its ``--extra_llm_api_options``.

Kinds and fields: Kubernetes apps/v1 Deployment and core/v1 Service, ConfigMap
(kubernetes.io/docs/reference/kubernetes-api/); GPU requests per the NVIDIA and AMD device
plugins (k8s-device-plugin: ``nvidia.com/gpu``; ROCm/k8s-device-plugin: ``amd.com/gpu``);
extended resources are requested in ``limits`` (``requests``, if given, must equal them).
"""

from __future__ import annotations

from typing import Any

import yaml

from hwsim.deploy.engines import TRTLLM_EXTRA_MOUNT, EngineCommand, engine_command
from hwsim.deploy.target import LaunchTarget


class _Dumper(yaml.SafeDumper):
    """Plain YAML: a repeated mapping is written out again, never as an &anchor / *alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """Multi-line strings (a ConfigMap's file) as literal blocks, as they read in the file."""
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


SHM_SIZE = "16Gi"  # /dev/shm for NCCL/RCCL between tensor-parallel workers in one pod


def pod_command(target: LaunchTarget, engine: str) -> EngineCommand:
    """The engine's command as the pod runs it (TensorRT-LLM's options from the ConfigMap)."""
    if engine == "trtllm":
        return engine_command(engine, target, extra_options_path=TRTLLM_EXTRA_MOUNT)
    return engine_command(engine, target)


def manifest_documents(target: LaunchTarget, engine: str) -> list[dict[str, Any]]:
    """The manifest's objects, in apply order."""
    cmd = pod_command(target, engine)
    e = cmd.engine
    name = target.name
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "hwsim"}
    selector = {"app.kubernetes.io/name": name}
    gpus = {target.gpu_resource: target.gpus_per_replica}
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}
    ]
    docs: list[dict[str, Any]] = []
    if cmd.extra_options is not None:
        config_name = f"{name}-extra-llm-api-options"[:63]
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": config_name, "labels": labels},
                "data": {
                    TRTLLM_EXTRA_MOUNT.rsplit("/", 1)[1]: yaml.dump(
                        cmd.extra_options, Dumper=_Dumper, sort_keys=False
                    )
                },
            }
        )
        mounts.append({"name": "extra-options", "mountPath": TRTLLM_EXTRA_MOUNT.rsplit("/", 1)[0]})
        volumes.append({"name": "extra-options", "configMap": {"name": config_name}})
    container = {
        "name": e.name,
        "image": e.images.get(target.vendor, next(iter(e.images.values()))),
        "command": list(e.entry),
        "args": cmd.args,
        "env": [
            {
                "name": "HF_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": "hf-token", "key": "token", "optional": True}
                },
            }
        ],
        "ports": [{"name": "http", "containerPort": e.port}],
        "resources": {"limits": dict(gpus), "requests": dict(gpus)},
        "readinessProbe": {
            "httpGet": {"path": e.health_path, "port": "http"},
            "initialDelaySeconds": 60,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "startupProbe": {
            "httpGet": {"path": e.health_path, "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 180,  # up to 30 minutes to download and load the weights
        },
        "volumeMounts": mounts,
    }
    docs.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": target.replicas,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [container], "volumes": volumes},
                },
            },
        }
    )
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": e.port, "targetPort": "http"}],
            },
        }
    )
    return docs


def manifest(target: LaunchTarget, engine: str = "vllm") -> str:
    """The manifest as YAML, led by comments: which plan candidate, which engine, the notes."""
    cmd = pod_command(target, engine)
    head = [
        f"# {target.summary}",
        f"# {target.label}",
        f"# {target.replicas} replica(s) x {target.gpus_per_replica} "
        f"{target.gpu_resource} each; engine {cmd.engine.title} "
        f"(readiness: GET {cmd.engine.health_path}, {cmd.engine.health_source})",
        f"# image {cmd.engine.images.get(target.vendor, '')}: pin the version you validated",
        *(f"# note: {n}" for n in cmd.notes),
        "# generated by `hwsim plan --emit k8s`",
    ]
    body = yaml.dump_all(manifest_documents(target, engine), Dumper=_Dumper, sort_keys=False)
    return "\n".join(head) + "\n" + body
