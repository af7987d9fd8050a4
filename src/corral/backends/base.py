"""The one small contract every backend meets, and the data that describes what it can do.

A backend turns a wire-neutral :class:`Request` into one :class:`Completion` (a backend that sends
requests in provider batches may answer later instead: :class:`Deferred`, then :class:`Held`). It
does not retry, re-ask or pace itself: the engine does that. Provider and SDK errors are translated into
:mod:`corral.errors` here, at the boundary, so nothing above ever sees an aiohttp or llama.cpp error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from corral.backends.models import DEFAULT, ModelTraits
from corral.errors import ProviderError
from corral.schema import ResponseSpec
from corral.types import Usage

__all__ = [
    "DEFERRED",
    "Backend",
    "Completion",
    "Deferred",
    "Held",
    "Message",
    "Mode",
    "Profile",
    "RateLimitInfo",
    "Reply",
    "Request",
]

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
    #: refuses a prompt over its context window itself, counting with the model's own tokenizer (the
    #: embedded model): the engine's estimate is not needed
    checks_window: bool = False
    #: gives the reply's token log-probabilities when asked (for a reply in the message content, not
    #: a tool call's arguments), so each value gets a confidence; a server not known to is not asked
    logprobs: bool = False

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
    #: ask for the reply's token log-probabilities (each value's confidence)
    logprobs: bool = False
    #: a further sample of the same request (1, 2, ...): its own answer, never another's from the cache
    sample: int = 0


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
    #: the reply's tokens and their log-probabilities, when asked for and given
    token_logprobs: tuple[tuple[str, float], ...] | None = None


@dataclass(frozen=True, slots=True)
class Deferred:
    """A backend's reply to a request it took to answer later (a line of a provider batch).

    Not an error, and not a request of this run: the item ends *deferred* (neither written nor
    recorded), and a later run finds its answer in the run store."""


#: the one :class:`Deferred` (it carries nothing)
DEFERRED = Deferred()


@dataclass(frozen=True, slots=True)
class Held:
    """A backend's reply with an answer it already held: one obtained, and paid for, outside this
    run's requests (a line of a collected provider batch). ``answer`` is the completion, or the error
    the line ended with; ``cost`` is what it cost when it was collected (the item's share, for its
    outcome: the run counted it then)."""

    answer: Completion | ProviderError
    cost: float = 0.0


#: what :meth:`Backend.complete` answers: a completion, or (a batching backend) a deferral or an
#: answer it held
Reply = Completion | Deferred | Held


class Backend(Protocol):
    """Send one request, get one reply. ``aclose`` releases connections / models.

    An online backend always answers a :class:`Completion`. A backend that sends requests in
    provider batches answers :class:`Deferred` for a request waiting in one, and :class:`Held`
    for one whose batch was collected."""

    @property
    def profile(self) -> Profile: ...

    @property
    def model(self) -> str: ...

    @property
    def endpoint(self) -> str:
        """Where the model runs (a base URL, a model file), for cache keys; never holds a key."""
        ...

    @property
    def context_window(self) -> int | None:
        """The most tokens one request may hold, prompt and reply together (None: not known)."""
        ...

    async def complete(self, request: Request) -> Reply: ...

    async def aclose(self) -> None: ...
