"""``corral run``: read a dataset, extract every item durably, write the output, show progress.

Everything that can be refused is checked before the output is touched: the input, the output
file and the ``--report`` file (never overwrite what is not ours, nor the input), the run store
(corrupt, foreign, another job's settings), the prices when a cost cap is set. Then the output is
rewritten from the start: items finished by an earlier run come from the store, the rest are extracted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from corral.backends import Backend, Mode
from corral.cache import ResponseCache
from corral.client import Extractor
from corral.cost import Budget, Price, load_prices
from corral.engine import ORDERS, STRATEGIES
from corral.errors import ConfigError, CorralError
from corral.items import FORMATS, count_items, read_items
from corral.jobs import JobResult, run_job
from corral.outcome import Item, Outcome
from corral.progress import RunCounters, choose_display, show_progress, summary_line
from corral.sinks import SINK_FORMATS, check_output, open_sink, sink_format
from corral.store import DEFAULT_DIR, STORE_FILE, JobInfo, RunStore

__all__ = [
    "add_limit_arguments",
    "add_request_arguments",
    "add_run_arguments",
    "build_extractor",
    "cmd_run",
    "items_of",
    "job_name",
    "job_settings",
    "non_negative_int",
    "positive_int",
    "report_latest",
    "report_run",
    "run_pass",
    "stop_on_signals",
    "store_path",
]

#: names the store file (or directory) for every run, like --store
STORE_ENV = "CORRAL_STORE"


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


def add_request_arguments(group: argparse._ActionsContainer) -> None:
    """How each request is made and retried (``corral run`` and ``corral serve``)."""
    group.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=2,
        metavar="N",
        help="re-ask up to N times when a reply does not validate (default 2)",
    )
    group.add_argument(
        "--reasoning-effort",
        choices=["none", "minimal", "low", "medium", "high"],
        help="how long a reasoning model (o-series, gpt-5 family) thinks before it answers; "
        "default: the model's own (what each model accepts varies: gpt-5 takes minimal, gpt-5.1 none)",
    )
    group.add_argument(
        "--max-tokens",
        type=positive_int,
        default=1024,
        metavar="N",
        help="reply token limit per request (default 1024)",
    )
    group.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS", help="per request (default 120)"
    )
    group.add_argument(
        "--retries",
        type=non_negative_int,
        default=6,
        metavar="N",
        help="per item: retry 429s, 5xx, timeouts and dropped connections up to N times (default 6)",
    )


def add_limit_arguments(group: argparse._ActionsContainer) -> None:
    """The provider's limits (``corral run`` and ``corral serve``)."""
    group.add_argument("--rpm", type=float, metavar="N", help="the provider's requests-per-minute limit")
    group.add_argument("--tpm", type=float, metavar="N", help="the provider's tokens-per-minute limit")
    group.add_argument(
        "--no-adaptive",
        action="store_true",
        help="without --rpm/--tpm or rate-limit headers, do not slow down on 429s (only back off)",
    )


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


async def cmd_run(args: argparse.Namespace) -> int:
    if args.report:
        _check_report_target(args)
    if args.ray is not None:
        from corral.cli_ray import run_with_ray  # here: cli_ray builds on this module

        return await run_with_ray(args)
    if args.batch:
        from corral.cli_batch import run_batches  # here: cli_batch builds on this module

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


def store_path(output: str | None, explicit: str | None) -> Path:
    chosen = explicit or os.environ.get(STORE_ENV)
    if chosen:
        return Path(chosen)
    beside = Path(output).parent if output and output != "-" else Path.cwd()
    return beside / DEFAULT_DIR / STORE_FILE


def job_name(output: str | None, source: str, *, store: str | None) -> str:
    """What identifies a job in its store: its output (stdout: its input). ``store``: ``--store``."""
    explicit_store = bool(store or os.environ.get(STORE_ENV))
    if output and output != "-":
        path = Path(output)
        # Beside the output, the file name is enough, and survives moving the directory.
        return str(path.resolve()) if explicit_store else path.name
    return f"<stdout>:{'<stdin>' if source == '-' else Path(source).resolve()}"


def job_settings(extractor: Extractor[Any]) -> dict[str, Any]:
    """What must not change between runs of one job: their results would not belong together."""
    spec = extractor.spec
    schema_hash = hashlib.sha256(spec.schema_json.encode()).hexdigest()[:12]
    return {
        "model": f"{extractor.backend.profile.name}/{extractor.backend.model}",
        "schema": f"{spec.name} #{schema_hash}",
        "prompt": extractor.settings.instruction,
        "mode": extractor.settings.mode.value,
        "many": spec.many,
    }


def items_of(args: argparse.Namespace) -> Iterator[Item]:
    """The input the command line names, as items (read lazily, from the start)."""
    return read_items(args.input, format=args.format, text_field=args.text_field, id_field=args.id_field)


def report_latest(args: argparse.Namespace) -> None:
    """The report of the job's latest run (a batch job's runs are several, one per round)."""
    with RunStore.open(store_path(args.output, args.store)) as store:
        job = store.find_job(job_name(args.output, args.input, store=args.store))
        runs = store.query("SELECT MAX(id) FROM runs WHERE job = ?", (job.id,)) if job else []
        if runs and runs[0][0] is not None:
            report_run(store, int(runs[0][0]), args.report)


def _check_report_target(args: argparse.Namespace) -> None:
    """Refuse ``--report`` before the run starts when it names the input, the output, the store or
    a file corral did not write (the run would end with its report refused)."""
    from corral.cli_report import check_report  # the report is only built when asked for

    store = store_path(args.output, args.store)
    store_file = store / STORE_FILE if store.is_dir() else store
    others = {"the input": args.input, "the output": args.output, "the run store": str(store_file)}
    check_report(args.report, option="--report", others=others)


def report_run(store: RunStore, run: int, target: str) -> None:
    from corral.cli_report import write_report  # the report is only built when asked for

    try:
        write_report(store, run, Path(target), option="--report")
    except CorralError as exc:  # the run's own outcome (and exit code) matters more than its report
        print(f"corral: no report: {exc}", file=sys.stderr)


class _Stopping:
    def __init__(self) -> None:
        self.signal_name = ""

    def is_set(self) -> bool:
        return bool(self.signal_name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[_Stopping]:
    """Ctrl-C or SIGTERM cancels the run (every in-flight request) instead of killing the process,
    so finished records are committed and written and the summary printed. A second signal is not
    special: the first has already started the shutdown, which only waits for cancellations.

    The cancellation our own signal caused ends at this block (``stopping.is_set()`` says it came);
    any other cancellation goes on up."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stopping = _Stopping()

    def stop(name: str) -> None:
        if task is not None and not stopping.is_set():
            stopping.signal_name = name
            task.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop, sig.name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not POSIX
            continue
    try:
        yield stopping
    except asyncio.CancelledError:
        if not stopping.is_set() or task is None:
            raise
        task.uncancel()  # ours: every request is cancelled and the results kept
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
