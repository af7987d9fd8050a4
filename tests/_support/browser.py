"""Headless Chromium for the tests of pages corral writes or serves (Debian's ``chromium``, driven by
Playwright; ``make test`` installs it), behind the ``chromium`` and ``browser_page`` fixtures. Only
loopback, ``file:`` and ``data:`` addresses may load: anything else (a CDN, a font service) is refused
and reported as a problem of the page."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

__all__ = ["CHROMIUM_FLAGS", "BrowserPage", "chromium_path", "launch_chromium", "watched_page"]

#: flags that keep Chromium off the network it would otherwise call at start (and root-safe)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
_LOCAL_PREFIXES = ("file:", "data:", "blob:", "about:", "http://127.", "http://localhost", "http://[::1]")


def chromium_path() -> str | None:
    return os.environ.get("CORRAL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class BrowserPage:
    """A fresh page, and what went wrong on it: console errors, uncaught exceptions, refused or failed
    requests. A test asserts ``problems == []`` after driving the page."""

    page: object  # playwright.sync_api.Page (typed loosely: playwright is a test-only dependency)
    problems: list[str] = field(default_factory=list)


@contextmanager
def launch_chromium() -> Iterator[object]:
    """Debian's Chromium, headless; skips the test (fails it in CI) when it is not installed."""
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium, or run `make test`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def watched_page(chromium: object) -> Iterator[BrowserPage]:
    """A fresh page in its own context, every problem on it collected, every far request refused."""
    from playwright.sync_api import Browser, ConsoleMessage, Request, Route

    assert isinstance(chromium, Browser)
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = BrowserPage(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            seen.problems.append(f"console {message.type}: {message.text}")

    def on_route(route: Route) -> None:
        url = route.request.url
        if url.startswith(_LOCAL_PREFIXES):
            route.continue_()
        else:
            seen.problems.append(f"refused a request off this machine: {url}")
            route.abort()

    def on_failed(request: Request) -> None:
        seen.problems.append(f"request failed: {request.url} ({request.failure})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: seen.problems.append(f"uncaught: {exc}"))
    page.on("requestfailed", on_failed)
    page.route("**/*", on_route)
    try:
        yield seen
    finally:
        context.close()
