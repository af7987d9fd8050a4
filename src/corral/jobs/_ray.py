"""A job on a Ray cluster: many workers, one provider budget, the driver's store.

    driver: input ─► skip ids finished before (store) ─► Ray Data: map_batches(ExtractBatches) ─►
            each result batch committed to the store ─► at the end, the output in input order
    worker: corral's own engine (Extractor.map: re-asks, retries, backoff) over its batch, pacing
            every request through one LimitsKeeper actor shared by all workers

The provider's requests- and tokens-per-minute limits are one global budget kept by the
:class:`LimitsKeeper` actor: a worker asks it for each request's place (one small call) and sleeps
until then, so two workers or twenty together send what one would, never limit ÷ workers guessed up
front. What the provider's headers say, and its 429s, reach the keeper and pace everyone.

The driver is the only writer: results come back to it, go into its run store (committed per batch)
and only then count as done; the output is written from the store, in input order, when the
pipeline ends. So each item is written exactly once, and a killed job re-run skips the ids already
in the store. A worker that dies has its batch retried by Ray; an answer that arrives twice is stored
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from corral._extractor import Extractor
from corral.backends.base import RateLimitInfo
from corral.cost import load_prices
from corral.engine._limits import EndpointLimits
from corral.engine._stats import RunStats, StatsSnapshot
from corral.errors import ConfigError, CorralError
from corral.io.items import read_items
from corral.io.sinks import Sink
from corral.jobs._open import Job, open_job
from corral.jobs._record import record_counters, timeline_point
from corral.jobs._spec import JobSpec, RayOptions
from corral.store import ItemRow, JobInfo, KnownLimits, RunStore, input_hash
from corral.types import Item, Outcome

__all__ = [
    "ExtractBatches",
    "GlobalLimits",
    "KeeperReport",
    "LimitsKeeper",
    "import_ray",
    "portable_schema",
    "run_job_on_ray",
    "run_on_ray",
    "write_output",
]

#: items per batch a worker takes, per request it may have in flight. A batch comes back whole, so
#: small batches bring results into the store (done, kept across a kill) sooner; two per slot keep
#: the worker busy while a batch's last requests finish
BATCH_PER_SLOT = 2
#: the driver samples the run's timeline this often (the report plots it)
_SAMPLE_EVERY_S = 0.5
#: requests the keeper's loop may hold at once (workers × their concurrency, with room to spare)
_KEEPER_CONCURRENCY = 10_000


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'corral[ray]'") from None
    return ray


class LimitsKeeper:
    """The one keeper of the provider's limits for a whole cluster (a Ray actor, made by
    :func:`run_on_ray`). It also counts what every worker sends (requests, in flight, rate limits),
    and reports the counts to the driver, for progress and the report.

    An async actor: a request's place may wait for room in the slow-start window, which only
    answers (from any worker) make, so :meth:`reserve` awaits it on the actor's loop."""

    def __init__(
        self,
        rpm: float | None,
        tpm: float | None,
        adaptive: bool,
        slow_start: bool = True,
        known: KnownLimits | None = None,
    ) -> None:
        self.limits = EndpointLimits(rpm=rpm, tpm=tpm, adaptive=adaptive, slow_start=slow_start, known=known)
        self.sent = RunStats()

    async def reserve(self, tokens: float) -> float:
        await self.limits.open_window()
        self.sent.requests += 1
        self.sent.in_flight += 1
        return self.limits.reserve(tokens)

    def done(self, prompt_tokens_error: float | None, seconds_ago: float = 0.0) -> None:
        self.sent.in_flight -= 1
        if prompt_tokens_error is not None:
            self.limits.answered(prompt_tokens_error, time.monotonic() - seconds_ago)
        self.limits.released()

    def limited(self, seconds_ago: float, retry_after: float | None, overload: bool) -> None:
        self.sent.rate_limited += 1
        self.limits.rate_limited(time.monotonic() - seconds_ago, retry_after, overload=overload)

    def learn(self, info: RateLimitInfo) -> None:
        self.limits.learn(info)

    def known(self) -> KnownLimits:
        return self.limits.known()

    def report(self) -> KeeperReport:
        return KeeperReport(self.sent.snapshot(), self.limits.rpm, self.limits.tpm)


@dataclass(frozen=True, slots=True)
class KeeperReport:
    """What the keeper tells the driver: the counts of what every worker sent, and the requests and
    tokens per minute it paces them to (None: no limit known)."""

    sent: StatsSnapshot
    rpm: float | None
    tpm: float | None


