"""The sweeps: which shapes to measure on which device, and the loop that measures them.

``plan(device, quick)`` lists :class:`~validation.kernels.Case` s; ``run_suite`` checks each
kernel once against its reference, times it (:func:`validation.harness.time_kernel`) and
returns hwsim :class:`~hwsim.perf.measured.Measurement` rows, with a rich progress bar and ETA.
A case the device cannot run (a backend without GQA, out of memory, a failed check) is
skipped with its reason, never timed.

The CPU ``--quick`` sweep (158 shapes, one implementation each) gives every op class 36-64
shapes, enough for a 70/30 train/held-out split. With :data:`~validation.harness.QUICK`'s
adaptive repeats, ``hwsim calibrate --quick`` (measure and fit) takes about a minute on a
2-core CPU that other processes keep busy (48-64 s at load average 2-3.5), less on an idle one.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from hwsim.perf.measured import Measurement
from validation.harness import (
    QUICK,
    Device,
    InputPool,
    Timer,
    Timing,
    TimingPolicy,
    configure_threads,
    make_timer,
    time_kernel,
)

Ki, Mi = 2**10, 2**20


def triton_available() -> bool:
    """True where validation.triton_kernels imports (triton installed and a CUDA GPU)."""
    try:
        import validation.triton_kernels  # noqa: F401
    except ImportError:
        return False
    return True


def fp8_supported() -> bool:
    import torch

    if not torch.cuda.is_available() or not hasattr(torch, "float8_e4m3fn"):
        return False
    return torch.cuda.get_device_capability(0) >= (8, 9)


def _cases(kernel: str, variants: Iterable[str], grid: Iterable[dict]) -> list:
    from validation.kernels import Case

    grid = list(grid)
    return [Case(kernel, v, dict(p)) for v in variants for p in grid]


def _gemm_grid(dtypes, squares, weights, ms) -> list[dict]:
    grid = [dict(m=s, n=s, k=s, dtype=d) for d in dtypes for s in squares]
    grid += [dict(m=m, n=n, k=k, dtype=d) for d in dtypes for n, k in weights for m in ms]
    return grid


def _prefill_grid(dtypes, heads, seqs, batch=1) -> list[dict]:
    return [
        dict(batch=batch, heads=h, kv_heads=hk, seq_len=s, head_dim=d, causal=c, dtype=t)
        for t in dtypes
        for (h, hk, d) in heads
        for c in (True, False)
        for s in seqs
    ]


def _decode_grid(dtypes, configs, contexts) -> list[dict]:
    return [
        dict(batch=b, heads=h, kv_heads=hk, context_len=c, head_dim=d, dtype=t)
        for t in dtypes
        for (b, h, hk, d) in configs
        for c in contexts
    ]


NORM_VARIANTS = ("torch.rms_norm", "torch.layer_norm")


def _bandwidth(dtypes, copies, norms, norm_variants=NORM_VARIANTS) -> list:
    cases = _cases("copy", ["torch.copy"], [dict(bytes=b, dtype=d) for d in dtypes for b in copies])
    grid = [dict(tokens=t, hidden=h, dtype=d) for d in dtypes for h, t in norms]
    return cases + _cases("norm", norm_variants, grid)


def plan_cpu(quick: bool) -> list:
    dtypes = ("fp32", "bf16")
    if quick:
        gemm = _gemm_grid(
            dtypes,
            (128, 256, 512, 768, 1024),
            ((4096, 1024), (1024, 4096), (2048, 2048)),
            (1, 4, 16, 32, 64, 128, 256, 512),
        )
        prefill = _prefill_grid(dtypes, ((8, 8, 64), (8, 2, 128)), (128, 256, 512, 768, 1024))
        decode = _decode_grid(
            dtypes, ((1, 8, 8, 128), (4, 16, 2, 128)), (256, 512, 1024, 2048, 4096, 8192)
        )
        copies = (256 * Ki, Mi, 2 * Mi, 4 * Mi, 16 * Mi, 64 * Mi)
        norms = list(itertools.product((2048, 4096), (1, 16, 64, 128, 512, 1024)))
        attn_variants = ["torch.sdpa"]
        # The fit keeps the fastest variant of each shape, and on the CPU that is always the
        # fused layer_norm (torch's CPU RMSNorm is not fused: 2-9x slower at every shape):
        # timing rms_norm too would cost an eighth of the sweep for no measurement.
        norm_variants: tuple[str, ...] = ("torch.layer_norm",)
    else:
        gemm = _gemm_grid(
            dtypes,
            (64, 128, 256, 512, 1024, 1536, 2048),
            ((4096, 1024), (1024, 4096), (2048, 2048), (4096, 4096)),
            (1, 4, 16, 64, 256, 1024, 2048),
        )
        prefill = _prefill_grid(
            dtypes, ((8, 8, 64), (8, 2, 128), (16, 16, 128)), (128, 256, 512, 1024, 2048)
        )
        decode = _decode_grid(
            dtypes,
            ((1, 8, 8, 128), (4, 16, 2, 128), (8, 32, 8, 64)),
            (256, 1024, 2048, 4096, 8192, 16384),
        )
        copies = (64 * Ki, 256 * Ki, Mi, 4 * Mi, 16 * Mi, 64 * Mi, 256 * Mi)
        norms = list(itertools.product((1024, 2048, 4096, 8192), (1, 4, 16, 64, 256, 1024)))
        attn_variants = ["torch.sdpa", "torch.sdpa.math", "torch.sdpa.flash"]
        norm_variants = NORM_VARIANTS
    return [
        *_cases("gemm", ["torch.mm"], gemm),
        *_cases("attention_prefill", attn_variants, prefill),
        *_cases("attention_decode", attn_variants, decode),
        *_bandwidth(dtypes, copies, norms, norm_variants),
    ]


def plan_cuda(quick: bool) -> list:
    dtypes = ["bf16", "fp16", "tf32"] + (["fp8"] if fp8_supported() else [])
    weights = ((4096, 4096), (14336, 4096), (4096, 14336), (8192, 8192))
    if quick:
        gemm = _gemm_grid(
            dtypes, (512, 1024, 2048, 4096, 8192), weights[:2], (1, 16, 128, 1024, 8192)
        )
        heads, seqs = ((32, 8, 128), (16, 16, 64)), (512, 2048, 8192)
        decode_cfg, contexts = ((1, 32, 8, 128), (32, 32, 8, 128)), (1024, 4096, 16384, 65536)
        copies = (Mi, 16 * Mi, 256 * Mi, 1024 * Mi)
        norms = list(itertools.product((4096, 8192), (1, 64, 1024, 16384)))
        attn_variants = ["torch.sdpa"]
    else:
        gemm = _gemm_grid(
            dtypes,
            (256, 512, 1024, 2048, 4096, 8192, 16384),
            weights,
            (1, 4, 16, 64, 256, 1024, 4096, 16384),
        )
        heads, seqs = (
            ((32, 8, 128), (32, 32, 128), (16, 16, 64)),
            (256, 1024, 2048, 4096, 8192, 16384),
        )
        decode_cfg = ((1, 32, 8, 128), (8, 32, 8, 128), (64, 32, 8, 128), (16, 32, 32, 64))
        contexts = (512, 1024, 4096, 16384, 65536)
        copies = (256 * Ki, Mi, 4 * Mi, 16 * Mi, 64 * Mi, 256 * Mi, 1024 * Mi, 4096 * Mi)
        norms = list(itertools.product((2048, 4096, 8192), (1, 16, 256, 1024, 4096, 16384)))
        attn_variants = ["torch.sdpa", *(f"torch.sdpa.{b}" for b in ("math", "efficient", "flash"))]
    half = ("bf16", "fp16")
    prefill = _prefill_grid(half, heads, seqs)
    decode = _decode_grid(half, decode_cfg, contexts)
    cases = [
        *_cases("gemm", ["torch.mm"], gemm),
        *_cases("attention_prefill", attn_variants, prefill),
        *_cases("attention_decode", attn_variants, decode),
        *_bandwidth(half, copies, norms),
    ]
    if triton_available():
        tri_gemm = [p for p in gemm if p["dtype"] in half]
        cases += _cases("gemm", ["triton.matmul"], tri_gemm)
        cases += _cases("attention_prefill", ["triton.attention"], prefill)
    return cases


def plan(device: Device, quick: bool) -> list:
    return plan_cuda(quick) if device.kind == "cuda" else plan_cpu(quick)


@dataclass
class SuiteResult:
    measurements: list[Measurement]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    threads: int = 1
    elapsed_s: float = 0.0
    load_before: float | None = None
    load_after: float | None = None


def measure_case(
    case, device: Device, pool: InputPool, timer: Timer, policy: TimingPolicy, check: bool = True
) -> Timing:
    """Check one case against its reference (once), then time it: one round's samples."""
    from validation.kernels import prepare

    prepared = prepare(case, device, pool)
    with prepared.context():
        if check:
            prepared.check()
        return time_kernel(prepared.step, timer, policy)


