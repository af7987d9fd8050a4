"""The report's documents: read from a real store, drawn as a list and a text with its values marked.

A document job's store is written here as the job would write it (chunk items, then each document's
record and text), with a text made to trip what could go wrong: characters beyond the BMP before a
value (two UTF-16 units each in the page's script), markup that must stay text, overlapping and
nested spans, a value not found, one found approximately, and a far-away value to scroll to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from corral.report import _data
from corral.report._data import load_report
from corral.report._html import render_html, text_pieces
from corral.report._model import DocumentField, DocumentView, RunReport
from corral.store import ItemRow, RunStore, input_hash
from tests._support.browser import BrowserPage

SETTINGS: dict[str, Any] = {"schema": "Lease-v1", "prompt": "Extract the lease.", "model": "sim-1"}
HOSTILE = "ACME <script>alert(1)</script> Ltd.</textarea><b onmouseover=alert(2)>x</b>"
FAR = "THE-FAR-AWAY-CLAUSE"
TEXT = (
    "Lease agreement 🌞🌞 between Zoë Ångström and " + HOSTILE + "\n"
    "Rent: 1,200 EUR a month. 𝔘𝔫𝔦 signed in ŁÓDŹ by Ana Pérez on 3 May.\n"
    + "A clause of no interest to anyone, repeated to make the text long.\n" * 400
    + FAR
    + " ends it."
)
BAD_ID = 'leases/<img src=x onerror=alert(3)>"quoted".txt'


def at(text: str, value: str) -> tuple[int, int]:
    start = text.index(value)
    return start, start + len(value)


def span(
    text: str, value: str, how: str = "exact", score: float = 1.0, page: int | None = None
) -> dict[str, Any]:
    start, end = at(text, value)
    found: dict[str, Any] = {"start": start, "end": end, "how": how, "score": score}
    if page is not None:
        found["page"] = page
    return found


def lease_record(doc_id: str) -> dict[str, Any]:
    """The record the job writes for TEXT: values exact, folded, fuzzy, nested, crossing, missing."""
    return {
        "id": doc_id,
        "output": {
            "title": "Lease agreement",
            "people": [{"name": "Zoë Ångström"}, {"name": "Ana Perez"}],
            "landlord": HOSTILE,
            "city": "Łódź",
            "signing": "signed in ŁÓDŹ",  # holds the city's span: nested
            "where": "ŁÓDŹ by Ana",  # crosses into Ana Pérez's span
            "witness": "Bob Smith",  # nowhere in the text
            "clause": FAR,
            "rent": 1200,  # not a string: not grounded, not listed
        },
        "grounding": {
            "title": span(TEXT, "Lease agreement", page=1),
            "people[0].name": span(TEXT, "Zoë Ångström", page=1),
            "people[1].name": span(TEXT, "Ana Pérez", "fuzzy", 0.889, page=2),
            "landlord": span(TEXT, HOSTILE),
            "city": span(TEXT, "ŁÓDŹ", "normalised", 1.0, page=2),
            "signing": span(TEXT, "signed in ŁÓDŹ"),
            "where": span(TEXT, "ŁÓDŹ by Ana"),
            "witness": None,
            "clause": span(TEXT, FAR, page=9),
        },
        "conflicts": [{"path": "people[1].name", "kept": "Ana Perez", "others": ["Anna Peres", None]}],
        "chunks": 3,
        "error": None,
        "attempts": 4,
        "usage": {"prompt_tokens": 900, "completion_tokens": 120},
        "latency": 3.25,
    }


def failed_record(doc_id: str) -> dict[str, Any]:
    return {
        "id": doc_id,
        "output": None,
        "grounding": {},
        "conflicts": [],
        "chunks": 2,
        "error": {"kind": "chunks", "message": "1 of 2 chunks failed: <b>timeout</b>"},
        "attempts": 7,
        "usage": {"prompt_tokens": 10, "completion_tokens": 0},
        "latency": 1.0,
    }


def write_job(store: RunStore, documents: dict[str, tuple[dict[str, Any] | bytes, str, str]]) -> int:
    """A document job's run: a chunk item per document, then the documents (id -> record, status,
    text); the run's id."""
    job = store.open_job("leases.jsonl", SETTINGS)
    for doc_id in documents:
        chunk = orjson.dumps({"id": f"{doc_id}#0", "input": "chunk", "output": {}, "error": None})
        store.add_item(job, ItemRow(f"{doc_id}#0", input_hash(doc_id), "ok", None, 1, 10, 5, 0.0, 0.2, chunk))
    for doc_id, (record, status, text) in documents.items():
        raw = record if isinstance(record, bytes) else orjson.dumps(record)
        store.add_document(job, doc_id, status=status, record=raw, text=text)
    store.flush()
    store.finish_run(job, "completed")
    return job.run


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    with RunStore.open(tmp_path / "store") as opened:
        yield opened


