"""OpenAI Batch: a JSONL file uploaded with ``purpose=batch``, a batch over it, output and error files.

Spoken over the online :class:`~corral.backends.openai.OpenAIBackend`'s session, URL and key, so
anything that serves ``/v1/files`` and ``/v1/batches`` the OpenAI way works (OpenAI itself, the
simulator). Each batch carries its label in ``metadata`` so that :meth:`OpenAIBatchAPI.find` can
recover a batch whose creation answer was lost.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from corral.backends.batch._base import BatchLimits, LineResult, RemoteBatch
from corral.backends.openai import OpenAIBackend
from corral.errors import (
    BadRequest,
    BatchCanceled,
    BatchExpired,
    ConfigError,
    ModelNotFound,
    ProviderError,
    RateLimited,
    ServerError,
    TransportError,
)

__all__ = ["OpenAIBatchAPI"]

_LIMITS = BatchLimits(50_000, 200 * 1024 * 1024, one_model=True)
_ENDPOINT = "/v1/chat/completions"
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: the metadata key that holds corral's label
LABEL_KEY = "corral_batch"
#: pages of 100 batches :meth:`OpenAIBatchAPI.find` reads: a lost batch is among the newest
_FIND_PAGES = 5
#: error codes of a batch line that was never run, and others whose class is plain from the code
_LINE_ERRORS: dict[str, type[ProviderError]] = {
    "batch_expired": BatchExpired,
    "batch_cancelled": BatchCanceled,
    "batch_canceled": BatchCanceled,
    "model_not_found": ModelNotFound,
    "rate_limit_exceeded": RateLimited,
    "token_limit_exceeded": RateLimited,
    "invalid_request": BadRequest,
    "invalid_request_error": BadRequest,
    "invalid_json_line": BadRequest,
    "context_length_exceeded": BadRequest,
    "server_error": ServerError,
    "internal_error": ServerError,
    "timeout": ServerError,
}


class OpenAIBatchAPI:
    """The :class:`~corral.backends.batch._base.BatchAPI` of an OpenAI-compatible server."""

    def __init__(self, backend: OpenAIBackend) -> None:
        self._backend = backend
        self._base = backend.base_url

    def __repr__(self) -> str:
        return f"OpenAIBatchAPI({self._backend!r})"

    @property
    def limits(self) -> BatchLimits:
        return _LIMITS

    @property
    def labels_batches(self) -> bool:
        return True

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        """One JSONL line, newline included: a file is the lines joined as they are."""
        entry = {"custom_id": custom_id, "method": "POST", "url": _ENDPOINT, "body": body}
        return orjson.dumps(entry) + b"\n"

    async def submit(self, lines: list[bytes], *, label: str) -> RemoteBatch:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", label)[:100] + ".jsonl"
        form.add_field("file", b"".join(lines), filename=filename, content_type="application/jsonl")
        payload = form()
        # The session's default Content-Type is JSON: the multipart payload names its own (boundary).
        headers = {"Content-Type": payload.content_type}
        status, raw, answer_headers = await self._backend.send(
            "POST", f"{self._base}/files", payload, headers=headers
        )
        if status == 404:
            raise ConfigError(
                f"{self._backend.endpoint} has no OpenAI Batch API (POST /files answered 404): run "
                "without --batch, or use a server that offers /v1/files and /v1/batches (OpenAI does; "
                "vLLM, llama.cpp and Ollama do not)"
            )
        file_id = str(self._answer(status, raw, answer_headers, "the upload")["id"])
        params = {
            "input_file_id": file_id,
            "endpoint": _ENDPOINT,
            "completion_window": "24h",
            "metadata": {LABEL_KEY: label},
        }
        try:
            return _remote(await self._call("POST", "/batches", orjson.dumps(params)))
        except ProviderError as exc:
            if not isinstance(exc, TransportError):
                # Refused, so no batch holds the file: do not leave it in the account's storage
                # (best effort: the refusal is what the caller must see).
                with contextlib.suppress(ProviderError):
                    await self._backend.send("DELETE", f"{self._base}/files/{_q(file_id)}")
            raise

    async def find(
        self, label: str, *, created: float = 0.0, requests: int = 0, known: frozenset[str] = frozenset()
    ) -> RemoteBatch | None:
        """The newest batch whose metadata carries ``label``, among the latest few hundred (the label
        is exact: the creation time and size are not needed)."""
        after: str | None = None
        for _ in range(_FIND_PAGES):
            query = "?limit=100" + (f"&after={_q(after)}" if after else "")
            page = await self._call("GET", f"/batches{query}")
            data = [entry for entry in page.get("data") or () if isinstance(entry, dict)]
            for entry in data:
                if (entry.get("metadata") or {}).get(LABEL_KEY) == label:
                    return _remote(entry)
            if not page.get("has_more") or not data:
                return None
            after = str(page.get("last_id") or data[-1].get("id"))
        return None

    async def status(self, batch_id: str) -> RemoteBatch:
        return _remote(await self._call("GET", f"/batches/{_q(batch_id)}"))

    async def cancel(self, batch_id: str) -> RemoteBatch:
        return _remote(await self._call("POST", f"/batches/{_q(batch_id)}/cancel"))

    async def results(self, batch: RemoteBatch) -> AsyncIterator[LineResult]:
        """The output file's lines, then the error file's (each in the provider's order)."""
        for key in ("output_file_id", "error_file_id"):
            file_id = batch.raw.get(key)
            if not file_id:
                continue
            async for raw in self._backend.lines(f"{self._base}/files/{_q(str(file_id))}/content"):
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
        response = entry.get("response")
        if isinstance(response, dict):
            status = response.get("status_code")
            body = response.get("body")
            if isinstance(status, int) and status < 400 and isinstance(body, dict):
                try:
                    return LineResult(custom_id, completion=self._backend.parse(body))
                except ProviderError as exc:  # one odd body fails its line, not the whole file
                    return LineResult(custom_id, error=exc)
            body_raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
            code = status if isinstance(status, int) else 500
            return LineResult(custom_id, error=self._backend.error_for(code, body_raw, {}))
        error = entry.get("error")
        if isinstance(error, dict):
            return LineResult(custom_id, error=_line_error(error))
        return LineResult(
            custom_id, error=ServerError(f"batch line {custom_id}: neither a response nor an error")
        )

    async def _call(self, method: str, path: str, data: bytes | None = None) -> dict[str, Any]:
        status, raw, headers = await self._backend.send(method, f"{self._base}{path}", data)
        return self._answer(status, raw, headers, f"{method} {path}")

    def _answer(self, status: int, raw: bytes, headers: Mapping[str, str], what: str) -> dict[str, Any]:
        if status >= 400:
            raise not_found(status, raw, headers, what) or self._backend.error_for(status, raw, headers)
        return self._backend.decode(raw)


def _q(part: str) -> str:
    """An id as one path segment (or query value): nothing in it may end the segment."""
    return quote(part, safe="")


def not_found(status: int, raw: bytes, headers: Mapping[str, str], what: str) -> ProviderError | None:
    """A 404 of a batch endpoint: the batch (or file) is unknown there, which is not a model problem.

    The online translation reads a 404 as a wrong model name, which would stop the run with advice
    that does not apply; here it names what was not found instead."""
    if status != 404:
        return None
    text = raw[:300].decode("utf-8", "replace").strip()
    return BadRequest(
        f"{what} answered HTTP 404 — the server does not know it (made with another key or base URL?): "
        f"{text}",
        status=status,
        body=raw[:2000].decode("utf-8", "replace"),
        headers=dict(headers),
    )


def _remote(data: dict[str, Any]) -> RemoteBatch:
    status = str(data.get("status") or "")
    counts = {
        str(name): value
        for name, value in (data.get("request_counts") or {}).items()
        if isinstance(value, int)
    }
    problems = (data.get("errors") or {}).get("data") or []
    return RemoteBatch(
        id=str(data.get("id")),
        status=status,
        done=status in _TERMINAL,
        counts=counts,
        errors=[_describe(problem) for problem in problems if isinstance(problem, dict)],
        raw=data,
    )


def _describe(problem: dict[str, Any]) -> str:
    where = f"line {problem['line']}: " if problem.get("line") is not None else ""
    code = f" ({problem['code']})" if problem.get("code") else ""
    return f"{where}{problem.get('message') or 'invalid'}{code}"


def _line_error(error: dict[str, Any]) -> ProviderError:
    code = str(error.get("code") or "")
    message = str(error.get("message") or code or "no reason given")
    # An unknown code: a re-ask may well succeed, so it is retried (ServerError), never dropped.
    cls = _LINE_ERRORS.get(code, ServerError)
    return cls(
        f"batch line failed{f' ({code})' if code else ''}: {message}", body=orjson.dumps(error).decode()
    )