class GlobalLimits(EndpointLimits):
    """A worker's view of the cluster's limits: every decision is the keeper's.

    Only :meth:`admit` waits for an answer (the place of the request); what the worker learns is
    sent without waiting. The clocks of worker and keeper never meet: the keeper answers in seconds
    to wait, and is told how long ago a request was sent."""

    def __init__(self, keeper: Any) -> None:
        super().__init__(adaptive=False)
        self._keeper = keeper
        self._answered: tuple[float, float] | None = None

    async def admit(self, tokens: float) -> None:
        wait = await self._keeper.reserve.remote(tokens)
        if wait > 0:
            await asyncio.sleep(wait)

    def answered(self, prompt_tokens_error: float, sent_at: float | None = None) -> None:
        # The scheduler calls released() right after, in the same step: sent together, in one call.
        self._answered = (prompt_tokens_error, time.monotonic() - sent_at if sent_at is not None else 0.0)

    def released(self) -> None:
        error, ago = self._answered if self._answered is not None else (None, 0.0)
        self._keeper.done.remote(error, ago)
        self._answered = None

    def rate_limited(self, sent_at: float, retry_after: float | None, *, overload: bool = False) -> None:
        self._keeper.limited.remote(time.monotonic() - sent_at, retry_after, overload)

    def learn(self, info: RateLimitInfo) -> None:
        self._keeper.learn.remote(info)


