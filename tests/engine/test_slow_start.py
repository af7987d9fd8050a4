"""Limits as providers enforce them: against the simulator's quantized buckets (a second's worth,
starting with a second's worth), corral sends no start-up burst, paces to what headers say from the
first answer, finds a rate blindly without collapsing, and remembers what it learned for the next run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from corral import Extractor
from corral.engine._limits import EndpointLimits
from corral.engine._stats import RunStats
from corral.io.sinks import open_sink
from corral.jobs import run_job
from corral.sim import SimConfig, Simulator
from corral.store import KnownLimits, RunStore
from corral.types import Item
from tests._support import Person


def texts(n: int, tag: str = "") -> list[str]:
    return [f"My name is {tag}Person{k} and I am {18 + k % 60} years old" for k in range(n)]


@contextlib.asynccontextmanager
async def extractor(sim: Simulator, **options: Any) -> AsyncIterator[Extractor[Person]]:
    ex: Extractor[Person] = Extractor(Person, base_url=sim.url, model="sim-1", **options)
    async with ex:
        yield ex


def arrivals(sim: Simulator) -> list[float]:
    """When each request reached the simulator, from the first one on (refused ones included)."""
    times = sorted(entry.time for entry in sim.log)
    return [t - times[0] for t in times]


def most_in_one_second(times: list[float]) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_without_limits_known_the_first_requests_go_one_then_two_then_four() -> None:
    # No headers and a limit far away: the window is all that holds corral back at first.
    config = SimConfig(rpm=60_000, latency_ms=200, latency_dist="fixed", rate_limit_headers=False)
    async with Simulator(config) as sim, extractor(sim, concurrency=64) as ex:
        outcomes = [o async for o in ex.map(texts(40))]
    assert all(o.ok for o in outcomes)
    times = arrivals(sim)
    # A round: what leaves between the first answer of the round before and its own first answer
    # (every answer comes back exactly one latency after its request arrived).
    rounds, start = [], 0
    for _ in range(5):
        first = times[start]
        end = next((i for i, t in enumerate(times) if t >= first + 0.2), len(times))
        rounds.append(end - start)
        start = end
    assert rounds[:4] == [1, 2, 4, 8], rounds
    assert sim.stats.rate_limited == 0


async def test_limits_from_headers_pace_from_the_first_answer_with_no_burst_and_no_429() -> None:
    config = SimConfig(rpm=1200, latency_ms=100, latency_dist="fixed")  # quantized: 20 a second
    async with Simulator(config) as sim, extractor(sim, concurrency=64) as ex:
        outcomes = [o async for o in ex.map(texts(60))]
        assert ex.limits.rpm == 1200
    assert all(o.ok for o in outcomes)
    times = arrivals(sim)
    assert sum(1 for t in times if t < 0.1) == 1, "one request until the first answer says the limits"
    assert sim.stats.rate_limited == 0
    assert most_in_one_second(times) <= 20 + 1


async def test_a_given_limit_is_kept_from_the_first_request_against_a_per_second_server() -> None:
    config = SimConfig(rpm=1200, latency_ms=50, latency_dist="fixed", rate_limit_headers=False)
    async with Simulator(config) as sim, extractor(sim, concurrency=64, rpm=1200) as ex:
        outcomes = [o async for o in ex.map(texts(50))]
    assert all(o.ok for o in outcomes)
    assert sim.stats.rate_limited == 0
    assert most_in_one_second(arrivals(sim)) <= 20 + 1


@pytest.mark.slow
async def test_adaptive_pacing_finds_the_rate_without_headers_and_without_collapsing() -> None:
    config = SimConfig(rpm=3000, latency_ms=100, latency_dist="fixed", rate_limit_headers=False)
    async with Simulator(config) as sim, extractor(sim, concurrency=64) as ex:
        outcomes = [o async for o in ex.map(texts(300))]
        rate = ex.limits.rpm
    assert all(o.ok for o in outcomes)
    assert sim.stats.rate_limited <= 0.05 * sim.stats.requests
    assert rate is not None and rate >= 0.5 * 3000, "the rate found stays near the server's limit"


@pytest.mark.slow
async def test_adaptive_pacing_survives_a_start_up_burst_with_retries_in_flight() -> None:
    # What collapsed before: the whole concurrency at once against 50 a second, a wall of 429s and
    # their retries arriving after every cut. Slow start is off here to make that burst on purpose.
    config = SimConfig(rpm=3000, latency_ms=100, latency_dist="fixed", rate_limit_headers=False)
    limits = EndpointLimits(slow_start=False)
    async with Simulator(config) as sim, extractor(sim, concurrency=64, limits=limits) as ex:
        outcomes = [o async for o in ex.map(texts(300))]
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
    assert sim.stats.rate_limited > 20, "the burst did hit the wall"
    assert limits.rpm is not None and limits.rpm >= 0.5 * 3000, "and the rate did not collapse"


async def job(store_path: Path, sim: Simulator, items: list[str], out: Path) -> KnownLimits:
    async with extractor(sim, concurrency=64) as ex:
        with RunStore.open(store_path) as store, open_sink(str(out), "jsonl", ex.spec) as sink:
            run = store.open_job(out.name, {"test": "limits"})
            result = await run_job(
                ex, [Item(str(n), t) for n, t in enumerate(items)], sink, RunStats(), store=store, job=run
            )
            assert result.status == "completed"
            return store.known_limits(ex.backend.endpoint, ex.backend.model)


@pytest.mark.slow
async def test_a_second_run_paces_from_its_first_request_with_what_the_first_learned(tmp_path: Path) -> None:
    config = SimConfig(rpm=1200, latency_ms=300, latency_dist="fixed")
    async with Simulator(config) as sim:
        learned = await job(tmp_path / "store", sim, texts(30, "A"), tmp_path / "a.jsonl")
        assert learned == KnownLimits(rpm=1200)
        # A later run: the provider's second-long bucket has refilled (its state is kept, as a
        # provider's is; only the counters are zeroed).
        sim.reset_stats()
        await asyncio.sleep(1.0)
        await job(tmp_path / "store", sim, texts(30, "B"), tmp_path / "b.jsonl")
        times = arrivals(sim)
    # No slow start: the limit is known before the first answer, so several go in its first 300 ms,
    # evenly (20 a second), and the server refuses none.
    assert sum(1 for t in times if t < 0.3) >= 4
    assert sim.stats.rate_limited == 0
    assert most_in_one_second(times) <= 20 + 1


async def test_the_adaptive_rate_that_held_is_remembered(tmp_path: Path) -> None:
    config = SimConfig(rpm=3000, latency_ms=50, latency_dist="fixed", rate_limit_headers=False)
    async with Simulator(config) as sim:
        learned = await job(tmp_path / "store", sim, texts(200), tmp_path / "a.jsonl")
    assert learned.rpm is None and learned.adaptive_rpm is not None
    assert learned.adaptive_rpm >= 0.5 * 3000
