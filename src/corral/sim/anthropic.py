"""The Anthropic Messages wire format, as far as the simulator needs it: read a request, write a reply.

A request is parsed into the same :class:`~corral.sim.openai.SimRequest` as an OpenAI one (with
``wire="anthropic"``), so the answers, faults and limits of :mod:`corral.sim.core` serve both; only
the bodies differ. Replies are full ``message`` objects and errors ``{"type": "error", "error": ...}``,
so the official ``anthropic`` SDK parses them into its own types and error classes.

A tool's ``input`` is always a JSON object on this wire: an answer that is not one (a malformed or
cut-short reply) is sent as a text block instead, as from a model that ignored the tool.

The Messages API has no logprobs: a body with OpenAI's ``logprobs`` or ``top_logprobs`` is refused as
the API refuses any field it does not know, ``logprobs: Extra inputs are not permitted`` (400,
``invalid_request_error``), online and in a batch's ``params``.
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.sim.answers import schema_key, schema_problem
from corral.sim.openai import RequestError, SimMode, SimRequest, estimate_tokens, find_schema

__all__ = [
    "OVERLOADED",
    "error_type",
    "messages_error_body",
    "parse_messages",
    "parse_messages_body",
    "render_message",
]

JSON = dict[str, Any]
#: Anthropic's "overloaded" status, which it sends where OpenAI would send 503
OVERLOADED = 529
_ROLES = ("user", "assistant")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    OVERLOADED: "overloaded_error",
}
_STOP_REASONS = {"length": "max_tokens", "stop": "end_turn", "tool_calls": "tool_use"}
#: OpenAI's fields that the Messages API does not know (it refuses every field it does not know)
_NOT_FIELDS = ("logprobs", "top_logprobs")


def parse_messages(raw: bytes, default_model: str) -> SimRequest:
    """A raw ``POST /v1/messages`` body; :class:`RequestError` (→ 400) for what the API would refuse."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return parse_messages_body(body, default_model)


