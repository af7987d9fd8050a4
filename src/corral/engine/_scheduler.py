"""Every request passes through the scheduler: limits, in-flight slots, retries, a shared cool-down.

    cache ─► limits (slow start, cool-down, per minute) ─► slot ─► budget ─► backend.complete ─► learn
    (hit: done)   ▲                                                                      │
                  └────── backoff (full jitter, or retry-after) ◄── retryable error (429, 5xx, timeout)

Retries live here, not in the re-ask loop: a rate-limit error never reaches a re-ask prompt, and the
slot is released while an item waits, so other items use it. A 429 pauses the whole run (a shared
cool-down), not one item. Errors retrying cannot fix (400, 401, unknown model) pass straight through.

Limits come from the caller (``rpm``/``tpm``), else from the provider's rate-limit headers once it
sends them, else from an earlier run's (the run store), else from
:class:`~corral.engine._adaptive.AdaptiveRate` reacting to 429s, after a slow start (see
:mod:`corral.engine._limits`). A cache hit is answered before any limit applies: it costs the provider
nothing. The budget holds each request's worst-case
cost while it is in flight and settles it to the real one (see :mod:`corral.cost`).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from corral.backends.base import Backend, Completion, Parked, RateLimitInfo, Request
from corral.cost import Budget, Price
from corral.engine._limits import EndpointLimits, Slots
from corral.engine._tokens import TokenEstimator
from corral.errors import BudgetReached, ConfigError, ProviderError, RateLimited, ServerError, TransportError
from corral.store._cache import ResponseCache

__all__ = ["RetryPolicy", "RunStats", "Scheduler", "Tally"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how patiently, one item's request is retried after a retryable failure."""

    max_retries: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError(f"max retries must be 0 or more, got {self.max_retries}")

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Full jitter (uniform up to the exponential cap), never sooner than the provider asked."""
        jitter = rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**retry))
        return max(jitter, retry_after) if retry_after is not None else jitter


@dataclass(slots=True)
class Tally:
    """Per item: answers obtained (re-asks and retries alike), how many came from the cache, and
    the dollars spent on the rest."""

    requests: int = 0
    cached: int = 0
    cost: float = 0.0


@dataclass(slots=True)
class RunStats:
    """Counters for the whole run, for summaries and progress."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    #: requests answered from the response cache (not sent, not paid)
    cached: int = 0
    #: answers taken from collected provider batches (sent and paid when their batch was)
    batched: int = 0
    #: failed lines of collected provider batches, ending items (not answers)
    batch_failed: int = 0
    in_flight: int = 0
    #: dollars spent on answers (0 when the price is unknown; see ``Scheduler.price``)
    cost: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)


