"""Every request passes through the scheduler: limits, in-flight slots, retries, a shared cool-down.

    cache ─► limits (slow start, cool-down, per minute) ─► slot ─► budget ─► backend.complete ─► learn
    (hit: done)   ▲                                                                      │
    (identical request on its way: wait for its answer)                                 │
                  └────── backoff (full jitter, or retry-after) ◄── retryable error (429, 5xx, timeout)

Retries live here, not in the re-ask loop: a rate-limit error never reaches a re-ask prompt, and the
slot is released while an item waits, so other items use it. A 429 pauses the whole run (a shared
cool-down), not one item. Errors retrying cannot fix (400, 401, unknown model) pass straight through.

A backend that sends requests in provider batches may not answer now: a *deferred* request is not a
request of this run (it is sent, and paid, with its batch), but its worst case stays held against the
budget until the run ends; an answer it *held* from a collected batch is counted as a batch answer
(or a failed line), priced when its batch was collected. Each is counted once, as what it is.

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
from dataclasses import dataclass
from typing import Any

from corral.backends.base import Backend, Completion, Deferred, Held, RateLimitInfo, Request
from corral.cost import Budget, Price
from corral.engine._limits import EndpointLimits, Slots
from corral.engine._stats import RunStats
from corral.engine._tokens import TokenEstimator
from corral.errors import BudgetReached, ConfigError, ProviderError, RateLimited, ServerError, TransportError
from corral.store._cache import ResponseCache

__all__ = ["RetryPolicy", "Scheduler", "Tally"]


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
    """One item's share of a run: the answers it obtained (re-asks and retries alike, from the cache
    or a batch too) and the dollars they cost; ``run`` counts the same events for the whole run."""

    run: RunStats
    requests: int = 0
    cost: float = 0.0


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
        #: the endpoint's pace; shared when given, so that several runs keep one provider's limits
        # Servers on the user's own hardware enforce no rate limits: nothing to slow-start against.
        self.limits = limits or EndpointLimits(
            rpm=rpm, tpm=tpm, adaptive=adaptive, slow_start=not backend.profile.self_hosted
        )
        self._estimate = TokenEstimator(backend.profile.tokenizer, backend.model)
        #: the model's context window (None: not known, and nothing is checked against it)
        self.context_window: int | None = None
        self._rng = random.Random(seed)
        self._answered = False  # has the endpoint ever answered? (then a refused connection is transient)
        self._stopped: ProviderError | None = None  # a fatal answer: nothing more is sent
        #: requests on their way, by cache key: an identical one waits for their answer (with a cache)
        self._asking: dict[bytes, asyncio.Future[Completion | None]] = {}

    def text_tokens(self, text: str, *, fixed: bool = False) -> float:
        """Tokens ``text`` adds to a prompt, as :meth:`over_window` counts them (``fixed``: by the
        estimator's first ratio, which never moves)."""
        if fixed:
            return self._estimate.fixed_tokens(self._estimate.count(text))
        return self._estimate.text_tokens(text)

    def prompt_estimate(self, request: Request, *, fixed: bool = False) -> float:
        """Tokens of the request's prompt, as :meth:`over_window` counts them (``fixed``: as above)."""
        units = self._estimate.units(request)
        return self._estimate.fixed_tokens(units) if fixed else self._estimate.prompt_tokens(units)

    def over_window(self, request: Request) -> str | None:
        """Why ``request`` cannot fit the model's context window, or None when it may. Counted before
        sending because some servers (Ollama) cut an over-long prompt without a word and answer from
        what is left; a backend that checks exactly itself (the embedded model) is left to do so."""
        window = self.context_window
        if window is None or self.backend.profile.checks_window:
            return None
        prompt = round(self.prompt_estimate(request))
        if prompt + request.max_tokens <= window:
            return None
        return (
            f"the request needs about {prompt:,} tokens of prompt and {request.max_tokens:,} of reply "
            f"(max_tokens), more than the {window:,}-token context window of "
            f"{self.backend.model or 'the model'}"
        )

    async def complete(self, request: Request, slots: Slots, tally: Tally) -> Completion | Deferred:
        """One completion, retried until it succeeds, fails for good, or the retry budget is spent;
        or the backend's word that the answer comes later (a request it sends in a provider batch)."""
        cache = self.cache
        if cache is None:
            return await self._send(request, slots, tally)
        key = cache.key(self.backend, request)
        while True:
            found = cache.lookup(key)
            if found is not None:
                answer, this_job = found
                tally.requests += 1
                if this_job:
                    tally.run.shared += 1
                else:
                    tally.run.cached += 1
                return answer
            asked = self._asking.get(key)
            if asked is None:
                break
            # An identical request is on its way: its answer is this one's too. Shielded, so that
            # this item's cancellation leaves the other's request alone.
            shared = await asyncio.shield(asked)
            if shared is not None:
                tally.requests += 1
                tally.run.shared += 1
                return shared
            # It failed or was cancelled (or its answer waits in a batch): look again, then ask.
        asking: asyncio.Future[Completion | None] = asyncio.get_running_loop().create_future()
        self._asking[key] = asking
        reply: Completion | Deferred | None = None
        try:
            reply = await self._send(request, slots, tally)
            if isinstance(reply, Completion):
                cache.put(key, self.backend.model, reply)
            return reply
        finally:
            del self._asking[key]
            asking.set_result(reply if isinstance(reply, Completion) else None)

    async def _send(self, request: Request, slots: Slots, tally: Tally) -> Completion | Deferred:
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
            tally.run.retries += 1
            await asyncio.sleep(delay)

    async def _attempt(
        self, request: Request, slots: Slots, tally: Tally, units: int, prompt_estimate: float
    ) -> tuple[Completion | Deferred | None, ProviderError | None, float]:
        """One request, admitted by the limits: its completion (or deferral), or the error to learn from."""
        await slots.acquire()
        if self._stopped is not None:
            slots.release()
            raise self._stopped
        reserved = self._reserve(prompt_estimate, request.max_tokens, slots)
        run = tally.run
        run.in_flight += 1
        sent_at = time.monotonic()
        spent = 0.0
        # A request of this run, however it ends (cancelled too: it was sent), unless the backend
        # defers it or answers it from a collected batch.
        sent = True
        try:
            reply = await self.backend.complete(request)
            if isinstance(reply, Deferred):
                # Sent, and paid, with its batch: its worst case stays held against the budget
                # until the run ends.
                sent = False
                spent = reserved
                return reply, None, sent_at
            if isinstance(reply, Held):
                sent = False
                answer, error = self._held(reply, tally, units, prompt_estimate, sent_at)
                return answer, error, sent_at
            self._settle(reply, units, prompt_estimate, sent_at)
            spent = self._charge(reply, tally)
            return reply, None, sent_at
        except ProviderError as exc:
            return None, exc, sent_at
        finally:
            run.in_flight -= 1
            slots.release()
            if sent:
                tally.requests += 1
                run.requests += 1
            if self.budget is not None:
                self.budget.settle(reserved, spent)

    def _held(
        self, held: Held, tally: Tally, units: int, prompt_estimate: float, sent_at: float
    ) -> tuple[Completion | None, ProviderError | None]:
        """An answer from a collected batch: the item's, though not a request of this run (its cost
        was counted when the batch was collected)."""
        tally.requests += 1
        if isinstance(held.answer, ProviderError):
            tally.run.batch_failed += 1
            return None, held.answer
        tally.run.batched += 1
        tally.cost += held.cost
        self._settle(held.answer, units, prompt_estimate, sent_at)
        return held.answer, None

    def _charge(self, completion: Completion, tally: Tally) -> float:
        if self.price is None:
            return 0.0
        spent = self.price.of(completion.usage)
        tally.cost += spent
        tally.run.cost += spent
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
        faults = tally.run.faults
        faults[error.kind] = faults.get(error.kind, 0) + 1
        self._learn(error.rate_limits)
        if error.fatal:
            self._stopped = error
        if not error.retryable or retry >= self.policy.max_retries:
            raise error
        retry_after = error.retry_after
        delay = self.policy.delay(retry, retry_after, self._rng)
        overload = isinstance(error, ServerError) and error.overloaded
        if isinstance(error, RateLimited) or overload:
            tally.run.rate_limited += 1
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
