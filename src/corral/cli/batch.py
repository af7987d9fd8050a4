"""``corral run --batch`` and ``corral batch submit | status | collect | cancel``.

A batch job is an ordinary job (one output, one row in the run store) whose requests travel in
provider batches. ``submit`` sends them and returns; ``collect`` waits, reads the answers, re-asks
what failed in follow-up batches and writes the output; ``run --batch`` does both. What ``collect``
needs to carry on — the input, the schema, the model, the options — is kept with the job in the run
store (never a key: only the name of the variable holding it; never a base URL's ``user:password@``:
those are given again with ``--base-url``), so it works in a new process, after a crash or a reboot,
with nothing but the output's name.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from corral._extractor import Extractor
from corral.backends import open_backend, resolve_model
from corral.cli._pass import build_extractor, items_of, run_pass
from corral.cli._progress import format_duration, summary_line
from corral.cli._signals import stop_on_signals
from corral.cost import Budget, load_prices
from corral.engine._scheduler import RunStats
from corral.engine._stats import RunCounters
from corral.errors import ConfigError, ProviderError, StoreError
from corral.io.sinks import check_output, sink_format
from corral.jobs import STORE_ENV, job_name, job_settings, store_path
from corral.jobs._batch import BatchBackend, batch_api_for
from corral.jobs._rounds import BatchInfo, BatchJob, Poll, batches_of
from corral.store import RunStore, without_credentials
from corral.store._cache import ResponseCache

__all__ = ["add_batch_commands", "run_batches"]

#: options of the submitting run that collect must reuse, and may not change
_KEPT = (
    "input", "schema", "many", "model", "base_url", "api_key_env", "allow_plain_http", "prompt", "mode",
    "strategy", "concurrency", "order", "max_retries", "max_tokens", "timeout", "rpm", "tpm", "retries",
    "no_adaptive", "text_field", "id_field", "format", "output", "output_format", "no_cache",
    "max_cost", "prices", "batch_retries", "reask_online", "batch_token_limit", "csv_formulas",
)  # fmt: skip


def add_batch_commands(batch: argparse.ArgumentParser, submit_arguments: Any) -> None:
    """``corral batch ...``; ``submit_arguments(parser)`` adds everything ``corral run`` takes."""
    commands = batch.add_subparsers(title="batch commands", required=True, metavar="COMMAND")
    submit = commands.add_parser("submit", help="submit a job's requests as provider batches and return")
    submit_arguments(submit)
    submit.set_defaults(handler=_cmd_submit)
    for name, handler, text in (
        ("status", _cmd_status, "show a job's batches and how far they are"),
        ("collect", _cmd_collect, "wait for a job's batches, re-ask what failed, write the output"),
        ("cancel", _cmd_cancel, "cancel a job's open batches (answers already given are kept)"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "-o", "--output", metavar="OUT", help="the job's output (default: the store's only batch job)"
        )
        command.add_argument(
            "--store", metavar="PATH", help=f"run store (default: beside OUT or here, or ${STORE_ENV})"
        )
        command.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary")
        command.add_argument(
            "--base-url",
            metavar="URL",
            help="the job's base URL again, when it has a user:password@ (the run store keeps it without)",
        )
        command.add_argument(
            "--allow-plain-http",
            action="store_true",
            help="send the key over http:// to a host that is not loopback (as `submit --allow-plain-http`)",
        )
        command.set_defaults(handler=handler)
        if name == "collect":
            command.add_argument(
                "--poll-every", type=float, metavar="SECONDS", help="first wait between status checks"
            )
            command.add_argument(
                "--no-wait", action="store_true", help="collect what has ended, submit follow-ups, and return"
            )
            command.add_argument(
                "--lost-batches",
                choices=["resubmit", "wait"],
                help="a batch that may have been created but cannot be found: resubmit or wait",
            )
            command.add_argument(
                "--status-every", type=float, default=10.0, metavar="SECONDS", help="status line interval"
            )


async def _cmd_submit(args: argparse.Namespace) -> int:
    return await run_batches(args, wait=False)


async def _cmd_collect(args: argparse.Namespace) -> int:
    saved = _saved_args(args)
    saved.quiet = args.quiet
    saved.status_every = args.status_every
    if args.poll_every is not None:
        saved.poll_every = args.poll_every
    if args.lost_batches is not None:
        saved.lost_batches = args.lost_batches
    return await run_batches(saved, wait=not args.no_wait)


async def run_batches(args: argparse.Namespace, *, wait: bool) -> int:
    """Submit (and with ``wait``, see through) a job whose requests go in provider batches."""
    if args.input == "-":
        raise ConfigError("batch mode reads the input once per round: pass a file, not stdin")
    if not args.output or args.output == "-":
        raise ConfigError("batch mode writes the output once per round: pass -o FILE")
    if args.no_store:
        raise ConfigError("batch mode keeps its batches in the run store: drop --no-store")
    out_format = sink_format(args.output, args.output_format)
    check_output(args.output, out_format, source=args.input)
    prices = load_prices(args.prices) if args.prices else None
    budget = Budget(args.max_cost) if args.max_cost is not None else None
    async with contextlib.AsyncExitStack() as cleanup:
        store = RunStore.open(store_path(args.output, args.store))
        cleanup.callback(store.close)
        online = open_backend(
            args.model,
            base_url=args.base_url,
            api_key_env=args.api_key_env,
            concurrency=args.concurrency,
            timeout=args.timeout,
            allow_plain_http=args.allow_plain_http,
        )
        cleanup.push_async_callback(online.aclose)
        await resolve_model(online)
        backend = BatchBackend(
            online,
            batch_api_for(online),
            batch_retries=args.batch_retries,
            reask_online=args.reask_online,
            token_limit=getattr(args, "batch_token_limit", None),
        )
        cache = None if args.no_cache else ResponseCache(store, read=not args.retry_errors)
        extractor = build_extractor(args, backend=backend, cache=cache, prices=prices, budget=budget)
        async with extractor:
            name = job_name(args.output, args.input, store=args.store)
            job = store.open_job(name, job_settings(extractor), fresh=args.fresh)
            if budget is not None:
                budget.spent = job.spent_before
            backend.attach(store, job, ask_again=args.retry_errors)
            _save_args(store, job.id, args)
            return await _drive(args, extractor, backend, store, wait=wait, out_format=out_format)
    raise AssertionError("unreachable")  # pragma: no cover -- the with block returns


async def _drive(
    args: argparse.Namespace,
    extractor: Extractor[Any],
    backend: BatchBackend,
    store: RunStore,
    *,
    wait: bool,
    out_format: Any,
) -> int:
    job = backend.job
    assert job is not None

    def report(text: str) -> None:
        if not args.quiet:
            print(f"corral: {text}", file=sys.stderr, flush=True)

    driver = BatchJob(
        backend,
        price=extractor.scheduler.price,
        stats=extractor.scheduler.stats,
        budget=extractor.scheduler.budget,
        poll=Poll(first=args.poll_every, most=max(args.poll_every, 300.0)),
        report=report,
        lost=getattr(args, "lost_batches", None) or "resubmit",
    )
    counters = RunCounters()
    first_cached: int | None = None

    async def replay() -> int:
        nonlocal counters, first_cached
        # One clock for the whole job; cache hits counted once (later passes replay answers we hold).
        counters = RunCounters(started=counters.started)
        items = items_of(args)
        result = await run_pass(
            args,
            extractor=extractor,
            items=items,
            job=job,
            store=store,
            out_format=out_format,
            counters=counters,
        )
        first_cached = counters.cached if first_cached is None else first_cached
        counters.cached = first_cached
        if result.status == "budget":
            report(f"stopped: {result.budget_message}; re-run with a higher --max-cost to go on")
        return result.parked

    status = "failed"
    with stop_on_signals() as stopping:
        try:
            status = await driver.run(replay, wait=wait)
        finally:
            store.finish_run(job, "interrupted" if stopping.is_set() else status)
    where = _where(args)
    if stopping.is_set():
        print(
            f"corral: interrupted ({stopping.signal_name}); the batches go on at the provider — "
            f"`corral batch collect{where}` carries on",
            file=sys.stderr,
        )
        return 130
    if status == "submitted":
        open_batches = driver.open_batches()
        waiting, open_count = sum(b.requests for b in open_batches), len(open_batches)
        report(
            f"submitted: {waiting:,} requests wait in {open_count} batch{'es' if open_count != 1 else ''} "
            f"({counters.done:,} items already done). `corral batch status{where}` shows them; "
            f"`corral batch collect{where}` finishes the job"
        )
        return 0
    if not args.quiet:
        print(summary_line(counters), file=sys.stderr)
    return 1 if counters.errors else 0


# --- status / cancel -----------------------------------------------------------------------------


async def _cmd_status(args: argparse.Namespace) -> int:
    saved = _saved_args(args)
    async with _looking_at(saved) as (store, backend):
        job = backend.attached()[1]
        fresh = True
        try:
            await BatchJob(backend, price=None, stats=RunStats()).refresh()
        except (ConfigError, ProviderError) as exc:  # no key here, offline: show what the store knows
            fresh = False
            print(f"corral: cannot ask the provider ({exc}); showing the last known status", file=sys.stderr)
        infos = batches_of(store, job.id)
    print(
        f"{saved.output}: {len(infos)} batch{'es' if len(infos) != 1 else ''}" + ("" if fresh else " (stale)")
    )
    for info in infos:
        print("  " + _status_line(info))
    return 0


async def _cmd_cancel(args: argparse.Namespace) -> int:
    saved = _saved_args(args)
    async with _looking_at(saved) as (_, backend):
        cancelled = await BatchJob(backend, price=None, stats=RunStats()).cancel()
    for remote in cancelled:
        print(f"corral: cancelling batch {remote.id} ({remote.status})", file=sys.stderr)
    if not cancelled:
        print("corral: no open batch to cancel", file=sys.stderr)
        return 0
    print(
        f"corral: answers given before the cancel are kept; `corral batch collect{_where(saved)}` writes "
        "the output (cancelled lines end as errors; --retry-errors asks again)",
        file=sys.stderr,
    )
    return 0


@contextlib.asynccontextmanager
async def _looking_at(saved: argparse.Namespace) -> AsyncIterator[tuple[RunStore, BatchBackend]]:
    """The job's store and batch backend, without starting a run (status, cancel)."""
    with RunStore.open(store_path(saved.output, saved.store)) as store:
        name = job_name(saved.output, saved.input, store=saved.store)
        job = store.find_job(name)
        if job is None:
            raise StoreError(f"no job writes {saved.output} in {store.path}")
        online = open_backend(
            saved.model,
            base_url=saved.base_url,
            api_key_env=saved.api_key_env,
            allow_plain_http=saved.allow_plain_http,
        )
        try:
            await resolve_model(online)
            backend = BatchBackend(online, batch_api_for(online))
            backend.attach(store, job)
            yield store, backend
        finally:
            await online.aclose()


