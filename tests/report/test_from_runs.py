"""``corral report`` from real runs: ``corral run`` against the simulator writes the store, the report
reads it back. The timeline (samples), the failures by kind, the plots' totals and the item table
are checked against what the run and the simulator counted; the page is opened in Chromium."""

from __future__ import annotations

import itertools
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from corral.report._data import find_run, load_report
from corral.report._model import Plot, RunReport
from corral.sim import SimConfig, SimulatorThread
from corral.store import RunStore
from tests._support import PERSON
from tests._support.browser import BrowserPage
from tests._support.cli import Corral, Ran

N = 300


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("".join(f"My name is Person{n} and I am {20 + n % 50} years old\n" for n in range(N)))
    return path


def run(corral: Corral, sim: SimulatorThread, source: Path, out: Path, *options: str) -> Ran:
    return corral(
        "run",
        str(source),
        "--schema",
        PERSON,
        "--base-url",
        sim.url,
        "--model",
        "sim-1",
        "-o",
        str(out),
        "-q",
        *options,
    )


def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "corral.db"  # the tests' own store (conftest sets $CORRAL_STORE)


def report_of(tmp_path: Path, selector: str | None = None, **options: Any) -> RunReport:
    with RunStore.open(store_path(tmp_path)) as store:
        return load_report(store, find_run(store, selector), **options)


def plot(report: RunReport, slug: str) -> Plot:
    return next(p for p in report.plots if p.slug == slug)


def total(plot: Plot, label: str, *, per_second: bool = False) -> float:
    """What a series adds up to; a rate times each bar's own width (its window's length)."""
    series = next(s for s in plot.series if s.label == label)
    if not per_second:
        return sum(y for _, y in series.points)
    widths = series.widths or (plot.bar_width,) * len(series.points)
    return sum(y * width for (_, y), width in zip(series.points, widths, strict=True))


def fact(report: RunReport, label: str) -> tuple[str, str]:
    found = next(f for f in report.facts if f.label == label)
    return found.value, found.detail


