"""The counters of a run, kept once, in one :class:`RunStats`.

Each number is counted where its event happens, on the one object: the scheduler counts requests
(sent, retried, rate-limited, answered from the cache or from a collected batch, in flight) and
what they cost; the job layer counts items (done, ok, errors, reused, deferred, not started) and
their tokens. Everyone else reads it: the progress display and the summary line live, serve's status
live, the run store through a frozen :meth:`RunStats.snapshot` (its run row, its timeline).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.types import Outcome

__all__ = ["RunStats", "StatsSnapshot"]


@dataclass(slots=True)
class RunStats:
    """Live counters of one run."""

    # --- the items, counted by the job layer as they end ------------------------------------------
    total: int | None = None  # items in the input, once known (may stay None for stdin)
    done: int = 0  # items ended: ok + errors (includes reused)
    ok: int = 0
    errors: int = 0
    reused: int = 0  # answered from the run store (finished in an earlier run): no request
    deferred: int = 0  # items whose answer waits in a provider batch (not done, not written)
    not_started: int = 0  # items pulled from the input that the budget kept from starting
    kinds: dict[str, int] = field(default_factory=dict)  # item errors by kind ("invalid_output": 3, ...)
    prompt_tokens: int = 0  # tokens of this run's answers (reused items' are not this run's)
    completion_tokens: int = 0
    # --- the requests, counted by the scheduler as they happen ------------------------------------
    requests: int = 0  # requests sent to the provider by this run (counted as each one ends)
    retries: int = 0
    rate_limited: int = 0  # retries after a 429 or an overload: they pause the whole run
    cached: int = 0  # requests answered from the response cache: not sent, not paid
    shared: int = 0  # requests answered by an identical one of this job (in flight or just answered)
    batched: int = 0  # answers taken from collected provider batches (sent and paid with their batch)
    batch_failed: int = 0  # failed lines of collected provider batches (no answer)
    in_flight: int = 0  # requests in flight now
    faults: dict[str, int] = field(default_factory=dict)  # failed requests by kind (rate_limited: 3, ...)
    cost: float = 0.0  # USD this run spent: answers, and provider batches collected
    # --- what the money means ---------------------------------------------------------------------
    priced: bool = True  # False: the model's price is unknown, so ``cost`` says nothing
    spent_before: float | None = None  # USD earlier runs of the job spent (None: no job, not tracked)
    #: when the run's clock started (``time.perf_counter``): one clock for every pass of a run
    started: float = field(default_factory=time.perf_counter)
    #: passes over the input begun (batch mode replays it every round)
    passes: int = field(default=0, init=False)
    #: the response cache's answers when the second pass began (see ``cache_answers``)
    _cached_by_first_pass: int | None = field(default=None, init=False, repr=False)
    #: the same for the answers identical requests shared (see ``duplicates``)
    _shared_by_first_pass: int | None = field(default=None, init=False, repr=False)

    def start_pass(self) -> None:
        """A pass over the input begins. A later one (batch mode replays the input every round)
        counts what becomes of the items afresh; the requests, the cost and the clock go on."""
        if self.passes == 1:
            self._cached_by_first_pass = self.cached
            self._shared_by_first_pass = self.shared
        if self.passes >= 1:
            self.done = self.ok = self.errors = self.reused = self.deferred = self.not_started = 0
            self.prompt_tokens = self.completion_tokens = 0
            self.kinds = {}
        self.passes += 1

    def ended(self, outcome: Outcome[Any]) -> None:
        """Count an item that ended (a value or an error; a deferred or unstarted one has not)."""
        self.done += 1
        if outcome.error is None:
            self.ok += 1
        else:
            self.errors += 1
            self.kinds[outcome.error.kind] = self.kinds.get(outcome.error.kind, 0) + 1
        if outcome.reused:
            self.reused += 1
        else:
            self.prompt_tokens += outcome.usage.prompt_tokens
            self.completion_tokens += outcome.usage.completion_tokens

    @property
    def tokens(self) -> int:
        """Tokens of this run's answers (prompt + completion)."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def cache_answers(self) -> int:
        """Items' answers the response cache gave. A batch job's later passes replay answers it
        already counted (from batches, or from the cache in its first pass): only the first pass's
        hits are answers of the cache."""
        return self.cached if self._cached_by_first_pass is None else self._cached_by_first_pass

    @property
    def duplicates(self) -> int:
        """Items' requests that an identical request of the job answered (sent once for all of them);
        as with :attr:`cache_answers`, a batch job's first pass counts them."""
        return self.shared if self._shared_by_first_pass is None else self._shared_by_first_pass

    @property
    def spent(self) -> float | None:
        """USD this run spent; None when the model's price is unknown."""
        return self.cost if self.priced else None

    @property
    def job_spent(self) -> float | None:
        """USD the whole job spent across its runs; None when not tracked (no job, or no price)."""
        if not self.priced or self.spent_before is None:
            return None
        return self.spent_before + self.cost

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.started

    def rate(self) -> float:
        """Items per second of this run's own work; 0 before the first one ends.

        Reused items end instantly at start-up; counting them would promise a speed the remaining
        items cannot keep, and an ETA far too short.
        """
        fresh = self.done - self.reused
        elapsed = self.elapsed()
        return fresh / elapsed if fresh > 0 and elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the current rate; None while the total or the rate is unknown."""
        if self.total is None:
            return None
        left = max(self.total - self.done, 0)
        if left == 0:
            return 0.0
        rate = self.rate()
        return left / rate if rate > 0 else None

    def snapshot(self) -> StatsSnapshot:
        """The counters as they are now, frozen: for whatever keeps or sends a copy (the store's run
        row and timeline, a Ray keeper's report to the driver)."""
        return StatsSnapshot(
            done=self.done,
            ok=self.ok,
            errors=self.errors,
            reused=self.reused,
            deferred=self.deferred,
            not_started=self.not_started,
            kinds=dict(self.kinds),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            requests=self.requests,
            retries=self.retries,
            rate_limited=self.rate_limited,
            cached=self.cached,
            shared=self.shared,
            batched=self.batched,
            batch_failed=self.batch_failed,
            in_flight=self.in_flight,
            faults=dict(self.faults),
            cost=self.cost,
        )


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """A run's counters at one moment (see :class:`RunStats` for what each one counts)."""

    done: int
    ok: int
    errors: int
    reused: int
    deferred: int
    not_started: int
    kinds: Mapping[str, int]
    prompt_tokens: int
    completion_tokens: int
    requests: int
    retries: int
    rate_limited: int
    cached: int
    shared: int
    batched: int
    batch_failed: int
    in_flight: int
    faults: Mapping[str, int]
    cost: float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
