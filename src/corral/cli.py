"""The ``corral`` command: a thin layer over the public API.

Exit codes: 0 every item extracted; 1 some items ended in error (all are in the output) or the run
was stopped by the provider (bad key, unknown model); 2 a usage problem found before anything was
sent; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from corral import __version__
from corral.backends import Mode
from corral.client import Extractor
from corral.engine import ORDERS, STRATEGIES, Order, Strategy
from corral.errors import CorralError, ProviderError, UsageError
from corral.items import FORMATS, Format, read_items
from corral.outcome import Outcome
from corral.sim import args as sim_args
from corral.tuning import tune_gc

__all__ = ["main"]

RUN_EXAMPLE = """example:
  corral run examples/people.txt --schema examples/person.py:Person
  corral run reviews.jsonl --schema review.json --model openai/gpt-4o-mini --concurrency 64 -o out.jsonl
  corral run notes.csv --schema app.models:Patient --base-url http://localhost:8000/v1 --model qwen2.5"""
SIM_EXAMPLE = """example:
  corral sim --port 8000 --latency-ms 900 &
  corral run examples/people.txt --schema examples/person.py:Person --base-url http://127.0.0.1:8000/v1"""
BENCH_EXAMPLE = """example:
  corral bench                               # the built-in simulator, ~0.9 s per request like the article
  corral bench --plot article.png
  corral bench --model openai/gpt-4o-mini    # a real endpoint (needs OPENAI_API_KEY)"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(_run_async(args.handler(args)))
    except KeyboardInterrupt:
        print("corral: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:
        print(f"corral: error: {exc}", file=sys.stderr)
        return 2
    except ProviderError as exc:
        print(f"corral: stopped: {exc}", file=sys.stderr)
        return 1
    except CorralError as exc:
        print(f"corral: error: {exc}", file=sys.stderr)
        return 1


def _run_async(coro: Any) -> Any:
    tune_gc()
    try:
        import uvloop
    except ImportError:  # not on Windows; the standard loop works, a little slower
        return asyncio.run(coro)
    return uvloop.run(coro)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral",
        description="Turn a dataset of texts into validated, typed records with a language model.",
    )
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter

    run = commands.add_parser(
        "run", help="extract records from a file of texts", epilog=RUN_EXAMPLE, formatter_class=formatter
    )
    run.add_argument(
        "input", metavar="INPUT", help="a .jsonl, .csv or .txt file (one item per line), or - for stdin"
    )
    run.add_argument(
        "--schema",
        required=True,
        metavar="SPEC",
        help="response model: path/to/file.py:Class, package.module:Class, or schema.json",
    )
    run.add_argument(
        "--many", action="store_true", help="extract every entity in each text (a list per item)"
    )
    _add_target_options(run)
    run.add_argument("--prompt", metavar="TEXT", help="the instruction sent as the system message")
    run.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        help="how the schema goes on the wire (default: the backend's preferred mode)",
    )
    run.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="as_completed",
        help="sequential, gather (all at the end) or as_completed (streaming; default)",
    )
    run.add_argument(
        "--concurrency",
        type=_positive_int,
        default=16,
        metavar="N",
        help="at most N requests at once (default 16)",
    )
    run.add_argument(
        "--order",
        choices=ORDERS,
        default="input",
        help="write results in input order (default) or as they complete",
    )
    run.add_argument(
        "--max-retries",
        type=_non_negative_int,
        default=2,
        metavar="N",
        help="re-ask up to N times when a reply does not validate (default 2)",
    )
    run.add_argument(
        "--max-tokens",
        type=_positive_int,
        default=1024,
        metavar="N",
        help="reply token limit per request (default 1024)",
    )
    run.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS", help="per request (default 120)"
    )
    run.add_argument("--rpm", type=float, metavar="N", help="the provider's requests-per-minute limit")
    run.add_argument("--tpm", type=float, metavar="N", help="the provider's tokens-per-minute limit")
    run.add_argument(
        "--retries",
        type=_non_negative_int,
        default=6,
        metavar="N",
        help="per item: retry 429s, 5xx, timeouts and dropped connections up to N times (default 6)",
    )
    run.add_argument(
        "--no-adaptive",
        action="store_true",
        help="without --rpm/--tpm or rate-limit headers, do not slow down on 429s (only back off)",
    )
    run.add_argument("--text-field", default="text", metavar="NAME", help="JSONL/CSV field with the text")
    run.add_argument("--id-field", default="id", metavar="NAME", help="JSONL/CSV field with the item id")
    run.add_argument(
        "--format", choices=sorted(set(FORMATS.values())), help="input format when the extension does not say"
    )
    run.add_argument("-o", "--output", metavar="OUT", help="JSONL output file (default: stdout)")
    run.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    run.set_defaults(handler=_cmd_run)

    sim = commands.add_parser(
        "sim",
        help="serve an OpenAI-compatible simulator for tests and demos",
        epilog=SIM_EXAMPLE,
        formatter_class=formatter,
    )
    sim_args.add_arguments(sim)
    sim.set_defaults(handler=_cmd_sim)

    bench = commands.add_parser(
        "bench",
        help="reproduce the article's strategy table",
        epilog=BENCH_EXAMPLE,
        formatter_class=formatter,
    )
    _add_target_options(bench)
    bench.add_argument(
        "--latency-ms",
        type=float,
        default=900.0,
        metavar="MEDIAN",
        help="the simulator's median latency (default 900, like the article's endpoint)",
    )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument(
        "--plot", metavar="FILE.png", help="draw measured vs. article times (needs matplotlib)"
    )
    bench.set_defaults(handler=_cmd_bench)
    return parser


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        metavar="MODEL",
        help="local (embedded, default), openai/NAME, ollama/NAME, vllm/NAME, llamacpp/NAME; "
        "with --base-url: the model name sent to that server",
    )
    parser.add_argument(
        "--base-url", metavar="URL", help="any OpenAI-compatible server, e.g. http://localhost:8000/v1"
    )
    parser.add_argument(
        "--api-key-env", metavar="NAME", help="environment variable holding the key (default OPENAI_API_KEY)"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


# --- corral run ------------------------------------------------------------------------------


async def _cmd_run(args: argparse.Namespace) -> int:
    fmt: Format | None = args.format
    items = read_items(args.input, format=fmt, text_field=args.text_field, id_field=args.id_field)
    extractor: Extractor[Any] = Extractor(
        args.schema,
        model=args.model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        mode=args.mode,
        prompt=args.prompt,
        max_retries=args.max_retries,
        max_tokens=args.max_tokens,
        concurrency=args.concurrency,
        timeout=args.timeout,
        many=args.many,
        rpm=args.rpm,
        tpm=args.tpm,
        adaptive=not args.no_adaptive,
        retries=args.retries,
    )
    strategy: Strategy = args.strategy
    order: Order = args.order
    tally = _Tally()
    with _output(args.output) as out, _stop_on_signals() as stopping:
        async with extractor:
            try:
                async for outcome in extractor.map(items, strategy=strategy, order=order):
                    out.write(orjson.dumps(outcome.to_record(), option=orjson.OPT_APPEND_NEWLINE))
                    out.flush()  # a record is on disk (or down the pipe) as soon as it is final
                    tally.add(outcome)
                    if outcome.error is not None and outcome.error.kind == "input":
                        print(f"corral: skipped {outcome.error.message}", file=sys.stderr)
            except asyncio.CancelledError:
                if not stopping.is_set():
                    raise
                # Our own signal: the engine has cancelled every request; finish writing and report.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            tally.rate_limited = extractor.scheduler.stats.rate_limited
            tally.retries = extractor.scheduler.stats.retries
    if stopping.is_set():
        print(f"corral: interrupted ({stopping.signal_name}); {tally.summary_tail()}", file=sys.stderr)
        return 130
    if not args.quiet:
        print(tally.summary(), file=sys.stderr)
    return 1 if tally.errors else 0


class _Stopping:
    def __init__(self) -> None:
        self.signal_name = ""

    def is_set(self) -> bool:
        return bool(self.signal_name)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[_Stopping]:
    """Ctrl-C or SIGTERM cancels the run (every in-flight request) instead of killing the process,
    so finished records are written and the summary printed. A second signal is not special: the
    first has already started the shutdown, which only waits for cancellations to land."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stopping = _Stopping()

    def stop(name: str) -> None:
        if task is not None and not stopping.is_set():
            stopping.signal_name = name
            task.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop, sig.name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not POSIX
            continue
    try:
        yield stopping
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    if path is None or path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"output {path} is a directory; name a file")
    with open(target, "wb") as handle:
        yield handle


