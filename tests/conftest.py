"""Shared fixtures and hooks. No test may reach the internet: every backend here points at loopback.

Data and helpers are in ``tests._support``; this file holds only fixtures and pytest hooks."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._support import EXAMPLES, ROOT
from tests._support.browser import BrowserPage, launch_chromium, watched_page
from tests._support.cli import Corral


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


@pytest.fixture
def no_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider's key this machine may have set is seen (``*_API_KEY`` unset for the test)."""
    for name in [name for name in os.environ if name.endswith("_API_KEY")]:
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _own_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test's runs keep their store in the test's own directory (inherited by subprocesses), so
    no test resumes another's job; tests of the default location remove this."""
    monkeypatch.setenv("CORRAL_STORE", str(tmp_path / "store" / "corral.db"))


@pytest.fixture
def examples() -> Path:
    return EXAMPLES


@pytest.fixture
def corral(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Corral:
    """The ``corral`` command in this process, run in the repository (``tests._support.cli``)."""
    monkeypatch.chdir(ROOT)
    return Corral(capsys, monkeypatch)


@pytest.fixture
def chromium() -> Iterator[object]:
    """Headless Chromium (tests of the HTML report and of the page ``corral serve`` shows)."""
    # Per test, not per session: Playwright's sync API keeps an event loop running on the main
    # thread while it is open, and every asyncio test after it would find that loop in its way.
    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def browser_page(chromium: object) -> Iterator[BrowserPage]:
    with watched_page(chromium) as page:
        yield page


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that opens Chromium ``browser``, however it gets there (``-m "not browser"``)."""
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
