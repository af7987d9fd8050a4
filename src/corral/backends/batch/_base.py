"""The contract every provider batch API meets, in the terms corral needs.

A batch API takes many requests at once and answers them later (within 24 h) at half the online
price. corral builds each line with the same request builder as the online backend (one schema path),
hands the lines to :meth:`BatchAPI.submit`, polls :meth:`BatchAPI.status`, and reads the answers
with :meth:`BatchAPI.results`, matched by ``custom_id`` because providers return them in any order.

Line results are translated at this boundary, like online answers: a success is a
:class:`~corral.backends.base.Completion`, a failure a :class:`~corral.errors.ProviderError`
(``BatchExpired`` for a line the window closed on, ``BatchCanceled`` for one a cancel stopped).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from corral.backends.base import Completion
from corral.errors import ProviderError

__all__ = ["BatchAPI", "BatchLimits", "LineResult", "RemoteBatch"]


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """How much one batch may hold; a job is split into as many batches as these require."""

    max_requests: int
    max_bytes: int
    #: every line of a batch must name the same model (OpenAI)
    one_model: bool = False
    #: what a batch answer costs against the online price (both providers: half)
    price_factor: float = 0.5


@dataclass(slots=True)
class RemoteBatch:
    """A batch as the provider last described it."""

    id: str
    #: the provider's own word: validating, in_progress, finalizing, completed, failed, expired,
    #: cancelling, cancelled (OpenAI); in_progress, canceling, ended (Anthropic)
    status: str
    #: no more changes will come: results (if any) can be read
    done: bool
    #: lines by state as the provider counts them (total, completed, failed / succeeded, errored, ...)
    counts: dict[str, int] = field(default_factory=dict)
    #: why the whole batch failed (file validation errors), when it did
    errors: list[str] = field(default_factory=list)
    #: what results() needs beyond the id (output/error file ids, a results URL)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class LineResult:
    """The answer to one line: exactly one of ``completion`` and ``error`` is set."""

    custom_id: str
    completion: Completion | None = None
    error: ProviderError | None = None


class BatchAPI(Protocol):
    """One provider's batch endpoints, reached with the online backend's URL and key."""

    @property
    def limits(self) -> BatchLimits: ...

    @property
    def labels_batches(self) -> bool:
        """A batch carries a label of ours (OpenAI's metadata), so :meth:`find` is certain; without
        one (Anthropic) a batch not found may still exist."""
        ...

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        """One request as it goes into a batch (its size counts against ``limits.max_bytes``)."""
        ...

    async def submit(self, lines: list[bytes], *, label: str) -> RemoteBatch:
        """Create a batch from ``lines``; ``label`` is kept with it where the provider allows."""
        ...

    async def find(
        self, label: str, *, created: float, requests: int, known: frozenset[str] = frozenset()
    ) -> RemoteBatch | None:
        """The batch submitted with ``label`` (recorded at ``created``, wall clock, holding
        ``requests`` lines), when the provider can say; None when it cannot, or finds none. Batches
        whose ids are ``known`` (recorded in the store) are never it."""
        ...

    async def status(self, batch_id: str) -> RemoteBatch: ...

    def results(self, batch: RemoteBatch) -> AsyncIterator[LineResult]:
        """Every line's answer of a finished batch, in the provider's order (not the input's).

        Lines the provider never answered (a failed batch, a cancel) are not yielded: the caller
        knows what it submitted and treats the missing ones by the batch's status."""
        ...

    async def cancel(self, batch_id: str) -> RemoteBatch: ...
