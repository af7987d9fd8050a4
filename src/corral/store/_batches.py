"""A job's provider batches (``batches``), the state of each request in them (``batch_requests``),
and the options ``corral batch`` submitted with (``job_args``).

A request's row is written before its batch is submitted, so a crash never leaves a batch the store
does not know; its answer (or error) is written when the batch is collected. Requests are found by
the response cache's key (:func:`~corral.store._cache.key_hash` indexes it). See
:mod:`corral.jobs._batch` for the states a request goes through.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import orjson

from corral.store._cache import key_hash
from corral.store._db import Database

__all__ = [
    "BATCH_TABLES",
    "BatchInfo",
    "BatchRow",
    "BatchTables",
    "LineAnswer",
    "job_args_all",
    "save_job_args",
]

BATCH_TABLES = """
CREATE TABLE batches (
    id INTEGER PRIMARY KEY,
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    label TEXT NOT NULL UNIQUE,
    api TEXT NOT NULL,
    remote_id TEXT,
    status TEXT NOT NULL,
    open INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    counts TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX batches_by_job ON batches (job, open);
CREATE TABLE batch_requests (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    hash INTEGER NOT NULL,
    key BLOB NOT NULL,
    batch INTEGER NOT NULL,
    submissions INTEGER NOT NULL,
    state TEXT NOT NULL,
    answer BLOB,
    cost REAL NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX batch_requests_by_key ON batch_requests (job, hash);
CREATE INDEX batch_requests_by_batch ON batch_requests (batch, state);
CREATE TABLE job_args (
    job INTEGER PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    args TEXT NOT NULL
);
"""


@dataclass(slots=True)
class BatchInfo:
    """A batch as the store knows it (for ``corral batch status``)."""

    id: int
    label: str
    api: str
    remote_id: str | None
    status: str
    open: bool
    requests: int
    counts: dict[str, int]
    created: float


@dataclass(slots=True)
class BatchRow:
    """A request's state in the store."""

    key: bytes
    batch: int
    submissions: int
    #: pending (in a submitted batch), done (answered) or failed
    state: str
    #: the answer (done) or the error (failed), encoded
    answer: bytes | None
    cost: float


class LineAnswer(NamedTuple):
    """What a collected batch said to one request."""

    key: bytes
    #: done or failed
    state: str
    #: the answer or the error, encoded
    answer: bytes
    cost: float


class BatchTables:
    """Reads and writes of a store's batch tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- batches ------------------------------------------------------------------------------------

    def of_job(self, job: int, *, only_open: bool = False) -> list[BatchInfo]:
        """A job's batches, oldest first."""
        rows = self._db.read(
            "SELECT id, label, api, remote_id, status, open, requests, counts, created FROM batches "
            "WHERE job = ? " + ("AND open = 1 " if only_open else "") + "ORDER BY id",
            (job,),
        )
        return [
            BatchInfo(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], orjson.loads(r[7]), r[8]) for r in rows
        ]

    def open_sizes(self, job: int) -> dict[int, int]:
        """The requests of each of the job's open batches, by batch id."""
        rows = self._db.read("SELECT id, requests FROM batches WHERE job = ? AND open = 1", (job,))
        return {int(batch_id): int(requests) for batch_id, requests in rows}

    def last_id(self, job: int) -> int:
        """The id of the job's latest batch (0: it has none)."""
        row = self._db.read_one("SELECT COALESCE(MAX(id), 0) FROM batches WHERE job = ?", (job,))
        assert row is not None
        return int(row[0])

    def remote_ids(self) -> frozenset[str]:
        """The provider ids of every batch the store knows, of every job."""
        rows = self._db.read("SELECT remote_id FROM batches WHERE remote_id IS NOT NULL")
        return frozenset(str(remote_id) for (remote_id,) in rows)

    def record(self, job: int, label: str, api: str, keys: Iterable[bytes]) -> int:
        """A batch about to be submitted, and its requests (pending in it); its id. A request that
        was in an earlier batch moves to this one, one submission more."""
        now = time.time()
        keys = list(keys)
        with self._db.write() as conn:
            batch_id = conn.execute(
                "INSERT INTO batches (job, label, api, status, open, requests, created, updated) "
                "VALUES (?, ?, ?, 'submitting', 1, ?, ?, ?)",
                (job, label, api, len(keys), now, now),
            ).lastrowid
            assert batch_id is not None
            conn.executemany(
                "INSERT INTO batch_requests (job, hash, key, batch, submissions, state) "
                "VALUES (?, ?, ?, ?, 1, 'pending') ON CONFLICT (job, hash) DO UPDATE SET "
                "batch = excluded.batch, submissions = submissions + 1, state = 'pending', answer = NULL",
                [(job, key_hash(key), key, batch_id) for key in keys],
            )
        return batch_id

    def update(self, batch: int, *, remote_id: str, status: str, counts: Mapping[str, int]) -> None:
        """Record what the provider last said of a batch."""
        with self._db.write() as conn:
            conn.execute(
                "UPDATE batches SET remote_id = ?, status = ?, counts = ?, updated = ? WHERE id = ?",
                (remote_id, status, orjson.dumps(counts).decode(), time.time(), batch),
            )

    def forget(self, batch: int, *, answered_too: bool) -> None:
        """Delete a batch and its pending requests (``answered_too``: every request it holds)."""
        with self._db.write() as conn:
            if answered_too:
                conn.execute("DELETE FROM batch_requests WHERE batch = ?", (batch,))
            else:
                conn.execute("DELETE FROM batch_requests WHERE batch = ? AND state = 'pending'", (batch,))
            conn.execute("DELETE FROM batches WHERE id = ?", (batch,))

    def end(self, batch: int, *, unanswered: bytes) -> int:
        """A batch has ended: its requests still pending fail with the error ``unanswered``, and it is
        no longer open. How many requests failed so."""
        with self._db.write() as conn:
            failed = conn.execute(
                "UPDATE batch_requests SET state = 'failed', answer = ? "
                "WHERE batch = ? AND state = 'pending'",
                (unanswered, batch),
            ).rowcount
            conn.execute("UPDATE batches SET open = 0, updated = ? WHERE id = ?", (time.time(), batch))
        return failed

    # --- requests -----------------------------------------------------------------------------------

    def request(self, job: int, key: bytes) -> BatchRow | None:
        """The state of the job's request with this (cache) key; None: it was never submitted."""
        row = self._db.read_one(
            "SELECT key, batch, submissions, state, answer, cost FROM batch_requests "
            "WHERE job = ? AND hash = ?",
            (job, key_hash(key)),
        )
        if row is None or row[0] != key:
            return None
        stored_key, batch, submissions, state, answer, cost = row
        answer = None if answer is None else bytes(answer)
        return BatchRow(bytes(stored_key), batch, submissions, state, answer, cost)

    def answer(self, job: int, batch: int, answers: Iterable[LineAnswer]) -> None:
        """Write what a batch said to its requests, in one transaction."""
        rows = [(a.state, a.answer, a.cost, job, key_hash(a.key), a.key, batch) for a in answers]
        if not rows:
            return
        with self._db.write() as conn:
            # Only the row still waiting on this batch: a line answered twice (or a stale batch) never
            # overwrites a later submission's state.
            conn.executemany(
                "UPDATE batch_requests SET state = ?, answer = ?, cost = ? "
                "WHERE job = ? AND hash = ? AND key = ? AND batch = ? AND state = 'pending'",
                rows,
            )


def save_job_args(db: Database, job: int, args: str) -> None:
    """Keep the options a batch job was submitted with (JSON), for status, collect and cancel."""
    with db.write() as conn:
        conn.execute("INSERT OR REPLACE INTO job_args (job, args) VALUES (?, ?)", (job, args))


def job_args_all(db: Database) -> list[str]:
    """The saved options of every batch job in the store (JSON), in the order the jobs were made."""
    return [str(args) for (args,) in db.read("SELECT args FROM job_args ORDER BY job")]
