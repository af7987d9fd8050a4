"""The run store: one SQLite database (WAL) that makes a job survive a crash and never pay twice.

    jobs    one row per output: the fingerprint of what was asked (schema, prompt, model, mode)
    runs    one row per invocation: when, how it ended, requests, tokens and dollars spent
    items   one row per finished item: its output record, status, attempts, tokens, cost
    cache   one row per answered request, keyed by a hash of the whole request (never the API key)
    samples the run's counters over time (requests, in flight, retries, 429s, limits), for reports
    batches, batch_requests, job_args   provider batches of a job (see corral.jobs._batch)

Writes are batched: results and cache entries wait in memory and go to disk in one transaction per
batch (:meth:`RunStore.write`), so the store costs microseconds per item; WAL checkpoints, which
wait on the disk, run on a worker thread (:meth:`RunStore.checkpoint`).
A result is written to the output only after its batch is committed, so everything in the output is
in the store: after ``kill -9`` a re-run answers those items from here and sends nothing for them.
``synchronous=NORMAL`` in WAL mode survives a killed process (not a power cut), which is the trade
every batch job makes for speed.

Reads (resume lookups, cache hits) use a second connection: WAL lets them run beside the writer,
and an indexed lookup costs a few microseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

import orjson

from corral.engine._limits import KnownLimits
from corral.errors import StoreError

__all__ = [
    "DEFAULT_DIR",
    "STORE_FILE",
    "JobInfo",
    "RunStore",
    "StoredItem",
    "input_hash",
    "key_hash",
    "without_credentials",
]

DEFAULT_DIR = ".corral"
STORE_FILE = "corral.db"
APPLICATION_ID = 0x636F7272  # "corr": tells our databases from any other SQLite file
# 1: cache and items keyed by their own primary keys (slow random inserts); 2: no batch tables;
# 3: no timeline (samples) and no retried faults per run; 4: nothing remembered per endpoint
SCHEMA_VERSION = 5

#: the run's counters over time, for plots: one row every tenth of a second at first, then sparser
#: (see corral.jobs), so a day-long run keeps a few thousand rows
_SAMPLES = """
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
_TO_4 = "ALTER TABLE runs ADD COLUMN faults TEXT NOT NULL DEFAULT '{}';" + _SAMPLES
#: what each endpoint and model was found to allow (headers, or the adaptive rate that held) and to
#: take (the structured-output mode that worked), so the next run paces from its first request and
#: asks in a mode the server takes, instead of finding both out again
_ENDPOINTS = """
CREATE TABLE endpoints (
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    rpm REAL,
    tpm REAL,
    adaptive_rpm REAL,
    mode TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (endpoint, model)
);
"""

