"""The Anthropic Messages API, spoken directly over aiohttp through :mod:`.http` (not the SDK: see
:mod:`.openai` for why).

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

from collections.abc import Mapping
from typing import Any

import orjson

from corral.backends._http import HttpBackend, HttpClient, class_for_status, retry_after, unfence
from corral.backends.base import Completion, Message, Mode, Profile, Request
from corral.backends.models import TOO_LONG_FIX
from corral.errors import (
    AuthError,
    BadRequest,
    ConfigError,
    InputTooLong,
    ModelNotFound,
    ProviderError,
    TransportError,
)
from corral.schema import ResponseSpec
from corral.types import Usage

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

#: error type → the status the API sends it with, whose class (:func:`.http.class_for_status`) it takes
_STATUS: dict[str, int] = {
    "invalid_request_error": 400,  # BadRequest
    "authentication_error": 401,  # AuthError
    "permission_error": 403,  # AuthError
    "not_found_error": 404,  # ModelNotFound
    "request_too_large": 413,  # BadRequest
    "rate_limit_error": 429,  # RateLimited
    "api_error": 500,  # ServerError
    # 529: ServerError.overloaded, so the scheduler cools the whole run down as for a 429
    "overloaded_error": 529,
}
_FINISH = {"max_tokens": "length", "tool_use": "tool_calls", "end_turn": "stop", "stop_sequence": "stop"}


class AnthropicBackend(HttpBackend):
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
        # The key goes only into the client's header mapping: never into messages, reprs or logs.
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": API_VERSION,
        }
        if api_key:
            headers["x-api-key"] = api_key
        # The SDK's base URL is the API root; a URL ending in /v1 (an OpenAI habit) means the same.
        # base_url is the root without /v1, as the SDK takes it.
        root = base_url.rstrip("/").removesuffix("/v1")
        http = HttpClient(root, headers, concurrency=concurrency, timeout=timeout)
        super().__init__(http, f"{root}/v1/messages", model=model, profile=profile, key_env=key_env)
        # The tool payload of each spec is built once, not per request (the spec is kept to check
        # that an id was not reused by a new object).
        self._tools: dict[int, tuple[ResponseSpec[Any], dict[str, Any]]] = {}

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
        return Completion(unfence(text), finish, tokens, {"role": "assistant", "content": text})

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
            source=self._http.host,
        )


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
    usual = _STATUS.get(error_type)
    cls = class_for_status(status if usual is None else usual)
    # The prompt alone over the window, or the prompt and max_tokens together (its two wordings).
    if cls is BadRequest and message.startswith(
        ("prompt is too long", "input length and `max_tokens` exceed")
    ):
        cls = InputTooLong
    if status is None:
        status = usual
    label = f" ({error_type})" if error_type else ""
    where = f"{source} answered HTTP {status}{label}" if status is not None else f"{source}: error{label}"
    fix = (
        TOO_LONG_FIX
        if cls is InputTooLong
        else _hint(cls, error_type, message, status=status, key_env=key_env, model=model)
    )
    text = f"{where}: {message}{fix}"
    return cls(
        text,
        status=status,
        body=body,
        headers=dict(headers or {}),
        retry_after=retry_after(headers) if headers else None,
    )


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
