"""The store's database file: opening it (header check, pragmas, schema, upgrades), its two
connections, and SQLite's errors turned into :class:`~corral.errors.StoreError`.

What the tables are is not here: each family of tables declares its own (see ``_schema``), and
:meth:`Database.open` is handed the whole layout.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.errors import StoreError

__all__ = ["APPLICATION_ID", "DEFAULT_DIR", "STORE_FILE", "Database", "Layout"]

DEFAULT_DIR = ".corral"
STORE_FILE = "corral.db"
APPLICATION_ID = 0x636F7272  # "corr": tells our databases from any other SQLite file


@dataclass(frozen=True, slots=True)
class Layout:
    """Every table of this version, and what turns each earlier version that can be upgraded into it."""

    version: int
    tables: str
    #: older version -> the script that brings it up to ``version``
    upgrades: Mapping[int, str]


class Database:
    """An open store file: a writer and a reader connection (WAL lets reads run beside writes).

    Writes go through :meth:`write` (one transaction, under a lock: a cancelled flush may still be
    running in its thread); reads through :meth:`read` and :meth:`read_one`. Every SQLite error comes
    out as a :class:`~corral.errors.StoreError` that says what to do."""

    def __init__(self, path: Path, reader: sqlite3.Connection, writer: sqlite3.Connection) -> None:
        self.path = path
        self.reader = reader
        self.writer = writer
        self._write_lock = threading.Lock()
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()

    @classmethod
    def open(cls, target: Path, layout: Layout) -> Database:
        """Open (or create) the database file ``target``, laid out as ``layout``."""
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
                _prepare(writer, target, layout)
            if not existed:
                # Move the new header (our application id) from the WAL into the file itself now: a run
                # killed before the first checkpoint must not leave a file that looks like a stranger's.
                writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            reader = _connect(target)
        except sqlite3.DatabaseError as exc:
            raise _store_error(target, exc) from None
        return cls(target, reader, writer)

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only query, on the reader connection."""
        try:
            return self.reader.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc) from None

    def read_one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        """The first row of a read-only query (None: no row)."""
        try:
            row: tuple[Any, ...] | None = self.reader.execute(sql, params).fetchone()
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc) from None
        return row

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer, committed when the block ends (rolled back if it
        raises)."""
        with self._guard(), self._write_lock, self.writer:
            yield self.writer

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite's errors in the block, as :class:`~corral.errors.StoreError`."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise _store_error(self.path, exc) from None

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
        self.reader.close()
        self.writer.close()


def _connect(path: Path) -> sqlite3.Connection:
    # "with conn" opens a deferred transaction and commits it: one per batch. check_same_thread is
    # off because a store may be flushed from a worker thread (writes are serialised by a lock) and
    # the checkpointer lives on one.
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    # Runs checkpoint from a worker thread (Database.checkpoint); this is only the backstop.
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


def _prepare(conn: sqlite3.Connection, path: Path, layout: Layout) -> None:
    """Lay out a new file, upgrade an older store in place, or refuse one this corral cannot read."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
    if app_id == 0 and tables == 0:
        conn.executescript(f"BEGIN; {layout.tables} PRAGMA application_id = {APPLICATION_ID}; "
                           f"PRAGMA user_version = {layout.version}; COMMIT;")  # fmt: skip
        return
    if app_id != APPLICATION_ID:
        raise StoreError(
            f"{path} is an SQLite database but not a corral run store: "
            "move it away, or pass --store with another path"
        )
    if version > layout.version:
        raise StoreError(
            f"{path} was written by a newer corral (store version {version}, this one reads "
            f"{layout.version}): upgrade corral, or pass --store with another path"
        )
    if version in layout.upgrades:  # earlier layouts that upgrade in place: tables and a column were added
        upgrade = layout.upgrades[version]
        conn.executescript(f"BEGIN; {upgrade} PRAGMA user_version = {layout.version}; COMMIT;")
        version = layout.version
    if version < layout.version:
        raise StoreError(
            f"{path} was written by an earlier corral (store version {version}, this one reads "
            f"{layout.version}): move it away to start over, or pass --store with another path"
        )
    # A torn or overwritten page shows here, not mid-run. quick_check reports damage as a row.
    verdict = conn.execute("PRAGMA quick_check(1)").fetchone()
    if verdict is None or verdict[0] != "ok":
        problem = verdict[0].splitlines()[-1] if verdict else "no answer"
        raise StoreError(
            f"the run store {path} is corrupt ({problem}): move it away to start over, or pass "
            "--store with another path (the output file holds the finished results)"
        )


def _store_error(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    """What an SQLite error means for the user, and what to do about it."""
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
