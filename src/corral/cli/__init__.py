"""The ``corral`` command: a thin layer over the public API.

Exit codes: 0 every item extracted; 1 some items ended in error (all are in the output), the run
was stopped by the provider (bad key, unknown model) or the cost cap was reached; 2 a usage problem
found before anything was sent; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from corral import __version__
from corral.cli._tuning import tune_gc
from corral.cli.batch import add_batch_commands
from corral.cli.run import add_run_arguments, cmd_run
from corral.errors import CorralError, OutputError, ProviderError, UsageError
from corral.sim import args as sim_args

__all__ = ["main"]

RUN_EXAMPLE = """example:
  corral run examples/people.txt --schema examples/person.py:Person
  corral run reviews.jsonl --schema review.json --model openai/gpt-4o-mini --concurrency 64 -o out.jsonl
  corral run notes.csv --schema app.models:Patient --base-url http://localhost:8000/v1 --model qwen2.5
  corral run big.jsonl --schema review.json --model openai/gpt-4o-mini --max-cost 5 -o out.parquet
      (kill it at any moment: the same command resumes, and pays for nothing twice)"""
BATCH_EXAMPLE = """example:
  corral batch submit reviews.jsonl --schema review.json --model openai/gpt-4o-mini -o out.jsonl
  corral batch status -o out.jsonl          # how far the provider is
  corral batch collect -o out.jsonl         # wait, re-ask what failed, write out.jsonl
  corral run reviews.jsonl --schema review.json --model anthropic/claude-haiku-4-5 --batch -o out.jsonl
      (submit and collect in one go; Ctrl-C leaves the batches running, collect carries on)"""
SIM_EXAMPLE = """example:
  corral sim --port 8000 --latency-ms 900 &
  corral run examples/people.txt --schema examples/person.py:Person --base-url http://127.0.0.1:8000/v1"""
REPORT_EXAMPLE = """example:
  corral report                              # the latest run in the store -> corral-report.html
  corral report out.jsonl -o run.html        # the latest run of the job writing out.jsonl
  corral report 12 --png plots/              # run 12, and its plots as PNG images"""
SERVE_EXAMPLE = """example:
  corral serve --base-url http://127.0.0.1:8000/v1 --model sim-1      # then open http://127.0.0.1:8080/
  CORRAL_SERVE_TOKEN=secret corral serve --host 0.0.0.0 --model openai/gpt-4o-mini --rpm 500"""
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
        if isinstance(exc, OutputError) and isinstance(exc.__cause__, BrokenPipeError):
            # `corral run ... | head`: the reader had enough. Quiet, as a shell tool ended by SIGPIPE.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 128 + signal.SIGPIPE
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
    _add_job_arguments(run)
    run.set_defaults(handler=cmd_run)

    batch = commands.add_parser(
        "batch",
        help="a job through the providers' batch APIs: submit, status, collect, cancel",
        epilog=BATCH_EXAMPLE,
        formatter_class=formatter,
    )
    add_batch_commands(batch, _add_job_arguments)

    report = commands.add_parser(
        "report",
        help="write a run's report: one HTML page with plots, errors and every item",
        epilog=REPORT_EXAMPLE,
        formatter_class=formatter,
    )
    _add_report_arguments(report)
    report.set_defaults(handler=_cmd_report)

    serve = commands.add_parser(
        "serve",
        help="extraction as an HTTP service that streams results (and a web page to try it)",
        epilog=SERVE_EXAMPLE,
        formatter_class=formatter,
    )
    _add_target_options(serve)
    _add_serve_arguments(serve)
    serve.set_defaults(handler=_cmd_serve)

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


def _add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """What ``corral run`` (and ``corral batch submit``) takes."""
    parser.add_argument(
        "input", metavar="INPUT", help="a .jsonl, .csv or .txt file (one item per line), or - for stdin"
    )
    parser.add_argument(
        "--schema",
        required=True,
        metavar="SPEC",
        help="response model: path/to/file.py:Class, package.module:Class, or schema.json",
    )
    parser.add_argument(
        "--many", action="store_true", help="extract every entity in each text (a list per item)"
    )
    _add_target_options(parser)
    add_run_arguments(parser)


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        metavar="MODEL",
        help="local (embedded, default), openai/NAME, anthropic/NAME, ollama/NAME, vllm/NAME, llamacpp/NAME; "
        "with --base-url: the model name sent to that server",
    )
    parser.add_argument(
        "--base-url", metavar="URL", help="any OpenAI-compatible server, e.g. http://localhost:8000/v1"
    )
    parser.add_argument(
        "--api-key-env", metavar="NAME", help="environment variable holding the key (default OPENAI_API_KEY)"
    )
    parser.add_argument(
        "--allow-plain-http",
        action="store_true",
        help="send the key over http:// to a host that is not loopback (refused otherwise: anyone on "
        "the way reads it); only on a network you trust",
    )


# --- corral report / serve / sim / bench -----------------------------------------------------


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    from corral.cli.report import add_report_arguments

    add_report_arguments(parser)


async def _cmd_report(args: argparse.Namespace) -> int:
    from corral.cli.report import cmd_report

    return await cmd_report(args)


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    from corral.cli.serve import add_serve_arguments

    add_serve_arguments(parser)


async def _cmd_serve(args: argparse.Namespace) -> int:
    from corral.cli.serve import cmd_serve

    return await cmd_serve(args)


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
    from corral.cli.bench import article_table, plot_table, print_table

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
