"""Option groups and argparse types that several commands share (run, batch, serve)."""

from __future__ import annotations

import argparse

__all__ = ["add_limit_arguments", "add_request_arguments", "non_negative_int", "positive_int"]


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
