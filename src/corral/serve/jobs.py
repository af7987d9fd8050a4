"""The jobs of ``corral serve``: durable runs owned by the server, followed by any number of clients.

A submission becomes a job: :func:`corral.jobs.run_job` in a task of the :class:`JobManager`, not of
the HTTP request, so a client that disconnects stops nothing. Every job uses the server's one backend
and one :class:`~corral.engine._limits.EndpointLimits`, so all clients together keep the provider's limits,
and the server's one run store: a job's results are committed there before anyone sees them.

Clients never get results from memory. They *follow* a job: read its rows from the store by rowid
cursor and wait for the next commit. Rowid order is commit order, which is completion order, and
items answered from an earlier run are already there, so they come first. Streaming a job live,
fetching it again after a disconnect, and fetching it after a server restart are one code path, and
what a client is shown is exactly what would survive a crash.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from corral.backends import Backend
from corral.cost import Budget, Price
from corral.engine._limits import EndpointLimits
from corral.engine._stats import RunStats
from corral.errors import ConfigError, CorralError, SchemaError, StoreError
from corral.jobs import ExtractOptions, JobSpec, open_job
from corral.jobs import Job as OpenedJob
from corral.serve.errors import ApiError
from corral.serve.stored import PAGE, ServerStore, iso, scoped
from corral.store import JobInfo, RunStore, served_job_key
from corral.types import Item

__all__ = ["UNFINISHED", "Job", "JobManager", "Page", "Submission"]

#: finished jobs whose live counters are kept in memory (older ones are answered from the store)
_KEEP_FINISHED = 1000
#: statuses of a job that did not finish every item
UNFINISHED = ("cancelled", "interrupted", "stopped", "failed", "budget")

#: a page of results: (cursor, record as stored: one line of JSON)
Page = list[tuple[int, bytes]]

log = logging.getLogger("corral.serve")


@dataclass(slots=True)
class Submission:
    """A job as a client asked for it (already checked: a valid schema, unique ids, within limits)."""

    schema: dict[str, Any]
    items: list[Item]
    many: bool = False
    prompt: str | None = None
    id: str | None = None
    fresh: bool = False


class Job:
    """One submission's run, kept in memory while the server lives; its results are in the store."""

    def __init__(self, job_id: str, info: JobInfo, total: int) -> None:
        self.id = job_id
        self.store_id = info.id
        self.total = total
        #: the run's counters, live (the job counts its items into them, its extractor its requests)
        self.stats = RunStats(total=total)
        self.status = "running"
        self.error: dict[str, str] | None = None
        self.cancel_requested = False
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.started = time.perf_counter()

    @property
    def finished(self) -> bool:
        return self.done.is_set()


