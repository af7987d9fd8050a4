"""The workers' side of a job on Ray: the one keeper of the provider's limits, each worker's view of
it, and the worker itself (see :mod:`corral.jobs._ray` for the whole flow).

A worker is an async actor that extracts one item per call, as many at once as the driver sends it
(its extractor's slots bound the requests in flight), so each result goes back to the driver, and
into its store, the moment it is ready. It keeps no store: the answers it gets are recorded for the
driver's response cache, and its counters are read by the driver as they change.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from corral._extractor import Extractor
from corral.backends.base import RateLimitInfo
from corral.engine._limits import EndpointLimits
from corral.engine._stats import RunStats, StatsSnapshot
from corral.errors import ConfigError
from corral.store import KnownLimits
from corral.store._cache import ResponseCache, key_hash
from corral.types import Item

__all__ = [
    "GlobalLimits",
    "KeeperReport",
    "LimitsKeeper",
    "RayWorker",
    "WorkerReport",
    "import_ray",
    "portable_schema",
]

#: requests the keeper's loop may hold at once (workers × their concurrency, with room to spare)
KEEPER_CONCURRENCY = 10_000


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'corral[ray]'") from None
    return ray


class LimitsKeeper:
    """The one keeper of the provider's limits for a whole cluster (a Ray actor, made by
    :func:`~corral.jobs._ray.run_on_ray`); it tells the driver the pace it keeps (the timeline plots
    it). What the workers sent, they count themselves (:meth:`RayWorker.report`).

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

    async def reserve(self, tokens: float) -> float:
        await self.limits.open_window()
        return self.limits.reserve(tokens)

    def done(self, prompt_tokens_error: float | None, seconds_ago: float = 0.0) -> None:
        if prompt_tokens_error is not None:
            self.limits.answered(prompt_tokens_error, time.monotonic() - seconds_ago)
        self.limits.released()

    def limited(self, seconds_ago: float, retry_after: float | None, overload: bool) -> None:
        self.limits.rate_limited(time.monotonic() - seconds_ago, retry_after, overload=overload)

    def learn(self, info: RateLimitInfo) -> None:
        self.limits.learn(info)

    def known(self) -> KnownLimits:
        return self.limits.known()

    def report(self) -> KeeperReport:
        return KeeperReport(self.limits.rpm, self.limits.tpm)


@dataclass(frozen=True, slots=True)
class KeeperReport:
    """What the keeper tells the driver: the requests and tokens per minute it paces the workers to
    (None: no limit known)."""

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


class _RecordedAnswers:
    """A worker's response cache has no store: it finds nothing, and keeps what it is told to cache
    until the driver takes it into the store's cache (where the next job, on Ray or not, finds it)."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, bytes, str, bytes, float]] = []

    def cached_entry(self, key: bytes) -> tuple[bytes, float] | None:
        return None

    def add_cache(self, key: bytes, model: str, completion: bytes) -> None:
        self.entries.append((key_hash(key), key, model, completion, time.time()))


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What a worker tells the driver when asked: its counters, and the answers to cache since."""

    counts: StatsSnapshot
    answers: list[tuple[int, bytes, str, bytes, float]]


class RayWorker:
    """One worker: corral's own engine (re-asks, retries, backoff) with the cluster's limits, one
    item per call. An async actor: its calls share one loop and one extractor, as a machine's would."""

    def __init__(self, schema: Any, options: Mapping[str, Any], keeper: Any) -> None:
        self._schema = schema
        self._options = dict(options)
        self._keeper = keeper
        self._extractor: Extractor[Any] | None = None
        self._opening: asyncio.Lock | None = None
        self._answers = _RecordedAnswers()

    async def extract(self, item_id: str, text: str, problem: str | None) -> tuple[bytes, float]:
        """One item's outcome, as its record (JSON) and its cost."""
        extractor = self._extractor or await self._open()
        outcome = await extractor.extract(Item(item_id, text, problem=problem))
        return orjson.dumps(outcome.to_record()), outcome.cost

    def report(self) -> WorkerReport:
        extractor = self._extractor
        counts = (extractor.stats if extractor is not None else RunStats()).snapshot()
        answers, self._answers.entries = self._answers.entries, []
        return WorkerReport(counts, answers)

    async def _open(self) -> Extractor[Any]:
        # On the actor's loop (its constructor runs elsewhere): the backend's session belongs here.
        self._opening = self._opening or asyncio.Lock()
        async with self._opening:
            if self._extractor is None:
                extractor: Extractor[Any] = Extractor(
                    self._schema,
                    limits=GlobalLimits(self._keeper),
                    cache=ResponseCache(self._answers, read=False),
                    **self._options,
                )
                await extractor.__aenter__()
                self._extractor = extractor
            return self._extractor


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
