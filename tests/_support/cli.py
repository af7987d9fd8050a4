"""``corral`` in the test's own process: ``main(argv)`` with its output captured (the ``corral`` fixture).

Most command-line tests need no process of their own. Calling ``main`` here skips an interpreter's
start-up and its imports on every call, and a failure shows its traceback. What a process would
have kept to itself is put back: the fixture runs commands in the repository (as ``cwd=ROOT``
did), environment changes go through ``monkeypatch`` (undone after the test), and the collector
settings ``tune_gc`` changes for a run are restored after each command. ``main`` runs its coroutine
on a new uvloop loop that it closes, so no loop or loop policy outlives a command.

Tests of signals, kills, ``python -m corral.cli`` and what importing a module loads keep a real
process.
"""

from __future__ import annotations

import gc
import io
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import pytest

__all__ = ["Corral", "Ran"]


@dataclass(frozen=True)
class Ran:
    """What one command did: the fields of ``subprocess.CompletedProcess`` the tests read."""

    returncode: int
    stdout: str
    stderr: str


class Corral:
    """``corral(*argv)`` runs one command and returns what it did."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self._capsys = capsys
        self._monkeypatch = monkeypatch

    def __call__(self, *argv: str, stdin: str | None = None, env: Mapping[str, str] | None = None) -> Ran:
        """Run ``corral ARGV``; ``stdin``: what it reads from standard input; ``env``: variables it sees
        set (for the rest of the test)."""
        self._capsys.readouterr()  # what the test printed before is not the command's
        for name, value in (env or {}).items():
            self._monkeypatch.setenv(name, value)
        if stdin is not None:
            self._monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
        # Imported here, not with this module: conftest imports it, and a test of what importing
        # corral loads (or a broken module while editing) must not meet it at collection.
        from corral.cli import main

        threshold = gc.get_threshold()
        try:
            returncode = main(list(argv))
        except SystemExit as exit:  # argparse: --help, --version, a usage error it finds itself
            if isinstance(exit.code, int):
                returncode = exit.code
            else:  # as the interpreter ends a process: a message is printed, and the code is 1
                returncode = 0 if exit.code is None else 1
                if exit.code is not None:
                    print(exit.code, file=sys.stderr)
        finally:
            gc.set_threshold(*threshold)
            gc.unfreeze()
            # What the command left in reference cycles is finalized now, so that a warning from
            # a finalizer (an unclosed file, say) belongs to this test, not to whichever runs next.
            gc.collect()
        out, err = self._capsys.readouterr()
        return Ran(returncode, out, err)
