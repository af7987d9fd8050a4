"""The OpenAI Chat Completions wire format, spoken directly over aiohttp (through :mod:`.http`).

One backend serves OpenAI, vLLM, llama.cpp's server, Ollama and any other compatible endpoint: they
differ only in base URL, key and :class:`Profile`. We do not use the ``openai`` SDK: on this hardware
its stack costs 1.5–3 ms of CPU per request against ~0.13 ms for aiohttp + orjson (DESIGN.md), which
caps a client at a few hundred requests/s — below what a high-tier key or a local vLLM can serve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from corral.backends._http import (
    HttpBackend,
    HttpClient,
    class_for_status,
    raise_open_file_limit,
    retry_after,
    unfence,
)
from corral.backends.base import Completion, Message, Mode, Profile, Request
from corral.backends.models import TOO_LONG_FIX, ModelTraits, context_window_for, traits_for
from corral.errors import (
    AuthError,
    BadRequest,
    ConfigError,
    InputTooLong,
    ModelNotFound,
    ModeRefused,
    ProviderError,
    ServerError,
    TransportError,
    UnsupportedParameter,
)
from corral.schema import ResponseSpec
from corral.types import Usage

# raise_open_file_limit lives in .http; callers that import it from here still may.
__all__ = ["OpenAIBackend", "ServedModel", "raise_open_file_limit"]

#: words in an error's message that name the structured-output mode ...
_MODE_WORDS = ("response_format", "tool_choice", "tools", "json_schema")
#: ... and words that say it was refused as such (a validation error, not a failure while serving):
#: llama.cpp's server ("response_format type must be one of ... but got: json_schema"),
#: llama-cpp-python's ("Input should be 'text' or 'json_object'", as a 500), vLLM's and others' 400s
_REFUSAL_WORDS = (
    "input should be", "must be one of", "not supported", "unsupported", "literal_error", "validation",
    "but got", "does not support", "not allowed", "unknown", "invalid", "extra inputs", "requires",
)  # fmt: skip
#: OpenAI's codes for a field the model refuses: every request would carry it
_UNSUPPORTED = ("unsupported_parameter", "unsupported_value")
#: how OpenAI and vLLM begin a context-window refusal (vLLM sends no code)
_TOO_LONG = "maximum context length"


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model a server lists, and its context window if the server says (None: it does not)."""

    id: str
    context_window: int | None = None


#: where OpenAI-compatible servers put a model's window in ``GET /models``: vLLM, then gateways
_WINDOW_FIELDS = ("max_model_len", "context_length", "context_window")


def _reported_window(entry: Mapping[str, Any]) -> int | None:
    for name in _WINDOW_FIELDS:
        value = entry.get(name)
        # A server's word is taken only when it is a sane count: it bounds every request of the run.
        if isinstance(value, int) and not isinstance(value, bool) and 256 <= value <= 100_000_000:
            return value
    return None


