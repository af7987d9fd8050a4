"""A job on a Ray cluster: many workers, one provider budget, the driver's store.

    driver: input ─► finished before? (store) ─► answered by the cache? (the driver's own extractor,
            sending nothing) ─► one call per item to a worker, a bounded window of them ─► each result
            committed to the store as it arrives ─► at the end, the output in input order
    worker: corral's own engine (re-asks, retries, backoff) per item, many at once, pacing every
            request through one LimitsKeeper actor shared by all workers (:mod:`._ray_worker`)

The provider's requests- and tokens-per-minute limits are one global budget kept by the
:class:`~corral.jobs._ray_worker.LimitsKeeper` actor: a worker asks it for each request's place (one
small call) and sleeps until then, so two workers or twenty together send what one would, never
limit ÷ workers guessed up front. What the provider's headers say, and its 429s, reach the keeper and
pace everyone.

The driver is the only writer: a result goes into its run store the moment it arrives, and only then
counts as done; the output is written from the store, in input order, when the pipeline ends. So each
item is written exactly once, and a killed job re-run asks again only what was in flight. The
workers' answers join the store's response cache, and the driver answers from that cache what it can
before a worker is asked, so a job repeated into another output sends nothing, as on one machine.
The counters — requests, retries, rate limits, in flight — are the workers' own, read as they change.
A worker that dies is restarted by Ray and its calls retried; an answer that arrives twice is stored
once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from corral._extractor import Extractor
from corral.backends.base import DEFERRED, Backend, Profile, Reply, Request
from corral.engine._limits import EndpointLimits
from corral.engine._stats import RunStats, StatsSnapshot
from corral.errors import ConfigError, CorralError
from corral.io.items import stdin_format
from corral.io.sinks import Sink
from corral.jobs._open import Job, open_job
from corral.jobs._ray_worker import (
    KEEPER_CONCURRENCY,
    KeeperReport,
    LimitsKeeper,
    RayWorker,
    WorkerReport,
    import_ray,
    portable_schema,
)
from corral.jobs._record import record_counters, timeline_point
from corral.jobs._spec import JobSpec, RayOptions
from corral.store import ItemRow, JobInfo, KnownLimits, RunStore, input_hash
from corral.types import RECORD_KEYS, Item

__all__ = [
    "import_ray",
    "portable_schema",
    "run_job_on_ray",
    "run_on_ray",
    "spooled_stdin",
    "write_output",
]

#: the driver samples the run's timeline this often (the report plots it), and reads the workers'
#: counters as often
_SAMPLE_EVERY_S = 0.1
#: items the driver answers from the cache at a time, before it gives the rest to the workers
_CACHE_CHUNK = 256
#: answered texts whose records the driver keeps for their duplicates (the latest ones)
_ANSWERED_KEPT = 4096


def run_on_ray(
    items: Iterable[Item],
    schema: Any,
    options: Mapping[str, Any],
    *,
    store: RunStore,
    job: JobInfo,
    workers: int,
    limits: Mapping[str, Any],
    stats: RunStats | None = None,
    retry_errors: bool = False,
    from_cache: Any = None,
) -> KnownLimits:
    """Extract the items the store does not hold yet on the connected Ray cluster (blocking; call
    ``ray.init`` first), counting them into ``stats``; returns what the cluster learned of the
    endpoint's limits (for the store, and the next run). ``options``: the
    :class:`~corral._extractor.Extractor` options of each worker; ``limits``: ``rpm``, ``tpm``,
    ``adaptive``, ``slow_start`` and ``known`` (what an earlier run learned) for the cluster's one
    keeper. ``retry_errors``: extract again the items that ended in error. ``from_cache(items)``:
    the items answered from the response cache, as ``(outcome record, cost)`` by id (the rest go to
    the workers)."""
    ray = import_ray()
    collect = _Collector(store, job, RunStats() if stats is None else stats)
    todo = _todo(items, store, job, collect, retry_errors=retry_errors)
    keeper = ray.remote(num_cpus=0, max_concurrency=KEEPER_CONCURRENCY)(LimitsKeeper).remote(
        limits.get("rpm"),
        limits.get("tpm"),
        limits.get("adaptive", True),
        limits.get("slow_start", True),
        limits.get("known"),
    )
    # A worker holds no more items than it may have requests in flight. One machine's engine keeps a
    # few spare items (one waiting out a backoff holds no slot); a worker does not: when the driver is
    # killed, its workers live on for a moment, and would send their spare items to nobody's store.
    window = int(options.get("concurrency", 16))
    actor = ray.remote(num_cpus=1, max_concurrency=window + 8, max_restarts=-1, max_task_retries=3)
    pool = [actor(RayWorker).remote(schema, dict(options), keeper) for _ in range(workers)]
    try:
        _Pipeline(ray, pool, keeper, collect, window=window, from_cache=from_cache).run(todo)
        learned: KnownLimits = ray.get(keeper.known.remote())
    finally:
        # A cluster outlives the job (``--ray auto``): its actors must not.
        for member in [*pool, keeper]:
            ray.kill(member)
    return learned


def _todo(
    items: Iterable[Item], store: RunStore, job: JobInfo, collect: _Collector, *, retry_errors: bool
) -> Iterator[tuple[Item, int]]:
    """The items still to extract, with their text's hash; those finished before are counted as reused."""
    for item in items:
        text_hash = input_hash(item.text)
        stored = store.lookup(job, item.id, text_hash) if job.finished_before else None
        if stored is None or (retry_errors and stored.status == "error"):
            yield item, text_hash
        else:
            collect.reused(stored.status)


