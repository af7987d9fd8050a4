"""Jobs, their runs and their finished items: the tables that make a job survive a crash.

    jobs    one row per output: its key (:func:`job_key`) and the fingerprint of what was asked
    runs    one row per invocation: when, how it ended, requests, tokens and dollars spent
    items   one row per finished item: its output record, status, attempts, tokens, cost

A job's key is its name in the store, made by one rule (:func:`job_key`) that every entry point and
the report's lookup follow. Finished items are queued (:meth:`JobTables.add_item`) and inserted with
the store's next batch; a running job's counters are rewritten with every batch.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from corral.errors import StoreError
from corral.store._db import Database

__all__ = [
    "JOBS_TABLES",
    "SERVED_PREFIX",
    "ItemRow",
    "JobInfo",
    "JobTables",
    "StoredItem",
    "input_hash",
    "job_key",
    "job_keys",
    "served_job_key",
]

JOBS_TABLES = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    settings TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    started REAL NOT NULL,
    ended REAL,
    status TEXT NOT NULL,
    items INTEGER NOT NULL DEFAULT 0,
    ok INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    reused INTEGER NOT NULL DEFAULT 0,
    requests INTEGER NOT NULL DEFAULT 0,
    cached INTEGER NOT NULL DEFAULT 0,
    shared INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    faults TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE items (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    item_id TEXT NOT NULL,
    input_hash INTEGER NOT NULL,
    run INTEGER NOT NULL,
    status TEXT NOT NULL,
    error_kind TEXT,
    attempts INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    latency REAL NOT NULL,
    finished REAL NOT NULL,
    record BLOB NOT NULL
);
CREATE UNIQUE INDEX items_by_item ON items (job, item_id, input_hash);
"""

#: the name of a job of ``corral serve`` starts with this (``corral run`` names its jobs after their
#: output files, which never start so)
SERVED_PREFIX = "serve/"

_ITEM_INSERT = (
    "INSERT OR REPLACE INTO items (job, item_id, input_hash, run, status, error_kind, attempts, "
    "prompt_tokens, completion_tokens, cost, latency, finished, record) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_RUN_UPDATE = (
    "UPDATE runs SET items = ?, ok = ?, errors = ?, reused = ?, requests = ?, cached = ?, shared = ?, "
    "retries = ?, prompt_tokens = ?, completion_tokens = ?, cost = ?, faults = ? WHERE id = ?"
)
_RUN_COUNTERS = (
    "items",
    "ok",
    "errors",
    "reused",
    "requests",
    "cached",
    "shared",
    "retries",
    "prompt_tokens",
    "completion_tokens",
    "cost",
)


def job_key(output: str | None, source: str = "-", *, store_apart: bool) -> str:
    """A job's name in its store: the one rule. ``output``: the file the job writes (None or "-":
    stdout); ``source``: its input ("-": stdin); ``store_apart``: the store is not the default one
    beside the output (``--store`` or ``$CORRAL_STORE`` chose it).

    Beside the output the file name is enough, and survives moving the directory; a store elsewhere
    holds the jobs of many directories, so there the full path tells them apart. A job writing to
    stdout is named after its input."""
    if output and output != "-":
        path = Path(output)
        return str(path.resolve()) if store_apart else path.name
    return f"<stdout>:{'<stdin>' if source == '-' else Path(source).resolve()}"


def job_keys(selector: str) -> tuple[str, ...]:
    """The names a job that the user named by ``selector`` (``corral report RUN``) may have: the
    name itself, as stored (``serve/ID``, ``<stdout>:…``), and the output file's key with the store
    beside it or apart from it (a store beside the output may also be named with ``--store``)."""
    if selector == "-":  # stdout is no output file: only a job stored under that very name
        return (selector,)
    return tuple(
        dict.fromkeys((selector, job_key(selector, store_apart=False), job_key(selector, store_apart=True)))
    )


def served_job_key(job: str) -> str:
    """The name of a job of ``corral serve`` (``job``: its id, scoped by its client's name)."""
    return SERVED_PREFIX + job


