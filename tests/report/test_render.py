"""The report's renderers: SVG plots, the HTML page (driven in headless Chromium) and PNG images.

The report here is built by hand, as :mod:`corral.report._data` would build it from a store: a few
hundred items (ok and failed, unicode, hostile markup), plots with a few hundred points, an empty one.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import math
import random
import re
import struct
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from corral.errors import ConfigError, OutputError
from corral.report._html import render_html
from corral.report._model import ErrorGroup, Fact, ItemRow, Plot, RunLine, RunReport, Series
from corral.report._png import write_pngs
from corral.report._svg import plot_svg, x_axis, y_axis
from tests._support.browser import BrowserPage

HOSTILE = 'Note: </script><img src=x onerror=alert(1)> and <b onmouseover="alert(2)">bold</b>'
QUOTED = 'She said "yes" & left — Tom & Jerry\'s <friends>'
UNIQUE = "Zebulon Quixote moved to Reykjavík in 1999."
LONG = "Long letter. " + "Dear committee, I write to you about the harbour. " * 20 + "THE-END-MARKER"
ITEM_COUNT = 300
PAGE_SIZE = 50
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_PEOPLE = ["Zoë Ångström lives in Łódź.", "山田太郎は東京に住んでいます。", "Ana María Pérez, 34, Sevilla 🌞",
           "Jean-Luc Picard (59) commands a ship.", "Олег Иванов, инженер из Казани."]  # fmt: skip
_ERRORS = [
    ("output_invalid", "reply did not validate: age: Input should be a valid integer <got 'old'>"),
    ("rate_limited", "429 Too Many Requests after 6 attempts"),
    ("timeout", "no answer in 60 s"),
]


def _item(index: int, rng: random.Random) -> ItemRow:
    item_id = f"item-{index:04d}"
    text = {5: HOSTILE, 17: QUOTED, 123: UNIQUE, 40: LONG}.get(index, f"{_PEOPLE[index % 5]} (row {index})")
    latency, tokens = round(rng.uniform(0.3, 9.0), 3), rng.randint(180, 900)
    if index % 9 == 4 and index not in (5, 17, 123, 40):
        kind, message = _ERRORS[index // 9 % 3]
        return ItemRow(item_id, False, text, None, kind, message, 3, latency, tokens, tokens * 2e-6, 1)
    record = {"name": text.split(",")[0][:40], "age": 20 + index % 50, "tags": ["a&b", "<c>"], "note": None}
    if index == 5:
        record["name"] = HOSTILE
    return ItemRow(item_id, True, text, record, None, None, 1 + index % 2, latency, tokens, tokens * 2e-6, 2)


def _plots(rng: random.Random) -> tuple[Plot, ...]:
    seconds = [i * 1.5 for i in range(400)]  # 10 minutes of samples
    throughput = Plot(
        slug="throughput",
        title="Items per second",
        x_label="time since start",
        y_label="items / s",
        series=(
            Series(
                "completed",
                tuple((t, 4 + 3 * math.sin(t / 40) + rng.random()) for t in seconds),
                "line",
                "ok",
            ),
            Series("failed", tuple((t, rng.random() * 0.8) for t in seconds), "line", "error"),
        ),
        note="Completed and failed items per second, over 10 s windows.",
    )
    in_flight = Plot(
        slug="in-flight",
        title="Requests in flight",
        x_label="time since start",
        y_label="requests",
        series=(
            Series(
                "in flight", tuple((t, float(rng.randint(20, 64))) for t in seconds[::4]), "step", "neutral"
            ),
            Series("concurrency limit", ((0.0, 64.0), (300.0, 48.0)), "limit", "limit"),
        ),
    )
    buckets = range(0, 600, 20)
    sent = [float(rng.randint(100, 140)) for _ in buckets]
    retried = [float(rng.randint(0, 30)) for _ in buckets]
    limited = [float(rng.randint(0, int(r))) for r in retried]
    requests = Plot(
        slug="requests",
        title="Requests, retries and 429s",
        x_label="time since start",
        y_label="per 20 s",
        series=(  # each a subset of the one before, drawn in front of it
            Series("requests", tuple(zip(map(float, buckets), sent, strict=True)), "bars", "neutral"),
            Series("retries", tuple(zip(map(float, buckets), retried, strict=True)), "bars", "retry"),
            Series("429s", tuple(zip(map(float, buckets), limited, strict=True)), "bars", "error"),
        ),
        bar_width=20.0,
    )
    latency = Plot(
        slug="latency",
        title="Latency per item",
        x_label="latency (s)",
        y_label="items",
        series=(Series("items", tuple((b / 2, float(rng.randint(0, 40))) for b in range(20)), "bars"),),
        bar_width=0.5,
        note="How long items took, first request to valid record.",
    )
    tokens = Plot(
        slug="tokens",
        title="Tokens per item",
        x_label="tokens",
        y_label="items",
        x_unit="number",
        series=(
            Series("items", tuple((180.0 + 40 * b, float(rng.randint(0, 30))) for b in range(18)), "bars"),
        ),
        bar_width=40.0,
    )
    retries = Plot(
        slug="retries",
        title="Retries",
        x_label="time since start",
        y_label="retries / s",
        series=(Series("retries", (), "line", "retry"),),
        note="No request was retried in this run.",
    )
    return throughput, in_flight, requests, latency, tokens, retries


@pytest.fixture
def report() -> RunReport:
    rng = random.Random(7)
    items = tuple(_item(index, rng) for index in range(ITEM_COUNT))
    failed = [item for item in items if not item.ok]
    errors = tuple(
        ErrorGroup(kind, len(group), len(group) / ITEM_COUNT, message, tuple(item.id for item in group[:3]))
        for kind, message in _ERRORS
        if (group := [item for item in failed if item.error_kind == kind])
    )
    return RunReport(
        run=2,
        title="people.jsonl → people.out.jsonl",
        subtitle="job 3 · run 2 · finished · 2025-03-14 09:26",
        facts=(
            Fact("Items", f"{ITEM_COUNT:,}", "all of the input", "plain"),
            Fact("Succeeded", f"{ITEM_COUNT - len(failed):,}", f"{1 - len(failed) / ITEM_COUNT:.1%}", "good"),
            Fact("Failed", f"{len(failed):,}", "3 kinds of error", "bad"),
            Fact("Retries", "214", "6.1% of requests", "warn"),
            Fact("Wall time", "9m58s", "0.5 items/s"),
            Fact("Cost", "$0.8312", "gpt-4o-mini"),
        ),
        settings=(
            ("Model", "openai/gpt-4o-mini"),
            ("Schema", "examples/person.py:Person"),
            ("Prompt", "Extract the person described in the text.\nUse null for anything not stated."),
            ("Concurrency", "adaptive, at most 64"),
        ),
        runs=(
            RunLine(1, "2025-03-14 09:02", "interrupted", "4m12s", 120, 131, "$0.3120"),
            RunLine(2, "2025-03-14 09:16", "finished", "9m58s", 180, 214, "$0.5192"),
        ),
        plots=_plots(rng),
        errors=errors,
        items=items,
        items_total=ITEM_COUNT,
        generated="2025-03-14 09:30 UTC",
    )


def _texts(svg: str) -> str:
    return " ".join(ET.fromstring(svg).itertext())


# --- SVG ----------------------------------------------------------------------------------------


def test_every_plot_is_well_formed_svg_naming_its_series(report: RunReport) -> None:
    for plot in report.plots:
        svg = plot_svg(plot)
        root = ET.fromstring(svg)
        assert root.tag == "svg" and root.get("viewBox") == "0 0 560 290" and root.get("width") == "100%"
        texts = _texts(svg)
        assert plot.title in texts and plot.x_label in texts and plot.y_label in texts
        for series in plot.series:
            assert series.label in texts
        assert "nan" not in svg.lower() and "inf" not in svg.lower()
    throughput = plot_svg(report.plots[0])
    hover = ET.fromstring(throughput).findall(".//g[@class='hover']/circle")
    assert 0 < len(hover) <= 300  # 800 points, thinned
    assert "completed: 1:30 →" in _texts(throughput)  # a tooltip: series, time, value
    bars = ET.fromstring(plot_svg(report.plots[2])).findall(".//rect/title")
    assert len(bars) == 90 and "429s: 0:20–0:40: " in " ".join(bar.text or "" for bar in bars)


def test_time_axes_read_as_clock_times_and_counts_with_separators(report: RunReport) -> None:
    throughput = report.plots[0]
    assert x_axis(throughput).labels == ("0:00", "2:00", "4:00", "6:00", "8:00")
    assert y_axis(report.plots[2]).labels == ("0", "50", "100", "150")  # bars overlap: no stacking

    def axis_for(xs: tuple[float, float], ys: tuple[float, float], x_label: str = "time") -> Plot:
        unit: Literal["seconds", "number"] = "seconds" if x_label == "time" else "number"
        return Plot("p", "P", x_label, "y", (Series("s", ((xs[0], ys[0]), (xs[1], ys[1]))),), x_unit=unit)

    assert x_axis(axis_for((0, 10), (0, 1))).labels == ("0s", "2s", "4s", "6s", "8s", "10s")
    assert x_axis(axis_for((0, 7200), (0, 1))).labels[:2] == ("0:00:00", "0:30:00")
    assert y_axis(axis_for((0, 1), (0, 48_000))).labels == ("0", "10k", "20k", "30k", "40k", "50k")
    assert y_axis(axis_for((0, 1), (0, 4_000))).labels[-1] == "4,000"
    assert x_axis(axis_for((0, 4_000), (0, 1), "tokens")).labels[-1] == "4,000"


def test_empty_plot_shows_its_note_in_a_frame(report: RunReport) -> None:
    empty = report.plots[-1]
    assert empty.empty
    svg = plot_svg(empty)
    root = ET.fromstring(svg)
    assert empty.note in _texts(svg)
    assert root.findall(".//polyline") == [] and root.findall(".//g[@class='hover']") == []
    assert root.find("rect") is not None  # the frame


@pytest.mark.parametrize(
    "points",
    [
        ((3.0, 5.0),),  # a single point
        ((0.0, 0.0), (10.0, 0.0), (20.0, 0.0)),  # all zero
        ((0.0, 1.0), (1e12, 2.0), (math.nan, 3.0), (4.0, math.inf), (-math.inf, 1.0)),  # huge x, NaN, inf
        ((0.0, -2.5), (1e-6, 7.25)),  # negative y, tiny x range
    ],
)
def test_awkward_data_still_draws(points: tuple[tuple[float, float], ...]) -> None:
    for style in ("line", "step", "bars"):
        plot = Plot(
            "p", "P <&>", "time since start", "y", (Series("data & more", points, style),), from_zero=False
        )
        svg = plot_svg(plot)
        root = ET.fromstring(svg)
        assert "data & more" in _texts(svg) and "P <&>" in _texts(svg)
        assert "nan" not in svg.lower() and "inf" not in svg.lower()
        numbers = re.findall(r'(?:x|y|cx|cy|width|height)="(-?[\d.]+)"', svg)
        assert numbers and all(-1 <= float(n) <= 560 for n in numbers)
        drawn = root.findall(".//polyline") + root.findall(".//circle") + root.findall(".//g/rect")
        assert drawn


# --- HTML, as text ------------------------------------------------------------------------------


def _embedded_items(page: str) -> list[list[object]]:
    match = re.search(r'<script type="application/json" id="items">(.*?)</script>', page, re.DOTALL)
    assert match is not None
    loaded: list[list[object]] = json.loads(match.group(1))
    return loaded


def test_hostile_text_cannot_leave_the_json_script(report: RunReport) -> None:
    page = render_html(report)
    assert "</script><img" not in page
    assert page.count("</script>") == 2  # the items' JSON and the page's script, nothing else
    outside_json = re.sub(r'<script type="application/json" id="items">.*?</script>', "", page, flags=re.S)
    assert "onerror" not in outside_json and "Zebulon" not in outside_json
    assert r"\u003c/script\u003e\u003cimg src=x onerror=alert(1)\u003e" in page
    items = {row[0]: row for row in _embedded_items(page)}
    assert items["item-0005"][2] == HOSTILE and json.loads(str(items["item-0005"][3]))["name"] == HOSTILE
    assert items["item-0017"][2] == QUOTED
    assert "\u2028" not in page and "<img" not in page


def test_page_is_self_contained_with_every_section(report: RunReport) -> None:
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>") and '<link rel="icon" href="data:,">' in page
    assert re.search(r"https?://|//[a-z]|@import|url\(", page) is None
    for plot in report.plots:
        assert f'id="{plot.slug}"' in page
    assert "people.jsonl → people.out.jsonl" in page and "Generated 2025-03-14 09:30 UTC" in page
    assert 'class="fact tone-bad"' in page and "$0.8312" in page
    assert "<code>output_invalid</code>" in page and 'data-item="item-0004"' in page
    assert "&lt;got &#x27;old&#x27;&gt;" in page  # the example message, escaped
    assert "Use null for anything not stated." in page and "interrupted" in page


def test_items_note_is_shown_when_the_table_is_capped(report: RunReport) -> None:
    from dataclasses import replace

    capped = replace(report, items_total=5_000, items_note="The 300 most recent of 5,000 items are listed.")
    page = render_html(capped)
    assert '<p class="items-note">The 300 most recent of 5,000 items are listed.</p>' in page
    assert "Items (5,000)" in page


def _policy(page: str) -> dict[str, list[str]]:
    match = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert match is not None, "the page has no Content-Security-Policy"
    directives = [part.split() for part in match.group(1).split(";") if part.strip()]
    return {name: values for name, *values in directives}


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_page_allows_only_its_own_script_and_style(report: RunReport) -> None:
    # Issue 15, I4: the page had no policy, so markup that got past the escaping would have run.
    page = render_html(report)
    head = page[: page.index("</head>")]
    assert head.index("Content-Security-Policy") < head.index("<style>")  # before what it governs
    script = re.findall(r"<script>(.*?)</script>", page, re.S)
    style = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(script) == 1 and len(style) == 1
    assert _policy(page) == {
        "default-src": ["'none'"],
        "script-src": [_sha256(script[0])],
        "style-src": [_sha256(style[0])],
        "img-src": ["data:"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
    }
    assert " style=" not in page  # an inline style attribute would be refused: there is none to refuse


# --- HTML, in the browser -----------------------------------------------------------------------


def _open(browser_page: BrowserPage, report: RunReport, tmp_path: Path) -> object:
    from playwright.sync_api import Page

    page = browser_page.page
    assert isinstance(page, Page)
    path = tmp_path / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    page.on("dialog", lambda dialog: browser_page.problems.append(f"dialog: {dialog.message}"))
    page.goto(path.as_uri())
    return page


def test_page_loads_cleanly_and_renders(browser_page: BrowserPage, report: RunReport, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    page = _open(browser_page, report, tmp_path)
    assert isinstance(page, Page)
    expect(page.locator("#item-rows tr")).to_have_count(PAGE_SIZE)
    expect(page.locator("#items-range")).to_have_text(f"Showing 1–50 of {ITEM_COUNT}")
    assert page.locator("figure.plot svg").count() == len(report.plots)
    shot = tmp_path / "report.png"
    page.screenshot(path=shot, full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 50_000
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1280 and height > 2_000  # the whole page, not the viewport
    assert browser_page.problems == []


def test_hostile_input_stays_text_in_the_table(
    browser_page: BrowserPage, report: RunReport, tmp_path: Path
) -> None:
    from playwright.sync_api import Page, expect

    page = _open(browser_page, report, tmp_path)
    assert isinstance(page, Page)
    page.fill("#item-search", "onerror")
    rows = page.locator("#item-rows tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".input-text")).to_have_text(HOSTILE)
    assert page.locator("#item-rows img, #item-rows b").count() == 0
    assert page.evaluate("document.querySelectorAll('img, [onerror], [onmouseover]').length") == 0
    page.fill("#item-search", '"yes" & left')
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".input-text")).to_have_text(QUOTED)
    assert browser_page.problems == []


def test_search_filters_pages_and_empty_state(
    browser_page: BrowserPage, report: RunReport, tmp_path: Path
) -> None:
    from playwright.sync_api import Page, expect

    page = _open(browser_page, report, tmp_path)
    assert isinstance(page, Page)
    rows, shown = page.locator("#item-rows tr"), page.locator("#items-range")
    page.fill("#item-search", "zebulon QUIXOTE")  # any case
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(UNIQUE)
    expect(rows.first.locator("td.id")).to_have_text("item-0123")
    expect(page.locator("#items-empty")).to_be_hidden()

    page.fill("#item-search", "no such text anywhere")
    expect(rows).to_have_count(0)
    expect(page.locator("#items-empty")).to_have_text("No item matches “no such text anywhere”.")
    expect(shown).to_have_text("")

    page.fill("#item-search", "")
    expect(rows).to_have_count(PAGE_SIZE)
    expect(shown).to_have_text(f"Showing 1–50 of {ITEM_COUNT}")
    expect(page.locator("#page-prev")).to_be_disabled()
    page.click("#page-next")
    expect(shown).to_have_text(f"Showing 51–100 of {ITEM_COUNT}")
    expect(rows.first.locator("td.id")).to_have_text("item-0050")
    page.fill("#item-search", "Łódź")  # a new search starts at page 1
    matching = sum(1 for item in report.items if "Łódź" in item.input)
    assert 50 < matching < 100
    expect(shown).to_have_text(f"Showing 1–50 of {matching} · filtered from {ITEM_COUNT}")
    page.click("#page-next")
    expect(shown).to_have_text(f"Showing 51–{matching} of {matching} · filtered from {ITEM_COUNT}")
    expect(page.locator("#page-next")).to_be_disabled()

    page.fill("#item-search", "THE-END-MARKER")  # a long input: clipped, with a toggle
    text = rows.first.locator(".input-text")
    expect(text).not_to_contain_text("THE-END-MARKER")
    text.locator("button.more").click()
    expect(text).to_contain_text("THE-END-MARKER")
    assert browser_page.problems == []


def test_status_filter_and_error_links(browser_page: BrowserPage, report: RunReport, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    page = _open(browser_page, report, tmp_path)
    assert isinstance(page, Page)
    failed = [item for item in report.items if not item.ok]
    rows = page.locator("#item-rows tr")
    errors_choice = page.locator(".segmented label").filter(has_text="Errors")
    expect(errors_choice).to_have_text(f"Errors{len(failed)}")
    errors_choice.click()
    expect(rows).to_have_count(len(failed))
    assert rows.locator(".badge.ok").count() == 0
    assert rows.locator(".badge.error").count() == len(failed)
    expect(rows.nth(0).locator(".error-kind")).to_have_text(failed[0].error_kind or "")

    target = report.errors[1].item_ids[2]
    page.locator(f'#sec-errors .item-link[data-item="{target}"]').click()
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td.id")).to_have_text(target)
    expect(page.locator("#item-only")).to_be_visible()
    expect(page.locator('input[name="item-status"][value="all"]')).to_be_checked()
    page.click("#item-only-clear")
    expect(rows).to_have_count(PAGE_SIZE)
    assert browser_page.problems == []


def test_page_fits_a_phone_screen(browser_page: BrowserPage, report: RunReport, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    page = _open(browser_page, report, tmp_path)
    assert isinstance(page, Page)
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator("#item-rows tr")).to_have_count(PAGE_SIZE)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert browser_page.problems == []


@pytest.fixture
def witness() -> Iterator[tuple[str, list[str]]]:
    """A loopback server that counts what is asked of it: a page that calls out is caught here."""
    hits: list[str] = []

    class Count(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b"window.smuggled = 'external';" if self.path.endswith(".js") else b"x"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Count)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_markup_smuggled_into_the_page_neither_runs_nor_calls_out(
    browser_page: BrowserPage, report: RunReport, tmp_path: Path, witness: tuple[str, list[str]]
) -> None:
    from dataclasses import replace

    from playwright.sync_api import Page, expect

    base, hits = witness
    page = browser_page.page
    assert isinstance(page, Page)
    # As an escaping bug would let them in: raw markup in the body, and in an item's text.
    smuggled = (
        f'<img src="{base}/img.png"><script src="{base}/external.js"></script>'
        f"<script>window.smuggled = 'inline'; fetch('{base}/fetch');</script>"
        "<img src=x onerror=\"window.smuggled = 'handler'\">"
        f'<link rel="stylesheet" href="{base}/style.css">'
        f"<style>body {{ background: url({base}/bg.png) }}</style>"
        f'<iframe src="{base}/frame.html"></iframe><object data="{base}/object"></object>'
    )
    items = (replace(report.items[0], input=f"<img src={base}/item.png> <script>window.smuggled=1</script>"),)
    html = render_html(replace(report, items=items + report.items[1:])).replace(
        "<main>", smuggled + "<main>", 1
    )
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    page.goto(path.as_uri())
    # The page's own script still runs (allowed by its hash) and builds the table; the styles apply.
    expect(page.locator("#item-rows tr")).to_have_count(PAGE_SIZE)
    expect(page.locator("#item-rows tr").first.locator(".input-text")).to_have_text(items[0].input)
    assert page.evaluate("getComputedStyle(document.body).backgroundImage") == "none"
    assert page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth") != "none"
    page.wait_for_timeout(300)  # time for a refused fetch or a late load to reach the witness
    assert hits == []
    assert page.evaluate("window.smuggled") is None
    refused = browser_page.problems  # each refusal is a console error: nothing else went wrong
    assert refused and all("Content Security Policy" in p or p.endswith("(csp)") for p in refused)
    assert any("Executing inline script" in p for p in refused)
    assert any("Executing inline event handler" in p for p in refused)


# --- PNG ----------------------------------------------------------------------------------------


def test_write_pngs_draws_each_plot_with_data(report: RunReport, tmp_path: Path) -> None:
    directory = tmp_path / "plots" / "nested"
    written = write_pngs(report, directory)
    expected = [directory / f"{plot.slug}.png" for plot in report.plots if not plot.empty]
    assert written == expected and len(written) == len(report.plots) - 1
    assert sorted(directory.iterdir()) == sorted(expected)
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert struct.unpack(">II", data[16:24]) == (1200, 600)
        assert b"Matplotlib" in data[:200]  # the Software text chunk: drawn by matplotlib
        assert len(data) > 10_000


def test_write_pngs_without_matplotlib_names_the_extra(
    report: RunReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=re.escape("pip install 'corral[plot]'")):
        write_pngs(report, tmp_path / "plots")
    assert not (tmp_path / "plots").exists()


def test_write_pngs_into_a_file_names_it(report: RunReport, tmp_path: Path) -> None:
    taken = tmp_path / "plots"
    taken.write_text("not a directory")
    with pytest.raises(OutputError, match=f"cannot write the plots into {re.escape(str(taken))}"):
        write_pngs(report, taken)


def test_a_report_without_items_or_plots_still_works(browser_page: BrowserPage, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect

    bare = RunReport(1, "empty \ud800 job", "", (), (), (), (), (), (), 0)
    page = _open(browser_page, bare, tmp_path)
    assert isinstance(page, Page)
    expect(page.locator("h1")).to_have_text("empty \ufffd job")  # a lone surrogate cannot be written
    expect(page.locator("#items-empty")).to_have_text("This report holds no items.")
    expect(page.locator("#page-next")).to_be_disabled()
    assert page.locator("#sec-plots").count() == 0
    assert browser_page.problems == []


# --- issue 17: what a reader sees ---------------------------------------------------------------


def test_a_rate_drawn_over_windows_of_their_own_lengths(tmp_path: Path) -> None:
    # The last window of a rate ends with the run: its bar is as wide as the time it averages over.
    rate = Series("requests/s", ((0.0, 20.0), (2.0, 19.5), (4.0, 20.0)), "bars", widths=(2.0, 2.0, 3.0))
    plot = Plot("throughput", "Requests", "time since start", "requests/s", (rate,), bar_width=2.0)
    assert x_axis(plot).hi == 7.0
    root = ET.fromstring(plot_svg(plot))
    rects = [rect for rect in root.findall(".//g/rect") if rect.find("title") is not None]  # not the legend
    widths = [float(rect.get("width") or 0) for rect in rects]
    assert len(widths) == 3 and widths[2] / widths[0] == pytest.approx(1.5, rel=0.02)
    assert [rect.findtext("title") for rect in rects] == [
        "requests/s: 0s–2.0s: 20",
        "requests/s: 2.0s–4.0s: 19.5",
        "requests/s: 4.0s–7.0s: 20",
    ]
    only = RunReport(1, "r", "", (), (), (), (plot,), (), (), 0)
    assert [path.name for path in write_pngs(only, tmp_path)] == ["throughput.png"]


def test_a_plot_with_nothing_to_draw_says_why_inside_its_frame(
    browser_page: BrowserPage, report: RunReport, tmp_path: Path
) -> None:
    from dataclasses import replace

    from playwright.sync_api import Page

    # Issue 17: an all-zero plot was drawn as empty axes; its note, now in the frame, is a sentence
    # longer than the frame is wide: it must wrap inside it, not run off the drawing.
    why = "None in this run: no request was retried, and none met a 429 or an overload. " * 2
    nothing = Plot("retries", "Retries and 429s", "time since start", "retries", (), why.strip())
    page = _open(browser_page, replace(report, plots=(nothing,)), tmp_path)
    assert isinstance(page, Page)
    figure = page.locator("figure#retries")
    frame = figure.locator("svg > rect").bounding_box()
    lines = figure.locator("svg text tspan")
    assert frame is not None and lines.count() >= 2
    for n in range(lines.count()):
        box = lines.nth(n).bounding_box()
        assert box is not None
        assert frame["x"] < box["x"] and box["x"] + box["width"] < frame["x"] + frame["width"]
        assert frame["y"] < box["y"] and box["y"] + box["height"] < frame["y"] + frame["height"]
    assert " ".join(lines.all_text_contents()) == why.strip()
    assert figure.locator("svg g rect, svg polyline").count() == 0  # no axes of zeros, no bars
    assert browser_page.problems == []


def test_a_record_shows_its_fields_on_a_line_with_its_json_a_click_away(
    browser_page: BrowserPage, report: RunReport, tmp_path: Path
) -> None:
    from dataclasses import replace

    from playwright.sync_api import Page, expect

    # Issue 17: each record was indented JSON in a box, four lines or more for two fields.
    long_note = "A very long remark. " * 30 + "TAIL-MARKER"
    nested = {"name": "Ana", "age": 34, "address": {"city": "Sevilla", "zip": "41001"}, "note": long_note,
              "nick": "", "tags": [], "spouse": None}  # fmt: skip
    items = list(report.items)
    items[0] = replace(items[0], output={"name": "Ana", "age": 34})
    items[1] = replace(items[1], output=nested)
    items[2] = replace(items[2], output=[{"name": "Ana"}, {"name": "Bo"}])
    page = _open(browser_page, replace(report, items=tuple(items)), tmp_path)
    assert isinstance(page, Page)
    rows = page.locator("#item-rows tr")
    expect(rows).to_have_count(PAGE_SIZE)

    short = rows.nth(0).locator(".record .fields")
    expect(short).to_have_text("name: Ana · age: 34JSON")
    line = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.record .fields')).lineHeight)")
    box = short.bounding_box()
    assert box is not None and box["height"] < 1.5 * line, "one line"
    # The fixture's records (four fields, a list among them, 90 characters) wrap to three lines at
    # most in a column a quarter of the page wide: as indented JSON they took six.
    for n in range(3, PAGE_SIZE):
        records = rows.nth(n).locator(".record .fields")
        if records.count() and rows.nth(n).get_attribute("data-id") != "item-0005":  # an 85-character name
            height = records.bounding_box()
            assert height is not None and height["height"] < 3.5 * line, n

    fields = rows.nth(1).locator(".record .fields")
    expect(fields).to_contain_text(
        'name: Ana · age: 34 · address: {"city":"Sevilla","zip":"41001"} · note: A very'
    )
    expect(fields).to_contain_text('nick: "" · tags: [] · spouse: null')
    expect(fields).not_to_contain_text("TAIL-MARKER")  # cut...
    cut = fields.locator(".value[title]")
    expect(cut).to_have_count(1)
    assert cut.get_attribute("title") == long_note  # ... its tooltip holds it whole
    json_view = rows.nth(1).locator(".record pre.json")
    expect(json_view).to_be_hidden()
    toggle = rows.nth(1).locator("button.json-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(json_view).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    assert json.loads(json_view.inner_text()) == nested
    toggle.click()
    expect(json_view).to_be_hidden()

    expect(rows.nth(2).locator(".record .fields")).to_have_text('[{"name":"Ana"},{"name":"Bo"}]JSON')
    page.fill("#item-search", "TAIL-MARKER")  # a search still looks through the whole record
    expect(rows).to_have_count(1)
    page.fill("#item-search", "onerror")  # and hostile text in a field stays text
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".record .field").first).to_have_text(f"name: {HOSTILE}")
    assert page.evaluate("document.querySelectorAll('img, [onerror], [onmouseover]').length") == 0
    assert browser_page.problems == []
