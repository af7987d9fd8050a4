"""``corral report``: one run of a job as a self-contained HTML page (and its plots as PNG); with
``--gold GOLD --schema SPEC``, the job's records (as the run store holds them, whatever the output's
format) scored against gold records too, in an Evaluation section (:mod:`corral.evaluation`).

A report is only ever written over nothing, an empty file, or a report corral wrote (its head carries
corral's generator tag), and never over the job's input, output, run store or gold: checked before anything
is opened for writing, and again just before the page is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from corral.cli._options import merge_keys, positive_int
from corral.errors import ConfigError, CorralError, OutputError, StoreError
from corral.io.sinks import holds_a_file, same_file
from corral.jobs import job_name, store_path
from corral.store import STORE_FILE, RunStore

__all__ = [
    "Gold",
    "add_arguments",
    "add_report_arguments",
    "check_report",
    "check_report_target",
    "cmd_report",
    "report_latest",
    "report_run",
    "write_report",
]

DEFAULT_OUTPUT = "corral-report.html"
#: how much of an existing file is read to tell a report corral wrote (its tag is in the first 200 bytes)
_HEAD_BYTES = 4096


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``corral report``'s options and handler."""
    add_report_arguments(parser)
    scoring = parser.add_argument_group(
        "evaluation", "score the job's records (as the run store holds them) against gold records"
    )
    scoring.add_argument(
        "--gold",
        metavar="GOLD",
        help='the right answers: JSONL of {"id": ..., "output": {...}} (a corrected output is one), or a '
        "CSV with an id column and a column per field; adds an Evaluation section (needs --schema)",
    )
    scoring.add_argument(
        "--schema",
        metavar="SPEC",
        help="with --gold: the job's response model (path/to/file.py:Class, package.module:Class, or "
        "schema.json)",
    )
    scoring.add_argument(
        "--merge-key",
        action="append",
        default=[],
        metavar="LIST=FIELD[,FIELD]",
        help="with --gold: entities of the list LIST with equal FIELDs are paired first (default: the "
        "pairing that agrees most, field by field)",
    )
    parser.set_defaults(handler=cmd_report)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run",
        nargs="?",
        metavar="RUN",
        help="a run number, the output file of a job (its latest run), or serve/ID for a job of "
        "`corral serve`; default: the store's latest run",
    )
    parser.add_argument(
        "--store",
        metavar="PATH",
        help="run store (default: $CORRAL_STORE, else .corral/ beside RUN's output, else .corral/ here)",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE.html", help=f"where to write the page (default {DEFAULT_OUTPUT})"
    )
    parser.add_argument(
        "--png", metavar="DIR", help="also write each plot as DIR/NAME.png (needs matplotlib)"
    )
    parser.add_argument(
        "--max-items",
        type=positive_int,
        default=20_000,
        metavar="N",
        help="items in the page's table at most (errors first; default 20000)",
    )


@dataclass(frozen=True, slots=True)
class Gold:
    """Gold records to score a report's run against: their file, the schema, and the lists' keys."""

    path: str
    schema: object
    #: list path -> the fields that pair its entities first (``--merge-key``)
    list_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)


async def cmd_report(args: argparse.Namespace) -> int:
    from corral.report._data import find_run

    gold = _gold(args)
    path = _store_for(args.run, args.store)
    target = Path(args.output or DEFAULT_OUTPUT)
    job_output = args.run if args.run is not None and not args.run.isdigit() else None
    others = {"the job's output": job_output, "the run store": str(path), "the gold": args.gold}
    check_report(target, option="-o", others=others)
    if not path.exists():
        raise StoreError(
            f"there is no run store at {path}: a report reads the store a run keeps "
            "(`corral run ... -o OUT` writes one beside OUT); pass --store PATH if it is elsewhere"
        )
    with RunStore.open(path) as store:
        run = find_run(store, args.run)
        write_report(store, run, target, png=args.png, max_items=args.max_items, gold=gold)
    return 0


def _gold(args: argparse.Namespace) -> Gold | None:
    """What ``--gold``, ``--schema`` and ``--merge-key`` ask for (None: no evaluation); refused when
    one comes without the other."""
    if args.gold is None:
        if args.schema is not None or args.merge_key:
            given = "--schema" if args.schema is not None else "--merge-key"
            raise ConfigError(
                f"{given} is for scoring against gold: pass --gold GOLD with it, or leave it out"
            )
        return None
    if args.schema is None:
        raise ConfigError(
            "--gold needs --schema SPEC: the job's response model (path/to/file.py:Class, "
            "package.module:Class, or schema.json), which reads the gold's values and pairs them with "
            "the output's"
        )
    return Gold(args.gold, args.schema, dict(merge_keys(args.merge_key)))


