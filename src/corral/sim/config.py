"""The simulator's public data: its configuration, the scripting hook's types, and what it observed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from corral.errors import ConfigError
from corral.sim.protocol import SimMode

__all__ = ["LogEntry", "ScriptCall", "SimConfig", "SimReply", "SimStats"]


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How the simulated model behaves. Every random choice is drawn from ``seed``."""

    #: median answer latency in milliseconds; 0 answers at once, without even a sleep call
    latency_ms: float = 0.0
    #: "fixed": every answer takes ``latency_ms``; "lognormal": drawn around it as the median
    latency_dist: Literal["fixed", "lognormal"] = "lognormal"
    #: spread of the lognormal latency (sigma of the underlying normal)
    latency_sigma: float = 0.3
    seed: int = 0
    #: share of answers that are valid JSON but break the schema (a field missing or mistyped)
    invalid_rate: float = 0.0
    #: share of answers that are not JSON at all (cut short)
    malformed_rate: float = 0.0
    #: the model id served by ``GET /v1/models``; requests may name any model
    model: str = "sim-1"
    #: request-log entries kept (a ring buffer: the oldest go first)
    log_size: int = 100_000

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ConfigError(f"latency_ms must be >= 0, not {self.latency_ms}")
        if self.latency_dist not in ("fixed", "lognormal"):
            raise ConfigError(f"latency_dist must be 'fixed' or 'lognormal', not {self.latency_dist!r}")
        if self.latency_sigma < 0:
            raise ConfigError(f"latency_sigma must be >= 0, not {self.latency_sigma}")
        for name in ("invalid_rate", "malformed_rate"):
            rate = getattr(self, name)
            if not 0 <= rate <= 1:
                raise ConfigError(f"{name} must be between 0 and 1, not {rate}")
        if self.invalid_rate + self.malformed_rate > 1:
            raise ConfigError("invalid_rate + malformed_rate must not exceed 1")
        if self.log_size < 0:
            raise ConfigError(f"log_size must be >= 0, not {self.log_size}")


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """What a script sees of one chat-completion request."""

    #: the parsed JSON body, as sent
    body: dict[str, Any]
    mode: SimMode
    model: str
    #: the item text: the first user message (re-asks and retries keep it, so ``repeat`` counts them)
    user_text: str
    #: how many earlier requests carried this same ``user_text`` in the same mode with the same schema
    #: (0 for the first): a re-ask or a retry of one item counts up, another task for the text does not
    repeat: int
    #: position of this request among all chat-completion requests the simulator received (0-based)
    index: int
    #: the JSON Schema the answer must satisfy, if the request asked for structured output
    schema: dict[str, Any] | None
    #: the answer the simulator would give without faults (valid JSON for the schema)
    default_answer: str


@dataclass(slots=True)
class SimReply:
    """A scripted reply. Fields left at None keep the default behaviour.

    ``status`` >= 400 makes an error reply (``error_body`` is a JSON-able value, str or bytes; by
    default an OpenAI-shaped error for that status). Otherwise ``answer_text`` replaces the answer
    verbatim (tool arguments or message content; it may be invalid on purpose), with faults off.
    ``headers`` are added to either kind of reply. Transport faults (resets, hangs, slow bodies)
    and rate limiting will be added here as further fields.
    """

    answer_text: str | None = None
    status: int | None = None
    error_body: Any = None
    headers: Mapping[str, str] | None = None
    latency_ms: float | None = None
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class SimStats:
    """Counters since start (or the last ``reset_stats``), for chat-completion requests only."""

    #: requests received (answered or still in flight)
    requests: int
    peak_concurrency: int
    in_flight: int
    #: answered requests by HTTP status (499: the server closed before answering)
    by_status: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "peak_concurrency": self.peak_concurrency,
            "in_flight": self.in_flight,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
        }


class LogEntry(NamedTuple):
    """One chat-completion request, as recorded in the simulator's ring buffer."""

    #: ``time.monotonic()`` when the request arrived
    time: float
    #: position among all chat-completion requests (``ScriptCall.index``)
    seq: int
    model: str
    #: "tools", "json_schema", "json_object", "text", or "" when the body could not be read
    mode: str
    status: int
    #: the first 200 characters of the user text
    text: str
    #: ``hash()`` of the whole user text (this process only): tells texts with equal prefixes apart
    text_hash: int