class _Pipeline:
    """The driver's loop: keeps every worker's window full, commits each result as it arrives, and
    reads the workers' counters and the keeper's pace for the progress line and the timeline."""

    def __init__(
        self, ray: Any, pool: list[Any], keeper: Any, collect: _Collector, *, window: int, from_cache: Any
    ) -> None:
        self.ray = ray
        self.pool = pool
        self.keeper = keeper
        self.collect = collect
        self.window = window
        self.from_cache = from_cache
        #: the result of each call in flight → (item id, text hash, worker, text)
        self.calls: dict[Any, tuple[str, int, int, str]] = {}
        #: the texts of the calls in flight → the items with the same text waiting for that answer
        #: (identical requests of a job are sent once, as on one machine)
        self.asking: dict[str, list[tuple[str, int]]] = {}
        #: the latest answered texts' records, for a duplicate looked up in the cache before the first
        #: was answered (the workers' answers reach the store's cache a tenth of a second later)
        self.answered: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.load = [0] * len(pool)
        self.read_at = 0.0

    def run(self, todo: Iterator[tuple[Item, int]]) -> None:
        waiting = self._uncached(todo)
        more = True
        while more or self.calls:
            while more and min(self.load) < self.window:
                nxt = next(waiting, None)
                if nxt is None:
                    more = False
                    break
                self._send(*nxt)
            if self.calls:
                ready, _ = self.ray.wait(list(self.calls), num_returns=1, timeout=_SAMPLE_EVERY_S)
                if ready:  # and whatever else is done by now: one commit for them all
                    ready, _ = self.ray.wait(list(self.calls), num_returns=len(self.calls), timeout=0)
                self._take(ready)
            if time.monotonic() - self.read_at >= _SAMPLE_EVERY_S:
                self._read_counters()
        self._read_counters()

    def _uncached(self, todo: Iterator[tuple[Item, int]]) -> Iterator[tuple[Item, int]]:
        """The items the response cache cannot answer; those it answers are recorded on the way."""
        if self.from_cache is None:
            yield from todo
            return
        while True:
            chunk = [entry for _, entry in zip(range(_CACHE_CHUNK), todo, strict=False)]
            if not chunk:
                return
            answered = self.from_cache([item for item, _ in chunk])
            for item, text_hash in chunk:
                found = answered.get(item.id)
                if found is None:
                    yield item, text_hash
                else:
                    self.collect.add(item.id, text_hash, found[0], found[1], cached=True)
            self.collect.store.flush()

    def _send(self, item: Item, text_hash: int) -> None:
        if item.problem is None:
            waiting = self.asking.get(item.text)
            if waiting is not None:  # the same request is on its way: wait for its answer
                waiting.append((item.id, text_hash))
                return
            answered = self.answered.get(item.text)
            if answered is not None:
                self.collect.add(item.id, text_hash, {**answered, "id": item.id}, 0.0, shared=True)
                return
            self.asking[item.text] = []
        worker = min(range(len(self.pool)), key=self.load.__getitem__)
        call = self.pool[worker].extract.remote(item.id, item.text, item.problem)
        self.calls[call] = (item.id, text_hash, worker, item.text)
        self.load[worker] += 1

    def _take(self, ready: list[Any]) -> None:
        if not ready:
            return
        for call in ready:
            item_id, text_hash, worker, text = self.calls.pop(call)
            self.load[worker] -= 1
            try:
                record, cost = self.ray.get(call)
            except self.ray.exceptions.RayTaskError as exc:
                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                raise cause from None  # a fatal answer (bad key, unknown model): as on one machine
            answer = orjson.loads(record)
            self.collect.add(item_id, text_hash, answer, float(cost))
            self._answer_the_same(text, answer)
        self.collect.store.flush()  # committed: these items are done, and a re-run skips them

    def _answer_the_same(self, text: str, answer: dict[str, Any]) -> None:
        """The items that waited for ``text``'s answer get it; after a failure they ask again."""
        waiting = self.asking.pop(text, None)
        if answer["error"] is not None:
            for item_id, text_hash in waiting or ():
                self._send(Item(id=item_id, text=text), text_hash)  # the first asks, the rest wait
            return
        self.answered[text] = answer
        if len(self.answered) > _ANSWERED_KEPT:
            self.answered.popitem(last=False)
        for item_id, text_hash in waiting or ():
            self.collect.add(item_id, text_hash, {**answer, "id": item_id}, 0.0, shared=True)

    def _read_counters(self) -> None:
        self.read_at = time.monotonic()
        reports: list[WorkerReport] = self.ray.get([worker.report.remote() for worker in self.pool])
        pace: KeeperReport = self.ray.get(self.keeper.report.remote())
        self.collect.observe([report.counts for report in reports], pace)
        for report in reports:
            for entry in report.answers:
                self.collect.store.add_cache(entry[1], entry[2], entry[3])
        self.collect.sample()
        self.collect.store.flush()  # the answers join the cache, the point the timeline, now


