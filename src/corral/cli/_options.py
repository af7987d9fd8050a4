"""The options of the commands that run a job (run, batch submit), the groups several commands
share (run, batch, serve, bench), argparse types, and the one mapping of flags to a
:class:`~corral.jobs.JobSpec`."""

from __future__ import annotations

import argparse
import re

from corral.backends import Mode
from corral.engine import ORDERS, STRATEGIES
from corral.errors import ConfigError
from corral.io.items import FORMATS
from corral.io.sinks import SINK_FORMATS
from corral.jobs import STORE_ENV, BatchOptions, DocumentOptions, ExtractOptions, JobSpec, RayOptions
from corral.store import DEFAULT_DIR

__all__ = [
    "LOCAL_RAY",
    "add_job_arguments",
    "add_limit_arguments",
    "add_request_arguments",
    "add_run_arguments",
    "add_target_options",
    "job_spec",
    "non_negative_int",
    "positive_int",
]


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """Which model answers, where, with which key (run, batch submit, serve, bench)."""
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


def add_request_arguments(group: argparse._ActionsContainer) -> None:
    """How each request is made and retried (``corral run`` and ``corral serve``)."""
    group.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=2,
        metavar="N",
        help="re-ask up to N times when a reply does not validate (default 2)",
    )
    group.add_argument(
        "--reasoning-effort",
        choices=["none", "minimal", "low", "medium", "high"],
        help="how long a reasoning model (o-series, gpt-5 family) thinks before it answers; "
        "default: the model's own (what each model accepts varies: gpt-5 takes minimal, gpt-5.1 none)",
    )
    group.add_argument(
        "--max-tokens",
        type=positive_int,
        default=1024,
        metavar="N",
        help="reply token limit per request (default 1024)",
    )
    group.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS", help="per request (default 120)"
    )
    group.add_argument(
        "--confidence",
        choices=["auto", "logprobs", "off"],
        default="auto",
        help="each value's confidence from the reply's token log-probabilities (in json_schema and "
        "json_object modes): auto asks providers known to give them (OpenAI); logprobs asks any server",
    )
    group.add_argument(
        "--samples",
        type=positive_int,
        default=1,
        metavar="K",
        help="where no log-probabilities come (tool calls, Anthropic): ask each item K times in all, the "
        "further K-1 at temperature 1, and give each value the share of answers that agree (K× the cost)",
    )
    group.add_argument(
        "--calibration",
        metavar="FILE.json",
        help="map each confidence to how often it was right on labelled data (the file corral eval "
        "--fit-calibration writes)",
    )
    group.add_argument(
        "--context-window",
        type=positive_int,
        metavar="TOKENS",
        help="the model's context window, prompt and reply, when the server does not report it and "
        "corral does not know the model (an Ollama model run with a larger num_ctx)",
    )
    group.add_argument(
        "--retries",
        type=non_negative_int,
        default=6,
        metavar="N",
        help="per item: retry 429s, 5xx, timeouts and dropped connections up to N times (default 6)",
    )


def add_limit_arguments(group: argparse._ActionsContainer) -> None:
    """The provider's limits (``corral run`` and ``corral serve``)."""
    group.add_argument("--rpm", type=float, metavar="N", help="the provider's requests-per-minute limit")
    group.add_argument("--tpm", type=float, metavar="N", help="the provider's tokens-per-minute limit")
    group.add_argument(
        "--no-adaptive",
        action="store_true",
        help="without --rpm/--tpm or rate-limit headers, do not slow down on 429s (only back off)",
    )


def add_document_arguments(group: argparse._ActionsContainer) -> None:
    """Chunking, merging and grounding (``corral run``)."""
    group.add_argument(
        "--chunk-tokens",
        type=positive_int,
        default=2000,
        metavar="N",
        help="cut a longer text into chunks of at most N tokens, at paragraphs and sentences; fewer "
        "when the model's context window leaves less room (default 2000)",
    )
    group.add_argument(
        "--overlap",
        type=non_negative_int,
        default=50,
        metavar="N",
        help="tokens of a chunk's last sentences that begin the next one (default 50)",
    )
    group.add_argument(
        "--no-chunking",
        action="store_true",
        help="never cut a text: one too long for the model is an error naming its size and the limit",
    )
    group.add_argument(
        "--passes",
        type=positive_int,
        default=1,
        metavar="N",
        help="read every chunk N times and merge the answers: finds more, costs N times (default 1)",
    )
    group.add_argument(
        "--no-ground", action="store_true", help="do not look for each value's place in the text"
    )
    group.add_argument(
        "--ungrounded",
        choices=["keep", "drop", "reask"],
        default="keep",
        help="a value found nowhere in the text: keep it, flagged in 'grounding' (default); drop it "
        "(its list entry, or the field); reask the model, naming it",
    )
    group.add_argument(
        "--review-below",
        type=float,
        metavar="P",
        help="mark for review (the record's 'review' list) every value whose confidence is below P, "
        "or that is not found in the text",
    )
    group.add_argument(
        "--escalate",
        metavar="MODEL",
        help="ask MODEL (a stronger one, served where --model is) again for the items with a value under "
        "--review-below: its values replace the doubtful ones, and the record keeps the first answer",
    )
    group.add_argument(
        "--merge-key",
        action="append",
        default=[],
        metavar="LIST=FIELD[,FIELD]",
        help="entries of the list LIST (a path: people, orders.items) with equal FIELDs are one "
        "entry when chunks are merged, their other fields merged (default: entries equal as a whole)",
    )


