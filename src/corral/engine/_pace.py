"""Pacing primitives: a per-minute budget paced evenly (:class:`Pace`) and in-flight slots (:class:`Slots`).

:class:`Pace` is GCRA ("virtual scheduling"): it keeps the time at which the budget would be
exactly spent (``_tat``) and lets a request of cost *c* go at ``_tat + c/rate - burst``. Each waiter
reserves its place and sleeps exactly until it (``asyncio.sleep`` is a timer, not a poll), so
waiters are served in order, a weight of 4,000 tokens is as cheap as a weight of 1, and a cost larger
than the burst never deadlocks. It starts *empty* at its first request, not when it was made: a pace
made at a server's start-up, or in a Ray actor seconds before the workers ask, has earned no burst
by then, so the first request of a 600/min budget goes after 0.1 s, not together with 599 others.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from corral.errors import ConfigError

__all__ = ["Clock", "Pace", "Slots"]

Clock = Callable[[], float]


class Pace:
    """A per-minute budget paced evenly, with a burst tolerance of ``burst_s`` seconds of budget.

    :meth:`acquire` queues its waiters and wakes the first with one timer when its turn comes *at the
    rate then in effect*: a rate cut or a hold reaches the requests already waiting, instead of
    letting a queue planned at the old rate leave at the old rate. :meth:`reserve` is the same
    budget for a caller that sleeps on its own (a remote keeper answers in seconds)."""

    def __init__(self, per_minute: float, *, burst_s: float = 1.0, clock: Clock = time.monotonic) -> None:
        if per_minute <= 0:
            raise ConfigError(f"a per-minute limit must be positive, got {per_minute:g}")
        self._clock = clock
        self._rate = per_minute / 60.0
        self._burst = burst_s
        #: None until the first request: then empty (the burst allowance must be earned from there)
        self._tat: float | None = None
        #: [future, cost] of each waiter, first come first served
        self._queue: deque[tuple[asyncio.Future[None], float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        #: since when the first waiter has been first: its turn is counted from then, at the rate in
        #: effect (re-arming on a new rate must not push it back)
        self._head_since = 0.0

    @property
    def per_minute(self) -> float:
        return self._rate * 60.0

    @property
    def waiting(self) -> int:
        """Requests queued for their turn (those that sleep on a :meth:`reserve` are not counted)."""
        return len(self._queue)

    def _level(self, now: float) -> float:
        if self._tat is None:
            self._tat = now + self._burst
        return self._tat

    def _wait(self, cost: float, since: float | None = None) -> float:
        """Seconds until ``cost`` units asked for at ``since`` (default: now) may be spent, without
        spending them: the same turn :meth:`reserve` would give."""
        now = self._clock()
        asked = now if since is None else since
        return max(self._level(now), asked) + cost / self._rate - self._burst - now

    def set_per_minute(self, per_minute: float) -> None:
        """Change the rate (a limit learned from headers, or an adaptive step); debt is kept in units."""
        now = self._clock()
        debt_units = max(0.0, self._level(now) - now) * self._rate
        self._rate = max(per_minute, 1e-9) / 60.0
        self._tat = now + debt_units / self._rate
        self._arm()

    def reserve(self, cost: float = 1.0) -> float:
        """Spend ``cost`` units now; returns the seconds to wait before using them (0: go)."""
        now = self._clock()
        self._tat = max(self._level(now), now) + cost / self._rate
        return max(0.0, self._tat - self._burst - now)

    async def acquire(self, cost: float = 1.0) -> None:
        """Wait until ``cost`` units may be spent, then spend them."""
        if not self._queue and self._wait(cost) <= 0:
            self.reserve(cost)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (waiter, cost)
        self._queue.append(entry)
        if len(self._queue) == 1:
            self._head_since = self._clock()
            self._arm()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.adjust(-cost)  # its turn came as it was cancelled: give the units back
            else:
                first = self._queue[0] is entry
                self._queue.remove(entry)
                if first:
                    self._head_since = self._clock()
                    self._arm()
            raise

    def _arm(self) -> None:
        """(Re)schedule the wake-up of the first waiter, at the rate in effect now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queue:
            delay = max(0.0, self._wait(self._queue[0][1], self._head_since))
            self._timer = asyncio.get_running_loop().call_later(delay, self._release)

    def _release(self) -> None:
        self._timer = None
        while self._queue and self._wait(self._queue[0][1], self._head_since) <= 1e-6:
            waiter, cost = self._queue.popleft()
            if not waiter.done():
                now = self._clock()
                self._tat = max(self._level(now), self._head_since) + cost / self._rate
                waiter.set_result(None)
            self._head_since = self._clock()
        self._arm()

    def adjust(self, cost: float) -> None:
        """Charge (positive) or refund (negative) units after the fact, e.g. once real usage is known."""
        self._tat = self._level(self._clock()) + cost / self._rate
        if self._queue:
            self._arm()

    def hold(self, seconds: float) -> None:
        """The provider says the budget is spent: nothing more goes for ``seconds``."""
        now = self._clock()
        self._tat = max(self._level(now), now + seconds + self._burst)
        if self._queue:
            self._arm()

    def at_most(self, units: float) -> None:
        """The provider says only ``units`` are left now: let no more than that go before the budget
        refills (at this rate), however much of a burst this pace would otherwise allow."""
        now = self._clock()
        self._tat = max(self._level(now), now + self._burst - max(units, 0.0) / self._rate)
        if self._queue:
            self._arm()

    def horizon(self) -> float:
        """When the last unit reserved so far may go (now, if nothing is waiting)."""
        now = self._clock()
        return max(now, self._level(now) - self._burst)


class Slots:
    """At most ``limit`` holders at once; the limit may change while holders wait (adaptive)."""

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int | None:
        return self._limit

    @property
    def held(self) -> int:
        return self._held

    def set_limit(self, limit: int | None) -> None:
        self._limit = limit
        self._wake()

    async def acquire(self) -> None:
        if not self._waiters and (self._limit is None or self._held < self._limit):
            self._held += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._held -= 1  # woken and cancelled at once: hand the slot on
                self._wake()
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self._held -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and (self._limit is None or self._held < self._limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._held += 1
                waiter.set_result(None)
