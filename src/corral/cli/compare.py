"""``corral compare``: one sample of an input through several configurations, each scored against
the gold (:func:`corral.evaluation.compare`): a table, the Pareto front marked, and a plot of
accuracy against cost (or latency, when no configuration is priced)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import orjson

from corral.cli._options import add_target_options, positive_int
from corral.errors import ConfigError

__all__ = ["add_arguments", "cmd_compare"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``corral compare``'s options and handler."""
    parser.add_argument("input", metavar="INPUT", help="the items: .jsonl, .csv or .txt (ids as in the gold)")
    parser.add_argument("--gold", required=True, metavar="GOLD", help="the right answers (as corral eval)")
    parser.add_argument("--schema", required=True, metavar="SPEC", help="the response model")
    parser.add_argument(
        "--config",
        action="append",
        required=True,
        metavar="[NAME:]key=value,...",
        help="a configuration to run (repeat; keys: model, base-url, mode, prompt, max-tokens, "
        "reasoning-effort, api-key-env), e.g. small:model=openai/gpt-4o-mini,mode=json_schema",
    )
    parser.add_argument("--sample", type=positive_int, metavar="N", help="N items the gold has (default all)")
    parser.add_argument("--seed", type=int, default=0, help="which sample, and the intervals' resamples")
    parser.add_argument(
        "-o", "--output", default="corral-compare", metavar="DIR",
        help="where each configuration's output and the run store go (default corral-compare/)",
    )  # fmt: skip
    parser.add_argument("--plot", metavar="FILE.png", help="accuracy against cost (or latency), front marked")
    parser.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    parser.add_argument("--prices", metavar="FILE", help="a JSON file of prices per million tokens")
    add_target_options(parser)  # what every configuration shares unless it says otherwise
    parser.set_defaults(handler=cmd_compare)


async def cmd_compare(args: argparse.Namespace) -> int:
    from corral.evaluation import Configuration, compare  # here: only this command needs them
    from corral.jobs import ExtractOptions

    configurations = [Configuration.parse(text) for text in args.config]
    shared = ExtractOptions(
        model=args.model, base_url=args.base_url, api_key_env=args.api_key_env,
        allow_plain_http=args.allow_plain_http,
    )  # fmt: skip
    results = await compare(
        args.input, args.gold, args.schema, configurations, args.output,
        shared=shared, sample=args.sample, seed=args.seed, prices=args.prices,
    )  # fmt: skip
    rows = [entry.to_json() for entry in results]
    print(_table(rows))
    if args.json:
        await asyncio.to_thread(Path(args.json).write_bytes, orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    if args.plot:
        await asyncio.to_thread(_plot, rows, Path(args.plot))
        print(f"corral: plot written to {args.plot}")
    return 0 if all(row["status"] == "completed" for row in rows) else 1


def _table(rows: list[dict[str, Any]]) -> str:
    header = ["config", "F1 [95%]", "precision", "recall", "cost", "latency p50", "front"]
    lines = [header]
    for row in rows:
        ci = row["f1_ci"]
        f1 = "—" if row["f1"] is None else f"{row['f1']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        lines.append([
            row["name"], f1, _fixed(row["precision"]), _fixed(row["recall"]),
            "—" if row["cost"] is None else f"${row['cost']:.4f}",
            "—" if row["latency_p50"] is None else f"{row['latency_p50']:.2f} s",
            "◆" if row["front"] else "",
        ])  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    text.insert(1, "  ".join("─" * width for width in widths))
    text.append("◆ on the Pareto front: no other configuration is as accurate for less cost and latency")
    return "\n".join(text)


def _fixed(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("--plot draws with matplotlib: pip install 'corral[plot]'") from None
    priced = all(row["cost"] is not None for row in rows)
    measure, label = ("cost", "cost of the sample (USD)") if priced else ("latency_p50", "latency p50 (s)")
    figure = Figure(figsize=(5.6, 4.0), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    points = [(row[measure] or 0.0, row["f1"] or 0.0, row) for row in rows]
    for x, y, row in points:
        axes.scatter([x], [y], s=60 if row["front"] else 30, color="#2563eb" if row["front"] else "#9ca3af",
                     marker="D" if row["front"] else "o", zorder=3)  # fmt: skip
        axes.annotate(row["name"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    front = sorted((x, y) for x, y, row in points if row["front"])
    if len(front) > 1:
        axes.plot([x for x, _ in front], [y for _, y in front], color="#2563eb", linewidth=1, zorder=2)
    axes.set_xlabel(label)
    axes.set_ylabel("F1 against the gold")
    axes.set_title(
        "Accuracy against " + ("cost" if priced else "latency") + " (◆ the Pareto front)", fontsize=10
    )
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
