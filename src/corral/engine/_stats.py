"""The counters of a run: the job updates them as items end; displays, the store's snapshots and
serve's status read them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["RunCounters"]


@dataclass(slots=True)
class RunCounters:
    """Live counters of one run; the job updates them, the display reads them."""

    total: int | None = None  # items in the input, once known (may stay None for stdin)
    done: int = 0  # items ended: ok + errors (includes reused)
    ok: int = 0
    errors: int = 0
    reused: int = 0  # answered from the run store (finished in an earlier run): no request
    cached: int = 0  # requests answered from the response cache: no request, no cost
    requests: int = 0  # requests sent to the provider by this run
    retries: int = 0
    rate_limited: int = 0
    in_flight: int = 0  # requests in flight now
    tokens: int = 0  # tokens of this run's answers (prompt + completion)
    cost: float | None = 0.0  # USD spent by this run; None when the model's price is unknown
    job_cost: float | None = None  # USD spent by the whole job across resumed runs (None: not tracked)
    kinds: dict[str, int] = field(default_factory=dict)  # errors by kind ("invalid_output": 3, ...)
    parked: int = 0  # items waiting for an answer from a provider batch (not done, not written)
    batched: int = 0  # answers taken from collected provider batches
    batch_failed: int = 0  # failed lines of collected provider batches (no answer)
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.started

    def rate(self) -> float:
        """Items per second of this run's own work; 0 before the first one ends.

        Reused items end instantly at start-up; counting them would promise a speed the remaining
        items cannot keep, and an ETA far too short.
        """
        fresh = self.done - self.reused
        elapsed = self.elapsed()
        return fresh / elapsed if fresh > 0 and elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the current rate; None while the total or the rate is unknown."""
        if self.total is None:
            return None
        left = max(self.total - self.done, 0)
        if left == 0:
            return 0.0
        rate = self.rate()
        return left / rate if rate > 0 else None