def merge_keys(entries: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``--merge-key LIST=FIELD[,FIELD]`` flags as (list path, key fields) pairs."""
    keys = []
    for entry in entries:
        path, equals, names = entry.partition("=")
        fields = tuple(name.strip() for name in names.split(",") if name.strip())
        if not equals or not path.strip() or not fields:
            raise ConfigError(f"--merge-key {entry!r}: write it LIST=FIELD[,FIELD], like people=name")
        keys.append((path.strip(), fields))
    return tuple(keys)


def document_options(args: argparse.Namespace) -> DocumentOptions:
    """The ``long texts and documents`` flags as :class:`~corral.jobs.DocumentOptions`."""
    keys = merge_keys(args.merge_key)
    return DocumentOptions(
        chunking=not args.no_chunking,
        chunk_tokens=args.chunk_tokens,
        overlap=args.overlap,
        passes=args.passes,
        ground=not args.no_ground,
        ungrounded=args.ungrounded,
        keys=keys,
        review_below=args.review_below,
    )


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number of 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def job_spec(args: argparse.Namespace, *, batch: bool = False) -> JobSpec:
    """The job ``corral run``'s (or ``corral batch submit``'s) flags describe: the one place flags
    become a :class:`~corral.jobs.JobSpec`. ``batch``: its requests go in provider batches."""
    extract = ExtractOptions(
        model=args.model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        allow_plain_http=args.allow_plain_http,
        mode=args.mode,
        prompt=args.prompt,
        max_retries=args.max_retries,
        max_tokens=args.max_tokens,
        reasoning_effort=args.reasoning_effort,
        concurrency=args.concurrency,
        timeout=args.timeout,
        many=args.many,
        rpm=args.rpm,
        tpm=args.tpm,
        adaptive=not args.no_adaptive,
        retries=args.retries,
        context_window=args.context_window,
        confidence={"auto": None, "logprobs": True, "off": False}[args.confidence],
        samples=args.samples,
        calibration=args.calibration,
    )
    batched = None
    if batch or args.batch:
        batched = BatchOptions(
            retries=args.batch_retries,
            reask_online=args.reask_online,
            poll_every=args.poll_every,
            token_limit=args.batch_token_limit,
            lost=args.lost_batches,
        )
    on_ray = (
        None if args.ray is None else RayOptions(address=_ray_address(args.ray), workers=args.ray_workers)
    )
    return JobSpec(
        schema=args.schema,
        input=args.input,
        output=args.output,
        extract=extract,
        input_format=args.format,
        text_field="text" if args.text_field is None else args.text_field,
        id_field=args.id_field,
        template=input_template(args.template, args.text_field),
        keep=tuple(args.keep),
        output_format=args.output_format,
        csv_formulas=args.csv_formulas,
        strategy=args.strategy,
        order=args.order,
        store=args.store,
        durable=not args.no_store,
        fresh=args.fresh,
        cache=not args.no_cache,
        retry_errors=args.retry_errors,
        max_cost=args.max_cost,
        prices=args.prices,
        batch=batched,
        ray=on_ray,
        documents=document_options(args),
        escalate=args.escalate,
    )


def input_template(given: str | None, text_field: str | None) -> str | None:
    """``--template TEXT`` with the ``\\n``, ``\\t`` and ``\\\\`` a shell leaves as they are made a newline,
    a tab and a backslash; a usage error beside ``--text-field``, which it replaces."""
    if given is None:
        return None
    if text_field is not None:
        raise ConfigError(
            "--template builds each text from the fields it names, --text-field takes it from one: "
            "give one of them"
        )
    return re.sub(r"\\\\|\\n|\\t", lambda found: _ESCAPES[found.group()], given)


#: what --template's backslash sequences stand for (any other backslash is itself)
_ESCAPES = {"\\\\": "\\", "\\n": "\n", "\\t": "\t"}


#: ``--ray`` without an address: start a Ray of this machine's own
LOCAL_RAY = "local"


def _ray_address(given: str) -> str | None:
    return None if given == LOCAL_RAY else given


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """What ``corral run`` (and ``corral batch submit``) takes."""
    parser.add_argument(
        "input",
        metavar="INPUT",
        help="a .jsonl, .csv, .parquet, .arrow/.feather or .txt file (one item per row or line), - for "
        "stdin, or documents (a file an item): a folder, a glob like 'papers/**/*.pdf', or one .md, "
        ".html or .pdf file",
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
    add_target_options(parser)
    add_run_arguments(parser)


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """Every ``corral run`` option except the model target (shared with ``bench``)."""
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
        type=positive_int,
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
    add_request_arguments(run)
    add_limit_arguments(run)
    run.add_argument(
        "--text-field",
        metavar="NAME",
        help="the field (JSONL) or column (CSV, Parquet, Arrow) with the text (default: text)",
    )
    run.add_argument(
        "--id-field",
        default="id",
        metavar="NAME",
        help="the field or column with the item's id (default: id; without one, the line or row number)",
    )
    run.add_argument(
        "--template",
        metavar="TEXT",
        help="build each text from several fields instead of --text-field: 'Title: {title}\\n\\n{body}' "
        "(only {field} substitutions; {{ and }} are braces; \\n and \\t in TEXT are a newline and "
        "a tab, \\\\ a backslash). A row that lacks a field is that row's error",
    )
    run.add_argument(
        "--keep",
        nargs="+",
        action="extend",
        default=[],
        metavar="FIELD",
        help="copy these input fields into every output record, right after its id (e.g. --keep doi "
        "year; null where a row has none); give INPUT before --keep, or end the list with --",
    )
    run.add_argument(
        "--format",
        choices=[*sorted(set(FORMATS.values())), "documents"],
        help="input format when the extension does not say (documents: a .txt file read whole; "
        "parquet: .parquet/.pq; arrow: Arrow IPC / Feather, file or stream)",
    )
    run.add_argument("-o", "--output", metavar="OUT", help="output file: .jsonl (default), .csv or .parquet")
    run.add_argument(
        "--output-format", choices=SINK_FORMATS, help="output format when the extension does not say"
    )
    run.add_argument(
        "--csv-formulas",
        action="store_true",
        help="write CSV cells that begin with = + - @ (a spreadsheet formula) as they are; by default "
        "they get a leading ' so that no spreadsheet runs text that came from outside",
    )

    add_document_arguments(run.add_argument_group("long texts and documents"))
    durable = run.add_argument_group("durability and cost")
    durable.add_argument(
        "--store",
        metavar="PATH",
        help=f"run store (SQLite) file or directory (default: {DEFAULT_DIR}/ beside the output, "
        f"or ${STORE_ENV})",
    )
    durable.add_argument("--no-store", action="store_true", help="keep no store: no resume, no cache")
    durable.add_argument(
        "--fresh", action="store_true", help="forget this output's earlier results and start over"
    )
    durable.add_argument(
        "--no-cache", action="store_true", help="send every request, even one answered before"
    )
    durable.add_argument(
        "--retry-errors", action="store_true", help="extract again the items that ended in error last time"
    )
    durable.add_argument(
        "--max-cost",
        type=float,
        metavar="USD",
        help="stop starting requests before the job (all its runs) would spend more than this",
    )
    durable.add_argument(
        "--report",
        metavar="FILE.html",
        help="when the run ends, write its report there (as `corral report` does)",
    )
    durable.add_argument(
        "--prices",
        metavar="FILE",
        help='JSON prices per million tokens: {"MODEL": {"input": 0.15, "output": 0.6}}',
    )
    batch = run.add_argument_group("provider batch API (half price, answered within 24 h)")
    batch.add_argument(
        "--batch",
        action="store_true",
        help="send the requests as OpenAI / Anthropic batches and wait for them (see `corral batch`)",
    )
    batch.add_argument(
        "--batch-retries",
        type=non_negative_int,
        default=2,
        metavar="N",
        help="resubmit a line that errored or expired in up to N follow-up batches (default 2)",
    )
    batch.add_argument(
        "--reask-online",
        action="store_true",
        help="re-ask invalid answers and resubmit failed lines online (full price, no wait)",
    )
    batch.add_argument(
        "--poll-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="first wait between batch status checks; it grows to 5 minutes (default 10)",
    )
    batch.add_argument(
        "--batch-token-limit",
        type=positive_int,
        metavar="TOKENS",
        help="the provider's enqueued-token limit: batches are cut to fit under it and the rest waits "
        "for running batches to end (default: learned when a batch fails with token_limit_exceeded)",
    )
    batch.add_argument(
        "--lost-batches",
        choices=["resubmit", "wait"],
        default="resubmit",
        help="a batch whose creation answer was lost and that cannot be found again (Anthropic "
        "batches carry no label): resubmit its requests (they may be paid twice), or wait and say so",
    )
    scale = run.add_argument_group("scale out on a Ray cluster (the ray extra)")
    scale.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run on Ray: the cluster at ADDRESS (e.g. ray://head:10001 or auto), or without one a Ray of "
        "this machine's own; the --rpm/--tpm limits are kept by all workers together",
    )
    scale.add_argument(
        "--ray-workers",
        type=positive_int,
        default=2,
        metavar="N",
        help="Ray workers, each with --concurrency requests in flight (default 2)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary on stderr")
    run.add_argument(
        "--status-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="when stderr is not a terminal: a status line this often (default 10)",
    )
