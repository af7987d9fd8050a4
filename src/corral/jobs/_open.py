"""The one place a durable job is assembled: :func:`open_job` turns a :class:`~corral.jobs.JobSpec`
into a :class:`Job` — the input opened, the output checked, the run store, the response cache, the
budget, the backend (a batch backend for ``spec.batch``), the extractor, and the job's row in the store
with a new run in it. ``corral run``, ``--batch`` and ``corral batch``, ``--ray``, ``corral serve`` and
Python all open their jobs here, so a job means the same thing whichever way it is run.

Everything that can be refused is checked before the output is touched: the input, the output file
(never overwrite what is not ours, nor the input), the run store (corrupt, foreign, another job's
settings), the model, the prices when a cost cap is set.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

from corral._extractor import Extractor
from corral.backends import Backend, open_backend, resolve_model
from corral.cost import Budget, Price, load_prices
from corral.engine import Order
from corral.engine._limits import EndpointLimits
from corral.engine._stats import RunStats
from corral.errors import ConfigError, StoreError
from corral.io.items import ItemReader, keep_types
from corral.io.sinks import Sink, check_output, open_sink, sink_format
from corral.jobs._batch import BatchBackend, batch_api_for
from corral.jobs._durable import JobResult, run_job
from corral.jobs._identity import job_name, store_path
from corral.jobs._spec import ExtractOptions, JobSpec
from corral.store import JobInfo, RunStore
from corral.store._cache import AnswerStore, MemoryAnswers, ResponseCache
from corral.types import Item, Outcome

__all__ = ["Job", "look_at_batches", "open_job"]


class Job:
    """An opened durable job: ``async with open_job(spec) as job: await job.run()``.

    ``store`` and ``handle`` (its row and this run's in the store) are None for a job without a store
    (``JobSpec(durable=False)``). ``key`` is the job's name in its store."""

    def __init__(
        self,
        spec: JobSpec,
        extractor: Extractor[Any],
        *,
        store: RunStore | None,
        handle: JobInfo | None,
        key: str | None,
        items: Iterator[Item] | None,
        closing: contextlib.AsyncExitStack,
    ) -> None:
        self.spec = spec
        self.extractor = extractor
        self.store = store
        self.handle = handle
        self.key = key
        self._first_items = items
        self._closing = closing

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What every run of the job must share (the store refuses a run that differs)."""
        return self.extractor.fingerprint

    @property
    def batch_backend(self) -> BatchBackend | None:
        """The job's batch backend when its requests go in provider batches."""
        backend = self.extractor.backend
        return backend if isinstance(backend, BatchBackend) else None

    def items(self) -> Iterator[Item]:
        """The spec's input, as items, from the start (a second call reads it again)."""
        if self._first_items is not None:
            items, self._first_items = self._first_items, None
            return items
        return self.spec.read_input()

    def open_sink(self) -> Sink:
        """The spec's output, written from the start; its kept columns (``spec.keep``) in a Parquet
        output have the input's own types when it is Parquet or Arrow."""
        spec = self.spec
        fmt = sink_format(spec.output, spec.output_format)
        types = None
        if fmt == "parquet" and spec.keep and spec.input is not None:
            # The reader opened with the job has them (standard input cannot be read again for them);
            # once it is taken, the input's schema is read again, which reads no rows.
            first = self._first_items
            types = first.keep_types if isinstance(first, ItemReader) else None
            if types is None:
                types = keep_types(spec.input, format=spec.input_format, keep=spec.keep)
        return open_sink(
            spec.output,
            fmt,
            self.extractor.spec,
            csv_formulas=spec.csv_formulas,
            keep=spec.keep,
            keep_types=types,
        )

    async def run(
        self,
        items: Iterable[Item] | AsyncIterable[Item] | None = None,
        sink: Sink | None = None,
        *,
        counters: RunStats | None = None,
        order: Order | None = None,
        on_outcome: Callable[[Outcome[Any]], None] | None = None,
        on_pending: Callable[[Outcome[Any]], None] | None = None,
    ) -> JobResult:
        """One pass over ``items`` (default: the spec's input) into ``sink`` (default: the spec's
        output, rewritten from the start): finished items come from the store, the rest are extracted,
        every result is committed before it is written. ``on_outcome`` sees each item that ended,
        ``on_pending`` each that did not (see :func:`~corral.jobs.run_job`)."""
        counters = counters if counters is not None else RunStats()
        with contextlib.ExitStack() as closing:
            if sink is None:
                sink = closing.enter_context(self.open_sink())
            return await run_job(
                self.extractor,
                self.items() if items is None else items,
                sink,
                counters,
                store=self.store,
                job=self.handle,
                strategy=self.spec.strategy,
                order=order or self.spec.order,
                retry_errors=self.spec.retry_errors,
                on_outcome=on_outcome,
                on_pending=on_pending,
            )

    async def aclose(self) -> None:
        """Close what the job opened (the extractor, its backend, the store unless it was given)."""
        await self._closing.aclose()

    async def __aenter__(self) -> Job:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _Opening:
    """What :func:`open_job` returns: ``async with`` it, or ``await`` it (then ``aclose`` the job)."""

    def __init__(self, opener: Callable[[], Any]) -> None:
        self._opener = opener
        self._job: Job | None = None

    def __await__(self) -> Generator[Any, None, Job]:
        job: Job = yield from self._opener().__await__()
        return job

    async def __aenter__(self) -> Job:
        self._job = await self._opener()
        return self._job

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._job is not None:
            await self._job.aclose()


def open_job(
    spec: JobSpec,
    *,
    store: RunStore | None = None,
    key: str | None = None,
    backend: Backend | None = None,
    limits: EndpointLimits | None = None,
    prices: Mapping[str, Price] | None = None,
    cache_scope: str = "",
    budget_parent: Budget | None = None,
    check_settings: Callable[[Mapping[str, Any]], None] | None = None,
    answers: AnswerStore | None = None,
) -> _Opening:
    """Open the job ``spec`` describes: ``async with open_job(spec) as job: await job.run()``.

    A server sharing one store, backend and limits among many jobs passes them (``store``,
    ``backend``, ``limits``; the job closes none of them) and its price table (``prices``, instead of
    ``spec.prices``' file), names the job itself (``key``), gives each
    client its own cache (``cache_scope``) and caps every job's spend within its own
    (``budget_parent``); ``check_settings`` sees the job's settings before the store does.
    ``answers`` keeps the answers of a job without a store (default: the last 64 MiB in memory), so
    that its identical requests are sent once.
    """

    async def opener() -> Job:
        return await _open(
            spec,
            store=store,
            key=key,
            backend=backend,
            limits=limits,
            prices=prices,
            cache_scope=cache_scope,
            budget_parent=budget_parent,
            check_settings=check_settings,
            answers=answers,
        )

    return _Opening(opener)


async def _open(
    spec: JobSpec,
    *,
    store: RunStore | None,
    key: str | None,
    backend: Backend | None,
    limits: EndpointLimits | None,
    prices: Mapping[str, Price] | None,
    cache_scope: str,
    budget_parent: Budget | None,
    check_settings: Callable[[Mapping[str, Any]], None] | None,
    answers: AnswerStore | None,
) -> Job:
    _refuse_what_cannot_be(spec)
    closing = contextlib.AsyncExitStack()
    try:
        items = None
        if spec.input is not None and spec.ray is None:
            # Read now: a missing, unreadable or empty input is refused before anything else.
            items = spec.read_input()
            closing.callback(items.close)
        if spec.output is not None:
            check_output(spec.output, sink_format(spec.output, spec.output_format), source=spec.input)
        if prices is None and spec.prices:
            prices = load_prices(spec.prices)
        budget = _budget(spec, budget_parent)
        if store is None and spec.durable:
            store = RunStore.open(store_path(spec.output, spec.store))
            closing.callback(store.close)
        cache = None
        if spec.cache:
            # Without a store the answers are kept in memory for the job's life: its identical
            # requests are still sent once.
            kept = store if store is not None else answers if answers is not None else MemoryAnswers()
            cache = ResponseCache(kept, read=not spec.retry_errors, scope=cache_scope)
        if spec.batch is not None:
            backend = await _batch_backend(spec, closing)
        extractor: Extractor[Any] = Extractor(
            spec.schema,
            backend=backend,
            limits=limits,
            cache=cache,
            prices=prices,
            budget=budget,
            **_request_options(spec, shared_limits=limits is not None),
        )
        await closing.enter_async_context(extractor)
        await _escalation(spec, extractor, closing, cache=cache, prices=prices, budget=budget)
        handle = None
        if store is not None:
            key = key or job_name(spec.output, spec.input or "-", store=spec.store)
            settings = _settings(spec, extractor)
            if check_settings is not None:
                check_settings(settings)
            handle = store.open_job(key, settings, fresh=spec.fresh)
            closing.callback(store.release_job, handle)
            if budget is not None:
                budget.spent = handle.spent_before  # the job's cap counts all its runs
            batch = extractor.backend
            if isinstance(batch, BatchBackend):
                batch.attach(store, handle, ask_again=spec.retry_errors)
                store.save_job_args(handle.id, spec.to_json().decode())
        return Job(spec, extractor, store=store, handle=handle, key=key, items=items, closing=closing)
    except BaseException:
        await closing.aclose()
        raise


async def _escalation(
    spec: JobSpec,
    extractor: Extractor[Any],
    closing: contextlib.AsyncExitStack,
    *,
    cache: ResponseCache | None,
    prices: Mapping[str, Price] | None,
    budget: Budget | None,
) -> None:
    """The stronger model the doubtful items are asked of again (``spec.escalate``), entered and
    attached."""
    if spec.escalate is None:
        return
    below = spec.documents.review_below
    if below is None:
        raise ConfigError("--escalate asks again the items with a value under --review-below P: give P")
    options = dataclasses.replace(spec.extract, model=spec.escalate).extractor_options()
    stronger: Extractor[Any] = Extractor(spec.schema, cache=cache, prices=prices, budget=budget, **options)
    await closing.enter_async_context(stronger)
    extractor.escalate_to(stronger, below=below)


def _settings(spec: JobSpec, extractor: Extractor[Any]) -> dict[str, Any]:
    """What every run of the job must share: the extractor's fingerprint, and the escalation (the
    records written hold the stronger model's values)."""
    settings = dict(extractor.fingerprint)
    if spec.escalate is not None:
        settings["escalate"] = f"{spec.escalate} below {spec.documents.review_below}"
    return settings


def _refuse_what_cannot_be(spec: JobSpec) -> None:
    if spec.batch is not None:
        if spec.input in (None, "-"):
            raise ConfigError("batch mode reads the input once per round: pass a file, not stdin")
        if not spec.output or spec.output == "-":
            raise ConfigError("batch mode writes the output once per round: pass -o FILE")
        if not spec.durable:
            raise ConfigError("batch mode keeps its batches in the run store: drop --no-store")


def _budget(spec: JobSpec, parent: Budget | None) -> Budget | None:
    """The job's own cap (``max_cost``), within ``parent`` (a server's ``--max-total-cost``)."""
    if spec.max_cost is None and parent is None:
        return None
    return Budget(spec.max_cost if spec.max_cost is not None else float("inf"), parent=parent)


def _request_options(spec: JobSpec, *, shared_limits: bool) -> dict[str, Any]:
    options = spec.extract.extractor_options()
    if shared_limits:  # the shared limits' own rpm, tpm and adaptivity apply
        for name in ("rpm", "tpm", "adaptive"):
            options.pop(name)
    return options


async def _batch_backend(spec: JobSpec, closing: contextlib.AsyncExitStack) -> BatchBackend:
    """The online backend the spec names, wrapped to send its requests in provider batches."""
    assert spec.batch is not None
    online = _online_backend(spec.extract)
    closing.push_async_callback(online.aclose)
    await resolve_model(online)
    return BatchBackend(
        online,
        batch_api_for(online),
        batch_retries=spec.batch.retries,
        reask_online=spec.batch.reask_online,
        token_limit=spec.batch.token_limit,
    )


def _online_backend(extract: ExtractOptions) -> Backend:
    return open_backend(
        extract.model,
        base_url=extract.base_url,
        api_key_env=extract.api_key_env,
        concurrency=extract.concurrency,
        timeout=extract.timeout,
        allow_plain_http=extract.allow_plain_http,
    )


@contextlib.asynccontextmanager
async def look_at_batches(spec: JobSpec) -> AsyncIterator[tuple[RunStore, BatchBackend]]:
    """A batch job's store and batch backend, to see or cancel its batches without starting a run
    (``corral batch status | cancel``); the backend is attached to the job."""
    with RunStore.open(store_path(spec.output, spec.store)) as store:
        job = store.find_job(job_name(spec.output, spec.input or "-", store=spec.store))
        if job is None:
            raise StoreError(f"no job writes {spec.output} in {store.path}")
        online = _online_backend(spec.extract)
        try:
            await resolve_model(online)
            backend = BatchBackend(online, batch_api_for(online))
            backend.attach(store, job)
            yield store, backend
        finally:
            await online.aclose()
