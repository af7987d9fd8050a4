"""One pass of a run over its input, as the command line asks for it: the extractor from the flags,
the items, the progress display, and the durable run under them (``corral run`` and the online
passes of ``--batch``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from corral._extractor import Extractor
from corral.backends import Backend
from corral.cli._progress import choose_display, show_progress
from corral.cost import Budget, Price
from corral.engine._stats import RunCounters
from corral.io.items import count_items, read_items
from corral.io.sinks import open_sink
from corral.jobs import JobResult, run_job
from corral.store import JobInfo, RunStore
from corral.store._cache import ResponseCache
from corral.types import Item, Outcome

__all__ = ["build_extractor", "items_of", "run_pass"]


def build_extractor(
    args: argparse.Namespace,
    *,
    backend: Backend | None = None,
    cache: ResponseCache | None,
    prices: Mapping[str, Price] | None,
    budget: Budget | None,
) -> Extractor[Any]:
    """The extractor ``corral run``'s options describe (``backend``: one already opened)."""
    return Extractor(
        args.schema,
        model=args.model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        allow_plain_http=getattr(args, "allow_plain_http", False),
        backend=backend,
        mode=args.mode,
        prompt=args.prompt,
        max_retries=args.max_retries,
        max_tokens=args.max_tokens,
        reasoning_effort=getattr(args, "reasoning_effort", None),
        concurrency=args.concurrency,
        timeout=args.timeout,
        many=args.many,
        rpm=args.rpm,
        tpm=args.tpm,
        adaptive=not args.no_adaptive,
        retries=args.retries,
        cache=cache,
        prices=prices,
        budget=budget,
    )


async def run_pass(
    args: argparse.Namespace,
    *,
    extractor: Extractor[Any],
    items: Iterator[Any],
    job: JobInfo | None,
    store: RunStore | None,
    out_format: Any,
    counters: RunCounters,
) -> JobResult:
    """One pass over the input into a freshly written output, with progress on stderr."""
    stats = extractor.scheduler.stats
    priced = extractor.scheduler.price is not None
    spent_before = job.spent_before if job is not None else 0.0

    def refresh() -> None:
        counters.requests, counters.retries = stats.requests, stats.retries
        counters.rate_limited, counters.in_flight, counters.cached = (
            stats.rate_limited,
            stats.in_flight,
            stats.cached,
        )
        counters.batched, counters.batch_failed = stats.batched, stats.batch_failed
        counters.cost = stats.cost if priced else None
        counters.job_cost = spent_before + stats.cost if priced and job is not None else None

    def report(outcome: Outcome[Any]) -> None:
        if outcome.error is not None and outcome.error.kind == "input" and not outcome.reused:
            print(f"corral: skipped {outcome.error.message}", file=sys.stderr)

    counting = asyncio.create_task(_count_total(args, counters))
    display = choose_display(quiet=args.quiet, stream=sys.stderr)
    with open_sink(
        args.output, out_format, extractor.spec, csv_formulas=getattr(args, "csv_formulas", False)
    ) as sink:
        try:
            async with show_progress(
                counters, mode=display, stream=sys.stderr, interval=args.status_every, refresh=refresh
            ):
                return await run_job(
                    extractor,
                    items,
                    sink,
                    counters,
                    store=store,
                    job=job,
                    strategy=args.strategy,
                    order=args.order,
                    retry_errors=args.retry_errors,
                    on_outcome=report,
                )
        finally:
            counting.cancel()
            refresh()


async def _count_total(args: argparse.Namespace, counters: RunCounters) -> None:
    # Counted off the event loop: a million-line file takes a moment, and the run starts meanwhile.
    counters.total = await asyncio.to_thread(count_items, args.input, format=args.format)


def items_of(args: argparse.Namespace) -> Iterator[Item]:
    """The input the command line names, as items (read lazily, from the start)."""
    return read_items(args.input, format=args.format, text_field=args.text_field, id_field=args.id_field)
