"""The OpenAI Chat Completions wire format, spoken directly over aiohttp.

One backend serves OpenAI, vLLM, llama.cpp's server, Ollama and any other compatible endpoint: they
differ only in base URL, key and :class:`Profile`. We do not use the ``openai`` SDK: on this hardware
its stack costs 1.5–3 ms of CPU per request against ~0.13 ms for aiohttp + orjson (DESIGN.md), which
caps a client at a few hundred requests/s — below what a high-tier key or a local vLLM can serve.
"""

from __future__ import annotations

import resource
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from corral.backends.base import Completion, Message, Mode, Profile, Request
from corral.backends.headers import rate_limits
from corral.errors import (
    AuthError,
    BadRequest,
    ConfigError,
    ModelNotFound,
    ProviderError,
    RateLimited,
    ServerError,
    TransportError,
)
from corral.outcome import Usage
from corral.schema import ResponseSpec

__all__ = ["OpenAIBackend", "raise_open_file_limit"]

#: sockets and files corral needs besides one socket per concurrent request
_SPARE_FILES = 64


class OpenAIBackend:
    """A pool of connections to one OpenAI-compatible endpoint."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        profile: Profile,
        api_key: str | None = None,
        key_env: str | None = None,
        concurrency: int = 16,
        timeout: float = 120.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._url = f"{self._base_url}/chat/completions"
        # A base URL may carry credentials (user:pass@host, ?key=...): they stay out of messages and
        # cache keys, which use the host and the endpoint without them.
        parts = urlsplit(self._base_url)
        port = f":{parts.port}" if parts.port else ""
        self._host = f"{parts.hostname}{port}" if parts.hostname else self._base_url
        self._endpoint = f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
        self._model = model
        self._profile = profile
        self._key_env = key_env
        self._concurrency = max(1, concurrency)
        self._timeout = timeout
        # The key lives only in this header mapping: never in messages, reprs or logs.
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._session: aiohttp.ClientSession | None = None
        # The schema payload of each (spec, mode) is built once, not per request.
        self._payloads: dict[tuple[int, Mode], dict[str, Any]] = {}

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def model(self) -> str:
        return self._model

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def set_model(self, model: str) -> None:
        """Name the model after construction (when it was learned from ``GET /models``)."""
        self._model = model

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self._base_url!r}, model={self._model!r})"

    def _open_session(self) -> aiohttp.ClientSession:
        raise_open_file_limit(self._concurrency + _SPARE_FILES)
        connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=self._concurrency)
        timeout = aiohttp.ClientTimeout(total=self._timeout, sock_connect=min(self._timeout, 15.0))
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers=self._headers,
            # APIs do not set cookies we need; the default jar parses every response for them.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def list_models(self) -> list[str]:
        """Model ids the endpoint serves (``GET /models``)."""
        status, raw, headers = await self.send("GET", f"{self._base_url}/models", None)
        if status >= 400:
            raise self.error_for(status, raw, headers)
        data = self.decode(raw)
        return [str(entry.get("id")) for entry in data.get("data", []) if isinstance(entry, dict)]

    def body(self, request: Request) -> dict[str, Any]:
        """The request body, as sent online and as written into a batch file (one builder for both)."""
        body = {
            "model": self._model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            **self._payload(request.spec, request.mode),
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def complete(self, request: Request) -> Completion:
        status, raw, headers = await self.send("POST", self._url, orjson.dumps(self.body(request)))
        if status >= 400:
            error = self.error_for(status, raw, headers)
            error.rate_limits = rate_limits(headers)
            raise error
        completion = self.parse(self.decode(raw))
        completion.rate_limits = rate_limits(headers)
        return completion

    @staticmethod
    def parse(data: dict[str, Any]) -> Completion:
        """A ``chat.completion`` object (an online reply, or the body of a batch result line)."""
        return _completion(data)

    @property
    def base_url(self) -> str:
        return self._base_url

    async def send(
        self,
        method: str,
        url: str,
        data: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """One HTTP exchange on the pooled session, with transport failures as :class:`TransportError`.

        ``headers`` add to (or replace) the session's: a multipart upload names its own content type."""
        session = self._session or self._open_session()
        try:
            async with session.request(method, url, data=data, headers=headers) as response:
                return response.status, await response.read(), response.headers
        except TimeoutError:
            raise TransportError(
                f"no answer from {self._host} within {self._timeout:g} s (timeout)"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or exc
            raise TransportError(f"cannot connect to {self._host}: {reason}", connect=True) from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"connection to {self._host} failed: {type(exc).__name__}: {exc}") from None

    async def lines(self, url: str) -> AsyncIterator[bytes]:
        """The non-empty lines of a GET response body, as they arrive (batch output files can be large)."""
        session = self._session or self._open_session()
        # A long download may outlast the session's total timeout; only a stalled read is a failure.
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self._timeout)
        try:
            async with session.get(url, timeout=timeout) as response:
                if response.status >= 400:
                    raise self.error_for(response.status, await response.read(), response.headers)
                pending = bytearray()
                async for chunk in response.content.iter_any():
                    start = 0
                    while (end := chunk.find(b"\n", start)) >= 0:
                        pending += chunk[start:end]
                        if line := bytes(pending).strip():
                            yield line
                        pending.clear()
                        start = end + 1
                    pending += chunk[start:]
                if line := bytes(pending).strip():
                    yield line
        except TimeoutError:
            raise TransportError(f"{self._host} stopped sending for {self._timeout:g} s (timeout)") from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or exc
            raise TransportError(f"cannot connect to {self._host}: {reason}", connect=True) from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"connection to {self._host} failed: {type(exc).__name__}: {exc}") from None

    def decode(self, raw: bytes) -> dict[str, Any]:
        """A JSON object body, or :class:`TransportError` naming what came instead."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TransportError(f"{self._host} sent a body that is not JSON: {raw[:120]!r}") from None
        if not isinstance(data, dict):
            raise TransportError(f"{self._host} sent JSON that is not an object: {raw[:120]!r}")
        return data

    def _payload(self, spec: ResponseSpec[Any], mode: Mode) -> dict[str, Any]:
        key = (id(spec), mode)
        payload = self._payloads.get(key)
        if payload is None:
            payload = self._payloads[key] = _schema_payload(spec, mode, strict=self._profile.strict)
        return payload

    def error_for(self, status: int, raw: bytes, headers: Mapping[str, str]) -> ProviderError:
        """The :mod:`corral.errors` class for an HTTP error answer (online, or a batch result line)."""
        message, code = _error_message(raw)
        detail = f"{self._host} answered HTTP {status}: {message}"

        def error(cls: type[ProviderError], text: str) -> ProviderError:
            body = raw[:2000].decode("utf-8", "replace")
            return cls(
                text, status=status, body=body, headers=dict(headers), retry_after=_retry_after(headers)
            )

        if status == 429:
            return error(RateLimited, detail)
        if status in (401, 403):
            fix = f"check the key in ${self._key_env}" if self._key_env else "pass a valid API key"
            return error(AuthError, f"{detail} — {fix}")
        if status == 404 or code == "model_not_found":
            return error(
                ModelNotFound,
                f"{detail} — is the model {self._model!r} served there, and does the base URL "
                f"{self._base_url!r} end in /v1? (GET {self._base_url}/models lists what it serves)",
            )
        if status in (408, 409) or status >= 500:
            return error(ServerError, detail)
        hint = ""
        if any(word in message for word in ("response_format", "tool", "json_schema")):
            hint = " — the server may not support this structured-output mode; try --mode json_object"
        return error(BadRequest, detail + hint)


def _schema_payload(spec: ResponseSpec[Any], mode: Mode, *, strict: bool) -> dict[str, Any]:
    schema = spec.strict_schema if strict and spec.strict_schema is not None else spec.schema
    use_strict = strict and spec.strict_schema is not None
    if mode is Mode.TOOLS:
        function: dict[str, Any] = {"name": spec.name, "description": spec.description, "parameters": schema}
        if use_strict:
            function["strict"] = True
        return {
            "tools": [{"type": "function", "function": function}],
            "tool_choice": {"type": "function", "function": {"name": spec.name}},
        }
    if mode is Mode.JSON_SCHEMA:
        json_schema: dict[str, Any] = {"name": spec.name, "schema": schema}
        if use_strict:
            json_schema["strict"] = True
        return {"response_format": {"type": "json_schema", "json_schema": json_schema}}
    if mode is Mode.JSON_OBJECT:
        return {"response_format": {"type": "json_object"}}
    raise ConfigError(
        f"mode {mode.value!r} is not part of the OpenAI wire format: use tools, json_schema or json_object"
    )


def _completion(data: dict[str, Any]) -> Completion:
    try:
        choice = data["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise TransportError(f"reply has no choices[0].message: {orjson.dumps(data)[:200]!r}") from None
    usage = data.get("usage") or {}
    tokens = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    tool_calls = message.get("tool_calls")
    if tool_calls:
        call = tool_calls[0]
        reply: Message = {"role": "assistant", "content": message.get("content"), "tool_calls": [call]}
        arguments = call.get("function", {}).get("arguments") or ""
        if not isinstance(arguments, str):  # some servers send the arguments as an object
            arguments = orjson.dumps(arguments).decode()
        return Completion(arguments, choice.get("finish_reason"), tokens, reply, call.get("id"))
    content = message.get("content") or message.get("refusal") or ""
    reply = {"role": "assistant", "content": content}
    return Completion(_unfence(content), choice.get("finish_reason"), tokens, reply)


def _unfence(text: str) -> str:
    """Models outside a JSON mode often wrap the object in a ```json fence; validate what is inside."""
    stripped = text.strip()
    if not stripped.startswith("```"):
        return text
    body = stripped[3:]
    body = body[body.find("\n") + 1 :] if "\n" in body else body
    return body[: body.rfind("```")] if body.rstrip().endswith("```") else body


def _error_message(raw: bytes) -> tuple[str, str | None]:
    """The human part of an error body. OpenAI, vLLM, llama.cpp and Ollama each shape it differently."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw[:300].decode("utf-8", "replace").strip()
        return text or "(empty body)", None
    error = data.get("error", data.get("detail")) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return str(error.get("message") or error), (str(error["code"]) if error.get("code") else None)
    return str(error), None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date; the scheduler falls back to its own backoff
    return None


def raise_open_file_limit(needed: int) -> None:
    """aiohttp opens a socket per concurrent request; the common soft limit of 1,024 is too low.

    Raise the soft limit toward the hard one; if even that cannot fit, say so before sending anything.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise ConfigError(
            f"concurrency needs about {needed} open files but this process may open only {hard}: "
            f"lower --concurrency below {hard - _SPARE_FILES} or raise the hard limit (ulimit -Hn)"
        )
