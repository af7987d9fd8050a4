"""``corral eval``: an output scored against gold records, field by field through the schema
(:func:`corral.evaluation.evaluate`): the table on stdout, the figures as JSON (``--json``), and an
exit code for CI (``--min-f1``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson

from corral.cli._options import merge_keys, positive_int
from corral.errors import ConfigError

__all__ = ["add_arguments", "cmd_eval"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``corral eval``'s options and handler."""
    parser.add_argument("output", metavar="OUT", help="the output to score: a .jsonl or .csv of corral's")
    parser.add_argument(
        "--gold",
        required=True,
        metavar="GOLD",
        help='the right answers: JSONL of {"id": ..., "output": {...}} (a corrected output is one), or a '
        "CSV with an id column and a column per field (address.city for nested ones)",
    )
    parser.add_argument(
        "--schema",
        required=True,
        metavar="SPEC",
        help="the output's response model: path/to/file.py:Class, package.module:Class, or schema.json",
    )
    parser.add_argument(
        "--merge-key",
        action="append",
        default=[],
        metavar="LIST=FIELD[,FIELD]",
        help="entities of the list LIST with equal FIELDs are paired first (default: the pairing that "
        "agrees most, field by field)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="resamples of the items for the 95%% intervals (default 1000; 0: none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the resamples' seed (default 0)")
    parser.add_argument(
        "--confidence-above",
        type=float,
        default=0.8,
        metavar="P",
        help="with confidences in the output: the accuracy of the values at or above P (default 0.8)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON to FILE")
    parser.add_argument(
        "--fit-calibration",
        metavar="FILE.json",
        help="fit a map from the output's confidences to how often they were right (isotonic), for "
        "corral run --calibration; measure it on other labelled items than it was fitted on",
    )
    parser.add_argument(
        "--min-f1", type=float, metavar="X", help="exit 1 when the overall F1 is below X (for CI)"
    )
    parser.add_argument(
        "--items", type=positive_int, default=10, metavar="N", help="the N worst items listed (default 10)"
    )
    parser.set_defaults(handler=cmd_eval)


async def cmd_eval(args: argparse.Namespace) -> int:
    from corral.evaluation import evaluate, fit_recalibration  # here: only this command needs them

    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be 0 or more, not {args.bootstrap}")
    if not 0.0 <= args.confidence_above <= 1.0:
        raise ConfigError(f"--confidence-above must be from 0 to 1, not {args.confidence_above}")
    # Reading and scoring are blocking work: off the event loop, as everything the CLI runs.
    result = await asyncio.to_thread(
        evaluate,
        args.output,
        args.gold,
        args.schema,
        bootstrap=args.bootstrap,
        seed=args.seed,
        list_keys=dict(merge_keys(args.merge_key)) or None,
        confidence_threshold=args.confidence_above,
    )
    print(result.table(worst=args.items))
    if args.json:
        data = orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2)
        await asyncio.to_thread(Path(args.json).write_bytes, data)
    if args.fit_calibration:
        if not result.confidence_pairs:
            raise ConfigError("--fit-calibration: no scored value of the output carries a confidence")
        fitted = orjson.dumps(
            fit_recalibration(result.confidence_pairs).to_json(), option=orjson.OPT_INDENT_2
        )
        await asyncio.to_thread(Path(args.fit_calibration).write_bytes, fitted)
    f1 = result.overall.f1
    if args.min_f1 is not None and (f1 is None or f1 < args.min_f1):
        shown = "undefined" if f1 is None else f"{f1:.3f}"
        print(f"corral: overall F1 {shown} is below --min-f1 {args.min_f1:g}", file=sys.stderr)
        return 1
    return 0
