"""Items without an end in a durable pass: those whose answers wait in a provider batch (deferred), and
those the budget kept from starting. Neither is written nor recorded (a later pass finishes them);
each is counted as what it is, in the run's one counter object, never as an error."""

from __future__ import annotations

import json
from pathlib import Path

from corral import Budget, Completion, Extractor, Mode, Price, Profile, Request, RunStore, Usage
from corral.backends.base import DEFERRED, Reply
from corral.engine._stats import RunStats
from corral.io.sinks import open_sink
from corral.jobs import run_job
from corral.store import input_hash
from corral.types import Item
from tests._support.article import Person

PRICES = {"later-1": Price(1.0, 1.0)}
ITEMS = [Item(str(n), f"My name is Person{n} and I am {20 + n} years old") for n in range(6)]


class AnswersOddLater:
    """Answers items with an even id now and defers the others, as a batching backend does."""

    @property
    def profile(self) -> Profile:
        return Profile("later", (Mode.JSON_OBJECT,))

    @property
    def model(self) -> str:
        return "later-1"

    @property
    def endpoint(self) -> str:
        return "memory://later"

    @property
    def context_window(self) -> int | None:
        return None

    async def complete(self, request: Request) -> Reply:
        n = int(request.item_id)
        if n % 2:
            return DEFERRED
        text = json.dumps({"name": f"Person{n}", "age": 20 + n})
        return Completion(text, "stop", Usage(100, 10), {"role": "assistant", "content": text})

    async def aclose(self) -> None:
        pass


async def test_deferred_items_are_counted_and_neither_written_nor_recorded(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    stats = RunStats()
    with RunStore.open(tmp_path / "store") as store:
        job = store.open_job("out", {"model": "later-1"})
        async with Extractor(Person, backend=AnswersOddLater(), prices=PRICES) as ex:
            with open_sink(str(out), "jsonl", ex.spec) as sink:
                result = await run_job(ex, ITEMS, sink, stats, store=store, job=job)
        finished = [item.id for item in ITEMS if store.lookup(job, item.id, input_hash(item.text))]
    assert result.status == "completed"
    assert (result.counts.deferred, stats.deferred) == (3, 3)
    assert (stats.done, stats.ok, stats.errors, stats.requests) == (3, 3, 0, 3)
    assert [row["id"] for row in map(json.loads, out.read_text().splitlines())] == ["0", "2", "4"]
    assert finished == ["0", "2", "4"], "only the items that ended are in the store"


async def test_items_the_budget_kept_from_starting_are_not_started_not_failed(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    stats = RunStats()
    budget = Budget(0.0)  # not even one request fits
    async with Extractor(Person, backend=AnswersOddLater(), prices=PRICES, budget=budget) as ex:
        with open_sink(str(out), "jsonl", ex.spec) as sink:
            result = await run_job(ex, ITEMS, sink, stats, strategy="sequential")
    assert result.status == "budget" and "budget reached" in result.budget_message
    assert (result.counts.not_started, stats.not_started) == (1, 1), "pulled, then stopped at its request"
    assert (stats.done, stats.errors, stats.kinds) == (0, 0, {})
    assert out.read_text() == ""
