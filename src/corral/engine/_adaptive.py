"""Finding a server's request rate when nobody says what it is (no limit given, no headers).

Additive-increase/multiplicative-decrease on a *rate*: a provider enforces requests per unit of time,
and in-flight concurrency maps to that only through a latency that varies. Three rules keep it from
the collapse an earlier version fell into (a start-up burst drew a wall of 429s, every quarter
second of them cut the rate again, down to one request a minute, and growth then waited for answers
the collapsed rate no longer produced):

- **A cut is judged only on requests sent at the current rate.** After a cut, the requests already
  reserved at the old rate still leave, and their 429s say nothing new; answers count from the
  moment the last of them has gone.
- **A floor from what the server took.** The rate never falls below half of what the server was
  seen to accept over the last two seconds, checked at every cut and every half second: the
  server's own answers, not a guess.
- **No cut without a measure.** A 429 that comes back before any answer was accepted says the
  server refuses, not what it takes: the rate is not set from nothing (that was the fall to one a
  minute), it waits for the first accepted answers; a rate already paced is cut by ``decrease``.
- **Growth runs on the clock**: checked whenever a request asks for its place or an answer comes
  back, and on a timer while requests wait for their turn, so a low rate grows back even when it
  yields no answers at all.

Stray 429s and overloads, a provider's noise of a percent or two, do not cut the rate: cutting would
not make them fewer, and the run would crawl.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from corral.engine._pace import Clock, Pace

__all__ = ["AdaptiveRate"]


#: what the server accepted, and answers to requests sent at the current rate, are read over the
#: last this many seconds
_WINDOW_S = 2.0
#: accepted requests are counted per bucket of this many seconds
_BUCKET_S = 0.25
#: a wall: this share of 429s among a handful of answers cuts at once
_WALL_SHARE = 0.25
_WALL_EVIDENCE = 5
#: a steady overshoot needs this many answers over at least a second before it counts
_STEADY_EVIDENCE = 20
#: within this share of the rate the server was seen to take when refusing, growth is ten times slower
_NEAR = 0.95
#: a cut goes to this share of what the server was seen to accept while refusing the rest
_BELOW_SEEN = 0.95
#: the rate never falls below this share of what the server accepted over the last two seconds
_FLOOR_SHARE = 0.5
#: the pace's burst tolerance: a quarter second of the rate, so per-second enforcement never sees a burst
_PACE_BURST_S = 0.25
#: growth is this many times ``increase`` until a paced rate first overshoots (probing upward)
_PROBING_GROWTH = 10.0
#: nor below one request a minute (a server that accepts nothing at all)
_MIN_PER_MINUTE = 1.0


class AdaptiveRate:
    """The request rate a server takes, found from its 429s (see the module's docstring).

    It judges the answers of the last two seconds to requests sent at the current rate. A wall (a
    quarter of a handful of answers refused) or a steady overshoot (over ``threshold`` of at least 20
    answers over a second) cuts the rate: to ``decrease`` of itself, or to just below what the
    server accepted meanwhile (a server refusing the excess takes about its limit), whichever is
    lower, but never under the floor. Every ``interval_s`` with at most half the threshold refused,
    it grows by ``increase`` per second (ten times slower within 5% of the rate the server took when
    it last refused, so that it does not run into the same wall every few seconds). Before the first
    cut nothing is paced (slow start bounds that phase).
    """

    def __init__(
        self,
        *,
        decrease: float = 0.7,
        increase: float = 0.05,
        interval_s: float = 0.5,
        threshold: float = 0.02,
        per_minute: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._clock = clock
        self._decrease = decrease
        self._increase = increase
        self._interval = interval_s
        self._threshold = threshold
        now = clock()
        self._step_at = now
        #: answers to requests sent at or after this moment are judged (the last cut's horizon)
        self._judge_from = now
        #: (answered at, refused?) of the judged answers, the last _WINDOW_S seconds of them
        self._judged: deque[tuple[float, bool]] = deque()
        self._limited = 0
        #: what the server took when it last refused: growth slows near it instead of running into it
        self._ceiling = per_minute or 0.0
        #: [bucket index (time // _BUCKET_S), accepted answers in it], oldest first, the last window's
        self._history: deque[list[int]] = deque(maxlen=int(_WINDOW_S / _BUCKET_S) + 1)
        self._first_answer: float | None = None
        #: the timer that grows the rate while requests wait for their turn and nothing answers
        self._timer: asyncio.TimerHandle | None = None
        #: no paced rate has overshot yet (a remembered rate held before: it has)
        self._probing = per_minute is None
        #: a rate that held before (remembered in the run store): paced from the first request
        self.pace: Pace | None = Pace(per_minute, burst_s=_PACE_BURST_S, clock=clock) if per_minute else None

    @property
    def per_minute(self) -> float | None:
        return self.pace.per_minute if self.pace is not None else None

    def on_success(self, sent_at: float) -> None:
        """An answer to a request sent at ``sent_at`` (this clock)."""
        now = self._clock()
        if self._first_answer is None:
            self._first_answer = now
        bucket = int(now // _BUCKET_S)
        if self._history and self._history[-1][0] == bucket:
            self._history[-1][1] += 1
        else:
            self._history.append([bucket, 1])
        if sent_at >= self._judge_from:
            self._judged.append((now, False))
        self.tick()

    def on_rate_limited(self, sent_at: float) -> None:
        """A 429 or an overload answer to a request sent at ``sent_at`` (this clock)."""
        if sent_at >= self._judge_from:
            self._judged.append((self._clock(), True))
            self._limited += 1
        self.tick()

    def start(self) -> bool:
        """Slow start is over (the server refused again after its window was halved): pace from now
        on at what the server took lately. False, and nothing paced, while too few answers came back
        to say what it takes."""
        if self.pace is None:
            self._cut(self._clock(), steady=False)
        return self.pace is not None

    def tick(self) -> None:
        """Cut on overshoot, grow on a clean stretch; cheap enough to call on every request."""
        now = self._clock()
        judged = self._judged
        while judged and judged[0][0] < now - _WINDOW_S:
            if judged.popleft()[1]:
                self._limited -= 1
        answered, limited = len(judged), self._limited
        # Two 429s at least: one alone, among a handful of answers, is noise, not a share.
        if limited >= 2:
            wall = answered >= _WALL_EVIDENCE and limited / answered > _WALL_SHARE
            span = now - judged[0][0]
            steady = answered >= _STEADY_EVIDENCE and span >= 1.0 and limited / answered > self._threshold
            # A wall does not wait: at 50 requests/s against a limit of 10, every quarter second of
            # waiting is a dozen more 429s. Answers to requests sent before the last cut were already
            # left out, so this overshoot is one of the current rate.
            if wall or steady:
                self._cut(now, steady=steady)
                return
        self._keep_growing()
        elapsed = now - self._step_at
        if elapsed < self._interval:
            return
        self._step_at = now
        if self.pace is None:
            return
        floor = self._floor_per_minute(now)
        if self.pace.per_minute < floor:
            # What the server takes now, at the least: a rate cut during a burst's retries (or an
            # earlier run's, from the store) comes back up at once instead of at 5% a second.
            self.pace.set_per_minute(floor)
            return
        clean = answered == 0 or limited / answered <= self._threshold / 2
        if clean:
            near = self._ceiling > 0 and self.pace.per_minute >= _NEAR * self._ceiling
            # Until a paced rate has overshot once, nothing says where the limit is: probe upward
            # fast (a stray 429 that ended slow start early must not leave the run crawling).
            growth = self._increase * (_PROBING_GROWTH if self._probing else 0.1 if near else 1.0)
            # Growth is bounded per step: a run idle for an hour does not come back at 10x.
            self.pace.set_per_minute(self.pace.per_minute * (1 + growth) ** min(elapsed, 2.0))

    def _keep_growing(self) -> None:
        """While requests wait in the pace, tick again in ``interval_s``: growth must not wait for
        answers that a low rate produces one a minute (the timer is the probe upward)."""
        if self._timer is not None or self.pace is None or not self.pace.waiting:
            return
        with contextlib.suppress(RuntimeError):  # no running loop (a unit test's own clock): no timer
            # A hair past the interval: a timer firing a microsecond early would skip its step.
            self._timer = asyncio.get_running_loop().call_later(self._interval * 1.01, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.tick()

    def _cut(self, now: float, *, steady: bool) -> None:
        accepted = self._accepted_lately(now)
        if self.pace is None and accepted < _WALL_EVIDENCE:
            # Refused before the server was seen to take anything: no rate to start from. The
            # requests refused back off on their own; the first accepted answers give the measure.
            return
        floor = self._floor_per_minute(now)
        # Too few accepted lately to say what the server takes: cut from the current rate only.
        measured = accepted >= _WALL_EVIDENCE
        seen = self._accepted_per_minute(now, at_least_s=_BUCKET_S) if measured else float("inf")
        taken = self._taken_while_refusing(now) if measured else float("inf")
        if measured and (steady or taken < seen):
            # Refusing only the excess, the server takes about its limit: that is where growth slows.
            self._ceiling = min(seen, taken)
        if self.pace is None:
            self.pace = Pace(max(seen * self._decrease, floor), burst_s=_PACE_BURST_S, clock=self._clock)
            self._judge_from = now
        else:
            self._probing = False  # a paced rate overshot: the limit is near, growth is careful now
            # Requests already reserved at the old rate still leave until its horizon (they sleep
            # until their turn, computed then); what their answers say belongs to the rate just cut.
            self._judge_from = max(now, self.pace.horizon())
            rate = self.pace.per_minute
            # Just below the limit when the server showed it; otherwise by ``decrease``, since over two
            # seconds a bucket being drained counts as accepted too.
            target = taken * _BELOW_SEEN if taken < seen else min(rate * self._decrease, seen * _BELOW_SEEN)
            self.pace.set_per_minute(max(min(target, rate), floor))
        self._step_at = now
        self._judged.clear()
        self._limited = 0

    def _accepted_lately(self, now: float) -> int:
        """Accepted answers over the last window."""
        first = int((now - _WINDOW_S) // _BUCKET_S)
        return sum(n for bucket, n in self._history if bucket > first)

    def _accepted_per_minute(self, now: float, *, at_least_s: float) -> float:
        """Accepted answers per minute over the last window, or since the first answer when that is
        shorter, but over ``at_least_s`` at least."""
        since = now - (self._first_answer if self._first_answer is not None else now)
        return 60.0 * self._accepted_lately(now) / max(min(_WINDOW_S, since), at_least_s)

    def _taken_while_refusing(self, now: float) -> float:
        """Accepted answers per minute since the first judged 429: a server refusing has spent its
        allowance, so what it still takes then is its limit (over two seconds, a bucket being drained
        would count too). Infinite when that stretch is too short to say."""
        first = next((at for at, refused in self._judged if refused), None)
        if first is None or now - first < 0.5:
            return float("inf")
        accepted = sum(1 for at, refused in self._judged if at >= first and not refused)
        return 60.0 * accepted / (now - first)

    def _floor_per_minute(self, now: float) -> float:
        """Half of what the server accepted per minute over the last window (over a second at least,
        so that the first answers of a burst, arriving together, are not read as a rate)."""
        return max(_FLOOR_SHARE * self._accepted_per_minute(now, at_least_s=1.0), _MIN_PER_MINUTE)