class _Collector:
    """The driver's side: results into the store, and the run's counters into ``stats``, its run
    row and its timeline. The items are counted here; the requests are the workers' counts."""

    def __init__(self, store: RunStore, job: JobInfo, stats: RunStats) -> None:
        self.store = store
        self.job = job
        self.stats = stats
        #: requests the driver answered from the response cache (the workers count their own)
        self.cached = 0
        self.rpm: float | None = None
        self.tpm: float | None = None

    def reused(self, status: str) -> None:
        stats = self.stats
        stats.reused += 1
        stats.done += 1
        stats.ok += status == "ok"
        stats.errors += status != "ok"

    def add(
        self,
        item_id: str,
        text_hash: int,
        record: dict[str, Any],
        cost: float,
        *,
        cached: bool = False,
        shared: bool = False,
    ) -> None:
        error, usage = record["error"], record["usage"]
        kind = None if error is None else error["kind"]
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
        row = ItemRow(
            item_id=item_id,
            input_hash=text_hash,
            status="ok" if error is None else "error",
            error_kind=kind,
            attempts=record["attempts"],
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=cost,
            latency=record["latency"],
            record=orjson.dumps(record),
        )
        self.store.add_item(self.job, row)
        stats = self.stats
        stats.done += 1
        stats.ok += error is None
        stats.errors += error is not None
        if kind is not None:
            stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
        stats.prompt_tokens += prompt
        stats.completion_tokens += completion
        stats.cost += cost
        if cached:
            self.cached += record["attempts"]
            stats.cached += record["attempts"]
        if shared:  # answered by an identical item's requests: none of its own
            stats.shared += record["attempts"]

    def observe(self, workers: list[StatsSnapshot], pace: KeeperReport) -> None:
        """The workers' own counts of their requests, into the run's counters and its run row."""
        stats = self.stats
        self.rpm, self.tpm = pace.rpm, pace.tpm
        stats.requests = sum(counts.requests for counts in workers)
        stats.retries = sum(counts.retries for counts in workers)
        stats.rate_limited = sum(counts.rate_limited for counts in workers)
        stats.in_flight = sum(counts.in_flight for counts in workers)
        stats.cached = self.cached + sum(counts.cached for counts in workers)
        faults: dict[str, int] = {}
        for counts in workers:
            for kind, number in counts.faults.items():
                faults[kind] = faults.get(kind, 0) + number
        stats.faults = faults
        record_counters(self.job, stats.snapshot())

    def sample(self) -> None:
        point = timeline_point(self.stats.snapshot(), rpm=self.rpm, tpm=self.tpm, concurrency=None)
        self.store.add_sample(self.job, point)


