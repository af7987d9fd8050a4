"""Pacing: per-minute budgets (requests, tokens), in-flight slots, and a rate that adapts to 429s.

:class:`Pace` is GCRA ("virtual scheduling"): it keeps the time at which the budget would be
exactly spent (``_tat``) and lets a request of cost *c* go at ``_tat + c/rate - burst``. Each waiter
reserves its place and sleeps exactly until it (``asyncio.sleep`` is a timer, not a poll), so
waiters are served in order, a weight of 4,000 tokens is as cheap as a weight of 1, and a cost larger
than the burst never deadlocks. It starts *empty*: no burst at start-up, the first request of a
600/min budget goes after 0.1 s, not together with 599 others.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from corral.errors import ConfigError

if TYPE_CHECKING:
    from corral.backends.base import RateLimitInfo

__all__ = ["AdaptiveRate", "EndpointLimits", "Pace", "Slots"]

#: accepted requests in the window before a 429 can seed an adaptive rate
_MIN_EVIDENCE = 5
#: within this share of the rate that last overshot, the adaptive rate grows ten times slower
_NEAR = 0.95

Clock = Callable[[], float]


class Pace:
    """A per-minute budget paced evenly, with a burst tolerance of ``burst_s`` seconds of budget."""

    def __init__(self, per_minute: float, *, burst_s: float = 1.0, clock: Clock = time.monotonic) -> None:
        if per_minute <= 0:
            raise ConfigError(f"a per-minute limit must be positive, got {per_minute:g}")
        self._clock = clock
        self._rate = per_minute / 60.0
        self._burst = burst_s
        self._tat = clock() + burst_s  # empty at start: the burst allowance must be earned

    @property
    def per_minute(self) -> float:
        return self._rate * 60.0

    def set_per_minute(self, per_minute: float) -> None:
        """Change the rate (a limit learned from headers, or an adaptive step); debt is kept in units."""
        now = self._clock()
        debt_units = max(0.0, self._tat - now) * self._rate
        self._rate = max(per_minute, 1e-9) / 60.0
        self._tat = now + debt_units / self._rate

    def reserve(self, cost: float = 1.0) -> float:
        """Spend ``cost`` units now; returns the seconds to wait before using them (0: go)."""
        now = self._clock()
        self._tat = max(self._tat, now) + cost / self._rate
        return max(0.0, self._tat - self._burst - now)

    async def acquire(self, cost: float = 1.0) -> None:
        """Wait until ``cost`` units may be spent, then spend them."""
        wait = self.reserve(cost)
        if wait <= 0:
            return
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            self.adjust(-cost)  # give the reservation back: nobody will use it
            raise

    def adjust(self, cost: float) -> None:
        """Charge (positive) or refund (negative) units after the fact, e.g. once real usage is known."""
        self._tat += cost / self._rate

    def hold(self, seconds: float) -> None:
        """The provider says the budget is spent: nothing more goes for ``seconds``."""
        self._tat = max(self._tat, self._clock() + seconds + self._burst)


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


class AdaptiveRate:
    """Finds the request rate a server takes when nobody says what it is (no limit, no headers).

    Additive-increase/multiplicative-decrease on a *rate*: a provider enforces requests per minute,
    and in-flight concurrency maps to that only through a latency that varies, so AIMD on the
    concurrency knob overshoots by a whole request per round trip when few are in flight. It acts once
    per ``interval_s`` on the *share* of 429s in it: above ``threshold`` is overshoot (sending 10% too
    fast draws ~10% 429s) and cuts the rate by ``decrease``; under half the threshold grows it by
    ``increase`` per second, a tenth of that within 5% of the rate that last overshot (so it does not
    run into the same wall every few seconds). Stray 429s and overloads, a provider's noise of a
    percent or two, must not ratchet the rate down: cutting would not make them fewer, and the run
    would crawl. Nothing is paced before the first overshoot; then the rate starts from what the
    server actually accepted in that interval.
    """

    def __init__(
        self,
        *,
        decrease: float = 0.7,
        increase: float = 0.05,
        interval_s: float = 0.25,
        threshold: float = 0.05,
        min_samples: int = _MIN_EVIDENCE,
        clock: Clock = time.monotonic,
    ) -> None:
        self._clock = clock
        self._decrease = decrease
        self._increase = increase
        self._interval = interval_s
        self._threshold = threshold
        self._min_samples = min_samples
        self._start = clock()
        self._accepted = 0
        self._limited = 0
        #: the rate that last drew too many 429s: growth slows near it instead of running into it again
        self._ceiling = 0.0
        self._last_cut = -1e18
        self.pace: Pace | None = None

    def on_success(self) -> None:
        self._accepted += 1
        self._maybe_step()

    def on_rate_limited(self, sent_at: float) -> None:
        """A 429 or an overload answer to a request sent at ``sent_at`` (this clock)."""
        if sent_at < self._last_cut:
            return  # it was sent before the last cut: that overshoot is already handled
        self._limited += 1
        self._maybe_step()

    def _maybe_step(self) -> None:
        now = self._clock()
        elapsed = now - self._start
        answered = self._accepted + self._limited
        if answered < self._min_samples:
            return  # keep counting: a share of three answers says nothing
        # Two 429s at least: one alone, among a handful of answers, is noise, not a share.
        overshoot = self._limited >= 2 and self._limited / answered > self._threshold
        # A cut does not wait for the interval to end: at 50 requests/s against a limit of 10, every
        # quarter second of waiting is a dozen more 429s. Growth does wait, and so does a second cut,
        # since the answers to requests sent before a cut still carry the old overshoot.
        if overshoot and (self.pace is None or now - self._last_cut >= self._interval):
            if self.pace is None:
                self._ceiling = max(60.0 * self._accepted / max(elapsed, self._interval), 1.0)
                self.pace = Pace(self._ceiling * self._decrease, burst_s=0.5, clock=self._clock)
            else:
                self._ceiling = self.pace.per_minute
                self.pace.set_per_minute(max(1.0, self.pace.per_minute * self._decrease))
            self._last_cut = now
        elif elapsed < self._interval:
            return
        elif not overshoot and self._limited / answered <= self._threshold / 2 and self.pace is not None:
            near = self.pace.per_minute >= _NEAR * self._ceiling
            growth = self._increase / 10 if near else self._increase
            self.pace.set_per_minute(self.pace.per_minute * (1 + growth) ** elapsed)
        self._start = now
        self._accepted = self._limited = 0


class EndpointLimits:
    """What one endpoint allows, shared by every run that sends to it.

    Requests and tokens per minute (given, learned from the provider's headers, or found from its
    429s when it says nothing), the run-wide cool-down after a 429, and optionally a bound on requests
    in flight. A scheduler makes its own; give one instance to several extractors (``corral serve``
    runs one job per client) and they keep the provider's limits *together*, not each in full.
    """

    def __init__(
        self,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        adaptive: bool = True,
        concurrency: int | None = None,
    ) -> None:
        self._requests = Pace(rpm) if rpm else None
        self._tokens = Pace(tpm) if tpm else None
        self._fixed_requests = rpm is not None
        self._fixed_tokens = tpm is not None
        # Learning from headers replaces blind adaptation as soon as the provider says its limits.
        self._adaptive = AdaptiveRate() if adaptive and rpm is None and tpm is None else None
        self._resume_at = 0.0
        self._recent = _RecentShare()
        #: requests in flight across every run sharing these limits (None: each run's own bound only)
        self.slots = Slots(concurrency) if concurrency is not None else None

    @property
    def rpm(self) -> float | None:
        """The requests-per-minute pace in effect now (None: not paced)."""
        if self._requests is not None:
            return self._requests.per_minute
        pace = self._adaptive.pace if self._adaptive is not None else None
        return pace.per_minute if pace is not None else None

    @property
    def tpm(self) -> float | None:
        """The tokens-per-minute pace in effect now (None: not paced)."""
        return self._tokens.per_minute if self._tokens is not None else None

    def reserve(self, tokens: float) -> float:
        """Take a request's share of every budget now; returns the seconds it must wait before it
        goes (the cool-down included). The form a remote keeper of the limits answers in."""
        now = time.monotonic()
        wait = self._resume_at - now
        for pace, cost in ((self._requests, 1.0), (self._tokens, tokens), (self._adaptive_pace, 1.0)):
            if pace is not None:
                wait = max(wait, pace.reserve(cost))
        return max(0.0, wait)

    @property
    def _adaptive_pace(self) -> Pace | None:
        return self._adaptive.pace if self._adaptive is not None else None

    def released(self) -> None:
        """A request admitted by :meth:`admit` has ended, whichever way (kept limits count in flight)."""

    async def admit(self, tokens: float) -> None:
        """Wait out a cool-down, then for the request's share of each per-minute budget."""
        wait = self._resume_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._requests is not None:
            await self._requests.acquire(1)
        if self._tokens is not None:
            await self._tokens.acquire(tokens)
        if self._adaptive is not None and self._adaptive.pace is not None:
            await self._adaptive.pace.acquire(1)

    def answered(self, prompt_tokens_error: float) -> None:
        """A request succeeded; ``prompt_tokens_error`` is the real prompt minus our estimate."""
        if self._tokens is not None and prompt_tokens_error:
            # The provider charged the real prompt plus max_tokens; correct our guess of the prompt.
            self._tokens.adjust(prompt_tokens_error)
        if self._adaptive is not None:
            self._adaptive.on_success()
        self._recent.answered()

    def rate_limited(self, sent_at: float, retry_after: float | None, *, overload: bool = False) -> None:
        """A 429 (or with ``overload``, a 503/529 overload answer) to a request sent at ``sent_at``
        (``time.monotonic``)."""
        if self._adaptive is not None:
            self._adaptive.on_rate_limited(sent_at)
        # A 429 is about this client's own pace: everyone waits. An overload is about the provider;
        # a stray one (measured: 1% of answers, each with retry-after: 1, paused a 1,000/s run most
        # of the time) only delays its own request, a burst of them pauses everyone.
        if overload and self._recent.overloaded() <= _STRAY_OVERLOADS:
            return
        self._resume_at = max(self._resume_at, time.monotonic() + (retry_after or 0.0))

    def learn(self, info: RateLimitInfo) -> None:
        """What the provider's rate-limit headers say."""
        self._adaptive = None  # the provider says its limits: no more guessing
        self._requests = _learned(self._requests, self._fixed_requests, info.limit_requests)
        self._tokens = _learned(self._tokens, self._fixed_tokens, info.limit_tokens)
        if self._requests is not None and info.remaining_requests is not None and info.remaining_requests < 1:
            self._requests.hold(60.0 / max(self._requests.per_minute, 1e-9))
        if self._tokens is not None and info.remaining_tokens is not None and info.remaining_tokens < 1:
            self._tokens.hold(info.reset_tokens_s or 1.0)


