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
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from corral.cli._options import add_job_arguments, job_spec
from corral.cli._pass import run_pass
from corral.cli._progress import documents_line, format_duration, summary_line
from corral.cli._signals import stop_on_signals
from corral.documents import DocumentCounts
from corral.engine._stats import RunStats
from corral.errors import ConfigError, ProviderError, StoreError
from corral.jobs import STORE_ENV, Job, JobSpec, look_at_batches, open_job, store_path
from corral.jobs._rounds import BatchJob, Poll
from corral.store import BatchInfo, RunStore, without_credentials

__all__ = ["add_arguments", "add_batch_commands", "run_batches"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``corral batch``'s commands."""
    add_batch_commands(parser, add_job_arguments)


def add_batch_commands(
    batch: argparse.ArgumentParser, submit_arguments: Callable[[argparse.ArgumentParser], None]
) -> None:
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
    return await run_batches(job_spec(args, batch=True), args, wait=False)


async def _cmd_collect(args: argparse.Namespace) -> int:
    spec = _saved_spec(args)
    assert spec.batch is not None
    # How to wait is this command's to say, not the submitting run's.
    poll_every = 10.0 if args.poll_every is None else args.poll_every
    lost: Literal["resubmit", "wait"] = args.lost_batches or "resubmit"
    spec = spec.replace(batch=dataclasses.replace(spec.batch, poll_every=poll_every, lost=lost))
    return await run_batches(spec, args, wait=not args.no_wait)


async def run_batches(spec: JobSpec, args: argparse.Namespace, *, wait: bool) -> int:
    """Submit (and with ``wait``, see through) a job whose requests go in provider batches.
    ``args``: the display's options (``quiet``, ``status_every``) and where the job is (``store``)."""
    async with open_job(spec) as job:
        return await _drive(job, args, wait=wait)


async def _drive(job: Job, args: argparse.Namespace, *, wait: bool) -> int:
    backend, handle, store = job.batch_backend, job.handle, job.store
    assert backend is not None
    assert handle is not None
    assert store is not None
    assert job.spec.batch is not None

    def report(text: str) -> None:
        if not args.quiet:
            print(f"corral: {text}", file=sys.stderr, flush=True)

    batch = job.spec.batch
    # One set of counters, and one clock, for the whole job: every pass counts into it.
    counters = RunStats()
    driver = BatchJob(
        backend,
        price=job.extractor.price,
        stats=counters,
        budget=job.extractor.budget,
        poll=Poll(first=batch.poll_every, most=max(batch.poll_every, 300.0)),
        report=report,
        lost=batch.lost,
    )

    documents = DocumentCounts()

    async def replay() -> int:
        nonlocal documents
        documents = DocumentCounts()  # each pass assembles every document it can, anew
        result = await run_pass(
            job, counters, quiet=args.quiet, status_every=args.status_every, documents=documents
        )
        if result.status == "budget":
            report(f"stopped: {result.budget_message}; re-run with a higher --max-cost to go on")
        return result.counts.deferred

    status = "failed"
    with stop_on_signals() as stopping:
        try:
            status = await driver.run(replay, wait=wait)
        finally:
            store.finish_run(handle, "interrupted" if stopping.is_set() else status)
    where = _where(job.spec.output, args.store)
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
        if documents.documents or documents.pending:
            print(documents_line(documents), file=sys.stderr)
    return 1 if counters.errors or documents.errors else 0


# --- status / cancel -----------------------------------------------------------------------------


async def _cmd_status(args: argparse.Namespace) -> int:
    spec = _saved_spec(args)
    async with look_at_batches(spec) as (store, backend):
        job = backend.attached()[1]
        fresh = True
        try:
            await BatchJob(backend, price=None, stats=RunStats()).refresh()
        except (ConfigError, ProviderError) as exc:  # no key here, offline: show what the store knows
            fresh = False
            print(f"corral: cannot ask the provider ({exc}); showing the last known status", file=sys.stderr)
        infos = store.batches.of_job(job.id)
    print(
        f"{spec.output}: {len(infos)} batch{'es' if len(infos) != 1 else ''}" + ("" if fresh else " (stale)")
    )
    for info in infos:
        print("  " + _status_line(info))
    return 0


async def _cmd_cancel(args: argparse.Namespace) -> int:
    spec = _saved_spec(args)
    async with look_at_batches(spec) as (_, backend):
        cancelled = await BatchJob(backend, price=None, stats=RunStats()).cancel()
    for remote in cancelled:
        print(f"corral: cancelling batch {remote.id} ({remote.status})", file=sys.stderr)
    if not cancelled:
        print("corral: no open batch to cancel", file=sys.stderr)
        return 0
    print(
        "corral: answers given before the cancel are kept; "
        f"`corral batch collect{_where(spec.output, spec.store)}` writes the output (cancelled lines end "
        "as errors; --retry-errors asks again)",
        file=sys.stderr,
    )
    return 0


# --- helpers -------------------------------------------------------------------------------------


def _where(output: str | None, store: str | None) -> str:
    return f" -o {output}" + (f" --store {store}" if store else "")


def _saved_spec(args: argparse.Namespace) -> JobSpec:
    """The submitting run's job, found by its output (or the only batch job in the store), with
    this command's ``--store``, ``--base-url`` and ``--allow-plain-http``."""
    output = getattr(args, "output", None)
    path = store_path(output, args.store)
    if not path.exists():
        raise StoreError(f"no run store at {path}: pass -o OUT (the job's output) or --store PATH")
    with RunStore.open(path) as store:
        kept = [JobSpec.from_json(text) for text in store.job_args_all()]
    wanted = None if output is None else Path(output).resolve()
    chosen = [(spec, creds) for spec, creds in kept if wanted is None or Path(spec.output or "") == wanted]
    if not chosen:
        raise StoreError(
            f"no batch job in {path}" + (f" writes {output}" if output else "") + ": submit one first"
        )
    if len(chosen) > 1:
        names = ", ".join(str(spec.output) for spec, _ in chosen)
        raise ConfigError(f"{path} holds several batch jobs ({names}): name one with -o OUT")
    spec, needed = chosen[0]
    extract = spec.extract
    base_url = _give_back_credentials(extract.base_url, args.base_url, needed=needed)
    # Allowed at submit (kept with the job), or now.
    allow = extract.allow_plain_http or args.allow_plain_http
    extract = dataclasses.replace(extract, base_url=base_url, allow_plain_http=allow)
    return spec.replace(extract=extract, store=args.store)


def _give_back_credentials(kept: str | None, given: str | None, *, needed: bool) -> str | None:
    """The job's base URL with the ``user:password@`` the store does not keep, from ``--base-url``."""
    if given is not None:
        kept_url = (kept or "").rstrip("/")
        if without_credentials(given).rstrip("/") != kept_url:
            raise ConfigError(
                f"--base-url {without_credentials(given)} is not the job's base URL ({kept_url or 'none'}): "
                "its batches are there; give that URL (with its user:password@ if it has them)"
            )
        return given
    if needed:
        raise ConfigError(
            f"the job's base URL ({kept}) carried a user and password, which the run store "
            "does not keep: pass it again with --base-url URL, user:password@ included"
        )
    return kept


def _status_line(info: BatchInfo) -> str:
    age = format_duration(max(0.0, time.time() - info.created))
    counts = ", ".join(f"{name} {value:,}" for name, value in info.counts.items() if value)
    state = "open" if info.open else "collected"
    return (
        f"{info.remote_id or info.label}  {info.api}  {info.status:<11} {state:<9} "
        f"{info.requests:,} requests  {counts or '-'}  ({age} ago)"
    )