@pytest.fixture
def report(store: RunStore) -> RunReport:
    run = write_job(
        store,
        {
            "leases/lease-10.txt": (lease_record("leases/lease-10.txt"), "ok", TEXT),
            "leases/lease-9.txt": (failed_record("leases/lease-9.txt"), "error", "Short text."),
            BAD_ID: (lease_record(BAD_ID), "ok", TEXT),
        },
    )
    return load_report(store, run)


def field(doc: DocumentView, path: str) -> DocumentField:
    return next(f for f in doc.fields if f.path == path)


def marked(text: str, fields: tuple[DocumentField, ...], index: int) -> str:
    """What the page marks for field ``index``: the pieces naming it, joined."""
    return "".join(p[0] for p in text_pieces(text, fields) if isinstance(p, list) and index in p[1])


def embedded_documents(page: str) -> list[dict[str, Any]]:
    match = re.search(r'<script type="application/json" id="documents">(.*?)</script>', page, re.S)
    assert match is not None
    loaded: list[dict[str, Any]] = json.loads(match.group(1))
    return loaded


# --- from the store ---------------------------------------------------------------------------------


def test_a_document_jobs_report_reads_each_documents_values_and_their_spans(report: RunReport) -> None:
    assert report.documents_total == 3 and not report.documents_note
    # In natural order: lease-9 before lease-10; the hostile id sorts first.
    assert [d.id for d in report.documents] == [BAD_ID, "leases/lease-9.txt", "leases/lease-10.txt"]
    lease = report.documents[2]
    assert lease.ok and lease.chunks == 3 and lease.text == TEXT and not lease.note
    assert [f.path for f in lease.fields] == [
        "title", "people[0].name", "people[1].name", "landlord", "city", "signing", "where", "witness",
        "clause",
    ]  # fmt: skip
    assert lease.fields_total == 9 and lease.ungrounded == 1
    for f in lease.fields:
        if f.how == "exact":
            assert f.span is not None and TEXT[f.span[0] : f.span[1]] == f.value
    fuzzy = field(lease, "people[1].name")
    assert (fuzzy.how, fuzzy.score, fuzzy.page, fuzzy.value) == ("fuzzy", 0.889, 2, "Ana Perez")
    assert fuzzy.span == at(TEXT, "Ana Pérez")
    witness = field(lease, "witness")
    assert witness.span is None and witness.how is None and witness.missing == "not found in the text"
    assert lease.conflicts[0].path == "people[1].name" and lease.conflicts[0].others == ("Anna Peres", "null")
    assert (lease.attempts, lease.tokens, lease.latency_s) == (4, 1020, 3.25)
    failed = report.documents[1]
    assert not failed.ok and failed.error_kind == "chunks" and failed.fields == ()
    assert "1 of 2 chunks failed" in (failed.error_message or "")
    documents = next(f for f in report.facts if f.label == "Documents")
    assert (documents.value, documents.detail, documents.tone) == ("3", "2 ok · 1 errors", "bad")


