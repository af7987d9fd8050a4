"""Provider batches in the simulator: what OpenAI Batch and Anthropic Message Batches have in common.

A batch lives ``SimConfig.batch_seconds`` of real time, from creation to its end, and goes through
the phases of an OpenAI batch on the way (Anthropic's coarser statuses are read from the same
phases). Its reported timestamps run faster than real time: the span stands for an hour, or for the
whole 24 h window when some of its lines expire, so that ``expired_at`` is ``expires_at``.

Everything random about a batch (which lines expire, which were answered before a cancel, the order
of its results) is drawn from the seed and the batch's number. The answers are computed once, when
the batch is first seen at its end, each line through :meth:`SimCore.reply` with ``batch=True``: the
seeded faults that change a body (server errors, invalid and malformed answers) apply to lines as to
online requests, while latency, online rate limits and transport faults do not.

Batches are never counted in the online counters, the request log or the rate limits: the store
keeps its own counters, which the server adds to :class:`~corral.sim.config.SimStats`.
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, TypeVar

from corral.sim.config import SimConfig
from corral.sim.core import SimCore
from corral.sim.openai import SimRequest

__all__ = ["BatchLine", "BatchStore", "BatchView", "LineOutcome", "Phase", "SimBatch", "Wire", "shuffled"]

Wire = Literal["openai", "anthropic"]
#: OpenAI's statuses, which are the finer ones; Anthropic's are read from them
Phase = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
OutcomeKind = Literal["succeeded", "errored", "expired", "canceled"]
_T = TypeVar("_T")

#: the completion window, in reported seconds
WINDOW_S = 24 * 3600
#: reported length of a batch none of whose lines expire
_QUICK_SPAN_S = 3600
#: shares of the span: validation ends, then processing; the rest is finalizing
_VALIDATED = 0.1
_PROCESSED = 0.9
#: share of the span a cancel takes to stop the batch
_CANCEL_DELAY = 0.05


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request of a batch, as accepted at creation."""

    custom_id: str
    #: None: the body is one the API refuses (the line is answered with ``rejected``, a 400 body)
    request: SimRequest | None
    rejected: bytes = b""
    #: the status a refused line is answered with (a 403 for logprobs a model does not give)
    status: int = 400


class LineOutcome(NamedTuple):
    """How one line ended."""

    #: position of the line in the batch's input (0-based)
    line: int
    custom_id: str
    kind: OutcomeKind
    #: the HTTP status of the answer; 0 for a line never answered (expired, canceled)
    status: int
    #: the reply or error body, in the line's wire format; b"" for a line never answered
    body: bytes
    #: the request's number among all the simulator answered (for ids); -1 when not answered
    seq: int


@dataclass(frozen=True, slots=True)
class BatchView:
    """A created batch, as tests read it from ``Simulator.batches``."""

    id: str
    wire: Wire
    #: the phase now (OpenAI's words; Anthropic reports in_progress, canceling or ended for them)
    phase: Phase
    #: the one model of an OpenAI batch's lines (None: a failed file, or an Anthropic batch)
    model: str | None
    #: every line's custom_id, in input order
    custom_ids: tuple[str, ...]


@dataclass(slots=True)
class SimBatch:
    """One batch and its clock. ``outcomes`` is filled once, at its end."""

    id: str
    wire: Wire
    number: int
    lines: list[BatchLine]
    model: str | None
    #: ``time.monotonic()`` at creation, and the span in real seconds
    created: float
    seconds: float
    #: reported creation time (Unix seconds) and how many reported seconds the span stands for
    created_at: float
    span_s: float
    #: lines the window closes on (positions)
    expired: frozenset[int]
    #: the order in which lines are answered: a cancel stops after a prefix of it
    order: list[int]
    #: file validation errors (OpenAI): the batch fails instead of running
    errors: list[dict[str, object]] = field(default_factory=list)
    #: real time of the cancel request, and the share of the span that had passed then
    cancel_at: float | None = None
    cancel_fraction: float = 0.0
    outcomes: list[LineOutcome] | None = None

    def fraction(self, now: float) -> float:
        """The share of the span that has passed at ``now`` (inf for a batch that ends at once)."""
        if self.seconds <= 0:
            return math.inf
        return (now - self.created) / self.seconds

    def phase(self, now: float) -> Phase:
        at = self.fraction(now)
        if self.errors:
            return "failed" if at >= _VALIDATED else "validating"
        if self.cancel_at is not None:
            return "cancelled" if at >= self.cancel_fraction + _CANCEL_DELAY else "cancelling"
        if at < _VALIDATED:
            return "validating"
        if at < _PROCESSED:
            return "in_progress"
        if at < 1:
            return "finalizing"
        return "expired" if self.expired else "completed"

    @property
    def ends(self) -> float:
        """The share of the span at which the batch ends (as things stand)."""
        if self.errors:
            return _VALIDATED
        if self.cancel_at is not None:
            return self.cancel_fraction + _CANCEL_DELAY
        return 1.0

    def reported(self, fraction: float) -> float:
        """The reported time (Unix seconds) of a moment given as a share of the span."""
        return self.created_at + min(fraction, 1.0) * self.span_s

    def moments(self, now: float) -> dict[str, float | None]:
        """Reported times of the phases reached by ``now``, by OpenAI's field name (None: not yet)."""
        at = self.fraction(now)
        phase = self.phase(now)
        ends = self.ends

        def when(fraction: float, reached: bool = True) -> float | None:
            return self.reported(fraction) if reached and at >= fraction else None

        terminal = phase in ("failed", "completed", "expired", "cancelled")
        cancel = self.cancel_fraction if self.cancel_at is not None else math.inf
        return {
            "in_progress_at": when(_VALIDATED, not self.errors and cancel > _VALIDATED),
            "finalizing_at": when(_PROCESSED, not self.errors and cancel > _PROCESSED),
            "failed_at": when(ends, phase == "failed"),
            "completed_at": when(ends, phase == "completed"),
            "expired_at": when(ends, phase == "expired"),
            "cancelling_at": self.reported(cancel) if self.cancel_at is not None else None,
            "cancelled_at": when(ends, phase == "cancelled"),
            "ended_at": self.reported(ends) if terminal else None,
        }


