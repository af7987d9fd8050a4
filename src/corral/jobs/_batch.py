"""A backend that answers from provider batches: requests wait in batch files, answers come later.

:class:`BatchBackend` meets the :class:`~corral.backends.base.Backend` protocol, so batch mode runs
the very same extraction as an online run — the same prompts, the same request builder, the same
validation and re-asks — and only the transport differs::

    complete(request) ─► key (the response cache's) ─► batch_requests row?
        none            ─► add its line to the batch being filled: Deferred
        pending         ─► Deferred (it is in a submitted batch; answered later)
        done            ─► Held(the answer, what it cost when its batch was collected)
        failed          ─► retryable and submissions left: into the next batch (or online);
                           else Held(the line's error)

A run over the input therefore *replays* each item as far as its answers go: an item whose first
answer is in the store and invalid is re-asked, and that re-ask waits for the next batch. The
store row of every request is written before its batch is submitted, so a crash never leaves a
batch the store does not know (OpenAI batches carry our label and are found again; see ``recover``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson

from corral.backends.base import DEFERRED, Backend, Deferred, Held, Profile, Reply, Request
from corral.backends.batch._base import BatchAPI, RemoteBatch
from corral.cost import Price
from corral.errors import (
    AuthError,
    BadRequest,
    BatchCanceled,
    BatchExpired,
    ConfigError,
    ModelNotFound,
    ProviderError,
    RateLimited,
    ServerError,
    TransportError,
)
from corral.store import BatchRow, JobInfo, RunStore
from corral.store._cache import ResponseCache, decode_completion

__all__ = ["BatchBackend", "batch_api_for", "decode_error", "encode_error"]

#: tries of one submission (upload + create) when the provider answers with a retryable error
_SUBMIT_TRIES = 4
_ERROR_CLASSES: dict[str, type[ProviderError]] = {
    cls.kind: cls
    for cls in (
        AuthError,
        BadRequest,
        BatchCanceled,
        BatchExpired,
        ModelNotFound,
        ProviderError,
        RateLimited,
        ServerError,
        TransportError,
    )
}


def batch_api_for(online: Backend) -> BatchAPI:
    """The batch API of ``online``'s provider, as its profile names it; ConfigError when it has none."""
    name = online.profile.batch_api
    if name == "openai":
        from corral.backends.batch.openai import OpenAIBatchAPI
        from corral.backends.openai import OpenAIBackend

        if isinstance(online, OpenAIBackend):
            return OpenAIBatchAPI(online)
    elif name == "anthropic":
        from corral.backends.anthropic import AnthropicBackend
        from corral.backends.batch.anthropic import AnthropicBatchAPI

        if isinstance(online, AnthropicBackend):
            return AnthropicBatchAPI(online)
    raise ConfigError(
        f"the {online.profile.name} backend ({online.model or 'local'}) has no provider batch API: "
        "--batch works with openai/..., anthropic/... and --base-url servers that offer /v1/batches"
    )


