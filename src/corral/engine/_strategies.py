"""The engine: the article's strategies as one bounded, cancellable pipeline.

Here ``k`` bounds the items in progress; the requests in flight are bounded separately, by the
slots every request takes in :mod:`corral.engine._scheduler` (an item waiting out a backoff holds no slot).

    sequential      one request at a time, results in input order
    gather          all results at the end, in input order (bounded to k, or all at once)
    as_completed    each result as soon as it is ready (bounded to k, or all at once);
                    ``order="input"`` streams in input order instead, each result released as soon
                    as every earlier one is

Memory is bounded: a bounded strategy never holds more than a window of ``2k`` items (``16k`` when
streaming in input order, to ride out a slow head) — started, in flight, or finished but not yet
taken by the consumer. Items are pulled from the input only as the window frees, so a million-line
file streams through. ``gather`` keeps every result by definition (that is what it returns).

The pipeline runs in its own task under a TaskGroup; the consumer reads a queue. Breaking out of the
iteration, an exception, or Ctrl-C cancels every in-flight request and waits for them to finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from corral.errors import ConfigError
from corral.types import Item, Outcome

__all__ = ["ORDERS", "STRATEGIES", "Order", "Process", "Strategy", "run_strategy"]

Strategy = Literal["sequential", "gather", "as_completed"]
Order = Literal["completion", "input"]
STRATEGIES: tuple[Strategy, ...] = ("sequential", "gather", "as_completed")
ORDERS: tuple[Order, ...] = ("completion", "input")

T = TypeVar("T")
Process = Callable[[Item], Awaitable[Outcome[Any]]]


def run_strategy(
    items: Iterable[Item] | AsyncIterable[Item],
    process: Process,
    *,
    strategy: Strategy = "as_completed",
    concurrency: int | None = 16,
    order: Order = "completion",
) -> AsyncGenerator[Outcome[Any], None]:
    """Run ``process`` over ``items`` with a strategy; yields one outcome per item.

    ``concurrency=None`` means unbounded (every item started at once, as in the article's plain
    ``gather`` / ``as_completed``). ``process`` must return an outcome for the item's own failures and
    raise only for errors that should stop the whole run.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if order not in ORDERS:
        raise ConfigError(f"unknown order {order!r}: choose one of {', '.join(ORDERS)}")
    if concurrency is not None and concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, got {concurrency}")
    if strategy == "sequential":
        return _sequential(items, process)
    if strategy == "gather":
        return _gather(items, process, concurrency)
    return _stream(items, process, concurrency, order)


async def _sequential(
    items: Iterable[Item] | AsyncIterable[Item], process: Process
) -> AsyncGenerator[Outcome[Any], None]:
    async for item in _aiter(items):
        yield await process(item)


async def _gather(
    items: Iterable[Item] | AsyncIterable[Item], process: Process, concurrency: int | None
) -> AsyncGenerator[Outcome[Any], None]:
    # Everything is held until the last item finishes: that is gather's contract.
    results = [
        outcome async for outcome in _stream(items, process, concurrency, "input", unbounded_window=True)
    ]
    for outcome in results:
        yield outcome


@dataclass(slots=True)
class _Finished:
    """Sentinel: the producer has started ``count`` items, or failed with ``error``."""

    count: int
    error: BaseException | None = None


#: In input order, an item waiting out a retry holds back every later one; the window is how long the
#: rest can go on meanwhile, about this many latencies. At 4 (the first version), one 503 with
#: retry-after: 1 in a run at 50 ms and 1,000 requests/s emptied the pipe for most of a second: 1% of
#: such answers cut the run to 66% of its rate limit.
_INPUT_ORDER_WINDOW = 16


