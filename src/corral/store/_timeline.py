"""A run's counters over time (the ``samples`` table), for the report's plots.

A run queues a :class:`Sample` every tenth of a second at first, then sparser (see
:mod:`corral.jobs`), so a day-long run keeps a few thousand rows; they are written with the store's
next batch.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

__all__ = ["SAMPLES_TABLE", "SAMPLE_COLUMNS", "Sample", "Timeline"]

SAMPLES_TABLE = """
CREATE TABLE samples (
    run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    time REAL NOT NULL,
    done INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    rate_limited INTEGER NOT NULL,
    in_flight INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    rpm REAL,
    tpm REAL,
    concurrency INTEGER
);
CREATE INDEX samples_by_run ON samples (run, time);
"""
#: the columns of a :class:`Sample`, in its fields' order
SAMPLE_COLUMNS = (
    "time, done, ok, errors, requests, retries, rate_limited, in_flight, tokens, cost, rpm, tpm, concurrency"
)
_SAMPLE_INSERT = f"INSERT INTO samples (run, {SAMPLE_COLUMNS}) VALUES ({', '.join('?' * 14)})"


@dataclass(frozen=True, slots=True)
class Sample:
    """A point of a run's timeline: its cumulative counters, what is in flight, the limits in effect."""

    #: seconds since the epoch
    time: float
    #: items finished (ok + errors), reused ones included
    done: int
    ok: int
    errors: int
    requests: int
    retries: int
    #: retries after a 429 or an overload (503/529): they pause the whole run
    rate_limited: int
    in_flight: int
    tokens: int
    cost: float
    #: the requests and tokens per minute the run paced itself to (None: no limit known)
    rpm: float | None
    tpm: float | None
    #: the bound on requests in flight (None: none)
    concurrency: int | None


class Timeline:
    """Samples queued for the store's next batch."""

    def __init__(self) -> None:
        self._queued: list[tuple[Any, ...]] = []

    def add(self, run: int, sample: Sample) -> None:
        s = sample
        self._queued.append((
            run, s.time, s.done, s.ok, s.errors, s.requests, s.retries, s.rate_limited, s.in_flight,
            s.tokens, s.cost, s.rpm, s.tpm, s.concurrency,
        ))  # fmt: skip

    def insert_queued(self, conn: sqlite3.Connection) -> None:
        """Insert every queued sample (on the thread that queues them: they are taken here)."""
        if self._queued:
            samples, self._queued = self._queued, []
            conn.executemany(_SAMPLE_INSERT, samples)
