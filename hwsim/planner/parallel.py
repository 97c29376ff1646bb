"""Evaluate candidates: in this process, in local worker processes, or on a Ray cluster.

Local processes are the default for large sweeps; Ray (optional extra) takes over when a
sweep outgrows one machine (``ray_address='auto'`` or ``'HOST:PORT'``).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

from hwsim.errors import HwsimError
from hwsim.planner.analytic import CandidateResult, Workload, evaluate
from hwsim.planner.spec import Candidate
from hwsim.profiles.scenario import SLO

PARALLEL_THRESHOLD = 8  # below this, process start-up costs more than it saves
# Without --workers, candidates are priced here until the rest would take longer than this on
# one core, and only then in a pool: a worker's caches (forwards, op prices) start from what
# this process held at the fork, so what candidates share is priced again in every worker.
# Measured 2026-12-03 on 2 cores (examples/chat-service.yaml, 60 and 240 candidates, warm):
# 2 workers took 1.6-2x the CPU of one process and saved 0-40% of the wall time.
POOL_AFTER_S = 1.0


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
    """Every candidate's result, in order. ``workers``: local processes (default: the cores,
    used only once the search is long enough to gain from them, :data:`POOL_AFTER_S`)."""
    args = [(model, c, work, slo, prices) for c in candidates]
    if ray_address:
        return _on_ray(args, ray_address, progress)
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if n_workers <= 1 or len(args) < PARALLEL_THRESHOLD:
        return _serial(args, len(args), progress)
    if workers is not None:  # asked for by name: all of it in the pool
        return _in_pool(args, n_workers, 0, len(args), progress)
    results = _serial(args, len(args), progress, stop_after_s=POOL_AFTER_S)
    rest = args[len(results) :]
    return (
        results + _in_pool(rest, n_workers, len(results), len(args), progress) if rest else results
    )


def run_jobs(jobs: list[tuple[Callable, tuple]], workers: int | None = None) -> list:
    """``[fn(*args) for fn, args in jobs]``, in order: independent, seeded jobs (the planner's
    simulator confirmations), in local processes where more than one is to run and more
    than one core is at hand (``workers``: the processes; default the cores, at most 8).
    Each job builds what it needs itself, so the pool adds only its start-up (a fork)."""
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if n_workers <= 1 or len(jobs) < 2:
        return [fn(*args) for fn, args in jobs]
    return map_in_pool(_run_job, list(jobs), n_workers)


def _run_job(fn: Callable, args: tuple):
    return fn(*args)


def _serial(args, total: int, progress, stop_after_s: float | None = None):
    """Evaluate ``args`` here, in order; with ``stop_after_s``, stop (returning what is done)
    once the remaining ones, at the mean time so far, would take longer than that."""
    out: list[CandidateResult] = []
    t0 = time.perf_counter()
    for i, a in enumerate(args):
        out.append(evaluate(*a))
        if progress:
            progress(i + 1, total)
        left = len(args) - i - 1
        if stop_after_s is None or i + 1 < PARALLEL_THRESHOLD or left < PARALLEL_THRESHOLD:
            continue
        if _projected_s(t0, i + 1, left) > stop_after_s:
            break
    return out


def _projected_s(t0: float, done: int, left: int) -> float:
    """Seconds the ``left`` candidates would take at the mean time of the ``done`` so far."""
    return (time.perf_counter() - t0) / done * left


def _in_pool(args, n_workers: int, done: int, total: int, progress) -> list[CandidateResult]:
    """Evaluate ``args`` in ``n_workers`` local processes, results in order (``done`` of
    ``total`` already reported to ``progress``)."""
    report = (lambda n: progress(done + n, total)) if progress else None
    return map_in_pool(evaluate, args, n_workers, report)


def map_in_pool(fn: Callable, args: list[tuple], n_workers: int, progress=None) -> list:
    """``[fn(*a) for a in args]`` in ``n_workers`` local processes, in order; ``progress(n)``
    after each of them finishes. Where processes fork, the workers inherit ``fn`` and
    ``args`` (and this process's warm caches) and nothing is pickled on the way in."""
    if not args:
        return []
    results: list = [None] * len(args)
    global _FORKED
    forked = multiprocessing.get_start_method() == "fork"
    _FORKED = (fn, args) if forked else None
    try:
        with ProcessPoolExecutor(max_workers=min(n_workers, len(args))) as pool:
            if forked:
                futures = {pool.submit(_call_forked, i): i for i in range(len(args))}
            else:
                futures = {pool.submit(fn, *a): i for i, a in enumerate(args)}
            for n, fut in enumerate(as_completed(futures), start=1):
                results[futures[fut]] = fut.result()
                if progress:
                    progress(n)
    finally:
        _FORKED = None
    return results


_FORKED: tuple[Callable, list[tuple]] | None = None  # set before a fork-started pool


def _call_forked(i: int):
    """Call ``i`` of the function and arguments the worker inherited when it was forked: the
    same objects the parent holds, so the caches keyed on them are warm."""
    assert _FORKED is not None
    fn, args = _FORKED
    return fn(*args[i])


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
