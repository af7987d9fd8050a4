"""What goes in (an :class:`Item`) and what comes out (an :class:`Outcome`) for every row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from corral.errors import ConfigError, ItemError

__all__ = ["RECORD_KEYS", "ErrorInfo", "Item", "Outcome", "Pending", "Usage", "keep_fields"]

T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class Item:
    """One text to extract from. ``id`` is stable across runs of the same input."""

    id: str
    text: str
    #: the other fields of the input row (JSONL/CSV)
    fields: Mapping[str, Any] | None = None
    #: set when the row itself is unreadable ("file:line: why"); it ends as an error, never sent
    problem: str | None = None
    #: an instruction for this item alone, after the run's own (a later reading of a chunk)
    note: str | None = None
    #: input fields passed through to the item's output record, right after its id (``--keep``)
    kept: Mapping[str, Any] | None = None


@dataclass(slots=True)
class Usage:
    """Tokens spent, summed over every attempt (re-asks included)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True, frozen=True)
class ErrorInfo:
    """Why an item has no value: a stable ``kind`` (see :mod:`corral.errors`) and a message."""

    kind: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


#: why an item has no end in this run: its answer waits in a provider batch ("deferred"), or the
#: budget was reached before it could start ("not_started")
Pending = Literal["deferred", "not_started"]
_PENDING_REASONS: dict[str, str] = {
    "deferred": "its answer waits in a provider batch",
    "not_started": "the budget was reached before it started",
}


@dataclass(slots=True)
class Outcome(Generic[T]):
    """The end of one item: a validated ``value`` or an ``error``, never both, never neither; or,
    for an item that has no end in this run, why (``pending``: neither written nor recorded)."""

    id: str
    input: str
    value: T | None = None
    error: ErrorInfo | None = None
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    #: seconds from the first request to the final answer
    latency: float = 0.0
    #: the validated value as JSON-able data (what output files hold)
    output: Any = None
    #: dollars this run spent on the item (0 for cached answers and free models)
    cost: float = 0.0
    #: answered from the run store: finished by an earlier run of the same job, nothing sent now
    reused: bool = False
    #: set when the item has no end in this run (then it has neither a value nor an error)
    pending: Pending | None = None
    #: each value's confidence (0-1) by its path in ``output`` (``people[0].name``); None: none known
    confidence: dict[str, float] | None = None
    #: how ``confidence`` was found: "logprobs" (the reply's token log-probabilities) or "agreement"
    #: (the share of several sampled answers that give the value)
    confidence_method: str = "logprobs"
    #: set when a stronger model was asked again for the doubtful values: ``{"model", "paths",
    #: "first", "first_confidence"}`` (the first answer, kept beside the one written)
    escalation: dict[str, Any] | None = None
    #: the item's input fields passed through (``--keep``): written right after ``id``
    kept: Mapping[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.pending is None

    @property
    def status(self) -> Literal["ok", "error", "deferred", "not_started"]:
        if self.pending is not None:
            return self.pending
        return "ok" if self.error is None else "error"

    def unwrap(self) -> T:
        """The value, or :class:`~corral.errors.ItemError` carrying the recorded error."""
        if self.error is not None or self.value is None:
            if self.error is not None:
                reason = self.error.message
            else:
                reason = "no value" if self.pending is None else _PENDING_REASONS[self.pending]
            raise ItemError(f"item {self.id}: {reason}")
        return self.value

    def to_record(self) -> dict[str, Any]:
        """The output line: ``{"id", "input", "output", "error", "attempts", "usage", "latency"}``,
        and ``confidence`` (``{path: {"value": p, "method": "logprobs"}}``) when there is one; the
        ``kept`` input fields come right after ``id``."""
        record = {
            "id": self.id,
            **(self.kept or {}),
            "input": self.input,
            "output": self.output,
            "error": None if self.error is None else self.error.to_dict(),
            "attempts": self.attempts,
            "usage": self.usage.to_dict(),
            "latency": round(self.latency, 4),
        }
        if self.escalation is not None:
            record["escalation"] = self.escalation
        if self.confidence is not None:
            record["confidence"] = {
                path: {"value": value, "method": self.confidence_method}
                for path, value in self.confidence.items()
            }
        return record


#: the keys corral itself writes in an output record: an input field kept beside them (``--keep``)
#: may not take one of these names
RECORD_KEYS = frozenset(
    {"id", "input", "output", "error", "attempts", "usage", "latency", "grounding", "conflicts", "chunks",
     "confidence", "escalation", "review"}
)  # fmt: skip


def keep_fields(keep: Iterable[str]) -> tuple[str, ...]:
    """The input fields to pass through to every record (``--keep``), each once, in order; a
    :class:`~corral.errors.ConfigError` for a name that is one of corral's own record keys."""
    names = tuple(dict.fromkeys(keep))
    clash = [name for name in names if name in RECORD_KEYS]
    if clash:
        listed = ", ".join(repr(name) for name in clash)
        raise ConfigError(
            f"--keep {listed}: {'it is the name of a key' if len(clash) == 1 else 'they are names of keys'} "
            f"corral writes in its records ({', '.join(sorted(RECORD_KEYS))}); rename the input field "
            "(or drop it from --keep)"
        )
    return names
