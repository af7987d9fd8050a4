"""One pass of an opened job over its input with progress on stderr (``corral run`` and the online
passes of ``--batch``)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from corral.cli._progress import choose_display, show_progress
from corral.documents import DocumentCounts, run_documents
from corral.engine._stats import RunStats
from corral.io.items import count_items, is_documents
from corral.jobs import Job, JobResult, JobSpec
from corral.types import Outcome

__all__ = ["run_pass"]


async def run_pass(
    job: Job,
    stats: RunStats,
    *,
    quiet: bool,
    status_every: float,
    documents: DocumentCounts | None = None,
) -> JobResult:
    """One pass over the input into a freshly written output, counted into ``stats`` (the same
    object for every pass of a run), with progress on stderr; long texts and documents chunked,
    merged and grounded (counted into ``documents``)."""

    def report(outcome: Outcome[Any]) -> None:
        if outcome.error is not None and outcome.error.kind == "input" and not outcome.reused:
            print(f"corral: skipped {outcome.error.message}", file=sys.stderr)

    counting = asyncio.create_task(_count_total(job.spec, stats))
    display = choose_display(quiet=quiet, stream=sys.stderr)
    items = job.items()  # read before the output is rewritten: a bad input leaves it as it was
    try:
        async with show_progress(stats, mode=display, stream=sys.stderr, interval=status_every):
            # The output is opened (rewritten) once the document options are known to work.
            return await run_documents(job, items, counters=stats, documents=documents, on_outcome=report)
    finally:
        counting.cancel()


async def _count_total(spec: JobSpec, stats: RunStats) -> None:
    # Counted off the event loop: a million-line file takes a moment, and the run starts meanwhile.
    # A document's chunks are its items: their number is known as each is cut, not before.
    if spec.input is not None and not (spec.input_format == "documents" or is_documents(spec.input)):
        stats.total = await asyncio.to_thread(count_items, spec.input, format=spec.input_format)