_SCHEMA = (
    """
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
CREATE TABLE cache (
    hash INTEGER NOT NULL,
    key BLOB NOT NULL,
    model TEXT NOT NULL,
    completion BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE UNIQUE INDEX cache_by_hash ON cache (hash);
"""
    + """
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
    + _SAMPLES
    + _ENDPOINTS
)
#: what turns an older store into this version (tables and a defaulted column were added)
_MIGRATIONS = {
    2: _SCHEMA[_SCHEMA.index("CREATE TABLE batches") :].replace(_SAMPLES, "") + _TO_4,
    3: _TO_4 + _ENDPOINTS,
    4: _ENDPOINTS,
}

_ITEM_INSERT = (
    "INSERT OR REPLACE INTO items (job, item_id, input_hash, run, status, error_kind, attempts, "
    "prompt_tokens, completion_tokens, cost, latency, finished, record) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_CACHE_INSERT = "INSERT OR IGNORE INTO cache (hash, key, model, completion, created) VALUES (?, ?, ?, ?, ?)"
_RUN_UPDATE = (
    "UPDATE runs SET items = ?, ok = ?, errors = ?, reused = ?, requests = ?, cached = ?, retries = ?, "
    "prompt_tokens = ?, completion_tokens = ?, cost = ?, faults = ? WHERE id = ?"
)
_SAMPLE_INSERT = "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_RUN_COUNTERS = (
    "items",
    "ok",
    "errors",
    "reused",
    "requests",
    "cached",
    "retries",
    "prompt_tokens",
    "completion_tokens",
    "cost",
)


def key_hash(key: bytes) -> int:
    """The indexed integer under which a request key (cache, batch lines) is stored."""
    # Rows are appended and found through a small integer index: random 20-byte keys as the table's
    # own key made every batch rewrite a page per row (measured: 25 µs a row against 6).
    return int.from_bytes(key[:8], "big", signed=True)


def input_hash(text: str) -> int:
    """A 63-bit hash of an item's text: a stored result is reused only for the same text."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@dataclass(frozen=True, slots=True)
class StoredItem:
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


class RunStore:
    """An open store. Create with :meth:`open`; close with :meth:`close` (or ``with``)."""

    def __init__(self, path: Path, reader: sqlite3.Connection, writer: sqlite3.Connection) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._write_lock = threading.Lock()  # a cancelled flush may still be running in its thread
        self._items: list[tuple[Any, ...]] = []
        self._samples: list[tuple[Any, ...]] = []
        self._cache: dict[bytes, tuple[int, bytes, str, bytes, float]] = {}
        self._runs: dict[int, JobInfo] = {}
        self._locks: list[BinaryIO] = []
        #: run id -> the lock of the job it runs (released with the run, or with the store)
        self._run_locks: dict[int, BinaryIO] = {}
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> RunStore:
        """Open (or create) the store at ``path``: a database file, or a directory to hold one."""
        target = Path(path)
        if target.is_dir():
            target = target / STORE_FILE
        try:
            # The store keeps every input text, record and cached answer: its own directory is the
            # owner's only (0700), and so is a database file it creates (0600; SQLite gives its WAL
            # and shared-memory files the database's permissions). An existing directory is left as
            # the user made it.
            if not target.parent.exists():
                target.parent.mkdir(parents=True, mode=0o700)
            if not target.exists():
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise StoreError(f"cannot create the run store at {target}: {exc.strerror}") from None
        existed = target.exists() and target.stat().st_size > 0
        if existed:
            _check_header(target)
        try:
            writer = _connect(target)
            with writer:
                _prepare(writer, target, existed)
            if not existed:
                # Move the new header (our application id) from the WAL into the file itself now: a run
                # killed before the first checkpoint must not leave a file that looks like a stranger's.
                writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            reader = _connect(target)
        except sqlite3.DatabaseError as exc:
            raise _store_error(target, exc) from None
        return cls(target, reader, writer)

    def checkpoint(self) -> None:
        """Copy committed pages from the WAL into the database (call from a worker thread).

        The writer's own automatic checkpoints would fsync on the event loop; this runs beside it,
        on a connection of its own, without blocking writers (PASSIVE)."""
        with self._checkpoint_lock:
            if self._checkpointer is None:
                self._checkpointer = _connect(self.path)
            with self._guard():
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        self._reader.close()
        self._writer.close()
        for handle in self._locks:
            handle.close()  # releases the job's lock
        self._locks.clear()
        self._run_locks.clear()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- jobs and runs -------------------------------------------------------------------------

    def open_job(self, name: str, settings: Mapping[str, Any], *, fresh: bool = False) -> JobInfo:
        """The job writing ``name``, checked against what was asked before; starts a run in it.

        Refuses a job whose schema, prompt or model differ from the stored one, unless ``fresh``
        (which forgets the job's results; cached answers stay and are reused).
        """
        lock = self._lock_job(name)
        try:
            info = self._start_run(name, settings, fresh=fresh)
        except BaseException:
            self._locks.remove(lock)
            lock.close()  # refused: another attempt (say with fresh=True) may take the job
            raise
        self._runs[info.run] = info
        self._run_locks[info.run] = lock
        return info

    def release_job(self, job: JobInfo) -> None:
        """The job's run is over (after :meth:`finish_run`): drop its lock and stop writing its
        counters, so that the job may run again in this process. ``corral run`` never needs this (the
        store closes with the run); a server runs many jobs, and the same one again, on one store."""
        self._runs.pop(job.run, None)
        handle = self._run_locks.pop(job.run, None)
        if handle is not None:
            self._locks.remove(handle)
            handle.close()

    def _start_run(self, name: str, settings: Mapping[str, Any], *, fresh: bool) -> JobInfo:
        fingerprint = _fingerprint(settings)
        now = time.time()
        with self._guard(), self._writer:
            row = self._writer.execute(
                "SELECT id, fingerprint, settings FROM jobs WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                job_id = self._writer.execute(
                    "INSERT INTO jobs (name, fingerprint, settings, created, updated) VALUES (?, ?, ?, ?, ?)",
                    (name, fingerprint, _dumps(settings), now, now),
                ).lastrowid
            else:
                job_id = row[0]
                if row[1] != fingerprint and not fresh:
                    raise StoreError(_mismatch(name, self.path, orjson.loads(row[2]), settings))
                if fresh:
                    self._writer.execute("DELETE FROM items WHERE job = ?", (job_id,))
                    self._writer.execute("DELETE FROM runs WHERE job = ?", (job_id,))
                self._writer.execute(
                    "UPDATE jobs SET fingerprint = ?, settings = ?, updated = ? WHERE id = ?",
                    (fingerprint, _dumps(settings), now, job_id),
                )
            spent = self._writer.execute(
                "SELECT COALESCE(SUM(cost), 0) FROM runs WHERE job = ?", (job_id,)
            ).fetchone()[0]
            finished, errors = self._writer.execute(
                "SELECT COUNT(*), COALESCE(SUM(status = 'error'), 0) FROM items WHERE job = ?", (job_id,)
            ).fetchone()
            run_id = self._writer.execute(
                "INSERT INTO runs (job, started, status) VALUES (?, ?, 'running')", (job_id, now)
            ).lastrowid
        assert job_id is not None
        assert run_id is not None
        return JobInfo(job_id, name, run_id, float(spent), int(finished), int(errors))

    def finish_run(self, job: JobInfo, status: str) -> None:
        """Record how the run ended (completed, interrupted, budget, stopped, failed)."""
        with self._guard(), self._write_lock, self._writer:
            self._write_counters(job)
            self._writer.execute(
                "UPDATE runs SET ended = ?, status = ? WHERE id = ?", (time.time(), status, job.run)
            )

    def find_job(self, name: str) -> JobInfo | None:
        """The job writing ``name``, to look at (no run is started, no lock taken); None: no such job."""
        rows = self.query("SELECT id FROM jobs WHERE name = ?", (name,))
        return JobInfo(rows[0][0], name, 0, 0.0, 0, 0) if rows else None

    def _lock_job(self, name: str) -> BinaryIO:
        # Two runs writing one output would interleave it: the second is refused. flock is released by
        # the kernel when the process dies, so a killed run never leaves a stale lock behind.
        digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:16]
        lock_path = self.path.with_name(f"{self.path.name}.{digest}.lock")
        # Held open for the store's lifetime; the owner's only, like the store (its name says which job).
        handle = os.fdopen(os.open(lock_path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "wb")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(
                f"another corral run is writing {name} (store {self.path}); wait for it or stop it first"
            ) from None
        self._locks.append(handle)
        return handle

    # --- reads (event loop thread) -------------------------------------------------------------

    def lookup(self, job: JobInfo, item_id: str, text_hash: int) -> StoredItem | None:
        """The finished result of an item with this id and text, from an earlier run."""
        try:
            row = self._reader.execute(
                "SELECT status, record FROM items WHERE job = ? AND item_id = ? AND input_hash = ?",
                (job.id, item_id, text_hash),
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc) from None
        return None if row is None else StoredItem(row[0], row[1])

    def cached(self, key: bytes) -> bytes | None:
        pending = self._cache.get(key)
        if pending is not None:
            return pending[3]
        try:
            row = self._reader.execute(
                "SELECT key, completion FROM cache WHERE hash = ?", (key_hash(key),)
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc) from None
        # The full key is compared too: two keys sharing 64 bits is a miss, never a wrong answer.
        return None if row is None or row[0] != key else bytes(row[1])

    def errors_of(self, job: JobInfo) -> Iterator[tuple[str, str]]:
        """(item id, error kind) of the job's items that ended in error."""
        rows = self._reader.execute(
            "SELECT item_id, error_kind FROM items WHERE job = ? AND status = 'error'", (job.id,)
        )
        yield from rows

    def known_limits(self, endpoint: str, model: str) -> KnownLimits:
        """What an earlier run learned of ``endpoint`` serving ``model`` (empty: nothing)."""
        rows = self.query(
            "SELECT rpm, tpm, adaptive_rpm FROM endpoints WHERE endpoint = ? AND model = ?",
            (without_credentials(endpoint), model),
        )
        return KnownLimits(*rows[0]) if rows else KnownLimits()

    def remember_limits(self, endpoint: str, model: str, known: KnownLimits) -> None:
        """Keep what this run learned of ``endpoint`` serving ``model`` for the next run."""
        if not known:
            return
        self._remember(endpoint, model, rpm=known.rpm, tpm=known.tpm, adaptive_rpm=known.adaptive_rpm)

    def known_mode(self, endpoint: str, model: str) -> str | None:
        """The structured-output mode ``endpoint`` serving ``model`` was last seen to take."""
        rows = self.query(
            "SELECT mode FROM endpoints WHERE endpoint = ? AND model = ?",
            (without_credentials(endpoint), model),
        )
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    def remember_mode(self, endpoint: str, model: str, mode: str) -> None:
        """Keep the mode ``endpoint`` serving ``model`` takes (after it refused the one tried first)."""
        self._remember(endpoint, model, mode=mode)

    def _remember(self, endpoint: str, model: str, **columns: Any) -> None:
        names = ", ".join(columns)
        updates = ", ".join(f"{name} = excluded.{name}" for name in (*columns, "updated"))
        marks = ", ".join("?" for _ in columns)
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO endpoints (endpoint, model, {names}, updated) VALUES (?, ?, {marks}, ?) "
                f"ON CONFLICT (endpoint, model) DO UPDATE SET {updates}",
                (without_credentials(endpoint), model, *columns.values(), time.time()),
            )

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query, on the reader connection (for modules with their own tables)."""
        try:
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc) from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One committed write transaction on the writer (for modules with their own tables)."""
        with self._guard(), self._write_lock, self._writer:
            yield self._writer

    # --- batched writes ------------------------------------------------------------------------

    def add_item(self, job: JobInfo, row: tuple[Any, ...]) -> None:
        """Queue a finished item: ``(item_id, input_hash, status, error_kind, attempts,
        prompt_tokens, completion_tokens, cost, latency, record)``."""
        self._items.append((job.id, row[0], row[1], job.run, *row[2:9], time.time(), row[9]))

    def add_sample(self, job: JobInfo, row: tuple[Any, ...]) -> None:
        """Queue a point of the run's timeline: ``(time, done, ok, errors, requests, retries,
        rate_limited, in_flight, tokens, cost, rpm, tpm, concurrency)``."""
        self._samples.append((job.run, *row))

    def add_cache(self, key: bytes, model: str, completion: bytes) -> None:
        self._cache[key] = (key_hash(key), key, model, completion, time.time())

    @property
    def pending(self) -> int:
        return len(self._items) + len(self._cache)

    def take(self) -> tuple[list[tuple[Any, ...]], list[tuple[int, bytes, str, bytes, float]]]:
        """Hand the queued rows to a writer (on the loop thread, so nothing is added meanwhile)."""
        items, self._items = self._items, []
        cache = list(self._cache.values())
        return items, cache

    def write(self, items: list[tuple[Any, ...]], cache: list[tuple[int, bytes, str, bytes, float]]) -> None:
        """Commit a batch, with the queued timeline samples, in one transaction (on the thread that
        queues rows: the samples are taken here)."""
        with self._guard(), self._write_lock, self._writer:
            if items:
                self._writer.executemany(_ITEM_INSERT, items)
            if cache:
                self._writer.executemany(_CACHE_INSERT, cache)
            if self._samples:
                samples, self._samples = self._samples, []
                self._writer.executemany(_SAMPLE_INSERT, samples)
            for job in self._runs.values():
                self._write_counters(job)

    def committed(self, cache: list[tuple[int, bytes, str, bytes, float]]) -> None:
        """After :meth:`write`: the cache entries are on disk; the reader finds them there now."""
        for entry in cache:
            self._cache.pop(entry[1], None)

    def flush(self) -> None:
        """Write everything queued, now, on this thread (for the end of a run)."""
        items, cache = self.take()
        self.write(items, cache)
        self.committed(cache)

    def _write_counters(self, job: JobInfo) -> None:
        values = [job.counters[name] for name in _RUN_COUNTERS]
        self._writer.execute(_RUN_UPDATE, (*values, _dumps(job.faults), job.run))

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc) from None


