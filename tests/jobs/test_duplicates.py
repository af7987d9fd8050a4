"""Identical requests within a job are sent once and their answer fanned out to every item that needs
it: in flight (the second waits for the first), after it (the job's cache, or the answers it keeps in
memory without a store). Counted as duplicates in the summary, the store's run row and the report."""

from __future__ import annotations

import asyncio
import collections
import json
from pathlib import Path
from typing import Any

import pytest

from corral.cli._progress import summary_line
from corral.documents import run_documents
from corral.engine._stats import RunStats
from corral.jobs import ExtractOptions, JobSpec, open_job
from corral.report._data import load_report
from corral.sim import SimConfig, SimulatorThread
from corral.store import RunStore
from corral.store._cache import MemoryAnswers
from corral.types import Item
from tests._support import EXAMPLES
from tests._support.sinks import ListSink

DISTINCT = [f"My name is Person{n} and I am {20 + n} years old" for n in range(40)]
#: 100 items, 40 distinct texts; copies both right after their first (in flight together) and far
#: after it (answered already)
TEXTS = DISTINCT + DISTINCT[:30] + DISTINCT[::-1][:30]


def spec_for(url: str, out: Path | None, **changes: Any) -> JobSpec:
    extract = ExtractOptions(model="sim-1", base_url=url, concurrency=8)
    spec = JobSpec(schema=str(EXAMPLES / "person.py") + ":Person", output=str(out) if out else None)
    return spec.replace(extract=extract, **changes)


def items() -> list[Item]:
    return [Item(id=str(n), text=text) for n, text in enumerate(TEXTS)]


def asked(sim: SimulatorThread) -> collections.Counter[str]:
    return collections.Counter(entry.text for entry in sim.log)


@pytest.mark.parametrize("durable", [True, False], ids=["store", "no-store"])
async def test_identical_requests_are_sent_once_and_every_item_gets_the_answer(
    tmp_path: Path, durable: bool
) -> None:
    out = tmp_path / "out.jsonl"
    stats = RunStats()
    with SimulatorThread(SimConfig(latency_ms=30, seed=1)) as sim:
        async with open_job(spec_for(sim.url, out, durable=durable)) as job:
            result = await run_documents(job, items(), counters=stats)
        counted = asked(sim)
    assert result.status == "completed"
    assert sorted(counted) == sorted(DISTINCT) and set(counted.values()) == {1}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [str(n) for n in range(len(TEXTS))]
    assert all(r["error"] is None for r in records)
    by_text = {r["input"]: r["output"] for r in records[: len(DISTINCT)]}
    assert all(r["output"] == by_text[r["input"]] for r in records)
    assert stats.requests == len(DISTINCT)
    assert stats.shared == len(TEXTS) - len(DISTINCT) and stats.cached == 0
    assert "60 duplicates sent once" in summary_line(stats)


async def test_duplicates_are_counted_in_the_store_and_an_earlier_jobs_answers_as_cached(
    tmp_path: Path,
) -> None:
    store_dir = tmp_path / "store"
    with SimulatorThread(SimConfig(latency_ms=5, seed=1)) as sim:
        async with open_job(spec_for(sim.url, tmp_path / "a.jsonl", store=str(store_dir))) as job:
            await run_documents(job, items())
        # Another job in the same store: every answer comes from the cache an earlier job filled.
        second = RunStats()
        async with open_job(spec_for(sim.url, tmp_path / "b.jsonl", store=str(store_dir))) as job:
            await run_documents(job, items(), counters=second)
        assert len(sim.log) == len(DISTINCT)
    assert second.requests == 0 and second.cached == len(TEXTS) and second.shared == 0
    with RunStore.open(store_dir) as store:
        first_job = store.find_job(str((tmp_path / "a.jsonl").resolve()))
        assert first_job is not None
        (run,) = store.views.runs_of(first_job.id)
        assert (run.requests, run.shared, run.cached) == (len(DISTINCT), len(TEXTS) - len(DISTINCT), 0)
        (requests,) = [fact for fact in load_report(store, run.id).facts if fact.label == "Requests"]
        assert requests.value == "40" and requests.detail.endswith("· 60 duplicates sent once")
        later = store.find_job(str((tmp_path / "b.jsonl").resolve()))
        assert later is not None
        (run,) = store.views.runs_of(later.id)
        (requests,) = [fact for fact in load_report(store, run.id).facts if fact.label == "Requests"]
        assert requests.detail.endswith("· 100 from the cache")


