"""The pacing primitives, on a clock the test controls (no sleeping, no wall-clock assertions)."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest

from corral.backends.base import RateLimitInfo
from corral.engine._limits import AdaptiveRate, EndpointLimits, Pace, Slots
from corral.errors import ConfigError
from corral.store import KnownLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pace_starts_empty_and_spaces_requests_evenly() -> None:
    clock = Clock()
    pace = Pace(600, burst_s=1.0, clock=clock)  # 10 per second
    waits = [pace.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])  # no burst at start


def test_pace_allows_a_burst_only_after_idling() -> None:
    clock = Clock()
    pace = Pace(600, burst_s=1.0, clock=clock)
    assert pace.reserve() == pytest.approx(0.1)
    clock.now += 10  # idle long enough to earn the full burst, and no more
    waits = [pace.reserve() for _ in range(12)]
    assert waits[:10] == pytest.approx([0.0] * 10)
    assert waits[10:] == pytest.approx([0.1, 0.2])


def test_pace_is_empty_at_its_first_request_however_long_after_it_was_made() -> None:
    # corral serve and the Ray keeper make their pace at start-up, seconds before anyone asks.
    clock = Clock()
    pace = Pace(1200, burst_s=0.25, clock=clock)
    clock.now += 30
    waits = [pace.reserve() for _ in range(4)]
    assert waits == pytest.approx([0.05, 0.1, 0.15, 0.2])


def test_pace_never_plans_on_more_than_the_provider_says_is_left() -> None:
    clock = Clock()
    pace = Pace(600, burst_s=1.0, clock=clock)
    pace.reserve()
    clock.now += 10  # a full second's burst earned ...
    pace.at_most(3)  # ... but the provider says three are left
    waits = [pace.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2])
    pace.at_most(50)  # more left than the pace would allow: the pace stands
    assert pace.reserve() == pytest.approx(0.3)
    assert pace.horizon() == pytest.approx(clock.now + 0.3)


def test_pace_weights_tokens_and_never_deadlocks_on_a_large_cost() -> None:
    clock = Clock()
    tokens = Pace(60_000, burst_s=1.0, clock=clock)  # 1,000 tokens per second
    assert tokens.reserve(5_000) == pytest.approx(5.0)  # larger than the burst: waits, not forever
    assert tokens.reserve(500) == pytest.approx(5.5)


def test_pace_refund_charge_hold_and_new_rate() -> None:
    clock = Clock()
    pace = Pace(60, burst_s=0.0, clock=clock)  # 1 per second
    assert pace.reserve() == pytest.approx(1.0)
    pace.adjust(-1)  # refunded: the next one may go as if the first never was
    assert pace.reserve() == pytest.approx(1.0)
    pace.hold(30)
    assert pace.reserve() == pytest.approx(31.0)
    pace.set_per_minute(120)  # debt of 31 units now clears twice as fast
    assert pace.reserve() == pytest.approx(16.0)


def test_pace_rejects_a_non_positive_limit() -> None:
    with pytest.raises(ConfigError, match="must be positive"):
        Pace(0)


async def test_cancelled_waiter_gives_its_reservation_back() -> None:
    pace = Pace(60, burst_s=0.0)
    waiter = asyncio.create_task(pace.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pace.reserve() == pytest.approx(1.0, abs=0.05)


async def test_slots_bound_holders_and_follow_a_new_limit() -> None:
    slots = Slots(2)
    await slots.acquire()
    await slots.acquire()
    third = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    assert not third.done()
    slots.set_limit(3)
    await asyncio.sleep(0)
    assert third.done() and slots.held == 3
    slots.set_limit(1)
    for _ in range(3):
        slots.release()
    assert slots.held == 0


async def test_slots_cancelled_waiter_does_not_leak_a_slot() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # hands the slot to the waiter ...
    waiter.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.held == 0
    await asyncio.wait_for(slots.acquire(), 1)


def feed(
    adaptive: AdaptiveRate,
    clock: Clock,
    *,
    accepted: int,
    limited: int,
    seconds: float,
    sent_ago: float = 0.0,
) -> None:
    """``accepted`` answers, then ``limited`` 429s, evenly over ``seconds``, to requests sent
    ``sent_ago`` before each answer."""
    events = ["ok"] * accepted + ["429"] * limited
    for event in events:
        clock.now += seconds / len(events)
        if event == "ok":
            adaptive.on_success(sent_at=clock.now - sent_ago)
        else:
            adaptive.on_rate_limited(sent_at=clock.now - sent_ago)


def test_adaptive_rate_reacts_to_a_share_of_429s_not_to_strays() -> None:
    clock = Clock()
    adaptive = AdaptiveRate(decrease=0.5, increase=0.1, interval_s=1.0, threshold=0.05, clock=clock)
    answers = functools.partial(feed, adaptive, clock)

    answers(accepted=98, limited=2, seconds=2.0)  # stray 429s (2%): nothing is paced
    assert adaptive.pace is None
    answers(accepted=20, limited=0, seconds=1.0)  # 20 accepted a second ...
    answers(accepted=0, limited=5, seconds=0.01, sent_ago=0.3)  # ... then a wall of 429s: cut at once
    assert adaptive.pace is not None
    first = adaptive.pace.per_minute
    assert first < 60 * 60  # below what the server was accepting lately (~30/s over two seconds)
    answers(accepted=0, limited=10, seconds=0.1, sent_ago=0.3)  # answers to requests sent before the cut
    assert adaptive.pace.per_minute == first  # the same overshoot: no second cut
    clock.now += 1.0
    answers(accepted=10, limited=0, seconds=0.3)  # a clean stretch: grow
    grown = adaptive.pace.per_minute
    assert grown > first
    answers(accepted=0, limited=5, seconds=0.05)  # a new overshoot, of the current rate: cut again,
    # to below what the server took meanwhile (~10/s), not below the floor (half of it)
    assert 300 <= adaptive.pace.per_minute < min(grown * 0.5, 600)


def test_adaptive_rate_cannot_collapse_under_a_storm_of_429s() -> None:
    # The failure this guards against: a start-up burst against 20/s, each quarter second of 429s
    # cut again, down to one request a minute, and the run stalled. Here the server keeps
    # accepting 20 a second while refusing the rest, and retries of earlier 429s keep arriving.
    clock = Clock()
    adaptive = AdaptiveRate(clock=clock)
    for _ in range(40):  # ten seconds, a quarter at a time
        feed(adaptive, clock, accepted=5, limited=0, seconds=0.05, sent_ago=0.3)
        feed(adaptive, clock, accepted=0, limited=30, seconds=0.15, sent_ago=0.3)
        clock.now += 0.05
    assert adaptive.pace is not None
    # Never below half the most the server took in a second (20/s): at least 10/s.
    assert adaptive.pace.per_minute >= 0.5 * 20 * 60


def test_adaptive_rate_judges_only_requests_sent_at_the_current_rate() -> None:
    clock = Clock()
    adaptive = AdaptiveRate(clock=clock)
    feed(adaptive, clock, accepted=40, limited=0, seconds=2.0, sent_ago=0.3)
    feed(adaptive, clock, accepted=0, limited=10, seconds=0.0, sent_ago=0.3)
    assert adaptive.pace is not None
    waits = [adaptive.pace.reserve() for _ in range(20)]  # twenty reserved at the first rate
    clock.now += 0.01
    for _ in range(10):  # the first rate overshoots too: cut again
        adaptive.on_rate_limited(sent_at=clock.now)
    second = adaptive.pace.per_minute
    horizon = clock.now - 0.01 + waits[-1]
    for _ in range(10):  # 429s to requests that were reserved at the first rate: nothing new
        adaptive.on_rate_limited(sent_at=horizon - 0.01)
    assert adaptive.pace.per_minute == second
    for _ in range(10):  # sent after them, at the current rate: a new overshoot
        adaptive.on_rate_limited(sent_at=horizon + 0.01)
    assert adaptive.pace.per_minute < second


def test_adaptive_rate_grows_on_the_clock_without_answers() -> None:
    clock = Clock()
    adaptive = AdaptiveRate(per_minute=600, clock=clock)  # a rate that held in an earlier run
    assert adaptive.pace is not None and adaptive.pace.per_minute == 600
    for _ in range(20):  # twenty seconds in which nothing comes back
        clock.now += 1.0
        adaptive.tick()
    assert adaptive.pace.per_minute > 600


def test_a_429_pauses_every_request_for_its_retry_after() -> None:
    limits = EndpointLimits(adaptive=False)
    for _ in range(100):
        limits.answered(0.0)
    limits.rate_limited(time.monotonic(), 2.0)
    assert limits.reserve(0) == pytest.approx(2.0, abs=0.05)


def test_a_stray_overload_delays_only_its_own_request_and_a_burst_pauses_all() -> None:
    limits = EndpointLimits(adaptive=False)
    for _ in range(99):
        limits.answered(0.0)
    limits.rate_limited(time.monotonic(), 1.0, overload=True)  # 1% of recent answers: noise
    assert limits.reserve(0) == 0.0
    for _ in range(10):  # now over 5% of recent answers: the provider is overloaded, everyone waits
        limits.rate_limited(time.monotonic(), 1.0, overload=True)
    assert limits.reserve(0) == pytest.approx(1.0, abs=0.05)


async def test_slow_start_sends_one_then_doubles_each_round_trip() -> None:
    limits = EndpointLimits()
    assert limits.window == 1
    admitted: list[int] = []

    async def request(n: int) -> None:
        await limits.admit(0)
        admitted.append(n)

    tasks = [asyncio.create_task(request(n)) for n in range(8)]
    await asyncio.sleep(0)
    rounds = [len(admitted)]
    for _ in range(3):  # a round trip: every request in flight is answered
        for _ in range(rounds[-1] - (sum(rounds[:-1]) if len(rounds) > 1 else 0)):
            limits.answered(0.0)
            limits.released()
        await asyncio.sleep(0)
        rounds.append(len(admitted))
    assert rounds == [1, 3, 7, 8]  # 1, then 2 more, then 4 more: the window doubles per round trip
    await asyncio.gather(*tasks)
    for _ in range(8 - 7):
        limits.released()


async def test_slow_start_ends_at_the_first_headers_and_the_limit_paces_at_once() -> None:
    limits = EndpointLimits()
    await limits.admit(0)
    waiting = [asyncio.create_task(limits.admit(0)) for _ in range(5)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in waiting)
    limits.answered(0.0)
    limits.learn(RateLimitInfo(limit_requests=1200, remaining_requests=1199))
    limits.released()
    assert limits.window is None and limits.rpm == 1200
    await asyncio.wait_for(asyncio.gather(*waiting), 2)  # paced at 20/s now, not held by a window
    assert limits.known() == KnownLimits(rpm=1200)


def test_slow_start_ends_at_a_wall_of_429s_and_halves_at_a_stray_one() -> None:
    limits = EndpointLimits()
    for _ in range(15):  # the window grows to 16 ...
        limits.answered(0.0, time.monotonic() - 0.1)
    sent = time.monotonic()
    limits.rate_limited(sent, None)  # ... a stray refusal: halve, once, and go on
    assert limits.window == 8 and limits.rpm is None
    limits.rate_limited(sent, None)  # the same round's: the same loss, not another halving
    assert limits.window == 8
    for _ in range(4):  # then a wall: a quarter and more of the answers refused
        limits.rate_limited(time.monotonic(), None)
    assert limits.window is None and limits.rpm is not None, "paced at what the server took"
    assert EndpointLimits(adaptive=False).window is None
    assert EndpointLimits(rpm=600).window is None
    assert EndpointLimits(slow_start=False).window is None


def test_remembered_limits_pace_from_the_first_request_and_headers_correct_them() -> None:
    limits = EndpointLimits(known=KnownLimits(rpm=1200, tpm=90_000))
    assert limits.window is None and limits.rpm == 1200 and limits.tpm == 90_000
    assert limits.reserve(10) == pytest.approx(1 / 20, abs=0.01)  # evenly from the first request
    limits.learn(RateLimitInfo(limit_requests=600))
    assert limits.rpm == 600
    limits.seed(KnownLimits(rpm=5000))  # what this process learned stands
    assert limits.rpm == 600
    adaptive = EndpointLimits(known=KnownLimits(adaptive_rpm=300))
    assert adaptive.window is None and adaptive.rpm == 300
    assert EndpointLimits(rpm=100, known=KnownLimits(rpm=1200)).rpm == 100  # a given limit is a ceiling


def test_an_empty_bucket_is_waited_out_as_long_as_its_reset_says() -> None:
    # A per-minute bucket: its reset is the pace's own spacing, nothing more to wait.
    minute = EndpointLimits()
    minute.learn(RateLimitInfo(limit_requests=600, remaining_requests=0, reset_requests_s=60.0))
    assert minute.reserve(0) == pytest.approx(0.1, abs=0.01)
    # The same headers from a bucket refilled over a day (100 a day: 86.4 s a request): the next
    # request waits for its unit, not for a per-minute pace's 0.6 s.
    day = EndpointLimits()
    day.learn(RateLimitInfo(limit_requests=100, remaining_requests=0, reset_requests_s=8640.0))
    assert day.reserve(0) == pytest.approx(86.4, abs=0.05)
    # Units left: they go at the pace's own spacing (100/min: 0.6 s), whatever the reset.
    some = EndpointLimits()
    some.learn(RateLimitInfo(limit_requests=100, remaining_requests=40, reset_requests_s=5184.0))
    assert some.reserve(0) == pytest.approx(0.6, abs=0.01)


def test_adaptive_rate_sets_no_rate_from_429s_alone() -> None:
    # A burst's 429s come back before its accepted answers: refused, with nothing accepted yet, says
    # nothing of what the server takes. Paced from zero, the run fell to one request a minute.
    clock = Clock()
    adaptive = AdaptiveRate(clock=clock)
    feed(adaptive, clock, accepted=0, limited=20, seconds=0.02, sent_ago=0.001)
    assert adaptive.pace is None
    # Then the accepted answers of the same burst: now there is a measure.
    feed(adaptive, clock, accepted=50, limited=0, seconds=0.05, sent_ago=0.1)
    for _ in range(10):
        adaptive.on_rate_limited(sent_at=clock.now)
    assert adaptive.pace is not None and adaptive.pace.per_minute >= 0.5 * 50 * 60 / 1.0
    # A rate remembered from an earlier run, refused before anything was accepted: cut by
    # ``decrease``, not to nothing.
    seeded = AdaptiveRate(per_minute=1200, decrease=0.7, clock=clock)
    for _ in range(5):
        seeded.on_rate_limited(sent_at=clock.now)
    assert seeded.per_minute == pytest.approx(840)


async def test_adaptive_rate_grows_on_a_timer_while_requests_wait_and_nothing_answers() -> None:
    # One request every 10 s, a rate remembered from an earlier run: it grows ten times slower
    # near it, 10% a second here.
    adaptive = AdaptiveRate(per_minute=6, increase=1.0, interval_s=0.05)
    assert adaptive.pace is not None
    waiting = [asyncio.create_task(adaptive.pace.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    adaptive.tick()  # as admit does before it queues; from here only the timer ticks
    await asyncio.sleep(1.0)
    assert adaptive.per_minute is not None and adaptive.per_minute > 6 * 1.05  # 1.1 at best
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