class Scheduler:
    """Sends requests for any number of concurrent items, within every limit that applies."""

    def __init__(
        self,
        backend: Backend,
        *,
        rpm: float | None = None,
        tpm: float | None = None,
        adaptive: bool = True,
        policy: RetryPolicy | None = None,
        seed: int | None = None,
        cache: ResponseCache | None = None,
        price: Price | None = None,
        budget: Budget | None = None,
        limits: EndpointLimits | None = None,
    ) -> None:
        self.backend = backend
        self.policy = policy or RetryPolicy()
        self.cache = cache
        #: what an answer costs; None: unknown (spend is not counted, and no budget can apply)
        self.price = price
        self.budget = budget
        self.stats = RunStats()
        #: the endpoint's pace; shared when given, so that several runs keep one provider's limits
        # Servers on the user's own hardware enforce no rate limits: nothing to slow-start against.
        self.limits = limits or EndpointLimits(
            rpm=rpm, tpm=tpm, adaptive=adaptive, slow_start=not backend.profile.self_hosted
        )
        self._estimate = TokenEstimator(backend.profile.tokenizer, backend.model)
        self._rng = random.Random(seed)
        self._answered = False  # has the endpoint ever answered? (then a refused connection is transient)
        self._stopped: ProviderError | None = None  # a fatal answer: nothing more is sent

    async def complete(self, request: Request, slots: Slots, tally: Tally) -> Completion:
        """One completion, retried until it succeeds, fails for good, or the retry budget is spent."""
        if self.cache is None:
            return await self._send(request, slots, tally)
        key = self.cache.key(self.backend, request)
        hit = self.cache.get(key)
        if hit is not None:
            tally.requests += 1
            tally.cached += 1
            self.stats.cached += 1
            return hit
        completion = await self._send(request, slots, tally)
        self.cache.put(key, self.backend.model, completion)
        return completion

    async def _send(self, request: Request, slots: Slots, tally: Tally) -> Completion:
        retry = 0
        units = self._estimate.units(request)
        while True:
            prompt_estimate = self._estimate.prompt_tokens(units)
            await self.limits.admit(prompt_estimate + request.max_tokens)
            try:
                answer, error, sent_at = await self._attempt(request, slots, tally, units, prompt_estimate)
            finally:
                self.limits.released()
            if answer is not None:
                return answer
            assert error is not None
            delay = self._after_failure(error, retry, sent_at, tally)
            retry += 1
            self.stats.retries += 1
            await asyncio.sleep(delay)

    async def _attempt(
        self, request: Request, slots: Slots, tally: Tally, units: int, prompt_estimate: float
    ) -> tuple[Completion | None, ProviderError | None, float]:
        """One request, admitted by the limits: its completion, or the error to learn from."""
        await slots.acquire()
        if self._stopped is not None:
            slots.release()
            raise self._stopped
        reserved = self._reserve(prompt_estimate, request.max_tokens, slots)
        tally.requests += 1
        self.stats.requests += 1
        self.stats.in_flight += 1
        sent_at = time.monotonic()
        spent = 0.0
        try:
            completion = await self.backend.complete(request)
        except ProviderError as exc:
            if exc.batched:  # a failed batch line: sent (and counted) with its batch, no answer
                self.stats.requests -= 1
                self.stats.batch_failed += 1
            return None, exc, sent_at
        except Parked:
            # Submitted in a batch, paid when it is answered: not a request of this run, but its
            # worst case stays held against the budget until the run ends.
            tally.requests -= 1
            self.stats.requests -= 1
            spent = reserved
            raise
        else:
            self._settle(completion, units, prompt_estimate, sent_at)
            spent = self._charge(completion, tally)
            return completion, None, sent_at
        finally:
            self.stats.in_flight -= 1
            slots.release()
            if self.budget is not None:
                self.budget.settle(reserved, spent)

    def _charge(self, completion: Completion, tally: Tally) -> float:
        if completion.paid is not None:  # sent and counted with its batch, not by this run
            self.stats.requests -= 1
            self.stats.batched += 1
            tally.cost += completion.paid
            return 0.0
        if self.price is None:
            return 0.0
        spent = self.price.of(completion.usage)
        tally.cost += spent
        self.stats.cost += spent
        return spent

    def stop(self, error: ProviderError) -> None:
        """Send nothing more: ``error`` dooms every request (found fatal above the scheduler, e.g. a
        refused mode the caller chose); requests waiting for a slot raise it."""
        self._stopped = error

    def _after_failure(self, error: ProviderError, retry: int, sent_at: float, tally: Tally) -> float:
        """Learn from a failed request; raise it if it cannot be retried, else say how long to wait."""
        error.attempts = tally.requests
        if isinstance(error, TransportError) and error.connect and not self._answered:
            raise ConfigError(f"{error}: is the server running, and is the base URL right?") from error
        self._answered = self._answered or error.status is not None
        self.stats.by_kind[error.kind] = self.stats.by_kind.get(error.kind, 0) + 1
        self._learn(error.rate_limits)
        if error.fatal:
            self._stopped = error
        if not error.retryable or retry >= self.policy.max_retries:
            raise error
        retry_after = error.retry_after
        delay = self.policy.delay(retry, retry_after, self._rng)
        overload = isinstance(error, ServerError) and error.overloaded
        if isinstance(error, RateLimited) or overload:
            self.stats.rate_limited += 1
            self.limits.rate_limited(sent_at, retry_after, overload=overload)
        return delay

    def _reserve(self, prompt_estimate: float, max_tokens: int, slots: Slots) -> float:
        """Hold the request's worst-case cost against the budget (nothing when there is none)."""
        if self.budget is None or self.price is None:
            return 0.0
        amount = self.price.worst_case(prompt_estimate, max_tokens)
        try:
            self.budget.reserve(amount)
        except BudgetReached:
            slots.release()
            raise
        return amount

    def _settle(self, completion: Completion, units: int, prompt_estimate: float, sent_at: float) -> None:
        self._answered = True
        prompt_tokens = completion.usage.prompt_tokens
        self.limits.answered(prompt_tokens - prompt_estimate if prompt_tokens else 0.0, sent_at)
        self._estimate.observe(units, prompt_tokens)
        self._learn(completion.rate_limits)

    def _learn(self, info: Any) -> None:
        if isinstance(info, RateLimitInfo):
            self.limits.learn(info)
