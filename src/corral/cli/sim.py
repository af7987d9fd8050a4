"""``corral sim``: the simulator (:mod:`corral.sim`) as a server, for tests and demos."""

from __future__ import annotations

import argparse
import sys

from corral.sim import args as sim_args
from corral.sim import serve

__all__ = ["add_arguments"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sim_args.add_arguments(parser)
    parser.set_defaults(handler=_cmd_sim)


async def _cmd_sim(args: argparse.Namespace) -> int:
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