def shuffled(items: Sequence[_T], rng: random.Random) -> list[_T]:
    """``items`` in a random order that is never the given one (when there are two or more)."""
    order = list(range(len(items)))
    rng.shuffle(order)
    if len(order) > 1 and all(i == at for at, i in enumerate(order)):
        order.append(order.pop(0))  # a rotation is never the identity
    return [items[i] for i in order]


class BatchStore:
    """Every batch of one simulator, and the answering of their lines through its core."""

    def __init__(self, core: SimCore, config: SimConfig) -> None:
        self._core = core
        self._config = config
        self._tag = secrets.token_hex(3)  # ids differ between simulator runs, like real ones
        self._batches: list[SimBatch] = []
        self._ids = 0
        #: counters since start or the last reset (``SimStats.batches``, ``batch_lines``,
        #: ``batch_api_errors``)
        self.created = 0
        self.answered = 0
        self.api_errors = 0

    @property
    def config(self) -> SimConfig:
        return self._config

    def new_id(self, prefix: str) -> str:
        """A fresh id such as ``batch_sim1a2b3c00000007`` (unique within this simulator)."""
        self._ids += 1
        return f"{prefix}sim{self._tag}{self._ids:08x}"

    def create(
        self,
        wire: Wire,
        batch_id: str,
        lines: list[BatchLine],
        *,
        model: str | None = None,
        errors: list[dict[str, object]] | None = None,
    ) -> SimBatch:
        number = len(self._batches)
        rng = random.Random(f"batch:{self._config.seed}:{number}")
        rate = self._config.batch_expire_rate
        expired = frozenset(i for i in range(len(lines)) if rng.random() < rate) if rate else frozenset()
        order = list(range(len(lines)))
        rng.shuffle(order)
        batch = SimBatch(
            id=batch_id,
            wire=wire,
            number=number,
            lines=lines,
            model=model,
            created=time.monotonic(),
            seconds=self._config.batch_seconds,
            created_at=time.time(),
            span_s=WINDOW_S if expired else _QUICK_SPAN_S,
            expired=expired,
            order=order,
            errors=errors or [],
        )
        self._batches.append(batch)
        self.created += 1
        return batch

    def cancel(self, batch: SimBatch, now: float) -> bool:
        """Ask ``batch`` to stop; False when it has already ended (or failed). A repeat is a no-op."""
        if batch.cancel_at is not None:
            return batch.phase(now) == "cancelling"
        if batch.phase(now) not in ("validating", "in_progress", "finalizing"):
            return False
        batch.cancel_at = now
        batch.cancel_fraction = batch.fraction(now)
        return True

    def settle(self, batch: SimBatch, now: float) -> list[LineOutcome] | None:
        """The outcomes of a batch that has ended (computed on the first call); None before its end."""
        if batch.outcomes is not None:
            return batch.outcomes
        if batch.phase(now) not in ("completed", "expired", "cancelled"):
            return None
        stopped: set[int] = set()
        if batch.cancel_at is not None:
            # Lines are answered evenly while in progress: the share done when the cancel came.
            done = min(1.0, max(0.0, (batch.cancel_fraction - _VALIDATED) / (_PROCESSED - _VALIDATED)))
            stopped = set(batch.order[round(done * len(batch.lines)) :])
        outcomes: list[LineOutcome] = []
        core = self._core
        at = time.monotonic()
        for i, line in enumerate(batch.lines):
            if i in stopped:
                outcomes.append(LineOutcome(i, line.custom_id, "canceled", 0, b"", -1))
            elif i in batch.expired:
                outcomes.append(LineOutcome(i, line.custom_id, "expired", 0, b"", -1))
            elif line.request is None:
                outcomes.append(LineOutcome(i, line.custom_id, "errored", line.status, line.rejected, -1))
            else:
                # A number from the core's sequence keeps reply ids and ScriptCall.index unique,
                # without counting the line as an online request.
                index = core.index
                core.index += 1
                out = core.reply(line.request, index, at, batch=True)
                kind: OutcomeKind = "succeeded" if out.status < 400 else "errored"
                outcomes.append(LineOutcome(i, line.custom_id, kind, out.status, out.body, index))
                self.answered += 1
        batch.outcomes = outcomes
        return outcomes

    def order_rng(self, batch: SimBatch) -> random.Random:
        """The random stream that orders a batch's results."""
        return random.Random(f"batch-order:{self._config.seed}:{batch.number}")

    def views(self) -> list[BatchView]:
        now = time.monotonic()
        return [
            BatchView(b.id, b.wire, b.phase(now), b.model, tuple(line.custom_id for line in b.lines))
            for b in list(self._batches)
        ]

    def reset(self) -> None:
        """Zero the counters (the batches themselves stay, as a provider's would)."""
        self.created = 0
        self.answered = 0
        self.api_errors = 0
