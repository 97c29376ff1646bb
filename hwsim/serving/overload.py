"""Overload: arrivals that outrun what the engine serves, detected while it runs.

A continuous-batching engine fed faster than it can serve grows its waiting queue without
bound; simulating that to the end takes minutes and reports latencies of a queue that never
drains. Each time another 1/:data:`SAMPLES_PER_RUN` of the requests (at least
:data:`MIN_ARRIVALS_PER_SAMPLE`) has arrived, the monitor samples (time, arrived, finished,
waiting), so a run is judged while its arrivals last, however long its iterations are. The
run is overloaded when, over the last :data:`WINDOWS` samples, the waiting queue grew at every
sample, by at least :data:`MIN_GROWTH` requests in all, and requests arrived at least
:data:`MARGIN` times faster than they finished. The finishing rate over that window is what
the engine sustained while saturated: the highest rate it can serve with this traffic mix.

Closed loops (``arrivals: {kind: concurrency}``) are never monitored: a client sends its next
request only after its previous one finished, so at most ``clients`` requests ever wait and
the arrival rate follows the finishing rate; there is no overload to detect
(:func:`hwsim.serving.simulator.simulate`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

SAMPLES_PER_RUN = 64  # samples over the arrivals of a whole run
MIN_ARRIVALS_PER_SAMPLE = 16


def arrivals_per_sample(n_requests: int) -> int:
    return max(MIN_ARRIVALS_PER_SAMPLE, n_requests // SAMPLES_PER_RUN)


WINDOWS = 8  # consecutive growing samples before a run is called overloaded
MIN_GROWTH = 32  # requests the queue must have grown by over those samples
MARGIN = 1.05  # arrival rate / finishing rate that counts as outrunning


@dataclass(frozen=True)
class Overload:
    """Why a run stopped early: the rates over the window that showed it."""

    detected_at_s: float
    arrival_rate_per_s: float  # over the detection window
    sustained_rate_per_s: float  # requests finished per second over the same window
    waiting: int  # queue length when detected
    window_s: tuple[float, float]

    def sentence(self) -> str:
        return (
            f"overloaded: requests arrive at {self.arrival_rate_per_s:.3g}/s but the replica "
            f"finished {self.sustained_rate_per_s:.3g}/s while saturated (queue grew to "
            f"{self.waiting} by t = {self.detected_at_s:.1f} s); stopped early"
        )


class OverloadMonitor:
    """Samples one run; :meth:`sample` returns an :class:`Overload` once the rule holds."""

    def __init__(self, windows: int = WINDOWS, min_growth: int = MIN_GROWTH):
        self.samples: deque[tuple[float, int, int, int]] = deque(maxlen=windows + 1)
        self.min_growth = min_growth

    def sample(self, t: float, arrived: int, finished: int, waiting: int) -> Overload | None:
        self.samples.append((t, arrived, finished, waiting))
        if len(self.samples) < (self.samples.maxlen or 0):
            return None
        queue = [s[3] for s in self.samples]
        if any(b <= a for a, b in zip(queue, queue[1:])):
            return None
        if queue[-1] - queue[0] < self.min_growth:
            return None
        (t0, a0, f0, _), (t1, a1, f1, w1) = self.samples[0], self.samples[-1]
        span = t1 - t0
        if span <= 0:
            return None
        arrival, finish = (a1 - a0) / span, (f1 - f0) / span
        if arrival <= MARGIN * finish:
            return None
        return Overload(t1, arrival, finish, w1, (t0, t1))