# --- helpers ---------------------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    # "with conn" opens a deferred transaction and commits it: one per batch. check_same_thread is
    # off because a store may be flushed from a worker thread (writes are serialised by a lock) and
    # the checkpointer lives on one.
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    # Runs checkpoint from a worker thread (RunStore.checkpoint); this is only the backstop.
    conn.execute("PRAGMA wal_autocheckpoint = 10000")
    return conn


def _check_header(path: Path) -> None:
    """Refuse a file that is not ours by its header alone: connecting (and switching it to WAL)
    would already change another program's database."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise StoreError(f"cannot read the run store {path}: {exc.strerror}") from None
    if not header.startswith(b"SQLite format 3\x00"):
        raise StoreError(
            f"{path} is not a corral run store (not even an SQLite database; it starts {header[:12]!r}): "
            "move it away, or pass --store with another path"
        )
    if len(header) == 100 and int.from_bytes(header[68:72], "big") != APPLICATION_ID:
        raise StoreError(
            f"{path} is an SQLite database but not a corral run store: "
            "move it away, or pass --store with another path"
        )


def _prepare(conn: sqlite3.Connection, path: Path, existed: bool) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
    if app_id == 0 and tables == 0:
        conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA application_id = {APPLICATION_ID}; "
                           f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")  # fmt: skip
        return
    if app_id != APPLICATION_ID:
        raise StoreError(
            f"{path} is an SQLite database but not a corral run store: "
            "move it away, or pass --store with another path"
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by a newer corral (store version {version}, this one reads "
            f"{SCHEMA_VERSION}): upgrade corral, or pass --store with another path"
        )
    if version in _MIGRATIONS:  # earlier layouts that upgrade in place: tables and a column were added
        conn.executescript(f"BEGIN; {_MIGRATIONS[version]} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        version = SCHEMA_VERSION
    if version < SCHEMA_VERSION:
        raise StoreError(
            f"{path} was written by an earlier corral (store version {version}, this one reads "
            f"{SCHEMA_VERSION}): move it away to start over, or pass --store with another path"
        )
    # A torn or overwritten page shows here, not mid-run. quick_check reports damage as a row.
    verdict = conn.execute("PRAGMA quick_check(1)").fetchone()
    if verdict is None or verdict[0] != "ok":
        problem = verdict[0].splitlines()[-1] if verdict else "no answer"
        raise StoreError(
            f"the run store {path} is corrupt ({problem}): move it away to start over, or pass "
            "--store with another path (the output file holds the finished results)"
        )


def without_credentials(endpoint: str) -> str:
    """An endpoint as the store keeps it: a URL's ``user:password@`` never reaches the disk."""
    parts = urlsplit(endpoint)
    if not parts.scheme or (parts.password is None and parts.username is None):
        return endpoint
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _store_error(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    text = str(exc)
    if "full" in text:
        return StoreError(
            f"the run store {path} cannot grow: {text}; free disk space and re-run "
            "(finished results already written are kept)"
        )
    if "locked" in text or "busy" in text:
        return StoreError(f"the run store {path} is locked by another process ({text}); try again")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StoreError(
            f"the run store {path} is corrupt ({text}): move it away to start over, "
            "or pass --store with another path (the output file holds the finished results)"
        )
    return StoreError(f"the run store {path} failed: {text}")


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
