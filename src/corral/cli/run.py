"""``corral run``: read a dataset, extract every item durably, write the output, show progress.

Everything that can be refused is checked before the output is touched: the input, the output
file and the ``--report`` file (never overwrite what is not ours, nor the input), the run store
(corrupt, foreign, another job's settings), the prices when a cost cap is set. Then the output is
rewritten from the start: items finished by an earlier run come from the store, the rest are extracted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from corral._extractor import Extractor
from corral.backends import Mode
from corral.cli._options import add_limit_arguments, add_request_arguments, non_negative_int, positive_int
from corral.cli._pass import build_extractor, items_of, run_pass
from corral.cli._progress import summary_line
from corral.cli._signals import stop_on_signals
from corral.cli.report import check_report_target, report_latest, report_run
from corral.cost import Budget, load_prices
from corral.engine._stats import RunCounters
from corral.engine._strategies import ORDERS, STRATEGIES
from corral.errors import ConfigError
from corral.io.items import FORMATS
from corral.io.sinks import SINK_FORMATS, check_output, sink_format
from corral.jobs import STORE_ENV, JobResult, job_name, job_settings, store_path
from corral.store import DEFAULT_DIR, JobInfo, RunStore
from corral.store._cache import ResponseCache

__all__ = ["add_run_arguments", "cmd_run"]


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """Every ``corral run`` option except the model target (shared with ``bench``)."""
    run.add_argument("--prompt", metavar="TEXT", help="the instruction sent as the system message")
    run.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        help="how the schema goes on the wire (default: the backend's preferred mode)",
    )
    run.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="as_completed",
        help="sequential, gather (all at the end) or as_completed (streaming; default)",
    )
    run.add_argument(
        "--concurrency",
        type=positive_int,
        default=16,
        metavar="N",
        help="at most N requests at once (default 16)",
    )
    run.add_argument(
        "--order",
        choices=ORDERS,
        default="input",
        help="write results in input order (default) or as they complete",
    )
    add_request_arguments(run)
    add_limit_arguments(run)
    run.add_argument("--text-field", default="text", metavar="NAME", help="JSONL/CSV field with the text")
    run.add_argument("--id-field", default="id", metavar="NAME", help="JSONL/CSV field with the item id")
    run.add_argument(
        "--format", choices=sorted(set(FORMATS.values())), help="input format when the extension does not say"
    )
    run.add_argument("-o", "--output", metavar="OUT", help="output file: .jsonl (default), .csv or .parquet")
    run.add_argument(
        "--output-format", choices=SINK_FORMATS, help="output format when the extension does not say"
    )
    run.add_argument(
        "--csv-formulas",
        action="store_true",
        help="write CSV cells that begin with = + - @ (a spreadsheet formula) as they are; by default "
        "they get a leading ' so that no spreadsheet runs text that came from outside",
    )

    durable = run.add_argument_group("durability and cost")
    durable.add_argument(
        "--store",
        metavar="PATH",
        help=f"run store (SQLite) file or directory (default: {DEFAULT_DIR}/ beside the output, "
        f"or ${STORE_ENV})",
    )
    durable.add_argument("--no-store", action="store_true", help="keep no store: no resume, no cache")
    durable.add_argument(
        "--fresh", action="store_true", help="forget this output's earlier results and start over"
    )
    durable.add_argument(
        "--no-cache", action="store_true", help="send every request, even one answered before"
    )
    durable.add_argument(
        "--retry-errors", action="store_true", help="extract again the items that ended in error last time"
    )
    durable.add_argument(
        "--max-cost",
        type=float,
        metavar="USD",
        help="stop starting requests before the job (all its runs) would spend more than this",
    )
    durable.add_argument(
        "--report",
        metavar="FILE.html",
        help="when the run ends, write its report there (as `corral report` does)",
    )
    durable.add_argument(
        "--prices",
        metavar="FILE",
        help='JSON prices per million tokens: {"MODEL": {"input": 0.15, "output": 0.6}}',
    )
    batch = run.add_argument_group("provider batch API (half price, answered within 24 h)")
    batch.add_argument(
        "--batch",
        action="store_true",
        help="send the requests as OpenAI / Anthropic batches and wait for them (see `corral batch`)",
    )
    batch.add_argument(
        "--batch-retries",
        type=non_negative_int,
        default=2,
        metavar="N",
        help="resubmit a line that errored or expired in up to N follow-up batches (default 2)",
    )
    batch.add_argument(
        "--reask-online",
        action="store_true",
        help="re-ask invalid answers and resubmit failed lines online (full price, no wait)",
    )
    batch.add_argument(
        "--poll-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="first wait between batch status checks; it grows to 5 minutes (default 10)",
    )
    batch.add_argument(
        "--batch-token-limit",
        type=positive_int,
        metavar="TOKENS",
        help="the provider's enqueued-token limit: batches are cut to fit under it and the rest waits "
        "for running batches to end (default: learned when a batch fails with token_limit_exceeded)",
    )
    batch.add_argument(
        "--lost-batches",
        choices=["resubmit", "wait"],
        default="resubmit",
        help="a batch whose creation answer was lost and that cannot be found again (Anthropic "
        "batches carry no label): resubmit its requests (they may be paid twice), or wait and say so",
    )
    scale = run.add_argument_group("scale out on a Ray cluster (the ray extra)")
    scale.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run on Ray: the cluster at ADDRESS (e.g. ray://head:10001 or auto), or without one a Ray of "
        "this machine's own; the --rpm/--tpm limits are kept by all workers together",
    )
    scale.add_argument(
        "--ray-workers",
        type=positive_int,
        default=2,
        metavar="N",
        help="Ray workers, each with --concurrency requests in flight (default 2)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary on stderr")
    run.add_argument(
        "--status-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="when stderr is not a terminal: a status line this often (default 10)",
    )


async def cmd_run(args: argparse.Namespace) -> int:
    if args.report:
        check_report_target(args)
    if args.ray is not None:
        from corral.cli._ray import run_with_ray  # here: cli_ray builds on this module

        return await run_with_ray(args)
    if args.batch:
        from corral.cli.batch import run_batches  # here: cli_batch builds on this module

        code = await run_batches(args, wait=True)
        if args.report:
            report_latest(args)
        return code
    items = items_of(args)
    out_format = sink_format(args.output, args.output_format)
    check_output(args.output, out_format, source=args.input)
    if args.no_store and (args.fresh or args.retry_errors or args.report):
        raise ConfigError("--fresh, --retry-errors and --report need the run store: drop --no-store")
    prices = load_prices(args.prices) if args.prices else None
    budget = Budget(args.max_cost) if args.max_cost is not None else None
    store = None if args.no_store else RunStore.open(store_path(args.output, args.store))
    with contextlib.ExitStack() as cleanup:
        if store is not None:
            cleanup.callback(store.close)
        cache = ResponseCache(store, read=not args.retry_errors) if store and not args.no_cache else None
        extractor = build_extractor(args, cache=cache, prices=prices, budget=budget)
        async with extractor:
            job = None
            if store is not None:
                name = job_name(args.output, args.input, store=args.store)
                job = store.open_job(name, job_settings(extractor), fresh=args.fresh)
                if budget is not None:
                    budget.spent = job.spent_before
            try:
                return await _run(
                    args, extractor=extractor, items=items, job=job, store=store, out_format=out_format
                )
            finally:
                if args.report and store is not None and job is not None:
                    report_run(store, job.run, args.report)
    raise AssertionError("unreachable")  # pragma: no cover -- the with block returns


async def _run(
    args: argparse.Namespace,
    *,
    extractor: Extractor[Any],
    items: Iterator[Any],
    job: JobInfo | None,
    store: RunStore | None,
    out_format: Any,
) -> int:
    counters = RunCounters()
    result = JobResult("failed")
    with stop_on_signals() as stopping:
        result = await run_pass(
            args,
            extractor=extractor,
            items=items,
            job=job,
            store=store,
            out_format=out_format,
            counters=counters,
        )
    if stopping.is_set():
        resume = " — re-run the same command to finish" if job is not None else ""
        print(f"corral: interrupted ({stopping.signal_name}){resume}", file=sys.stderr)
        print(summary_line(counters), file=sys.stderr)
        return 130
    if not args.quiet:
        print(summary_line(counters), file=sys.stderr)
    if result.status == "budget":
        print(
            f"corral: stopped: {result.budget_message}. {result.not_started:,} items pulled from the "
            "input did not start; re-run with a higher --max-cost to finish the job",
            file=sys.stderr,
        )
        return 1
    return 1 if counters.errors else 0
