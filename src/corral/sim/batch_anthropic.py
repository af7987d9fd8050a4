"""The simulator's Anthropic Message Batches endpoints.

    POST   /v1/messages/batches               ``{requests: [{custom_id, params}]}``
    GET    /v1/messages/batches               newest first: ``?limit=``, ``?after_id=``, ``?before_id=``
    GET    /v1/messages/batches/{id}          DELETE: gone (once ended)
    POST   /v1/messages/batches/{id}/cancel   GET /v1/messages/batches/{id}/results (once ended)

Unlike an OpenAI file, the whole batch is checked when it is created, and a bad request refuses it
with a 400 naming the first problem. Every request needs the ``anthropic-version`` header.
"""

from __future__ import annotations

import datetime
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from corral.sim.anthropic import messages_error_body, parse_messages_body
from corral.sim.batches import WINDOW_S, BatchLine, BatchStore, LineOutcome, SimBatch, shuffled
from corral.sim.openai import RequestError

__all__ = ["MAX_BYTES", "MAX_REQUESTS", "AnthropicBatches"]

JSON = dict[str, Any]
MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024
_CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PATH = "/v1/messages/batches"
_STATUS = {"cancelling": "canceling", "completed": "ended", "expired": "ended", "cancelled": "ended"}


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(slots=True)
class _Batch:
    sim: SimBatch
    #: the JSONL results, written when the batch ends
    results: bytes | None = None