def run_job_on_ray(spec: JobSpec, *, counters: RunStats | None = None) -> RunStats:
    """The job ``spec`` describes, on Ray (``spec.ray``: the cluster's address and the workers), from
    Python: blocks until it ends (``corral run SOURCE --schema SCHEMA -o OUTPUT --ray``).

    Joins Ray at ``spec.ray.address`` (or an initialised one, or starts a local Ray with
    ``spec.ray.workers`` CPUs); each worker extracts with ``spec.extract``. The job is the same job an
    online run of the output is: a re-run, with or without Ray, skips what either finished, and both
    answer from the same response cache."""
    on_ray = spec.ray or RayOptions()
    ray = import_ray()
    counters = counters or RunStats()
    # The job is opened on a loop of this thread's own, and closed on it; the pipeline between blocks,
    # with no loop set as the thread's current one (Ray's driver would take it for its own).
    with spooled_stdin(spec) as readable, asyncio.Runner() as runner:
        # The schema and the model are checked before Ray starts: a mistake there costs no cluster.
        job = runner.run(_opened(readable))
        asyncio.set_event_loop(None)
        status = "failed"
        try:
            if not ray.is_initialized():
                _connect(ray, on_ray.address, on_ray.workers)
            _quiet_progress(ray)
            status = _drive(job, on_ray.workers, counters, runner)
        finally:
            assert job.store is not None
            assert job.handle is not None
            job.store.finish_run(job.handle, status)
            runner.run(job.aclose())
    return counters


@contextlib.contextmanager
def spooled_stdin(spec: JobSpec) -> Iterator[JobSpec]:
    """``spec``, with standard input (``-``) copied to a file first: a job on Ray reads its input
    twice (to send it, then to write the output in input order). The file goes when the job ends."""
    if spec.input != "-":
        yield spec
        return
    with tempfile.TemporaryDirectory(prefix="corral-stdin-") as folder:
        path = Path(folder) / "input"
        with path.open("wb") as copy:
            shutil.copyfileobj(sys.stdin.buffer, copy)
        yield spec.replace(input=str(path), input_format=spec.input_format or stdin_format())


async def _opened(spec: JobSpec) -> Job:
    return await open_job(spec)


def _drive(job: Job, workers: int, counters: RunStats, runner: asyncio.Runner) -> str:
    """The pipeline, then the output from the store; returns the run's status."""
    store, handle, spec = job.store, job.handle, job.spec
    assert store is not None
    assert handle is not None
    assert spec.input is not None
    source = spec.input
    backend = job.extractor.backend
    options = spec.extract.extractor_options()
    # The workers ask for the model the server named (if it was asked), in the mode chosen here.
    options["model"] = backend.model if spec.extract.base_url else spec.extract.model
    options["mode"] = job.extractor.settings.mode.value
    options["prices"] = job.extractor.prices  # the table the job loaded, not the file again
    for name in ("rpm", "tpm", "adaptive"):  # the keeper's, not each worker's
        options.pop(name)

    def items() -> Iterable[Item]:
        return spec.read_input(source)

    extract = spec.extract
    limits = {
        "rpm": extract.rpm,
        "tpm": extract.tpm,
        "adaptive": extract.adaptive,
        "slow_start": not backend.profile.self_hosted,
        "known": store.known_limits(backend.endpoint, backend.model),
    }
    cache = job.extractor.cache
    from_cache = _CacheAnswers(job, runner) if cache is not None and cache.read else None
    learned = run_on_ray(
        items(),
        portable_schema(spec.schema),
        options,
        store=store,
        job=handle,
        workers=workers,
        limits=limits,
        stats=counters,
        retry_errors=spec.retry_errors,
        from_cache=from_cache,
    )
    store.remember_limits(backend.endpoint, backend.model, learned)
    with job.open_sink() as sink:
        missing = write_output(store, handle, items(), sink)
    if missing:
        raise CorralError(f"{missing} items came back from no worker: run the job again to finish them")
    return "completed"


