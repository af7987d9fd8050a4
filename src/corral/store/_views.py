"""Read-only queries of what runs wrote, for ``corral report`` and ``corral serve``.

They read on the store's reader connection, so they run beside a run that is writing (also one in
another process): a report of a run still going, a server following a job's results by cursor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from corral.store._db import Database
from corral.store._timeline import SAMPLE_COLUMNS, Sample

__all__ = ["ItemCounts", "ItemTiming", "RunRecord", "StoredJob", "Views"]

_RUN_COLUMNS = (
    "id, job, started, ended, status, items, ok, errors, reused, requests, cached, shared, "
    "retries, prompt_tokens, completion_tokens, cost, faults"
)
#: the first page of a job's results: the store's index on (job, ...) finds its rows, however old
_FIRST_PAGE = "SELECT rowid, item_id, record FROM items WHERE job = ? ORDER BY rowid LIMIT ?"
#: every later page: a range of the rowid b-tree after the last row seen. ``+job`` keeps SQLite off
#: the (job, item_id) index, which would visit all the job's rows for every page.
_NEXT_PAGE = "SELECT rowid, item_id, record FROM items WHERE +job = ? AND rowid > ? ORDER BY rowid LIMIT ?"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as its row records it: when, how it ended, and its counters."""

    id: int
    job: int
    started: float
    #: None while it runs (or if it was killed)
    ended: float | None
    status: str
    items: int
    ok: int
    errors: int
    reused: int
    requests: int
    cached: int
    #: requests answered by an identical request of the same run (not sent)
    shared: int
    retries: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    #: failed requests it retried, by error kind
    faults: dict[str, int]


@dataclass(frozen=True, slots=True)
class StoredJob:
    """A job's row: its name (key), the settings its runs share, when it was made and last run."""

    id: int
    name: str
    settings: dict[str, Any]
    created: float
    updated: float


class ItemTiming(NamedTuple):
    """When an item finished, how, and how long it took."""

    finished: float
    status: str
    latency: float


class ItemCounts(NamedTuple):
    """A job's finished items."""

    done: int
    ok: int
    errors: int