class BatchBackend:
    """Sends requests in provider batches for one job of a run store. Attach it with :meth:`attach`."""

    def __init__(
        self,
        online: Backend,
        api: BatchAPI,
        *,
        batch_retries: int = 2,
        reask_online: bool = False,
        token_limit: int | None = None,
    ) -> None:
        self.online = online
        self.api = api
        self.api_name = online.profile.batch_api or "openai"
        self.batch_retries = batch_retries
        self.reask_online = reask_online
        self.store: RunStore | None = None
        self.job: JobInfo | None = None
        # The batch being filled: key -> line; a request two items share goes in once.
        self._lines: dict[bytes, bytes] = {}
        self._bytes = 0
        #: the provider's enqueued-token limit (given, or learned from a batch it failed for it):
        #: batches are cut to fit under it, and lines beyond it wait for running batches to end
        self.token_limit = token_limit
        #: tokens of the batch being filled, and of each open batch this run filled
        self._tokens = 0
        self._open: dict[int, int] = {}
        #: requests of each open batch an earlier run filled (their tokens: this run's average line)
        self._earlier: dict[int, int] = {}
        self._line_tokens = [0, 0]  # tokens, lines: the average line
        self._lock = asyncio.Lock()
        #: answers in batches up to this id are not reused (``--retry-errors``: ask the model again)
        self.ignore_through: int | None = None
        #: lines submitted by this process, and batches created
        self.submitted = 0
        self.batches_created = 0

    # --- the Backend protocol ---------------------------------------------------------------------

    @property
    def profile(self) -> Profile:
        # The online profile itself: a job may switch between batch and online runs and keep its results.
        return self.online.profile

    @property
    def model(self) -> str:
        return self.online.model

    @property
    def endpoint(self) -> str:
        # Same as online: a batch answer is the answer to the same request, and the cache says so.
        return self.online.endpoint

    @property
    def context_window(self) -> int | None:
        return self.online.context_window

    async def aclose(self) -> None:
        await self.online.aclose()

    def attach(self, store: RunStore, job: JobInfo, *, ask_again: bool = False) -> None:
        """Work for ``job``; ``ask_again``: answers of earlier batches are not reused (only errored
        items reach the backend then, and they must be asked anew, once)."""
        self.store = store
        self.job = job
        self._earlier = store.batches.open_sizes(job.id)
        self._open = {}
        if ask_again:
            self.ignore_through = store.batches.last_id(job.id)

    async def complete(self, request: Request) -> Reply:
        key = ResponseCache.request_key(self.online, request)
        row = self.row(key)
        if row is not None and row.state != "pending" and row.batch <= (self.ignore_through or 0):
            row = None  # answered before this run, which was asked to ask again
        if row is None:
            if self.reask_online and _is_followup(request):
                return await self.online.complete(request)
            return await self._defer(key, request)
        return await self._known(row, key, request)

    async def _known(self, row: BatchRow, key: bytes, request: Request) -> Reply:
        """A request the store knows: waiting in a batch, answered by one, or failed in one."""
        if row.state == "pending":
            return DEFERRED
        if row.state == "done":
            assert row.answer is not None
            return Held(decode_completion(row.answer), cost=row.cost)
        error = decode_error(row.answer or b"{}")
        if error.retryable and row.submissions <= self.batch_retries:
            if self.reask_online:
                return await self.online.complete(request)
            return await self._defer(key, request)
        error.retryable = False  # already resubmitted as often as allowed: the scheduler must not retry
        return Held(error)

    # --- filling and submitting -------------------------------------------------------------------

    async def _defer(self, key: bytes, request: Request) -> Deferred:
        """Put the request's line in the batch being filled (once: items may share a request), or
        leave it for a later round while the provider's queue is full."""
        if key in self._lines:
            return DEFERRED
        line = self.api.line(key.hex(), _body(self.online, request))
        tokens = _tokens_of(line)
        # A loop, not an if: while one item submits the full batch, others fill the next one, and
        # that one may be full again by the time the submitting item comes back to add its line.
        while self._would_overflow(len(line), tokens):
            await self.flush(only_if_full=len(line), tokens=tokens)
            if key in self._lines:  # an item asking the very same request added it meanwhile
                return DEFERRED
        if self._over_limit(tokens):
            # The provider's queue holds all it takes: asked again in a later round, once running
            # batches have ended (a batch over the limit would only fail, or be paid for nothing).
            return DEFERRED
        self._lines[key] = line  # no await since the check: the line fits
        self._bytes += len(line)
        self._tokens += tokens
        self._line_tokens[0] += tokens
        self._line_tokens[1] += 1
        return DEFERRED

    def price(self, online: Price | None) -> Price | None:
        """What its answers cost, given the online price: the provider's batch share of it (None:
        unknown). Each answer is priced when its batch is collected, and held with its cost."""
        if online is None:
            return None
        factor = self.api.limits.price_factor
        return Price(online.input * factor, online.output * factor)

    def _would_overflow(self, size: int, tokens: int = 0) -> bool:
        limits = self.api.limits
        over_tokens = self.token_limit is not None and self._tokens + tokens > self.token_limit
        return bool(self._lines) and (
            len(self._lines) >= limits.max_requests or self._bytes + size > limits.max_bytes or over_tokens
        )

    def _over_limit(self, tokens: int) -> bool:
        """Would this line take the open batches and the one being filled past the token limit? Never
        while nothing is open: a batch must go, or nothing ever would."""
        if self.token_limit is None:
            return False
        enqueued = self.enqueued()
        return enqueued > 0 and enqueued + self._tokens + tokens > self.token_limit

    def enqueued(self) -> int:
        """Prompt tokens of the open batches, as estimated when they were filled (an earlier run's:
        its requests times this run's average line)."""
        total, lines = self._line_tokens
        average = total // lines if lines else 0
        return sum(self._open.values()) + sum(self._earlier.values()) * average

    def closed(self, batch_id: int) -> None:
        """A batch ended (collected, or refused): its tokens leave the provider's queue."""
        self._open.pop(batch_id, None)
        self._earlier.pop(batch_id, None)

    def learn_token_limit(self, limit: int) -> None:
        """The provider said its enqueued-token limit (a batch failed with token_limit_exceeded)."""
        self.token_limit = limit if self.token_limit is None else min(self.token_limit, limit)

    async def flush(self, *, only_if_full: int | None = None, tokens: int = 0) -> None:
        """Submit the batch being filled (if any): recorded first, then sent, then confirmed.

        ``only_if_full``: the size of a line about to be added; submit only if it would not fit (many
        items may find the batch full at once: the first submits it, the others add to the next)."""
        async with self._lock:
            if not self._lines or (
                only_if_full is not None and not self._would_overflow(only_if_full, tokens)
            ):
                return
            lines, self._lines, self._bytes = self._lines, {}, 0
            filled, self._tokens = self._tokens, 0
            label = f"corral-{uuid.uuid4().hex[:20]}"
            batch_id = self._record(label, lines)
            try:
                remote = await self._submit(list(lines.values()), label)
            except ProviderError as exc:
                if not isinstance(exc, TransportError):
                    self._forget(batch_id)  # refused, so never created: its requests are asked again
                raise  # otherwise it may exist: the next run's recover() looks for it by its label
            self.update_batch(batch_id, remote)
            self._open[batch_id] = filled
            self.submitted += len(lines)
            self.batches_created += 1

    async def _submit(self, lines: list[bytes], label: str) -> RemoteBatch:
        sent = time.time()
        for attempt in range(_SUBMIT_TRIES):
            try:
                return await self.api.submit(lines, label=label)
            except ProviderError as exc:
                if not exc.retryable or attempt == _SUBMIT_TRIES - 1:
                    raise
                await asyncio.sleep(exc.retry_after or 2.0**attempt)
            # A lost answer may hide a batch that was created: never create it twice.
            found = await self.api.find(label, created=sent, requests=len(lines), known=self.known_batches())
            if found is not None:
                return found
        raise AssertionError("unreachable")  # pragma: no cover

    def known_batches(self) -> frozenset[str]:
        """The provider ids of every batch the store knows (none of them is a lost one)."""
        store, _ = self.attached()
        return store.batches.remote_ids()

    def _record(self, label: str, lines: dict[bytes, bytes]) -> int:
        store, job = self.attached()
        return store.batches.record(job.id, label, self.api_name, lines)

    def _forget(self, batch_id: int) -> None:
        store, _ = self.attached()
        store.batches.forget(batch_id, answered_too=True)

    def update_batch(self, batch_id: int, remote: RemoteBatch) -> None:
        """Record what the provider last said of a batch."""
        store, _ = self.attached()
        store.batches.update(batch_id, remote_id=remote.id, status=remote.status, counts=remote.counts)

    # --- reading the store --------------------------------------------------------------------------

    def row(self, key: bytes) -> BatchRow | None:
        store, job = self.attached()
        return store.batches.request(job.id, key)

    def attached(self) -> tuple[RunStore, JobInfo]:
        if self.store is None or self.job is None:
            raise RuntimeError("BatchBackend.attach(store, job) must be called before use")
        return self.store, self.job

    @property
    def filling(self) -> int:
        """Lines waiting in the batch being filled."""
        return len(self._lines)