def run_suite(
    cases: list,
    device: Device,
    *,
    policy: TimingPolicy = QUICK,
    pool_bytes: int,
    timer: Timer | None = None,
    progress: bool = True,
    console=None,
    deadline_s: float | None = None,
) -> SuiteResult:
    """Measure every case in ``policy.rounds`` interleaved passes; pool each case's samples.

    An adaptive policy (``target_ci``) measures every case in ``policy.required_rounds``
    passes and in the later ones only while its pooled median is not yet stable
    (:meth:`~validation.harness.TimingPolicy.stable`) and the suite is younger than
    ``policy.optional_rounds_until_s``; a shift between rounds (load from another process in
    one of them) widens the pooled spread and so earns the case another pass.

    A case that cannot run (failed check, unsupported backend, out of memory, a kernel that
    does not compile) is skipped with its reason and not retried in later rounds. With
    ``deadline_s`` (a ``time.perf_counter()`` value) no new case starts after the deadline:
    cases with samples from earlier rounds keep them, the rest are skipped as "deadline".
    """
    threads = configure_threads(device)
    timer = timer or make_timer(device)
    pool = InputPool(device.torch_device, pool_bytes)
    one_round = policy.per_round()
    samples: dict[int, list[float]] = {i: [] for i in range(len(cases))}
    inner: dict[int, int] = {}
    result = SuiteResult([], threads=threads, load_before=_load())
    start = time.perf_counter()
    with _progress(progress, console) as bar:
        task = bar.add_task("measuring", total=len(cases) * policy.rounds)
        for r in range(policy.rounds):
            for i, case in enumerate(cases):
                if i not in samples or (
                    r >= policy.required_rounds
                    and not _wants_more(policy, samples[i], time.perf_counter() - start)
                ):
                    bar.advance(task)
                    continue
                if deadline_s is not None and time.perf_counter() > deadline_s:
                    if not samples[i]:
                        result.skipped.append((case.label(), "deadline: not measured"))
                        del samples[i]
                    bar.advance(task)
                    continue
                bar.update(task, description=f"{r + 1}/{policy.rounds} {case.label()[:52]:52}")
                try:
                    timing = measure_case(case, device, pool, timer, one_round, check=r == 0)
                except Exception as exc:  # noqa: BLE001 - any failure skips the case, with why
                    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    result.skipped.append((case.label(), reason[:200]))
                    del samples[i]
                    _free_device_memory(device)
                else:
                    samples[i].extend(timing.samples_s)
                    inner[i] = max(inner.get(i, 1), timing.inner)
                bar.advance(task)
        bar.update(task, description="done")
    for i, values in samples.items():
        t = Timing(tuple(values), inner[i])
        result.measurements.append(
            Measurement(
                cases[i].kernel,
                cases[i].variant,
                dict(cases[i].params),
                t.median_s,
                t.p10_s,
                t.p90_s,
                t.iqr_s,
                t.repeats,
                t.inner,
                device=device.slug,
            )
        )
    result.measurements += _all_reduce(device, policy)
    result.elapsed_s = time.perf_counter() - start
    result.load_after = _load()
    return result


