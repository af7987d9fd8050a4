"""Shared fixtures. No test may reach the internet: every backend here points at loopback."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PERSON = "examples/person.py:Person"


def run_command(source: str | Path, base_url: str, *options: str) -> list[str]:
    """``corral run SOURCE`` for the article's Person against a simulator, as a subprocess argv."""
    return [sys.executable, "-m", "corral.cli", "run", str(source), "--schema", PERSON,
            "--base-url", base_url, "--model", "sim-1", *options]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse connections to anything but loopback, so a test that would call a real provider fails."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else None
        if isinstance(host, str) and not (host.startswith("127.") or host in ("::1", "localhost")):
            raise ConnectionRefusedError(f"test tried to reach {host}: tests never leave loopback")
        return real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture(autouse=True)
def _own_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test's runs keep their store in the test's own directory (inherited by subprocesses), so
    no test resumes another's job; tests of the default location remove this."""
    monkeypatch.setenv("CORRAL_STORE", str(tmp_path / "store" / "corral.db"))


@pytest.fixture
def examples() -> Path:
    return EXAMPLES


# Headless Chromium (tests of the HTML report and of the page `corral serve` shows).
from browser import browser_page, chromium  # noqa: E402, F401
