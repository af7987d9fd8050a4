"""The ``corral sim`` command-line options, kept beside the simulator they configure."""

from __future__ import annotations

import argparse

from corral.sim.config import SimConfig

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


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        latency_ms=args.latency_ms,
        latency_dist=args.latency_dist,
        seed=args.seed,
        invalid_rate=args.invalid_rate,
        malformed_rate=args.malformed_rate,
    )
