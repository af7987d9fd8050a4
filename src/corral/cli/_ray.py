"""``corral run ... --ray [ADDRESS]``: the job on a Ray cluster (see :mod:`corral.jobs._ray`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading

from corral.cli._progress import choose_display, show_progress, summary_line
from corral.cli._signals import stop_on_signals
from corral.cli.report import report_latest
from corral.engine._stats import RunStats
from corral.errors import ConfigError
from corral.io.items import count_items, is_documents
from corral.io.sinks import check_output, sink_format
from corral.jobs import JobSpec
from corral.jobs._ray import import_ray, run_job_on_ray, spooled_stdin

__all__ = ["run_with_ray"]


async def run_with_ray(spec: JobSpec, args: argparse.Namespace) -> int:
    """``spec`` on Ray, with progress, signals and the summary; ``args``: the display's options."""
    _refuse_what_ray_cannot_do(spec)
    import_ray()  # says how to install it, before anything starts
    assert spec.input is not None
    assert spec.output is not None
    check_output(spec.output, sink_format(spec.output, spec.output_format), source=spec.input)
    with spooled_stdin(spec) as readable:
        assert readable.input is not None
        counters = RunStats()
        counters.total = await asyncio.to_thread(count_items, readable.input, format=readable.input_format)
        with stop_on_signals() as stopping:
            failure = await _in_thread(readable, args, counters)
    if stopping.is_set():
        # The pipeline's thread dies with the process; what it committed stays in the store.
        print(
            f"corral: interrupted ({stopping.signal_name}) — re-run the same command to finish",
            file=sys.stderr,
        )
        print(summary_line(counters), file=sys.stderr)
        return 130
    if failure is not None:
        raise failure
    if args.report:
        report_latest(args)
    if not args.quiet:
        print(summary_line(counters), file=sys.stderr)
    return 1 if counters.errors else 0


async def _in_thread(spec: JobSpec, args: argparse.Namespace, counters: RunStats) -> BaseException | None:
    """The job on a thread of its own (Ray's calls block), with progress on this loop.

    A daemon thread, not ``asyncio.to_thread``: after Ctrl-C the process must not wait for the
    pipeline to end (it owns the job's store: what it committed stays)."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    failure: list[BaseException | None] = [None]

    def work() -> None:
        try:
            run_job_on_ray(spec, counters=counters)
        except BaseException as exc:  # raised on the loop, where the command's errors are handled
            failure[0] = exc
        finally:
            loop.call_soon_threadsafe(finished.set)

    display = choose_display(quiet=args.quiet, stream=sys.stderr)
    async with show_progress(counters, mode=display, stream=sys.stderr, interval=args.status_every):
        threading.Thread(target=work, name="corral-ray", daemon=True).start()
        await finished.wait()
    return failure[0]


def _refuse_what_ray_cannot_do(spec: JobSpec) -> None:
    if not spec.output or spec.output == "-":
        raise ConfigError("--ray writes the output from the run store when the pipeline ends: pass -o FILE")
    if not spec.durable:
        raise ConfigError("--ray keeps the results in the run store (resume, exactly once): drop --no-store")
    if spec.batch is not None:
        raise ConfigError(
            "--batch and --ray do not go together: a provider batch runs at the provider, so workers "
            "add nothing to it; drop --ray (one machine submits and collects any number of batches)"
        )
    if spec.max_cost is not None:
        raise ConfigError(
            "--max-cost does not work with --ray yet: the workers would each need the job's one budget, "
            "held before every request; run without --ray to cap the cost"
        )
    if spec.input_format == "documents" or (spec.input not in (None, "-") and is_documents(spec.input)):
        raise ConfigError(
            "--ray does not read documents yet: their chunks would go to the workers, but the driver "
            "does not assemble them into documents; run without --ray (on one machine a document's "
            "chunks are sent concurrently, within the rate limits)"
        )
