"""The simulator's public data: its configuration, the scripting hook's types, and what it observed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from corral.errors import ConfigError
from corral.sim.openai import SimMode

__all__ = [
    "DEFAULT_CONTEXT_WINDOW",
    "LogEntry",
    "RateLimitBucket",
    "ScriptCall",
    "SimConfig",
    "SimFault",
    "SimReply",
    "SimStats",
]

#: transport faults a script can ask for (``SimReply.fault``)
SimFault = Literal["reset", "hang", "trickle", "bad_body"]
#: how the per-minute limits are enforced (``SimConfig.rate_limit_bucket``)
RateLimitBucket = Literal["second", "minute"]
#: gpt-4o-mini's context window: every real model has one
DEFAULT_CONTEXT_WINDOW = 128_000
#: the fault shares of SimConfig, in the order they divide each request's draw (malformed and
#: invalid first, where they were before the others existed, so old seeds give the same answers)
_FAULT_RATES = (
    "malformed_rate",
    "invalid_rate",
    "bad_arguments_rate",
    "server_error_rate",
    "reset_rate",
    "hang_rate",
    "trickle_rate",
    "bad_body_rate",
)


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
    #: share of answers that are not JSON at all (cut short); in tools mode that is the tool call's
    #: ``arguments`` string, in the other modes the message content
    malformed_rate: float = 0.0
    #: the same fault as ``malformed_rate`` under the name a tools-mode client knows it by (logged as
    #: "bad_arguments"): tool-call ``arguments`` that are not JSON, content in the JSON modes
    bad_arguments_rate: float = 0.0
    #: share of requests answered 500, 502 or 503 (OpenAI-shaped error bodies)
    server_error_rate: float = 0.0
    #: share of requests whose connection drops mid-body: status, headers and half the body, then closed
    reset_rate: float = 0.0
    #: share of requests never answered: held ``hang_s`` (or until the client leaves), then closed
    hang_rate: float = 0.0
    #: share of (valid) answers sent in small pieces spread over ``trickle_s``
    trickle_rate: float = 0.0
    #: share of requests answered 200 with an HTML page instead of JSON (a proxy's error page)
    bad_body_rate: float = 0.0
    hang_s: float = 3600.0
    trickle_s: float = 2.0
    #: requests per minute, enforced with 429s like OpenAI (None: unlimited)
    rpm: int | None = None
    #: tokens per minute (prompt + max_tokens, or + the answer's tokens without max_tokens)
    tpm: int | None = None
    #: send ``x-ratelimit-*`` on every reply and ``retry-after(-ms)`` on 429s; False sends none, so a
    #: client must find the limit blindly
    rate_limit_headers: bool = True
    #: "second": each limit is enforced by a bucket of one second's worth (limit/60, at least one
    #: request), starting with one second's worth, as OpenAI documents its limits may be quantized,
    #: so a burst draws 429s well below the per-minute rate; "minute": a bucket of the whole minute's
    #: limit, starting full (lenient: a fresh client may send a minute's worth at once)
    rate_limit_bucket: RateLimitBucket = "second"
    #: the model id served by ``GET /v1/models``; requests may name any model
    model: str = "sim-1"
    #: structured-output modes this server lacks ("json_schema", "tools", "json_object"): a request
    #: in one is answered 500 with a validation error, as llama.cpp's servers answer
    refused_modes: tuple[str, ...] = ()
    #: request-log entries kept (a ring buffer: the oldest go first)
    log_size: int = 100_000
    #: real seconds a provider batch takes from creation to its end (its reported timestamps run
    #: faster: the span stands for an hour, or the whole 24 h window when lines expire); 0 ends a
    #: batch as soon as it is created
    batch_seconds: float = 5.0
    #: share of batch lines the window closes on before they are answered (the batch ends expired)
    batch_expire_rate: float = 0.0
    #: share of batch reads (a batch's status, the list, an output file or a results download)
    #: answered with a transient error: OpenAI's 500, Anthropic's 529 overloaded. Over a 24-hour
    #: wait a client meets these; the batch itself is unharmed
    batch_api_error_rate: float = 0.0
    #: OpenAI's enqueued-token limit per model (None: none): a batch whose prompt tokens, with those
    #: of the model's batches still running, would go over it fails at validation with
    #: ``token_limit_exceeded``, as OpenAI's do ("try again once some in_progress batches have been
    #: completed")
    batch_token_limit: int | None = None
    #: the model's context window in tokens (None: unbounded, as no real model is). A request whose
    #: prompt and requested output (``max_tokens``/``max_completion_tokens``; without one, at least
    #: one token) do not fit is refused with the provider's 400 (OpenAI's and vLLM's
    #: ``context_length_exceeded``, Anthropic's "prompt is too long"), never cut short; counted with
    #: the tokens the TPM limit charges. ``GET /v1/models`` reports it as vLLM does, ``max_model_len``.
    #: The default is gpt-4o-mini's.
    context_window: int | None = DEFAULT_CONTEXT_WINDOW
    #: share of the answer's free string values (a name, a city; not an enum, a format or a pattern)
    #: that are hallucinated: replaced by a plausible value found nowhere in the text
    hallucinate: float = 0.0
    #: share of them that are misplaced: copied the way models miscopy (case changed, whitespace
    #: collapsed or doubled, curly quotes and dashes straightened, a diacritic dropped, a one-letter
    #: typo), so that an exact search of the text fails and only a normalised or fuzzy one finds them.
    #: Both shares are drawn per value from the seed, the text and the value's place in the answer,
    #: so the same request always gets the same slips (see :mod:`corral.sim.slips`)
    misplace: float = 0.0
    #: share of each field's values answered wrong, by property name (``{"age": 0.3, "name": 0.1}``;
    #: the name "*" for every field without a share of its own): a plausible value of the field's
    #: type that the schema accepts (an age a few years off, another name of the text, another enum
    #: member, a date shifted; see :mod:`corral.sim.field_errors`). Drawn per value from the seed,
    #: the text and the value's place in the answer: the same request, a re-ask included, always
    #: gets the same answer. Requests that ask for ``logprobs`` get lower ones for these values
    #: (:mod:`corral.sim.logprobs`). ``"MODEL:NAME"`` sets the share for requests to that model
    #: only (``{"gpt-4o-mini:age": 0.3, "gpt-4o:age": 0.05}``): models differ in what they get wrong
    field_errors: Mapping[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ConfigError(f"latency_ms must be >= 0, not {self.latency_ms}")
        if self.latency_dist not in ("fixed", "lognormal"):
            raise ConfigError(f"latency_dist must be 'fixed' or 'lognormal', not {self.latency_dist!r}")
        if self.latency_sigma < 0:
            raise ConfigError(f"latency_sigma must be >= 0, not {self.latency_sigma}")
        for name in _FAULT_RATES:
            rate = getattr(self, name)
            if not 0 <= rate <= 1:
                raise ConfigError(f"{name} must be between 0 and 1, not {rate}")
        total = sum(getattr(self, name) for name in _FAULT_RATES)
        if total > 1 + 1e-9:  # 1e-9: shares like 0.7 + 0.2 + 0.1 do not sum to exactly 1.0
            used = " + ".join(name for name in _FAULT_RATES if getattr(self, name))
            raise ConfigError(f"the fault rates ({used}) must not exceed 1 together, not {total:g}")
        for name in ("hang_s", "trickle_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, not {getattr(self, name)}")
        for name in ("rpm", "tpm"):
            limit = getattr(self, name)
            if limit is not None and (not isinstance(limit, int) or limit < 1):
                raise ConfigError(f"{name} must be a positive whole number or None, not {limit!r}")
        if self.rate_limit_bucket not in ("second", "minute"):
            raise ConfigError(
                f"rate_limit_bucket must be 'second' or 'minute', not {self.rate_limit_bucket!r}"
            )
        if self.log_size < 0:
            raise ConfigError(f"log_size must be >= 0, not {self.log_size}")
        _check_field_errors(self)
        _check_batch_fields(self)
        _check_document_fields(self)


def _check_batch_fields(config: SimConfig) -> None:
    if not 0 <= config.batch_seconds < math.inf:
        raise ConfigError(f"batch_seconds must be >= 0 and finite, not {config.batch_seconds}")
    if not 0 <= config.batch_expire_rate <= 1:
        raise ConfigError(f"batch_expire_rate must be between 0 and 1, not {config.batch_expire_rate}")
    if not 0 <= config.batch_api_error_rate < 1:
        raise ConfigError(f"batch_api_error_rate must be in [0, 1), not {config.batch_api_error_rate}")


def _check_document_fields(config: SimConfig) -> None:
    window = config.context_window
    if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window < 1):
        raise ConfigError(f"context_window must be a positive whole number or None, not {window!r}")
    for name in ("hallucinate", "misplace"):
        share = getattr(config, name)
        if not 0 <= share <= 1:
            raise ConfigError(f"{name} must be between 0 and 1, not {share}")
    if config.hallucinate + config.misplace > 1 + 1e-9:
        total = config.hallucinate + config.misplace
        raise ConfigError(f"hallucinate and misplace must not exceed 1 together, not {total:g}")


def _check_field_errors(config: SimConfig) -> None:
    shares = config.field_errors
    if not isinstance(shares, Mapping):
        raise ConfigError(f"field_errors must map field names to shares, not {shares!r}")
    for name, share in shares.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"field_errors: a field name must be a non-empty string, not {name!r}")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ConfigError(f"field_errors[{name!r}] must be between 0 and 1, not {share!r}")
    # A copy of its own: a caller's dict changed later cannot change a running simulator. A plain
    # dict, not a read-only view, so that the configuration still copies and pickles.
    object.__setattr__(config, "field_errors", {name: float(share) for name, share in shares.items()})


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
    ``headers`` are added to either kind of reply (over the rate-limit headers). ``fault`` sends
    whatever the reply is the broken way: ``"reset"`` drops the connection mid-body, ``"hang"``
    never answers, ``"trickle"`` sends it slowly over ``SimConfig.trickle_s``, ``"bad_body"`` sends
    an HTML page instead of JSON. A reply that sets any of ``answer_text``, ``status`` or ``fault``
    gets no random faults; one that only sets ``headers``, latency or ``finish_reason`` still may.
    A script only sees requests the context window and the rate limits let through.
    """

    answer_text: str | None = None
    status: int | None = None
    error_body: Any = None
    headers: Mapping[str, str] | None = None
    latency_ms: float | None = None
    finish_reason: str | None = None
    fault: SimFault | None = None


