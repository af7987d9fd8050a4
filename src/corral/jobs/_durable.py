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
ones that could not start are left for the next run (they are not written as errors).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from corral._extractor import Extractor
from corral.backends.base import Mode, Parked
from corral.engine._limits import KnownLimits
from corral.engine._stats import RunCounters
from corral.engine._strategies import Order, Process, Strategy
from corral.errors import BudgetReached, OutputInvalid
from corral.io.sinks import Sink
from corral.store import JobInfo, RunStore, StoredItem, input_hash
from corral.types import ErrorInfo, Item, Outcome, Usage

__all__ = ["JobResult", "run_job"]

#: commit at least this often while results come in, so a crash loses little and the output moves
_COMMIT_INTERVAL_S = 0.1
#: and as soon as this many rows wait, so memory stays bounded at any rate
_COMMIT_BATCH = 1024
#: the marker of an item whose answer is in a provider batch (never written, never stored)
_PARKED = "parked"
#: WAL pages are copied into the database off the event loop this often (it may wait on the disk)
_CHECKPOINT_INTERVAL_S = 1.0
#: the timeline (plots of the report) is sampled every tenth of a second at first, then at a
#: six-hundredth of the time run so far: a minute gives 600 points, a day about 5,000
_SAMPLE_EVERY_S = 0.1
_SAMPLES_PER_SPAN = 600


@dataclass(slots=True)
class JobResult:
    #: completed | interrupted | budget | stopped | failed
    status: str
    #: items pulled from the input that never started because the budget was reached
    not_started: int = 0
    budget_message: str = ""
    #: items waiting for an answer from a provider batch (not finished, not written)
    parked: int = 0


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
        self.committer = (
            _Committer(store, sink, self._snapshot) if store is not None and job is not None else None
        )
        # id(outcome) -> its commit ticket and output record (built once), until emitted
        self.tickets: dict[int, tuple[int, dict[str, Any]]] = {}
        self.prompt_tokens = self.completion_tokens = 0
        self.budget_message = ""
        #: what the store holds of this endpoint's limits and mode (written again only when they change)
        self.remembered = KnownLimits()
        self.remembered_mode = extractor.settings.ladder.current

    async def run(self, items: Iterable[Item], strategy: Strategy, order: Order) -> JobResult:
        result = JobResult("failed")
        status = "failed"
        self._seed_endpoint()
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
                self.committer.commit()
            self.sink.flush()
            if self.store is not None and self.job is not None:
                self._sample()
                self._snapshot()
                self._remember_endpoint()
                self.store.flush()
                self.store.finish_run(self.job, status)
            result.status = status
            result.budget_message = self.budget_message
        return result

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
        except Parked:
            return Outcome(id=item.id, input=item.text, error=ErrorInfo(_PARKED, ""))
        if self.committer is not None and self.job is not None:
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
        if outcome.error is not None and outcome.error.kind in (BudgetReached.kind, _PARKED):
            if outcome.error.kind == _PARKED:
                result.parked += 1
                self.counters.parked += 1
            else:
                result.not_started += 1
            return
        if self.committer is None:
            self.sink.write(outcome.to_record())
        else:
            entry = self.tickets.pop(id(outcome), None)
            ticket, record = entry if entry is not None else (0, outcome.to_record())
            self.committer.emit(ticket, record)
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

    def _seed_endpoint(self) -> None:
        """Pace from the first request, and ask in a mode the server takes, with what an earlier run
        learned of this endpoint."""
        if self.store is None:
            return
        backend = self.extractor.backend
        self.remembered = self.store.known_limits(backend.endpoint, backend.model)
        self.extractor.scheduler.limits.seed(self.remembered)
        mode = self.store.known_mode(backend.endpoint, backend.model)
        if mode in {m.value for m in backend.profile.modes}:
            self.extractor.settings.ladder.start_at(Mode(mode))
        self.remembered_mode = self.extractor.settings.ladder.current

    def _remember_endpoint(self) -> None:
        if self.store is None:
            return
        backend = self.extractor.backend
        known = self.extractor.scheduler.limits.known()
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
        stats = self.extractor.scheduler.stats
        limits = self.extractor.scheduler.limits
        counters = self.counters
        self.store.add_sample(
            self.job,
            (
                time.time(),
                counters.done,
                counters.ok,
                counters.errors,
                stats.requests,
                stats.retries,
                stats.rate_limited,
                stats.in_flight,
                counters.tokens,
                stats.cost,
                limits.rpm,
                limits.tpm,
                self.extractor.in_flight_limit,
            ),
        )

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
        self.job.faults = dict(stats.by_kind)


def _row(outcome: Outcome[Any], text_hash: int, record: dict[str, Any]) -> tuple[Any, ...]:
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
        orjson.dumps(record),
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

    def add(self, job: JobInfo, row: tuple[Any, ...]) -> int:
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