def input_hash(text: str) -> int:
    """A 63-bit hash of an item's text: a stored result is reused only for the same text."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# Not frozen: one is made per item, and a frozen dataclass takes three times as long to make.
@dataclass(slots=True)
class ItemRow:
    """A finished item, as the ``items`` table keeps it (its job, run and finish time are added
    when it is queued)."""

    item_id: str
    input_hash: int
    #: "ok" or "error"
    status: str
    error_kind: str | None
    attempts: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    latency: float
    #: the record the output holds, as JSON
    record: bytes


@dataclass(frozen=True, slots=True)
class StoredItem:
    """The result an earlier run stored for an item."""

    status: str
    record: bytes


@dataclass(slots=True)
class JobInfo:
    """A job (one output) as the store knows it."""

    id: int
    name: str
    run: int
    #: dollars spent by every earlier run of this job
    spent_before: float
    #: items finished by earlier runs (0 for a new or ``--fresh`` job: no lookups needed)
    finished_before: int
    errors_before: int
    #: counters of this run, written with every batch
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_RUN_COUNTERS, 0))
    #: failed requests this run retried, by error kind (rate_limited: 3, server_error: 1, ...)
    faults: dict[str, int] = field(default_factory=dict)


class JobTables:
    """The jobs, runs and items of one store, and the locks of the jobs this process runs."""

    def __init__(self, db: Database) -> None:
        self._db = db
        #: finished items waiting for the next batch, as rows of the items table
        self._queued: list[tuple[Any, ...]] = []
        #: run id -> its job, whose counters are rewritten with every batch
        self._running: dict[int, JobInfo] = {}
        #: run id -> the lock of the job it runs (released with the run, or with the store)
        self._locks: dict[int, BinaryIO] = {}

    def open_job(self, name: str, settings: Mapping[str, Any], *, fresh: bool) -> JobInfo:
        """See :meth:`corral.store.RunStore.open_job`."""
        lock = self._lock_job(name)
        try:
            info = self._start_run(name, settings, fresh=fresh)
        except BaseException:
            lock.close()  # refused: another attempt (say with fresh=True) may take the job
            raise
        self._running[info.run] = info
        self._locks[info.run] = lock
        return info

    def release_job(self, job: JobInfo) -> None:
        self._running.pop(job.run, None)
        handle = self._locks.pop(job.run, None)
        if handle is not None:
            handle.close()

    def close(self) -> None:
        for handle in self._locks.values():
            handle.close()  # releases the job's lock
        self._locks.clear()

    def _start_run(self, name: str, settings: Mapping[str, Any], *, fresh: bool) -> JobInfo:
        fingerprint = _fingerprint(settings)
        now = time.time()
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT id, fingerprint, settings FROM jobs WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                job_id = conn.execute(
                    "INSERT INTO jobs (name, fingerprint, settings, created, updated) VALUES (?, ?, ?, ?, ?)",
                    (name, fingerprint, _dumps(settings), now, now),
                ).lastrowid
            else:
                job_id = row[0]
                if row[1] != fingerprint and not fresh:
                    raise StoreError(_mismatch(name, self._db.path, orjson.loads(row[2]), settings))
                if fresh:
                    conn.execute("DELETE FROM items WHERE job = ?", (job_id,))
                    conn.execute("DELETE FROM documents WHERE job = ?", (job_id,))
                    conn.execute("DELETE FROM runs WHERE job = ?", (job_id,))
                conn.execute(
                    "UPDATE jobs SET fingerprint = ?, settings = ?, updated = ? WHERE id = ?",
                    (fingerprint, _dumps(settings), now, job_id),
                )
            spent = conn.execute(
                "SELECT COALESCE(SUM(cost), 0) FROM runs WHERE job = ?", (job_id,)
            ).fetchone()[0]
            finished, errors = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(status = 'error'), 0) FROM items WHERE job = ?", (job_id,)
            ).fetchone()
            run_id = conn.execute(
                "INSERT INTO runs (job, started, status) VALUES (?, ?, 'running')", (job_id, now)
            ).lastrowid
        assert job_id is not None
        assert run_id is not None
        return JobInfo(job_id, name, run_id, float(spent), int(finished), int(errors))

    def finish_run(self, job: JobInfo, status: str) -> None:
        with self._db.write() as conn:
            self._write_counters(conn, job)
            conn.execute("UPDATE runs SET ended = ?, status = ? WHERE id = ?", (time.time(), status, job.run))

    def find_job(self, name: str) -> JobInfo | None:
        row = self._db.read_one("SELECT id FROM jobs WHERE name = ?", (name,))
        return None if row is None else JobInfo(row[0], name, 0, 0.0, 0, 0)

    def _lock_job(self, name: str) -> BinaryIO:
        # Two runs writing one output would interleave it: the second is refused. flock is released by
        # the kernel when the process dies, so a killed run never leaves a stale lock behind.
        digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:16]
        path = self._db.path
        lock_path = path.with_name(f"{path.name}.{digest}.lock")
        # Held open for the run's lifetime; the owner's only, like the store (its name says which job).
        handle = os.fdopen(os.open(lock_path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "wb")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(
                f"another corral run is writing {name} (store {path}); wait for it or stop it first"
            ) from None
        return handle

    # --- items ---------------------------------------------------------------------------------

    def lookup(self, job: JobInfo, item_id: str, text_hash: int) -> StoredItem | None:
        row = self._db.read_one(
            "SELECT status, record FROM items WHERE job = ? AND item_id = ? AND input_hash = ?",
            (job.id, item_id, text_hash),
        )
        return None if row is None else StoredItem(row[0], row[1])

    def errors_of(self, job: JobInfo) -> Iterator[tuple[str, str]]:
        yield from self._db.read(
            "SELECT item_id, error_kind FROM items WHERE job = ? AND status = 'error'", (job.id,)
        )

    def forget_changed(self, job: JobInfo, hashes: Mapping[str, int]) -> int:
        """Delete the job's results of the items in ``hashes`` (item id -> input hash) whose stored
        text differs; the number deleted. Items not named are left alone."""
        rows = self._db.read("SELECT rowid, item_id, input_hash FROM items WHERE job = ?", (job.id,))
        stale = [
            (rowid,) for rowid, item_id, text_hash in rows if hashes.get(item_id, text_hash) != text_hash
        ]
        if stale:
            with self._db.write() as conn:
                conn.executemany("DELETE FROM items WHERE rowid = ?", stale)
        return len(stale)

    def add_item(self, job: JobInfo, row: ItemRow) -> None:
        self._queued.append((
            job.id, row.item_id, row.input_hash, job.run, row.status, row.error_kind, row.attempts,
            row.prompt_tokens, row.completion_tokens, row.cost, row.latency, time.time(), row.record,
        ))  # fmt: skip

    @property
    def pending(self) -> int:
        return len(self._queued)

    def take(self) -> list[tuple[Any, ...]]:
        """The queued rows, for a writer (:meth:`insert`); the queue starts over."""
        rows, self._queued = self._queued, []
        return rows

    def insert(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows :meth:`take` gave."""
        if rows:
            conn.executemany(_ITEM_INSERT, rows)

    def write_counters(self, conn: sqlite3.Connection) -> None:
        """Rewrite the run row of every job running in this process with its counters."""
        for job in self._running.values():
            self._write_counters(conn, job)

    @staticmethod
    def _write_counters(conn: sqlite3.Connection, job: JobInfo) -> None:
        values = [job.counters[name] for name in _RUN_COUNTERS]
        conn.execute(_RUN_UPDATE, (*values, _dumps(job.faults), job.run))


def _dumps(value: Mapping[str, Any]) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _fingerprint(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(_dumps(settings).encode()).hexdigest()


def _mismatch(name: str, path: Path, stored: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    changed = [key for key in sorted({*stored, *now}) if stored.get(key) != now.get(key)]
    details = "; ".join(f"{key}: {_show(stored.get(key))} → {_show(now.get(key))}" for key in changed)
    return (
        f"{name} was started with a different {', '.join(changed)} ({details}) — its results in "
        f"{path} would not match. Re-run with --fresh to start it over (answers already paid for are "
        "reused from the cache), or write to another output."
    )


def _show(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
