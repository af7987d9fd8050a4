"""What a run keeps of its counters in the run store: its run row, and the points of its timeline.

Both are made from a frozen :meth:`~corral.engine._stats.RunStats.snapshot` of the run's one
counter object, taken when they are queued (a durable pass and the Ray driver write the same rows).
"""

from __future__ import annotations

import time

from corral.engine._stats import StatsSnapshot
from corral.store import JobInfo, Sample

__all__ = ["record_counters", "timeline_point"]


def record_counters(job: JobInfo, counts: StatsSnapshot) -> None:
    """The job's run row as of ``counts``, rewritten with the store's next batch."""
    job.counters.update(
        items=counts.done,
        ok=counts.ok,
        errors=counts.errors,
        reused=counts.reused,
        requests=counts.requests,
        cached=counts.cached,
        shared=counts.shared,
        retries=counts.retries,
        prompt_tokens=counts.prompt_tokens,
        completion_tokens=counts.completion_tokens,
        cost=counts.cost,
    )
    job.faults = dict(counts.faults)


def timeline_point(
    counts: StatsSnapshot, *, rpm: float | None, tpm: float | None, concurrency: int | None
) -> Sample:
    """A point of the run's timeline, now: its counters, and the limits it runs within."""
    return Sample(
        time=time.time(),
        done=counts.done,
        ok=counts.ok,
        errors=counts.errors,
        requests=counts.requests,
        retries=counts.retries,
        rate_limited=counts.rate_limited,
        in_flight=counts.in_flight,
        tokens=counts.tokens,
        cost=counts.cost,
        rpm=rpm,
        tpm=tpm,
        concurrency=concurrency,
    )
