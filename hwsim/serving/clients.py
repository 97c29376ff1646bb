"""The clients of a closed loop: who sends which request when, decided while the engine runs.

:class:`ClientPool` keeps the requests sent but not yet arrived at the engine as a sorted list
of send times (ending with +inf) and the parallel list of request indices, the same two lists
the simulator's main loop walks for open-loop arrivals; a send is inserted in order. At most
``clients`` requests are pending or in flight, so an insertion moves at most that many entries.

Rules (:class:`~hwsim.serving.traffic.ClosedLoopRequests`): at t = 0 the first ``clients``
sessions send their first turn; when request r finishes, its client sends ``think_s`` of the
next one later: r + 1 if it continues r's session, else the first turn of the next session not
yet handed out (none left: the client stops). A request the engine rejects up front (it could
never fit) fails as soon as it is sent, like an HTTP error in a benchmark client, and its
client moves on at once.
"""

from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np

from hwsim.serving.traffic import ClosedLoopRequests


class ClientPool:
    def __init__(self, requests: ClosedLoopRequests, servable: np.ndarray):
        n = len(requests)
        sid = requests.session_id
        starts_session = np.concatenate(([n > 0], sid[1:] != sid[:-1])).astype(bool)[:n]
        self.think = requests.think_s.tolist()
        self.continues = (~starts_session[1:]).tolist() + [False]  # r + 1 is r's next turn
        self.heads = np.flatnonzero(starts_session).tolist()
        self.servable = np.asarray(servable, dtype=bool).tolist()
        self.clients = requests.clients
        self.next_head = 0
        self.sent_s = [math.nan] * n  # send (arrival) time of each request
        self.times: list[float] = [math.inf]  # pending sends, sorted, then the sentinel
        self.order: list[int] = []  # their requests

    def start(self) -> None:
        """Every client sends its first request at t = 0."""
        for _ in range(min(self.clients, len(self.heads))):
            self.send(self.heads[self.next_head], 0.0)
            self.next_head += 1

    def next_of(self, r: int) -> int:
        """The request the client that sent ``r`` sends next; -1 when none is left."""
        if self.continues[r]:
            return r + 1
        if self.next_head < len(self.heads):
            self.next_head += 1
            return self.heads[self.next_head - 1]
        return -1

    def finished(self, r: int, t: float) -> None:
        """Request ``r`` finished at ``t``: its client sends its next one after thinking."""
        nxt = self.next_of(r)
        if nxt >= 0:
            self.send(nxt, t + self.think[nxt])

    def send(self, r: int, t: float) -> None:
        """Send ``r`` at ``t``; rejected requests fail at once and their client goes on."""
        while True:
            self.sent_s[r] = t
            if self.servable[r]:
                i = bisect_right(self.times, t)
                self.times.insert(i, t)
                self.order.insert(i, r)
                return
            r = self.next_of(r)
            if r < 0:
                return
            t += self.think[r]
