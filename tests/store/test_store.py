"""The run store and the response cache, as units, on real SQLite files.

The end-to-end promises (kill -9 and resume, refusal of a changed job through the CLI) are in
test_durable.py; here each piece of the store is checked on its own: the header, jobs and their
fingerprints, batched writes, the job lock, the cache and its key, and how SQLite failures surface.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from corral.backends import COMPATIBLE_PROFILE
from corral.backends.base import Completion, Mode, RateLimitInfo, Request
from corral.backends.openai import OpenAIBackend
from corral.errors import StoreError
from corral.schema import ResponseSpec, load_spec
from corral.store import (
    STORE_FILE,
    ItemRow,
    JobInfo,
    KnownLimits,
    RunStore,
    StoredItem,
    input_hash,
)
from corral.store._cache import ResponseCache
from corral.store._db import APPLICATION_ID
from corral.store._schema import SCHEMA_VERSION
from corral.types import Usage
from tests._support.sqlite import read_rows

SETTINGS: dict[str, Any] = {"schema": "Person-v1", "prompt": "Extract the person.", "model": "sim-1"}


def item_row(
    item_id: str, text: str, status: str = "ok", error_kind: str | None = None, cost: float = 0.0
) -> ItemRow:
    """A row for :meth:`RunStore.add_item`, its record as the output would hold it."""
    record = orjson.dumps({"id": item_id, "input": text, "status": status})
    return ItemRow(item_id, input_hash(text), status, error_kind, 2, 30, 7, cost, 0.125, record)


# --- opening ---------------------------------------------------------------------------------


def test_open_creates_the_database_in_a_directory_and_reopens_it(store_dir: Path) -> None:
    store = RunStore.open(store_dir)
    try:
        assert store.path == store_dir / STORE_FILE
        assert store.path.name == "corral.db"
        assert store.path.is_file()
        # Before close: the header was checkpointed into the main file, not left in the WAL.
        header = store.path.read_bytes()[:100]
        assert header.startswith(b"SQLite format 3\x00")
        assert header[68:72] == bytes.fromhex("636F7272")
        assert int.from_bytes(header[68:72], "big") == APPLICATION_ID == 0x636F7272
        assert int.from_bytes(header[60:64], "big") == SCHEMA_VERSION
        tables = read_rows(store.path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        assert tables == [
            ("batch_requests",),
            ("batches",),
            ("cache",),
            ("documents",),
            ("endpoints",),
            ("items",),
            ("job_args",),
            ("jobs",),
            ("runs",),
            ("samples",),
        ]
    finally:
        store.close()

    with RunStore.open(store_dir) as again:
        assert again.path == store_dir / STORE_FILE
        assert again.open_job("out.jsonl", SETTINGS).finished_before == 0


def test_open_takes_a_file_path_and_creates_its_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "jobs.db"
    with RunStore.open(str(path)) as store:
        assert store.path == path
    assert path.is_file()
    assert path.read_bytes()[68:72] == APPLICATION_ID.to_bytes(4, "big")
    assert not (tmp_path / "a" / "b" / STORE_FILE).exists()


def test_open_accepts_an_empty_file_as_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with RunStore.open(path) as store:
        assert store.open_job("out.jsonl", SETTINGS).finished_before == 0
    assert path.read_bytes()[68:72] == APPLICATION_ID.to_bytes(4, "big")


# --- jobs, items and lookups -----------------------------------------------------------------


def test_a_new_job_starts_with_nothing_before(store: RunStore) -> None:
    job = store.open_job("out.jsonl", SETTINGS)
    assert (job.name, job.spent_before, job.finished_before, job.errors_before) == (
        "out.jsonl",
        0.0,
        0,
        0,
    )
    assert job.id == 1 and job.run == 1
    assert set(job.counters) == {
        "items", "ok", "errors", "reused", "requests", "cached", "shared", "retries",
        "prompt_tokens", "completion_tokens", "cost",
    }  # fmt: skip
    assert all(value == 0 for value in job.counters.values())
    assert store.lookup(job, "1", input_hash("anything")) is None
    assert read_rows(store.path, "SELECT job, status, ended FROM runs") == [(1, "running", None)]


def test_finished_items_are_found_by_a_later_run(store_dir: Path) -> None:
    texts = {str(n): f"My name is Person{n}" for n in range(1, 6)}
    with RunStore.open(store_dir) as store:
        job = store.open_job("out.jsonl", SETTINGS)
        store.add_item(job, item_row("1", texts["1"]))
        store.add_item(job, item_row("2", texts["2"]))
        store.add_item(job, item_row("3", texts["3"], "error", "invalid_output"))
        store.add_item(job, item_row("4", texts["4"], "error", "rate_limited"))
        store.add_item(job, item_row("5", texts["5"]))
        assert store.pending == 5
        store.flush()
        assert store.pending == 0
        store.finish_run(job, "completed")

    with RunStore.open(store_dir) as store:
        again = store.open_job("out.jsonl", dict(reversed(SETTINGS.items())))  # key order is no change
        assert (again.id, again.run) == (job.id, job.run + 1)
        assert (again.finished_before, again.errors_before, again.spent_before) == (5, 2, 0.0)
        found = store.lookup(again, "2", input_hash(texts["2"]))
        assert found == StoredItem("ok", orjson.dumps({"id": "2", "input": texts["2"], "status": "ok"}))
        assert isinstance(found.record, bytes)
        failed = store.lookup(again, "3", input_hash(texts["3"]))
        assert failed is not None and failed.status == "error"
        # Same id, other text: the stored result is not reused. Unknown id: nothing.
        assert store.lookup(again, "2", input_hash(texts["2"] + " (edited)")) is None
        assert store.lookup(again, "6", input_hash(texts["2"])) is None
        assert sorted(store.errors_of(again)) == [("3", "invalid_output"), ("4", "rate_limited")]


def test_add_item_stores_every_column_in_place(store: RunStore) -> None:
    job = store.open_job("out.jsonl", SETTINGS)
    store.add_item(job, item_row("7", "some text", "error", "transport", cost=0.5))
    store.flush()
    rows = read_rows(
        store.path,
        "SELECT job, item_id, input_hash, run, status, error_kind, attempts, prompt_tokens, "
        "completion_tokens, cost, latency, finished > 0, record FROM items",
    )
    record = orjson.dumps({"id": "7", "input": "some text", "status": "error"})
    assert rows == [
        (job.id, "7", input_hash("some text"), job.run, "error", "transport", 2, 30, 7, 0.5, 0.125, 1, record)
    ]


def test_items_of_one_job_are_invisible_to_another(store: RunStore) -> None:
    first = store.open_job("a.jsonl", SETTINGS)
    second = store.open_job("b.jsonl", SETTINGS)
    assert first.id != second.id
    store.add_item(first, item_row("1", "text"))
    store.flush()
    assert store.lookup(first, "1", input_hash("text")) is not None
    assert store.lookup(second, "1", input_hash("text")) is None


def test_a_changed_job_is_refused_naming_what_changed(store_dir: Path) -> None:
    with RunStore.open(store_dir) as store:
        store.open_job("out.jsonl", SETTINGS)
    changed = {**SETTINGS, "schema": "Person-v2", "model": "gpt-4o"}
    with RunStore.open(store_dir) as store, pytest.raises(StoreError) as caught:
        store.open_job("out.jsonl", changed)
    message = str(caught.value)
    assert "out.jsonl was started with a different model, schema " in message
    assert "(model: sim-1 → gpt-4o; schema: Person-v1 → Person-v2)" in message
    assert "--fresh" in message
    assert "prompt" not in message.replace(str(store_dir), "")
    assert caught.value.kind == "store"


def test_a_removed_or_added_setting_is_a_change_too(store_dir: Path) -> None:
    with RunStore.open(store_dir) as store:
        store.open_job("out.jsonl", SETTINGS)
    with RunStore.open(store_dir) as store, pytest.raises(StoreError, match=r"different mode, prompt \("):
        store.open_job("out.jsonl", {"schema": "Person-v1", "model": "sim-1", "mode": "tools"})


def test_fresh_forgets_the_job_but_keeps_the_cache(store_dir: Path) -> None:
    with RunStore.open(store_dir) as store:
        job = store.open_job("out.jsonl", SETTINGS)
        store.add_item(job, item_row("1", "one"))
        store.add_item(job, item_row("2", "two", "error", "transport"))
        store.add_cache(b"k" * 20, "sim-1", b'{"answer": 1}')
        job.counters["cost"] = 0.25
        store.flush()
        store.finish_run(job, "completed")
        other = store.open_job("other.jsonl", SETTINGS)
        store.add_item(other, item_row("1", "one"))
        store.flush()

    changed = {**SETTINGS, "prompt": "Extract the people."}
    with RunStore.open(store_dir) as store:
        fresh = store.open_job("out.jsonl", changed, fresh=True)
        assert (fresh.id, fresh.finished_before, fresh.errors_before, fresh.spent_before) == (
            job.id,
            0,
            0,
            0.0,
        )
        assert store.lookup(fresh, "1", input_hash("one")) is None
        assert list(store.errors_of(fresh)) == []
        assert store.cached(b"k" * 20) == b'{"answer": 1}'
        runs = read_rows(store.path, "SELECT job, status FROM runs WHERE job = ?", (job.id,))
        assert runs == [(job.id, "running")]  # only the run just started is left
        untouched = store.open_job("other.jsonl", SETTINGS)
        assert untouched.finished_before == 1

    # The job now holds the new settings: they are accepted without --fresh, the old ones refused.
    with RunStore.open(store_dir) as store:
        assert store.open_job("out.jsonl", changed).finished_before == 0
    with RunStore.open(store_dir) as store, pytest.raises(StoreError, match="--fresh"):
        store.open_job("out.jsonl", SETTINGS)


def test_fresh_on_an_unchanged_job_forgets_it_as_well(store_dir: Path) -> None:
    with RunStore.open(store_dir) as store:
        job = store.open_job("out.jsonl", SETTINGS)
        store.add_item(job, item_row("1", "one"))
        store.flush()
    with RunStore.open(store_dir) as store:
        assert store.open_job("out.jsonl", SETTINGS, fresh=True).finished_before == 0


def test_spent_before_sums_the_cost_of_earlier_runs(store_dir: Path) -> None:
    for cost in (0.25, 0.5):
        with RunStore.open(store_dir) as store:
            job = store.open_job("out.jsonl", SETTINGS)
            job.counters["cost"] = cost
            job.counters["requests"] = 3
            store.write([], [])
            store.flush()
            store.finish_run(job, "budget")
    with RunStore.open(store_dir) as store:
        job = store.open_job("out.jsonl", SETTINGS)
        assert job.spent_before == 0.75
        runs = read_rows(
            store.path, "SELECT id, status, requests, cost, ended IS NOT NULL FROM runs ORDER BY id"
        )
        assert runs == [(1, "budget", 3, 0.25, 1), (2, "budget", 3, 0.5, 1), (3, "running", 0, 0.0, 0)]


def test_every_batch_writes_the_run_counters(store: RunStore) -> None:
    job = store.open_job("out.jsonl", SETTINGS)
    job.counters.update(items=4, ok=3, errors=1, requests=6, retries=2, prompt_tokens=120, cost=0.125)
    items, cache = store.take()
    assert (items, cache) == ([], [])
    store.write(items, cache)  # an empty batch still records progress
    rows = read_rows(
        store.path, "SELECT status, items, ok, errors, requests, retries, prompt_tokens, cost FROM runs"
    )
    assert rows == [("running", 4, 3, 1, 6, 2, 120, 0.125)]
    store.finish_run(job, "interrupted")
    assert read_rows(store.path, "SELECT status, ended IS NOT NULL FROM runs") == [("interrupted", 1)]


# --- the job lock ----------------------------------------------------------------------------


def test_a_second_writer_of_the_same_job_is_refused_until_the_first_closes(store_dir: Path) -> None:
    first = RunStore.open(store_dir)
    second = RunStore.open(store_dir)
    try:
        first.open_job("out.jsonl", SETTINGS)
        with pytest.raises(StoreError, match=r"another corral run is writing out\.jsonl"):
            second.open_job("out.jsonl", SETTINGS)
        assert second.open_job("other.jsonl", SETTINGS).finished_before == 0  # other jobs are free
        first.close()
        assert second.open_job("out.jsonl", SETTINGS).run == 3  # the lock went with the first store
    finally:
        first.close()
        second.close()


def test_a_refused_open_job_releases_the_job_lock(store_dir: Path) -> None:
    with RunStore.open(store_dir) as store:
        store.open_job("out.jsonl", SETTINGS)
    changed = {**SETTINGS, "model": "gpt-4o"}
    with RunStore.open(store_dir) as store:
        with pytest.raises(StoreError, match="--fresh"):
            store.open_job("out.jsonl", changed)
        assert store.open_job("out.jsonl", changed, fresh=True).finished_before == 0


# --- the cache table -------------------------------------------------------------------------


def test_cache_entries_are_found_before_and_after_they_are_committed(store_dir: Path) -> None:
    key = bytes(range(20))
    with RunStore.open(store_dir) as store, RunStore.open(store_dir) as onlooker:
        assert store.cached(key) is None
        store.add_cache(key, "sim-1", b"payload")
        assert store.pending == 1
        assert store.cached(key) == b"payload"  # pending, in memory
        assert onlooker.cached(key) is None  # not on disk yet
        items, cache = store.take()
        assert items == [] and len(cache) == 1
        assert store.cached(key) == b"payload"  # taken but not yet committed: still found
        store.write(items, cache)
        store.committed(cache)
        assert store.pending == 0
        assert onlooker.cached(key) == b"payload"
        assert store.cached(key) == b"payload"  # now from disk
        assert isinstance(store.cached(key), bytes)
    with RunStore.open(store_dir) as store:
        assert store.cached(key) == b"payload"
        assert store.cached(b"other") is None
    assert read_rows(store_dir / STORE_FILE, "SELECT model FROM cache") == [("sim-1",)]


def test_keys_alike_in_their_first_bytes_never_share_an_answer(store_dir: Path) -> None:
    first, second = b"\x01" * 8 + b"a" * 12, b"\x01" * 8 + b"b" * 12
    with RunStore.open(store_dir) as store:
        store.add_cache(first, "sim-1", b"first answer")
        store.flush()
        store.add_cache(second, "sim-1", b"second answer")
        store.flush()
    with RunStore.open(store_dir) as store:
        assert store.cached(first) == b"first answer"
        assert store.cached(second) in (b"second answer", None)  # a miss at worst, never a wrong answer
        assert store.cached(b"\x01" * 8) is None


def test_a_committed_cache_entry_is_never_replaced(store: RunStore) -> None:
    store.add_cache(b"key", "sim-1", b"first")
    store.flush()
    store.add_cache(b"key", "sim-1", b"second")
    store.flush()
    assert store.cached(b"key") == b"first"


SPEC = load_spec({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
OTHER_SPEC = load_spec({"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]})


def backend(
    base_url: str = "http://127.0.0.1:9/v1", model: str = "sim-1", api_key: str | None = None
) -> OpenAIBackend:
    return OpenAIBackend(base_url=base_url, model=model, profile=COMPATIBLE_PROFILE, api_key=api_key)


def request(spec: ResponseSpec[Any] = SPEC, **changes: Any) -> Request:
    base = Request(
        messages=[{"role": "system", "content": "Extract."}, {"role": "user", "content": "I am Ann."}],
        spec=spec,
        mode=Mode.JSON_SCHEMA,
        max_tokens=256,
        temperature=0.0,
        item_id="1",
    )
    return dataclasses.replace(base, **changes)


def test_the_response_cache_round_trips_a_completion(store_dir: Path) -> None:
    completion = Completion(
        text='{"name": "Ann"}',
        finish_reason="tool_calls",
        usage=Usage(41, 9),
        reply={
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "extract", "arguments": '{"name": "Ann"}'},
                }
            ],
        },
        tool_call_id="call_1",
        rate_limits=RateLimitInfo(limit_requests=500),
    )
    expected = dataclasses.replace(completion, rate_limits=None)  # headers are not an answer: not kept
    key = ResponseCache.request_key(backend(), request())
    with RunStore.open(store_dir) as store:
        cache = ResponseCache(store)
        assert cache.get(key) is None
        cache.put(key, "sim-1", completion)
        assert cache.get(key) == expected  # pending
        store.flush()
        assert cache.get(key) == expected  # committed
    with RunStore.open(store_dir) as store:
        got = ResponseCache(store).get(key)
        assert got == expected
        assert got is not None and got.usage == Usage(41, 9) and got.usage.total_tokens == 50
        assert ResponseCache(store, read=False).get(key) is None


def test_a_cache_that_does_not_read_still_records(store: RunStore) -> None:
    writer = ResponseCache(store, read=False)
    completion = Completion(text="{}", finish_reason="stop", usage=Usage(1, 2), reply={"role": "assistant"})
    writer.put(b"k", "sim-1", completion)
    store.flush()
    assert writer.get(b"k") is None
    assert ResponseCache(store).get(b"k") == completion


def test_the_cache_key_depends_on_everything_that_decides_the_answer() -> None:
    base = ResponseCache.request_key(backend(), request())
    assert isinstance(base, bytes) and len(base) == 20
    assert ResponseCache.request_key(backend(), request()) == base  # equal requests, equal keys
    variants = {
        "endpoint": ResponseCache.request_key(backend(base_url="http://127.0.0.1:10/v1"), request()),
        "model": ResponseCache.request_key(backend(model="sim-2"), request()),
        "mode": ResponseCache.request_key(backend(), request(mode=Mode.TOOLS)),
        "schema": ResponseCache.request_key(backend(), request(spec=OTHER_SPEC)),
        "messages": ResponseCache.request_key(
            backend(),
            request(
                messages=[{"role": "system", "content": "Extract."}, {"role": "user", "content": "I am Bo."}]
            ),
        ),
        "message roles": ResponseCache.request_key(
            backend(),
            request(
                messages=[{"role": "user", "content": "Extract."}, {"role": "user", "content": "I am Ann."}]
            ),
        ),
        "max_tokens": ResponseCache.request_key(backend(), request(max_tokens=257)),
        "temperature": ResponseCache.request_key(backend(), request(temperature=0.7)),
        "no temperature": ResponseCache.request_key(backend(), request(temperature=None)),
        "scope": ResponseCache.request_key(backend(), request(), scope="client-a"),
    }
    for what, key in variants.items():
        assert key != base, what
    assert len(set(variants.values())) == len(variants)


def test_the_cache_key_ignores_what_does_not_decide_the_answer() -> None:
    base = ResponseCache.request_key(backend(), request())
    assert ResponseCache.request_key(backend(), request(item_id="other")) == base
    assert ResponseCache.request_key(backend(base_url="http://127.0.0.1:9/v1/"), request()) == base
    same_messages = [{"content": "Extract.", "role": "system"}, {"content": "I am Ann.", "role": "user"}]
    assert ResponseCache.request_key(backend(), request(messages=same_messages)) == base


def test_the_cache_key_never_depends_on_the_api_key() -> None:
    secret = backend(api_key="sk-secret")
    other = backend(api_key="sk-another-one")
    keyless = backend()
    assert ResponseCache.request_key(secret, request()) == ResponseCache.request_key(other, request())
    assert ResponseCache.request_key(secret, request()) == ResponseCache.request_key(keyless, request())
    assert "sk-secret" not in secret.endpoint

    with_credentials = backend(base_url="http://user:pw@127.0.0.1:9/v1")
    assert with_credentials.endpoint == "http://127.0.0.1:9/v1"
    assert "pw" not in with_credentials.endpoint and "user" not in with_credentials.endpoint
    assert ResponseCache.request_key(with_credentials, request()) == ResponseCache.request_key(
        keyless, request()
    )
    assert ResponseCache.request_key(backend(base_url="http://user:other@127.0.0.1:9/v1"), request()) == (
        ResponseCache.request_key(with_credentials, request())
    )


# --- failures of the database ----------------------------------------------------------------


def test_a_full_disk_is_a_store_error_and_committed_rows_survive(store_dir: Path) -> None:
    with RunStore.open(store_dir) as store:
        job = store.open_job("out.jsonl", SETTINGS)
        store.add_item(job, item_row("kept", "kept text"))
        store.flush()
        writer = store._db.writer
        pages = writer.execute("PRAGMA page_count").fetchone()[0]
        writer.execute(f"PRAGMA max_page_count = {pages + 1}")
        for n in range(100):
            store.add_item(job, dataclasses.replace(item_row(str(n), f"text {n}"), record=b"x" * 20_000))
        with pytest.raises(StoreError) as caught:
            store.flush()
        message = str(caught.value)
        assert "cannot grow" in message and "free disk space" in message
        assert str(store.path) in message
        assert caught.value.__suppress_context__  # no sqlite3 traceback behind it
        assert not writer.in_transaction  # rolled back, not left half-written

    with RunStore.open(store_dir) as store:
        again = store.open_job("out.jsonl", SETTINGS)
        assert again.finished_before == 1
        kept = store.lookup(again, "kept", input_hash("kept text"))
        assert kept == StoredItem("ok", orjson.dumps({"id": "kept", "input": "kept text", "status": "ok"}))
        assert store.lookup(again, "0", input_hash("text 0")) is None


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    content = b"these are my notes, not a database\n" * 50
    path.write_bytes(content)
    with pytest.raises(StoreError, match="is not a corral run store") as caught:
        RunStore.open(path)
    assert "not even an SQLite database" in str(caught.value)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]  # no -wal, -shm or lock files


def test_another_programs_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    conn.execute("INSERT INTO contacts VALUES ('Ann', '555')")
    conn.commit()
    conn.close()
    content = path.read_bytes()
    with pytest.raises(StoreError, match="is an SQLite database but not a corral run store"):
        RunStore.open(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.db"]


def test_a_store_from_a_newer_corral_is_refused(store_dir: Path) -> None:
    with RunStore.open(store_dir) as store:
        store.open_job("out.jsonl", SETTINGS)
    path = store_dir / STORE_FILE
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer corral") as caught:
        RunStore.open(store_dir)
    assert f"store version {SCHEMA_VERSION + 1}, this one reads {SCHEMA_VERSION}" in str(caught.value)
    assert read_rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]  # not downgraded


#: what the earlier layouts that upgrade in place lacked
_BEFORE = {
    6: "ALTER TABLE runs DROP COLUMN shared;",
    5: "ALTER TABLE runs DROP COLUMN shared; DROP TABLE documents;",
    4: "ALTER TABLE runs DROP COLUMN shared; DROP TABLE documents; DROP TABLE endpoints;",
    3: "ALTER TABLE runs DROP COLUMN shared; DROP TABLE documents; DROP TABLE endpoints; DROP TABLE samples; "
    "ALTER TABLE runs DROP COLUMN faults;",
    2: "ALTER TABLE runs DROP COLUMN shared; DROP TABLE documents; DROP TABLE endpoints; DROP TABLE samples; "
    "ALTER TABLE runs DROP COLUMN faults; DROP TABLE batch_requests; DROP TABLE batches; "
    "DROP TABLE job_args;",
}


@pytest.mark.parametrize("version", sorted(_BEFORE))
def test_an_earlier_store_is_upgraded_in_place_keeping_its_results(store_dir: Path, version: int) -> None:
    with RunStore.open(store_dir) as store:
        job = store.open_job("out.jsonl", SETTINGS)
        store.add_item(job, item_row("1", "text 1"))
        store.flush()
        store.finish_run(job, "completed")
    path = store_dir / STORE_FILE
    conn = sqlite3.connect(path)  # what that version's store looked like
    conn.executescript(f"{_BEFORE[version]} PRAGMA user_version = {version};")
    conn.close()
    with RunStore.open(store_dir) as store:
        job = store.open_job("out.jsonl", SETTINGS)
        assert job.finished_before == 1
        assert read_rows(path, "SELECT COUNT(*) FROM batches") == [(0,)]
        assert read_rows(path, "SELECT COUNT(*) FROM samples") == [(0,)]
        assert not store.known_limits("http://127.0.0.1:1/v1", "sim-1")
        job.faults["rate_limited"] = 2
        store.finish_run(job, "completed")
    assert read_rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert read_rows(path, "SELECT faults FROM runs ORDER BY id") == [("{}",), ('{"rate_limited":2}',)]
    assert read_rows(path, "SELECT shared FROM runs ORDER BY id") == [(0,), (0,)]


def corrupt(store_dir: Path) -> Path:
    """A store with data whose pages after the first are overwritten with garbage."""
    with RunStore.open(store_dir) as store:
        job = store.open_job("out.jsonl", SETTINGS)
        for n in range(200):
            store.add_item(job, item_row(str(n), f"text {n}"))
        store.add_cache(b"key", "sim-1", b"x" * 5000)
        store.flush()
        store.finish_run(job, "completed")
    path = store_dir / STORE_FILE
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    assert len(data) >= 4 * page_size, "the store should span several pages"
    data[page_size:] = b"\x5a" * (len(data) - page_size)
    path.write_bytes(bytes(data))
    return path


def test_a_corrupt_store_is_a_store_error_not_an_sqlite_one(store_dir: Path) -> None:
    corrupt(store_dir)

    def use() -> None:
        with RunStore.open(store_dir) as store:
            job = store.open_job("out.jsonl", SETTINGS)
            store.lookup(job, "1", input_hash("text 1"))

    with pytest.raises(StoreError) as caught:
        use()
    message = str(caught.value)
    assert "is corrupt" in message
    assert "move it away" in message


def test_opening_a_corrupt_store_refuses_it_at_once(store_dir: Path) -> None:
    corrupt(store_dir)
    with pytest.raises(StoreError, match="corrupt"):
        RunStore.open(store_dir).close()


# --- input_hash ------------------------------------------------------------------------------


def test_input_hash_is_stable_distinct_and_fits_a_signed_64_bit_integer() -> None:
    # Pinned: stored results are found by this value, so it must never change between versions.
    assert input_hash("hello") == 6042553977968695870
    assert input_hash("") == 8238016292129134938
    assert input_hash("hello") == input_hash("hello")
    assert input_hash("hello") != input_hash("hello ")
    assert input_hash("\ud800") == 2379092608228951732  # a lone surrogate (from JSON) still hashes
    hashes = {input_hash(f"My name is Person{n}") for n in range(10_000)}
    assert len(hashes) == 10_000
    assert all(0 <= value < 2**63 for value in hashes)


def test_input_hash_survives_the_round_trip_through_sqlite(store: RunStore) -> None:
    job: JobInfo = store.open_job("out.jsonl", SETTINGS)
    texts = [f"text {n}" for n in range(500)]
    top = max(texts, key=input_hash)
    assert input_hash(top) > 2**62  # the high end of the range is exercised
    store.add_item(job, item_row("top", top))
    store.flush()
    assert read_rows(store.path, "SELECT input_hash FROM items") == [(input_hash(top),)]
    assert store.lookup(job, "top", input_hash(top)) is not None


def test_limits_learned_for_an_endpoint_are_remembered_without_credentials(store_dir: Path) -> None:
    url = "https://user:secret@api.example.test/v1"
    with RunStore.open(store_dir) as store:
        assert store.known_limits(url, "gpt-4o-mini") == KnownLimits()
        store.remember_limits(url, "gpt-4o-mini", KnownLimits(rpm=1200, tpm=90_000))
        store.remember_limits(url, "gpt-4o", KnownLimits(adaptive_rpm=300.5))
        store.remember_limits(url, "other", KnownLimits())  # nothing learned: nothing kept
    with RunStore.open(store_dir) as store:
        assert store.known_limits(url, "gpt-4o-mini") == KnownLimits(rpm=1200, tpm=90_000)
        assert store.known_limits("https://api.example.test/v1", "gpt-4o") == KnownLimits(adaptive_rpm=300.5)
        assert store.known_limits(url, "other") == KnownLimits()
        store.remember_limits(url, "gpt-4o-mini", KnownLimits(rpm=600))  # the newest word wins
        assert store.known_limits(url, "gpt-4o-mini") == KnownLimits(rpm=600)
    assert b"secret" not in (store_dir / STORE_FILE).read_bytes()


def test_a_new_store_is_its_owners_only(tmp_path: Path) -> None:
    # It keeps every input text, record and cached answer (issue 15, M6).
    store_dir = tmp_path / "fresh" / ".corral"
    with RunStore.open(store_dir / STORE_FILE) as store:
        job = store.open_job("out.jsonl", {"model": "sim-1"})
        store.finish_run(job, "completed")
        store.flush()
        files = [path for path in store_dir.iterdir() if path.name.startswith(STORE_FILE)]
        assert {path.name for path in files} >= {STORE_FILE, f"{STORE_FILE}-wal"}
        assert all(path.stat().st_mode & 0o077 == 0 for path in files), [oct(p.stat().st_mode) for p in files]
    assert store_dir.stat().st_mode & 0o777 == 0o700
