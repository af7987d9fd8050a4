"""The run store: one SQLite database (WAL) that makes a job survive a crash and never pay twice.

Each family of tables has its own module, holding its DDL and its queries:

    _db         the file: header check, pragmas, upgrades, two connections, sqlite errors → StoreError
    _jobs       jobs (one row per output), runs (one per invocation), items (one per finished item)
    _cache      cache: one row per answered request, keyed by a hash of the request (never the key)
    _timeline   samples: the run's counters over time, for reports
    _batches    batches, batch_requests, job_args: a job's provider batches
    _endpoints  endpoints: what each endpoint and model was found to allow and to take
    _documents  documents: a chunked document's assembled record and its text (compressed)
    _views      read-only named queries for ``corral report`` and ``corral serve``
    _schema     the whole layout: every family's tables, its version, and the in-place upgrades

Writes are batched: results, documents and cache entries wait in memory and go to disk in one
transaction per batch (:meth:`RunStore.write`), so the store costs microseconds per item; WAL
checkpoints, which wait on the disk, run on a worker thread (:meth:`RunStore.checkpoint`).
A result is written to the output only after its batch is committed, so everything in the output is
in the store: after ``kill -9`` a re-run answers those items from here and sends nothing for them.
``synchronous=NORMAL`` in WAL mode survives a killed process (not a power cut), which is the trade
every batch job makes for speed.

Reads (resume lookups, cache hits) use a second connection: WAL lets them run beside the writer,
and an indexed lookup costs a few microseconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from corral.store._batches import BatchInfo, BatchRow, BatchTables, LineAnswer, job_args_all, save_job_args
from corral.store._cache import CacheEntry, CacheTable, key_hash
from corral.store._db import DEFAULT_DIR, STORE_FILE, Database
from corral.store._documents import DocumentTable, StoredDocument
from corral.store._endpoints import EndpointMemory, KnownLimits, without_credentials
from corral.store._jobs import (
    SERVED_PREFIX,
    ItemRow,
    JobInfo,
    JobTables,
    StoredItem,
    input_hash,
    job_key,
    job_keys,
    served_job_key,
)
from corral.store._schema import LAYOUT
from corral.store._timeline import Sample, Timeline
from corral.store._views import ItemCounts, ItemTiming, RunRecord, StoredJob, Views

__all__ = [
    "DEFAULT_DIR",
    "SERVED_PREFIX",
    "STORE_FILE",
    "BatchInfo",
    "BatchRow",
    "BatchTables",
    "ItemCounts",
    "ItemRow",
    "ItemTiming",
    "JobInfo",
    "KnownLimits",
    "LineAnswer",
    "RunRecord",
    "RunStore",
    "Sample",
    "StoredDocument",
    "StoredItem",
    "StoredJob",
    "Views",
    "input_hash",
    "job_key",
    "job_keys",
    "key_hash",
    "served_job_key",
    "without_credentials",
]


class RunStore:
    """An open store. Create with :meth:`open`; close with :meth:`close` (or ``with``).

    A run's own reads and writes are its methods; :attr:`batches` reads and writes the batch tables
    (for :mod:`corral.jobs._batch`), :attr:`views` holds the read-only queries of reports and the
    server."""

    def __init__(self, db: Database) -> None:
        self.path = db.path
        self._db = db
        self._jobs = JobTables(db)
        self._cache = CacheTable(db)
        self._documents = DocumentTable(db)
        self._timeline = Timeline()
        self._endpoints = EndpointMemory(db)
        #: the provider batches of the store's jobs, their requests, and the options they ran with
        self.batches = BatchTables(db)
        #: read-only queries of what runs wrote
        self.views = Views(db)

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> RunStore:
        """Open (or create) the store at ``path``: a database file, or a directory to hold one."""
        target = Path(path)
        if target.is_dir():
            target = target / STORE_FILE
        return cls(Database.open(target, LAYOUT))

    def checkpoint(self) -> None:
        """Copy committed pages from the WAL into the database (call from a worker thread).

        The writer's own automatic checkpoints would fsync on the event loop; this runs beside it,
        on a connection of its own, without blocking writers (PASSIVE)."""
        self._db.checkpoint()

    def close(self) -> None:
        self._db.close()
        self._jobs.close()  # releases the locks of the jobs still running

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- jobs and runs -------------------------------------------------------------------------

    def open_job(self, name: str, settings: Mapping[str, Any], *, fresh: bool = False) -> JobInfo:
        """The job writing ``name`` (its :func:`job_key`), checked against what was asked before;
        starts a run in it.

        Refuses a job whose schema, prompt or model differ from the stored one, unless ``fresh``
        (which forgets the job's results; cached answers stay and are reused), and a job another run
        is writing.
        """
        return self._jobs.open_job(name, settings, fresh=fresh)

    def release_job(self, job: JobInfo) -> None:
        """The job's run is over (after :meth:`finish_run`): drop its lock and stop writing its
        counters, so that the job may run again in this process. ``corral run`` never needs this (the
        store closes with the run); a server runs many jobs, and the same one again, on one store."""
        self._jobs.release_job(job)

    def finish_run(self, job: JobInfo, status: str) -> None:
        """Record how the run ended (completed, interrupted, budget, stopped, failed)."""
        self._jobs.finish_run(job, status)

    def find_job(self, name: str) -> JobInfo | None:
        """The job writing ``name``, to look at (no run is started, no lock taken); None: no such job."""
        return self._jobs.find_job(name)

    # --- reads (event loop thread) -------------------------------------------------------------

    def lookup(self, job: JobInfo, item_id: str, text_hash: int) -> StoredItem | None:
        """The finished result of an item with this id and text, from an earlier run."""
        return self._jobs.lookup(job, item_id, text_hash)

    def cached(self, key: bytes) -> bytes | None:
        """The cached answer to the request with this key (queued ones too); None: never answered."""
        entry = self._cache.get(key)
        return None if entry is None else entry[0]

    def cached_entry(self, key: bytes) -> tuple[bytes, float] | None:
        """The cached answer to the request with this key and when it was cached (``time.time()``)."""
        return self._cache.get(key)

    def errors_of(self, job: JobInfo) -> Iterator[tuple[str, str]]:
        """(item id, error kind) of the job's items that ended in error."""
        return self._jobs.errors_of(job)

    def forget_changed(self, job: JobInfo, hashes: Mapping[str, int]) -> int:
        """Delete the job's stored results of items whose text changed since (``hashes``: item id ->
        :func:`input_hash` of its text now; items not in it are kept); how many were deleted."""
        return self._jobs.forget_changed(job, hashes)

    def documents(
        self,
        job_id: int,
        *,
        limit: int | None = None,
        status: str | None = None,
        max_chars: int | None = None,
    ) -> list[StoredDocument]:
        """The job's documents (committed ones), in document-id order (by code point, not as added):
        the first ``limit``, only those of ``status`` ("ok" or "error") if given, and of each text only
        its first ``max_chars`` characters if given (:attr:`StoredDocument.cut_from` then says how long
        it is). Texts are inflated one document at a time; bound both to bound the memory taken."""
        return self._documents.documents(job_id, limit=limit, status=status, max_chars=max_chars)

    def document_count(self, job_id: int, *, status: str | None = None) -> int:
        """How many documents the job has (of ``status``, if given), without reading one."""
        return self._documents.count(job_id, status)

    def save_job_args(self, job: int, args: str) -> None:
        """Keep the options a batch job was submitted with (JSON), for ``corral batch status``,
        ``collect`` and ``cancel``; replaces what was kept before."""
        save_job_args(self._db, job, args)

    def job_args_all(self) -> list[str]:
        """The saved options of every batch job in the store (JSON), in the order the jobs were made."""
        return job_args_all(self._db)

    # --- what endpoints allow --------------------------------------------------------------------

    def known_limits(self, endpoint: str, model: str) -> KnownLimits:
        """What an earlier run learned of ``endpoint`` serving ``model`` (empty: nothing)."""
        return self._endpoints.known_limits(endpoint, model)

    def remember_limits(self, endpoint: str, model: str, known: KnownLimits) -> None:
        """Keep what this run learned of ``endpoint`` serving ``model`` for the next run."""
        self._endpoints.remember_limits(endpoint, model, known)

    def known_mode(self, endpoint: str, model: str) -> str | None:
        """The structured-output mode ``endpoint`` serving ``model`` was last seen to take."""
        return self._endpoints.known_mode(endpoint, model)

    def remember_mode(self, endpoint: str, model: str, mode: str) -> None:
        """Keep the mode ``endpoint`` serving ``model`` takes (after it refused the one tried first)."""
        self._endpoints.remember_mode(endpoint, model, mode)

    # --- batched writes ------------------------------------------------------------------------

    def add_item(self, job: JobInfo, row: ItemRow) -> None:
        """Queue a finished item of the job's run."""
        self._jobs.add_item(job, row)

    def add_document(self, job: JobInfo, doc_id: str, *, status: str, record: bytes, text: str) -> None:
        """Queue a document of the job's run: its status ("ok" or "error"), the record written to the
        output for it (JSON) and its text (compressed here). Written with the next batch, in the same
        transaction as the items queued with it; a document added again replaces the one before."""
        self._documents.add(job.id, job.run, doc_id, status=status, record=record, text=text)

    def add_sample(self, job: JobInfo, sample: Sample) -> None:
        """Queue a point of the run's timeline."""
        self._timeline.add(job.run, sample)

    def add_cache(self, key: bytes, model: str, completion: bytes) -> None:
        """Queue an answer for the cache (found by :meth:`cached` at once)."""
        self._cache.add(key, model, completion)

    @property
    def pending(self) -> int:
        """Items, documents and answers waiting for the next batch."""
        return self._jobs.pending + self._documents.pending + self._cache.pending

    def take(self) -> tuple[list[tuple[Any, ...]], list[CacheEntry]]:
        """Hand the queued rows to a writer (on the loop thread, so nothing is added meanwhile)."""
        return self._jobs.take(), self._cache.take()

    def write(self, items: list[tuple[Any, ...]], cache: list[CacheEntry]) -> None:
        """Commit a batch, with the queued documents and timeline samples and the counters of the jobs
        running, in one transaction (on the thread that queues rows: documents and samples are taken
        here)."""
        with self._db.write() as conn:
            self._jobs.insert(conn, items)
            self._documents.insert_queued(conn)
            self._cache.insert(conn, cache)
            self._timeline.insert_queued(conn)
            self._jobs.write_counters(conn)

    def committed(self, cache: list[CacheEntry]) -> None:
        """After :meth:`write`: the cache entries are on disk; the reader finds them there now."""
        self._cache.committed(cache)

    def flush(self) -> None:
        """Write everything queued, now, on this thread (for the end of a run)."""
        items, cache = self.take()
        self.write(items, cache)
        self.committed(cache)