class AnthropicBatches:
    """The message batches of one simulator, served over HTTP."""

    def __init__(self, store: BatchStore, default_model: str) -> None:
        self._store = store
        self._model = default_model
        self._batches: dict[str, _Batch] = {}

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            if not request.headers.get("anthropic-version"):
                raise _Refused(400, "anthropic-version: header is required")
            return await self._route(request)
        except _Refused as exc:
            return _response(exc.status, messages_error_body(exc.status, exc.message))

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        match request.method, request.path.removeprefix(_PATH).strip("/").split("/"):
            case "POST", [""]:
                return _json(self._render(await self._create(request), request))
            case "GET", [""]:
                return _json(self._list(request))
            case "GET", [batch_id]:
                return _json(self._render(self._batch(batch_id), request))
            case "DELETE", [batch_id]:
                self._delete(batch_id)
                return _json({"id": batch_id, "type": "message_batch_deleted"})
            case "POST", [batch_id, "cancel"]:
                return _json(self._render(self._cancel(batch_id), request))
            case "GET", [batch_id, "results"]:
                return _response(200, self._results(batch_id), "application/binary")
        raise _Refused(404, f"Not found: {request.method} {request.path}")

    def _batch(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise _Refused(404, f"message batch {batch_id!r} not found")
        return batch

    async def _create(self, request: web.BaseRequest) -> _Batch:
        # Read past the server's 1 MiB default body limit, up to the API's own.
        raw = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            raw += chunk
            if len(raw) > MAX_BYTES:
                raise _Refused(413, f"a batch body may hold at most {MAX_BYTES} bytes")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Refused(400, "the request body is not valid JSON") from None
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not 1 <= len(requests) <= MAX_REQUESTS:
            raise _Refused(400, f"requests: a list of 1 to {MAX_REQUESTS} requests is required")
        lines: list[BatchLine] = []
        seen: set[str] = set()
        for i, entry in enumerate(requests):
            custom_id = entry.get("custom_id") if isinstance(entry, dict) else None
            params = entry.get("params") if isinstance(entry, dict) else None
            if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
                message = f"requests.{i}.custom_id: 1 to 64 characters of letters, digits, _ and -"
                raise _Refused(400, message)
            if custom_id in seen:
                raise _Refused(400, f"requests.{i}.custom_id: {custom_id!r} is used more than once")
            seen.add(custom_id)
            if not isinstance(params, dict):
                raise _Refused(400, f"requests.{i}.params: Field required")
            try:
                lines.append(BatchLine(custom_id, parse_messages_body(params, self._model)))
            except RequestError as exc:
                raise _Refused(400, f"requests.{i}.params.{exc.message}") from None
        batch_id = self._store.new_id("msgbatch_")
        self._batches[batch_id] = batch = _Batch(self._store.create("anthropic", batch_id, lines))
        return batch

    def _list(self, request: web.BaseRequest) -> JSON:
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            raise _Refused(400, "limit: Input should be between 1 and 1000")
        ids = list(reversed(self._batches))
        after, before = request.query.get("after_id"), request.query.get("before_id")
        if after is not None:
            ids = ids[ids.index(after) + 1 :] if after in self._batches else []
            page, has_more = ids[:limit], len(ids) > limit
        elif before is not None:
            ids = ids[: ids.index(before)] if before in self._batches else []
            page, has_more = ids[-limit:], len(ids) > limit
        else:
            page, has_more = ids[:limit], len(ids) > limit
        data = [self._render(self._batches[i], request) for i in page]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }

    def _cancel(self, batch_id: str) -> _Batch:
        batch = self._batch(batch_id)
        if not self._store.cancel(batch.sim, time.monotonic()):
            raise _Refused(400, f"message batch {batch_id!r} has ended: it cannot be canceled")
        return batch

    def _delete(self, batch_id: str) -> None:
        batch = self._batch(batch_id)
        if self._settle(batch) is None:
            raise _Refused(400, f"message batch {batch_id!r} is still processing: cancel it first")
        del self._batches[batch_id]

    def _results(self, batch_id: str) -> bytes:
        results = self._settle(self._batch(batch_id))
        if results is None:
            raise _Refused(404, f"message batch {batch_id!r} has no results until it has ended")
        return results

    def _settle(self, batch: _Batch) -> bytes | None:
        """The batch's results once it has ended (written on the first call), else None."""
        if batch.results is None:
            outcomes = self._store.settle(batch.sim, time.monotonic())
            if outcomes is not None:
                order = shuffled(outcomes, self._store.order_rng(batch.sim))
                batch.results = b"".join(_result_line(o) for o in order)
        return batch.results

    def _render(self, batch: _Batch, request: web.BaseRequest) -> JSON:
        sim = batch.sim
        self._settle(batch)
        now = time.monotonic()
        moments = sim.moments(now)
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if sim.outcomes is None:
            counts["processing"] = len(sim.lines)
        else:
            for outcome in sim.outcomes:
                counts[outcome.kind] += 1
        status = _STATUS.get(sim.phase(now), "in_progress")
        origin = f"{request.scheme}://{request.host}"
        return {
            "id": sim.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "ended_at": _rfc3339(moments["ended_at"]),
            "created_at": _rfc3339(sim.created_at),
            "expires_at": _rfc3339(sim.created_at + WINDOW_S),
            "cancel_initiated_at": _rfc3339(moments["cancelling_at"]),
            "archived_at": None,
            "results_url": f"{origin}{_PATH}/{sim.id}/results" if batch.results is not None else None,
        }


def _result_line(outcome: LineOutcome) -> bytes:
    head = orjson.dumps({"custom_id": outcome.custom_id})[:-1]
    if outcome.kind in ("expired", "canceled"):
        return head + b',"result":{"type":"%s"}}\n' % outcome.kind.encode()
    body = outcome.body
    if outcome.kind == "errored":
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:  # a scripted body that is not JSON: carried as the message
            body = messages_error_body(outcome.status, body.decode("utf-8", "replace"))
        return head + b',"result":{"type":"errored","error":%s}}\n' % body
    return head + b',"result":{"type":"succeeded","message":%s}}\n' % body


def _rfc3339(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat().replace("+00:00", "Z")


def _json(data: JSON) -> web.Response:
    return _response(200, orjson.dumps(data))


def _response(status: int, body: bytes, content_type: str = "application/json") -> web.Response:
    return web.Response(body=body, status=status, content_type=content_type)