def _tokens_of(line: bytes) -> int:
    """A batch line's prompt tokens, as the enqueued-token limit counts them, estimated from above:
    four bytes a token over the whole line (its JSON framing included)."""
    return len(line) // 4 + 1


def _body(backend: Backend, request: Request) -> dict[str, Any]:
    build = getattr(backend, "body", None)
    if build is None:  # pragma: no cover -- batch_api is only set on profiles of backends with body()
        raise TypeError(f"{type(backend).__name__} cannot build batch lines")
    body: dict[str, Any] = build(request)
    return body


def _is_followup(request: Request) -> bool:
    """A re-ask: the conversation already holds an answer of the model's."""
    return any(message.get("role") == "assistant" for message in request.messages)


def encode_error(error: ProviderError) -> bytes:
    return orjson.dumps(
        {"kind": error.kind, "status": error.status, "message": str(error), "retryable": error.retryable}
    )


def decode_error(raw: bytes) -> ProviderError:
    entry = orjson.loads(raw)
    cls = _ERROR_CLASSES.get(entry.get("kind", ""), ProviderError)
    if cls is TransportError:
        error: ProviderError = TransportError(entry.get("message", ""))
    else:
        error = cls(entry.get("message", "batch line failed"), status=entry.get("status"))
    error.retryable = bool(entry.get("retryable", error.retryable))
    if cls is ProviderError:
        error.kind = str(entry.get("kind") or ProviderError.kind)
    return error
