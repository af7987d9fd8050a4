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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from corral._extractor import Extractor
from corral.backends.base import RateLimitInfo
from corral.engine._limits import EndpointLimits, KnownLimits
from corral.engine._stats import RunCounters
from corral.errors import ConfigError, CorralError
from corral.io.items import Format
from corral.io.sinks import Sink, SinkFormat
from corral.jobs import job_name, job_settings, store_path
from corral.store import JobInfo, RunStore, input_hash
from corral.types import Item, Outcome

__all__ = [
    "ExtractBatches",
    "GlobalLimits",
    "LimitsKeeper",
    "RayRun",
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
    :func:`run_on_ray`). It also counts what every worker sends, for progress and the report.

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
        self.requests = 0
        self.in_flight = 0
        self.rate_limited = 0

    async def reserve(self, tokens: float) -> float:
        await self.limits.open_window()
        self.requests += 1
        self.in_flight += 1
        return self.limits.reserve(tokens)

    def done(self, prompt_tokens_error: float | None, seconds_ago: float = 0.0) -> None:
        self.in_flight -= 1
        if prompt_tokens_error is not None:
            self.limits.answered(prompt_tokens_error, time.monotonic() - seconds_ago)
        self.limits.released()

    def limited(self, seconds_ago: float, retry_after: float | None, overload: bool) -> None:
        self.rate_limited += 1
        self.limits.rate_limited(time.monotonic() - seconds_ago, retry_after, overload=overload)

    def learn(self, info: RateLimitInfo) -> None:
        self.limits.learn(info)

    def known(self) -> KnownLimits:
        return self.limits.known()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "rate_limited": self.rate_limited,
            "rpm": self.limits.rpm,
            "tpm": self.limits.tpm,
        }


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


@dataclass(slots=True)
class RayRun:
    """How a pipeline went: items it finished, and what the cluster sent."""

    finished: int = 0
    #: answers the items got (re-asks included): the requests that brought none were retried
    answers: int = 0
    requests: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    #: what the keeper learned of the endpoint's limits (for the store, and the next run)
    learned: KnownLimits = field(default_factory=KnownLimits)


def run_on_ray(
    items: Iterable[Item],
    schema: Any,
    options: Mapping[str, Any],
    *,
    store: RunStore,
    job: JobInfo,
    workers: int,
    limits: Mapping[str, Any],
    counters: RunCounters | None = None,
) -> RayRun:
    """Extract the items the store does not hold yet on the connected Ray cluster (blocking; call
    ``ray.init`` first). ``options``: the :class:`~corral._extractor.Extractor` options of each worker;
    ``limits``: ``rpm``, ``tpm``, ``adaptive``, ``slow_start`` and ``known`` (what an earlier run
    learned) for the cluster's one keeper."""
    ray = import_ray()
    collect = _Collector(store, job, counters or RunCounters())
    todo = []
    for item in items:
        stored = store.lookup(job, item.id, input_hash(item.text)) if job.finished_before else None
        if stored is None:
            todo.append({"id": item.id, "text": item.text, "problem": item.problem or ""})
        else:
            collect.reused(stored.status)
    if not todo:
        return collect.run
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
        collect.observe(ray.get(keeper.stats.remote()))
        if time.monotonic() - sampled >= _SAMPLE_EVERY_S:
            sampled = time.monotonic()
            collect.sample()
    collect.observe(ray.get(keeper.stats.remote()))
    collect.run.learned = ray.get(keeper.known.remote())
    collect.sample()
    store.flush()
    return collect.run