# --- helpers -------------------------------------------------------------------------------------


def _where(args: argparse.Namespace) -> str:
    store = f" --store {args.store}" if getattr(args, "store", None) else ""
    return f" -o {args.output}{store}"


def _save_args(store: RunStore, job_id: int, args: argparse.Namespace) -> None:
    kept = {name: getattr(args, name, None) for name in _KEPT}
    kept["input"] = str(Path(args.input).resolve())
    kept["output"] = str(Path(args.output).resolve())
    kept["schema"] = _absolute_spec(args.schema)
    if args.base_url:
        # The store is a file anyone with a copy of it reads: a base URL's user:password@ stays out,
        # and status, collect and cancel take them again with --base-url.
        kept["base_url"] = without_credentials(args.base_url)
        parts = urlsplit(args.base_url)
        kept["base_url_credentials"] = bool(parts.username or parts.password)
    if args.prices:
        kept["prices"] = str(Path(args.prices).resolve())
    with store.transaction() as db:
        db.execute(
            "INSERT OR REPLACE INTO job_args (job, args) VALUES (?, ?)", (job_id, orjson.dumps(kept).decode())
        )


def _absolute_spec(spec: str) -> str:
    """``file.py:Class`` / ``schema.json`` made absolute, so collect finds them from anywhere."""
    path, colon, name = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if Path(path).is_file():
        return str(Path(path).resolve()) + colon + name
    return spec


