"""The report's Evaluation section: ``corral report --gold GOLD --schema SPEC`` scores the job's records,
as the run store holds them, against gold (:mod:`corral.evaluation`), and shows the scores.

The store is written here as a run would write it (records with confidences, an error, an item the gold
does not know), with hostile text in values and ids. The page's figures are checked against
:func:`corral.evaluation.evaluate` of the same records written to a file by the test itself.
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest

from corral.errors import StoreError
from corral.evaluation import Evaluation, evaluate
from corral.report import evaluate_run, find_run, load_report, render_html
from corral.report._model import ReliabilityBin
from corral.report._svg import reliability_svg
from corral.store import ItemRow, RunStore, input_hash
from tests._support.browser import BrowserPage
from tests._support.cli import Corral

SCHEMA = {
    "title": "Person",
    "type": "object",
    "properties": {
        "name": {"type": ["string", "null"]},
        "age": {"type": ["integer", "null"]},
        "city": {"type": ["string", "null"]},
    },
}
HOSTILE_OUT = 'Eve</td></table><img src=x onerror=alert(1)><script>alert("out")</script>'
HOSTILE_GOLD = "Eva <b onmouseover=alert(2)>&amp; \"Ève\"</b></code></section><script>alert('gold')</script>"
BAD_ID = 'p-<img src=x onerror=alert(3)>"q"'
CITIES = ("Oslo", "Lima", "Pune", "Kyiv", "Bern")
N = 50


def record(item_id: str, output: Any, confidence: dict[str, Any] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"id": item_id, "input": f"text of {item_id}", "output": output, "error": None}
    if confidence is not None:
        found["confidence"] = confidence
    return found


def people(*, confident: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The job's records and the gold: most right, a few of each kind of wrong, surer where right."""
    records, gold = [], []
    for n in range(N):
        item_id = f"p{n}"
        truth = {"name": f"Person {n}", "age": 20 + n, "city": CITIES[n % 5]}
        got = dict(truth)
        if n % 4 == 1:
            got["age"] = 99  # wrong: FP and FN
        if n % 7 == 2:
            got["city"] = None  # missed: FN
        if n % 9 == 3:
            truth["city"] = None  # not in the gold: FP
        sure = {
            path: {"value": (0.95 if got[path] == truth[path] else 0.45) - n % 3 * 0.05, "method": "logprobs"}
            for path in got
            if got[path] is not None
        }
        records.append(record(item_id, got, sure if confident else None))
        gold.append({"id": item_id, "output": truth})
    records.append(record("p2-hostile", {"name": HOSTILE_OUT, "age": 41, "city": "Paris"}))
    gold.append({"id": "p2-hostile", "output": {"name": HOSTILE_GOLD, "age": 42, "city": "Paris"}})
    records.append(record(BAD_ID, {"name": "Ann", "age": 7, "city": "<Rome>"}))
    gold.append({"id": BAD_ID, "output": {"name": "Anne", "age": 7, "city": "Rome & Co"}})
    records.append(
        {"id": "p-error", "input": "t", "output": None, "error": {"kind": "timeout", "message": "no answer"}}
    )
    gold.append({"id": "p-error", "output": {"name": "Zed", "age": 50, "city": "Oslo"}})
    gold.append({"id": "p-missing", "output": {"name": "Nobody", "age": 1, "city": None}})
    records.append(record("p-extra", {"name": "Extra", "age": 3, "city": None}))
    return records, gold


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def store_job(store: RunStore, records: list[dict[str, Any]], name: str = "people.jsonl") -> int:
    """A finished run of a job that wrote ``records``: its id."""
    job = store.open_job(name, {"schema": "Person", "model": "sim-1"})
    for rec in records:
        ok = rec["error"] is None
        row = ItemRow(
            str(rec["id"]), input_hash(rec["input"]), "ok" if ok else "error",
            None if ok else rec["error"]["kind"], 1, 10, 5, 0.0, 0.2, orjson.dumps(rec),
        )  # fmt: skip
        store.add_item(job, row)
    store.flush()
    store.finish_run(job, "completed")
    return job.run


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """The store (with the job's run), the gold, the schema, and the records as the test knows them."""
    records, gold = people()
    with RunStore.open(tmp_path / "store") as store:
        store_job(store, records)
    schema = tmp_path / "person.schema.json"
    schema.write_text(json.dumps(SCHEMA))
    return {
        "store": tmp_path / "store",
        "gold": write_jsonl(tmp_path / "gold.jsonl", gold),
        "schema": schema,
        "records": write_jsonl(tmp_path / "records.jsonl", records),
        "page": tmp_path / "report.html",
    }