async def test_no_cache_sends_every_request() -> None:
    with SimulatorThread(SimConfig(latency_ms=5, seed=1)) as sim:
        async with open_job(spec_for(sim.url, None, durable=False, cache=False)) as job:
            await run_documents(job, items(), sink=ListSink(keep=False))
        assert len(sim.log) == len(TEXTS)


async def test_a_failed_request_leaves_its_duplicates_to_ask_for_themselves() -> None:
    # Half the requests fail with a 500 that is not retried (retries=0): the item whose request failed
    # ends in error; the duplicates that waited for it ask again, one request at a time, until one
    # is answered, and that answer is every remaining duplicate's.
    config = SimConfig(latency_ms=20, seed=4, server_error_rate=0.5)
    stats = RunStats()
    same = ["My name is Ada and I am 36 years old"] * 12
    with SimulatorThread(config) as sim:
        extract = ExtractOptions(model="sim-1", base_url=sim.url, concurrency=12, retries=0)
        sink = ListSink()
        async with open_job(spec_for(sim.url, None, durable=False).replace(extract=extract)) as job:
            await run_documents(
                job, [Item(id=str(n), text=t) for n, t in enumerate(same)], sink, counters=stats
            )
        sent = len(sim.log)
    ok = [r for r in sink.records if r["error"] is None]
    failed = [r for r in sink.records if r["error"] is not None]
    assert failed and ok, "the seed should fail some requests and answer one"
    assert {r["error"]["kind"] for r in failed} == {"server_error"}
    assert all(r["output"] == {"name": "Ada", "age": 36} for r in ok)
    # One request per failed item, one answered for all the rest.
    assert sent == len(failed) + 1
    assert stats.shared == len(ok) - 1


def test_memory_answers_keep_the_most_recently_used_within_their_bound() -> None:
    answers = MemoryAnswers(max_bytes=3 * (2 + 10))
    for key in (b"k1", b"k2", b"k3"):
        answers.add_cache(key, "m", b"x" * 10)
    assert answers.cached_entry(b"k1") is not None  # used: now the most recent
    answers.add_cache(b"k4", "m", b"y" * 10)
    assert answers.cached_entry(b"k2") is None  # the least recently used went
    assert [key for key in (b"k1", b"k3", b"k4") if answers.cached_entry(key) is not None] == [
        b"k1",
        b"k3",
        b"k4",
    ]
    assert answers.max_bytes is not None and answers.size <= answers.max_bytes
    unbounded = MemoryAnswers(max_bytes=None)
    for n in range(1000):
        unbounded.add_cache(str(n).encode(), "m", b"z" * 100)
    assert unbounded.cached_entry(b"0") is not None


async def test_cancelling_a_duplicate_leaves_the_request_it_waits_for_alone() -> None:
    with SimulatorThread(SimConfig(latency_ms=300, seed=1)) as sim:
        async with open_job(spec_for(sim.url, None, durable=False)) as job:
            extractor = job.extractor
            first = asyncio.create_task(extractor.extract("My name is Bo and I am 40 years old"))
            await asyncio.sleep(0.05)
            second = asyncio.create_task(extractor.extract("My name is Bo and I am 40 years old"))
            await asyncio.sleep(0.05)
            second.cancel()
            outcome = await first
            with pytest.raises(asyncio.CancelledError):
                await second
        assert len(sim.log) == 1
    assert outcome.error is None and outcome.value is not None
