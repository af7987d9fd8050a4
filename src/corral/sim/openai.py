"""The OpenAI Chat Completions wire format, as far as the simulator needs it: read a request, write a reply.

Replies are full ``chat.completion`` objects (ids, ``usage`` with details, ``system_fingerprint``,
``logprobs``, ``refusal``) so that the official SDK parses them into its types and instructor works
against them unchanged. Token counts are the usual rough estimate, four characters per token; a
reply with logprobs counts (and cuts at ``max_tokens``) the tokens its logprobs list.

``logprobs``/``top_logprobs`` are taken as OpenAI takes them: ``top_logprobs`` 0-20 and only with
``logprobs: true``; o-series and gpt-5 models answer 403 "You are not allowed to request logprobs
from this model"; gpt-5.N models refuse the parameter (400 ``unsupported_parameter``) unless
``reasoning_effort`` is "none", and then list at most 5 alternatives. The logprobs themselves are
:mod:`corral.sim.logprobs`'s; a tool call's arguments get none (``{"content": null, "refusal": null}``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from corral.sim.answers import schema_key, schema_problem

__all__ = [
    "RequestError",
    "SimMode",
    "SimRequest",
    "chat_completion",
    "error_body",
    "estimate_tokens",
    "parse_body",
    "parse_request",
]

JSON = dict[str, Any]
SimMode = Literal["tools", "json_schema", "json_object", "text"]

_SCHEMA_SCAN_CACHE: dict[str, JSON | None] = {}
_NOT_SCANNED: Any = object()
_SCAN_CACHE_SIZE = 1024
_MAX_SCAN_ATTEMPTS = 64  # braces tried per message: a long prompt full of code must not cost much
_DECODER = json.JSONDecoder()


class RequestError(Exception):
    """A request the real API would reject (with 400 unless ``status`` says otherwise); the message
    follows the provider's wording."""

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status

    def body(self) -> bytes:
        """OpenAI's error body for it: its code as it is, null included."""
        error = {
            "message": self.message,
            "type": "invalid_request_error",
            "param": self.param,
            "code": self.code,
        }
        return orjson.dumps({"error": error})


@dataclass(slots=True)
class SimRequest:
    """One parsed ``POST /v1/chat/completions`` body."""

    body: JSON
    model: str
    mode: SimMode
    #: the JSON Schema the answer must satisfy (None: plain text, or json_object without one)
    schema: JSON | None
    #: the schema's canonical JSON (sorted keys): the key of the compiled-filler cache
    schema_key: bytes | None
    #: the function to call in tools mode
    tool_name: str | None
    #: tool_choice named the function; OpenAI then reports finish_reason "stop", not "tool_calls"
    forced_tool: bool
    #: the text the answer is read from: the first user message (re-asks append after it)
    user_text: str
    prompt_tokens: int
    max_tokens: int | None
    #: which API's shapes the reply and errors take (the same answers and faults serve both)
    wire: Literal["openai", "anthropic"] = "openai"
    #: ``logprobs: true``: the reply carries ``choices[0].logprobs`` (:mod:`corral.sim.logprobs`)
    logprobs: bool = False
    #: how many most likely tokens each logprob entry lists (``top_logprobs``, 0-20)
    top_logprobs: int = 0
    #: the sampling temperature asked for (OpenAI's default is 1; corral sends 0 unless sampling)
    temperature: float = 1.0


