"""hwsim: analytic performance simulator and capacity planner for LLM inference.

Public API::

    import hwsim
    est = hwsim.estimate(model="llama-2-7b", hardware="a100-80gb-sxm", batch=1,
                         prompt_len=512, gen_len=128)
    est.latency.ttft_s, est.memory.kv_cache_bytes_per_token
    hwsim.kernel_time("h100-sxm", "gemm", m=4096, n=4096, k=4096, dtype="bf16").time_s

The names below load on first use (PEP 562 module ``__getattr__``): ``import hwsim`` imports
no planner, serving simulator or matplotlib until one of them is asked for.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import TYPE_CHECKING

from hwsim.errors import HwsimError, InfeasibleError, ProfileError, UnknownProfileError
from hwsim.lean import lazy_names

try:  # the version lives in pyproject.toml only
    __version__ = _dist_version("hwsim")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"

# public name -> module that defines it
_LAZY = {
    "estimate": "hwsim.inference.estimate",
    "context_sweep": "hwsim.inference.context",
    "DeploymentSpec": "hwsim.profiles.deployment",
    "make_deployment": "hwsim.inference.deployment",
    "kernel_time": "hwsim.perf.ladder",
    "load_hardware": "hwsim.profiles.loader",
    "load_model": "hwsim.model.load",
    "plan": "hwsim.planner.plan",
    "simulate": "hwsim.planner.plan",
}

if TYPE_CHECKING:
    from hwsim.inference.context import context_sweep
    from hwsim.inference.deployment import make_deployment
    from hwsim.inference.estimate import estimate
    from hwsim.model.load import load_model
    from hwsim.perf.ladder import kernel_time
    from hwsim.planner.plan import plan, simulate
    from hwsim.profiles.deployment import DeploymentSpec
    from hwsim.profiles.loader import load_hardware


__getattr__, __dir__ = lazy_names(globals(), _LAZY)

__all__ = [
    "DeploymentSpec",
    "HwsimError",
    "InfeasibleError",
    "ProfileError",
    "UnknownProfileError",
    "__version__",
    "context_sweep",
    "estimate",
    "kernel_time",
    "load_hardware",
    "load_model",
    "make_deployment",
    "plan",
    "simulate",
]