async def _stream(
    items: Iterable[Item] | AsyncIterable[Item],
    process: Process,
    concurrency: int | None,
    order: Order,
    *,
    unbounded_window: bool = False,
) -> AsyncGenerator[Outcome[Any], None]:
    results: asyncio.Queue[tuple[int, Outcome[Any]] | _Finished] = asyncio.Queue()
    window_size = None
    if concurrency is not None and not unbounded_window:
        window_size = concurrency * (_INPUT_ORDER_WINDOW if order == "input" else 2)
    window = asyncio.Semaphore(window_size) if window_size else None

    async def deliver(seq: int, item: Item) -> None:
        results.put_nowait((seq, await process(item)))

    async def worker(source: _Source) -> None:
        # A bounded run is k long-lived workers, not a task and a semaphore per item: at 1,000
        # concurrent requests the per-item bookkeeping is a visible share of the client's CPU.
        while True:
            if window is not None:
                await window.acquire()  # pull the next item only when there is room
            entry = await source.pull()
            if entry is None:
                if window is not None:
                    window.release()
                return
            await deliver(*entry)

    async def produce() -> None:
        source = _Source(items)
        try:
            async with asyncio.TaskGroup() as group:
                if concurrency is None:  # the article's unbounded gather: every item started at once
                    while (entry := await source.pull()) is not None:
                        group.create_task(deliver(*entry))
                else:
                    for _ in range(concurrency):
                        group.create_task(worker(source))
        except BaseException as exc:
            results.put_nowait(_Finished(source.count, exc))
            raise
        finally:
            await source.aclose()
        # An input that broke mid-way is reported only after every started item has finished.
        results.put_nowait(_Finished(source.count, source.error))

    producer = asyncio.create_task(produce(), name="corral-producer")
    try:
        if order == "input":
            async for outcome in _in_input_order(results, window):
                yield outcome
        else:
            async for _, outcome in _as_they_come(results, window):
                yield outcome
    finally:
        if not producer.done():
            producer.cancel()
        # Wait for cancellation to reach every request, so no task or connection outlives the run.
        await asyncio.gather(producer, return_exceptions=True)


class _Source:
    """Hands items with their sequence numbers to concurrent pullers.

    An error raised by the input (a file that turns unreadable mid-way) is kept, not raised: the
    items already started finish first, then the run reports it.
    """

    def __init__(self, items: Iterable[Item] | AsyncIterable[Item]) -> None:
        self._sync: Iterator[Item] | None = None
        self._async: AsyncIterator[Item] | None = None
        if isinstance(items, AsyncIterable):
            self._async = aiter(items)
        else:
            self._sync = iter(items)
        self._lock = asyncio.Lock()  # an async generator cannot be advanced by two tasks at once
        self._exhausted = False
        self.count = 0
        self.error: Exception | None = None

    async def pull(self) -> tuple[int, Item] | None:
        if self._exhausted:
            return None
        try:
            if self._sync is not None:
                item = next(self._sync)
            else:
                async with self._lock:
                    if self._exhausted:
                        return None
                    assert self._async is not None
                    item = await anext(self._async)
        except (StopIteration, StopAsyncIteration):
            self._exhausted = True
            return None
        except Exception as exc:
            self._exhausted = True
            self.error = exc
            return None
        seq = self.count
        self.count += 1
        return seq, item

    async def aclose(self) -> None:
        source: object = self._sync if self._sync is not None else self._async
        if isinstance(source, AsyncGenerator):
            await source.aclose()
        elif isinstance(source, Generator):
            source.close()


async def _as_they_come(
    results: asyncio.Queue[tuple[int, Outcome[Any]] | _Finished], window: asyncio.Semaphore | None
) -> AsyncIterator[tuple[int, Outcome[Any]]]:
    yielded = 0
    total: int | None = None
    while total is None or yielded < total:
        entry = await results.get()
        if isinstance(entry, _Finished):
            if entry.error is not None:
                raise _unwrap(entry.error)
            total = entry.count
            continue
        yielded += 1
        if window is not None:
            window.release()
        yield entry


async def _in_input_order(
    results: asyncio.Queue[tuple[int, Outcome[Any]] | _Finished], window: asyncio.Semaphore | None
) -> AsyncIterator[Outcome[Any]]:
    pending: dict[int, Outcome[Any]] = {}
    next_seq = 0
    async for seq, outcome in _as_they_come(results, None):
        pending[seq] = outcome
        while next_seq in pending:
            if window is not None:
                window.release()  # the slot frees when the item leaves, not when it finishes
            yield pending.pop(next_seq)
            next_seq += 1


def _unwrap(error: BaseException) -> BaseException:
    """A TaskGroup wraps a worker's error in an ExceptionGroup; the caller wants the error itself."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if isinstance(error, BaseExceptionGroup):
        # Several items failed fatally at once (e.g. every request got 401): the first one speaks for all.
        first = error.exceptions[0]
        return _unwrap(first)
    return error


async def _aiter(items: Iterable[T] | AsyncIterable[T]) -> AsyncGenerator[T, None]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
