"""What the run store knows about the server's jobs: finding and releasing them, reading their
results by cursor, and their record after the fact (also after a restart).

A job of the server is the store's job named ``serve/<id>`` (``serve/@<client>/<id>`` when the server
has several clients: :func:`~corral.store.served_job_key`). Its results are the ``items`` rows, read
by cursor (:meth:`~corral.store.Views.page`): the cursor is the order the items completed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from corral.store import JobInfo, RunStore, input_hash, served_job_key
from corral.types import Item

__all__ = ["PAGE", "JobRecord", "ServerStore", "iso", "scoped"]

#: rows read per query while following a job
PAGE = 256


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as the store records it."""

    created: float
    updated: float
    settings: dict[str, Any]
    done: int
    ok: int
    errors: int
    #: how its latest run ended (completed, interrupted, stopped, failed), or "running"
    last_run: str


class ServerStore:
    """The server's jobs in one :class:`~corral.store.RunStore` (shared with the jobs' runs)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def find(self, key: str) -> int | None:
        """The store's id of the job (``key`` from :func:`scoped`), None if there is none."""
        job = self.store.find_job(served_job_key(key))
        return None if job is None else job.id

    def settings(self, key: str) -> dict[str, Any] | None:
        return self.store.views.job_settings(served_job_key(key))

    def release(self, job: JobInfo) -> None:
        """The run is over: the same job may run again in this process, and its counters are no
        longer rewritten with every commit (a server lives for days and runs many jobs)."""
        self.store.release_job(job)

    def forget_changed(self, info: JobInfo, items: list[Item]) -> int:
        """Delete the stored results of items whose text changed since: a job holds one result per
        id, and the new text's result replaces the old one (run_job extracts it again)."""
        if not info.finished_before:
            return 0
        return self.store.forget_changed(info, {item.id: input_hash(item.text) for item in items})

    def page(self, store_id: int, after: int | None) -> list[tuple[int, str, bytes]]:
        """Up to :data:`PAGE` results ``(cursor, item id, record)`` after ``after`` (None: the first)."""
        return self.store.views.page(store_id, after, PAGE)

    def record(self, store_id: int) -> JobRecord:
        views = self.store.views
        job = views.job(store_id)
        assert job is not None  # the server found it by its key
        done, ok, errors = views.item_counts(store_id)
        last_run = views.last_run_status(store_id) or "interrupted"
        return JobRecord(job.created, job.updated, job.settings, done, ok, errors, last_run)


def scoped(owner: str, job_id: str) -> str:
    """A job's name among every client's jobs: its id, under the client's name when the server has
    several (``--tokens``). Ids cannot hold "@" or "/", so two clients' names never meet."""
    return f"@{owner}/{job_id}" if owner else job_id


def iso(timestamp: float) -> str:
    """A store time as ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
