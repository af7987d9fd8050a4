"""``corral run``: read a dataset, extract every item durably, write the output, show progress.

The flags become a :class:`~corral.jobs.JobSpec` (:func:`corral.cli._options.job_spec`) and the job
is opened by :func:`corral.jobs.open_job`, which refuses what it must before the output is touched;
this module adds the ``--report`` file's check, the progress display, signals and exit codes.
"""

from __future__ import annotations

import argparse
import sys

from corral.cli._options import add_job_arguments, job_spec
from corral.cli._pass import run_pass
from corral.cli._progress import documents_line, summary_line
from corral.cli._signals import stop_on_signals
from corral.cli.report import check_report_target, report_latest, report_run
from corral.documents import DocumentCounts
from corral.engine._stats import RunStats
from corral.errors import ConfigError
from corral.jobs import Job, JobResult, open_job

__all__ = ["add_arguments", "cmd_run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``corral run``'s options and handler."""
    add_job_arguments(parser)
    parser.set_defaults(handler=cmd_run)


async def cmd_run(args: argparse.Namespace) -> int:
    if args.report:
        check_report_target(args)
    if args.no_store and (args.fresh or args.retry_errors or args.report):
        raise ConfigError("--fresh, --retry-errors and --report need the run store: drop --no-store")
    spec = job_spec(args)
    if spec.ray is not None:
        from corral.cli._ray import run_with_ray  # here: Ray is imported only when asked for

        return await run_with_ray(spec, args)
    if spec.batch is not None:
        from corral.cli.batch import run_batches  # here: cli.batch builds on this module

        code = await run_batches(spec, args, wait=True)
        if args.report:
            report_latest(args)
        return code
    async with open_job(spec) as job:
        try:
            return await _run(args, job)
        finally:
            if args.report and job.store is not None and job.handle is not None:
                report_run(job.store, job.handle.run, args.report)


async def _run(args: argparse.Namespace, job: Job) -> int:
    counters = RunStats()
    documents = DocumentCounts()
    result = JobResult("failed", counters.snapshot())
    with stop_on_signals() as stopping:
        result = await run_pass(
            job, counters, quiet=args.quiet, status_every=args.status_every, documents=documents
        )
    if stopping.is_set():
        resume = " — re-run the same command to finish" if job.handle is not None else ""
        print(f"corral: interrupted ({stopping.signal_name}){resume}", file=sys.stderr)
        print(summary_line(counters), file=sys.stderr)
        return 130
    if not args.quiet:
        print(summary_line(counters), file=sys.stderr)
        if documents.documents or documents.pending:
            print(documents_line(documents), file=sys.stderr)
        elif documents.review:
            print(f"corral: {documents.review:,} records to review (their 'review' list)", file=sys.stderr)
    if result.status == "budget":
        print(
            f"corral: stopped: {result.budget_message}. {result.counts.not_started:,} items pulled from the "
            "input did not start; re-run with a higher --max-cost to finish the job",
            file=sys.stderr,
        )
        return 1
    return 1 if counters.errors or documents.errors else 0