class ExtractBatches:
    """A Ray Data worker: corral's engine over each batch, with the cluster's limits."""

    def __init__(self, schema: Any, options: Mapping[str, Any], keeper: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._extractor: Extractor[Any] = Extractor(schema, limits=GlobalLimits(keeper), **options)
        self._loop.run_until_complete(self._extractor.__aenter__())

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        items = [
            Item(str(item_id), str(text), problem=str(problem) or None)
            for item_id, text, problem in zip(batch["id"], batch["text"], batch["problem"], strict=True)
        ]
        outcomes = self._loop.run_until_complete(self._extract(items))
        rows: dict[str, list[Any]] = {"id": [], "record": [], "cost": []}
        for outcome in outcomes:
            rows["id"].append(outcome.id)
            rows["record"].append(orjson.dumps(outcome.to_record()))
            rows["cost"].append(outcome.cost)
        return rows

    async def _extract(self, items: list[Item]) -> list[Outcome[Any]]:
        return [outcome async for outcome in self._extractor.map(items)]


def portable_schema(schema: Any) -> Any:
    """``schema`` in a form a worker can load: a class from a ``file.py`` is sent by value (workers
    cannot import the file), a ``.json`` path as its absolute path, anything else as it is."""
    ray = import_ray()
    if isinstance(schema, str | Path) and str(schema).endswith(".json"):
        return str(Path(schema).resolve())
    if isinstance(schema, str | Path) and ":" in str(schema):
        from corral.schema import load_model

        schema = load_model(str(schema))
    module = sys.modules.get(getattr(schema, "__module__", ""))
    if module is not None and module.__name__.startswith("corral_user_"):
        ray.cloudpickle.register_pickle_by_value(module)
    return schema


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
) -> KnownLimits:
    """Extract the items the store does not hold yet on the connected Ray cluster (blocking; call
    ``ray.init`` first), counting them into ``stats``; returns what the cluster learned of the
    endpoint's limits (for the store, and the next run). ``options``: the
    :class:`~corral._extractor.Extractor` options of each worker; ``limits``: ``rpm``, ``tpm``,
    ``adaptive``, ``slow_start`` and ``known`` (what an earlier run learned) for the cluster's one
    keeper."""
    ray = import_ray()
    collect = _Collector(store, job, RunStats() if stats is None else stats)
    todo = []
    for item in items:
        stored = store.lookup(job, item.id, input_hash(item.text)) if job.finished_before else None
        if stored is None:
            todo.append({"id": item.id, "text": item.text, "problem": item.problem or ""})
        else:
            collect.reused(stored.status)
    if not todo:
        return KnownLimits()
    # Every worker's every request may wait in the keeper at once (slow start): room for them all.
    keeper = ray.remote(num_cpus=0, max_concurrency=_KEEPER_CONCURRENCY)(LimitsKeeper).remote(
        limits.get("rpm"),
        limits.get("tpm"),
        limits.get("adaptive", True),
        limits.get("slow_start", True),
        limits.get("known"),
    )
    dataset = ray.data.from_items(todo).map_batches(
        ExtractBatches,
        fn_constructor_kwargs={"schema": schema, "options": dict(options), "keeper": keeper},
        batch_size=max(1, int(options.get("concurrency", 16)) * BATCH_PER_SLOT),
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    hashes = {row["id"]: input_hash(row["text"]) for row in todo}
    sampled = 0.0
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for item_id, raw, cost in zip(batch["id"], batch["record"], batch["cost"], strict=True):
            collect.add(str(item_id), hashes[str(item_id)], orjson.loads(raw), float(cost))
        store.flush()  # committed: these items are done, and a re-run skips them
        collect.observe(ray.get(keeper.report.remote()))
        if time.monotonic() - sampled >= _SAMPLE_EVERY_S:
            sampled = time.monotonic()
            collect.sample()
    collect.observe(ray.get(keeper.report.remote()))
    learned: KnownLimits = ray.get(keeper.known.remote())
    collect.sample()
    store.flush()
    return learned


class _Collector:
    """The driver's side: results into the store, and the run's counters into ``stats``, its run
    row and its timeline (the keeper counts the requests: the driver takes its reports)."""

    def __init__(self, store: RunStore, job: JobInfo, stats: RunStats) -> None:
        self.store = store
        self.job = job
        self.stats = stats
        #: answers the items got (re-asks included): the requests that brought none were retried
        self.answers = 0
        self.rpm: float | None = None
        self.tpm: float | None = None

    def reused(self, status: str) -> None:
        stats = self.stats
        stats.reused += 1
        stats.done += 1
        stats.ok += status == "ok"
        stats.errors += status != "ok"

    def add(self, item_id: str, text_hash: int, record: dict[str, Any], cost: float) -> None:
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
        self.answers += record["attempts"]
        stats.done += 1
        stats.ok += error is None
        stats.errors += error is not None
        if kind is not None:
            stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
        stats.prompt_tokens += prompt
        stats.completion_tokens += completion
        stats.cost += cost

    def observe(self, report: KeeperReport) -> None:
        """The keeper's counts of what every worker sent, into the run's counters and its run row."""
        sent, stats = report.sent, self.stats
        self.rpm, self.tpm = report.rpm, report.tpm
        stats.requests, stats.rate_limited, stats.in_flight = sent.requests, sent.rate_limited, sent.in_flight
        # Requests that brought no answer were retried (or were the last try of an item that failed).
        stats.retries = max(0, sent.requests - self.answers - sent.in_flight)
        stats.faults = {"rate_limited": sent.rate_limited} if sent.rate_limited else {}
        record_counters(self.job, stats.snapshot())

    def sample(self) -> None:
        point = timeline_point(self.stats.snapshot(), rpm=self.rpm, tpm=self.tpm, concurrency=None)
        self.store.add_sample(self.job, point)


def run_job_on_ray(spec: JobSpec, *, counters: RunStats | None = None) -> RunStats:
    """The job ``spec`` describes, on Ray (``spec.ray``: the cluster's address and the workers), from
    Python: blocks until it ends (``corral run SOURCE --schema SCHEMA -o OUTPUT --ray``).

    Joins Ray at ``spec.ray.address`` (or an initialised one, or starts a local Ray with
    ``spec.ray.workers`` CPUs); each worker extracts with ``spec.extract``. The job is the same job an
    online run of the output is: a re-run, with or without Ray, skips what either finished."""
    on_ray = spec.ray or RayOptions()
    ray = import_ray()
    counters = counters or RunStats()
    # The job is opened on a loop of this thread's own, and closed on it; the pipeline between blocks,
    # with no loop set as the thread's current one (Ray's driver would take it for its own).
    with asyncio.Runner() as runner:
        # The schema and the model are checked before Ray starts: a mistake there costs no cluster.
        job = runner.run(_opened(spec))
        asyncio.set_event_loop(None)
        status = "failed"
        try:
            if not ray.is_initialized():
                _connect(ray, on_ray.address, on_ray.workers)
            _quiet_progress(ray)
            status = _drive(job, on_ray.workers, counters)
        finally:
            assert job.store is not None
            assert job.handle is not None
            job.store.finish_run(job.handle, status)
            runner.run(job.aclose())
    return counters


async def _opened(spec: JobSpec) -> Job:
    return await open_job(spec)


def _drive(job: Job, workers: int, counters: RunStats) -> str:
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
    options["prices"] = load_prices(spec.prices) if spec.prices else None
    for name in ("rpm", "tpm", "adaptive"):  # the keeper's, not each worker's
        options.pop(name)

    def items() -> Iterable[Item]:
        return read_items(
            source, format=spec.input_format, text_field=spec.text_field, id_field=spec.id_field
        )

    extract = spec.extract
    limits = {"rpm": extract.rpm, "tpm": extract.tpm, "adaptive": extract.adaptive,
              "slow_start": not backend.profile.self_hosted,
              "known": store.known_limits(backend.endpoint, backend.model)}  # fmt: skip
    learned = run_on_ray(items(), portable_schema(spec.schema), options, store=store,
                         job=handle, workers=workers, limits=limits, stats=counters)  # fmt: skip
    store.remember_limits(backend.endpoint, backend.model, learned)
    with job.open_sink() as sink:
        missing = write_output(store, handle, items(), sink)
    if missing:
        raise CorralError(f"{missing} items came back from no worker: run the job again to finish them")
    return "completed"


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
    """Ray Data reports every operator's progress on stderr; corral shows its own."""
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    with contextlib.suppress(AttributeError):  # not in every Ray version
        context.enable_operator_progress_bars = False


def write_output(store: RunStore, job: JobInfo, items: Iterable[Item], sink: Sink) -> int:
    """Every item's stored record into ``sink``, in input order; returns how many had none yet."""
    missing = 0
    for item in items:
        stored = store.lookup(job, item.id, input_hash(item.text))
        if stored is None:
            missing += 1
        else:
            sink.write(orjson.loads(stored.record))
    sink.flush()
    return missing