def check_report(target: str | Path, *, option: str, others: Mapping[str, str | None] | None = None) -> None:
    """Raise :class:`OutputError` unless a report may be written at ``target``: not over one of the
    job's files (``others``: what each is -> its path), and not over an existing file (empty ones
    aside) that is not a report corral wrote. ``option``: the flag that named ``target``."""
    from corral.report._html import GENERATOR_META  # the report's modules load only when one is made

    path = Path(target)
    for role, other in (others or {}).items():
        if same_file(other, str(path)):
            raise OutputError(
                f"{target} is {role} {other}: a report there would destroy it; choose another {option}"
            )
    if not holds_a_file(path, option=option, example=DEFAULT_OUTPUT):
        return
    try:
        with path.open("rb") as existing:
            head = existing.read(_HEAD_BYTES)
    except OSError as exc:
        raise OutputError(
            f"{target} exists and cannot be read to tell whether corral wrote it: {exc.strerror}"
        ) from None
    if GENERATOR_META.encode() not in head:
        raise OutputError(
            f"{target} exists and is not a report corral wrote (its head has no corral generator tag); "
            f"corral never overwrites a file that is not its own: choose another {option}, or delete it "
            "if it is not needed"
        )


def write_report(
    store: RunStore,
    run: int,
    target: Path,
    *,
    png: str | None = None,
    max_items: int = 20_000,
    option: str = "-o",
    gold: Gold | None = None,
) -> None:
    """Write run ``run``'s page to ``target`` (and its plots into the directory ``png``), scored
    against ``gold`` when given. ``option``: the flag that named ``target``, for the message if it
    may not be written."""
    from corral.report._data import load_report
    from corral.report._html import render_html

    evaluation = None
    if gold is not None:  # first: a gold file that cannot be read stops the report before anything
        from corral.report._scores import evaluate_run

        evaluation = evaluate_run(store, run, gold.path, gold.schema, list_keys=gold.list_keys or None)
    report = load_report(store, run, max_items=max_items)
    page = render_html(report, evaluation, gold=None if gold is None else gold.path)
    # Again, just before writing: a long run gives anyone time to put a file there.
    check_report(target, option=option)
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the report to {target}: {exc.strerror}") from None
    scored = "" if gold is None else f", its output scored against {gold.path}"
    print(f"corral: report of run {run}{scored} written to {target}", file=sys.stderr)
    if png:
        from corral.report._png import write_pngs

        written = write_pngs(report, Path(png))
        print(f"corral: {len(written)} plots written to {png}/", file=sys.stderr)


def _store_for(selector: str | None, explicit: str | None) -> Path:
    """The store: --store, $CORRAL_STORE, beside the output RUN names, or in the working directory."""
    output = selector if selector is not None and not selector.isdigit() and Path(selector).exists() else None
    path = store_path(output, explicit)
    return path / STORE_FILE if path.is_dir() else path


def report_latest(args: argparse.Namespace) -> None:
    """The report of the job's latest run (a batch job's runs are several, one per round)."""
    with RunStore.open(store_path(args.output, args.store)) as store:
        job = store.find_job(job_name(args.output, args.input, store=args.store))
        latest = store.views.latest_run(job.id) if job else None
        if latest is not None:
            report_run(store, latest, args.report)


def check_report_target(args: argparse.Namespace) -> None:
    """Refuse ``--report`` before the run starts when it names the input, the output, the store or
    a file corral did not write (the run would end with its report refused)."""
    store = store_path(args.output, args.store)
    store_file = store / STORE_FILE if store.is_dir() else store
    others = {"the input": args.input, "the output": args.output, "the run store": str(store_file)}
    check_report(args.report, option="--report", others=others)


def report_run(store: RunStore, run: int, target: str) -> None:
    try:
        write_report(store, run, Path(target), option="--report")
    except CorralError as exc:  # the run's own outcome (and exit code) matters more than its report
        print(f"corral: no report: {exc}", file=sys.stderr)
