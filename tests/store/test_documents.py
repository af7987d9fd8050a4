"""The store's documents: a chunked document's assembled record and its text, on real SQLite files.

Written with the store's batches (in the transaction of the item rows queued with them), replaced
when added again, read back in document-id order with bounded texts, and added to an older store by
its in-place upgrade.
"""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from corral.errors import StoreError
from corral.store import STORE_FILE, ItemRow, RunStore, StoredDocument, input_hash
from corral.store._schema import SCHEMA_VERSION
from tests._support.sqlite import read_rows

SETTINGS: dict[str, Any] = {"schema": "Contract-v1", "prompt": "Extract the contract.", "model": "sim-1"}
#: a text with what UTF-8 and SQLite could trip on: accents, CJK, an emoji (two UTF-16 units), NUL
TEXT = "Zoë signed 契約 on 🌞 Monday\x00 with Ana Pérez."


def record(doc_id: str, output: Any = None, status: str = "ok") -> bytes:
    error = None if status == "ok" else {"kind": "chunks", "message": "2 of 3 chunks failed"}
    return orjson.dumps({"id": doc_id, "output": output, "grounding": {}, "chunks": 3, "error": error})


def chunk_row(item_id: str) -> ItemRow:
    return ItemRow(
        item_id, input_hash(item_id), "ok", None, 1, 10, 5, 0.0, 0.1, orjson.dumps({"id": item_id})
    )


def test_a_document_round_trips_with_its_record_and_text(store: RunStore) -> None:
    job = store.open_job("contracts.jsonl", SETTINGS)
    raw = record("contracts/a.pdf", {"title": "Lease"})
    store.add_document(job, "contracts/a.pdf", status="ok", record=raw, text=TEXT)
    assert store.document_count(job.id) == 0  # queued, not yet written
    assert store.pending == 1
    store.flush()
    assert store.pending == 0
    assert store.document_count(job.id) == 1
    assert store.documents(job.id) == [StoredDocument("contracts/a.pdf", "ok", raw, TEXT)]
    # The text is kept compressed, as UTF-8, with its length in characters (code points).
    stored = read_rows(store.path, "SELECT chars, text, run FROM documents")
    assert stored == [(len(TEXT), zlib.compress(TEXT.encode()), job.run)]


def test_documents_are_written_in_the_transaction_of_the_items_queued_with_them(store: RunStore) -> None:
    job = store.open_job("contracts.jsonl", SETTINGS)
    store.add_item(job, chunk_row("contracts/a.pdf#0"))
    store.add_document(job, "contracts/a.pdf", status="ok", record=record("contracts/a.pdf"), text="x")
    # A batch that fails writes neither: the document never outlives (nor precedes) its chunks.
    writer = store._db.writer
    writer.execute("CREATE TRIGGER refuse BEFORE INSERT ON documents BEGIN SELECT RAISE(ABORT, 'no'); END")
    with pytest.raises(StoreError):
        store.flush()
    assert read_rows(store.path, "SELECT COUNT(*) FROM items") == [(0,)]
    writer.execute("DROP TRIGGER refuse")
    store.add_item(job, chunk_row("contracts/a.pdf#0"))
    store.add_document(job, "contracts/a.pdf", status="ok", record=record("contracts/a.pdf"), text="x")
    store.flush()
    assert read_rows(store.path, "SELECT COUNT(*) FROM items") == [(1,)]
    assert store.document_count(job.id) == 1


def test_adding_a_document_again_replaces_it_queued_or_stored(store_dir: Path) -> None:
    with RunStore.open(store_dir) as store:
        job = store.open_job("contracts.jsonl", SETTINGS)
        store.add_document(job, "a.txt", status="error", record=record("a.txt", status="error"), text="old")
        store.add_document(job, "a.txt", status="ok", record=record("a.txt", "v1"), text="older")
        assert store.pending == 1  # queued twice, written once
        store.flush()
        store.finish_run(job, "completed")
    with RunStore.open(store_dir) as store:  # a re-run reassembles the document
        job = store.open_job("contracts.jsonl", SETTINGS)
        store.add_document(job, "a.txt", status="ok", record=record("a.txt", "v2"), text="new text")
        store.flush()
        assert store.document_count(job.id) == 1
        assert store.documents(job.id) == [StoredDocument("a.txt", "ok", record("a.txt", "v2"), "new text")]
        assert read_rows(store.path, "SELECT run FROM documents") == [(job.run,)]


