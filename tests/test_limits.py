"""The pacing primitives, on a clock the test controls (no sleeping, no wall-clock assertions)."""

from __future__ import annotations

import asyncio
import time

import pytest

from corral.errors import ConfigError
from corral.limits import AdaptiveRate, EndpointLimits, Pace, Slots


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
    clock.now += 10  # idle long enough to earn the full burst, and no more
    waits = [pace.reserve() for _ in range(12)]
    assert waits[:10] == pytest.approx([0.0] * 10)
    assert waits[10:] == pytest.approx([0.1, 0.2])


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


def test_adaptive_rate_reacts_to_a_share_of_429s_not_to_strays() -> None:
    clock = Clock()
    adaptive = AdaptiveRate(decrease=0.5, increase=0.1, interval_s=1.0, threshold=0.05, clock=clock)

    def answers(accepted: int, limited: int, seconds: float, sent_ago: float = 0.0) -> None:
        events = ["ok"] * accepted + ["429"] * limited
        for event in events:
            clock.now += seconds / len(events)
            if event == "ok":
                adaptive.on_success()
            else:
                adaptive.on_rate_limited(sent_at=clock.now - sent_ago)

    answers(accepted=98, limited=2, seconds=2.0)  # stray 429s (2%): nothing is paced
    assert adaptive.pace is None
    answers(accepted=20, limited=0, seconds=1.0)  # 20 accepted a second ...
    answers(accepted=0, limited=5, seconds=0.01, sent_ago=0.3)  # ... then a wall of 429s: cut at once
    assert adaptive.pace is not None
    first = adaptive.pace.per_minute
    assert first < 20 * 60  # below what the server was accepting
    answers(accepted=0, limited=10, seconds=0.1, sent_ago=0.3)  # answers to requests sent before the cut
    assert adaptive.pace.per_minute == first  # the same overshoot: no second cut
    clock.now += 1.0
    answers(accepted=10, limited=0, seconds=0.3)  # a clean stretch: grow
    grown = adaptive.pace.per_minute
    assert grown > first
    answers(accepted=0, limited=5, seconds=0.05)  # a new overshoot, an interval later: cut again
    assert adaptive.pace.per_minute == pytest.approx(grown * 0.5)


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
