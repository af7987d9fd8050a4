"""Replies that are not an answer sent now: a request a batching backend defers, and an answer it held
from a collected batch. Each is counted once, as what it is (never counted, then taken back), and a
deferred item ends without an end: neither a value nor an error."""

from __future__ import annotations

import pytest

from corral import Budget, Completion, Extractor, ItemError, Mode, Price, Profile, Request, Usage
from corral.backends.base import DEFERRED, Held, Reply
from corral.engine._stats import RunStats
from corral.errors import ServerError
from corral.types import Item
from tests._support.article import Person

PRICE = Price(1.0, 1.0)  # a dollar per million tokens, either way: easy sums


def completion(usage: Usage) -> Completion:
    text = '{"name": "John", "age": 20}'
    return Completion(text, "stop", usage, {"role": "assistant", "content": text})


class BatchLike:
    """A backend that replies as a batching one does, by item: ``deferred`` waits in a batch, ``held``
    was answered by a collected one (for $0.25), ``failed`` ended as an error line of one, and
    ``online`` is sent now."""

    def __init__(self) -> None:
        failed = ServerError("batch line failed")
        failed.retryable = False  # resubmitted as often as allowed already
        self.replies: dict[str, Reply] = {
            "deferred": DEFERRED,
            "held": Held(completion(Usage(10, 5)), cost=0.25),
            "failed": Held(failed),
            "online": completion(Usage(1_000, 500)),
        }

    @property
    def profile(self) -> Profile:
        return Profile("batch-like", (Mode.JSON_OBJECT,))

    @property
    def model(self) -> str:
        return "batch-like-1"

    @property
    def endpoint(self) -> str:
        return "memory://batch-like"

    @property
    def context_window(self) -> int | None:
        return None

    async def complete(self, request: Request) -> Reply:
        return self.replies[request.item_id]

    async def aclose(self) -> None:
        pass


ITEMS = [Item(name, f"text of {name}") for name in ("deferred", "held", "failed", "online")]


async def test_each_reply_is_counted_once_as_what_it_is() -> None:
    budget = Budget(1.0)
    stats = RunStats()
    async with Extractor(Person, backend=BatchLike(), prices={"batch-like-1": PRICE}, budget=budget) as ex:
        outcomes = {o.id: o async for o in ex.map(ITEMS, stats=stats)}
    assert ex.stats.requests == 0, "the run brought its own counters: the extractor's stay untouched"

    deferred = outcomes["deferred"]
    assert (deferred.status, deferred.ok, deferred.error, deferred.attempts) == ("deferred", False, None, 0)
    with pytest.raises(ItemError, match="waits in a provider batch"):
        deferred.unwrap()
    held, failed, online = outcomes["held"], outcomes["failed"], outcomes["online"]
    assert (held.status, held.attempts, held.cost) == ("ok", 1, 0.25), "the item's share of its batch"
    assert failed.status == "error" and failed.error is not None and failed.error.kind == "server_error"
    assert failed.attempts == 1
    assert online.status == "ok" and online.cost == pytest.approx(0.0015)

    # One request was sent by this run; the batch's answer and error line were sent with their batch.
    assert (stats.requests, stats.batched, stats.batch_failed, stats.retries) == (1, 1, 1, 0)
    assert stats.faults == {"server_error": 1}
    assert stats.in_flight == 0
    assert stats.cost == pytest.approx(0.0015), "a batch's answers were paid when it was collected"
    # The deferred request is paid with its batch: its worst case stays held against the budget.
    assert budget.reserved == 0
    assert budget.spent >= 0.0015 + 1024 * PRICE.output / 1e6


async def test_an_answer_held_from_a_batch_is_neither_a_request_nor_paid_again() -> None:
    stats = RunStats()
    async with Extractor(Person, backend=BatchLike(), prices={"batch-like-1": PRICE}) as ex:
        (outcome,) = [o async for o in ex.map([Item("held", "text of held")], stats=stats)]
    assert outcome.ok and outcome.cost == 0.25
    assert (stats.requests, stats.batched, stats.cost) == (0, 1, 0.0)