#: overloads up to this share of the last seconds' answers are a provider's noise, not a wall
_STRAY_OVERLOADS = 0.05


class _RecentShare:
    """The share of overload answers among the answers of the last one to two seconds (two
    one-second buckets: two counters per answer, no timestamps kept)."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._now = [0, 0]  # answers, overloads in the current second
        self._before = [0, 0]  # in the one before

    def answered(self) -> None:
        self._roll()[0] += 1

    def overloaded(self) -> float:
        """Count an overload; its share among the recent answers (itself included)."""
        self._roll()[1] += 1
        answers = self._now[0] + self._before[0] + self._now[1] + self._before[1]
        return (self._now[1] + self._before[1]) / answers

    def _roll(self) -> list[int]:
        now = time.monotonic()
        if now - self._start >= 1.0:
            self._before = self._now if now - self._start < 2.0 else [0, 0]
            self._now = [0, 0]
            self._start = now
        return self._now


def _learned(pace: Pace | None, fixed: bool, limit: int | None) -> Pace | None:
    if limit is None or limit <= 0:
        return pace
    if pace is None:
        return Pace(limit)
    # A given limit is a ceiling the provider may lower, never raise.
    if (limit < pace.per_minute or not fixed) and abs(limit - pace.per_minute) > 1e-6:
        pace.set_per_minute(limit)
    return pace
