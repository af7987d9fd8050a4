"""corral's exceptions, split by who has to act.

    CorralError
    ├── UsageError            you, the caller: fix the command, the schema, the input or the set-up
    │   ├── SchemaError           the response model / JSON Schema cannot be loaded or used
    │   ├── InputError            an input file or row is unreadable (names file and line)
    │   ├── ConfigError           missing key, unknown model prefix, extra not installed
    │   ├── StoreError            the run store is corrupt, not corral's, or holds a different job
    │   └── OutputError           the output file is not corral's, or cannot be written (disk full)
    ├── ProviderError         the provider answered with a failure (carries status, body, headers)
    │   ├── RateLimited           429 — slow down (carries retry_after)
    │   ├── ServerError           5xx / overloaded — try again later
    │   ├── TransportError        timeout, reset, truncated body — try again
    │   ├── BadRequest            400 / 422 — this request will never succeed as sent
    │   │   ├── UnsupportedParameter  a field this model refuses — stops the run: no request can succeed
    │   │   └── ModeRefused           the server lacks this structured-output mode — the next is tried
    │   ├── AuthError             401 / 403 — stops the run: the key is wrong or lacks access
    │   ├── ModelNotFound         404 for the model — stops the run: the model name is wrong
    │   ├── BatchExpired          a batch ended (expired) before answering this request — resubmit
    │   └── BatchCanceled         the batch was cancelled before answering this request
    ├── ItemError             the item itself failed: no valid output after every re-ask
    │   └── OutputInvalid         one reply that did not parse or validate (carries the problems)
    └── BudgetReached         the next request would take the job past --max-cost: nothing more starts

Each ProviderError subclass says as data whether retrying can help (``retryable``) and whether it
dooms every other item too (``fatal``), so schedulers never branch on status codes themselves.
Provider and SDK exceptions are translated into these at the backend boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "AuthError",
    "BadRequest",
    "BatchCanceled",
    "BatchExpired",
    "BudgetReached",
    "ConfigError",
    "CorralError",
    "InputError",
    "InputTooLong",
    "ItemError",
    "ModeRefused",
    "ModelNotFound",
    "OutputError",
    "OutputInvalid",
    "ProviderError",
    "RateLimited",
    "SchemaError",
    "ServerError",
    "StoreError",
    "TransportError",
    "UnsupportedParameter",
    "UsageError",
]


class CorralError(Exception):
    """Base of every error corral raises on purpose."""

    #: short, stable name used in output records (``error.kind``)
    kind: str = "error"


# --- the user's mistake ----------------------------------------------------------------------


class UsageError(CorralError):
    """Something the caller must fix before corral can run."""

    kind = "usage"


class SchemaError(UsageError):
    """The response model or JSON Schema cannot be loaded or used."""

    kind = "schema"


class InputError(UsageError):
    """An input file, or one row of it, cannot be read. The message names the file and line."""

    kind = "input"

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class ConfigError(UsageError):
    """Missing API key, unknown model prefix, optional extra not installed, bad option value."""

    kind = "config"


class StoreError(UsageError):
    """The run store cannot be used: corrupt, not a corral store, newer than this corral, or it holds
    a job started with a different schema, prompt or model. The message says which, and the way out
    (``--fresh``, another ``--store``)."""

    kind = "store"


class OutputError(UsageError):
    """The output file cannot be written: it is not a corral output (never overwritten), its directory
    is missing, or the disk is full. Results already finished stay in the run store."""

    kind = "output"


# --- the provider's answer -------------------------------------------------------------------


class ProviderError(CorralError):
    """The provider answered with an error (or the transport to it failed)."""

    kind = "provider"
    #: retrying the same request later may succeed
    retryable: bool = False
    #: every other request will fail the same way: stop the whole run
    fatal: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        #: seconds the provider asked us to wait (``retry-after`` / ``retry-after-ms``), if it said
        self.retry_after = retry_after
        self.body = body
        self.headers: Mapping[str, str] = headers or {}
        #: the provider's rate-limit headers parsed by the backend (a ``RateLimitInfo``), if any
        self.rate_limits: object | None = None
        #: requests sent for this item before giving up with this error
        self.attempts = 1


class RateLimited(ProviderError):
    """429: the provider's rate limit was hit."""

    kind = "rate_limited"
    retryable = True


class ServerError(ProviderError):
    """5xx or 'overloaded': the provider failed; a later try may succeed."""

    kind = "server_error"
    retryable = True

    @property
    def overloaded(self) -> bool:
        """503/529: the provider asks everyone to slow down, as a 429 does."""
        return self.status in (503, 529)


class TransportError(ProviderError):
    """Timeout, connection refused or reset, truncated or unreadable body."""

    kind = "transport"
    retryable = True

    def __init__(self, message: str, *, connect: bool = False) -> None:
        super().__init__(message)
        #: the connection could not even be opened (refused, unknown host): maybe the wrong URL
        self.connect = connect


class BadRequest(ProviderError):
    """400/422: the provider rejected this request; sending it again cannot help."""

    kind = "bad_request"


class InputTooLong(BadRequest):
    """The request does not fit the model's context window (``context_length_exceeded``, Anthropic's
    "prompt is too long"): this item's text is too long for the model. Sending it again cannot help;
    cut it into chunks (corral does, unless chunking is turned off) or use a model with a larger window."""

    kind = "too_long"


class UnsupportedParameter(BadRequest):
    """400 naming a request field the model refuses (``unsupported_parameter`` / ``unsupported_value``):
    every request carries it, so every one would fail the same way. Stops the run."""

    kind = "unsupported_parameter"
    fatal = True


class ModeRefused(BadRequest):
    """The server refuses the structured-output mode itself (``response_format: json_schema``, tools),
    whatever the status it says it with (llama.cpp's servers answer 500 with a validation error).
    Not retried: the extractor moves on to the next mode the backend's profile allows."""

    kind = "mode_refused"


class AuthError(ProviderError):
    """401/403: the key is missing, wrong or lacks access. Stops the run."""

    kind = "auth"
    fatal = True


class ModelNotFound(ProviderError):
    """The provider does not know the model. Stops the run."""

    kind = "model_not_found"
    fatal = True


class BatchExpired(ProviderError):
    """A provider batch reached its completion window (24 h) before answering this request.

    Retryable: corral resubmits it in a follow-up batch (``--batch-retries``)."""

    kind = "expired"
    retryable = True


class BatchCanceled(ProviderError):
    """The batch holding this request was cancelled (``corral batch cancel``) before it was answered.

    Not retried: cancelling said to stop; ``--retry-errors`` asks again."""

    kind = "canceled"


# --- the item's own failure ------------------------------------------------------------------


class ItemError(CorralError):
    """One item could not be extracted; the rest of the batch goes on."""

    kind = "item"


class OutputInvalid(ItemError):
    """A reply that is not valid JSON, or does not match the schema. ``problems`` lists why."""

    kind = "invalid_output"

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) or "invalid output")


# --- a limit the user set --------------------------------------------------------------------


class BudgetReached(CorralError):
    """The job has spent (or reserved) so much that the next request could take it past ``max_cost``.

    Requests already sent finish and are recorded; no new one starts. Re-running with a higher
    ``--max-cost`` continues the job where it stopped.
    """

    kind = "budget"

    def __init__(self, message: str, *, spent: float, limit: float) -> None:
        super().__init__(message)
        self.spent = spent
        self.limit = limit
