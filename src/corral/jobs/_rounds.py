"""A job through provider batches: submit, wait (polling with backoff), collect, and go round again.

    ┌─► replay the input (answers from the store; new requests and re-asks deferred) ─► submit batch
    │                                                                                     │
    └──── collect: every line's answer into the store (matched by custom_id) ◄── wait ◄───┘

Each round replays the whole input through the ordinary extraction (see :mod:`corral.jobs._batch`):
items whose answers are all in the store finish and are written; an invalid answer is re-asked in
the next batch; an errored or expired line is resubmitted (``batch_retries``) or ends as the item's
error. The job is complete when a replay defers nothing. Nothing of this lives only in memory: batch
ids and every line's state are in the run store, so ``corral batch collect`` in a new process (after
a crash, a reboot, or a ``submit`` that did not wait) carries on where the last one stopped.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from corral.backends.batch._base import LineResult, RemoteBatch
from corral.cost import Budget, Price
from corral.engine._stats import RunStats
from corral.errors import BadRequest, BatchCanceled, BatchExpired, CorralError, ProviderError, ServerError
from corral.jobs._batch import BatchBackend, encode_error
from corral.store import BatchInfo, LineAnswer
from corral.store._cache import encode_completion

__all__ = ["BatchJob", "Poll"]

#: rows written per transaction while a batch's results are read
_CHUNK = 2000
#: a custom_id is the hex of the request's cache key (blake2b, 20 bytes): 40 characters
_KEY_BYTES = 20
_OPENAI_ENDED = {"expired": "expired", "cancelled": "canceled", "failed": "failed"}
#: a batch read that keeps failing transiently is asked again for this long (the batch window): a
#: provider's bad hour must not end a job whose batches are fine
_PATIENCE_S = 24 * 3600.0
#: the backoff between tries of one read: full jitter, doubling from this ...
_RETRY_FIRST_S = 1.0
#: ... up to this (a retry-after the provider gives is honoured even when longer)
_RETRY_MOST_S = 120.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Poll:
    """How often to ask a provider about its batches: ``first`` seconds, growing to ``most``."""

    first: float = 10.0
    most: float = 300.0
    growth: float = 1.5


@dataclass(slots=True)
class Collected:
    """What one collected batch brought: its answers, its failed lines, and what they cost."""

    answered: int = 0
    failed: int = 0
    cost: float = 0.0


class BatchJob:
    """Drives one job's batches: recovery, polling, collection, and the submit/collect rounds."""

    def __init__(
        self,
        backend: BatchBackend,
        *,
        price: Price | None,
        stats: RunStats,
        budget: Budget | None = None,
        poll: Poll | None = None,
        report: Callable[[str], None] | None = None,
        lost: str = "resubmit",
    ) -> None:
        self.backend = backend
        #: a batch that may exist but cannot be found: "resubmit" its requests, or "wait" (stop, say so)
        self.lost = lost
        self.api = backend.api
        #: what an answer of a batch costs (``price``: the online one)
        self.price = backend.price(price)
        #: the job's counters: a collected batch's cost is this run's spending
        self.stats = stats
        self.budget = budget
        self.poll = poll or Poll()
        self.report = report or (lambda text: None)

    async def run(self, replay: Callable[[], Awaitable[int]], *, wait: bool) -> str:
        """Rounds until the job is complete ("completed") or, without ``wait``, once its requests are
        submitted ("submitted"). ``replay`` runs the input once and says how many items it deferred."""
        await self.recover()
        await self.check()
        while True:
            if wait and self.open_batches():
                await self.wait()
            deferred = await replay()
            await self.backend.flush()
            if deferred == 0:
                return "completed"
            if not wait:
                return "submitted"
            if not self.open_batches():
                raise CorralError(  # a deferred item always has a line in an open batch; say so if not
                    f"{deferred} items wait for batch answers but no batch is open: run `corral batch status`"
                )

    def open_batches(self) -> list[BatchInfo]:
        store, job = self.backend.attached()
        return store.batches.of_job(job.id, only_open=True)

    async def recover(self) -> None:
        """Batches recorded but never confirmed (the process died while submitting): find them at the
        provider by their label, or forget them so their requests are submitted again."""
        for batch in self.open_batches():
            if batch.remote_id is not None:
                continue
            find = functools.partial(
                self.api.find,
                batch.label,
                created=batch.created,
                requests=batch.requests,
                known=self.backend.known_batches(),
            )
            found = await self._patiently(f"finding batch {batch.label}", find)
            if found is not None:
                self.backend.update_batch(batch.id, found)
                self.report(f"found batch {found.id} submitted by an interrupted run")
                continue
            if not self.backend.api.labels_batches:
                # Nothing on an Anthropic batch says whose it is: "not found" is not "never made".
                if self.lost == "wait":
                    raise CorralError(
                        f"batch {batch.label} ({batch.requests:,} requests) may have been created: "
                        "the run stopped before the provider's answer came back, and no one batch "
                        "of that size and time is in its list. Nothing was resubmitted. Run "
                        "`corral batch collect` again later, or with --lost-batches resubmit to send "
                        "its requests again (they may then be paid twice)"
                    )
                self.report(
                    f"batch {batch.label} ({batch.requests:,} requests) may have been created before "
                    "the run stopped, but no one batch of that size and time is in the provider's "
                    "list: its requests are submitted again and may be paid twice "
                    "(--lost-batches wait keeps them back instead)"
                )
            else:
                self.report(f"batch {batch.label} was never created (the run stopped while submitting)")
            self._forget(batch.id)

    async def refresh(self) -> None:
        """Ask once about every open batch and record what the provider says (``batch status``)."""
        for batch in self.open_batches():
            if batch.remote_id is not None:
                self.backend.update_batch(batch.id, await self._status(batch.remote_id))

    async def check(self) -> None:
        """Ask once about every open batch; collect those that have ended."""
        for batch in self.open_batches():
            assert batch.remote_id is not None
            remote = await self._status(batch.remote_id)
            self.backend.update_batch(batch.id, remote)
            if remote.done:
                await self.collect(batch, remote)

    async def wait(self) -> None:
        """Poll every open batch, backing off, until none is open; collect each as it ends."""
        delay = self.poll.first
        seen: dict[int, str] = {}
        while True:
            open_batches = self.open_batches()
            if not open_batches:
                return
            for batch in open_batches:
                assert batch.remote_id is not None
                remote = await self._status(batch.remote_id)
                self.backend.update_batch(batch.id, remote)
                described = _describe(remote)
                if seen.get(batch.id) != described:
                    seen[batch.id] = described
                    self.report(f"batch {remote.id}: {described}")
                if remote.done:
                    await self.collect(batch, remote)
                    delay = self.poll.first  # others may be close behind
            if self.open_batches():
                await asyncio.sleep(delay)
                delay = min(self.poll.most, delay * self.poll.growth)

    async def cancel(self) -> list[RemoteBatch]:
        """Ask the provider to cancel every open batch; their unanswered lines end as ``canceled``."""
        cancelled = []
        for batch in self.open_batches():
            if batch.remote_id is None:
                continue
            remote = await self.api.cancel(batch.remote_id)
            self.backend.update_batch(batch.id, remote)
            cancelled.append(remote)
        return cancelled

    # --- collection ---------------------------------------------------------------------------------

    async def _status(self, remote_id: str) -> RemoteBatch:
        status = functools.partial(self.api.status, remote_id)
        return await self._patiently(f"asking about batch {remote_id}", status)

    async def _patiently(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """A read of the provider's batches (a poll, a listing, a download), retried like an online
        request (backoff with full jitter, never sooner than its retry-after) for as long as the
        batch window lasts: only an error that retrying cannot fix ends it."""
        started = time.monotonic()
        tries = 0
        while True:
            try:
                return await call()
            except ProviderError as exc:
                if not exc.retryable or time.monotonic() - started > _PATIENCE_S:
                    raise
                tries += 1
                # A job polled faster than a second (a test, a gateway on loopback) retries as fast.
                first = min(_RETRY_FIRST_S, self.poll.first)
                backoff = random.uniform(0, min(_RETRY_MOST_S, first * 2**tries))
                delay = max(backoff, exc.retry_after or 0.0)
                self.report(f"{what} failed ({exc}); asking again in {delay:.1f} s")
                await asyncio.sleep(delay)

    async def collect(self, batch: BatchInfo, remote: RemoteBatch) -> Collected:
        """Every answer of an ended batch into the store; lines it never answered get its ending.

        A batch the provider failed because its queue was full (OpenAI's ``token_limit_exceeded``)
        answered nothing and cost nothing: its requests are not failed but forgotten, to be submitted
        again once running batches end, and the limit it names is kept to size the next batches."""
        limit = _enqueued_token_limit(remote)
        if limit is not None:
            self._forget(batch.id)
            if limit > 0:
                self.backend.learn_token_limit(limit)
            said = f" ({limit:,} tokens)" if limit > 0 else ""
            self.report(
                f"batch {remote.id}: the provider's enqueued-token limit{said} is reached; its "
                f"{batch.requests:,} requests go again once running batches end"
            )
            return Collected()
        store, _ = self.backend.attached()
        # A download cut short is read again from the start: rows already written are no longer
        # pending and are left alone, and the counts are those of the last, whole reading.
        done = await self._patiently(
            f"reading the results of batch {remote.id}", lambda: self._read(batch, remote)
        )
        missing = _missing_error(remote)
        unanswered = store.batches.end(batch.id, unanswered=encode_error(missing))
        done.failed += unanswered
        self.backend.closed(batch.id)
        # Paid now, whichever pass takes the answers (and whether one does): this run spent it.
        self.stats.cost += done.cost
        if self.budget is not None:
            self.budget.spent += done.cost
        self.report(f"collected batch {remote.id}: {done.answered:,} answered, {done.failed:,} failed")
        return done

    async def _read(self, batch: BatchInfo, remote: RemoteBatch) -> Collected:
        """One reading of an ended batch's results into the store."""
        done = Collected()
        chunk: list[LineAnswer] = []
        async for line in self.api.results(remote):
            entry = self._entry(line, done)
            if entry is not None:
                chunk.append(LineAnswer(_key(line.custom_id), *entry))
            if len(chunk) >= _CHUNK:
                self._write(batch.id, chunk)
                chunk = []
        self._write(batch.id, chunk)
        return done

    def _entry(self, line: LineResult, done: Collected) -> tuple[str, bytes, float] | None:
        if not _valid_id(line.custom_id):
            return None  # not a line of ours
        if line.completion is not None:
            cost = self.price.of(line.completion.usage) if self.price is not None else 0.0
            done.answered += 1
            done.cost += cost
            return "done", encode_completion(line.completion), cost
        error = line.error or ServerError("the batch returned neither an answer nor an error for this line")
        done.failed += 1
        return "failed", encode_error(error), 0.0

    def _write(self, batch_id: int, chunk: list[LineAnswer]) -> None:
        store, job = self.backend.attached()
        store.batches.answer(job.id, batch_id, chunk)

    def _forget(self, batch_id: int) -> None:
        self.backend.closed(batch_id)
        store, _ = self.backend.attached()
        store.batches.forget(batch_id, answered_too=False)


#: OpenAI's words for a batch failed because the organisation's queue is full
_TOKEN_LIMIT = re.compile(r"limit:\s*([\d,]+)\s*enqueued tokens", re.IGNORECASE)


def _enqueued_token_limit(remote: RemoteBatch) -> int | None:
    """The enqueued-token limit a failed batch names (0: named without a number); None: not failed
    for that."""
    if remote.status != "failed":
        return None
    reasons = " ".join(remote.errors)
    if "token_limit_exceeded" not in reasons and "enqueued token limit" not in reasons.lower():
        return None
    found = _TOKEN_LIMIT.search(reasons)
    return int(found[1].replace(",", "")) if found else 0


def _key(custom_id: str) -> bytes:
    return bytes.fromhex(custom_id)


def _valid_id(custom_id: str) -> bool:
    try:
        return len(bytes.fromhex(custom_id)) == _KEY_BYTES
    except ValueError:
        return False


def _missing_error(remote: RemoteBatch) -> ProviderError:
    """What happened to the lines an ended batch did not answer, by how it ended."""
    ending = _OPENAI_ENDED.get(remote.status, remote.status)
    if ending == "expired":
        return BatchExpired(f"batch {remote.id} expired before answering this request")
    if ending == "canceled":
        return BatchCanceled(f"batch {remote.id} was cancelled before answering this request")
    if ending == "failed":
        reasons = "; ".join(remote.errors[:3]) or "no reason given"
        return BadRequest(f"batch {remote.id} was refused by the provider: {reasons}")
    return ServerError(f"batch {remote.id} ended ({remote.status}) without answering this request")


def _describe(remote: RemoteBatch) -> str:
    counts = ", ".join(f"{name} {value:,}" for name, value in remote.counts.items() if value)
    return f"{remote.status}" + (f" ({counts})" if counts else "")