def test_a_report_without_documents_has_no_documents_section(store: RunStore) -> None:
    job = store.open_job("plain.jsonl", SETTINGS)
    store.add_item(job, ItemRow("1", input_hash("1"), "ok", None, 1, 1, 1, 0.0, 0.1, b'{"id":"1"}'))
    store.flush()
    store.finish_run(job, "completed")
    report = load_report(store, job.run)
    assert report.documents == () and report.documents_total == 0
    assert all(f.label != "Documents" for f in report.facts)
    page = render_html(report)
    assert 'id="sec-documents"' not in page and 'id="doc-view"' not in page and "#sec-documents" not in page
    assert '<script type="application/json" id="documents">' not in page
    assert "corral report: the documents of a document job" not in page  # documents.js left out


def test_a_long_text_is_cut_and_values_beyond_the_cut_are_listed_unmarked(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_data, "MAX_DOCUMENT_CHARS", 200)
    run = write_job(store, {"lease.txt": (lease_record("lease.txt"), "ok", TEXT)})
    lease = load_report(store, run).documents[0]
    assert lease.text == TEXT[:200]
    assert lease.note == (
        f"The page holds the first 200 of the text's {len(TEXT):,} characters; 1 values found after "
        "them are listed without a highlight."
    )
    clause = field(lease, "clause")
    assert clause.span is None and clause.how == "exact" and clause.missing == "beyond the text shown"
    assert lease.ungrounded == 1  # found, only not shown: not counted as not found
    assert field(lease, "people[0].name").span == at(TEXT, "Zoë Ångström")


def test_the_page_holds_at_most_max_documents_errors_first(store: RunStore) -> None:
    documents: dict[str, tuple[dict[str, Any] | bytes, str, str]] = {
        f"doc-{n}.txt": (lease_record(f"doc-{n}.txt"), "ok", TEXT) for n in range(4)
    }
    documents["doc-9.txt"] = (failed_record("doc-9.txt"), "error", "x")
    run = write_job(store, documents)
    report = load_report(store, run, max_documents=2)
    assert [d.id for d in report.documents] == ["doc-0.txt", "doc-9.txt"]
    assert report.documents_total == 5
    assert report.documents_note.startswith("The page holds 2 of the job's 5 documents (every error first)")
    assert "The page holds 2 of the job&#x27;s 5 documents" in render_html(report)


def test_a_malformed_record_is_shown_not_trusted(store: RunStore) -> None:
    weird = {
        "id": "weird.txt",
        "output": {"a": "one", "b": "two", "c": "three", "d": "four", "e": ["five"], "f": True},
        "grounding": {
            "a": {"start": 5, "end": 2, "how": "exact"},  # backwards
            "b": {"start": -1, "end": 3},  # before the text
            "c": {"start": 0, "end": 10_000},  # past its end
            "d": {"start": True, "end": "4", "how": "<b>magic</b>"},  # not numbers
            "e[0]": {"start": 0, "end": 4, "how": "<b>magic</b>", "score": "high", "page": -2},
        },
        "conflicts": "not a list",
        "chunks": "many",
        "usage": [],
        "latency": "slow",
    }
    run = write_job(
        store, {"weird.txt": (weird, "ok", "five and more"), "junk.txt": (b"not json at all", "ok", "text")}
    )
    junk, doc = load_report(store, run).documents
    assert not junk.ok and junk.error_kind == "unreadable" and junk.fields == ()
    assert [(f.path, f.span) for f in doc.fields] == [("a", None), ("b", None), ("c", None), ("d", None),
                                                      ("e[0]", (0, 4))]  # fmt: skip
    assert doc.ungrounded == 4 and all(f.missing.startswith("not found") for f in doc.fields[:4])
    five = doc.fields[4]
    assert (five.how, five.score, five.page) == ("exact", None, None)
    assert doc.chunks is None and doc.conflicts == () and doc.tokens == 0 and doc.latency_s == 0.0
    render_html(load_report(store, run))  # and it draws


