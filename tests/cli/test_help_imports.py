"""``corral --help`` imports only what it needs: the command table, not the commands (issue 16).
Before, it loaded 428 modules (aiohttp, pydantic, sqlite3, the simulator) to print a list."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests._support import ROOT

PROBE = """
import sys
from corral.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = sorted({{name.split(".")[0] for name in sys.modules}} & {{"aiohttp", "pydantic", "sqlite3", "rich",
    "jsonschema", "orjson", "asyncio", "fastapi", "ray", "pyarrow", "llama_cpp"}})
print(" ".join(heavy), file=sys.stderr)
print(" ".join(sorted(name for name in sys.modules if name.startswith("corral"))), file=sys.stderr)
"""


def imported(argv: list[str]) -> tuple[list[str], list[str]]:
    # A process of its own: this one has imported everything already.
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "usage: corral" in done.stdout
    heavy, corral = done.stderr.splitlines()[-2:]
    return heavy.split(), corral.split()


def test_the_top_level_help_imports_no_command_and_no_library() -> None:
    heavy, corral = imported(["--help"])
    assert heavy == []
    assert corral == ["corral", "corral.cli", "corral.cli._tuning", "corral.errors"]


@pytest.mark.parametrize(("command", "absent"), [("run", "corral.sim"), ("sim", "corral.jobs")])
def test_a_command_imports_its_own_module_not_the_others(command: str, absent: str) -> None:
    _, corral = imported([command, "--help"])
    assert f"corral.cli.{command}" in corral
    assert not any(name == absent or name.startswith(absent + ".") for name in corral)
    assert "corral.cli.serve" not in corral
