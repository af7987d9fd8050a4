"""A durable run: every outcome goes through the run store before it reaches the output.

    input ─► (finished before? answer from the store) ─► extract ─► store batch ─► commit ─► sink
                                                                      (completion order)   (input order)

Outcomes are queued for the store as they complete and committed in batches (group commit: one
transaction whenever the writer is free, at least every quarter second). The sink writes an outcome
only once its batch is committed, so whatever is in the output is in the store, and a re-run after
``kill -9`` answers it from the store instead of asking again. The output is rewritten from the start
on every run, in input order: it always holds every finished item exactly once.

A budget that is reached stops the input: items already in flight finish and are recorded; the
ones that could not start are left for the next run (they are not written as errors).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from corral.client import Extractor
from corral.engine import Order, Process, Strategy
from corral.errors import BudgetReached, OutputInvalid
from corral.outcome import ErrorInfo, Item, Outcome, Usage
from corral.progress import RunCounters
from corral.sinks import Sink
from corral.store import JobInfo, RunStore, StoredItem, input_hash

__all__ = ["JobResult", "run_job"]

#: commit at least this often while results trickle in, so a crash loses little
_COMMIT_INTERVAL_S = 0.25
#: and as soon as this many rows wait, so memory stays bounded at any rate
_COMMIT_BATCH = 2048


@dataclass(slots=True)
class JobResult:
    #: completed | interrupted | budget | stopped | failed
    status: str
    #: items pulled from the input that never started because the budget was reached
    not_started: int = 0
    budget_message: str = ""


async def run_job(
    extractor: Extractor[Any],
    items: Iterable[Item],
    sink: Sink,
    counters: RunCounters,
    *,
    store: RunStore | None = None,
    job: JobInfo | None = None,
    strategy: Strategy = "as_completed",
    order: Order = "input",
    retry_errors: bool = False,
    on_outcome: Callable[[Outcome[Any]], None] | None = None,
) -> JobResult:
    """Run ``items`` through ``extractor`` into ``sink``, recording every outcome in ``store``."""
    run = _DurableRun(
        extractor=extractor,
        sink=sink,
        counters=counters,
        store=store,
        job=job,
        retry_errors=retry_errors,
        on_outcome=on_outcome,
    )
    return await run.run(items, strategy, order)


class _DurableRun:
    def __init__(
        self,
        *,
        extractor: Extractor[Any],
        sink: Sink,
        counters: RunCounters,
        store: RunStore | None,
        job: JobInfo | None,
        retry_errors: bool,
        on_outcome: Callable[[Outcome[Any]], None] | None,
    ) -> None:
        self.extractor = extractor
        self.sink = sink
        self.counters = counters
        self.store = store if job is not None else None
        self.job = job
        self.retry_errors = retry_errors
        self.on_outcome = on_outcome
        # Lookups cost a query per item: skip them when no earlier run finished anything.
        self.lookups = job is not None and job.finished_before > 0
        self.committer = _Committer(store, self._snapshot) if store is not None and job is not None else None
        self.tickets: dict[int, int] = {}  # id(outcome) -> its commit ticket, until written
        self.prompt_tokens = self.completion_tokens = 0
        self.budget_message = ""

    async def run(self, items: Iterable[Item], strategy: Strategy, order: Order) -> JobResult:
        result = JobResult("failed")
        status = "failed"
        ticker = asyncio.create_task(self._tick(), name="corral-tick")
        try:
            outcomes = self.extractor.map(
                self._until_budget(items), strategy=strategy, order=order, around=self._around
            )
            async with contextlib.aclosing(outcomes):
                async for outcome in outcomes:
                    await self._emit(outcome, result)
            status = "budget" if self.budget_message else "completed"
        except asyncio.CancelledError:
            status = "interrupted"
            raise
        except BaseException as exc:
            status = "stopped" if getattr(exc, "fatal", False) else "failed"
            raise
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            # Whatever finished is committed before we go, even when interrupted.
            if self.committer is not None:
                await self.committer.drain()
            self.sink.flush()
            if self.store is not None and self.job is not None:
                self._snapshot()
                self.store.finish_run(self.job, status)
            result.status = status
            result.budget_message = self.budget_message
        return result

    async def _tick(self) -> None:
        # Results that trickle in (a slow model, a slow head of the line in input order) still reach
        # the disk and the output within a fraction of a second.
        while True:
            await asyncio.sleep(_COMMIT_INTERVAL_S)
            if self.committer is not None and self.store is not None and self.store.pending:
                await self.committer.commit()
            self.sink.flush()

    def _until_budget(self, items: Iterable[Item]) -> Iterator[Item]:
        budget = self.extractor.scheduler.budget
        for item in items:
            if budget is not None and budget.reached:
                return
            yield item

    async def _around(self, item: Item, extract: Process) -> Outcome[Any]:
        text_hash = input_hash(item.text) if self.committer is not None else 0
        if self.lookups and self.store is not None and self.job is not None:
            stored = self.store.lookup(self.job, item.id, text_hash)
            if stored is not None and not (self.retry_errors and stored.status == "error"):
                reused = self._reused(stored)
                if reused is not None:
                    return reused
        try:
            outcome = await extract(item)
        except BudgetReached as exc:
            self.budget_message = self.budget_message or str(exc)
            return Outcome(id=item.id, input=item.text, error=ErrorInfo(BudgetReached.kind, str(exc)))
        if self.committer is not None and self.job is not None:
            self.tickets[id(outcome)] = self.committer.add(self.job, _row(outcome, text_hash))
        return outcome

    def _reused(self, stored: StoredItem) -> Outcome[Any] | None:
        record = orjson.loads(stored.record)
        error = record["error"]
        value = None
        if error is None:
            spec = self.extractor.spec
            output = record["output"]
            try:
                value = spec.parse(orjson.dumps({"items": output} if spec.many else output))
            except OutputInvalid:
                return None  # stored under another version of the schema: extract it again
        usage = record["usage"]
        return Outcome(
            id=record["id"],
            input=record["input"],
            value=value,
            error=None if error is None else ErrorInfo(error["kind"], error["message"]),
            attempts=record["attempts"],
            usage=Usage(usage["prompt_tokens"], usage["completion_tokens"]),
            latency=record["latency"],
            output=record["output"],
            reused=True,
        )

    async def _emit(self, outcome: Outcome[Any], result: JobResult) -> None:
        if outcome.error is not None and outcome.error.kind == BudgetReached.kind:
            result.not_started += 1
            return
        ticket = self.tickets.pop(id(outcome), 0)
        if self.committer is not None and ticket > self.committer.durable:
            self.sink.flush()  # what is written so far becomes visible while we wait for the disk
            await self.committer.wait(ticket)
        self.sink.write(outcome.to_record())
        self._count(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _count(self, outcome: Outcome[Any]) -> None:
        counters = self.counters
        counters.done += 1
        if outcome.error is None:
            counters.ok += 1
        else:
            counters.errors += 1
            counters.kinds[outcome.error.kind] = counters.kinds.get(outcome.error.kind, 0) + 1
        if outcome.reused:
            counters.reused += 1
        else:
            counters.tokens += outcome.usage.total_tokens
            self.prompt_tokens += outcome.usage.prompt_tokens
            self.completion_tokens += outcome.usage.completion_tokens

    def _snapshot(self) -> None:
        """Copy this run's counters into the job row written with the next batch."""
        if self.job is None:
            return
        stats = self.extractor.scheduler.stats
        c = self.job.counters
        c["items"], c["ok"], c["errors"] = self.counters.done, self.counters.ok, self.counters.errors
        c["reused"], c["requests"], c["cached"] = self.counters.reused, stats.requests, stats.cached
        c["retries"], c["cost"] = stats.retries, stats.cost
        c["prompt_tokens"], c["completion_tokens"] = self.prompt_tokens, self.completion_tokens


