"""The Anthropic Messages API, spoken directly over aiohttp (not the SDK: see :mod:`.openai` for why).

corral's conversations are OpenAI-shaped (:data:`~corral.backends.base.Message`); this module
translates them at the boundary, both ways:

    system messages                      → the top-level ``system`` string
    assistant ``tool_calls``             → ``tool_use`` blocks (arguments parsed into ``input``)
    a ``tool`` message (the re-ask)      → a user ``tool_result`` block with ``is_error: true``
    consecutive messages of one role     → one message (the API wants user and assistant to alternate)
    the reply's ``tool_use`` block       → an OpenAI-shaped tool call, so re-asking works unchanged

Structured output is a forced tool call (``tool_choice={"type": "tool", ...}``), or plain text with
the schema in the system prompt (json_object): the API has no JSON response format.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from corral.backends.base import Completion, Message, Mode, Profile, Request
from corral.backends.headers import rate_limits
from corral.backends.openai import _SPARE_FILES, _retry_after, _unfence, raise_open_file_limit
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

__all__ = [
    "ANTHROPIC_PROFILE",
    "API_VERSION",
    "DEFAULT_BASE_URL",
    "KEY_ENV",
    "AnthropicBackend",
    "error_from_type",
    "translate_messages",
]

ANTHROPIC_PROFILE = Profile("anthropic", (Mode.TOOLS, Mode.JSON_OBJECT), batch_api="anthropic")
API_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"
KEY_ENV = "ANTHROPIC_API_KEY"

#: error type → (class, the status the API sends it with)
_ERRORS: dict[str, tuple[type[ProviderError], int]] = {
    "invalid_request_error": (BadRequest, 400),
    "authentication_error": (AuthError, 401),
    "permission_error": (AuthError, 403),
    "not_found_error": (ModelNotFound, 404),
    "request_too_large": (BadRequest, 413),
    "rate_limit_error": (RateLimited, 429),
    "api_error": (ServerError, 500),
    # 529: ServerError.overloaded, so the scheduler cools the whole run down as for a 429
    "overloaded_error": (ServerError, 529),
}
_FINISH = {"max_tokens": "length", "tool_use": "tool_calls", "end_turn": "stop", "stop_sequence": "stop"}


class AnthropicBackend:
    """A pool of connections to the Anthropic Messages API (or a server that speaks it)."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        base_url: str = DEFAULT_BASE_URL,
        key_env: str | None = KEY_ENV,
        profile: Profile = ANTHROPIC_PROFILE,
        concurrency: int = 16,
        timeout: float = 120.0,
    ) -> None:
        # The SDK's base URL is the API root; a URL ending in /v1 (an OpenAI habit) means the same.
        self._base_url = base_url.rstrip("/").removesuffix("/v1")
        self._url = f"{self._base_url}/v1/messages"
        parts = urlsplit(self._base_url)
        port = f":{parts.port}" if parts.port else ""
        self._host = f"{parts.hostname}{port}" if parts.hostname else self._base_url
        # Without credentials a URL may carry (user:pass@host, ?key=...): this names the cache entries.
        self._endpoint = f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
        self._model = model
        self._profile = profile
        self._key_env = key_env
        self._concurrency = max(1, concurrency)
        self._timeout = timeout
        # The key lives only in this header mapping: never in messages, reprs or logs.
        self._headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": API_VERSION,
        }
        if api_key:
            self._headers["x-api-key"] = api_key
        self._session: aiohttp.ClientSession | None = None
        # The tool payload of each spec is built once, not per request (the spec is kept to check
        # that an id was not reused by a new object).
        self._tools: dict[int, tuple[ResponseSpec[Any], dict[str, Any]]] = {}

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def model(self) -> str:
        return self._model

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def base_url(self) -> str:
        """The API root, without ``/v1`` (as the SDK takes it)."""
        return self._base_url

    def __repr__(self) -> str:
        return f"AnthropicBackend(base_url={self._base_url!r}, model={self._model!r})"

    def _open_session(self) -> aiohttp.ClientSession:
        raise_open_file_limit(self._concurrency + _SPARE_FILES)
        connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=self._concurrency)
        timeout = aiohttp.ClientTimeout(total=self._timeout, sock_connect=min(self._timeout, 15.0))
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers=self._headers,
            cookie_jar=aiohttp.DummyCookieJar(),  # the API sets no cookies we need
        )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- requests and replies --------------------------------------------------------------------

    def body(self, request: Request) -> dict[str, Any]:
        """The Messages request params, as sent online and as a Message Batches line's ``params``."""
        if request.mode not in self._profile.modes:
            raise ConfigError(
                f"mode {request.mode.value!r} is not available with Anthropic: use tools or json_object"
            )
        system, messages = translate_messages(request.messages)
        body: dict[str, Any] = {"model": self._model, "max_tokens": request.max_tokens, "messages": messages}
        if system:
            body["system"] = system
        if request.mode is Mode.TOOLS:
            body.update(self._tool_payload(request.spec))
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    def _tool_payload(self, spec: ResponseSpec[Any]) -> dict[str, Any]:
        cached = self._tools.get(id(spec))
        if cached is not None and cached[0] is spec:
            return cached[1]
        tool = {"name": spec.name, "description": spec.description, "input_schema": spec.schema}
        payload = {"tools": [tool], "tool_choice": {"type": "tool", "name": spec.name}}
        self._tools[id(spec)] = (spec, payload)
        return payload

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
        """A Messages API ``message`` object (an online reply, or a batch result's ``message``)."""
        content = data.get("content")
        if not isinstance(content, list):
            raise TransportError(f"reply has no content list: {orjson.dumps(data)[:200]!r}")
        usage = data.get("usage") or {}
        # Cached prompt tokens are still prompt tokens: they count against limits and (mostly) cost.
        prompt = sum(
            int(usage.get(name) or 0)
            for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        tokens = Usage(prompt, int(usage.get("output_tokens") or 0))
        stop = data.get("stop_reason")
        finish = _FINISH.get(stop, stop) if isinstance(stop, str) else None
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                text = orjson.dumps(block.get("input")).decode()
                call = {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": text},
                }
                reply: Message = {"role": "assistant", "content": None, "tool_calls": [call]}
                return Completion(text, finish, tokens, reply, block.get("id"))
        text = "".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
        return Completion(_unfence(text), finish, tokens, {"role": "assistant", "content": text})

    def error_for(self, status: int, raw: bytes, headers: Mapping[str, str]) -> ProviderError:
        """The :mod:`corral.errors` class for an HTTP error answer."""
        error_type, message = _error_fields(raw)
        return error_from_type(
            error_type,
            message,
            status=status,
            headers=headers,
            body=raw[:2000].decode("utf-8", "replace"),
            key_env=self._key_env,
            model=self._model,
            source=self._host,
        )

    # --- transport -------------------------------------------------------------------------------

    async def send(
        self,
        method: str,
        url: str,
        data: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """One HTTP exchange on the pooled session, with transport failures as :class:`TransportError`."""
        session = self._session or self._open_session()
        with self._transport_errors():
            async with session.request(method, url, data=data, headers=headers) as response:
                return response.status, await response.read(), response.headers

    async def lines(self, url: str) -> AsyncIterator[bytes]:
        """The non-empty lines of a GET response body, as they arrive (batch results can be large)."""
        session = self._session or self._open_session()
        # A long download may outlast the session's total timeout; only a stalled read is a failure.
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self._timeout)
        with self._transport_errors():
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

    @contextlib.contextmanager
    def _transport_errors(self) -> Iterator[None]:
        """aiohttp's failures as :class:`TransportError`, naming the host (never the key)."""
        try:
            yield
        except TimeoutError:
            raise TransportError(
                f"no answer from {self._host} within {self._timeout:g} s (timeout)"
            ) from None
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


# --- translation ---------------------------------------------------------------------------------


def translate_messages(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI-shaped messages → (the ``system`` string, Anthropic ``messages``)."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            if text := _text(content):
                system.append(text)
            continue
        blocks: list[dict[str, Any]]
        if role == "tool":
            # corral answers a tool call only to say the call was wrong: a re-ask.
            role = "user"
            result = {"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "is_error": True}
            blocks = [{**result, "content": _text(content)}]
        elif role == "assistant":
            blocks = _text_blocks(content) + [_tool_use(call) for call in message.get("tool_calls") or ()]
        else:
            role = "user"
            blocks = _text_blocks(content)
        if not blocks:
            continue  # the API refuses empty turns, and an empty one carries nothing
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for entry in out:
        blocks = entry["content"]
        if entry["role"] == "user" and len(blocks) > 1:
            # Tool results must open the turn that answers the tool calls.
            blocks.sort(key=lambda block: block["type"] != "tool_result")
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            entry["content"] = blocks[0]["text"]  # the plain form: smaller, and what people write
    return "\n\n".join(system), out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": ...}, ...]
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    text = _text(content)
    return [{"type": "text", "text": text}] if text else []


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            arguments = None
    # The API takes only an object here; a call we could not read was wrong anyway, and the
    # tool_result that follows says so.
    value = arguments if isinstance(arguments, dict) else {}
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": value}


# --- errors --------------------------------------------------------------------------------------


def error_from_type(
    error_type: str,
    message: str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    body: str = "",
    key_env: str | None = KEY_ENV,
    model: str | None = None,
    source: str = "the Anthropic API",
) -> ProviderError:
    """The :mod:`corral.errors` class for an Anthropic error (an HTTP answer, or a batch line's).

    An unknown type falls back on the status; without either, on :class:`ServerError` (retryable).
    """
    known = _ERRORS.get(error_type)
    if known is not None:
        cls, usual = known
        status = usual if status is None else status
    else:
        cls = _class_for_status(status)
    label = f" ({error_type})" if error_type else ""
    where = f"{source} answered HTTP {status}{label}" if status is not None else f"{source}: error{label}"
    fix = _hint(cls, error_type, message, status=status, key_env=key_env, model=model)
    text = f"{where}: {message}{fix}"
    return cls(
        text,
        status=status,
        body=body,
        headers=dict(headers or {}),
        retry_after=_retry_after(headers) if headers else None,
    )


def _class_for_status(status: int | None) -> type[ProviderError]:
    if status is None or status in (408, 409) or status >= 500:
        return ServerError
    if status == 429:
        return RateLimited
    if status in (401, 403):
        return AuthError
    if status == 404:
        return ModelNotFound
    return BadRequest


def _hint(
    cls: type[ProviderError],
    error_type: str,
    message: str,
    *,
    status: int | None,
    key_env: str | None,
    model: str | None,
) -> str:
    """How to fix it, for the errors a person has to fix."""
    if cls is AuthError:
        key = f"${key_env}" if key_env else "the API key"
        if status == 403 or error_type == "permission_error":
            return f" — the key in {key} lacks access to this model or feature"
        return f" — check the key in {key}"
    if cls is ModelNotFound:
        name = f"the model name {model!r}" if model else "the model name"
        return f" — is {name} right (like claude-haiku-4-5), and the base URL the API root?"
    if error_type == "request_too_large" or status == 413:
        return " — the request is larger than the API accepts: shorten the text or the prompt"
    if cls is BadRequest and "tool" in message:
        return " — the server may not support forced tool use; try --mode json_object"
    return ""


def _error_fields(raw: bytes) -> tuple[str, str]:
    """(type, message) of an error body; ("", the text) when it is not Anthropic's shape."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "", raw[:300].decode("utf-8", "replace").strip() or "(empty body)"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("type") or ""), str(error.get("message") or error)
    return "", str(error if error is not None else data)
