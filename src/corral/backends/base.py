"""The one small contract every backend meets, and the data that describes what it can do.

A backend turns a wire-neutral :class:`Request` into one :class:`Completion`. It does not retry,
re-ask or pace itself: the engine does that. Provider and SDK errors are translated into
:mod:`corral.errors` here, at the boundary, so nothing above ever sees an aiohttp or llama.cpp error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from corral.backends.models import DEFAULT, ModelTraits
from corral.schema import ResponseSpec
from corral.types import Usage

__all__ = ["Backend", "Completion", "Message", "Mode", "Parked", "Profile", "RateLimitInfo", "Request"]

#: A chat message in the OpenAI chat shape, the lingua franca between layers:
#: ``{"role": "system"|"user"|"assistant"|"tool", "content": ..., ["tool_calls"|"tool_call_id"]}``.
Message = dict[str, Any]


class Mode(enum.StrEnum):
    """How the response schema is put on the wire."""

    #: forced tool call whose arguments are the object
    TOOLS = "tools"
    #: ``response_format={"type": "json_schema", ...}`` (strict where the schema allows)
    JSON_SCHEMA = "json_schema"
    #: ``response_format={"type": "json_object"}`` with the schema in the system prompt
    JSON_OBJECT = "json_object"
    #: decoding constrained by a grammar compiled from the schema (embedded local model)
    GRAMMAR = "grammar"


@dataclass(frozen=True, slots=True)
class Profile:
    """What a provider/model can do, as data: the engine reads this instead of branching on names."""

    name: str
    #: modes it supports, preferred first
    modes: tuple[Mode, ...]
    #: accepts ``strict: true`` for tools / json_schema
    strict: bool = False
    #: most requests it can usefully serve at once (None: no known bound)
    max_concurrency: int | None = None
    #: whose tokenizer counts its prompts ("openai"), for token limits; None: estimate
    tokenizer: str | None = None
    #: runs on the user's own hardware (local model, Ollama, vLLM, ...): no per-token price
    self_hosted: bool = False
    #: the provider batch API it offers ("openai" files + batches, "anthropic" message batches)
    batch_api: str | None = None
    #: the request fields its models take, unless a model's name says otherwise (see .models)
    traits: ModelTraits = DEFAULT

    @property
    def default_mode(self) -> Mode:
        return self.modes[0]


@dataclass(frozen=True, slots=True)
class Request:
    """One call to the model, independent of wire format."""

    messages: list[Message]
    spec: ResponseSpec[Any]
    mode: Mode
    max_tokens: int
    temperature: float | None = 0.0
    #: how long a reasoning model thinks ("minimal", "low", ...); None: the model's default
    reasoning_effort: str | None = None
    #: for logs and simulators; never sent to a real provider
    item_id: str = ""


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What a provider's response headers said about its limits (None: it did not say)."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    #: seconds until the request budget is whole again
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None


@dataclass(slots=True)
class Completion:
    """The model's reply, reduced to what validation and re-asking need."""

    #: the JSON text to validate: tool-call arguments or message content ("" when absent)
    text: str
    #: "stop", "length" (cut off by max_tokens), "tool_calls", ...
    finish_reason: str | None
    usage: Usage
    #: the assistant message as returned, appended to the conversation when re-asking
    reply: Message
    #: id of the tool call that carried ``text``; the re-ask answers it with a tool message
    tool_call_id: str | None = None
    #: the provider's rate-limit headers, parsed at the backend boundary
    rate_limits: RateLimitInfo | None = None
    #: dollars this answer cost when they were already counted where it was obtained (a batch result
    #: is counted when its batch is collected); None: the scheduler prices it from ``usage``
    paid: float | None = None


class Parked(Exception):
    """The request was accepted for answering later (a line of a provider batch).

    Raised by a batching backend instead of waiting hours: the item leaves this run unfinished and
    unrecorded, and a later run (``corral batch collect``) finds its answer in the run store."""


class Backend(Protocol):
    """Send one request, get one completion. ``aclose`` releases connections / models."""

    @property
    def profile(self) -> Profile: ...

    @property
    def model(self) -> str: ...

    @property
    def endpoint(self) -> str:
        """Where the model runs (a base URL, a model file), for cache keys; never holds a key."""
        ...

    async def complete(self, request: Request) -> Completion: ...

    async def aclose(self) -> None: ...
