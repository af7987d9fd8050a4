"""``corral bench``: the article's five strategies over its seven texts, beside its published times.

The shape to expect: sequential ≈ N × latency; unbounded ≈ one latency (the slowest of N);
semaphore(k) ≈ ⌈N/k⌉ × latency. The default target is the built-in simulator with the article's
latency (~0.9 s median); ``--model`` / ``--base-url`` measure a real endpoint instead.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

from pydantic import BaseModel

from corral._extractor import Extractor
from corral.cli._options import add_target_options
from corral.engine._strategies import Strategy
from corral.errors import ConfigError

__all__ = ["ARTICLE_TEXTS", "BenchRow", "add_arguments", "article_table", "plot_table", "print_table"]

ARTICLE_TEXTS = [
    "My name is John and I am 20 years old",
    "My name is Mary and I am 21 years old",
    "My name is Bob and I am 22 years old",
    "My name is Alice and I am 23 years old",
    "My name is Jane and I am 24 years old",
    "My name is Joe and I am 25 years old",
    "My name is Jill and I am 26 years old",
]

#: (label, strategy, concurrency bound, seconds the article measured with gpt-3.5-turbo)
ARTICLE_ROWS: list[tuple[str, Strategy, int | None, float]] = [
    ("for loop", "sequential", None, 6.17),
    ("asyncio.gather", "gather", None, 1.11),
    ("asyncio.as_completed", "as_completed", None, 0.87),
    ("asyncio.gather", "gather", 2, 3.04),
    ("asyncio.as_completed", "as_completed", 2, 3.26),
]


class Person(BaseModel):
    name: str
    age: int


@dataclass(frozen=True, slots=True)
class BenchRow:
    method: str
    strategy: Strategy
    semaphore: int | None
    article_s: float
    measured_s: float
    #: seconds until the first record was in hand: where streaming beats gathering
    first_s: float
    ok: int
    total: int


async def article_table(
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    allow_plain_http: bool = False,
    latency_ms: float = 900.0,
    seed: int = 0,
) -> list[BenchRow]:
    """Run the five strategies once each against the target and time them."""
    async with _target(model, base_url, latency_ms, seed) as (target_model, target_url):
        extractor: Extractor[Person] = Extractor(
            Person,
            model=target_model,
            base_url=target_url,
            api_key_env=api_key_env,
            allow_plain_http=allow_plain_http,
            concurrency=len(ARTICLE_TEXTS),
            # The article's strategies as it ran them: all at once, no slow start or pacing to find
            # limits (seven requests draw none).
            adaptive=False,
        )
        rows = []
        async with extractor:
            for label, strategy, bound, article_s in ARTICLE_ROWS:
                started = time.perf_counter()
                first = 0.0
                outcomes = []
                async for outcome in extractor.map(ARTICLE_TEXTS, strategy=strategy, concurrency=bound):
                    first = first or time.perf_counter() - started
                    outcomes.append(outcome)
                elapsed = time.perf_counter() - started
                ok = sum(o.ok for o in outcomes)
                rows.append(BenchRow(label, strategy, bound, article_s, elapsed, first, ok, len(outcomes)))
        return rows


@contextlib.asynccontextmanager
async def _target(
    model: str | None, base_url: str | None, latency_ms: float, seed: int
) -> AsyncIterator[tuple[str | None, str | None]]:
    if model is not None or base_url is not None:
        yield model, base_url
        return
    from corral.sim import SimConfig, Simulator

    # A narrow spread, like the article's endpoint: its gather (1.11 s) was barely above the median
    # call (6.17 s / 7 = 0.88 s), so the slowest of seven calls was close to the typical one.
    config = SimConfig(latency_ms=latency_ms, latency_dist="lognormal", latency_sigma=0.1, seed=seed)
    async with Simulator(config) as sim:
        yield "sim-1", sim.url


def print_table(rows: list[BenchRow], out: IO[str]) -> None:
    gather = next((r.measured_s for r in rows if r.strategy == "gather" and r.semaphore is None), None)
    header = (
        f"{'Method':<22} {'Semaphore':>9} {'Article':>9} {'Measured':>9} {'× gather':>9} "
        f"{'1st result':>10} {'OK':>5}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for row in rows:
        ratio = f"{row.measured_s / gather:.2f}×" if gather else "-"
        print(
            f"{row.method:<22} {row.semaphore or '':>9} {row.article_s:>8.2f}s {row.measured_s:>8.2f}s "
            f"{ratio:>9} {row.first_s:>9.2f}s {row.ok:>2}/{row.total}",
            file=out,
        )
    out.flush()


def plot_table(rows: list[BenchRow], path: str) -> None:
    """Grouped bars: the article's time and the measured time for each strategy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'corral[plot]'") from None
    labels = [f"{r.method}\n(semaphore {r.semaphore})" if r.semaphore else r.method for r in rows]
    positions = range(len(rows))
    width = 0.38
    figure, axes = plt.subplots(figsize=(9, 4.8), dpi=120)
    article = axes.bar(
        [p - width / 2 for p in positions],
        [r.article_s for r in rows],
        width,
        label="article (gpt-3.5-turbo, 2023)",
        color="#9aa5b1",
    )
    measured = axes.bar(
        [p + width / 2 for p in positions],
        [r.measured_s for r in rows],
        width,
        label="corral, measured",
        color="#2f6fde",
    )
    axes.bar_label(article, fmt="%.2f s", fontsize=8, padding=2)
    axes.bar_label(measured, fmt="%.2f s", fontsize=8, padding=2)
    axes.set_xticks(list(positions), labels, fontsize=8)
    axes.set_ylabel("seconds for 7 extractions")
    axes.set_title("The article's strategies: published vs. measured")
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(frameon=False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_options(parser)
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=900.0,
        metavar="MEDIAN",
        help="the simulator's median latency (default 900, like the article's endpoint)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw measured vs. article times (needs matplotlib)"
    )
    parser.set_defaults(handler=_cmd_bench)


async def _cmd_bench(args: argparse.Namespace) -> int:
    rows = await article_table(
        model=args.model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        allow_plain_http=args.allow_plain_http,
        latency_ms=args.latency_ms,
        seed=args.seed,
    )
    print_table(rows, sys.stdout)
    if args.plot:
        plot_table(rows, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