class _Collector:
    """The driver's side: results into the store, counters, the job's run row and its timeline."""

    def __init__(self, store: RunStore, job: JobInfo, counters: RunCounters) -> None:
        self.store = store
        self.job = job
        self.counters = counters
        self.run = RayRun()
        self.stats: Mapping[str, Any] = {"in_flight": 0, "rpm": None, "tpm": None}

    def reused(self, status: str) -> None:
        c = self.counters
        c.reused += 1
        c.done += 1
        c.ok += status == "ok"
        c.errors += status != "ok"

    def add(self, item_id: str, text_hash: int, record: dict[str, Any], cost: float) -> None:
        error, usage = record["error"], record["usage"]
        kind = None if error is None else error["kind"]
        prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
        row = (item_id, text_hash, "ok" if error is None else "error", kind, record["attempts"], prompt,
               completion, cost, record["latency"], orjson.dumps(record))  # fmt: skip
        self.store.add_item(self.job, row)
        run, c = self.run, self.counters
        run.finished += 1
        run.answers += record["attempts"]
        run.prompt_tokens += prompt
        run.completion_tokens += completion
        run.cost += cost
        c.done += 1
        c.ok += error is None
        c.errors += error is not None
        if kind is not None:
            c.kinds[kind] = c.kinds.get(kind, 0) + 1
        c.tokens += prompt + completion
        c.cost = (c.cost or 0.0) + cost

    def observe(self, stats: Mapping[str, Any]) -> None:
        """The keeper's counts of what every worker sent; copied into the job's run row."""
        run, c = self.run, self.counters
        self.stats = stats
        run.requests, run.rate_limited = stats["requests"], stats["rate_limited"]
        c.requests, c.rate_limited, c.in_flight = run.requests, run.rate_limited, stats["in_flight"]
        # Requests that brought no answer were retried (or were the last try of an item that failed).
        c.retries = max(0, run.requests - run.answers - stats["in_flight"])
        counters = self.job.counters
        counters.update(items=c.done, ok=c.ok, errors=c.errors, reused=c.reused, requests=run.requests)
        counters.update(retries=c.retries, cost=run.cost, prompt_tokens=run.prompt_tokens)
        counters["completion_tokens"] = run.completion_tokens
        self.job.faults = {"rate_limited": run.rate_limited} if run.rate_limited else {}

    def sample(self) -> None:
        c, run = self.counters, self.run
        self.store.add_sample(self.job, (time.time(), c.done, c.ok, c.errors, run.requests, c.retries,
                                         run.rate_limited, self.stats["in_flight"], c.tokens, run.cost,
                                         self.stats["rpm"], self.stats["tpm"], None))  # fmt: skip


def run_job_on_ray(
    source: str | Path,
    schema: Any,
    *,
    output: str | Path,
    workers: int = 2,
    address: str | None = None,
    store: str | Path | None = None,
    fresh: bool = False,
    rpm: float | None = None,
    tpm: float | None = None,
    adaptive: bool = True,
    input_format: Format | None = None,
    output_format: SinkFormat | None = None,
    text_field: str = "text",
    id_field: str = "id",
    counters: RunCounters | None = None,
    **options: Any,
) -> RunCounters:
    """``corral run SOURCE --schema SCHEMA -o OUTPUT --ray``, from Python (blocking).

    Connects to Ray at ``address`` (or an initialised one, or starts a local Ray with ``workers``
    CPUs); ``options`` are each worker's :class:`~corral._extractor.Extractor` options (``model``,
    ``base_url``, ``concurrency``, ...). The job is the same job an online run of ``output`` is: a
    re-run, with or without Ray, skips what either finished."""
    from corral.io.items import read_items
    from corral.io.sinks import open_sink, sink_format

    ray = import_ray()
    # The schema and the model are checked before Ray starts: a mistake there costs no cluster.
    settings, worker_options, spec, endpoint = asyncio.run(_prepare(schema, dict(options)))
    if not ray.is_initialized():
        _connect(ray, address, workers)
    _quiet_progress(ray)
    counters = counters or RunCounters()
    fmt = sink_format(str(output), output_format)

    def items() -> Iterable[Item]:
        return read_items(source, format=input_format, text_field=text_field, id_field=id_field)

    with RunStore.open(store_path(str(output), None if store is None else str(store))) as run_store:
        name = job_name(str(output), str(source), store=None if store is None else str(store))
        job = run_store.open_job(name, settings, fresh=fresh)
        status = "failed"
        try:
            limits = {"rpm": rpm, "tpm": tpm, "adaptive": adaptive, "slow_start": not endpoint.self_hosted,
                      "known": run_store.known_limits(endpoint.url, endpoint.model)}  # fmt: skip
            ray_run = run_on_ray(items(), portable_schema(schema), worker_options, store=run_store,
                                 job=job, workers=workers, limits=limits, counters=counters)  # fmt: skip
            run_store.remember_limits(endpoint.url, endpoint.model, ray_run.learned)
            with open_sink(str(output), fmt, spec) as sink:
                missing = write_output(run_store, job, items(), sink)
            if missing:
                raise CorralError(
                    f"{missing} items came back from no worker: run the job again to finish them"
                )
            status = "completed"
        finally:
            run_store.finish_run(job, status)
    return counters


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """Where the workers will send: to find and keep what is known of its limits."""

    url: str
    model: str
    self_hosted: bool


async def _prepare(
    schema: Any, options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], Any, _Endpoint]:
    """The job's settings, the workers' options, the spec and the endpoint, from one extractor on
    the driver: it checks the schema and the model once and names the job (it sends no extraction)."""
    async with Extractor[Any](schema, **options) as extractor:
        if options.get("base_url"):
            options["model"] = extractor.backend.model  # the name the server gave, if it was asked
        options["mode"] = extractor.settings.mode.value
        backend = extractor.backend
        endpoint = _Endpoint(backend.endpoint, backend.model, backend.profile.self_hosted)
        return job_settings(extractor), options, extractor.spec, endpoint


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
