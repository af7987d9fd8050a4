"""The response cache: an answered request is never paid for twice.

The key is a hash of everything that decides the answer — where the model runs, its name, the mode,
the schema, every message, ``max_tokens`` and ``temperature`` — and of nothing else: not the API key,
not the item id, not the concurrency. Only successful answers are cached (an invalid one too: it is
what the model said, and replaying it replays the re-ask that followed). Entries live in the run
store's ``cache`` table, shared by every job in that store, so re-running an identical job, or the
same job after ``--fresh``, sends nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from corral.backends.base import Backend, Completion, Mode, Request
from corral.store import RunStore
from corral.types import Usage

__all__ = ["ResponseCache", "decode_completion", "encode_completion"]

_VERSION = 2  # bump when the key's recipe or the entry's shape changes: old entries then just miss

# The part of a key that a run's requests share (where, which model, which schema, which mode) is
# hashed once; each request copies that state and adds its messages. Halves the key's cost.
_PREFIXES: dict[tuple[str, str, str, Mode, str], Any] = {}


class ResponseCache:
    """Lookups and (batched) inserts against a :class:`~corral.store.RunStore`'s cache table.

    ``read=False`` skips lookups but still records answers (``--retry-errors``: re-asking the model
    must not replay the answers that failed).
    """

    def __init__(self, store: RunStore, *, read: bool = True, scope: str = "") -> None:
        self.store = store
        self.read = read
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
        recipe_rest = [request.messages, request.max_tokens, request.temperature]
        digest.update(orjson.dumps(recipe_rest, option=orjson.OPT_SORT_KEYS))
        return bytes(digest.digest())

    def get(self, key: bytes) -> Completion | None:
        if not self.read:
            return None
        raw = self.store.cached(key)
        if raw is None:
            return None
        return decode_completion(raw)

    def put(self, key: bytes, model: str, completion: Completion) -> None:
        self.store.add_cache(key, model, encode_completion(completion))


def encode_completion(completion: Completion) -> bytes:
    """An answer as stored (in the cache, and as a collected batch line's answer)."""
    usage = completion.usage
    entry = {
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "usage": [usage.prompt_tokens, usage.completion_tokens],
        "reply": completion.reply,
        "tool_call_id": completion.tool_call_id,
    }
    return orjson.dumps(entry)


def decode_completion(raw: bytes) -> Completion:
    entry = orjson.loads(raw)
    return Completion(
        text=entry["text"],
        finish_reason=entry["finish_reason"],
        usage=Usage(*entry["usage"]),
        reply=entry["reply"],
        tool_call_id=entry["tool_call_id"],
    )