def _saved_args(args: argparse.Namespace) -> argparse.Namespace:
    """The submitting run's options, found by the job's output (or the only batch job in the store)."""
    output = getattr(args, "output", None)
    path = store_path(output, args.store)
    if not path.exists():
        raise StoreError(f"no run store at {path}: pass -o OUT (the job's output) or --store PATH")
    with RunStore.open(path) as store:
        rows = store.query("SELECT args FROM job_args ORDER BY job")
    wanted = None if output is None else Path(output).resolve()
    chosen = [row for row in rows if wanted is None or Path(orjson.loads(row[0])["output"]) == wanted]
    if not chosen:
        raise StoreError(
            f"no batch job in {path}" + (f" writes {output}" if output else "") + ": submit one first"
        )
    if len(chosen) > 1:
        names = ", ".join(orjson.loads(row[0])["output"] for row in chosen)
        raise ConfigError(f"{path} holds several batch jobs ({names}): name one with -o OUT")
    saved = argparse.Namespace(**orjson.loads(chosen[0][0]))
    _give_back_credentials(saved, args.base_url, needed=vars(saved).pop("base_url_credentials", False))
    saved.store = args.store
    saved.fresh = saved.retry_errors = saved.no_store = False
    saved.quiet = getattr(args, "quiet", False)
    saved.status_every = getattr(args, "status_every", 10.0)
    saved.poll_every = 10.0
    # Allowed at submit (kept with the job), or now; a job kept before the option was there has none.
    saved.allow_plain_http = bool(getattr(saved, "allow_plain_http", False) or args.allow_plain_http)
    return saved


def _give_back_credentials(saved: argparse.Namespace, given: str | None, *, needed: bool) -> None:
    """The job's base URL with the ``user:password@`` the store does not keep, from ``--base-url``."""
    if given is not None:
        kept = (saved.base_url or "").rstrip("/")
        if without_credentials(given).rstrip("/") != kept:
            raise ConfigError(
                f"--base-url {without_credentials(given)} is not the job's base URL ({kept or 'none'}): "
                "its batches are there; give that URL (with its user:password@ if it has them)"
            )
        saved.base_url = given
    elif needed:
        raise ConfigError(
            f"the job's base URL ({saved.base_url}) carried a user and password, which the run store "
            "does not keep: pass it again with --base-url URL, user:password@ included"
        )


def _status_line(info: BatchInfo) -> str:
    age = format_duration(max(0.0, time.time() - info.created))
    counts = ", ".join(f"{name} {value:,}" for name, value in info.counts.items() if value)
    state = "open" if info.open else "collected"
    return (
        f"{info.remote_id or info.label}  {info.api}  {info.status:<11} {state:<9} "
        f"{info.requests:,} requests  {counts or '-'}  ({age} ago)"
    )
