"""A durable run: every outcome goes through the run store before it reaches the output.

    input ─► (finished before? answer from the store) ─► extract ─► store batch ─► commit ─► sink
                                                                      (completion order)   (input order)

Outcomes are queued for the store as they complete and committed in batches (one transaction every
tenth of a second, or sooner once a thousand rows wait). The engine hands outcomes on in output order
into a queue that the sink drains only up to the last commit, so whatever is in the output is in the
store, and a re-run after ``kill -9`` answers it from the store instead of asking again; the engine
never waits for the disk. The output is rewritten from the start on every run, in input order: it
always holds every finished item exactly once.

A budget that is reached stops the input: items already in flight finish and are recorded; the
ones that could not start are left for the next run (they are not written as errors). Items whose
answers wait in provider batches (deferred) are neither written nor recorded either: a later pass
finds their answers. Both are counted as what they are, in the run's one
:class:`~corral.engine._stats.RunStats`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from corral._extractor import Extractor
from corral.backends.base import Mode
from corral.engine._stats import RunStats, StatsSnapshot
from corral.engine._strategies import Order, Process, Strategy
from corral.errors import BudgetReached, OutputInvalid
from corral.io.sinks import Sink, dump_record
from corral.jobs._record import record_counters, timeline_point
from corral.store import ItemRow, JobInfo, KnownLimits, RunStore, StoredItem, input_hash
from corral.types import ErrorInfo, Item, Outcome, Usage

__all__ = ["JobResult", "run_job"]

#: commit at least this often while results come in, so a crash loses little and the output moves
_COMMIT_INTERVAL_S = 0.1
#: and as soon as this many rows wait, so memory stays bounded at any rate
_COMMIT_BATCH = 1024
#: WAL pages are copied into the database off the event loop this often (it may wait on the disk)
_CHECKPOINT_INTERVAL_S = 1.0
#: the timeline (plots of the report) is sampled every tenth of a second at first, then at a
#: six-hundredth of the time run so far: a minute gives 600 points, a day about 5,000
_SAMPLE_EVERY_S = 0.1
_SAMPLES_PER_SPAN = 600


@dataclass(slots=True)
class JobResult:
    """How a pass ended, and what became of its items."""

    #: completed | interrupted | budget | stopped | failed
    status: str
    #: the run's counters as the pass ended (``deferred``, ``not_started``, ...): a frozen copy, as
    #: the live ones go on counting in the next pass of a batch job
    counts: StatsSnapshot
    #: why the budget stopped the input (status "budget")
    budget_message: str = ""


async def run_job(
    extractor: Extractor[Any],
    items: Iterable[Item] | AsyncIterable[Item],
    sink: Sink,
    stats: RunStats,
    *,
    store: RunStore | None = None,
    job: JobInfo | None = None,
    strategy: Strategy = "as_completed",
    order: Order = "input",
    retry_errors: bool = False,
    on_outcome: Callable[[Outcome[Any]], None] | None = None,
    on_pending: Callable[[Outcome[Any]], None] | None = None,
) -> JobResult:
    """Run ``items`` through ``extractor`` into ``sink``, recording every outcome in ``store``.

    ``stats``: the run's counters. This pass counts its items into them, and the extractor its
    requests; pass the same object to every pass of a run (batch mode replays the input each round:
    see :meth:`RunStats.start_pass`). ``on_outcome`` sees every item that ended, ``on_pending`` every
    one that did not (deferred to a provider batch, or not started for the budget)."""
    run = _DurableRun(
        extractor=extractor,
        sink=sink,
        stats=stats,
        store=store,
        job=job,
        retry_errors=retry_errors,
        on_outcome=on_outcome,
        on_pending=on_pending,
    )
    return await run.run(items, strategy, order)


class _DurableRun:
    def __init__(
        self,
        *,
        extractor: Extractor[Any],
        sink: Sink,
        stats: RunStats,
        store: RunStore | None,
        job: JobInfo | None,
        retry_errors: bool,
        on_outcome: Callable[[Outcome[Any]], None] | None,
        on_pending: Callable[[Outcome[Any]], None] | None,
    ) -> None:
        self.extractor = extractor
        self.sink = sink
        self.stats = stats
        self.store = store if job is not None else None
        self.job = job
        self.retry_errors = retry_errors
        self.on_outcome = on_outcome
        self.on_pending = on_pending
        # Lookups cost a query per item: skip them when no earlier run finished anything.
        self.lookups = job is not None and job.finished_before > 0
        self.committer = (
            _Committer(store, sink, self._record_counters) if store is not None and job is not None else None
        )
        # id(outcome) -> its commit ticket and output record (built once), until emitted
        self.tickets: dict[int, tuple[int, dict[str, Any]]] = {}
        self.budget_message = ""
        #: what the store holds of this endpoint's limits and mode (written again only when they change)
        self.remembered = KnownLimits()
        self.remembered_mode = extractor.settings.ladder.current

    async def run(
        self, items: Iterable[Item] | AsyncIterable[Item], strategy: Strategy, order: Order
    ) -> JobResult:
        status = "failed"
        stats = self.stats
        stats.start_pass()
        stats.priced = self.extractor.price is not None
        stats.spent_before = self.job.spent_before if self.job is not None else None
        self._seed_endpoint()
        ticker = asyncio.create_task(self._tick(), name="corral-tick")
        try:
            outcomes = self.extractor.map(
                self._until_budget(items), strategy=strategy, order=order, around=self._around, stats=stats
            )
            async with contextlib.aclosing(outcomes):
                async for outcome in outcomes:
                    self._emit(outcome)
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
                self.committer.commit()
            self.sink.flush()
            if self.store is not None and self.job is not None:
                self._sample()
                self._record_counters()
                self._remember_endpoint()
                self.store.flush()
                self.store.finish_run(self.job, status)
        return JobResult(status, stats.snapshot(), self.budget_message)

    async def _tick(self) -> None:
        # Results reach the disk and the output within a fraction of a second, however they trickle.
        checkpoint_at = 0.0
        loop = asyncio.get_running_loop()
        started = sample_at = loop.time()
        self._sample()
        while True:
            await asyncio.sleep(_COMMIT_INTERVAL_S)
            now = loop.time()
            if now >= sample_at:
                sample_at = now + max(_SAMPLE_EVERY_S, (now - started) / _SAMPLES_PER_SPAN)
                self._sample()
            if self.committer is not None:
                self.committer.commit()
            self.sink.flush()
            if self.store is not None and loop.time() >= checkpoint_at:
                checkpoint_at = loop.time() + _CHECKPOINT_INTERVAL_S
                self._remember_endpoint()  # so a run killed later still leaves them to the next
                await asyncio.to_thread(self.store.checkpoint)

    async def _until_budget(self, items: Iterable[Item] | AsyncIterable[Item]) -> AsyncIterator[Item]:
        budget = self.extractor.budget
        if isinstance(items, AsyncIterable):
            async for item in items:
                if budget is not None and budget.reached:
                    return
                yield item
            return
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
                    # The input's fields as this run keeps them (--keep), whatever an earlier run kept.
                    reused.kept = item.kept
                    return reused
        try:
            outcome = await extract(item)
        except BudgetReached as exc:
            self.budget_message = self.budget_message or str(exc)
            return Outcome(id=item.id, input=item.text, pending="not_started")
        outcome.kept = item.kept
        if outcome.pending is None and self.committer is not None and self.job is not None:
            record = outcome.to_record()
            self.tickets[id(outcome)] = self.committer.add(self.job, _row(outcome, text_hash, record)), record
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
        confidence = record.get("confidence")
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
            confidence={path: entry["value"] for path, entry in confidence.items()} if confidence else None,
            confidence_method=next(iter(confidence.values()))["method"] if confidence else "logprobs",
            escalation=record.get("escalation"),
        )

    def _emit(self, outcome: Outcome[Any]) -> None:
        if outcome.pending is not None:
            if outcome.pending == "deferred":
                self.stats.deferred += 1
            else:
                self.stats.not_started += 1
            if self.on_pending is not None:
                self.on_pending(outcome)
            return
        if self.committer is None:
            self.sink.write(outcome.to_record())
        else:
            entry = self.tickets.pop(id(outcome), None)
            ticket, record = entry if entry is not None else (0, outcome.to_record())
            self.committer.emit(ticket, record)
        self.stats.ended(outcome)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _seed_endpoint(self) -> None:
        """Pace from the first request, and ask in a mode the server takes, with what an earlier run
        learned of this endpoint."""
        if self.store is None:
            return
        backend = self.extractor.backend
        self.remembered = self.store.known_limits(backend.endpoint, backend.model)
        self.extractor.limits.seed(self.remembered)
        mode = self.store.known_mode(backend.endpoint, backend.model)
        if mode in {m.value for m in backend.profile.modes}:
            self.extractor.settings.ladder.start_at(Mode(mode))
        self.remembered_mode = self.extractor.settings.ladder.current

    def _remember_endpoint(self) -> None:
        if self.store is None:
            return
        backend = self.extractor.backend
        known = self.extractor.limits.known()
        if known and known != self.remembered:
            self.store.remember_limits(backend.endpoint, backend.model, known)
            self.remembered = known
        mode = self.extractor.settings.ladder.current
        if mode != self.remembered_mode:  # the server refused the mode tried first
            self.store.remember_mode(backend.endpoint, backend.model, mode.value)
            self.remembered_mode = mode

    def _sample(self) -> None:
        """A point of the run's timeline, written with the next batch (the report plots them)."""
        if self.store is None or self.job is None:
            return
        limits = self.extractor.limits
        point = timeline_point(
            self.stats.snapshot(), rpm=limits.rpm, tpm=limits.tpm, concurrency=self.extractor.in_flight_limit
        )
        self.store.add_sample(self.job, point)

    def _record_counters(self) -> None:
        """The run's counters into its row in the store, written with the next batch."""
        if self.job is not None:
            record_counters(self.job, self.stats.snapshot())