class _CacheOnly:
    """The job's backend as the driver uses it: it sends nothing. A request the response cache does
    not answer (the scheduler asks the cache first) is deferred: a worker will send it."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @property
    def profile(self) -> Profile:
        return self._backend.profile

    @property
    def model(self) -> str:
        return self._backend.model

    @property
    def endpoint(self) -> str:
        return self._backend.endpoint

    @property
    def context_window(self) -> int | None:
        return self._backend.context_window

    async def complete(self, request: Request) -> Reply:
        return DEFERRED

    async def aclose(self) -> None:
        pass


class _CacheAnswers:
    """What the response cache answers of some items, found by the driver's own extractor over a
    backend that sends nothing (the same keys, re-asks included, as the workers' requests)."""

    def __init__(self, job: Job, runner: asyncio.Runner) -> None:
        self._runner = runner
        spec = job.spec
        self._extractor: Extractor[Any] = Extractor(
            spec.schema,
            backend=_CacheOnly(job.extractor.backend),
            cache=job.extractor.cache,
            # Nothing is sent: no pace to keep, no window to open.
            limits=EndpointLimits(adaptive=False, slow_start=False),
            **_answering_options(spec, job.extractor.settings.mode.value),
        )

    def __call__(self, items: list[Item]) -> dict[str, tuple[dict[str, Any], float]]:
        return self._runner.run(self._answer(items))

    async def _answer(self, items: list[Item]) -> dict[str, tuple[dict[str, Any], float]]:
        answered = {}
        async for outcome in self._extractor.map(items, concurrency=None):
            if outcome.pending is None:
                answered[outcome.id] = (outcome.to_record(), outcome.cost)
        return answered


def _answering_options(spec: JobSpec, mode: str) -> dict[str, Any]:
    options = spec.extract.extractor_options()
    for name in ("rpm", "tpm", "adaptive", "model", "base_url", "api_key_env", "allow_plain_http"):
        options.pop(name)
    options["mode"] = mode
    return options


def _connect(ray: Any, address: str | None, workers: int) -> None:
    """Start a local Ray with ``workers`` CPUs, or join the cluster at ``address``."""
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if address is None:
        ray.init(num_cpus=workers, **quiet)
        return
    # Ray waits a long time for a head that is not there; a closed port is known at once.
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as exc:
            raise ConfigError(
                f"no Ray cluster answers at {address} ({exc.strerror or exc}): start one with "
                "`ray start --head`, or check the address (ray://HEAD:10001, HEAD:6379, or auto)"
            ) from None
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot join the Ray cluster at {address}: {exc}") from None


def _quiet_progress(ray: Any) -> None:
    """Ray logs its start-up and its actors' lives on stderr; corral shows its own progress."""
    logging.getLogger("ray").setLevel(logging.WARNING)


def write_output(store: RunStore, job: JobInfo, items: Iterable[Item], sink: Sink) -> int:
    """Every item's stored record into ``sink``, in input order; returns how many had none yet."""
    missing = 0
    for item in items:
        stored = store.lookup(job, item.id, input_hash(item.text))
        if stored is None:
            missing += 1
        elif item.kept is None:
            sink.write(orjson.loads(stored.record))
        else:  # the input's fields as this run keeps them (--keep), after the id, as Outcome writes them
            record = orjson.loads(stored.record)
            rest = {key: value for key, value in record.items() if key in RECORD_KEYS and key != "id"}
            sink.write({"id": record["id"], **item.kept, **rest})
    sink.flush()
    return missing