@pytest.fixture
def faulty_run(corral: Corral, source: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A run that met 5xx answers and invalid replies (re-asked): its store and the sim's counts."""
    config = SimConfig(latency_ms=20, seed=4, server_error_rate=0.05, invalid_rate=0.1)
    with SimulatorThread(config) as sim:
        done = run(corral, sim, source, tmp_path / "out.jsonl", "--concurrency", "32", "--max-retries", "0")
        assert done.returncode == 1
        stats = sim.stats.to_json()
    return tmp_path / "out.jsonl", stats


def test_a_run_records_its_timeline_and_its_failed_requests_by_kind(
    faulty_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, stats = faulty_run
    with sqlite3.connect(store_path(tmp_path)) as db:
        samples = db.execute(
            "SELECT time, requests, retries, in_flight, done FROM samples ORDER BY time"
        ).fetchall()
        started, requests, retries, faults = db.execute(
            "SELECT started, requests, retries, faults FROM runs"
        ).fetchone()
    assert len(samples) >= 3, "a start, some ticks, and the end"
    assert samples[0][0] >= started
    assert all(b[1] >= a[1] and b[2] >= a[2] for a, b in itertools.pairwise(samples))
    assert samples[-1][1:3] == (requests, retries), "the last sample is the run's final count"
    assert samples[-1][4] == N and samples[-1][3] == 0
    assert max(s[3] for s in samples) <= 32, "never more in flight than the concurrency"
    server_errors = sum(n for code, n in stats["by_status"].items() if code.startswith("5"))
    assert server_errors > 0
    assert json.loads(faults) == {"server_error": server_errors}
    assert requests == stats["requests"]


def test_the_reports_numbers_add_up_to_what_the_run_did(
    faulty_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, stats = faulty_run
    records = [json.loads(line) for line in out.read_text().splitlines()]
    ok = sum(r["error"] is None for r in records)
    report = report_of(tmp_path, str(out))
    assert fact(report, "Items")[0] == f"{N:,}"
    assert f"{ok:,} ok · {N - ok:,} errors" in fact(report, "Items")[1]
    assert fact(report, "Requests")[0] == f"{stats['requests']:,}"
    assert "server error ×" in fact(report, "Retries")[1]
    completions = plot(report, "completions")
    assert completions.series[0].points[-1][1] == ok
    assert completions.series[1].points[-1][1] == N - ok
    assert total(plot(report, "latency"), "items") == N
    assert total(plot(report, "throughput"), "requests/s", per_second=True) == pytest.approx(
        stats["requests"]
    )
    retries = plot(report, "retries")
    assert total(retries, "retries") == pytest.approx(int(fact(report, "Retries")[0]))
    assert 0 < total(retries, "429s") <= total(retries, "retries")  # 503s pause the run like 429s
    in_flight = plot(report, "in_flight")
    assert max(y for _, y in in_flight.series[0].points) <= 32
    assert in_flight.series[1].points[0][1] == 32, "the concurrency bound drawn as the limit"
    # every item in the table, with its input beside its record, and the errors grouped by kind
    assert len(report.items) == report.items_total == N and not report.items_note
    first = next(item for item in report.items if item.id == "1")
    assert first.input == "My name is Person0 and I am 20 years old"
    assert first.output == {"name": "Person0", "age": 20} or not first.ok
    assert [item.id for item in report.items[:3]] == ["1", "2", "3"], "natural order of ids"
    assert [(group.kind, group.count) for group in report.errors] == [("invalid_output", N - ok)]
    assert report.errors[0].example.startswith("no valid output after 1 attempt")


def test_the_achieved_rate_is_shown_against_a_given_limit(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    config = SimConfig(latency_ms=5, rate_limit_headers=False)
    with SimulatorThread(config) as sim:
        page = tmp_path / "run.html"
        options = ["--rpm", "6000", "--concurrency", "8", "--report", str(page)]
        assert run(corral, sim, source, tmp_path / "out.jsonl", *options).returncode == 0
    assert "of the 6,000/min limit" in page.read_text(), "--report wrote the run's page as it ended"
    report = report_of(tmp_path)
    value, detail = fact(report, "Requests")
    assert value == f"{N:,}"
    assert "of the 6,000/min limit" in detail
    limit = next(s for s in plot(report, "throughput").series if s.style == "limit")
    assert {y for _, y in limit.points} == {100.0}, "6,000 per minute is 100 per second"


def test_a_resumed_run_reports_the_items_it_reused_and_the_jobs_history(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    half = tmp_path / "half.txt"
    half.write_text("".join(source.read_text().splitlines(keepends=True)[: N // 2]))
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=1)) as sim:
        assert run(corral, sim, half, out).returncode == 0
        assert run(corral, sim, source, out).returncode == 0
    report = report_of(tmp_path, str(out))
    assert [line.status for line in report.runs] == ["completed", "completed"]
    assert "run 2 (2 of 2 of this job)" in report.subtitle
    assert f"{N // 2:,} from earlier runs" in fact(report, "Items")[1]
    completions = plot(report, "completions")
    assert completions.series[0].points[-1][1] == N - N // 2, "only this run's own items are drawn"
    assert "answered from earlier runs are not drawn" in completions.note
    first = report_of(tmp_path, "1")
    assert first.runs == report.runs and "run 1 (1 of 2" in first.subtitle


def test_a_capped_table_keeps_every_error_and_says_so(
    faulty_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    report = report_of(tmp_path, max_items=50)
    errors = report.errors[0].count
    assert len(report.items) == 50 and report.items_total == N
    assert sum(not item.ok for item in report.items) == min(errors, 50)
    assert "holds 50 of the job's 300 items" in report.items_note


def test_report_command_writes_the_page_and_the_plots(
    corral: Corral, faulty_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, _ = faulty_run
    page, images = tmp_path / "r.html", tmp_path / "plots"
    assert corral("report", str(out), "-o", str(page), "--png", str(images)).returncode == 0
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") or html.lower().startswith("<!doctype html>")
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
    assert sorted(p.name for p in images.iterdir()) == sorted(
        f"{slug}.png" for slug in ("completions", "throughput", "in_flight", "latency", "retries")
    )
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in images.iterdir())


def test_report_command_names_what_it_cannot_find(corral: Corral, tmp_path: Path) -> None:
    result = corral("report")
    assert result.returncode == 2
    assert "there is no run store at" in result.stderr
    with RunStore.open(store_path(tmp_path)) as store:
        store.open_job("out.jsonl", {"model": "m"})
    result = corral("report", "7")
    assert result.returncode == 2
    assert "there is no run 7" in result.stderr
    result = corral("report", "other.jsonl")
    assert result.returncode == 2
    err = result.stderr
    assert "no job writes other.jsonl" in err and "its jobs: out.jsonl" in err


def test_the_page_of_a_real_run_renders_cleanly_in_chromium(
    faulty_run: tuple[Path, dict[str, Any]], tmp_path: Path, browser_page: BrowserPage
) -> None:
    from playwright.sync_api import Page

    page = browser_page.page
    assert isinstance(page, Page)
    target = tmp_path / "r.html"
    # A subprocess: the open browser's event loop leaves no room for asyncio.run in this thread.
    report = subprocess.run([sys.executable, "-m", "corral.cli", "report", "-o", str(target)],
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert report.returncode == 0, report.stderr
    page.goto(target.as_uri())
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 20_000
    for slug in ("completions", "throughput", "in_flight", "latency", "retries"):
        assert page.locator(f"#{slug} svg").count() == 1, slug
    assert browser_page.problems == []


def test_a_report_is_never_written_over_a_file_corral_did_not_write(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    # Issue 15, L1: `corral report -o FILE` overwrote whatever FILE was, the job's own output included.
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=1)) as sim:
        assert run(corral, sim, source, out).returncode == 0
    notes = tmp_path / "notes.html"
    notes.write_text("<html><body>my own notes</body></html>\n")
    link = tmp_path / "link.html"
    link.symlink_to(out)
    kept = {path: path.read_bytes() for path in (source, out, notes)}
    for target, why in [
        (notes, "is not a report corral wrote"),
        (source, "is not a report corral wrote"),
        (out, "is the job's output"),
        (link, "is the job's output"),
        (store_path(tmp_path), "is the run store"),
    ]:
        result = corral("report", str(out), "-o", str(target))
        assert result.returncode == 2
        err = result.stderr
        assert f"corral: error: {target} " in err and why in err and "choose another -o" in err
    assert {path: path.read_bytes() for path in kept} == kept
    # What may be written: corral's own earlier report, again and again, and an empty file.
    page, empty = tmp_path / "page.html", tmp_path / "empty.html"
    empty.touch()
    for target in (page, page, empty):
        assert corral("report", str(out), "-o", str(target)).returncode == 0
        assert '<meta name="generator" content="corral report">' in target.read_text()[:200]


@pytest.mark.slow
def test_a_run_refuses_a_report_over_its_input_output_or_a_stranger_before_it_starts(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    out, notes = tmp_path / "out.jsonl", tmp_path / "notes.html"
    notes.write_text("<p>not corral's</p>")
    link = tmp_path / "in-link.html"
    link.symlink_to(source)
    before = source.read_bytes()
    with SimulatorThread(SimConfig(latency_ms=1)) as sim:
        for target, why in [
            (source, "is the input"),
            (link, "is the input"),
            (out, "is the output"),  # not written yet: the report would have replaced it at the end
            (notes, "is not a report corral wrote"),
        ]:
            for mode in ([], ["--batch"]):
                result = run(corral, sim, source, out, "--report", str(target), *mode)
                assert result.returncode == 2
                err = result.stderr
                assert why in err and "choose another --report" in err
        assert sim.stats.requests == 0
        assert not out.exists() and not store_path(tmp_path).exists()  # nothing was opened for writing
        assert source.read_bytes() == before and notes.read_text() == "<p>not corral's</p>"
        page = tmp_path / "run.html"
        assert run(corral, sim, source, out, "--report", str(page)).returncode == 0
        again = run(corral, sim, source, out, "--report", str(page))
        assert again.returncode == 0  # its own earlier report: replaced
    assert "run 2 (2 of 2 of this job)" in page.read_text()


@pytest.fixture
def paced_run(corral: Corral, source: Path, tmp_path: Path) -> Path:
    """An ordinary run paced at its limit (2,400 a minute, 40/s: 300 items in 7.5 s), and its page."""
    with SimulatorThread(SimConfig(latency_ms=5, rate_limit_headers=False)) as sim:
        page = tmp_path / "run.html"
        options = ["--rpm", "2400", "--concurrency", "16", "--report", str(page)]
        assert run(corral, sim, source, tmp_path / "out.jsonl", *options).returncode == 0
    return page


def test_an_ordinary_run_paced_at_its_limit_reads_true_in_chromium(
    paced_run: Path, tmp_path: Path, browser_page: BrowserPage
) -> None:
    # Issue 17, the report's small untruths on an ordinary run: request-rate spikes above a limit
    # the run kept, an empty chart for "no retries", a latency note that left out the waiting, and a
    # record of two fields in four lines of JSON.
    from playwright.sync_api import Page, expect

    report = report_of(tmp_path)
    throughput = plot(report, "throughput")
    bars = next(s for s in throughput.series if s.style == "bars")
    assert {y for _, y in next(s for s in throughput.series if s.style == "limit").points} == {40.0}
    assert max(y for _, y in bars.points) <= 40.0 * 1.1, "no bar above the limit the run kept"
    assert total(throughput, "requests/s", per_second=True) == pytest.approx(N)
    median = float(fact(report, "Latency")[0].removesuffix(" ms")) / 1000
    assert median >= 20 * 0.005, "items waited for the limit far longer than the 5 ms answers took"

    page = browser_page.page
    assert isinstance(page, Page)
    page.goto(paced_run.as_uri())
    # Each bar at most a tenth taller than the dashed limit line stands above the axis.
    drawn = page.evaluate("""() => {
        const svg = document.querySelector('#throughput svg');
        const limit = svg.querySelector('polyline[stroke-dasharray="6 4"]').getBoundingClientRect();
        return Array.from(svg.querySelectorAll('rect'))
            .filter((rect) => rect.querySelector('title'))
            .map((rect) => { const box = rect.getBoundingClientRect();
                             return [box.bottom - box.top, box.bottom - limit.top]; });
    }""")
    assert len(drawn) == len(bars.points) >= 7
    assert all(height <= 1.1 * line for height, line in drawn), drawn

    retries = page.locator("figure#retries")
    expect(retries.locator("svg")).to_contain_text("None in this run: no request was retried")
    assert retries.locator("svg rect title").count() == 0, "no bars of zero"

    note = page.locator("figure#latency .note")
    expect(note).to_contain_text("waiting for its turn under the rate and concurrency limits")
    expect(note).not_to_contain_text("first request")

    rows = page.locator("#item-rows tr")
    expect(rows).to_have_count(50)
    expect(rows.first.locator(".record .fields")).to_have_text("name: Person0 · age: 20JSON")
    line = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.record .fields')).lineHeight)")
    heights = page.evaluate("""() => Array.from(document.querySelectorAll('#item-rows .record .fields'))
        .map((fields) => fields.getBoundingClientRect().height)""")
    assert len(heights) == 50 and max(heights) < 1.5 * line, "a record of two fields takes one line"
    assert browser_page.problems == []