class _Tally:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.items = self.errors = self.tokens = self.retries = self.rate_limited = 0
        self.kinds: dict[str, int] = {}

    def add(self, outcome: Outcome[Any]) -> None:
        self.items += 1
        self.tokens += outcome.usage.total_tokens
        if outcome.error is not None:
            self.errors += 1
            self.kinds[outcome.error.kind] = self.kinds.get(outcome.error.kind, 0) + 1

    def summary(self) -> str:
        return f"corral: {self.summary_tail()}"

    def summary_tail(self) -> str:
        elapsed = time.perf_counter() - self.started
        rate = self.items / elapsed if elapsed > 0 else 0.0
        kinds = f" ({', '.join(f'{n} {k}' for k, n in sorted(self.kinds.items()))})" if self.kinds else ""
        retried = f" · {self.retries} retries ({self.rate_limited} rate-limited)" if self.retries else ""
        return (
            f"{self.items} items: {self.items - self.errors} ok, {self.errors} errors{kinds}{retried} · "
            f"{self.tokens:,} tokens · {elapsed:.1f} s ({rate:.1f} items/s)"
        )


# --- corral sim / bench ----------------------------------------------------------------------


async def _cmd_sim(args: argparse.Namespace) -> int:
    from corral.sim import serve

    config = sim_args.config_from_args(args)

    def ready(url: str) -> None:
        print(
            f"corral sim: serving an OpenAI-compatible API on {url} "
            f"(median latency {args.latency_ms:g} ms; Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )

    await serve(args.host, args.port, config, on_ready=ready)
    return 0


async def _cmd_bench(args: argparse.Namespace) -> int:
    from corral.bench import article_table, plot_table, print_table

    rows = await article_table(
        model=args.model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        latency_ms=args.latency_ms,
        seed=args.seed,
    )
    print_table(rows, sys.stdout)
    if args.plot:
        plot_table(rows, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
