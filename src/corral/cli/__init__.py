"""The ``corral`` command: a thin layer over the public API.

Exit codes: 0 every item extracted; 1 some items ended in error (all are in the output), the run
was stopped by the provider (bad key, unknown model) or the cost cap was reached; 2 a usage problem
found before anything was sent; 130 interrupted.

    __init__    main(): the command table, exit codes, uvloop, the GC tuning
    run         ``corral run``: read, extract durably, write, show progress
    _ray        ``corral run --ray``: the job on a Ray cluster
    batch       ``corral run --batch`` and ``corral batch submit | status | collect | cancel``
    report      ``corral report``: a run as one HTML page (and its plots as PNG)
    serve       ``corral serve``: its options; the service itself is :mod:`corral.serve`
    bench       ``corral bench``: the article's five strategies beside its published times
    sim         ``corral sim``: the simulator as a server
    _options    option groups and argparse types several commands share; flags → a job's spec
    _pass       one pass of an opened job over its input, with progress
    _progress   the live bar, the status lines and the summary on stderr
    _signals    Ctrl-C and SIGTERM: cancel the run cleanly, keep what finished
    _tuning     process-level tuning for throughput (the garbage collector)
    __main__    ``python -m corral.cli``

Only the chosen command's module is imported, when its options are declared: ``corral --help``
imports no command at all. Nothing outside this package imports it (tests/test_layers.py).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from corral import __version__
from corral.cli._tuning import tune_gc
from corral.errors import CorralError, OutputError, ProviderError, UsageError

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
  corral report 12 --png plots/              # run 12, and its plots as PNG images
  corral report out.jsonl --gold gold.jsonl --schema person.py:Person   # with its evaluation"""
SERVE_EXAMPLE = """example:
  corral serve --base-url http://127.0.0.1:8000/v1 --model sim-1      # then open http://127.0.0.1:8080/
  CORRAL_SERVE_TOKEN=secret corral serve --host 0.0.0.0 --model openai/gpt-4o-mini --rpm 500"""
EVAL_EXAMPLE = """example:
  corral eval out.jsonl --gold gold.jsonl --schema person.py:Person
  corral eval out.jsonl --gold gold.csv --schema people.py:People --merge-key people=name --json eval.json
  corral eval out.jsonl --gold gold.jsonl --schema review.json --min-f1 0.9   # exits 1 below it (CI)"""
COMPARE_EXAMPLE = """example:
  corral compare people.jsonl --gold gold.jsonl --schema person.py:Person --sample 200 \\
      --config small:model=openai/gpt-4o-mini --config big:model=openai/gpt-4o \\
      --config strict:model=openai/gpt-4o-mini,mode=json_schema --plot front.png"""
BENCH_EXAMPLE = """example:
  corral bench                               # the built-in simulator, ~0.9 s per request like the article
  corral bench --plot article.png
  corral bench --model openai/gpt-4o-mini    # a real endpoint (needs OPENAI_API_KEY)"""


@dataclass(frozen=True, slots=True)
class _Command:
    name: str
    help: str
    epilog: str
    #: the module whose ``add_arguments(parser)`` declares its options and sets its ``handler``
    module: str


COMMANDS = (
    _Command("run", "extract records from a file of texts", RUN_EXAMPLE, "corral.cli.run"),
    _Command(
        "batch",
        "a job through the providers' batch APIs: submit, status, collect, cancel",
        BATCH_EXAMPLE,
        "corral.cli.batch",
    ),
    _Command(
        "report",
        "write a run's report: one HTML page with plots, errors and every item",
        REPORT_EXAMPLE,
        "corral.cli.report",
    ),
    _Command(
        "eval",
        "score an output against gold records, field by field, with confidence intervals",
        EVAL_EXAMPLE,
        "corral.cli.eval",
    ),
    _Command(
        "compare",
        "run one sample through several models, prompts or modes: accuracy against cost and latency",
        COMPARE_EXAMPLE,
        "corral.cli.compare",
    ),
    _Command(
        "serve",
        "extraction as an HTTP service that streams results (and a web page to try it)",
        SERVE_EXAMPLE,
        "corral.cli.serve",
    ),
    _Command(
        "sim", "serve an OpenAI-compatible simulator for tests and demos", SIM_EXAMPLE, "corral.cli.sim"
    ),
    _Command("bench", "reproduce the article's strategy table", BENCH_EXAMPLE, "corral.cli.bench"),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser(argv)
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
    import asyncio  # here: `corral --help` has no loop to run

    tune_gc()
    try:
        import uvloop
    except ImportError:  # not on Windows; the standard loop works, a little slower
        return asyncio.run(coro)
    return uvloop.run(coro)


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser; only the command ``argv`` names gets its options (and its module
    imported): the others are listed, which is all ``corral --help`` shows of them."""
    chosen = next((arg for arg in (sys.argv[1:] if argv is None else argv) if not arg.startswith("-")), None)
    parser = argparse.ArgumentParser(
        prog="corral",
        description="Turn a dataset of texts into validated, typed records with a language model.",
    )
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(
            command.name,
            help=command.help,
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if command.name == chosen:
            importlib.import_module(command.module).add_arguments(sub)
    return parser
