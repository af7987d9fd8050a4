"""Anthropic Message Batches: one JSON body of ``{custom_id, params}`` requests, results as JSONL.

Spoken over the online :class:`~corral.backends.anthropic.AnthropicBackend`'s session, URL and key
(its ``anthropic-version`` header included). Results are read from the batch's ``results_url``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from corral.backends.anthropic import AnthropicBackend, error_from_type
from corral.backends.batch._base import BatchLimits, LineResult, RemoteBatch
from corral.backends.batch.openai import _q, not_found
from corral.errors import (
    BatchCanceled,
    BatchExpired,
    ConfigError,
    ProviderError,
    ServerError,
    TransportError,
)

__all__ = ["AnthropicBatchAPI"]

_LIMITS = BatchLimits(100_000, 256 * 1024 * 1024)
_PATH = "/v1/messages/batches"
#: pages of the batch list searched for a batch whose creation answer was lost
_FIND_PAGES = 5
#: how far the provider's clock may be behind ours when it stamps a batch's creation
_SKEW_S = 300.0
#: how long after it was recorded a batch may have been created (a large upload takes a while)
_SUBMIT_S = 3600.0


class AnthropicBatchAPI:
    """The :class:`~corral.backends.batch.BatchAPI` of the Anthropic API (or a server that speaks it)."""

    def __init__(self, backend: AnthropicBackend) -> None:
        self._backend = backend
        self._base = backend.base_url

    def __repr__(self) -> str:
        return f"AnthropicBatchAPI({self._backend!r})"

    @property
    def limits(self) -> BatchLimits:
        return _LIMITS

    @property
    def labels_batches(self) -> bool:
        return False

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        """One ``{custom_id, params}`` request; :meth:`submit` joins them into the body unparsed."""
        return orjson.dumps({"custom_id": custom_id, "params": body})

    async def submit(self, lines: list[bytes], *, label: str) -> RemoteBatch:
        """Create the batch. ``label`` is not sent: Anthropic batches carry no metadata."""
        body = b'{"requests":[' + b",".join(lines) + b"]}"
        return _remote(await self._call("POST", _PATH, body))

    async def find(
        self, label: str, *, created: float = 0.0, requests: int = 0, known: frozenset[str] = frozenset()
    ) -> RemoteBatch | None:
        """The one batch that can be ours: an Anthropic batch keeps no metadata, so a batch whose
        creation answer was lost is found by what it is: created from ``created`` on (less some
        clock skew, and within an hour of it), holding exactly ``requests`` requests, and not a
        batch the store already knows. Several that fit, or none: None (the caller says so)."""
        if requests <= 0:
            return None
        fits: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(_FIND_PAGES):
            query = "?limit=100" + (f"&after_id={_q(after)}" if after else "")
            page = await self._call("GET", f"{_PATH}{query}")
            data = [entry for entry in page.get("data") or () if isinstance(entry, dict)]
            older = False
            for entry in data:  # newest first
                at = _moment(entry.get("created_at"))
                if at is None:
                    continue
                if at < created - _SKEW_S:
                    older = True  # the rest of the list is older still
                    break
                if at <= created + _SUBMIT_S and entry.get("id") not in known and _total(entry) == requests:
                    fits.append(entry)
            if older or not page.get("has_more") or not data:
                break
            after = str(page.get("last_id") or data[-1].get("id"))
        return _remote(fits[0]) if len(fits) == 1 else None

    async def status(self, batch_id: str) -> RemoteBatch:
        return _remote(await self._call("GET", f"{_PATH}/{_q(batch_id)}"))

    async def cancel(self, batch_id: str) -> RemoteBatch:
        return _remote(await self._call("POST", f"{_PATH}/{_q(batch_id)}/cancel"))

    async def results(self, batch: RemoteBatch) -> AsyncIterator[LineResult]:
        """The lines of ``results_url`` (set once the batch has ended; before that, none)."""
        url = batch.raw.get("results_url")
        if not isinstance(url, str) or not url:
            return
        if _origin(url) != _origin(self._base):
            # The session sends the API key with every request: never to a host we were not given.
            raise ConfigError(
                f"batch {batch.id}'s results_url is on another host than {self._backend.endpoint}; corral "
                "does not send the key there: set the base URL to the host the server names"
            )
        async for raw in self._backend.lines(url):
            yield self._line_result(raw)

    # --- translation -----------------------------------------------------------------------------

    def _line_result(self, raw: bytes) -> LineResult:
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TransportError(f"a batch result line is not JSON: {raw[:120]!r}") from None
        custom_id = entry.get("custom_id") if isinstance(entry, dict) else None
        if not isinstance(custom_id, str):
            raise TransportError(f"a batch result line has no custom_id: {raw[:120]!r}")
        result = entry.get("result")
        result = result if isinstance(result, dict) else {}
        kind = result.get("type")
        if kind == "succeeded":
            message = result.get("message")
            try:
                if not isinstance(message, dict):
                    raise TransportError(f"batch line {custom_id} succeeded without a message")
                return LineResult(custom_id, completion=self._backend.parse(message))
            except ProviderError as exc:  # one odd line fails itself, not the whole file
                return LineResult(custom_id, error=exc)
        if kind == "errored":
            return LineResult(custom_id, error=self._line_error(custom_id, result.get("error")))
        if kind == "expired":
            return LineResult(
                custom_id, error=BatchExpired(f"batch line {custom_id}: the batch expired first")
            )
        if kind == "canceled":
            return LineResult(
                custom_id, error=BatchCanceled(f"batch line {custom_id}: the batch was canceled")
            )
        return LineResult(custom_id, error=ServerError(f"batch line {custom_id}: unknown result {kind!r}"))

    def _line_error(self, custom_id: str, error: Any) -> ProviderError:
        # The errored result holds the error response itself: {"type": "error", "error": {...}}.
        inner = error.get("error") if isinstance(error, dict) and error.get("type") == "error" else error
        if not isinstance(inner, dict):
            inner = {}
        return error_from_type(
            str(inner.get("type") or ""),
            str(inner.get("message") or "no reason given"),
            body=orjson.dumps(error).decode()[:2000],
            model=self._backend.model,
            source=f"batch line {custom_id}",
        )

    async def _call(self, method: str, path: str, data: bytes | None = None) -> dict[str, Any]:
        status, raw, headers = await self._backend.send(method, f"{self._base}{path}", data)
        return self._answer(status, raw, headers, f"{method} {path}")

    def _answer(self, status: int, raw: bytes, headers: Mapping[str, str], what: str) -> dict[str, Any]:
        if status >= 400:
            raise not_found(status, raw, headers, what) or self._backend.error_for(status, raw, headers)
        return self._backend.decode(raw)


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def _moment(stamp: Any) -> float | None:
    """An RFC 3339 time (``2026-12-06T19:15:00.123Z``) as seconds since the epoch."""
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _total(entry: dict[str, Any]) -> int:
    counts = entry.get("request_counts")
    if not isinstance(counts, dict):
        return -1
    return sum(value for value in counts.values() if isinstance(value, int))


def _remote(data: dict[str, Any]) -> RemoteBatch:
    status = str(data.get("processing_status") or "")
    counts = {
        str(name): value
        for name, value in (data.get("request_counts") or {}).items()
        if isinstance(value, int)
    }
    return RemoteBatch(id=str(data.get("id")), status=status, done=status == "ended", counts=counts, raw=data)