def _row(outcome: Outcome[Any], text_hash: int, record: dict[str, Any]) -> ItemRow:
    error = outcome.error
    return ItemRow(
        item_id=outcome.id,
        input_hash=text_hash,
        status="ok" if error is None else "error",
        error_kind=None if error is None else error.kind,
        attempts=outcome.attempts,
        prompt_tokens=outcome.usage.prompt_tokens,
        completion_tokens=outcome.usage.completion_tokens,
        cost=outcome.cost,
        latency=outcome.latency,
        record=dump_record(record),  # a kept input field may be a Decimal, bytes: never fail the row
    )


class _Committer:
    """Group commit on the event loop: tickets say which outcomes are durable; the sink gets each
    record, in the order it was emitted, once its ticket is."""

    def __init__(self, store: RunStore, sink: Sink, snapshot: Callable[[], None]) -> None:
        self.store = store
        self.sink = sink
        self.snapshot = snapshot
        self.added = 0
        #: every row with a ticket up to this one is committed
        self.durable = 0
        self._waiting: collections.deque[tuple[int, dict[str, Any]]] = collections.deque()

    def add(self, job: JobInfo, row: ItemRow) -> int:
        self.store.add_item(job, row)
        self.added += 1
        if self.store.pending >= _COMMIT_BATCH:
            self.commit()
        return self.added

    def emit(self, ticket: int, record: dict[str, Any]) -> None:
        if ticket <= self.durable and not self._waiting:
            self.sink.write(record)
            return
        self._waiting.append((ticket, record))
        if len(self._waiting) >= 4 * _COMMIT_BATCH:
            self.commit()

    def commit(self) -> None:
        """Commit what is queued (a batch costs milliseconds: done in place, between tasks)."""
        if self.store.pending:
            self.snapshot()
            self.store.flush()
        # Everything added is on disk now, by this flush or by another run's on a shared store (a
        # server runs many jobs on one): flushes happen on this thread, and each takes every row.
        self.durable = self.added
        while self._waiting and self._waiting[0][0] <= self.durable:
            self.sink.write(self._waiting.popleft()[1])
