"""The response cache: an answered request is never paid for twice.

The key is a hash of everything that decides the answer — where the model runs, its name, the mode,
the schema, every message, ``max_tokens`` and ``temperature`` — and of nothing else: not the API key,
not the item id, not the concurrency. Only successful answers are cached (an invalid one too: it is
what the model said, and replaying it replays the re-ask that followed). Entries live in the run
store's ``cache`` table, shared by every job in that store, so re-running an identical job, or the
same job after ``--fresh``, sends nothing.

:class:`CacheTable` is the table and its queries (an answer waiting for the store's next batch is
found too); :class:`ResponseCache` is the key's recipe and the answers' encoding.
"""

from __future__ import annotations

import collections
import hashlib
import sqlite3
import time
from typing import Any, Protocol

import orjson

from corral.backends.base import Backend, Completion, Mode, Request
from corral.store._db import Database
from corral.types import Usage

__all__ = [
    "CACHE_TABLE",
    "AnswerStore",
    "CacheEntry",
    "CacheTable",
    "MemoryAnswers",
    "ResponseCache",
    "decode_completion",
    "encode_completion",
    "key_hash",
]

CACHE_TABLE = """
CREATE TABLE cache (
    hash INTEGER NOT NULL,
    key BLOB NOT NULL,
    model TEXT NOT NULL,
    completion BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE UNIQUE INDEX cache_by_hash ON cache (hash);
"""
_CACHE_INSERT = "INSERT OR IGNORE INTO cache (hash, key, model, completion, created) VALUES (?, ?, ?, ?, ?)"

#: a row of the cache table: (hash, key, model, completion, created)
CacheEntry = tuple[int, bytes, str, bytes, float]

_VERSION = 2  # bump when the key's recipe or the entry's shape changes: old entries then just miss

# The part of a key that a run's requests share (where, which model, which schema, which mode) is
# hashed once; each request copies that state and adds its messages. Halves the key's cost.
_PREFIXES: dict[tuple[str, str, str, Mode, str], Any] = {}


def key_hash(key: bytes) -> int:
    """The indexed integer under which a request key (cache, batch lines) is stored."""
    # Rows are appended and found through a small integer index: random 20-byte keys as the table's
    # own key made every batch rewrite a page per row (measured: 25 µs a row against 6).
    return int.from_bytes(key[:8], "big", signed=True)


