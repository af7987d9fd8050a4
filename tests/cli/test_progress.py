"""Progress display: the status and summary texts, the choice of display, and the display's lifecycle."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from corral.cli._progress import (
    DisplayMode,
    choose_display,
    format_duration,
    show_progress,
    status_line,
    summary_line,
)
from corral.engine._stats import RunStats


class TtyStream(io.StringIO):
    """A terminal as far as anyone asking ``isatty()`` can tell."""

    def isatty(self) -> bool:
        return True


def counters_since(seconds: float, **values: object) -> RunStats:
    """Counters of a run that started ``seconds`` ago (so rates and durations are predictable)."""
    counters = RunStats(started=time.perf_counter() - seconds)
    for name, value in values.items():
        setattr(counters, name, value)
    return counters


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.4, "0s"), (45, "45s"), (59.6, "1m00s"), (187, "3m07s"), (3599, "59m59s"),
     (7530, "2h05m"), (-3, "0s"), (float("inf"), "0s")],
)  # fmt: skip
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_rate_excludes_reused_items() -> None:
    counters = counters_since(10, done=1_100, reused=1_000)
    assert counters.rate() == pytest.approx(10.0, rel=1e-3)
    assert counters_since(10, done=500, reused=500).rate() == 0.0
    assert RunStats().rate() == 0.0


def test_eta_from_rate_and_items_left() -> None:
    assert counters_since(10, total=1_000, done=100).eta() == pytest.approx(90.0, rel=1e-3)
    assert counters_since(10, total=None, done=100).eta() is None  # total not counted yet
    assert counters_since(10, total=1_000).eta() is None  # no rate yet
    assert counters_since(10, total=1_000, done=1_000).eta() == 0.0


def test_status_line_with_known_total() -> None:
    counters = counters_since(
        100,
        total=1_000,
        done=100,
        ok=98,
        errors=2,
        in_flight=16,
        retries=3,
        prompt_tokens=45_678,
        cost=0.0123,
    )
    assert status_line(counters) == (
        "corral: 100/1,000 (10%) · 1.0 items/s · ETA 15m00s · 16 in flight · 3 retries · 2 errors"
        " · 45,678 tokens · $0.0123"
    )


def test_status_line_omits_what_is_zero_or_unknown() -> None:
    assert status_line(RunStats()) == "corral: 0 done · 0 in flight"
    counters = counters_since(10, done=1_234, ok=1_234, in_flight=4, retries=1, priced=False)
    assert status_line(counters) == "corral: 1,234 done · 123.4 items/s · 4 in flight · 1 retry"


def test_status_line_percent_is_floored() -> None:
    # 999 of 1,000 is not done: it must not read 100%.
    assert "999/1,000 (99%)" in status_line(RunStats(total=1_000, done=999))


def test_summary_line_full() -> None:
    counters = counters_since(
        12.3,
        total=10_000,
        done=10_000,
        ok=9_990,
        errors=10,
        kinds={"server_error": 3, "invalid_output": 7},
        reused=2_345,
        cached=120,
        requests=8_123,
        retries=45,
        rate_limited=40,
        prompt_tokens=1_000_000,
        completion_tokens=234_567,
        cost=1.2345,
        spent_before=2.2222,
    )
    line = summary_line(counters)
    assert line.startswith(
        "corral: 10,000 items: 9,990 ok, 10 errors (7 invalid_output, 3 server_error)"
        " · 2,345 from an earlier run · 120 cached · 8,123 requests, 45 retries (40 rate-limited)"
        " · 1,234,567 tokens · $1.23 (job $3.46) · 12.3 s ("
    )
    assert line.endswith(" items/s)")
    assert "(622.3 items/s)" in line or "(622.4 items/s)" in line  # (10,000 - 2,345) / 12.3 s


def test_summary_line_omits_zero_parts() -> None:
    line = summary_line(counters_since(2, total=3, done=3, ok=3, requests=3, priced=False))
    assert line == "corral: 3 items: 3 ok · 3 requests · 2.0 s (1.5 items/s)"
    assert summary_line(counters_since(4, done=1, ok=1)).endswith(" · $0 · 4.0 s (0.25 items/s)")
    assert summary_line(counters_since(1, done=1, ok=1, requests=1)).startswith(
        "corral: 1 item: 1 ok · 1 request · $0 · "  # a free model: nothing spent, and said so
    )


def test_summary_line_interrupted_and_long() -> None:
    counters = counters_since(187, total=10_000, done=8_000, ok=7_999, errors=1, requests=8_000)
    assert summary_line(counters).startswith("corral: 8,000/10,000 items: 7,999 ok, 1 error · 8,000 requests")
    assert " · 3m07s (" in summary_line(counters)


@pytest.mark.parametrize(
    ("cost", "spent_before", "text"),
    [(0.0123, None, " · $0.0123 · "), (0.00001, None, " · <$0.0001 · "),
     (1234.567, None, " · $1,234.57 · "), (0.99996, None, " · $1.00 · "), (0.5, 0.0, " · $0.5000 · "),
     (0.0, 0.25, " · $0 (job $0.2500) · ")],
)  # fmt: skip
def test_summary_line_money(cost: float, spent_before: float | None, text: str) -> None:
    assert text in summary_line(RunStats(done=1, ok=1, cost=cost, spent_before=spent_before))


def test_summary_line_without_any_cost() -> None:
    # The model's price is unknown: neither this run's cost nor the job's can be told.
    unpriced = RunStats(done=1, ok=1, cost=0.5, priced=False, spent_before=2.0)
    assert "$" not in summary_line(unpriced)
    assert "cost" not in summary_line(unpriced)


def test_choose_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    assert choose_display(quiet=False, stream=io.StringIO()) == "lines"
    assert choose_display(quiet=False, stream=TtyStream()) == "bar"
    assert choose_display(quiet=True, stream=TtyStream()) == "none"
    assert choose_display(quiet=True, stream=io.StringIO()) == "none"
    monkeypatch.setenv("TERM", "dumb")
    assert choose_display(quiet=False, stream=TtyStream()) == "lines"
    monkeypatch.delenv("TERM")
    assert choose_display(quiet=False, stream=TtyStream()) == "bar"
    monkeypatch.setenv("NO_COLOR", "1")  # no colour is not no bar
    assert choose_display(quiet=False, stream=TtyStream()) == "bar"
    closed = io.StringIO()
    closed.close()
    assert choose_display(quiet=False, stream=closed) == "lines"


async def test_lines_are_printed_every_interval_with_fresh_counters() -> None:
    counters = RunStats(total=1_000)
    stream = io.StringIO()
    pulled = 0

    def refresh() -> None:
        nonlocal pulled
        pulled += 1
        counters.done = counters.ok = min(100 * pulled, 1_000)

    async with show_progress(counters, mode="lines", stream=stream, interval=0.05, refresh=refresh):
        await asyncio.sleep(0.28)
    lines = stream.getvalue().splitlines()
    assert 3 <= len(lines) == pulled
    assert all(line.startswith("corral: ") for line in lines)
    assert lines[0].startswith("corral: 100/1,000 (10%)")
    assert lines[1].startswith("corral: 200/1,000 (20%)")
    await asyncio.sleep(0.12)
    assert len(stream.getvalue().splitlines()) == len(lines)  # stopped at exit: nothing after


async def test_lines_wait_one_interval_before_the_first() -> None:
    stream = io.StringIO()
    async with show_progress(RunStats(), mode="lines", stream=stream, interval=0.2):
        await asyncio.sleep(0.05)
    assert stream.getvalue() == ""


async def test_none_mode_writes_nothing_and_never_refreshes() -> None:
    stream = TtyStream()
    calls: list[None] = []
    async with show_progress(
        RunStats(), mode="none", stream=stream, interval=0.01, refresh=lambda: calls.append(None)
    ):
        await asyncio.sleep(0.05)
    assert stream.getvalue() == ""
    assert calls == []


async def test_bar_shows_the_final_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # room for every column: rich would crop them at 80
    counters = RunStats()
    stream = TtyStream()
    calls: list[None] = []
    stdout, stderr = sys.stdout, sys.stderr
    async with show_progress(counters, mode="bar", stream=stream, refresh=lambda: calls.append(None)):
        assert sys.stdout is stdout  # records written to stdout must never pass through rich
        counters.done = counters.ok = 500
        await asyncio.sleep(0.3)  # one refresh while the total is still unknown
        assert re.search(r"\s500\s", stream.getvalue())  # the count column, total unknown
        assert "500/" not in stream.getvalue()
        counters.total = 1_000
        counters.done, counters.ok, counters.errors = 1_000, 997, 3
        counters.in_flight, counters.prompt_tokens, counters.cost = 2, 12_345, 0.0421
    assert (sys.stdout, sys.stderr) == (stdout, stderr)  # rich's redirection is undone
    final = stream.getvalue().rsplit("\r", 1)[-1]  # the last render, left on screen
    for text in ("corral", "1,000/1,000", "100%", "in flight 2", "errors 3", "tokens 12,345", "$0.0421"):
        assert text in final
    assert len(calls) >= 2  # the periodic render and the final one


async def run_display(
    mode: DisplayMode,
    stream: io.StringIO,
    *,
    raises: BaseException | None = None,
    refresh: Callable[[], None] | None = None,
) -> None:
    """A body that runs under the display for a few renders, then raises ``raises`` if given."""
    async with show_progress(RunStats(), mode=mode, stream=stream, interval=0.01, refresh=refresh):
        await asyncio.sleep(0.05)
        if raises is not None:
            raise raises


@pytest.mark.parametrize("mode", ["lines", "bar"])
async def test_body_exception_propagates_and_display_stops(
    mode: DisplayMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    stderr = sys.stderr
    with pytest.raises(KeyError, match="boom"):
        await run_display(mode, TtyStream(), raises=KeyError("boom"))
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert sys.stderr is stderr


def broken_refresh() -> None:
    raise ZeroDivisionError


@pytest.mark.parametrize("mode", ["lines", "bar"])
async def test_body_exception_wins_over_a_failing_display(
    mode: DisplayMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    stderr = sys.stderr
    with pytest.raises(KeyError):
        await run_display(mode, TtyStream(), raises=KeyError("body"), refresh=broken_refresh)
    assert sys.stderr is stderr
    # And when the body succeeded, the display's failure is not hidden.
    with pytest.raises(ZeroDivisionError):
        await run_display(mode, TtyStream(), refresh=broken_refresh)
    assert sys.stderr is stderr


@pytest.mark.parametrize("mode", ["lines", "bar"])
async def test_cancelling_the_body_stops_the_display(
    mode: DisplayMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    stream = TtyStream()
    started = asyncio.Event()

    async def job() -> None:
        async with show_progress(RunStats(), mode=mode, stream=stream, interval=0.01):
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(job())
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == {asyncio.current_task()}
    written = len(stream.getvalue())
    assert written > 0
    await asyncio.sleep(0.05)
    assert len(stream.getvalue()) == written  # nothing draws after the cancellation


def test_importing_corral_progress_does_not_import_rich() -> None:
    code = "import sys, corral.cli._progress; assert 'rich' not in sys.modules, 'rich imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)
