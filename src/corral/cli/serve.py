"""``corral serve``: extraction as an HTTP service (see :mod:`corral.serve`).

Only argument parsing lives at module level: FastAPI and uvicorn (the ``serve`` extra) are imported
when the command runs, so ``corral --help`` works without them.
"""

from __future__ import annotations

import argparse

from corral.cli._options import add_limit_arguments, add_request_arguments, add_target_options, positive_int

__all__ = ["SERVE_TOKEN_ENV", "add_arguments", "add_serve_arguments", "cmd_serve"]

#: the bearer token clients must send (required when bound beyond loopback)
SERVE_TOKEN_ENV = "CORRAL_SERVE_TOKEN"
#: the modes of corral.backends.Mode, listed here so that building the parser imports no backend
_MODES = ("tools", "json_schema", "json_object", "grammar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``corral serve``'s options and handler."""
    add_target_options(parser)
    add_serve_arguments(parser)
    parser.set_defaults(handler=cmd_serve)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Every ``corral serve`` option except the model target (--model, --base-url, --api-key-env)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument(
        "--token-env",
        default=SERVE_TOKEN_ENV,
        metavar="NAME",
        help=f"environment variable holding the bearer token clients must send (default {SERVE_TOKEN_ENV}); "
        "required when --host is not a loopback address",
    )
    parser.add_argument(
        "--tokens",
        metavar="FILE",
        help="one client per line, 'NAME TOKEN': each client sees, replaces and cancels only its own jobs, "
        "and has its own cache (the file must be private: chmod 600)",
    )
    parser.add_argument(
        "--store", metavar="PATH", help="run store (default .corral/corral.db, or $CORRAL_STORE)"
    )

    limits = parser.add_argument_group("the provider's limits (kept by all jobs together)")
    limits.add_argument(
        "--concurrency",
        type=positive_int,
        default=16,
        metavar="N",
        help="requests in flight, all jobs together (default 16)",
    )
    add_limit_arguments(limits)

    jobs = parser.add_argument_group("every job")
    jobs.add_argument("--prompt", metavar="TEXT", help="the instruction for jobs that send none")
    jobs.add_argument(
        "--mode",
        choices=_MODES,
        help="how the schema goes on the wire (default: the backend's preferred mode)",
    )
    add_request_arguments(jobs)

    service = parser.add_argument_group("what one client may ask")
    service.add_argument(
        "--max-body-mb",
        type=float,
        default=10.0,
        metavar="MB",
        help="largest request body, JSON or uploaded file (default 10)",
    )
    service.add_argument(
        "--max-items",
        type=positive_int,
        default=100_000,
        metavar="N",
        help="items per job (default 100,000)",
    )
    service.add_argument(
        "--max-jobs",
        type=positive_int,
        default=16,
        metavar="N",
        help="jobs running at once; more are refused with 429 (default 16)",
    )
    service.add_argument(
        "--max-cost",
        type=float,
        metavar="USD",
        help="what one job (all its runs) may spend; its other items wait, kept for a resubmission",
    )
    service.add_argument(
        "--max-total-cost",
        type=float,
        metavar="USD",
        help="what all jobs together may spend while the server runs; then new jobs get 402",
    )
    service.add_argument(
        "--prices",
        metavar="FILE",
        help='JSON prices per million tokens, for the caps: {"MODEL": {"input": 0.15, "output": 0.6}}',
    )
    service.add_argument(
        "--max-connections",
        type=positive_int,
        default=1024,
        metavar="N",
        help="open connections at most; at the cap a new one replaces the one idle longest, and is "
        "refused with 503 only when all are busy (default 1024)",
    )
    service.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds a client has to send a request's headers before it is disconnected (default 10)",
    )
    service.add_argument(
        "--body-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds a client has to send a request's whole body (default 60; raise it for large "
        "uploads over slow links)",
    )
    service.add_argument("--access-log", action="store_true", help="log every request on stderr")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {value}")
    return value


async def cmd_serve(args: argparse.Namespace) -> int:
    from corral.errors import ConfigError

    try:
        from corral.serve.main import serve
    except ImportError as exc:  # the serve extra is not installed
        if exc.name not in {"fastapi", "uvicorn", "starlette", "multipart", "python_multipart"}:
            raise
        raise ConfigError(
            f"corral serve needs FastAPI and uvicorn ({exc.name} is missing): pip install 'corral[serve]'"
        ) from None
    return await serve(args)
