"""Where the tests find the repository and its examples, and the ``corral run`` command line they use."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["CORRAL_PROCESS", "EXAMPLES", "PERSON", "ROOT", "run_args", "run_command"]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
#: the article's Person as ``--schema`` takes it (relative: commands run in ROOT)
PERSON = "examples/person.py:Person"
#: the ``corral`` command as a process (for the tests that need one: signals, kills, a server)
CORRAL_PROCESS = [sys.executable, "-m", "corral.cli"]


def run_args(source: str | Path, base_url: str, *options: str) -> list[str]:
    """The arguments of ``corral run SOURCE`` for the article's Person against a simulator."""
    return ["run", str(source), "--schema", PERSON, "--base-url", base_url, "--model", "sim-1", *options]


def run_command(source: str | Path, base_url: str, *options: str) -> list[str]:
    """``corral run SOURCE`` for the article's Person against a simulator, as a process's argv."""
    return [*CORRAL_PROCESS, *run_args(source, base_url, *options)]