def estimate_tokens(chars: int) -> int:
    return max(1, (chars + 3) // 4)


def parse_request(raw: bytes, default_model: str) -> SimRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestError(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
            "using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        ) from None
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    return parse_body(body, default_model)


def parse_body(body: JSON, default_model: str) -> SimRequest:
    """A chat-completions request given as an object (an online body, or a batch line's ``body``)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("[] is too short - 'messages'", param="messages")
    if body.get("stream"):
        raise RequestError("corral.sim does not stream: send stream=false", param="stream")
    model = body.get("model") or default_model
    if not isinstance(model, str):
        raise RequestError("model must be a string", param="model")

    chars = 0
    user_text: str | None = None
    for message in messages:
        if not isinstance(message, dict):
            raise RequestError("each message must be an object", param="messages")
        content = message.get("content")
        if content.__class__ is not str:
            content = _content_text(content)
        chars += len(content) + 4  # role and framing tokens
        if user_text is None and message.get("role") == "user":
            user_text = content
        for call in message.get("tool_calls") or ():
            chars += len(str(call.get("function", {}).get("arguments", "")))

    _refuse_what_the_model_does_not_take(body, model)
    logprobs, top_logprobs = _logprob_options(body, model)
    mode, schema, tool_name, forced, extra_chars = _structure(body, messages)
    key = schema_key(schema) if schema is not None else None
    if schema is not None and mode in ("tools", "json_schema"):
        _refuse_a_schema_without_an_answer(body, mode, tool_name, key, schema)
    elif key is None:
        schema = None  # one in the prompt too deep to read: answered as a prompt without one
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise RequestError("max_tokens must be a positive integer", param="max_tokens")
    return SimRequest(
        body=body,
        model=model,
        mode=mode,
        schema=schema,
        schema_key=key,
        tool_name=tool_name,
        forced_tool=forced,
        user_text=user_text or "",
        prompt_tokens=estimate_tokens(chars + extra_chars + (len(key) if key else 0)),
        max_tokens=max_tokens,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        temperature=_temperature(body),
    )


def _temperature(body: JSON) -> float:
    value = body.get("temperature", 1)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 1.0


#: OpenAI's reasoning models (o1, o3-mini, o4-mini, gpt-5, gpt-5-mini, ...), by name
_REASONING = re.compile(r"^(?:o\d|gpt-5)(?:$|[-.:_])")


def _refuse_what_the_model_does_not_take(body: JSON, model: str) -> None:
    """Refuse what OpenAI's reasoning models refuse, in its words: ``max_tokens`` and any
    ``temperature`` but 1; and ``reasoning_effort`` sent to a model that does not reason."""
    if _REASONING.match(model.rsplit("/", 1)[-1].lower()) is None:
        if "reasoning_effort" in body:
            raise RequestError(
                "Unrecognized request argument supplied: reasoning_effort",
                param="reasoning_effort",
                code="unsupported_parameter",
            )
        return
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in ("none", "minimal", "low", "medium", "high"):
        raise RequestError(
            f"Invalid value: '{effort}'. Supported values are: 'none', 'minimal', 'low', 'medium', "
            "and 'high'.",
            param="reasoning_effort",
            code="invalid_value",
        )
    if "max_tokens" in body:
        raise RequestError(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        )
    temperature = body.get("temperature", 1)
    if temperature != 1:
        raise RequestError(
            f"Unsupported value: 'temperature' does not support {temperature} with this model. "
            "Only the default (1) value is supported.",
            param="temperature",
            code="unsupported_value",
        )


#: the reasoning models that take ``logprobs`` when told not to reason (gpt-5.1, gpt-5.4-mini, ...)
_DOTTED_GPT5 = re.compile(r"^gpt-5\.\d")
#: what OpenAI's bounds checks call each JSON type ("... but got a string instead.")
_JSON_TYPES = ((bool, "a boolean"), (int, "an integer"), (float, "a decimal number"), (str, "a string"),
               (list, "an array"), (dict, "an object"))  # fmt: skip


def _logprob_options(body: JSON, model: str) -> tuple[bool, int]:
    """``logprobs`` and ``top_logprobs`` as OpenAI's Chat Completions take them, or the refusal in its
    words: o-series and gpt-5 models answer 403 "You are not allowed to request logprobs from this
    model"; gpt-5.N models refuse the parameter unless ``reasoning_effort`` is "none", and then list
    at most 5 alternatives (20 for the others); ``top_logprobs`` needs ``logprobs: true``."""
    logprobs, top = body.get("logprobs"), body.get("top_logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise RequestError(f"Invalid type for 'logprobs': expected a boolean, but got {_json_type(logprobs)} "
                           "instead.", param="logprobs", code="invalid_type")  # fmt: skip
    if top is not None and (not isinstance(top, int) or isinstance(top, bool)):
        raise RequestError(f"Invalid type for 'top_logprobs': expected an integer, but got {_json_type(top)} "
                           "instead.", param="top_logprobs", code="invalid_type")  # fmt: skip
    name = model.rsplit("/", 1)[-1].lower()
    most = 20
    if _REASONING.match(name) is not None:
        if _DOTTED_GPT5.match(name) is not None:
            if logprobs is not None and body.get("reasoning_effort") != "none":
                raise RequestError("Unsupported parameter: 'logprobs' is not supported with this model.",
                                   param="logprobs", code="unsupported_parameter")  # fmt: skip
            most = 5
        elif logprobs:
            raise RequestError("You are not allowed to request logprobs from this model", status=403)
    if top is not None:
        if top < 0:
            below = f"integer below minimum value. Expected a value >= 0, but got {top} instead."
            raise RequestError(f"Invalid 'top_logprobs': {below}", param="top_logprobs",
                               code="integer_below_min_value")  # fmt: skip
        if top > most:
            raise RequestError(f"Invalid value for 'top_logprobs': must be less than or equal to {most}.",
                               param="top_logprobs")  # fmt: skip
        if not logprobs:
            raise RequestError("The 'top_logprobs' parameter is only allowed when 'logprobs' is enabled.",
                               param="top_logprobs")  # fmt: skip
    return bool(logprobs), top or 0


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return next(name for kind, name in _JSON_TYPES if isinstance(value, kind))


def _refuse_a_schema_without_an_answer(
    body: JSON, mode: SimMode, tool_name: str | None, key: bytes | None, schema: JSON
) -> None:
    """OpenAI checks the schema it is given (a schema in the prompt, json_object's, it never sees):
    one no value can satisfy is a 400 in its words, ``Invalid schema for ...: In context=(), ...``."""
    problem = schema_problem(key, schema)
    if problem is None:
        return
    if mode == "tools":
        functions = [t.get("function") if isinstance(t, dict) else None for t in body["tools"]]
        index = next(i for i, f in enumerate(functions) if isinstance(f, dict) and f.get("name") == tool_name)
        raise RequestError(
            f"Invalid schema for function '{tool_name}': In context=(), {problem}.",
            param=f"tools[{index}].function.parameters",
            code="invalid_function_parameters",
        )
    name = body["response_format"]["json_schema"].get("name")
    raise RequestError(
        f"Invalid schema for response_format '{name}': In context=(), {problem}.",
        param="response_format",
        code="invalid_json_schema",
    )


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        parts = (p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        return "\n".join(parts)
    return ""


def _structure(body: JSON, messages: list[Any]) -> tuple[SimMode, JSON | None, str | None, bool, int]:
    """(mode, schema, tool name, forced tool, extra prompt characters) of a request."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools and choice != "none":
        if not isinstance(tools, list):
            raise RequestError("tools must be an array", param="tools")
        functions: list[JSON] = [
            f
            for f in (t.get("function") for t in tools if isinstance(t, dict))
            if isinstance(f, dict) and isinstance(f.get("name"), str)
        ]
        if not functions:
            raise RequestError("Missing required parameter: 'tools[0].function'.", param="tools")
        chosen: JSON | None = functions[0]
        forced = isinstance(choice, dict)
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            chosen = next((f for f in functions if f["name"] == name), None)
        if chosen is None:
            raise RequestError(
                f"Invalid value for 'tool_choice': function {name!r} is not in 'tools'.",
                param="tool_choice",
            )
        schema = chosen.get("parameters")
        if not isinstance(schema, dict):
            schema = {"type": "object", "properties": {}}
        extra = len(chosen["name"]) + len(str(chosen.get("description") or "")) + 16
        return "tools", schema, chosen["name"], forced, extra
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
                raise RequestError(
                    "Missing required parameter: 'response_format.json_schema.schema'.",
                    param="response_format.json_schema",
                )
            return "json_schema", spec["schema"], None, False, len(str(spec.get("name") or "")) + 8
        if kind == "json_object":
            # instructor's JSON_SCHEMA mode (1.x) sends the schema alongside; else it is in the prompt.
            inline = fmt.get("schema")
            schema = inline if isinstance(inline, dict) else find_schema(messages)
            return "json_object", schema, None, False, 0
    return "text", None, None, False, 0


def find_schema(messages: list[Any]) -> JSON | None:
    """The first JSON Schema written in the prompt: system messages first, then the rest."""
    ordered = sorted(messages, key=lambda m: m.get("role") not in ("system", "developer"))
    for message in ordered:
        content = _content_text(message.get("content"))
        if "{" not in content:
            continue
        # Cached per message text: the system prompt is the same in every request.
        found: JSON | None = _SCHEMA_SCAN_CACHE.get(content, _NOT_SCANNED)
        if found is _NOT_SCANNED:
            if len(_SCHEMA_SCAN_CACHE) >= _SCAN_CACHE_SIZE:
                _SCHEMA_SCAN_CACHE.clear()
            found = _SCHEMA_SCAN_CACHE[content] = _scan(content)
        if found is not None:
            return found
    return None


def _scan(text: str) -> JSON | None:
    start = text.find("{")
    for _ in range(_MAX_SCAN_ATTEMPTS):
        if start < 0:
            return None
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict) and ("properties" in value or "$defs" in value or "type" in value):
            return value
        start = text.find("{", end)
    return None


# --- replies ------------------------------------------------------------------------------------

_USAGE_DETAILS = {
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}


def chat_completion(
    request: SimRequest,
    answer: str,
    *,
    completion_id: str,
    call_id: str,
    finish_reason: str | None = None,
    token_logprobs: list[JSON] | None = None,
) -> tuple[bytes, int]:
    """The reply body and its completion tokens; ``answer`` is cut to ``max_tokens`` (→ "length").

    ``token_logprobs``: the entries of ``choices[0].logprobs.content`` for ``answer`` (a request with
    ``logprobs`` in a mode whose answer is the message's content): then the answer is counted, and
    cut, in those tokens. A tool call has none: its arguments get no logprobs at OpenAI, and the
    choice's ``logprobs`` is ``{"content": null, "refusal": null}``."""
    if token_logprobs is not None:
        if request.max_tokens is not None and len(token_logprobs) > request.max_tokens:
            token_logprobs = token_logprobs[: request.max_tokens]
            answer = "".join(entry["token"] for entry in token_logprobs)
            finish_reason = "length"
        completion_tokens = len(token_logprobs)
    else:
        completion_tokens = estimate_tokens(len(answer))
        if request.max_tokens is not None and completion_tokens > request.max_tokens:
            answer = answer[: request.max_tokens * 4]
            completion_tokens = request.max_tokens
            finish_reason = "length"
    message: JSON
    if request.mode == "tools":
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": request.tool_name, "arguments": answer},
                }
            ],
            "refusal": None,
            "annotations": [],
        }
        finish_reason = finish_reason or ("stop" if request.forced_tool else "tool_calls")
    else:
        message = {"role": "assistant", "content": answer, "refusal": None, "annotations": []}
    reply = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": {"content": token_logprobs, "refusal": None} if request.logprobs else None,
                "finish_reason": finish_reason or "stop",
            }
        ],
        "usage": {
            "prompt_tokens": request.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": request.prompt_tokens + completion_tokens,
            **_USAGE_DETAILS,
        },
        "service_tier": "default",
        "system_fingerprint": "fp_corral_sim",
    }
    return orjson.dumps(reply), completion_tokens


_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "overloaded"),
}


def error_body(
    status: int, message: str | None = None, *, param: str | None = None, code: str | None = None
) -> bytes:
    """An OpenAI-shaped error: ``{"error": {"message", "type", "param", "code"}}``."""
    fallback = ("server_error" if status >= 500 else "invalid_request_error", None)
    kind, default_code = _ERROR_TYPES.get(status, fallback)
    code = code or default_code
    text = message or {
        429: "Rate limit reached for requests (simulated).",
        503: "The server is overloaded (simulated).",
    }.get(status, f"Simulated error {status}.")
    return orjson.dumps({"error": {"message": text, "type": kind, "param": param, "code": code}})
