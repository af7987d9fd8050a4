"""The ``corral sim`` command-line options, kept beside the simulator they configure."""

from __future__ import annotations

import argparse

from corral.sim.config import DEFAULT_CONTEXT_WINDOW, SimConfig

__all__ = ["add_arguments", "config_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, metavar="MEDIAN", help="median reply latency"
    )
    parser.add_argument("--latency-dist", choices=["fixed", "lognormal"], default="lognormal")
    parser.add_argument("--seed", type=int, default=0, help="makes latencies and faults reproducible")
    parser.add_argument(
        "--invalid-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of answers that violate the schema (to exercise re-asking)",
    )
    parser.add_argument(
        "--malformed-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of answers that are not JSON at all",
    )
    documents = parser.add_argument_group("long texts and the answers read from them")
    documents.add_argument(
        "--context-window",
        type=_window,
        default=DEFAULT_CONTEXT_WINDOW,
        metavar="TOKENS",
        help="the model's context window: a request whose prompt + max_tokens exceeds it is refused "
        "with the provider's 400 (context_length_exceeded; Anthropic's 'prompt is too long'), never "
        "cut short; GET /v1/models reports it as max_model_len; 0: none "
        f"(default: {DEFAULT_CONTEXT_WINDOW}, gpt-4o-mini's)",
    )
    documents.add_argument(
        "--hallucinate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of the answer's string values (schema answers and few-shot, langextract-style "
        "ones alike) replaced by a plausible one that is nowhere in the text (an invented name), by "
        "seed and text",
    )
    documents.add_argument(
        "--misplace",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of the answer's string values (likewise) miscopied from the text (case, whitespace, "
        "straightened quotes or dashes, a dropped diacritic, a one-letter typo): an exact search "
        "fails, a normalised or fuzzy one finds them; by seed and text",
    )
    documents.add_argument(
        "--field-error",
        action="append",
        default=[],
        type=_field_error,
        metavar="[MODEL:]NAME=SHARE",
        help="share of the field NAME's values answered wrong yet schema-valid (an age a few years off, "
        "another name of the text, another enum member, a date shifted), by seed and text; NAME is a "
        "property name wherever it stands, '*' every field without a share of its own; repeatable "
        "(--field-error age=0.3 --field-error name=0.1); MODEL:NAME for requests to that model only "
        "(--field-error gpt-4o-mini:age=0.3). Requests with logprobs get lower ones for them",
    )
    limits = parser.add_argument_group("rate limits (OpenAI-style 429s and x-ratelimit-* headers)")
    limits.add_argument("--rpm", type=int, metavar="N", help="requests per minute (default: unlimited)")
    limits.add_argument(
        "--tpm", type=int, metavar="N", help="tokens per minute, prompt + max_tokens (default: unlimited)"
    )
    limits.add_argument(
        "--no-rate-limit-headers",
        dest="rate_limit_headers",
        action="store_false",
        help="send no x-ratelimit-* and no retry-after: clients must find the limit blindly",
    )
    limits.add_argument(
        "--rate-limit-bucket",
        choices=["second", "minute"],
        default="second",
        help="second: a bucket of one second's worth of each limit, starting with one second's worth "
        "(OpenAI's quantized enforcement; the default); minute: a full minute's worth, starting full",
    )
    faults = parser.add_argument_group("transport and server faults (shares of requests, by seed)")
    for flag, what in _FAULTS.items():
        faults.add_argument(flag, type=float, default=0.0, metavar="SHARE", help=what)
    faults.add_argument(
        "--hang-s", type=float, default=3600.0, metavar="S", help="how long a hung request is held"
    )
    faults.add_argument(
        "--trickle-s", type=float, default=2.0, metavar="S", help="how long a trickled body takes"
    )
    faults.add_argument(
        "--refuse-mode",
        action="append",
        default=[],
        choices=["json_schema", "tools", "json_object"],
        help="a structured-output mode this server lacks: answered 500 with a validation error, as "
        "llama.cpp's servers do (repeatable)",
    )
    batches = parser.add_argument_group(
        "provider batches (OpenAI /v1/batches, Anthropic /v1/messages/batches)"
    )
    batches.add_argument(
        "--batch-seconds",
        type=float,
        default=5.0,
        metavar="S",
        help="real seconds a batch takes from creation to its end (its timestamps run faster)",
    )
    batches.add_argument(
        "--batch-expire-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of batch lines never answered: the batch ends expired",
    )
    batches.add_argument(
        "--batch-token-limit",
        type=int,
        metavar="TOKENS",
        help="enqueued prompt tokens per model across running OpenAI batches (token_limit_exceeded)",
    )
    batches.add_argument(
        "--batch-api-error-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of batch reads (status, list, results) answered 500 (OpenAI) or 529 (Anthropic)",
    )


_FAULTS = {
    "--error-rate": "answered 500, 502 or 503",
    "--reset-rate": "connection closed mid-body",
    "--hang-rate": "never answered (held --hang-s)",
    "--trickle-rate": "valid answer sent slowly over --trickle-s",
    "--bad-body-rate": "HTTP 200 with an HTML page instead of JSON",
    "--bad-arguments-rate": "tool-call arguments that are not JSON (--malformed-rate's tools-mode name)",
}


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        latency_ms=args.latency_ms,
        latency_dist=args.latency_dist,
        seed=args.seed,
        invalid_rate=args.invalid_rate,
        malformed_rate=args.malformed_rate,
        bad_arguments_rate=args.bad_arguments_rate,
        server_error_rate=args.error_rate,
        reset_rate=args.reset_rate,
        hang_rate=args.hang_rate,
        trickle_rate=args.trickle_rate,
        bad_body_rate=args.bad_body_rate,
        hang_s=args.hang_s,
        trickle_s=args.trickle_s,
        rpm=args.rpm,
        tpm=args.tpm,
        rate_limit_headers=args.rate_limit_headers,
        rate_limit_bucket=args.rate_limit_bucket,
        batch_seconds=args.batch_seconds,
        batch_expire_rate=args.batch_expire_rate,
        batch_api_error_rate=args.batch_api_error_rate,
        batch_token_limit=args.batch_token_limit,
        refused_modes=tuple(args.refuse_mode),
        context_window=args.context_window or None,
        hallucinate=args.hallucinate,
        misplace=args.misplace,
        field_errors=dict(args.field_error),
    )


def _field_error(raw: str) -> tuple[str, float]:
    name, equals, share = raw.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"NAME=SHARE (age=0.3, or *=0.1 for every field), not {raw!r}")
    try:
        value = float(share)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a share between 0 and 1 after '=', not {share!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a share between 0 and 1, not {value:g}")
    return name.strip(), value


def _window(raw: str) -> int:
    try:
        tokens = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of tokens, not {raw!r}") from None
    if tokens < 0:
        raise argparse.ArgumentTypeError(f"at least 0 (0: no window), not {tokens}")
    return tokens
