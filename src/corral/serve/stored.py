"""What the run store knows about the server's jobs: opening and releasing them, reading their
results by cursor, and their record after the fact (also after a restart).

A job of the server is the store's job named ``serve/<id>`` (``serve/@<client>/<id>`` when the server
has several clients). Its results are the ``items`` rows,
and the rowid of a row is its cursor: rows are appended as batches commit, so rowid order is commit
order, which is the order the items completed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from corral.store import JobInfo, RunStore, input_hash
from corral.types import Item

__all__ = ["JOB_PREFIX", "PAGE", "JobRecord", "ServerStore", "iso", "scoped"]

#: a job's name in the store: ``serve/<id>`` (``corral run`` names its jobs after their output files)
JOB_PREFIX = "serve/"
#: rows read per query while following a job
PAGE = 256
#: the first page of a job: the store's index on (job, ...) finds its rows, however old they are
_FIRST = "SELECT rowid, item_id, record FROM items WHERE job = ? ORDER BY rowid LIMIT ?"
#: every later page: a range of the rowid b-tree after the last row seen. ``+job`` keeps SQLite off
#: the (job, item_id) index, which would visit all the job's rows for every page.
_NEXT = "SELECT rowid, item_id, record FROM items WHERE +job = ? AND rowid > ? ORDER BY rowid LIMIT ?"


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
        rows = self.store.query("SELECT id FROM jobs WHERE name = ?", (JOB_PREFIX + key,))
        return int(rows[0][0]) if rows else None

    def settings(self, key: str) -> dict[str, Any] | None:
        rows = self.store.query("SELECT settings FROM jobs WHERE name = ?", (JOB_PREFIX + key,))
        return orjson.loads(rows[0][0]) if rows else None

    def open(self, key: str, settings: Mapping[str, Any], *, fresh: bool) -> JobInfo:
        """Start a run of the job (the store refuses one running elsewhere, or other settings)."""
        return self.store.open_job(JOB_PREFIX + key, settings, fresh=fresh)

    def release(self, job: JobInfo) -> None:
        """The run is over: the same job may run again in this process, and its counters are no
        longer rewritten with every commit (a server lives for days and runs many jobs)."""
        self.store.release_job(job)

    def forget_changed(self, info: JobInfo, items: list[Item]) -> int:
        """Delete the stored results of items whose text changed since: a job holds one result per
        id, and the new text's result replaces the old one (run_job extracts it again)."""
        if not info.finished_before:
            return 0
        wanted = {item.id: input_hash(item.text) for item in items}
        rows = self.store.query("SELECT rowid, item_id, input_hash FROM items WHERE job = ?", (info.id,))
        stale = [
            (rowid,) for rowid, item_id, text_hash in rows if wanted.get(item_id, text_hash) != text_hash
        ]
        if stale:
            with self.store.transaction() as conn:
                conn.executemany("DELETE FROM items WHERE rowid = ?", stale)
        return len(stale)

    def page(self, store_id: int, after: int | None) -> list[tuple[int, str, bytes]]:
        """Up to :data:`PAGE` results ``(cursor, item id, record)`` after ``after`` (None: the first)."""
        if after is None:
            return self.store.query(_FIRST, (store_id, PAGE))
        return self.store.query(_NEXT, (store_id, after, PAGE))

    def record(self, store_id: int) -> JobRecord:
        created, updated, settings = self.store.query(
            "SELECT created, updated, settings FROM jobs WHERE id = ?", (store_id,)
        )[0]
        done, ok, errors = self.store.query(
            "SELECT COUNT(*), COALESCE(SUM(status = 'ok'), 0), COALESCE(SUM(status = 'error'), 0) "
            "FROM items WHERE job = ?",
            (store_id,),
        )[0]
        runs = self.store.query("SELECT status FROM runs WHERE job = ? ORDER BY id DESC LIMIT 1", (store_id,))
        last_run = runs[0][0] if runs else "interrupted"
        return JobRecord(created, updated, orjson.loads(settings), done, ok, errors, last_run)


def scoped(owner: str, job_id: str) -> str:
    """A job's name among every client's jobs: its id, under the client's name when the server has
    several (``--tokens``). Ids cannot hold "@" or "/", so two clients' names never meet."""
    return f"@{owner}/{job_id}" if owner else job_id


def iso(timestamp: float) -> str:
    """A store time as ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