def _wants_more(policy: TimingPolicy, samples: list[float], elapsed_s: float) -> bool:
    """Whether a case that had its required rounds gets an optional one: its pooled median is
    not yet stable and the suite is still inside ``policy.optional_rounds_until_s``."""
    late = (
        policy.optional_rounds_until_s is not None and elapsed_s >= policy.optional_rounds_until_s
    )
    return not late and not policy.stable(samples)


def _load() -> float | None:
    """1-minute load average (other processes competing for the CPU make timings noisy)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return None


def _free_device_memory(device: Device) -> None:
    if device.kind == "cuda":
        import torch

        torch.cuda.empty_cache()


def _all_reduce(device: Device, policy: TimingPolicy) -> list[Measurement]:
    """All-reduce over every visible GPU when there are several; nothing otherwise."""
    if device.kind != "cuda":
        return []
    import numpy as np
    import torch

    from validation.kernels import all_reduce_timings

    world = torch.cuda.device_count()
    timings = all_reduce_timings([Mi, 16 * Mi, 256 * Mi], repeats=max(10, policy.min_repeats))
    rows = []
    for size, samples in timings.items():
        q10, q25, q50, q75, q90 = np.percentile(samples, [10, 25, 50, 75, 90])
        rows.append(
            Measurement(
                "all_reduce",
                "torch.nccl",
                {"bytes": size, "ranks": world},
                float(q50),
                float(q10),
                float(q90),
                float(q75 - q25),
                len(samples),
                1,
                device=device.slug,
            )
        )
    return rows


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def update(self, *args, **kwargs):
        pass

    def advance(self, *args, **kwargs):
        pass


def _progress(enabled: bool, console=None):
    if not enabled:
        return _NoProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