def report(corral: Corral, files: dict[str, Path], *options: str) -> str:
    done = corral("report", "--store", str(files["store"]), "-o", str(files["page"]), *options)
    assert done.returncode == 0, done.stderr
    return files["page"].read_text(encoding="utf-8")


def scored(corral: Corral, files: dict[str, Path]) -> str:
    return report(corral, files, "--gold", str(files["gold"]), "--schema", str(files["schema"]))


class _Section(HTMLParser):
    """The evaluation section of a page as tags (name, attributes) and text, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section" and dict(attrs).get("id") == "sec-evaluation":
            self.depth = 1
        elif self.depth:
            self.depth += tag == "section"
            self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if self.depth and tag == "section":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text.append(data)


def section(page: str) -> _Section:
    parsed = _Section()
    parsed.feed(page)
    assert parsed.tags, "the page has no evaluation section"
    return parsed


def cells(fragment: str, cell: str = "t[dh]") -> list[str]:
    """The text of each cell of a table row's markup."""
    found = re.findall(rf"<{cell}\b[^>]*>(.*?)</{cell}>", fragment, re.S)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split()) for c in found]


def field_rows(page: str) -> dict[str, list[str]]:
    body = re.search(r'<table class="eval-fields">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert body is not None
    rows = re.findall(r'<tr data-field="([^"]*)">(.*?)</tr>', body.group(1), re.S)
    return {html.unescape(name): cells(row)[1:] for name, row in rows}


def number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def shown_value(value: Any) -> str:
    return "none" if value is None else json.dumps(value, ensure_ascii=False)


def expected(files: dict[str, Path]) -> Evaluation:
    return evaluate(files["records"], files["gold"], files["schema"])


# --- the section -----------------------------------------------------------------------------------


def test_without_gold_the_report_has_no_evaluation(corral: Corral, files: dict[str, Path]) -> None:
    page = report(corral, files)
    assert 'id="sec-evaluation"' not in page and "chart reliability" not in page
    with RunStore.open(files["store"]) as store:
        run = find_run(store, None)
        plain = load_report(store, run)
    assert 'id="sec-evaluation"' not in render_html(plain)
    assert 'href="#sec-evaluation"' not in page
    assert 'id="sec-evaluation"' in scored(corral, files)  # the same report, with --gold


def test_the_section_shows_the_figures_evaluate_finds(corral: Corral, files: dict[str, Path]) -> None:
    page = scored(corral, files)
    ev = expected(files)
    assert ev.overall.fp and ev.overall.fn and ev.calibration is not None  # something to show
    # the overall scores and their intervals, as the summary's cards
    for label, metric in (("F1", "f1"), ("Precision", "precision"), ("Recall", "recall")):
        card = re.search(
            rf'<div class="label">{label}</div><div class="value">([^<]*)</div><div class="detail">([^<]*)<',
            page,
        )
        assert card is not None, label
        interval = ev.overall.ci[metric]
        assert interval is not None
        low, high = interval
        assert card.group(1) == number(getattr(ev.overall, metric))
        assert html.unescape(card.group(2)).startswith(f"95% interval {low:.3f}–{high:.3f}")
    gold_items = len(ev.items) - len(ev.extra)
    assert f'<div class="label">Gold items</div><div class="value">{gold_items}</div>' in page
    assert "1 errored · 1 missing · 1 not in the gold" in page
    # every field, the worst F1 first, with its counts and intervals
    rows = field_rows(page)
    assert sorted(rows) == sorted(ev.fields)
    f1s = [ev.fields[path].f1 or 0.0 for path in rows]
    assert f1s == sorted(f1s) and f1s[0] < f1s[-1]
    for path, score in ev.fields.items():
        ci = score.ci["f1"]
        assert ci is not None
        f1_cell, precision, recall, tp, fp, fn = rows[path]
        assert f1_cell == f"{number(score.f1)} [{ci[0]:.3f}, {ci[1]:.3f}]"
        assert precision.startswith(number(score.precision)) and recall.startswith(number(score.recall))
        assert (int(tp), int(fp), int(fn)) == (score.tp, score.fp, score.fn)
    foot = re.search(r"<tfoot>(.*?)</tfoot>", page, re.S)
    assert foot is not None
    assert cells(foot.group(1))[-3:] == [str(ev.overall.tp), str(ev.overall.fp), str(ev.overall.fn)]
    # the worst items, in evaluate's order, each wrong value beside the gold's
    worst = ev.worst_items(20)
    listed = re.findall(r'<tbody class="wrong-item" data-eval-item="([^"]*)">(.*?)</tbody>', page, re.S)
    assert [html.unescape(item_id) for item_id, _ in listed] == [item.id for item in worst]
    assert len(listed) == 20
    wrong = len(ev.worst_items(1000))
    assert wrong > 20 and f"Items with values wrong (the 20 with the most values wrong, of {wrong})" in page
    for (_, body), item in zip(listed, worst, strict=True):
        shown = [cells(row) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]
        assert shown == [[m.path, shown_value(m.got), shown_value(m.want)] for m in item.mismatches], item.id
        head = cells(body, "th")[0]
        assert head.startswith(item.id) and head.endswith(f"{item.score.fp + item.score.fn} wrong")
    # the calibration's figures
    cal = ev.calibration
    line = re.search(r'<p class="calibration-line">([^<]*)</p>', page)
    assert line is not None
    text = html.unescape(line.group(1))
    assert f"(ECE) {cal.ece:.3f} over {cal.count:,} values" in text
    assert cal.above_accuracy is not None
    assert f"at confidence ≥ 0.8, {cal.above_accuracy:.3f} right ({cal.above:,} values)" in text


def test_the_records_scored_are_the_jobs_as_the_store_holds_them(files: dict[str, Path]) -> None:
    with RunStore.open(files["store"]) as store:
        ev = evaluate_run(store, find_run(store, "people.jsonl"), files["gold"], files["schema"])
    assert ev.to_json() == expected(files).to_json()


def test_hostile_gold_and_output_values_stay_text(corral: Corral, files: dict[str, Path]) -> None:
    page = scored(corral, files)
    for raw in (HOSTILE_OUT, HOSTILE_GOLD, BAD_ID, "<Rome>"):
        assert raw not in page
    assert "<img" not in page and page.count("<script") == 2  # the items' JSON and the page's script
    assert " style=" not in page  # the page's policy allows no inline style: the bars are drawn
    parsed = section(page)
    assert {tag for tag, _ in parsed.tags} <= {
        "h2", "h3", "div", "p", "span", "table", "thead", "tbody", "tfoot", "tr", "th", "td", "code", "em",
        "colgroup", "col",
        "svg", "rect", "title", "line", "polyline", "circle", "g", "text", "figure", "figcaption", "button",
    }  # fmt: skip
    assert not any(name.startswith("on") for _, attrs in parsed.tags for name in attrs)
    text = "".join(parsed.text)
    assert shown_value(HOSTILE_OUT) in text and shown_value(HOSTILE_GOLD) in text
    assert '"<Rome>"' in text and '"Rome & Co"' in text
    linked = [attrs for tag, attrs in parsed.tags if tag == "button" and attrs.get("data-item") == BAD_ID]
    assert linked, "the hostile id links to its row, as an attribute's text"


def test_the_reliability_plot_is_there_only_with_confidences(
    corral: Corral, files: dict[str, Path], tmp_path: Path
) -> None:
    page = scored(corral, files)
    cal = expected(files).calibration
    assert cal is not None
    svg = re.search(r'<svg [^>]*class="chart reliability".*?</svg>', page, re.S)
    assert svg is not None
    root = ET.fromstring(svg.group())
    bins = [b for b in cal.bins if b.count]
    bars = root.findall("./g[@class='bins']/rect")
    assert len(bars) == len(bins) >= 2
    for bar, b in zip(bars, bins, strict=True):
        title = bar.findtext("title") or ""
        assert f"{b.count} value" in title and f"mean confidence {b.confidence:.3f}" in title
        assert f"{b.accuracy:.3f} right" in title
    counts = [t.text for t in root.findall("./g[@class='counts']/text")]
    assert counts == [str(b.count) for b in bins]
    assert len(root.findall("./g[@class='means']/circle")) == len(bins)
    diagonal = [line for line in root.findall("./line") if line.get("stroke-dasharray")]
    assert len(diagonal) == 1 and float(diagonal[0].get("x1", 0)) < float(diagonal[0].get("x2", 0))
    assert float(diagonal[0].get("y1", 0)) > float(diagonal[0].get("y2", 0)), "it rises to the right"
    assert "perfectly calibrated" in "".join(root.itertext())

    # The same job without confidences: the scores, no plot, no calibration.
    records, _ = people(confident=False)
    bare = tmp_path / "bare"
    with RunStore.open(bare) as store:
        store_job(store, records)
    done = corral("report", "--store", str(bare), "-o", str(tmp_path / "bare.html"),
                  "--gold", str(files["gold"]), "--schema", str(files["schema"]))  # fmt: skip
    assert done.returncode == 0, done.stderr
    plain = (tmp_path / "bare.html").read_text()
    assert 'id="sec-evaluation"' in plain and field_rows(plain)
    assert "<svg" in plain and 'id="reliability"' not in plain and "chart reliability" not in plain
    assert '<p class="calibration-line">' not in plain
    assert "Calibration error" not in plain


def test_a_reliability_plot_draws_only_the_bins_it_can() -> None:
    bins = (
        ReliabilityBin(0.8, 0.9, 12_345, 0.85, 0.9),
        ReliabilityBin(0.9, 1.0, 3, float("nan"), 1.0),
        ReliabilityBin(0.5, 0.6, 0, 0.55, 0.5),
    )
    root = ET.fromstring(reliability_svg(bins, "Reliability <of> & confidences"))
    assert root.get("aria-label") == "Reliability <of> & confidences"
    assert len(root.findall("./g[@class='bins']/rect")) == 1
    assert [t.text for t in root.findall("./g[@class='counts']/text")] == ["12k"]


# --- refusals ---------------------------------------------------------------------------------------


def test_a_bad_gold_file_is_named_with_its_line(corral: Corral, files: dict[str, Path]) -> None:
    gold = files["gold"]
    lines = gold.read_text().splitlines()
    lines[2] = '{"id": "p2", "output": {"name": "Bo"'  # cut short
    gold.write_text("\n".join(lines) + "\n")
    done = corral("report", "--store", str(files["store"]), "-o", str(files["page"]),
                  "--gold", str(gold), "--schema", str(files["schema"]))  # fmt: skip
    assert done.returncode == 2
    assert f"{gold}:3: not valid JSON" in done.stderr
    assert not files["page"].exists(), "no page is written for a gold that cannot be read"


def test_gold_without_schema_is_refused(corral: Corral, files: dict[str, Path]) -> None:
    done = corral(
        "report", "--store", str(files["store"]), "-o", str(files["page"]), "--gold", str(files["gold"])
    )
    assert done.returncode == 2
    assert "--gold needs --schema SPEC: the job's response model" in done.stderr
    done = corral("report", "--store", str(files["store"]), "-o", str(files["page"]), "--schema", "x.json")
    assert done.returncode == 2 and "--schema is for scoring against gold: pass --gold" in done.stderr
    assert not files["page"].exists()


def test_a_report_is_not_written_over_the_gold(corral: Corral, files: dict[str, Path]) -> None:
    kept = files["gold"].read_bytes()
    done = corral("report", "--store", str(files["store"]), "-o", str(files["gold"]),
                  "--gold", str(files["gold"]), "--schema", str(files["schema"]))  # fmt: skip
    assert done.returncode == 2 and "is the gold" in done.stderr
    assert files["gold"].read_bytes() == kept


def test_a_stored_record_that_cannot_be_scored_is_named(tmp_path: Path, files: dict[str, Path]) -> None:
    with RunStore.open(tmp_path / "odd") as store:
        run = store_job(store, [record("a", {"name": "A"}), record("b", ["not", "an", "object"])])
        with pytest.raises(StoreError, match=r"the record of item 'b' in .* cannot be scored: \"output\" is"):
            evaluate_run(store, run, files["gold"], files["schema"])


# --- documents ---------------------------------------------------------------------------------------


def test_a_document_jobs_documents_are_scored_not_its_chunks(tmp_path: Path, files: dict[str, Path]) -> None:
    with RunStore.open(tmp_path / "docs") as store:
        job = store.open_job("docs.jsonl", {"schema": "Person"})
        for doc in ("p0", "p1"):  # each document's chunks are items of their own
            chunk = record(f"{doc}#0", {"name": "part"})
            store.add_item(
                job, ItemRow(f"{doc}#0", input_hash(doc), "ok", None, 1, 1, 1, 0.0, 0.1, orjson.dumps(chunk))
            )
            whole = record(doc, {"name": f"Person {doc[1:]}", "age": 20 + int(doc[1:]), "city": "Oslo"})
            store.add_document(job, doc, status="ok", record=orjson.dumps(whole), text="text")
        store.flush()
        store.finish_run(job, "completed")
        ev = evaluate_run(store, job.run, files["gold"], files["schema"])
    found = {item.id: item.status for item in ev.items}
    assert found["p0"] == found["p1"] == "matched"
    assert not ev.extra, "no chunk is scored as an item"
    assert ev.fields["name"].tp == 2


# --- in the browser ---------------------------------------------------------------------------------


@pytest.fixture
def page_file(files: dict[str, Path]) -> Path:
    # From Python, not the command: the open browser's event loop leaves no room for the CLI's here.
    with RunStore.open(files["store"]) as store:
        run = find_run(store, "people.jsonl")
        evaluation = evaluate_run(store, run, files["gold"], files["schema"])
        page = render_html(load_report(store, run), evaluation, gold=str(files["gold"]))
    files["page"].write_text(page, encoding="utf-8")
    return files["page"]


def test_the_section_loads_cleanly_and_its_items_link_to_the_table(
    browser_page: BrowserPage, page_file: Path
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page.page
    assert isinstance(page, Page)
    page.on("dialog", lambda dialog: browser_page.problems.append(f"dialog: {dialog.message}"))
    page.goto(page_file.as_uri())
    expect(page.locator("#sec-evaluation svg.reliability")).to_be_visible()
    expect(page.locator("#sec-evaluation .eval-fields tbody tr")).to_have_count(3)
    page.locator('#sec-evaluation .wrong-item[data-eval-item="p2-hostile"] .item-link').click()
    expect(page.locator("#item-only-id")).to_have_text("p2-hostile")
    expect(page.locator("#item-rows tr")).to_have_count(1)
    assert page.locator("#sec-evaluation img, #sec-evaluation script").count() == 0
    assert browser_page.problems == []