@dataclass(frozen=True, slots=True)
class SimStats:
    """Counters since start (or the last ``reset_stats``).

    All but the last two count online chat requests only; batch lines are counted apart, so that a
    batch changes neither the online counters nor the request log (nor the rate limits)."""

    #: requests received (answered or still in flight)
    requests: int
    peak_concurrency: int
    in_flight: int
    #: answered requests by HTTP status (499: never answered, or the client left before the end)
    by_status: dict[int, int] = field(default_factory=dict)
    #: answered requests by ``LogEntry.fault`` (requests without a fault are not counted here)
    by_fault: dict[str, int] = field(default_factory=dict)
    #: provider batches created (OpenAI and Anthropic)
    batches: int = 0
    #: batch lines the model answered (expired and cancelled lines never reach it)
    batch_lines: int = 0
    #: batch reads answered with a transient error (``batch_api_error_rate``)
    batch_api_errors: int = 0

    @property
    def rate_limited(self) -> int:
        """Requests the rate limits refused (scripted 429s are in ``by_status`` only)."""
        return self.by_fault.get("rate_limit", 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "peak_concurrency": self.peak_concurrency,
            "in_flight": self.in_flight,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_fault": dict(sorted(self.by_fault.items())),
            # only once there were batches: an online-only simulator reports what it always did
            **({"batches": self.batches, "batch_lines": self.batch_lines} if self.batches else {}),
            **({"batch_api_errors": self.batch_api_errors} if self.batch_api_errors else {}),
        }