class CacheTable:
    """The cache table of one store, and the answers waiting for its next batch (found there too)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queued: dict[bytes, CacheEntry] = {}

    def get(self, key: bytes) -> tuple[bytes, float] | None:
        """The answer kept under ``key`` and when it was kept (``time.time()``), or None."""
        pending = self._queued.get(key)
        if pending is not None:
            return pending[3], pending[4]
        row = self._db.read_one("SELECT key, completion, created FROM cache WHERE hash = ?", (key_hash(key),))
        # The full key is compared too: two keys sharing 64 bits is a miss, never a wrong answer.
        return None if row is None or row[0] != key else (bytes(row[1]), float(row[2]))

    def add(self, key: bytes, model: str, completion: bytes) -> None:
        self._queued[key] = (key_hash(key), key, model, completion, time.time())

    @property
    def pending(self) -> int:
        return len(self._queued)

    def take(self) -> list[CacheEntry]:
        """The queued entries, for a writer; they stay queued (and found) until :meth:`committed`."""
        return list(self._queued.values())

    @staticmethod
    def insert(conn: sqlite3.Connection, entries: list[CacheEntry]) -> None:
        if entries:
            conn.executemany(_CACHE_INSERT, entries)

    def committed(self, entries: list[CacheEntry]) -> None:
        """The entries are on disk: the reader finds them there now."""
        for entry in entries:
            self._queued.pop(entry[1], None)


class AnswerStore(Protocol):
    """Where a :class:`ResponseCache` keeps its answers (a :class:`~corral.store.RunStore`, or
    :class:`MemoryAnswers` for a job without one)."""

    def cached_entry(self, key: bytes) -> tuple[bytes, float] | None:
        """The answer kept under ``key`` and when it was kept (``time.time()``); None: never."""
        ...

    def add_cache(self, key: bytes, model: str, completion: bytes) -> None: ...


class MemoryAnswers:
    """Answers kept in memory, for a job without a run store: its identical requests are still sent
    once. The most recently used ``max_bytes`` of answers are kept (None: all of them, for a caller
    that holds every result in memory anyway, such as a DataFrame's), so a million-row job without a
    store stays within a bound; a duplicate further back than that is asked again."""

    def __init__(self, max_bytes: int | None = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: collections.OrderedDict[bytes, tuple[bytes, float]] = collections.OrderedDict()

    def cached_entry(self, key: bytes) -> tuple[bytes, float] | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def add_cache(self, key: bytes, model: str, completion: bytes) -> None:
        if key in self._entries:
            return
        self._entries[key] = (completion, time.time())
        self.size += len(key) + len(completion)
        while self.max_bytes is not None and self.size > self.max_bytes and self._entries:
            old_key, (old, _) = self._entries.popitem(last=False)
            self.size -= len(old_key) + len(old)


class ResponseCache:
    """Lookups and (batched) inserts against a :class:`~corral.store.RunStore`'s cache table.

    ``read=False`` skips lookups but still records answers (``--retry-errors``: re-asking the model
    must not replay the answers that failed).
    """

    def __init__(self, store: AnswerStore, *, read: bool = True, scope: str = "") -> None:
        self.store = store
        self.read = read
        #: answers kept since this moment are this job's own (its identical requests, sent once)
        self.since = time.time()
        #: whose answers these are: caches of different scopes share nothing. ``corral serve`` gives
        #: each client its own, so that no client can tell from a quick answer what another sent.
        self.scope = scope

    def key(self, backend: Backend, request: Request) -> bytes:
        return self.request_key(backend, request, scope=self.scope)

    @staticmethod
    def request_key(backend: Backend, request: Request, *, scope: str = "") -> bytes:
        where = (backend.endpoint, backend.model, request.spec.schema_json, request.mode, scope)
        prefix = _PREFIXES.get(where)
        if prefix is None:
            if len(_PREFIXES) > 64:  # schemas come and go in a long-lived process
                _PREFIXES.clear()
            recipe = [_VERSION, *where[:3], request.mode.value]
            if scope:  # no scope: the keys stay what they were, and earlier runs' entries still hit
                recipe.append(scope)
            prefix = _PREFIXES[where] = hashlib.blake2b(orjson.dumps(recipe), digest_size=20)
        digest = prefix.copy()
        recipe_rest: list[Any] = [request.messages, request.max_tokens, request.temperature]
        if request.logprobs:  # an answer kept without them would give no confidence (old keys kept)
            recipe_rest.append("logprobs")
        if request.sample:  # each further sample is its own answer
            recipe_rest.append(f"sample {request.sample}")
        digest.update(orjson.dumps(recipe_rest, option=orjson.OPT_SORT_KEYS))
        return bytes(digest.digest())

    def get(self, key: bytes) -> Completion | None:
        found = self.lookup(key)
        return None if found is None else found[0]

    def lookup(self, key: bytes) -> tuple[Completion, bool] | None:
        """The answer kept under ``key``, and whether it was kept since this cache was made (an
        identical request of the same job asked it: a duplicate, not an earlier job's answer)."""
        if not self.read:
            return None
        entry = self.store.cached_entry(key)
        if entry is None:
            return None
        raw, created = entry
        return decode_completion(raw), created >= self.since

    def put(self, key: bytes, model: str, completion: Completion) -> None:
        self.store.add_cache(key, model, encode_completion(completion))


def encode_completion(completion: Completion) -> bytes:
    """An answer as stored (in the cache, and as a collected batch line's answer)."""
    usage = completion.usage
    entry: dict[str, Any] = {
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "usage": [usage.prompt_tokens, usage.completion_tokens],
        "reply": completion.reply,
        "tool_call_id": completion.tool_call_id,
    }
    if completion.token_logprobs is not None:
        entry["logprobs"] = completion.token_logprobs
    return orjson.dumps(entry)


def decode_completion(raw: bytes) -> Completion:
    entry = orjson.loads(raw)
    return Completion(
        text=entry["text"],
        finish_reason=entry["finish_reason"],
        usage=Usage(*entry["usage"]),
        reply=entry["reply"],
        tool_call_id=entry["tool_call_id"],
        token_logprobs=_pairs(entry.get("logprobs")),
    )


def _pairs(value: Any) -> tuple[tuple[str, float], ...] | None:
    if not isinstance(value, list):
        return None
    return tuple((str(token), float(logprob)) for token, logprob in value)