def parse_messages_body(body: JSON, default_model: str) -> SimRequest:
    """A Messages request given as an object (an online body, or a batch line's ``params``)."""
    model = body.get("model", default_model)
    if not isinstance(model, str) or not model:
        raise RequestError("model: Input should be a non-empty string", param="model")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise RequestError("max_tokens: Field required", param="max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise RequestError("max_tokens: Input should be an integer of at least 1", param="max_tokens")
    if body.get("stream"):
        raise RequestError("stream: corral.sim does not stream, send stream=false", param="stream")
    for name in _NOT_FIELDS:
        if name in body:
            raise RequestError(f"{name}: Extra inputs are not permitted", param=name)
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, int | float) and 0 <= temperature <= 1):
        raise RequestError("temperature: Input should be between 0 and 1", param="temperature")
    system = _system_text(body.get("system"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: at least one message is required", param="messages")

    chars, user_text = _read_messages(messages)
    mode, schema, tool_name, forced, extra = _structure(body, system, messages)
    key = schema_key(schema) if schema is not None else None
    if key is None and mode == "json_object":
        schema, mode = None, "text"  # one in the prompt too deep to read: answered as plain text
    if mode == "tools" and schema is not None:
        # The API checks a tool's input_schema (a schema asked for in the prompt, it never sees).
        problem = schema_problem(key, schema)
        if problem is not None:
            index = next(i for i, tool in enumerate(body["tools"]) if tool["name"] == tool_name)
            raise RequestError(f"tools.{index}.custom.input_schema: JSON schema is invalid: {problem}",
                               param="tools")  # fmt: skip
    return SimRequest(
        body=body,
        model=model,
        mode=mode,
        schema=schema,
        schema_key=key,
        tool_name=tool_name,
        forced_tool=forced,
        user_text=user_text or "",
        prompt_tokens=estimate_tokens(len(system) + chars + extra + (len(key) if key else 0)),
        max_tokens=max_tokens,
        wire="anthropic",
        temperature=float(body.get("temperature", 1.0)),
    )


def _read_messages(messages: list[Any]) -> tuple[int, str | None]:
    """The characters of the conversation and the first user text; checks tool_use/tool_result pairs."""
    chars = 0
    user_text: str | None = None
    previous_tool_ids: set[str] = set()
    for i, message in enumerate(messages):
        role, blocks = _message_blocks(message, i)
        chars += 4  # role and framing tokens
        answered: set[str] = set()
        for j, block in enumerate(blocks):
            kind = block.get("type")
            if kind == "text":
                chars += len(str(block.get("text", "")))
            elif kind == "tool_use":
                chars += len(orjson.dumps(block.get("input")))
            elif kind == "tool_result":
                tool_id = block.get("tool_use_id")
                if role != "user" or tool_id not in previous_tool_ids:
                    raise RequestError(
                        f"messages.{i}.content.{j}: tool_result block with tool_use_id {tool_id!r} has no "
                        "tool_use block of that id in the previous message",
                        param="messages",
                    )
                answered.add(tool_id)
                chars += len(_text_of(block.get("content")))
        if previous_tool_ids - answered:
            missing = ", ".join(sorted(previous_tool_ids - answered))
            raise RequestError(
                f"messages.{i}: tool_use ids without a tool_result block right after them: {missing}",
                param="messages",
            )
        previous_tool_ids = {
            str(b.get("id")) for b in blocks if b.get("type") == "tool_use" and role == "assistant"
        }
        if user_text is None and role == "user":
            user_text = _text_of(blocks)
    return chars, user_text


def _system_text(system: Any) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    if isinstance(system, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in system):
        return _text_of(system)
    raise RequestError("system: Input should be a string or a list of text blocks", param="system")


def _message_blocks(message: Any, i: int) -> tuple[str, list[JSON]]:
    """A message's role and its content as blocks (a string is one text block)."""
    if not isinstance(message, dict):
        raise RequestError(f"messages.{i}: Input should be an object", param="messages")
    role = message.get("role")
    if role not in _ROLES:
        # The system prompt is a top-level field on this wire, never a message.
        raise RequestError(
            f"messages.{i}.role: Input should be 'user' or 'assistant', not {role!r}", param="messages"
        )
    content = message.get("content")
    if isinstance(content, str):
        return role, [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise RequestError(
            f"messages.{i}.content: Input should be a string or a list of blocks", param="messages"
        )
    return role, content


def _text_of(content: Any) -> str:
    """The text of a string, or of the text blocks in a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _structure(
    body: JSON, system: str, messages: list[Any]
) -> tuple[SimMode, JSON | None, str | None, bool, int]:
    """(mode, schema, tool name, forced tool, extra prompt characters) of a request."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is not None and not isinstance(tools, list):
        raise RequestError("tools: Input should be a list", param="tools")
    if choice is not None and not (isinstance(choice, dict) and isinstance(choice.get("type"), str)):
        raise RequestError("tool_choice: Input should be an object with a type", param="tool_choice")
    if tools and (choice or {}).get("type") != "none":
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise RequestError(f"tools.{i}.name: Field required", param="tools")
            if not isinstance(tool.get("input_schema"), dict):
                raise RequestError(f"tools.{i}.input_schema: Field required", param="tools")
        chosen: JSON = tools[0]
        forced = choice is not None and choice["type"] == "tool"
        if forced:
            assert choice is not None
            name = choice.get("name")
            found = next((t for t in tools if t["name"] == name), None)
            if found is None:
                raise RequestError(f"tool_choice: tool {name!r} is not among the tools", param="tool_choice")
            chosen = found
        extra = len(chosen["name"]) + len(str(chosen.get("description") or "")) + 16
        return "tools", chosen["input_schema"], chosen["name"], forced, extra
    # No tool: a JSON reply can be asked for only in words, with the schema in the prompt.
    schema = find_schema([{"role": "system", "content": system}, *messages])
    return ("json_object" if schema is not None else "text"), schema, None, False, 0


# --- replies ------------------------------------------------------------------------------------


def render_message(
    request: SimRequest,
    answer: str,
    *,
    message_id: str,
    tool_id: str,
    finish_reason: str | None = None,
) -> tuple[bytes, int]:
    """The ``message`` body and its output tokens; ``answer`` is cut to ``max_tokens`` if longer."""
    output_tokens = estimate_tokens(len(answer))
    truncated = request.max_tokens is not None and output_tokens > request.max_tokens
    if truncated:
        assert request.max_tokens is not None
        answer = answer[: request.max_tokens * 4]
        output_tokens = request.max_tokens
    content: list[JSON]
    stop_reason = "end_turn"
    tool_input = _object_or_none(answer) if request.mode == "tools" else None
    if request.mode == "tools" and (tool_input is not None or truncated):
        # A tool call cut short keeps its block; what arrived of its input cannot be carried here.
        block = {"type": "tool_use", "id": tool_id, "name": request.tool_name, "input": tool_input or {}}
        content, stop_reason = [block], "tool_use"
    else:
        content = [{"type": "text", "text": answer}]
    if truncated:
        stop_reason = "max_tokens"
    elif finish_reason is not None:
        stop_reason = _STOP_REASONS.get(finish_reason, finish_reason)
    reply = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": request.prompt_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    return orjson.dumps(reply), output_tokens


def _object_or_none(text: str) -> JSON | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def error_type(status: int) -> str:
    """The Anthropic error type for an HTTP status."""
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def messages_error_body(status: int, message: str | None = None) -> bytes:
    """An Anthropic-shaped error: ``{"type": "error", "error": {"type", "message"}}``."""
    text = message or {
        429: "Rate limit reached (simulated).",
        OVERLOADED: "Overloaded (simulated).",
    }.get(status, f"Simulated error {status}.")
    return orjson.dumps({"type": "error", "error": {"type": error_type(status), "message": text}})
