"""``corral run ... --ray [ADDRESS]``: the job on a Ray cluster (see :mod:`corral.jobs._ray`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from typing import Any

from corral.cli._progress import choose_display, show_progress, summary_line
from corral.cli._signals import stop_on_signals
from corral.cli.report import report_latest
from corral.cost import load_prices
from corral.engine._stats import RunCounters
from corral.errors import ConfigError
from corral.io.items import count_items
from corral.io.sinks import check_output, sink_format
from corral.jobs._ray import import_ray, run_job_on_ray

__all__ = ["LOCAL", "run_with_ray"]

#: ``--ray`` without an address: start a Ray of this machine's own
LOCAL = "local"


async def run_with_ray(args: argparse.Namespace) -> int:
    _refuse_what_ray_cannot_do(args)
    import_ray()  # says how to install it, before anything starts
    check_output(args.output, sink_format(args.output, args.output_format), source=args.input)
    counters = RunCounters()
    counters.total = await asyncio.to_thread(count_items, args.input, format=args.format)
    with stop_on_signals() as stopping:
        failure = await _in_thread(args, counters)
    if stopping.is_set():
        # The pipeline's thread dies with the process; what it committed stays in the store.
        print(f"corral: interrupted ({stopping.signal_name}) — re-run the same command to finish",
              file=sys.stderr)  # fmt: skip
        print(summary_line(counters), file=sys.stderr)
        return 130
    if failure is not None:
        raise failure
    if args.report:
        report_latest(args)
    if not args.quiet:
        print(summary_line(counters), file=sys.stderr)
    return 1 if counters.errors else 0


async def _in_thread(args: argparse.Namespace, counters: RunCounters) -> BaseException | None:
    """The job on a thread of its own (Ray's calls block), with progress on this loop.

    A daemon thread, not ``asyncio.to_thread``: after Ctrl-C the process must not wait for the
    pipeline to end."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    failure: list[BaseException | None] = [None]

    def work() -> None:
        try:
            run_job_on_ray(
                args.input,
                args.schema,
                output=args.output,
                workers=args.ray_workers,
                address=None if args.ray == LOCAL else args.ray,
                store=args.store,
                fresh=args.fresh,
                rpm=args.rpm,
                tpm=args.tpm,
                adaptive=not args.no_adaptive,
                input_format=args.format,
                output_format=args.output_format,
                text_field=args.text_field,
                id_field=args.id_field,
                counters=counters,
                **_extractor_options(args),
            )
        except BaseException as exc:  # raised on the loop, where the command's errors are handled
            failure[0] = exc
        finally:
            loop.call_soon_threadsafe(finished.set)

    display = choose_display(quiet=args.quiet, stream=sys.stderr)
    async with show_progress(counters, mode=display, stream=sys.stderr, interval=args.status_every):
        threading.Thread(target=work, name="corral-ray", daemon=True).start()
        await finished.wait()
    return failure[0]


def _extractor_options(args: argparse.Namespace) -> dict[str, Any]:
    """Each worker's Extractor options: never a key (a worker reads it from the variable
    ``--api-key-env`` names, in its own environment)."""
    return {
        "model": args.model,
        "base_url": args.base_url,
        "api_key_env": args.api_key_env,
        "allow_plain_http": args.allow_plain_http,
        "mode": args.mode,
        "prompt": args.prompt,
        "max_retries": args.max_retries,
        "max_tokens": args.max_tokens,
        "reasoning_effort": args.reasoning_effort,
        "concurrency": args.concurrency,
        "timeout": args.timeout,
        "retries": args.retries,
        "many": args.many,
        "prices": load_prices(args.prices) if args.prices else None,
    }


def _refuse_what_ray_cannot_do(args: argparse.Namespace) -> None:
    if args.input == "-":
        raise ConfigError("--ray reads the input twice (to send it, then to write the output): pass a file")
    if not args.output or args.output == "-":
        raise ConfigError("--ray writes the output when the pipeline ends: pass -o FILE")
    if args.no_store:
        raise ConfigError("--ray keeps the results in the run store (resume, exactly once): drop --no-store")
    for flag, given in (("--batch", args.batch), ("--max-cost", args.max_cost is not None),
                        ("--retry-errors", args.retry_errors)):  # fmt: skip
        if given:
            raise ConfigError(f"{flag} does not work with --ray yet: run without --ray for it")