def test_documents_come_in_id_order_counted_and_filtered_by_status(store: RunStore) -> None:
    job = store.open_job("contracts.jsonl", SETTINGS)
    other = store.open_job("other.jsonl", SETTINGS)
    for doc_id in ("b.md", "a.pdf", "c/z.txt", "c/a.txt"):
        status = "error" if doc_id == "b.md" else "ok"
        store.add_document(job, doc_id, status=status, record=record(doc_id, status=status), text=doc_id)
    store.add_document(other, "zzz.txt", status="ok", record=record("zzz.txt"), text="elsewhere")
    store.flush()
    assert [d.doc_id for d in store.documents(job.id)] == ["a.pdf", "b.md", "c/a.txt", "c/z.txt"]
    assert [d.doc_id for d in store.documents(job.id, limit=2)] == ["a.pdf", "b.md"]
    assert [d.doc_id for d in store.documents(job.id, status="error")] == ["b.md"]
    assert [d.doc_id for d in store.documents(job.id, status="ok", limit=2)] == ["a.pdf", "c/a.txt"]
    assert store.documents(job.id, limit=0) == []
    assert store.document_count(job.id) == 4
    assert store.document_count(job.id, status="error") == 1
    assert store.document_count(job.id, status="ok") == 3
    assert store.document_count(other.id) == 1
    assert store.document_count(job.id + other.id + 1) == 0


def test_max_chars_reads_only_the_start_of_a_long_text(store: RunStore) -> None:
    job = store.open_job("contracts.jsonl", SETTINGS)
    # Characters of 1, 2, 3 and 4 bytes in UTF-8, and a lone surrogate, over 2 MB.
    text = ("a é 契 🌞 \ud800 " * 200_000) + "THE END"
    store.add_document(job, "long.txt", status="ok", record=record("long.txt"), text=text)
    store.add_document(job, "short.txt", status="ok", record=record("short.txt"), text="short")
    store.flush()
    long, short = store.documents(job.id, max_chars=1_001)
    assert long.text == text[:1_001] and long.cut_from == len(text)
    assert short.text == "short" and short.cut_from is None
    whole = store.documents(job.id, limit=1)[0]
    assert whole.text == text and whole.cut_from is None
    for cut in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10):  # every way a cut can fall in a character
        assert store.documents(job.id, limit=1, max_chars=cut)[0].text == text[:cut]


def test_a_status_other_than_ok_or_error_is_refused(store: RunStore) -> None:
    job = store.open_job("contracts.jsonl", SETTINGS)
    with pytest.raises(ValueError, match="'ok' or 'error'"):
        store.add_document(job, "a.txt", status="failed", record=b"{}", text="")
    assert store.pending == 0


def test_a_store_of_the_layout_before_documents_is_upgraded_in_place(store_dir: Path) -> None:
    with RunStore.open(store_dir) as store:
        job = store.open_job("contracts.jsonl", SETTINGS)
        store.add_item(job, chunk_row("a.pdf#0"))
        store.flush()
        store.finish_run(job, "completed")
    path = store_dir / STORE_FILE
    conn = sqlite3.connect(path)  # what a version 5 store looked like: no documents
    conn.executescript("DROP TABLE documents; ALTER TABLE runs DROP COLUMN shared; PRAGMA user_version = 5;")
    conn.close()
    assert read_rows(path, "SELECT name FROM sqlite_master WHERE name LIKE 'documents%'") == []

    with RunStore.open(store_dir) as store:
        job = store.open_job("contracts.jsonl", SETTINGS)
        assert job.finished_before == 1  # its items kept
        assert store.document_count(job.id) == 0
        store.add_document(job, "a.pdf", status="ok", record=record("a.pdf"), text=TEXT)
        store.flush()
        assert store.documents(job.id) == [StoredDocument("a.pdf", "ok", record("a.pdf"), TEXT)]
    assert read_rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    names = read_rows(path, "SELECT name FROM sqlite_master WHERE name LIKE 'documents%' ORDER BY name")
    assert names == [("documents",), ("documents_by_doc",)]


def test_a_store_of_version_2_gains_documents_with_everything_else(store_dir: Path) -> None:
    with RunStore.open(store_dir) as store:
        store.open_job("contracts.jsonl", SETTINGS)
    path = store_dir / STORE_FILE
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP TABLE documents; DROP TABLE endpoints; DROP TABLE samples; "
        "ALTER TABLE runs DROP COLUMN shared; "
        "ALTER TABLE runs DROP COLUMN faults; DROP TABLE batch_requests; DROP TABLE batches; "
        "DROP TABLE job_args; PRAGMA user_version = 2;"
    )
    conn.close()
    with RunStore.open(store_dir) as store:
        job = store.open_job("contracts.jsonl", SETTINGS)
        store.add_document(job, "a.pdf", status="ok", record=record("a.pdf"), text="text")
        store.flush()
        assert store.document_count(job.id) == 1
    assert read_rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_jobs_documents_go_with_the_job(store: RunStore) -> None:
    job = store.open_job("contracts.jsonl", SETTINGS)
    store.add_document(job, "a.pdf", status="ok", record=record("a.pdf"), text="text")
    store.flush()
    with store._db.write() as conn:
        conn.execute("DELETE FROM jobs WHERE id = ?", (job.id,))
    assert store.document_count(job.id) == 0