def _row(outcome: Outcome[Any], text_hash: int) -> tuple[Any, ...]:
    error = outcome.error
    return (
        outcome.id,
        text_hash,
        "ok" if error is None else "error",
        None if error is None else error.kind,
        outcome.attempts,
        outcome.usage.prompt_tokens,
        outcome.usage.completion_tokens,
        outcome.cost,
        outcome.latency,
        orjson.dumps(outcome.to_record()),
    )


class _Committer:
    """Group commit: one batch at a time on a worker thread; tickets say what is durable."""

    def __init__(self, store: RunStore, snapshot: Callable[[], None]) -> None:
        self.store = store
        self.snapshot = snapshot
        self.added = 0
        #: every row with a ticket up to this one is committed
        self.durable = 0
        self._task: asyncio.Task[None] | None = None

    def add(self, job: JobInfo, row: tuple[Any, ...]) -> int:
        self.store.add_item(job, row)
        self.added += 1
        if self.store.pending >= _COMMIT_BATCH:
            self._start()
        return self.added

    async def wait(self, ticket: int) -> None:
        while self.durable < ticket:
            # Shielded: a waiter cancelled by Ctrl-C must not abandon a commit half-way.
            await asyncio.shield(self._start())

    async def commit(self) -> None:
        await asyncio.shield(self._start())

    async def drain(self) -> None:
        """Commit everything queued (the end of a run, however it ended)."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task  # its error, if any, was already raised to a waiter
        self.snapshot()
        self.store.flush()
        self.durable = self.added

    def _start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._commit(), name="corral-commit")
        return self._task

    async def _commit(self) -> None:
        self.snapshot()
        upto = self.added
        items, cache = self.store.take()  # on the loop thread: nothing is added while we take
        await asyncio.to_thread(self.store.write, items, cache)
        self.store.committed(cache)
        self.durable = upto
