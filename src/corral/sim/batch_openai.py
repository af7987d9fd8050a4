"""The simulator's OpenAI Files and Batch endpoints.

    POST   /v1/files                multipart ``purpose`` and ``file``: a file object
    GET    /v1/files/{id}           the file object;  GET .../content: its bytes;  DELETE: gone
    POST   /v1/batches              ``{input_file_id, endpoint, completion_window, metadata}``
    GET    /v1/batches              newest first, ``?limit=`` (1–100) and ``?after=`` (an id)
    GET    /v1/batches/{id}         POST /v1/batches/{id}/cancel

The input file is checked when the batch is created, as strictly as the real API checks it while
validating; a file it refuses makes the batch fail (after its validating phase) with one error per
bad line. A line whose body the chat endpoint would refuse is not the file's fault: it is answered
400 in the error file. Output and error files are written when the batch ends, in a shuffled order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from corral.sim.batches import BatchLine, BatchStore, LineOutcome, SimBatch, shuffled
from corral.sim.openai import RequestError, parse_body

__all__ = ["MAX_BYTES", "MAX_LINES", "OpenAIBatches"]

JSON = dict[str, Any]
MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024
#: the most one upload may hold (more than a batch may: the batch check is the one that says why)
_MAX_UPLOAD = 512 * 1024 * 1024
_ENDPOINT = "/v1/chat/completions"
_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
#: errors listed for a refused file: enough to fix it, not a copy of a broken 50,000-line file
_MAX_ERRORS = 100
_MAX_METADATA = 16


@dataclass(slots=True)
class _File:
    id: str
    data: bytes
    filename: str
    purpose: str
    created_at: int

    def to_json(self) -> JSON:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


@dataclass(slots=True)
class _Batch:
    sim: SimBatch
    input_file_id: str
    metadata: dict[str, str] | None
    output_file_id: str | None = None
    error_file_id: str | None = None
    written: bool = False
    #: its prompt tokens, counted against the enqueued-token limit while it runs
    tokens: int = 0


class _Refused(Exception):
    """A request the real API answers with an error; raised anywhere below ``handle``."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


#: the phases in which a batch's tokens count as enqueued
_RUNNING = ("validating", "in_progress", "finalizing")