class Views:
    """The named read-only queries of one store."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- runs ---------------------------------------------------------------------------------------

    def latest_run(self, job: int | None = None) -> int | None:
        """The newest run of ``job`` (None: of any job); None if there is none."""
        if job is None:
            row = self._db.read_one("SELECT MAX(id) FROM runs")
        else:
            row = self._db.read_one("SELECT MAX(id) FROM runs WHERE job = ?", (job,))
        return None if row is None or row[0] is None else int(row[0])

    def latest_run_named(self, names: Iterable[str]) -> int | None:
        """The newest run of the job stored under any of ``names``; None if there is none."""
        names = tuple(names)
        marks = ", ".join("?" for _ in names)
        row = self._db.read_one(
            f"SELECT MAX(runs.id) FROM runs JOIN jobs ON jobs.id = runs.job WHERE jobs.name IN ({marks})",
            names,
        )
        return None if row is None or row[0] is None else int(row[0])

    def run_ids(self) -> tuple[int, int] | None:
        """The first and the last run's ids (None: the store holds no run)."""
        row = self._db.read_one("SELECT MIN(id), MAX(id) FROM runs")
        return None if row is None or row[0] is None else (int(row[0]), int(row[1]))

    def run(self, run: int) -> RunRecord | None:
        row = self._db.read_one(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run,))
        return None if row is None else _run_record(row)

    def runs_of(self, job: int) -> list[RunRecord]:
        """Every run of a job, oldest first."""
        rows = self._db.read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE job = ? ORDER BY id", (job,))
        return [_run_record(row) for row in rows]

    def last_run_status(self, job: int) -> str | None:
        """How the job's newest run ended ("running" while it runs); None: it has no run."""
        row = self._db.read_one("SELECT status FROM runs WHERE job = ? ORDER BY id DESC LIMIT 1", (job,))
        return None if row is None else str(row[0])

    def samples(self, run: int) -> list[Sample]:
        """A run's timeline, in time order."""
        rows = self._db.read(f"SELECT {SAMPLE_COLUMNS} FROM samples WHERE run = ? ORDER BY time", (run,))
        return [Sample(*row) for row in rows]

    # --- jobs ---------------------------------------------------------------------------------------

    def job(self, job: int) -> StoredJob | None:
        row = self._db.read_one("SELECT id, name, settings, created, updated FROM jobs WHERE id = ?", (job,))
        return None if row is None else StoredJob(row[0], row[1], orjson.loads(row[2]), row[3], row[4])

    def job_settings(self, name: str) -> dict[str, Any] | None:
        """The settings of the job stored under ``name`` (None: no such job)."""
        row = self._db.read_one("SELECT settings FROM jobs WHERE name = ?", (name,))
        if row is None:
            return None
        settings: dict[str, Any] = orjson.loads(row[0])
        return settings

    def recent_job_names(self, limit: int) -> list[str]:
        """The names of the jobs run last, newest first."""
        rows = self._db.read("SELECT name FROM jobs ORDER BY updated DESC LIMIT ?", (limit,))
        return [str(name) for (name,) in rows]

    # --- items --------------------------------------------------------------------------------------

    def item_counts(self, job: int) -> ItemCounts:
        row = self._db.read_one(
            "SELECT COUNT(*), COALESCE(SUM(status = 'ok'), 0), COALESCE(SUM(status = 'error'), 0) "
            "FROM items WHERE job = ?",
            (job,),
        )
        assert row is not None
        return ItemCounts(int(row[0]), int(row[1]), int(row[2]))

    def finished_in(self, run: int) -> list[ItemTiming]:
        """The items a run finished, in the order it finished them."""
        rows = self._db.read(
            "SELECT finished, status, latency FROM items WHERE run = ? ORDER BY finished", (run,)
        )
        return [ItemTiming(*row) for row in rows]

    def error_kinds(self, job: int) -> list[tuple[str, int]]:
        """The kinds of error the job's items ended in, with how many ended so: most first."""
        return [
            (str(kind), int(count))
            for kind, count in self._db.read(
                "SELECT error_kind, COUNT(*) AS n FROM items WHERE job = ? AND status = 'error' "
                "GROUP BY error_kind ORDER BY n DESC, error_kind",
                (job,),
            )
        ]

    def errors_of_kind(self, job: int, kind: str, limit: int) -> list[tuple[str, bytes]]:
        """``(item id, record)`` of the first ``limit`` of the job's items that ended in ``kind``."""
        return self._db.read(
            "SELECT item_id, record FROM items WHERE job = ? AND status = 'error' AND error_kind = ? "
            "ORDER BY rowid LIMIT ?",
            (job, kind, limit),
        )

    def records(self, job: int, *, errors: bool, limit: int) -> list[tuple[bytes, int, float]]:
        """``(record, run, cost)`` of the first ``limit`` of the job's items that ended in an error
        (``errors``) or ok, in the order they were stored."""
        status = "=" if errors else "!="
        return self._db.read(
            f"SELECT record, run, cost FROM items WHERE job = ? AND status {status} 'error' "
            "ORDER BY rowid LIMIT ?",
            (job, limit),
        )

    def page(self, job: int, after: int | None, limit: int) -> list[tuple[int, str, bytes]]:
        """Up to ``limit`` of a job's results ``(cursor, item id, record)`` after the cursor ``after``
        (None: from the first). The cursor is the row's rowid: rows are appended as batches commit, so
        its order is the order the items completed in."""
        if after is None:
            return self._db.read(_FIRST_PAGE, (job, limit))
        return self._db.read(_NEXT_PAGE, (job, after, limit))


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    values = list(row)
    values[-1] = orjson.loads(values[-1])  # faults, as JSON
    return RunRecord(*values)
