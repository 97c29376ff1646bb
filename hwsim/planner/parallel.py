"""Evaluate candidates: in this process, in local worker processes, or on a Ray cluster.

Local processes are the default for large sweeps; Ray (optional extra) takes over when a
sweep outgrows one machine (``ray_address='auto'`` or ``'HOST:PORT'``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from hwsim.errors import HwsimError
from hwsim.planner.analytic import CandidateResult, Workload, evaluate
from hwsim.planner.spec import Candidate
from hwsim.profiles.scenario import SLO

PARALLEL_THRESHOLD = 8  # below this, process start-up costs more than it saves


def evaluate_all(
    model,
    candidates: list[Candidate],
    work: Workload,
    slo: SLO,
    prices: dict[str, float],
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[CandidateResult]:
    args = [(model, c, work, slo, prices) for c in candidates]
    if ray_address:
        return _on_ray(args, ray_address, progress)
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if n_workers <= 1 or len(args) < PARALLEL_THRESHOLD:
        serial = []
        for i, a in enumerate(args):
            serial.append(evaluate(*a))
            if progress:
                progress(i + 1, len(args))
        return serial
    results: list[CandidateResult | None] = [None] * len(args)
    with ProcessPoolExecutor(max_workers=n_workers) as pool:
        futures = {pool.submit(evaluate, *a): i for i, a in enumerate(args)}
        for done, fut in enumerate(as_completed(futures), start=1):
            results[futures[fut]] = fut.result()
            if progress:
                progress(done, len(args))
    return [r for r in results if r is not None]


def _on_ray(args, address: str, progress) -> list[CandidateResult]:
    try:
        import ray
    except ImportError:
        raise HwsimError("--ray-address needs Ray: pip install 'hwsim[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    remote = ray.remote(evaluate)
    refs = [remote.remote(*a) for a in args]
    results = []
    for i, ref in enumerate(refs):
        results.append(ray.get(ref))
        if progress:
            progress(i + 1, len(refs))
    return results