# --- the text's pieces --------------------------------------------------------------------------


def test_every_values_pieces_join_into_its_span_after_emoji_and_across_overlaps(report: RunReport) -> None:
    lease = report.documents[2]
    for index, f in enumerate(lease.fields):
        if f.span is not None:
            assert marked(lease.text, lease.fields, index) == TEXT[f.span[0] : f.span[1]], f.path
    # After two emoji (four UTF-16 units): offsets counted in UTF-16 would start 2 characters early.
    zoe = [f.path for f in lease.fields].index("people[0].name")
    assert marked(lease.text, lease.fields, zoe) == "Zoë Ångström"
    pieces = text_pieces(lease.text, lease.fields)
    assert "".join(p if isinstance(p, str) else p[0] for p in pieces) == TEXT  # nothing lost or doubled
    # Where the city nests in the signing and crosses "where", a piece names all three, innermost first.
    paths = [f.path for f in lease.fields]
    city = next(p for p in pieces if isinstance(p, list) and p[0] == "ŁÓDŹ")
    assert [paths[i] for i in city[1]] == ["city", "where", "signing"]


def test_pieces_of_a_text_with_no_spans_and_of_spans_that_touch() -> None:
    def f(start: int, end: int) -> DocumentField:
        return DocumentField("p", "v", (start, end), "exact", 1.0, None)

    assert text_pieces("", ()) == []
    assert text_pieces("plain", ()) == ["plain"]
    assert text_pieces("🌞ab🌞cd", (f(1, 3), f(3, 4), f(0, 99))) == ["🌞", ["ab", [0]], ["🌞", [1]], "cd"]


# --- the page, as text --------------------------------------------------------------------------


def test_hostile_text_ids_and_values_stay_text(report: RunReport) -> None:
    page = render_html(report)
    assert "<script>alert" not in page and "</textarea>" not in page and "<b onmouseover" not in page
    assert "<img" not in page and "<b>timeout" not in page
    assert page.count("</script>") == 3  # the items' JSON, the documents' JSON, the page's script
    escaped_id = "leases/&lt;img src=x onerror=alert(3)&gt;&quot;quoted&quot;.txt"
    assert f'title="Show this document">{escaped_id}</button>' in page
    embedded = embedded_documents(page)
    assert [d["id"] for d in embedded] == [d.id for d in report.documents]
    lease = embedded[2]
    assert "".join(p if isinstance(p, str) else p[0] for p in lease["text"]) == TEXT
    assert lease["fields"][7] == ["witness", "Bob Smith", None, None, None, "not found in the text"]
    assert lease["fields"][2] == ["people[1].name", "Ana Perez", "fuzzy", 0.889, 2, ""]
    assert embedded[1]["error"] == ["chunks", "1 of 2 chunks failed: <b>timeout</b>"]


def test_the_list_flags_documents_with_values_not_found(report: RunReport) -> None:
    page = render_html(report)
    assert '<a href="#sec-documents">Documents (3)</a>' in page
    row = re.search(r'<tr class="ok" data-doc="2">.*?</tr>', page)
    assert row is not None
    assert '<td class="num">3</td><td class="num">9</td><td class="num missing">1</td>' in row.group()
    assert '<tr class="error" data-doc="1">' in page and '<span class="badge error">error</span>' in page


def test_a_page_with_documents_allows_only_its_one_script(report: RunReport) -> None:
    import base64
    import hashlib

    page = render_html(report)
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1 and "corral report: the documents of a document job" in scripts[0]
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in page
    assert " style=" not in page and " on" + "click=" not in page


# --- in the browser -----------------------------------------------------------------------------