class OpenAIBatches:
    """The files and batches of one simulator, served over HTTP."""

    def __init__(self, store: BatchStore) -> None:
        self._store = store
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await self._route(request)
        except _Refused as exc:
            return _error(exc.status, exc.message, param=exc.param)

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:  # noqa: PLR0911 - one per route
        match request.method, request.path.strip("/").split("/"):
            case "POST", ["v1", "files"]:
                return _json(200, (await self._upload(request)).to_json())
            case "GET", ["v1", "files", file_id]:
                return _json(200, self._file(file_id).to_json())
            case "DELETE", ["v1", "files", file_id]:
                del self._files[self._file(file_id).id]
                return _json(200, {"id": file_id, "object": "file", "deleted": True})
            case "GET", ["v1", "files", file_id, "content"]:
                return web.Response(body=self._file(file_id).data, content_type="application/octet-stream")
            case "POST", ["v1", "batches"]:
                return _json(200, self._render(await self._create(request)))
            case "GET", ["v1", "batches"]:
                return _json(200, self._list(request))
            case "GET", ["v1", "batches", batch_id]:
                return _json(200, self._render(self._batch(batch_id)))
            case "POST", ["v1", "batches", batch_id, "cancel"]:
                return _json(200, self._render(self._cancel(batch_id)))
        raise _Refused(404, f"Invalid URL ({request.method} {request.path})")

    # --- files -----------------------------------------------------------------------------------

    def _file(self, file_id: str) -> _File:
        file = self._files.get(file_id)
        if file is None:
            raise _Refused(404, f"No such File object: {file_id}", param="id")
        return file

    async def _upload(self, request: web.BaseRequest) -> _File:
        if not request.content_type.startswith("multipart/"):
            raise _Refused(400, "Files are uploaded as multipart/form-data.")
        # The multipart reader streams: request.post() would stop at the server's 1 MiB body limit.
        fields: dict[str, str] = {}
        data: bytes | None = None
        filename = "upload.jsonl"
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader):
                raise _Refused(400, "Nested multipart bodies are not accepted.")
            if part.name == "file":
                data = bytes(await part.read())
                filename = part.filename or filename
            elif part.name:
                fields[part.name] = await part.text()
        purpose = fields.get("purpose")
        if not purpose:
            raise _Refused(400, "Missing required parameter: 'purpose'.", param="purpose")
        if purpose not in _PURPOSES:
            raise _Refused(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose")
        if data is None:
            raise _Refused(400, "Missing required parameter: 'file'.", param="file")
        if len(data) > _MAX_UPLOAD:
            raise _Refused(413, f"The file holds {len(data)} bytes; an upload may hold {_MAX_UPLOAD}.")
        return self._add_file(data, filename, purpose)

    def _add_file(self, data: bytes, filename: str, purpose: str) -> _File:
        file = _File(self._store.new_id("file-"), data, filename, purpose, int(time.time()))
        self._files[file.id] = file
        return file

    # --- batches ---------------------------------------------------------------------------------

    def _batch(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise _Refused(404, f"No batch found with id {batch_id!r}.", param="batch_id")
        return batch

    async def _create(self, request: web.BaseRequest) -> _Batch:
        try:
            params = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise _Refused(400, "The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise _Refused(400, "The request body must be a JSON object.")
        endpoint = params.get("endpoint")
        if endpoint != _ENDPOINT:
            message = f"Invalid value for 'endpoint': {endpoint!r}; corral.sim batches {_ENDPOINT!r} only."
            raise _Refused(400, message, param="endpoint")
        window = params.get("completion_window")
        if window != "24h":
            message = f"Invalid value for 'completion_window': {window!r}; it must be '24h'."
            raise _Refused(400, message, param="completion_window")
        file_id = params.get("input_file_id")
        file = self._files.get(file_id) if isinstance(file_id, str) else None
        if file is None:
            raise _Refused(400, f"Invalid 'input_file_id': {file_id!r}: no such file.", param="input_file_id")
        if file.purpose != "batch":
            message = f"File {file_id} was uploaded with purpose {file.purpose!r}, not 'batch'."
            raise _Refused(400, message, param="input_file_id")
        metadata = params.get("metadata")
        problem = _metadata_problem(metadata)
        if problem:
            raise _Refused(400, problem, param="metadata")
        lines, model, errors = check_file(file.data, endpoint)
        tokens = sum(line.request.prompt_tokens for line in lines if line.request is not None)
        if not errors:
            errors = self._over_token_limit(model, tokens)
            lines = [] if errors else lines
        batch_id = self._store.new_id("batch_")
        sim = self._store.create("openai", batch_id, lines, model=model, errors=errors)
        self._batches[batch_id] = batch = _Batch(sim, file.id, metadata, tokens=0 if errors else tokens)
        return batch

    def _over_token_limit(self, model: str | None, tokens: int) -> list[dict[str, object]]:
        """OpenAI's enqueued-token limit: the prompt tokens of a model's batches still running."""
        limit = self._store.config.batch_token_limit
        if limit is None:
            return []
        now = time.monotonic()
        running = sum(
            batch.tokens
            for batch in self._batches.values()
            if batch.sim.model == model
            and batch.sim.phase(now) in ("validating", "in_progress", "finalizing")
        )
        if running + tokens <= limit:
            return []
        message = (
            f"Enqueued token limit reached for {model} in organization org-corral-sim. Limit: {limit:,} "
            "enqueued tokens. Please try again once some in_progress batches have been completed."
        )
        return [{"code": "token_limit_exceeded", "message": message, "param": None, "line": None}]

    def _list(self, request: web.BaseRequest) -> JSON:
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise _Refused(400, "Invalid 'limit': must be between 1 and 100.", param="limit")
        ids = list(reversed(self._batches))
        after = request.query.get("after")
        if after is not None:
            ids = ids[ids.index(after) + 1 :] if after in self._batches else []
        page = [self._render(self._batches[i]) for i in ids[:limit]]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(ids) > limit,
        }

    def _cancel(self, batch_id: str) -> _Batch:
        batch = self._batch(batch_id)
        now = time.monotonic()
        if not self._store.cancel(batch.sim, now):
            raise _Refused(409, f"Cannot cancel a batch with status {batch.sim.phase(now)!r}.")
        return batch

    def _render(self, batch: _Batch) -> JSON:
        """The batch object as it stands now (writing its files if it has just ended)."""
        sim = batch.sim
        now = time.monotonic()
        status = sim.phase(now)
        outcomes = self._store.settle(sim, now)
        if outcomes is not None and not batch.written:
            self._write_files(batch, outcomes)
        moments = sim.moments(now)
        counts = {"total": len(sim.lines), "completed": 0, "failed": 0}
        if outcomes is not None:
            completed = sum(o.kind == "succeeded" for o in outcomes)
            counts.update(completed=completed, failed=len(outcomes) - completed)
        errors = {"object": "list", "data": sim.errors} if sim.errors else None
        return {
            "id": sim.id,
            "object": "batch",
            "endpoint": _ENDPOINT,
            "model": sim.model,
            "errors": errors,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": int(sim.created_at),
            "in_progress_at": _stamp(moments["in_progress_at"]),
            "expires_at": int(sim.created_at) + 24 * 3600,
            "finalizing_at": _stamp(moments["finalizing_at"]),
            "completed_at": _stamp(moments["completed_at"]),
            "failed_at": _stamp(moments["failed_at"]),
            "expired_at": _stamp(moments["expired_at"]),
            "cancelling_at": _stamp(moments["cancelling_at"]),
            "cancelled_at": _stamp(moments["cancelled_at"]),
            "request_counts": counts,
            "metadata": batch.metadata,
        }

    def _write_files(self, batch: _Batch, outcomes: list[LineOutcome]) -> None:
        rng = self._store.order_rng(batch.sim)
        good = shuffled([o for o in outcomes if o.kind == "succeeded"], rng)
        bad = shuffled([o for o in outcomes if o.kind != "succeeded"], rng)
        batch.written = True
        stem = batch.sim.id
        if good:
            data = b"".join(_result_line(stem, o) for o in good)
            batch.output_file_id = self._add_file(data, f"{stem}_output.jsonl", "batch_output").id
        if bad:
            data = b"".join(_result_line(stem, o) for o in bad)
            batch.error_file_id = self._add_file(data, f"{stem}_error.jsonl", "batch_output").id


class _LineProblem(Exception):
    """Why the file is refused, at one line (or as a whole)."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param

    def to_json(self, line: int | None) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "param": self.param, "line": line}


def check_file(data: bytes, endpoint: str) -> tuple[list[BatchLine], str | None, list[dict[str, object]]]:
    """(lines, the one model, errors) of a batch input file; with errors, the batch fails."""
    rows = [(n, raw) for n, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]
    whole: _LineProblem | None = None
    if len(data) > MAX_BYTES:
        whole = _LineProblem("file_too_large", f"The file holds {len(data)} bytes; at most {MAX_BYTES}.")
    elif not rows:
        whole = _LineProblem("empty_file", "The file holds no requests.")
    elif len(rows) > MAX_LINES:
        message = f"The file holds {len(rows)} requests; a batch takes at most {MAX_LINES}."
        whole = _LineProblem("too_many_requests", message)
    if whole is not None:
        return [], None, [whole.to_json(None)]
    lines: list[BatchLine] = []
    errors: list[dict[str, object]] = []
    seen: set[str] = set()
    model: str | None = None
    for n, raw in rows:
        try:
            line, named = _check_line(raw, endpoint, seen, model)
        except _LineProblem as exc:
            if len(errors) < _MAX_ERRORS:
                errors.append(exc.to_json(n))
            continue
        model = model or named
        lines.append(line)
    return ([], None, errors) if errors else (lines, model, [])


def _check_line(raw: bytes, endpoint: str, seen: set[str], model: str | None) -> tuple[BatchLine, str]:
    """One line and the model it names; :class:`_LineProblem` when it breaks the file's rules."""
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _LineProblem("invalid_json_line", "This line is not valid JSON.") from None
    if not isinstance(entry, dict):
        raise _LineProblem("invalid_json_line", "This line is not a JSON object.")
    custom_id = entry.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise _LineProblem("missing_custom_id", "'custom_id' must be a non-empty string.", "custom_id")
    if custom_id in seen:
        raise _LineProblem("duplicate_custom_id", f"custom_id {custom_id!r} is used twice.", "custom_id")
    seen.add(custom_id)
    if entry.get("method") != "POST":
        raise _LineProblem("invalid_method", "'method' must be 'POST'.", "method")
    if entry.get("url") != endpoint:
        message = f"'url' is {entry.get('url')!r}; every line must name the batch's endpoint {endpoint!r}."
        raise _LineProblem("mismatched_url", message, "url")
    body = entry.get("body")
    if not isinstance(body, dict):
        raise _LineProblem("missing_body", "'body' must be a JSON object.", "body")
    named = body.get("model")
    if not isinstance(named, str) or not named:
        raise _LineProblem("missing_model", "'body.model' must name a model.", "body.model")
    if model is not None and named != model:
        message = f"This line asks for model {named!r}, earlier lines for {model!r}: one model per file."
        raise _LineProblem("mismatched_model", message, "body.model")
    try:
        return BatchLine(custom_id, parse_body(body, named)), named
    except RequestError as exc:  # the line's own request is bad: answered 400 (or 403), not the file's fault
        return BatchLine(custom_id, None, exc.body(), exc.status), named


def _metadata_problem(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > _MAX_METADATA:
        return f"'metadata' must be an object of at most {_MAX_METADATA} pairs."
    for key, value in metadata.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            return f"metadata {key[:64]!r}: keys hold at most 64 characters, values are strings of 512."
    return None


def _result_line(batch_id: str, outcome: LineOutcome) -> bytes:
    suffix = f"{batch_id.removeprefix('batch_')}{outcome.line:06x}"
    if outcome.kind in ("expired", "canceled"):
        code, why = (
            ("batch_expired", "the batch expired before this request was run")
            if outcome.kind == "expired"
            else ("batch_cancelled", "the batch was cancelled before this request was run")
        )
        error = {"code": code, "message": f"This request was not run: {why}."}
        return (
            orjson.dumps(
                {
                    "id": f"batch_req_{suffix}",
                    "custom_id": outcome.custom_id,
                    "response": None,
                    "error": error,
                }
            )
            + b"\n"
        )
    # The body is embedded as sent, without a decode and re-encode; a scripted error body that is
    # not JSON goes in as a string, so that the line stays JSON.
    body = outcome.body if _is_json(outcome.body) else orjson.dumps(outcome.body.decode("utf-8", "replace"))
    head = orjson.dumps({"id": f"batch_req_{suffix}", "custom_id": outcome.custom_id})[:-1]
    response = b'"response":{"status_code":%d,"request_id":"req_%s","body":%s}' % (
        outcome.status,
        suffix.encode(),
        body,
    )
    return head + b"," + response + b',"error":null}\n'


def _is_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


def _stamp(moment: float | None) -> int | None:
    return None if moment is None else int(moment)


def _json(status: int, data: JSON) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> web.Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return _json(status, body)
