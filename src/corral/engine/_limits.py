"""What one endpoint allows: per-minute budgets, slow start, a 429 cool-down, shared by every run.

    first request ─► slow start (1, 2, 4, … in flight while nothing is known) ─► cool-down after a 429
        ─► requests/min ─► tokens/min ─► adaptive rate (no headers) ─► send

Limits come from the caller (``rpm``/``tpm``), else from the provider's rate-limit headers once an
answer carries them, else from the run store (what an earlier run against the same endpoint and model
learned: :class:`~corral.store.KnownLimits`), else from
:class:`~corral.engine._adaptive.AdaptiveRate` reacting to 429s.
Until one of those is known, requests go as TCP's do: one, then one more in flight per answer (the
window doubles every round trip), so a server enforcing a second's worth of its limit sees no
start-up burst; the first answer with headers sets the pace at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from corral.engine._adaptive import AdaptiveRate
from corral.engine._pace import Pace, Slots
from corral.store import KnownLimits

if TYPE_CHECKING:
    from corral.backends.base import RateLimitInfo

__all__ = ["AdaptiveRate", "EndpointLimits", "Pace", "Slots"]

#: a quarter second of each budget may go at once (jitter, a stalled loop); a provider enforcing a
#: second's worth never sees more than that
_BURST_S = 0.25
#: slow start widens the window by this much per answer: 1 doubles it every round trip
_SLOW_START_GROWTH = 1.0


class EndpointLimits:
    """What one endpoint allows, shared by every run that sends to it.

    Requests and tokens per minute (given, learned from the provider's headers, remembered from an
    earlier run, or found from its 429s when it says nothing), the run-wide cool-down after a 429,
    slow start while nothing is known, and optionally a bound on requests in flight. A scheduler
    makes its own; give one instance to several extractors (``corral serve`` runs one job per client)
    and they keep the provider's limits *together*, not each in full.

    ``slow_start``: begin with one request in flight while the limits are unknown (off for servers
    on the user's own hardware, which enforce none). ``adaptive=False`` turns off both slow start
    and adaptation: full concurrency at once, until headers say otherwise.
    """

    def __init__(
        self,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        adaptive: bool = True,
        concurrency: int | None = None,
        slow_start: bool = True,
        known: KnownLimits | None = None,
    ) -> None:
        self._requests = Pace(rpm, burst_s=_BURST_S) if rpm else None
        self._tokens = Pace(tpm, burst_s=_BURST_S) if tpm else None
        self._fixed_requests = rpm is not None
        self._fixed_tokens = tpm is not None
        # Learning from headers replaces blind adaptation as soon as the provider says its limits.
        self._adaptive = AdaptiveRate() if adaptive and rpm is None and tpm is None else None
        #: what headers said in this process (None: nothing yet)
        self._heard: KnownLimits | None = None
        self._resume_at = 0.0
        self._recent = _RecentShare()
        self._in_flight = 0
        #: requests in flight across every run sharing these limits (None: each run's own bound only)
        self.slots = Slots(concurrency) if concurrency is not None else None
        # Slow start only while nothing at all is known, and only where limits are found blindly.
        self._window: Slots | None = Slots(1) if slow_start and self._adaptive is not None else None
        self._window_size = 1.0
        #: when slow start last halved its window: refusals of requests sent before then are the same loss
        self._halved_at = 0.0
        #: during slow start, a round's requests are spread over a round trip instead of leaving
        #: together: a server enforcing a second's worth refuses the first request over it, and that
        #: 429 (answered at once) ends slow start before the rest of the round follows it
        self._spread: Pace | None = None
        self._round_trip_s: float | None = None
        if known:
            self.seed(known)

    # --- what is known ---------------------------------------------------------------------------

    @property
    def rpm(self) -> float | None:
        """The requests-per-minute pace in effect now (None: not paced)."""
        if self._requests is not None:
            return self._requests.per_minute
        return self._adaptive.per_minute if self._adaptive is not None else None

    @property
    def tpm(self) -> float | None:
        """The tokens-per-minute pace in effect now (None: not paced)."""
        return self._tokens.per_minute if self._tokens is not None else None

    @property
    def window(self) -> int | None:
        """Requests allowed in flight by slow start now (None: slow start is over, or off)."""
        return self._window.limit if self._window is not None else None

    def known(self) -> KnownLimits:
        """What this process learned of the endpoint (headers, or the adaptive rate), to remember."""
        if self._heard is not None:
            return self._heard
        if self._adaptive is not None and self._adaptive.per_minute is not None:
            return KnownLimits(adaptive_rpm=self._adaptive.per_minute)
        return KnownLimits()

    def seed(self, known: KnownLimits) -> None:
        """Start from what an earlier run learned: paced from the first request, no slow start.
        Headers correct it as soon as they come; a limit given by the caller is never raised. Once
        this process has learned anything itself, what it learned stands."""
        if self._heard is not None or (self._adaptive is not None and self._adaptive.pace is not None):
            return
        if known.rpm or known.tpm:
            self.learn_limits(known.rpm, known.tpm)
        elif known.adaptive_rpm and self._adaptive is not None and self._adaptive.pace is None:
            self._adaptive = AdaptiveRate(per_minute=known.adaptive_rpm)
            self._end_slow_start()

    # --- one request's way -----------------------------------------------------------------------

    async def open_window(self) -> None:
        """Wait for room in the slow-start window (at once when slow start is over)."""
        self._in_flight += 1
        window = self._window
        if window is None:
            return
        try:
            await window.acquire()
        except asyncio.CancelledError:
            self._in_flight -= 1
            raise
        if self._window is None:  # it ended while we waited: the slot taken is nobody's now
            window.release()

    def reserve(self, tokens: float) -> float:
        """Take a request's share of every budget now; returns the seconds it must wait before it
        goes (the cool-down included). The form a remote keeper of the limits answers in."""
        now = time.monotonic()
        wait = self._resume_at - now
        paces = (
            (self._spread, 1.0),
            (self._requests, 1.0),
            (self._tokens, tokens),
            (self._adaptive_pace(), 1.0),
        )
        for pace, cost in paces:
            if pace is not None:
                wait = max(wait, pace.reserve(cost))
        return max(0.0, wait)

    def _adaptive_pace(self) -> Pace | None:
        if self._adaptive is None:
            return None
        self._adaptive.tick()  # the adaptive rate grows on the clock, not only on answers
        return self._adaptive.pace

    async def admit(self, tokens: float) -> None:
        """Wait for the slow-start window, out a cool-down, then for the request's share of each
        per-minute budget. Every admit is followed by one :meth:`released`, whatever happens."""
        await self.open_window()
        try:
            if self._spread is not None:
                await self._spread.acquire(1)
            wait = self._resume_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._requests is not None:
                await self._requests.acquire(1)
            if self._tokens is not None:
                await self._tokens.acquire(tokens)
            pace = self._adaptive_pace()
            if pace is not None:
                await pace.acquire(1)
        except asyncio.CancelledError:
            self.released()
            raise

    def released(self) -> None:
        """A request admitted by :meth:`admit` (or :meth:`open_window`) has ended, whichever way."""
        self._in_flight -= 1
        if self._window is not None:
            self._window.release()

    # --- what the answers say --------------------------------------------------------------------

    def answered(self, prompt_tokens_error: float, sent_at: float | None = None) -> None:
        """A request sent at ``sent_at`` (``time.monotonic``) succeeded; ``prompt_tokens_error`` is
        the real prompt minus our estimate."""
        if self._tokens is not None and prompt_tokens_error:
            # The provider charged the real prompt plus max_tokens; correct our guess of the prompt.
            self._tokens.adjust(prompt_tokens_error)
        if self._window is not None:
            # One more in flight per answer: the window doubles every round trip.
            self._resize_window(self._window_size + _SLOW_START_GROWTH)
            self._spread_round(time.monotonic() - sent_at if sent_at is not None else None)
        if self._adaptive is not None:
            self._adaptive.on_success(time.monotonic() if sent_at is None else sent_at)
        self._recent.answered()

    def rate_limited(self, sent_at: float, retry_after: float | None, *, overload: bool = False) -> None:
        """A 429 (or with ``overload``, a 503/529 overload answer) to a request sent at ``sent_at``
        (``time.monotonic``)."""
        if self._adaptive is not None:
            self._adaptive.on_rate_limited(sent_at)
        if self._window is not None and not overload:
            adaptive = self._adaptive
            # Refused again after the window was halved (the server still refuses at half the rate),
            # or a wall the adaptive rate judged already: slow start is over, and the adaptive rate
            # paces at what the server took, before the requests waiting for the window all go.
            again = 0.0 < self._halved_at < sent_at
            if adaptive is not None and (adaptive.pace is not None or (again and adaptive.start())):
                self._end_slow_start()
            elif sent_at > self._halved_at:
                # A stray refusal (a provider's noise, or the first of a round over the limit): halve
                # the window, once per round trip as TCP does per loss, and go on.
                self._halved_at = time.monotonic()
                self._resize_window(max(1.0, self._window_size / 2))
        # A 429 is about this client's own pace: everyone waits. An overload is about the provider;
        # a stray one (measured: 1% of answers, each with retry-after: 1, paused a 1,000/s run most
        # of the time) only delays its own request, a burst of them pauses everyone.
        if overload and self._recent.overloaded() <= _STRAY_OVERLOADS:
            return
        self._resume_at = max(self._resume_at, time.monotonic() + (retry_after or 0.0))

    def learn(self, info: RateLimitInfo) -> None:
        """What the provider's rate-limit headers say: its limits, and how much is left right now."""
        self.learn_limits(info.limit_requests, info.limit_tokens)
        # The headers describe the moment the server answered; the requests in flight since have
        # taken their share too. Never plan on more than is left.
        if self._requests is not None and info.remaining_requests is not None:
            left = info.remaining_requests - max(self._in_flight - 1, 0)
            reset = info.reset_requests_s
            _spend_down(self._requests, left, info.limit_requests, info.remaining_requests, reset)
        if self._tokens is not None and info.remaining_tokens is not None:
            left = info.remaining_tokens
            _spend_down(self._tokens, left, info.limit_tokens, info.remaining_tokens, info.reset_tokens_s)

    def learn_limits(self, rpm: float | None, tpm: float | None) -> None:
        """The endpoint's limits are known (headers now, or remembered): pace to them, stop guessing."""
        if not rpm and not tpm:
            return
        self._adaptive = None  # the provider says its limits: no more guessing
        self._end_slow_start()
        self._requests = _learned(self._requests, self._fixed_requests, rpm)
        self._tokens = _learned(self._tokens, self._fixed_tokens, tpm)
        heard = self._heard or KnownLimits()
        self._heard = KnownLimits(rpm=rpm or heard.rpm, tpm=tpm or heard.tpm)

    def _spread_round(self, round_trip_s: float | None) -> None:
        if round_trip_s is None or round_trip_s <= 0:
            return
        rtt = self._round_trip_s
        self._round_trip_s = rtt = round_trip_s if rtt is None else 0.8 * rtt + 0.2 * round_trip_s
        # Twice the window per round trip, as Linux paces TCP's slow start: a round leaves within
        # half a round trip, spread, and the window can still double each round trip.
        per_minute = 2 * 60.0 * self._window_size / max(rtt, 1e-3)
        if self._spread is None:
            self._spread = Pace(per_minute, burst_s=0.0)
        else:
            self._spread.set_per_minute(per_minute)

    def _resize_window(self, size: float) -> None:
        self._window_size = size
        if self._window is not None:
            self._window.set_limit(int(size))

    def _end_slow_start(self) -> None:
        self._spread = None
        window, self._window = self._window, None
        if window is not None:
            window.set_limit(None)  # wake every waiter: each releases the slot it is handed


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


def _learned(pace: Pace | None, fixed: bool, limit: float | None) -> Pace | None:
    if limit is None or limit <= 0:
        return pace
    if pace is None:
        return Pace(limit, burst_s=_BURST_S)
    # A given limit is a ceiling the provider may lower, never raise.
    if (limit < pace.per_minute or not fixed) and abs(limit - pace.per_minute) > 1e-6:
        pace.set_per_minute(limit)
    return pace


def _spend_down(pace: Pace, left: float, limit: int | None, remaining: int, reset_s: float | None) -> None:
    """The provider says ``left`` units are left now (what it said remains, less what has gone since).

    Never plan on more than that. When nothing is left, the reset says when units come back: the
    bucket refills ``limit - remaining`` units in ``reset_s``, so one unit takes ``reset_s / (limit -
    remaining)``. For a per-minute bucket that is the pace's own spacing; a longer window (a daily
    limit reported in the same headers) or a slower refill shows here, and is waited out, instead of
    asking again at the per-minute pace into a wall of 429s.
    """
    pace.at_most(left)
    if left > 0 or not reset_s or not limit or limit <= remaining:
        return
    per_unit = reset_s / (limit - remaining)
    # The next unit may go once the debt (-left) and itself have come back: (1 - left) units. A hold
    # of s seconds lets it go after s plus one spacing of the pace.
    wait = (1 - left) * per_unit - 60.0 / pace.per_minute
    if wait > 0:
        pace.hold(wait)