def _open(browser_page: BrowserPage, report: RunReport, tmp_path: Path) -> Any:
    from playwright.sync_api import Page

    page = browser_page.page
    assert isinstance(page, Page)
    path = tmp_path / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    page.on("dialog", lambda dialog: browser_page.problems.append(f"dialog: {dialog.message}"))
    page.goto(path.as_uri())
    return page


def _current(page: Any) -> str:
    return "".join(page.locator("#doc-text mark.current").all_text_contents())


def test_choosing_a_value_finds_it_in_the_text_and_a_mark_finds_its_value(
    browser_page: BrowserPage, report: RunReport, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = _open(browser_page, report, tmp_path)
    page.locator('.doc-link[data-doc="2"]').click()
    expect(page.locator("#doc-view h3")).to_have_text("leases/lease-10.txt")
    expect(page.locator('table.documents tr[data-doc="2"]')).to_have_attribute("aria-current", "true")
    text = page.locator("#doc-text")
    assert text.text_content() == TEXT  # every character, markup as text
    assert page.locator("#doc-view script, #doc-view b, #doc-view img").count() == 0

    fields = page.locator("#doc-fields .doc-field")
    expect(fields).to_have_count(9)
    for path, expected in (
        ("people[0].name", "Zoë Ångström"),  # after two emoji
        ("landlord", HOSTILE),
        ("signing", "signed in ŁÓDŹ"),  # holds the city
        ("where", "ŁÓDŹ by Ana"),  # crosses Ana Pérez
        ("people[1].name", "Ana Pérez"),  # found approximately: the text's spelling
        ("clause", FAR),  # far down: scrolled to
    ):
        button = page.locator(f'#doc-fields .doc-field[data-path="{path}"]')
        button.click()
        expect(button).to_have_attribute("aria-pressed", "true")
        assert _current(page) == expected, path
        first = page.locator("#doc-text mark.current").first
        expect(first).to_be_in_viewport()
        expect(first).to_have_class(re.compile(r"\bflash\b"))
    assert page.locator("#doc-fields .doc-field.selected").count() == 1

    fuzzy = page.locator('#doc-fields .doc-field[data-path="people[1].name"]')
    expect(fuzzy.locator(".how")).to_have_text("fuzzy 0.89")
    expect(fuzzy.locator(".page")).to_have_text("p. 2")
    witness = page.locator('#doc-fields .doc-field[data-path="witness"]')
    expect(witness).to_have_class(re.compile(r"\bungrounded\b"))
    expect(witness.locator(".how")).to_have_text("not found in the text")
    witness.click()
    assert _current(page) == ""

    # A mark chooses its innermost value: the city inside the signing.
    page.locator("#doc-text mark", has_text=re.compile(r"^ŁÓDŹ$")).click()
    city = page.locator('#doc-fields .doc-field[data-path="city"]')
    expect(city).to_have_attribute("aria-pressed", "true")
    expect(city).to_be_in_viewport()
    assert _current(page) == "ŁÓDŹ"
    conflict = "people[1].name kept Ana Perez; chunks also said Anna Peres, null"  # quoted by <q>
    expect(page.locator(".doc-conflicts li")).to_have_text(conflict)

    page.screenshot(path=tmp_path / "documents.png", full_page=True)

    page.locator('.doc-link[data-doc="1"]').click()  # the failed one: its error, no values
    expect(page.locator("#doc-view .doc-error")).to_have_text("chunks1 of 2 chunks failed: <b>timeout</b>")
    expect(page.locator("#doc-fields .doc-field")).to_have_count(0)
    assert page.evaluate("document.querySelectorAll('img, [onerror], [onmouseover]').length") == 0
    assert browser_page.problems == []


def test_the_document_view_fits_a_phone_screen(
    browser_page: BrowserPage, report: RunReport, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = _open(browser_page, report, tmp_path)
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator("#doc-fields .doc-field")).to_have_count(9)  # the first document, shown at once
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert browser_page.problems == []