class LogEntry(NamedTuple):
    """One chat-completion request, as recorded in the simulator's ring buffer."""

    #: ``time.monotonic()`` when the request had arrived (its body read): the moment it was charged
    time: float
    #: position among all chat-completion requests (``ScriptCall.index``)
    seq: int
    model: str
    #: "tools", "json_schema", "json_object", "text", or "" when the body could not be read
    mode: str
    #: the status line sent; 499 when none was (a hang, or the client left, or the server stopped)
    status: int
    #: the first 200 characters of the user text
    text: str
    #: ``hash()`` of the whole user text (this process only): tells texts with equal prefixes apart
    text_hash: int
    #: what went wrong on purpose, "" for nothing: "rate_limit" (a 429 from the limits),
    #: "context_length" (a 400: the prompt and max_tokens do not fit the window), "malformed",
    #: "invalid", "bad_arguments", "server_error", "reset", "hang", "trickle", "bad_body" (random or
    #: scripted)
    fault: str = ""
    #: tokens charged against the limits (prompt + max_tokens, or + the answer's tokens); 0 for a
    #: request that was not charged (refused with 429, refused for the context window, or rejected as
    #: a bad request). Counted whether or not a limit is set, so a test can check a client's own
    #: limiter with ``overdraft``.
    tokens: int = 0
