"""``corral report``: one run of a job as a self-contained HTML page (and its plots as PNG)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from corral.cli_run import positive_int, store_path
from corral.errors import OutputError, StoreError
from corral.store import STORE_FILE, RunStore

__all__ = ["add_report_arguments", "cmd_report", "write_report"]

DEFAULT_OUTPUT = "corral-report.html"


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


async def cmd_report(args: argparse.Namespace) -> int:
    from corral.report.data import find_run

    path = _store_for(args.run, args.store)
    if not path.exists():
        raise StoreError(
            f"there is no run store at {path}: a report reads the store a run keeps "
            "(`corral run ... -o OUT` writes one beside OUT); pass --store PATH if it is elsewhere"
        )
    with RunStore.open(path) as store:
        run = find_run(store, args.run)
        write_report(store, run, Path(args.output or DEFAULT_OUTPUT), png=args.png, max_items=args.max_items)
    return 0


def write_report(
    store: RunStore, run: int, target: Path, *, png: str | None = None, max_items: int = 20_000
) -> None:
    """Write run ``run``'s page to ``target`` (and its plots into the directory ``png``)."""
    from corral.report.data import load_report
    from corral.report.html import render_html

    report = load_report(store, run, max_items=max_items)
    try:
        target.write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the report to {target}: {exc.strerror}") from None
    print(f"corral: report of run {run} written to {target}", file=sys.stderr)
    if png:
        from corral.report.png import write_pngs

        written = write_pngs(report, Path(png))
        print(f"corral: {len(written)} plots written to {png}/", file=sys.stderr)


def _store_for(selector: str | None, explicit: str | None) -> Path:
    """The store: --store, $CORRAL_STORE, beside the output RUN names, or in the working directory."""
    output = selector if selector is not None and not selector.isdigit() and Path(selector).exists() else None
    path = store_path(output, explicit)
    return path / STORE_FILE if path.is_dir() else path
