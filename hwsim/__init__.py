"""hwsim: analytic performance simulator and capacity planner for LLM inference.

Public API::

    import hwsim
    est = hwsim.estimate(model="llama-2-7b", hardware="a100-80gb-sxm", batch=1,
                         prompt_len=512, gen_len=128)
    est.latency.ttft_s, est.memory.kv_cache_bytes_per_token
    hwsim.kernel_time("h100-sxm", "gemm", m=4096, n=4096, k=4096, dtype="bf16").time_s
"""

from __future__ import annotations

from hwsim.context import context_sweep
from hwsim.errors import HwsimError, InfeasibleError, ProfileError, UnknownProfileError
from hwsim.estimate import estimate
from hwsim.kernels import kernel_time
from hwsim.planner.plan import plan, simulate
from hwsim.profiles.loader import load_hardware, load_model

__version__ = "0.1.0"

__all__ = [
    "HwsimError",
    "InfeasibleError",
    "ProfileError",
    "UnknownProfileError",
    "context_sweep",
    "estimate",
    "kernel_time",
    "load_hardware",
    "load_model",
    "plan",
    "simulate",
]