class JobManager:
    """Starts jobs, follows them, answers for them, and stops them all when the server stops."""

    def __init__(
        self,
        store: RunStore,
        backend: Backend,
        limits: EndpointLimits,
        defaults: ExtractOptions,
        *,
        max_jobs: int,
        max_cost: float | None = None,
        prices: Mapping[str, Price] | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.store = store
        self.prices = prices
        #: what all jobs together may still spend while this server runs (--max-total-cost)
        self.budget = budget
        self.stored = ServerStore(store)
        self.backend = backend
        self.limits = limits
        #: what the server's command line sets for every job (a submission brings its prompt and many)
        self.defaults = defaults
        #: what one job (all its runs) may spend, in USD; None: no cap of its own
        self.max_cost = max_cost
        self.max_jobs = max_jobs
        self._jobs: dict[str, Job] = {}  # oldest first
        self._starting: set[str] = set()
        self._closing = False
        # Set (and replaced) after any commit of any job: followers wait on it. One event for the
        # whole store, because one job's commit may carry another job's rows.
        self._wake = asyncio.Event()
        self._wake_due = False

    @property
    def running(self) -> int:
        return len(self._starting) + sum(1 for job in self._jobs.values() if not job.finished)

    # --- starting ------------------------------------------------------------------------------

    async def start(self, submission: Submission, owner: str = "") -> Job:
        """Open ``owner``'s job in the store and start its run; raises :class:`ApiError` when refused."""
        if self._closing:
            raise ApiError(503, "shutting_down", "the server is shutting down", headers={"Retry-After": "10"})
        if self.budget is not None and self.budget.reached:
            raise ApiError(
                402, "budget_reached", f"this server has spent what it may (${self.budget.spent:.4f} of "
                f"--max-total-cost ${self.budget.limit:.2f}): its operator can restart it with a higher cap",
            )  # fmt: skip
        job_id = submission.id or secrets.token_hex(8)
        key = scoped(owner, job_id)
        current = self._jobs.get(key)
        if key in self._starting or (current is not None and not current.finished):
            raise ApiError(
                409,
                "job_running",
                f"job {job_id!r} is running: follow it at GET /v1/jobs/{job_id}/results, "
                f"or cancel it with DELETE /v1/jobs/{job_id}",
            )
        if self.running >= self.max_jobs:
            raise ApiError(
                429,
                "too_many_jobs",
                f"the server runs at most {self.max_jobs} jobs at once (--max-jobs); "
                "try again when one has finished",
                headers={"Retry-After": "5"},
            )
        self._starting.add(key)  # held across the awaits below: a second POST of the id is refused
        try:
            return await self._open(job_id, key, submission, owner)
        finally:
            self._starting.discard(key)

    async def _open(self, job_id: str, key: str, submission: Submission, owner: str) -> Job:
        defaults = self.defaults
        extract = dataclasses.replace(
            defaults, prompt=submission.prompt or defaults.prompt, many=submission.many
        )
        spec = JobSpec(
            schema=submission.schema,
            extract=extract,
            order="completion",
            fresh=submission.fresh,
            max_cost=self.max_cost,
        )

        def check(settings: Mapping[str, Any]) -> None:
            self._check_settings(job_id, key, settings, fresh=submission.fresh)

        try:
            opened = await open_job(
                spec,
                store=self.store,
                key=served_job_key(key),
                backend=self.backend,  # resolved at start-up: opening the job sends nothing
                limits=self.limits,
                prices=self.prices,
                # Each client its own cache: a quick answer must not tell one what another sent.
                cache_scope=owner,
                budget_parent=self.budget,
                check_settings=check,
            )
        except SchemaError as exc:
            raise ApiError(422, "invalid_schema", str(exc)) from None
        except ConfigError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None
        except StoreError as exc:
            # The store's message names its file: the client is told what it can act on.
            message = str(exc).replace(str(self.store.path), "the server's run store")
            raise ApiError(409, "job_conflict", f"job {job_id!r} cannot start: {message}") from None
        info = opened.handle
        assert info is not None
        try:
            replaced = self.stored.forget_changed(info, submission.items)
        except BaseException:
            self.store.finish_run(info, "failed")
            await opened.aclose()
            raise
        job = Job(job_id, info, len(submission.items))
        self._jobs.pop(key, None)  # re-inserted last: the dict stays oldest first
        self._jobs[key] = job
        self._prune()
        job.task = asyncio.create_task(
            self._run(job, opened, submission.items), name=f"corral-serve-{job_id}"
        )

        def cancelled_before_start(task: asyncio.Task[None]) -> None:
            # A task cancelled before its first step never runs _run's cleanup: do it here, or the
            # job would stay "running" and its followers would wait for it forever.
            if not job.finished:
                self.stored.release(info)
                job.status = "cancelled" if job.cancel_requested else "interrupted"
                job.done.set()
                self._notify()

        job.task.add_done_callback(cancelled_before_start)
        earlier = f", {info.finished_before:,} finished before" if info.finished_before else ""
        changed = f", {replaced:,} with a changed text" if replaced else ""
        log.info("job %s: %s items%s%s", job_id, f"{job.total:,}", earlier, changed)
        return job

    def _check_settings(self, job_id: str, key: str, settings: Mapping[str, Any], *, fresh: bool) -> None:
        """A resubmission must ask for what the job's stored results answer (the store checks this
        too; here the client gets a message about ids instead of command-line options)."""
        if fresh:
            return
        stored = self.stored.settings(key)
        if stored is None:
            return
        changed = [key for key in sorted({*stored, *settings}) if stored.get(key) != settings.get(key)]
        if changed:
            details = "; ".join(
                f"{key}: {_short(stored.get(key))} → {_short(settings.get(key))}" for key in changed
            )
            raise ApiError(
                409,
                "job_mismatch",
                f"job {job_id!r} was created with a different {', '.join(changed)} ({details}), so its "
                'results would not match: post it under another id, or with "fresh": true to start it over',
            )

    def _prune(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.finished]
        for job_id in finished[: max(0, len(finished) - _KEEP_FINISHED)]:
            del self._jobs[job_id]

    # --- running -------------------------------------------------------------------------------

    async def _run(self, job: Job, opened: OpenedJob, items: list[Item]) -> None:
        info = opened.handle
        assert info is not None
        try:
            result = await opened.run(items, _WakeSink(self._notify), counters=job.stats)
            job.status = result.status
            if result.status == "budget":
                job.error = {
                    "type": "budget_reached",
                    "message": f"job {job.id!r} stopped: {result.budget_message}; its finished results "
                    "are kept: post the job again with the same id when there is budget to finish it",
                }
        except asyncio.CancelledError:
            # Ours (DELETE, or the server stopping): run_job has committed every finished result.
            job.status = "cancelled" if job.cancel_requested else "interrupted"
        except CorralError as exc:
            job.status = "stopped" if getattr(exc, "fatal", False) else "failed"
            message = str(exc).replace(str(self.store.path), "the server's run store")
            job.error = {"type": exc.kind, "message": message}
            log.warning("job %s %s: %s", job.id, job.status, exc)
        except Exception:
            log.exception("job %s failed", job.id)
            job.status = "failed"
            job.error = {"type": "internal", "message": "the job failed on the server (its log says why)"}
        finally:
            self.stored.release(info)
            await opened.aclose()
            job.done.set()
            self._notify()
        c = job.stats
        log.info(
            "job %s %s: %s results (%s ok, %s errors, %s from the store), %s requests, %.1f s",
            job.id, job.status, f"{c.done:,}", f"{c.ok:,}", f"{c.errors:,}", f"{c.reused:,}",
            f"{c.requests:,}", time.perf_counter() - job.started,
        )  # fmt: skip

    def _notify(self) -> None:
        # Coalesced: a commit of a thousand rows wakes every follower once, not a thousand times.
        if not self._wake_due:
            self._wake_due = True
            asyncio.get_running_loop().call_soon(self._fire)

    def _fire(self) -> None:
        self._wake_due = False
        self._wake.set()
        self._wake = asyncio.Event()

    # --- following -----------------------------------------------------------------------------

    def find(self, job_id: str, owner: str = "") -> tuple[int, Job | None]:
        """``owner``'s job: its id in the store, and its live state if it runs (or ran) in this server.
        Another client's job is not found: not even its existence is told."""
        key = scoped(owner, job_id)
        store_id = self.stored.find(key)
        if store_id is None:
            raise ApiError(404, "not_found", f"there is no job {job_id!r}")
        job = self._jobs.get(key)
        return store_id, job if job is not None and job.store_id == store_id else None

    async def follow(
        self,
        store_id: int,
        job: Job | None,
        *,
        after: int | None = None,
        only: set[str] | None = None,
        heartbeat: float | None = None,
    ) -> AsyncIterator[Page]:
        """Pages of the job's results in commit order, from the store, until the job has ended.

        ``after``: a cursor from an earlier page (results after it). ``only``: item ids to deliver,
        each once (a submission's own items); the stream ends when all are out and the job has ended.
        ``heartbeat``: yield an empty page after this many idle seconds (SSE keep-alives).
        """
        while True:
            wake = self._wake  # taken before reading: a commit after the read sets this one
            live = job is not None and not job.finished  # likewise: the final commit precedes "done"
            rows = self.stored.page(store_id, after)
            if rows:
                after = rows[-1][0]
                page = [
                    (rowid, record) for rowid, item_id, record in rows if only is None or _take(only, item_id)
                ]
                if page:
                    yield page
                if len(rows) == PAGE:
                    continue
            if job is None or not live:
                return
            if only is not None and not only:
                await job.done.wait()  # every result is out; the run is closing
                return
            try:
                async with asyncio.timeout(heartbeat):
                    await wake.wait()
            except TimeoutError:
                yield []

    # --- answering -----------------------------------------------------------------------------

    def status(self, job_id: str, owner: str = "") -> dict[str, Any]:
        """What GET /v1/jobs/{id} answers: live counters if the job ran here, the store's otherwise."""
        store_id, job = self.find(job_id, owner)
        record = self.stored.record(store_id)
        answer: dict[str, Any] = {
            "id": job_id,
            # A run left "running" by a server that is gone was interrupted (ours does not run it).
            "status": "interrupted" if record.last_run == "running" else record.last_run,
            "total": None,
            "done": record.done,
            "ok": record.ok,
            "errors": record.errors,
            "created": iso(record.created),
            "updated": iso(record.updated),
            "settings": record.settings,
            "results": f"/v1/jobs/{job_id}/results",
        }
        if job is None:
            answer["error"] = self._unfinished(job_id, answer["status"], record.done, None)
            return answer
        stats = job.stats
        answer |= {
            "status": job.status,
            "total": job.total,
            "reused": stats.reused,
            "requests": stats.requests,
            "cached": stats.cached,
            "shared": stats.shared,
            "retries": stats.retries,
            "cost": stats.spent,
            "error": job.error or self._unfinished(job_id, job.status, record.done, job),
        }
        return answer

    def unfinished(self, job_id: str, owner: str = "") -> dict[str, str] | None:
        """Why the job's results are incomplete (it did not complete), or None."""
        error: dict[str, str] | None = self.status(job_id, owner).get("error")
        return error

    def _unfinished(self, job_id: str, status: str, done: int, job: Job | None) -> dict[str, str] | None:
        if status not in UNFINISHED:
            return None
        of = f" of {job.total:,}" if job is not None else ""
        why = {
            "cancelled": "was cancelled",
            "interrupted": "was interrupted (the server stopped)",
        }.get(status, f"ended: {status}")
        return {
            "type": status,
            "message": f"job {job_id!r} {why} after {done:,}{of} results; they are kept: post the job "
            "again with the same id to finish it",
        }

    # --- stopping ------------------------------------------------------------------------------

    async def cancel(self, job_id: str, owner: str = "") -> dict[str, Any]:
        """Cancel a running job (DELETE); its finished results stay in the store."""
        _, job = self.find(job_id, owner)
        if job is None or job.finished or job.task is None:
            status = self.status(job_id, owner)["status"]
            raise ApiError(409, "not_running", f"job {job_id!r} is not running ({status}): nothing to cancel")
        job.cancel_requested = True
        job.task.cancel()
        await job.done.wait()
        return self.status(job_id, owner)

    def stop_all(self) -> int:
        """Cancel every running job (the server is stopping); returns how many there were."""
        self._closing = True
        running = [job for job in self._jobs.values() if not job.finished and job.task is not None]
        for job in running:
            assert job.task is not None
            job.task.cancel()
        return len(running)

    async def aclose(self) -> None:
        """Stop every job and wait until each has committed what it finished."""
        self.stop_all()
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)


class _WakeSink:
    """The sink run_job writes to: it only says that something was committed (followers read the
    store). run_job writes a record once its batch is committed, and flushes after every commit."""

    path: str | None = None

    def __init__(self, notify: Callable[[], None]) -> None:
        self._notify = notify

    def write(self, record: Mapping[str, Any]) -> None:
        self._notify()

    def flush(self) -> None:
        # After every commit tick: a commit may carry this job's rows although another job made it.
        self._notify()

    def close(self) -> None:
        pass

    def __enter__(self) -> _WakeSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _take(only: set[str], item_id: str) -> bool:
    if item_id in only:
        only.discard(item_id)
        return True
    return False


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
