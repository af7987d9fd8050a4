"""Documents: a long input chunked into items and merged back into one record (the ``documents`` table).

    documents   one row per (job, document): its status, the record the output holds for it (JSON,
                as written), and the document's text, zlib-compressed UTF-8, with its length

A document job extracts each chunk as an item of its own (``contracts/a.pdf#3`` in ``items``) and then
assembles the document's record from them; that record, and the text its grounding spans index, are
kept here. Rows are queued (:meth:`DocumentTable.add`) and inserted with the store's next batch, in
the same transaction as the item rows; a document added again (a re-run reassembles it) replaces the
one before, queued or stored.

A text can be tens of megabytes: it is compressed when it is queued (so the queue holds what the disk
will), and read back one document at a time, whole or only its start (:meth:`DocumentTable.documents`
with ``max_chars`` inflates no more of it than that); counts never touch it.
"""

from __future__ import annotations

import codecs
import sqlite3
import time
import zlib
from dataclasses import dataclass
from typing import Any

from corral.store._db import Database

__all__ = ["DOCUMENTS_TABLE", "DOCUMENT_STATUSES", "DocumentTable", "StoredDocument"]

# IF NOT EXISTS: the upgrade adds the table to a store of any earlier version, and must not fail on
# one that has it already. The text is the last column, so reading the others never walks its pages.
DOCUMENTS_TABLE = """
CREATE TABLE IF NOT EXISTS documents (
    job INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    doc_id TEXT NOT NULL,
    run INTEGER NOT NULL,
    status TEXT NOT NULL,
    finished REAL NOT NULL,
    chars INTEGER NOT NULL,
    record BLOB NOT NULL,
    text BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS documents_by_doc ON documents (job, doc_id);
"""

#: what a document's status may be
DOCUMENT_STATUSES = ("ok", "error")

_INSERT = (
    "INSERT OR REPLACE INTO documents (job, doc_id, run, status, finished, chars, record, text) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
#: zlib's default: a 20 MB text compresses in about half a second, to a fifth of its size or less
_LEVEL = 6
#: the most bytes a character takes in UTF-8
_MAX_UTF8 = 4


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A document as a run assembled it."""

    doc_id: str
    #: "ok" or "error"
    status: str
    #: the record the output holds for the document, as JSON
    record: bytes
    #: the document's text (only its first ``max_chars`` characters, when they were asked for)
    text: str
    #: the whole text's length in characters when ``text`` is only its start; None: ``text`` is whole
    cut_from: int | None = None


class DocumentTable:
    """The documents of one store, and those queued for its next batch."""

    def __init__(self, db: Database) -> None:
        self._db = db
        #: (job, document id) -> its row: a document queued twice is written once, as added last
        self._queued: dict[tuple[int, str], tuple[Any, ...]] = {}

    def add(self, job: int, run: int, doc_id: str, *, status: str, record: bytes, text: str) -> None:
        """Queue a document (see :meth:`corral.store.RunStore.add_document`)."""
        if status not in DOCUMENT_STATUSES:
            raise ValueError(f"a document's status is 'ok' or 'error', not {status!r}")
        # surrogatepass: a text with a lone surrogate (a broken PDF's) comes back as it went in, so its
        # spans still index it.
        packed = zlib.compress(text.encode("utf-8", "surrogatepass"), _LEVEL)
        self._queued[job, doc_id] = (job, doc_id, run, status, time.time(), len(text), bytes(record), packed)

    @property
    def pending(self) -> int:
        return len(self._queued)

    def insert_queued(self, conn: sqlite3.Connection) -> None:
        """Insert (or replace) every queued document, on the thread that queues them: they are taken
        here. Should the transaction fail, they are lost with it, as the timeline's samples are: the
        run stops on the store's error."""
        if self._queued:
            rows, self._queued = list(self._queued.values()), {}
            conn.executemany(_INSERT, rows)

    def count(self, job: int, status: str | None = None) -> int:
        if status is None:
            row = self._db.read_one("SELECT COUNT(*) FROM documents WHERE job = ?", (job,))
        else:
            row = self._db.read_one(
                "SELECT COUNT(*) FROM documents WHERE job = ? AND status = ?", (job, status)
            )
        return 0 if row is None else int(row[0])

    def documents(
        self, job: int, *, limit: int | None, status: str | None, max_chars: int | None
    ) -> list[StoredDocument]:
        """The job's documents in document-id order (SQLite's binary order: by code point), one text
        inflated at a time (the ids are read first, then each row)."""
        where, params = ("job = ?", (job,)) if status is None else ("job = ? AND status = ?", (job, status))
        ids = self._db.read(
            f"SELECT doc_id FROM documents WHERE {where} ORDER BY doc_id LIMIT ?",
            (*params, -1 if limit is None else max(limit, 0)),
        )
        found = []
        for (doc_id,) in ids:
            row = self._db.read_one(
                "SELECT status, chars, record, text FROM documents WHERE job = ? AND doc_id = ?",
                (job, doc_id),
            )
            if row is None:  # replaced or deleted since the ids were read: it will be in the next read
                continue
            doc_status, chars, record, packed = row
            text = _inflate(packed, max_chars)
            cut = chars if max_chars is not None and chars > max_chars else None
            found.append(StoredDocument(str(doc_id), str(doc_status), bytes(record), text, cut))
        return found


def _inflate(packed: bytes, max_chars: int | None) -> str:
    """The text, or its first ``max_chars`` characters without inflating the rest."""
    if max_chars is None:
        return zlib.decompress(packed).decode("utf-8", "surrogatepass")
    if max_chars <= 0:
        return ""
    # max_chars characters take at most 4 bytes each; the decoder keeps back a character cut in two.
    head = zlib.decompressobj().decompress(packed, _MAX_UTF8 * max_chars)
    text = codecs.getincrementaldecoder("utf-8")("surrogatepass").decode(head, final=False)
    return text[:max_chars]
