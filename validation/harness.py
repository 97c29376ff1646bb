"""Timing harness: device choice, clocks, warm-up, repeats, rotated random inputs, checks.

Rules (STYLE.md "what to avoid"): never wall-clock asynchronous device work (CUDA is timed
with events, and the end event is synchronised before it is read); never a single sample
(median and spread over many); never zeros (inputs are ``randn``); never a hot cache (inputs
rotate over a pool larger than the last-level cache); never a broken kernel (its output is
checked against a float64 reference once before it is timed).

Clocks are injected: :class:`WallTimer` takes any ``clock()`` returning seconds and
:class:`EventTimer` any event factory with ``record`` / ``synchronize`` / ``elapsed_time``
(milliseconds, as ``torch.cuda.Event``), so tests drive both with fake clocks.
"""

from __future__ import annotations

import math
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from hwsim.errors import HwsimError

DEFAULT_LLC_BYTES = 32 * 2**20
"""Last-level cache assumed when the hardware profile gives no ``on_chip.l2_bytes``."""


class KernelCheckError(HwsimError):
    """A kernel's output disagrees with its float64 reference: it is reported, not timed."""


# -- devices ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Device:
    kind: Literal["cpu", "cuda"]
    name: str
    index: int = 0

    @property
    def slug(self) -> str:
        """Directory key: ``cpu-amd-epyc``, ``cuda-nvidia-h100-80gb-hbm3``."""
        return f"{self.kind}-{slugify(self.name)}"

    @property
    def torch_device(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def select_device(requested: str = "auto") -> Device:
    """'auto' picks CUDA when torch sees a GPU, else the CPU; 'cuda' without one is an error."""
    import torch

    if requested not in ("auto", "cpu", "cuda"):
        raise HwsimError(f"unknown device {requested!r}; allowed: auto, cpu, cuda")
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise HwsimError("--device cuda: torch sees no CUDA device (CPU-only torch build?)")
    if requested == "cuda" or (requested == "auto" and has_cuda):
        return Device("cuda", torch.cuda.get_device_name(0), 0)
    return Device("cpu", cpu_model_name())


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(
                (
                    topo.joinpath("physical_package_id").read_text().strip(),
                    topo.joinpath("core_id").read_text().strip(),
                )
            )
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def configure_threads(device: Device) -> int:
    """On the CPU use one torch thread per physical core; return the thread count used."""
    import torch

    if device.kind == "cpu":
        torch.set_num_threads(physical_cores())
    return torch.get_num_threads()


# -- clocks and timers -----------------------------------------------------------------------
class Timer(Protocol):
    def time(self, step: Callable[[], Any], calls: int) -> float:
        """Seconds taken by ``calls`` back-to-back calls of ``step``."""


class WallTimer:
    """Host clock (``time.perf_counter`` by default) with a synchronise before each reading."""

    def __init__(
        self,
        clock: Callable[[], float] = time.perf_counter,
        synchronize: Callable[[], Any] | None = None,
    ):
        self.clock = clock
        self.synchronize = synchronize or (lambda: None)

    def time(self, step: Callable[[], Any], calls: int) -> float:
        self.synchronize()
        start = self.clock()
        for _ in range(calls):
            step()
        self.synchronize()
        return self.clock() - start


class EventTimer:
    """Device events: record start, run, record end, synchronise the end event, read the gap.

    ``event_factory()`` returns objects with ``record()``, ``synchronize()`` and
    ``elapsed_time(end) -> milliseconds`` (``lambda: torch.cuda.Event(enable_timing=True)``).
    """

    def __init__(self, event_factory: Callable[[], Any]):
        self.event_factory = event_factory

    def time(self, step: Callable[[], Any], calls: int) -> float:
        start, end = self.event_factory(), self.event_factory()
        start.record()
        for _ in range(calls):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


class GraphReplayTimer:
    """Device time only: ``calls`` back-to-back calls are captured once into a CUDA graph and
    every reading is one replay between device events, so the host's per-call dispatch (what
    eager timing measures for a small kernel) is not in it, as in an engine's graph replay.

    ``capture(step, calls)`` records the calls and returns the replay
    (:func:`torch_graph_capture`); ``event_factory`` as :class:`EventTimer`. The captured calls
    keep their rotated inputs (each call takes its slot at capture), and only the current
    step's graphs are held (a new step frees the last one's)."""

    def __init__(
        self,
        event_factory: Callable[[], Any],
        capture: Callable[[Callable[[], Any], int], Callable[[], Any]],
    ):
        self.event_factory = event_factory
        self.capture = capture
        self._step: Callable[[], Any] | None = None
        self._replays: dict[int, Callable[[], Any]] = {}

    def time(self, step: Callable[[], Any], calls: int) -> float:
        if step is not self._step:
            self._step, self._replays = step, {}
        replay = self._replays.get(calls)
        if replay is None:
            replay = self._replays[calls] = self.capture(step, calls)
        start, end = self.event_factory(), self.event_factory()
        start.record()
        replay()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


def torch_graph_capture(step: Callable[[], Any], calls: int) -> Callable[[], Any]:
    """Capture ``calls`` calls of ``step`` into a ``torch.cuda.CUDAGraph`` after a warm-up on
    a side stream (as ``torch.cuda.graph`` requires); return its ``replay``."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            step()
    return graph.replay


TIMINGS = ("events", "graph")
"""``events``: eager calls between device events (host dispatch included where it is longer
than the kernel); ``graph``: :class:`GraphReplayTimer`, device time only (CUDA)."""


def make_timer(device: Device, timing: str = "events") -> Timer:
    if timing not in TIMINGS:
        raise HwsimError(f"timing {timing!r}: allowed {', '.join(TIMINGS)}")
    if timing == "graph" and device.kind != "cuda":
        raise HwsimError(f"graph timing replays CUDA graphs; {device.slug} is not a CUDA device")
    if device.kind == "cuda":
        import torch

        events = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731
        if timing == "graph":
            return GraphReplayTimer(events, torch_graph_capture)
        return EventTimer(events)
    return WallTimer()


# -- timing ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimingPolicy:
    """How long to warm up and sample one shape.

    A sample times ``inner`` back-to-back calls so that it lasts at least ``min_sample_s``
    (clock resolution and per-sample overhead stay small). Samples are taken until the timed
    calls have used ``budget_s``, within [min_repeats, max_repeats]. The budget counts timed
    seconds, not the warm-up's guess of them, and a shape whose calls turn out far slower than
    the warm-up said (another process's load) stops at :data:`OVERRUN` times it even short of
    ``min_repeats`` (never under :data:`MIN_SAMPLES`). With ``target_ci`` > 0 the
    sampling is adaptive: it also stops, once ``min_repeats`` samples are in, as soon as the
    median is stable, its relative confidence half-width (:func:`median_rel_ci`) at or below
    ``target_ci``; ``budget_s`` is then the cap on a noisy shape.

    The samples are taken in ``rounds`` interleaved passes over the whole suite; an adaptive
    policy measures a shape in ``min_rounds`` of them at least and in the rest only while its
    pooled median is not yet stable and, with ``optional_rounds_until_s``, only while the
    suite has run for less than that many seconds (on a loaded machine the extra samples cost
    the most and a shift in the load biases them all alike).
    """

    warmup_calls: int = 2
    warmup_s: float = 0.02
    min_sample_s: float = 1e-3
    budget_s: float = 0.24
    min_repeats: int = 9
    max_repeats: int = 120
    max_inner: int = 1000
    rounds: int = 3
    target_ci: float = 0.0
    min_rounds: int | None = None
    optional_rounds_until_s: float | None = None

    @property
    def adaptive(self) -> bool:
        return self.target_ci > 0

    @property
    def required_rounds(self) -> int:
        """Rounds every shape is measured in (all of them unless adaptive)."""
        if not self.adaptive or self.min_rounds is None:
            return self.rounds
        return max(1, min(self.rounds, self.min_rounds))

    def per_round(self) -> TimingPolicy:
        """The share of one of ``rounds`` passes over the whole suite. Interleaving the
        samples of a shape over the suite's duration keeps a burst of load from another
        process (a shared machine) from owning all of them. The minimum count is split over
        the rounds every shape gets, the budget and the maximum over all of them."""
        return replace(
            self,
            budget_s=self.budget_s / self.rounds,
            min_repeats=-(-self.min_repeats // self.required_rounds),
            max_repeats=-(-self.max_repeats // self.rounds),
            rounds=1,
            min_rounds=None,
            optional_rounds_until_s=None,
        )

    def stable(self, samples: Sequence[float]) -> bool:
        """True when an adaptive policy may stop sampling: at least ``min_repeats`` samples
        whose median is known to within ``target_ci``."""
        return (
            self.adaptive
            and len(samples) >= self.min_repeats
            and median_rel_ci(samples) <= self.target_ci
        )


QUICK = TimingPolicy(
    warmup_s=0.01,
    budget_s=0.24,
    min_repeats=10,
    max_repeats=120,
    rounds=3,
    target_ci=0.02,
    min_rounds=2,
    optional_rounds_until_s=40.0,
)
"""The ``--quick`` sweep: adaptive, every shape in 2 interleaved rounds and a third only while
its median is not known to 2% (and the sweep is under 40 s old); at most 0.08 s of timed calls
per shape and round (the fixed sweep's budget: a noisy shape gets as many samples as before)."""

OVERRUN = 2.0
MIN_SAMPLES = 3
"""A shape whose timed calls reach ``OVERRUN`` times the budget (calls far slower than the
warm-up said: another process's load) stops there with ``min_repeats`` or not, once it has
``MIN_SAMPLES``."""
FULL = TimingPolicy(warmup_s=0.05, budget_s=1.2, min_repeats=15, max_repeats=300, rounds=5)


def median_rel_ci(samples: Sequence[float]) -> float:
    """Relative half-width of an approximate 95% confidence interval of the median:
    1.57 IQR / sqrt(n) / median (McGill, Tukey and Larsen's notches). Infinite for fewer than
    3 samples or a non-positive median."""
    n = len(samples)
    if n < 3:
        return math.inf
    q25, q50, q75 = np.percentile(samples, [25, 50, 75])
    if not q50 > 0:
        return math.inf
    return float(1.57 * (q75 - q25) / math.sqrt(n) / q50)


@dataclass(frozen=True)
class Timing:
    """Per-call seconds of each sample (each the mean of ``inner`` back-to-back calls)."""

    samples_s: tuple[float, ...]
    inner: int

    def _q(self, q: float) -> float:
        return float(np.percentile(self.samples_s, q))

    @property
    def repeats(self) -> int:
        return len(self.samples_s)

    @property
    def median_s(self) -> float:
        return self._q(50)

    @property
    def p10_s(self) -> float:
        return self._q(10)

    @property
    def p90_s(self) -> float:
        return self._q(90)

    @property
    def iqr_s(self) -> float:
        return self._q(75) - self._q(25)

    @property
    def rel_ci(self) -> float:
        """:func:`median_rel_ci` of the samples."""
        return median_rel_ci(self.samples_s)


def time_kernel(step: Callable[[], Any], timer: Timer, policy: TimingPolicy = QUICK) -> Timing:
    """Warm up, size the samples from the warm-up speed, then sample until the timed calls
    have used the budget (or, adaptive, until the median is stable), within the policy's
    [min_repeats, max_repeats] (see :class:`TimingPolicy` for the overrun cap)."""
    warm: list[float] = []
    while len(warm) < policy.warmup_calls or sum(warm) < policy.warmup_s:
        warm.append(timer.time(step, 1))
        if len(warm) >= 10 * policy.max_inner:
            break
    per_call = max(float(np.median(warm[len(warm) // 2 :])), 1e-9)
    inner = int(
        min(policy.max_inner, max(1, math.ceil(policy.min_sample_s / per_call * (1 - 1e-9))))
    )
    floor = min(MIN_SAMPLES, policy.max_repeats)
    samples: list[float] = []
    spent = 0.0
    while len(samples) < policy.max_repeats:
        elapsed = timer.time(step, inner)
        if elapsed <= 0:
            raise HwsimError("the clock returned a non-positive interval; is it monotonic?")
        samples.append(elapsed / inner)
        spent += elapsed
        n = len(samples)
        if n >= policy.min_repeats and (spent >= policy.budget_s or policy.stable(samples)):
            break
        if n >= floor and spent >= OVERRUN * policy.budget_s:
            break
    return Timing(tuple(samples), inner)


# -- inputs ----------------------------------------------------------------------------------
def pool_bytes_for(llc_bytes: float | None) -> int:
    """Rotated inputs total twice the last-level cache, so each is cold when it comes round."""
    return int(2 * (llc_bytes or DEFAULT_LLC_BYTES))


def pool_bytes_for_profile(hw) -> int:
    """:func:`pool_bytes_for` the L2 of hardware profile ``hw`` (the default LLC without one)."""
    return pool_bytes_for(hw.on_chip.l2_bytes.value if hw.on_chip.l2_bytes else None)


class InputPool:
    """Random tensors carved from one ``randn`` buffer per dtype, in rotating slots.

    ``slots(dtype, shapes)`` returns n sets of tensors with n * set size >= the pool size
    (at least 2 sets), so successive calls never find their inputs in cache.
    """

    ALIGN = 64  # elements: every tensor starts on a cache-line boundary

    def __init__(self, device: str, pool_bytes: int, seed: int = 0, max_slots: int = 4096):
        import torch

        self.torch = torch
        self.device = device
        self.pool_bytes = pool_bytes
        self.max_slots = max_slots
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self._random: dict[Any, Any] = {}
        self._scratch: dict[Any, Any] = {}

    def _size(self, shapes: Sequence[tuple[int, ...]]) -> int:
        return sum(-(-math.prod(s) // self.ALIGN) * self.ALIGN for s in shapes)

    def n_slots(self, dtype: Any, shapes: Sequence[tuple[int, ...]]) -> int:
        set_bytes = self._size(shapes) * self.torch.empty((), dtype=dtype).element_size()
        return int(min(self.max_slots, max(2, math.ceil(self.pool_bytes / set_bytes))))

    GROWTH = 1.5  # a buffer that must grow grows by at least this factor

    def _buffer(self, store: dict, dtype: Any, numel: int, random: bool) -> Any:
        """The dtype's flat buffer, at least ``numel`` long. Growing it keeps what it holds
        and fills only the new tail with ``randn`` (random numbers cost far more than the
        copy), and grows by at least :data:`GROWTH` so a sweep of slowly growing shapes does
        not reallocate at every one."""
        old = store.get(dtype)
        if old is not None and old.numel() >= numel:
            return old
        kept = 0 if old is None else old.numel()
        size = max(numel, int(self.GROWTH * kept))
        buf = self.torch.empty(size, dtype=dtype, device=self.device)
        if old is not None and random:
            buf[:kept] = old
        store.pop(dtype, None)
        del old
        if random:
            chunk = 1 << 24
            for lo in range(kept, size, chunk):
                hi = min(size, lo + chunk)
                noise = self.torch.randn(hi - lo, generator=self.generator, device=self.device)
                buf[lo:hi] = noise.to(dtype)
        store[dtype] = buf
        return buf

    def _carve(self, store, dtype, shapes, n, random) -> list[list[Any]]:
        size = self._size(shapes)
        flat = self._buffer(store, dtype, size * n, random)
        sets = []
        for i in range(n):
            offset, tensors = i * size, []
            for shape in shapes:
                numel = math.prod(shape)
                tensors.append(flat[offset : offset + numel].view(shape))
                offset += -(-numel // self.ALIGN) * self.ALIGN
            sets.append(tensors)
        return sets

    def slots(self, dtype: Any, shapes: Sequence[tuple[int, ...]], n: int | None = None):
        """``n`` (default: enough to exceed the pool size) sets of random input tensors."""
        return self._carve(self._random, dtype, shapes, n or self.n_slots(dtype, shapes), True)

    def outputs(self, dtype: Any, shapes: Sequence[tuple[int, ...]], n: int):
        """``n`` sets of output tensors (uninitialised; the kernel writes them)."""
        return self._carve(self._scratch, dtype, shapes, n, False)


class Rotation:
    """Cycles through ``n`` slots: ``next()`` returns 0, 1, ..., n-1, 0, ..."""

    def __init__(self, n: int):
        self.n, self.i = n, -1

    def next(self) -> int:
        self.i = (self.i + 1) % self.n
        return self.i


TOLERANCE = {"fp32": 1e-3, "tf32": 5e-3, "bf16": 3e-2, "fp16": 1e-2, "fp8": 1.5e-1}
"""Relative Frobenius error allowed against the float64 reference (about 8 ulp-scaled)."""


def check_close(out: Any, ref: Any, dtype: str, what: str) -> float:
    """Raise :class:`KernelCheckError` unless ``out`` matches ``ref`` within the dtype's
    tolerance; return the relative error."""
    out64 = out.detach().double().cpu()
    ref64 = ref.detach().double().cpu()
    if out64.shape != ref64.shape:
        raise KernelCheckError(f"{what}: output shape {tuple(out64.shape)} != {tuple(ref64.shape)}")
    if not bool(out64.isfinite().all()):
        raise KernelCheckError(f"{what}: output has NaN or inf; not timed")
    err = float((out64 - ref64).norm() / ref64.norm().clamp_min(1e-30))
    tol = TOLERANCE.get(dtype, 1e-2)
    if not err <= tol:
        raise KernelCheckError(
            f"{what}: output differs from the float64 reference by {err:.2e} "
            f"(tolerance {tol:g} for {dtype}); not timed"
        )
    return err