class OpenAIBackend(HttpBackend):
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
        # The key goes only into the client's header mapping: never into messages, reprs or logs.
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        root = base_url.rstrip("/")
        http = HttpClient(root, headers, concurrency=concurrency, timeout=timeout)
        super().__init__(http, f"{root}/chat/completions", model=model, profile=profile, key_env=key_env)
        # The schema payload of each (spec, mode) is built once, not per request.
        self._payloads: dict[tuple[int, Mode], dict[str, Any]] = {}
        #: which fields this model takes (max_tokens or max_completion_tokens, a temperature)
        self._traits = traits_for(model, profile.traits)

    def set_model(self, model: str) -> None:
        """Name the model after construction (when it was learned from ``GET /models``)."""
        self._model = model
        self._traits = traits_for(model, self._profile.traits)
        if self._context_window is None:
            self._context_window = context_window_for(model)

    async def list_models(self) -> list[str]:
        """Model ids the endpoint serves (``GET /models``)."""
        return [entry.id for entry in await self.served_models()]

    async def served_models(self) -> list[ServedModel]:
        """What the endpoint serves (``GET /models``), with each model's window where it says."""
        status, raw, headers = await self.send("GET", f"{self.base_url}/models", None)
        if status >= 400:
            raise self.error_for(status, raw, headers)
        data = self.decode(raw)
        entries = data.get("data")
        return [
            ServedModel(str(entry.get("id")), _reported_window(entry))
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict)
        ]

    def body(self, request: Request) -> dict[str, Any]:
        """The request body, as sent online and as written into a batch file (one builder for both)."""
        traits = self._traits
        body = {
            "model": self._model,
            "messages": request.messages,
            traits.max_tokens_field: request.max_tokens,
            **self._payload(request.spec, request.mode),
        }
        # A reasoning model refuses any temperature but its default: none is sent, the default holds.
        if request.temperature is not None and traits.temperature:
            body["temperature"] = request.temperature
        if request.reasoning_effort is not None and traits.reasoning_effort:
            body["reasoning_effort"] = request.reasoning_effort
        if request.logprobs and traits.logprobs:
            body["logprobs"] = True
        return body

    @property
    def traits(self) -> ModelTraits:
        """Which request fields this model takes."""
        return self._traits

    @staticmethod
    def parse(data: dict[str, Any]) -> Completion:
        """A ``chat.completion`` object (an online reply, or the body of a batch result line)."""
        return _completion(data)

    def _payload(self, spec: ResponseSpec[Any], mode: Mode) -> dict[str, Any]:
        key = (id(spec), mode)
        payload = self._payloads.get(key)
        if payload is None:
            payload = self._payloads[key] = _schema_payload(spec, mode, strict=self._profile.strict)
        return payload

    def error_for(self, status: int, raw: bytes, headers: Mapping[str, str]) -> ProviderError:
        """The :mod:`corral.errors` class for an HTTP error answer (online, or a batch result line)."""
        message, code = _error_message(raw)
        cls = class_for_status(status)
        # Some servers name a missing model in the body under another status than 404; a rate
        # limit or a refused key still says more.
        if code == "model_not_found" and status not in (401, 403, 429):
            cls = ModelNotFound
        elif code in _UNSUPPORTED and cls is BadRequest:
            cls = UnsupportedParameter
        elif cls is BadRequest and (code == "context_length_exceeded" or _TOO_LONG in message):
            cls = InputTooLong
        elif status in (400, 422, 500) and cls in (BadRequest, ServerError) and _refuses_mode(message):
            cls = ModeRefused
        text = f"{self._http.host} answered HTTP {status}: {message}"
        if cls is AuthError:
            text += f" — check the key in ${self._key_env}" if self._key_env else " — pass a valid API key"
        elif cls is ModelNotFound:
            text += (
                f" — is the model {self._model!r} served there, and does the base URL "
                f"{self._http.endpoint!r} end in /v1? (GET {self._http.endpoint}/models lists what it serves)"
            )
        elif cls is UnsupportedParameter:
            text += (
                f" — every request to {self._model!r} carries it, so the run stops here. corral sends "
                "max_completion_tokens and no temperature to models it knows by name as reasoning "
                "models (o1, o3, o4-mini, gpt-5...); a model served under another name is not "
                "recognised: use the provider's own name for it (from Python, temperature=None drops "
                "the temperature)"
            )
        elif cls is ModeRefused:
            text += " — the server does not take this structured-output mode"
        elif cls is InputTooLong:
            text += TOO_LONG_FIX
        body = raw[:2000].decode("utf-8", "replace")
        return cls(text, status=status, body=body, headers=dict(headers), retry_after=retry_after(headers))


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


def _refuses_mode(message: str) -> bool:
    lower = message.lower()
    return any(word in lower for word in _MODE_WORDS) and any(word in lower for word in _REFUSAL_WORDS)


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
    return Completion(
        unfence(content), choice.get("finish_reason"), tokens, reply, token_logprobs=_token_logprobs(choice)
    )


def _token_logprobs(choice: Mapping[str, Any]) -> tuple[tuple[str, float], ...] | None:
    """``choices[0].logprobs.content`` as (token, logprob) pairs; None when absent or not that shape."""
    logprobs = choice.get("logprobs")
    entries = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(entries, list) or not entries:
        return None
    pairs = []
    for entry in entries:
        token = entry.get("token") if isinstance(entry, dict) else None
        logprob = entry.get("logprob") if isinstance(entry, dict) else None
        if not isinstance(token, str) or not isinstance(logprob, int | float) or isinstance(logprob, bool):
            return None
        pairs.append((token, min(float(logprob), 0.0)))
    return tuple(pairs)


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
