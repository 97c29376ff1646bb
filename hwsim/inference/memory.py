"""Device memory per GPU: weights, KV cache / recurrent state, activation workspace.

KV bytes per token = 2 * L * H_kv * d_h * bytes (formulas.md section 3); windowed layers hold
at most their window and state-space layers a fixed state (section 8). Pipeline stages hold
ceil(L / pp) layers at most; tensor parallelism splits weights and KV heads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from hwsim.inference.deployment import Deployment
from hwsim.inference.engine import PhaseCost
from hwsim.model.layers import layer_groups
from hwsim.model.ops import Op
from hwsim.model.params import count_params, norm_params


def weight_bytes_per_gpu(dep: Deployment) -> float:
    m, counts = dep.model, count_params(dep.model)
    layers = counts.layers * dep.stage_layer_fraction
    if dep.pp == 1:
        ends = counts.embedding + counts.lm_head + counts.other
    else:  # first stage holds the embedding, last the LM head (tied ones are duplicated)
        ends = max(counts.embedding, counts.lm_head or counts.embedding) + norm_params(m)
    return (layers + ends) / dep.tp * dep.weight.bytes_per_element


def kv_bytes_per_token_per_gpu(dep: Deployment) -> float:
    """Cache growth per held token, summed over this GPU's layers (before any window cap)."""
    total = sum(
        count * mixer.kv_bytes_per_token(dep.model, dep.kv, dep.tp)
        for mixer, _moe, count in layer_groups(dep.model)
    )
    return total * dep.stage_layer_fraction


def state_bytes_per_sequence_per_gpu(dep: Deployment) -> float:
    total = sum(
        count * mixer.state_bytes_per_sequence(dep.model, dep.tp)
        for mixer, _moe, count in layer_groups(dep.model)
    )
    return total * dep.stage_layer_fraction


def cache_bytes_per_sequence_per_gpu(dep: Deployment, context) -> np.ndarray:
    """KV + state one sequence holds at ``context`` tokens on the most loaded GPU."""
    context = np.asarray(context, dtype=float)
    total = sum(
        count * mixer.cache_bytes_per_sequence(dep.model, context, dep.kv, dep.tp)
        for mixer, _moe, count in layer_groups(dep.model)
    )
    return np.asarray(total, dtype=float) * dep.stage_layer_fraction


def held_bytes(op) -> np.ndarray:
    """Activation memory an op holds while it runs: its inputs plus outputs, unless the op
    states otherwise (attention kernels stream more through HBM than they hold)."""
    if "workspace_bytes" in op.meta:
        return np.asarray(op.meta["workspace_bytes"], dtype=float)
    return np.asarray(op.act_read_bytes + op.act_write_bytes, dtype=float)


def workspace_bytes(cost: PhaseCost) -> np.ndarray:
    """Transient activation memory of a priced forward pass: its largest op's held bytes."""
    return ops_workspace_bytes(t.op for t in cost.op_times)


def ops_workspace_bytes(ops: Iterable[Op]) -> np.ndarray:
    """Transient activation memory: the largest single op's held bytes (no pricing needed)."""
    per_op = [held_bytes(op) for op in ops]
    if all(b.ndim == 0 for b in per_op) and not any(math.isnan(b) for b in per_op):
        return np.float64(max(per_op))  # one point (a scalar call): no stacking
    return np.max(np.stack(np.broadcast_arrays(*per_op)), axis=0)
