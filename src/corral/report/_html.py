"""A :class:`~corral.report._model.RunReport` as one self-contained HTML page: styles, script and plots
inline, nothing fetched (it opens offline, from a mail attachment, years later).

Item texts and records are untrusted (they come from the job's input and the model's answers). Text
written here goes through :func:`html.escape`; the items travel as JSON inside a
``<script type="application/json">`` with ``<``, ``>``, ``&`` and the JavaScript line separators
escaped, so no text can close the element; the page's script builds the table with DOM text nodes
only. The script and styles live in ``assets/`` as real files (linted, diffable) and are read here.

Documents (a document job's chunked inputs) travel the same way, in ``<script id="documents">``: each
one's text already cut where a value's highlight starts or ends, every piece with the values covering
it. The page's script joins the pieces into text nodes and ``<mark>`` elements and never counts
characters: spans are Python's offsets (code points), which a JavaScript string, counted in UTF-16
units, would shift after every character beyond the BMP (an emoji). ``documents.js`` is embedded,
after ``report.js`` in the page's one script, only in a page that has documents.

Should anything still get through, the page's Content-Security-Policy stops it from doing harm: only
the page's own script and styles run (allowed by their SHA-256, computed here from what is embedded),
and nothing is loaded from anywhere (``default-src 'none'``; images only as ``data:``), so a smuggled
``<script>``, ``<img src=http://…>`` or ``onerror=`` neither runs nor calls out.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from collections.abc import Sequence
from importlib.resources import files
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from corral.report._model import (
    DocumentField,
    DocumentView,
    ErrorGroup,
    EvaluationView,
    Fact,
    FieldScore,
    ItemRow,
    Plot,
    RunLine,
    RunReport,
    ValueMismatch,
    WrongItem,
)
from corral.report._scores import evaluation_view
from corral.report._svg import plot_svg, reliability_svg

if TYPE_CHECKING:
    from corral.evaluation import Evaluation

__all__ = [
    "GENERATOR_META",
    "content_security_policy",
    "documents_json",
    "items_json",
    "render_html",
    "text_pieces",
]

#: how corral recognises a page it wrote (and may overwrite): in the first few hundred bytes of every one
GENERATOR_META = '<meta name="generator" content="corral report">'

# Lone surrogates cannot be written as UTF-8: in page text they become U+FFFD.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: what must not appear raw inside <script>: JSON keeps its meaning with these as \\u escapes
_SCRIPT_UNSAFE = re.compile("[<>&\u2028\u2029\ud800-\udfff]")


def _esc(text: str) -> str:
    return html.escape(_SURROGATE.sub("\ufffd", text), quote=True)


def _asset(name: str) -> str:
    text = (files("corral.report") / "assets" / name).read_text(encoding="utf-8")
    # A browser hashes an inline script or style after turning CR LF into LF: so must we.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(style: str, script: str) -> str:
    """The page's policy: its one ``<style>`` and one ``<script>`` (by hash), images only inline,
    nothing else from anywhere. (``frame-ancestors`` and ``sandbox`` are not honoured in a ``<meta>``.)"""
    return (
        f"default-src 'none'; script-src {_sha256(script)}; style-src {_sha256(style)}; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


#: the values a piece of a document's text names at most, innermost first (so that thousands of
#: nested spans cannot make the page quadratic in size; a value more deeply nested than this is not
#: highlighted where it is)
_MAX_COVER = 16
#: a list or object that fits in this many characters stays on one line in a shown record
_INLINE_WIDTH = 56
#: the share-of-items bar of an error kind, in CSS pixels (as .share-bar in report.css)
_BAR_WIDTH = 56


def _pretty(value: Any, indent: str = "") -> str:
    """JSON for people: one field a line, but short lists and objects kept on one line (a record's
    ``"tags": ["a", "b"]`` reads better than a column of four lines)."""
    compact = json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))
    if (
        not isinstance(value, dict | list)
        or not value
        or (indent and len(indent) + len(compact) <= _INLINE_WIDTH)
    ):
        return compact
    inner = indent + "  "
    if isinstance(value, dict):
        fields = [
            f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {_pretty(v, inner)}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(fields) + f"\n{indent}}}"
    return "[\n" + ",\n".join(f"{inner}{_pretty(v, inner)}" for v in value) + f"\n{indent}]"


def _record_text(value: Any) -> str | None:
    """The record as indented JSON (what the page searches, and shows when asked: the table shows
    its fields on a line), or None when there is none."""
    return None if value is None else _pretty(value)


def _item_array(item: ItemRow) -> list[Any]:
    """One item as a JSON array (not an object: 20,000 items stay light). report.js reads the fields
    in this order: id, ok, input, record, error kind, error message, attempts, latency, tokens, cost,
    run."""
    return [
        item.id,
        item.ok,
        item.input,
        _record_text(item.output),
        item.error_kind or (None if item.ok else "error"),
        item.error_message,
        item.attempts,
        _finite(item.latency_s),
        item.tokens,
        _finite(item.cost),
        item.run,
    ]


def _script_json(value: Any) -> str:
    """JSON that is safe between ``<script>`` tags: nothing in it can end the element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return _SCRIPT_UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def items_json(items: tuple[ItemRow, ...] | list[ItemRow]) -> str:
    """The items as JSON that is safe between ``<script>`` tags: nothing in it can end the element."""
    return _script_json([_item_array(item) for item in items])


def text_pieces(text: str, fields: Sequence[DocumentField]) -> list[str | list[Any]]:
    """A document's text cut wherever a value's span starts or ends: a piece no value covers is a
    string; a covered one is ``[piece, [field indexes]]``, the fields' indexes innermost (shortest
    span) first. Spans that overlap or nest become pieces naming each of them, so every value's
    pieces join into exactly its span, and no offset has to cross into JavaScript."""
    spans = [(field.span, index) for index, field in enumerate(fields) if field.span is not None]
    spans = [((start, end), index) for (start, end), index in spans if 0 <= start < end <= len(text)]
    if not spans:
        return [text] if text else []
    opening: dict[int, list[int]] = {}
    closing: dict[int, list[int]] = {}
    width: dict[int, int] = {}
    for (start, end), index in spans:
        opening.setdefault(start, []).append(index)
        closing.setdefault(end, []).append(index)
        width[index] = end - start
    cuts = sorted({0, len(text), *opening, *closing})
    active: set[int] = set()
    pieces: list[str | list[Any]] = []
    for start, end in pairwise(cuts):
        active.difference_update(closing.get(start, ()))
        active.update(opening.get(start, ()))
        piece = text[start:end]
        if active:
            pieces.append([piece, sorted(active, key=lambda index: (width[index], index))[:_MAX_COVER]])
        else:
            pieces.append(piece)
    return pieces


def _document_object(doc: DocumentView) -> dict[str, Any]:
    """One document for documents.js: its numbers, its values (each ``[path, value, how, score,
    page, missing]``) and its text as :func:`text_pieces`."""
    return {
        "id": doc.id,
        "ok": doc.ok,
        "chunks": doc.chunks,
        "values": doc.fields_total,
        "ungrounded": doc.ungrounded,
        "error": None if doc.ok else [doc.error_kind or "error", doc.error_message],
        "conflicts": [[c.path, c.kept, list(c.others)] for c in doc.conflicts],
        "fields": [
            [f.path, f.value, f.how, None if f.score is None else _finite(f.score), f.page, f.missing]
            for f in doc.fields
        ],
        "text": text_pieces(doc.text, doc.fields),
        "note": doc.note,
        "attempts": doc.attempts,
        "tokens": doc.tokens,
        "latency": _finite(doc.latency_s),
    }


def documents_json(documents: Sequence[DocumentView]) -> str:
    """The documents as JSON that is safe between ``<script>`` tags."""
    return _script_json([_document_object(doc) for doc in documents])


# --- sections -----------------------------------------------------------------------------------


def _header(report: RunReport) -> str:
    parts = [f'<header class="page-head"><h1>{_esc(report.title)}</h1>']
    if report.subtitle:
        parts.append(f'<p class="subtitle">{_esc(report.subtitle)}</p>')
    if report.generated:
        parts.append(f'<p class="generated">Generated {_esc(report.generated)}</p>')
    parts.append("</header>")
    return "".join(parts)


def _toc(entries: list[tuple[str, str]]) -> str:
    links = "".join(f'<li><a href="#{anchor}">{_esc(name)}</a></li>' for anchor, name in entries)
    return f'<nav aria-label="Sections"><ul class="toc">{links}</ul></nav>'


def _fact(fact: Fact) -> str:
    detail = f'<div class="detail">{_esc(fact.detail)}</div>' if fact.detail else ""
    return (
        f'<div class="fact tone-{_esc(fact.tone)}"><div class="label">{_esc(fact.label)}</div>'
        f'<div class="value">{_esc(fact.value)}</div>{detail}</div>'
    )


def _facts(facts: tuple[Fact, ...]) -> str:
    cards = "".join(_fact(fact) for fact in facts)
    return f'<section id="sec-summary" aria-label="Summary" class="facts">{cards}</section>'


def _plot(plot: Plot) -> str:
    note = f'<p class="note">{_esc(plot.note)}</p>' if plot.note and not plot.empty else ""
    return (
        f'<figure class="plot" id="{_esc(plot.slug)}"><figcaption><h3>{_esc(plot.title)}</h3>'
        f'</figcaption><div class="chart-scroll">{plot_svg(plot)}</div>{note}</figure>'
    )


def _plots(plots: tuple[Plot, ...]) -> str:
    figures = "".join(_plot(plot) for plot in plots)
    return f'<section id="sec-plots"><h2>Plots</h2><div class="plots">{figures}</div></section>'


def _share(share: float, biggest: float) -> str:
    """The share as a percentage, and a bar against the most common error (so kinds compare)."""
    percent = share * 100 if math.isfinite(share) else 0.0
    text = "<0.1%" if 0 < percent < 0.1 else f"{percent:.1f}%"
    width = min(max(share / biggest, 0.0), 1.0) * _BAR_WIDTH if biggest > 0 and math.isfinite(share) else 0.0
    # Drawn, not sized by a style attribute: the page's policy allows no inline style.
    return (
        f'<span class="share"><svg class="share-bar" viewBox="0 0 {_BAR_WIDTH} 6" aria-hidden="true">'
        f'<rect width="{width:.1f}" height="6" rx="3"/></svg>{_esc(text)}</span>'
    )


def _error_row(group: ErrorGroup, biggest: float) -> str:
    links = "".join(
        f'<button type="button" class="item-link" data-item="{_esc(item_id)}" '
        f'title="Show this item in the table">{_esc(item_id)}</button>'
        for item_id in group.item_ids
    )
    return (
        f"<tr><td><code>{_esc(group.kind)}</code></td><td class='num'>{group.count:,}</td>"
        f"<td class='num'>{_share(group.share, biggest)}</td><td class='example'>{_esc(group.example)}</td>"
        f"<td>{links}</td></tr>"
    )


def _errors(errors: tuple[ErrorGroup, ...]) -> str:
    if not errors:
        body = '<p class="empty-note">No item failed.</p>'
    else:
        biggest = max((g.share for g in errors if math.isfinite(g.share)), default=0.0)
        rows = "".join(_error_row(group, biggest) for group in errors)
        body = (
            '<div class="card"><table class="errors"><thead><tr><th>Kind</th><th class="num">Count</th>'
            '<th class="num">Share of items</th><th>Example</th><th>Items</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>"
        )
    return f'<section id="sec-errors"><h2>Errors</h2>{body}</section>'


def _run_row(run: RunLine, current: int) -> str:
    marked = ' class="current" aria-current="true"' if run.id == current else ""
    return (
        f"<tr{marked}><td class='num'>{run.id}</td><td>{_esc(run.started)}</td><td>{_esc(run.status)}</td>"
        f"<td class='num'>{_esc(run.wall)}</td><td class='num'>{run.items:,}</td>"
        f"<td class='num'>{run.requests:,}</td><td class='num'>{_esc(run.cost)}</td></tr>"
    )


def _runs(runs: tuple[RunLine, ...], current: int) -> str:
    rows = "".join(_run_row(run, current) for run in runs)
    return (
        '<section id="sec-runs"><h2>Runs</h2><div class="card"><table class="runs"><thead><tr>'
        '<th class="num">Run</th><th>Started</th><th>Status</th><th class="num">Wall time</th>'
        '<th class="num">Items</th><th class="num">Requests</th><th class="num">Cost</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>"
    )


def _settings(settings: tuple[tuple[str, str], ...]) -> str:
    rows = "".join(f'<tr><th scope="row">{_esc(k)}</th><td>{_esc(v)}</td></tr>' for k, v in settings)
    return (
        '<section id="sec-settings"><h2>Settings</h2><div class="card"><table class="settings">'
        f"<tbody>{rows}</tbody></table></div></section>"
    )


def _status_choice(value: str, label: str, count: int, *, checked: bool) -> str:
    return (
        f'<label><input type="radio" name="item-status" value="{value}"{" checked" if checked else ""}>'
        f'<span>{label}<span class="count" data-count="{value}">{count:,}</span></span></label>'
    )


def _items(report: RunReport) -> str:
    errors = sum(1 for item in report.items if not item.ok)
    note = f'<p class="items-note">{_esc(report.items_note)}</p>' if report.items_note else ""
    choices = (
        _status_choice("all", "All", len(report.items), checked=True)
        + _status_choice("ok", "OK", len(report.items) - errors, checked=False)
        + _status_choice("errors", "Errors", errors, checked=False)
    )
    return (
        f'<section id="sec-items"><h2>Items</h2>{note}'
        '<div class="controls">'
        '<input type="search" id="item-search" placeholder="Search ids, inputs, records and errors  ( / )" '
        'aria-label="Search items" autocomplete="off" spellcheck="false">'
        f'<div class="segmented" role="radiogroup" aria-label="Status">{choices}</div></div>'
        '<div class="only" id="item-only" hidden><span>Only item <code id="item-only-id"></code></span>'
        '<button type="button" class="link-button" id="item-only-clear">Show all items</button></div>'
        '<div class="card"><table class="items-table"><colgroup><col class="c-id"><col class="c-status">'
        '<col><col><col class="c-num"><col class="c-num"><col class="c-num"></colgroup>'
        "<thead><tr><th>Item</th><th>Status</th><th>Input</th><th>Record or error</th>"
        '<th class="num">Attempts</th><th class="num" title="From when the run started on the item to its '
        'result, waiting for the rate and concurrency limits included">Latency</th>'
        '<th class="num">Tokens</th></tr></thead>'
        '<tbody id="item-rows"></tbody></table>'
        '<p class="items-empty" id="items-empty" hidden></p>'
        '<noscript><p class="items-empty">The items table needs JavaScript.</p></noscript></div>'
        '<div class="pager"><span id="items-range" aria-live="polite"></span><div class="buttons">'
        '<button type="button" id="page-prev">← Previous</button>'
        '<button type="button" id="page-next">Next →</button></div></div></section>'
    )


def _document_row(index: int, doc: DocumentView) -> str:
    status = "ok" if doc.ok else "error"
    chunks = "–" if doc.chunks is None else f"{doc.chunks:,}"
    missing = ' class="num missing"' if doc.ungrounded else ' class="num"'
    return (
        f'<tr class="{status}" data-doc="{index}"><td class="id"><button type="button" class="doc-link" '
        f'data-doc="{index}" aria-controls="doc-view" title="Show this document">{_esc(doc.id)}</button></td>'
        f'<td><span class="badge {status}">{status}</span></td><td class="num">{chunks}</td>'
        f'<td class="num">{doc.fields_total:,}</td><td{missing}>{doc.ungrounded:,}</td></tr>'
    )


def _documents(report: RunReport) -> str:
    note = f'<p class="items-note">{_esc(report.documents_note)}</p>' if report.documents_note else ""
    rows = "".join(_document_row(index, doc) for index, doc in enumerate(report.documents))
    return (
        f'<section id="sec-documents"><h2>Documents</h2>{note}'
        '<p class="section-note">Each document was cut into chunks, each chunk extracted as an item, and '
        "the answers merged into one record. Choose a document to see its text with every value the "
        "record holds marked where it was found; choose a value to find it in the text.</p>"
        '<div class="card doc-list"><table class="documents"><thead><tr><th>Document</th><th>Status</th>'
        '<th class="num">Chunks</th><th class="num">Values</th>'
        '<th class="num" title="Values not found in the document\'s text">Not found</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
        '<div class="doc-view" id="doc-view"></div>'
        '<noscript><p class="items-empty">The document view needs JavaScript.</p></noscript></section>'
    )


# --- evaluation ---------------------------------------------------------------------------------


def _score_bar(value: float | None) -> str:
    """The F1 as a bar out of 1 (drawn: the page's policy allows no inline style)."""
    width = min(max(value, 0.0), 1.0) * _BAR_WIDTH if value is not None and math.isfinite(value) else 0.0
    return (
        f'<svg class="score-bar" viewBox="0 0 {_BAR_WIDTH} 6" aria-hidden="true">'
        f'<rect width="{width:.1f}" height="6" rx="3"/></svg>'
    )


def _scored(value: str, ci: str) -> str:
    interval = f'<span class="ci">{_esc(ci)}</span>' if ci else ""
    return f"{_esc(value)}{interval}"


def _field_row(row: FieldScore, *, cell: str = "td") -> str:
    return (
        f'<tr data-field="{_esc(row.name)}"><{cell} class="field"><code>{_esc(row.name)}</code></{cell}>'
        f'<td class="num f1"><span class="scored">{_score_bar(row.f1_value)}'
        f"<span>{_scored(row.f1, row.f1_ci)}</span></span></td>"
        f'<td class="num">{_scored(row.precision, row.precision_ci)}</td>'
        f'<td class="num">{_scored(row.recall, row.recall_ci)}</td>'
        f"<td class='num'>{row.tp:,}</td><td class='num'>{row.fp:,}</td><td class='num'>{row.fn:,}</td></tr>"
    )


def _fields_table(view: EvaluationView) -> str:
    rows = "".join(_field_row(row) for row in view.fields)
    if not rows:
        rows = (
            '<tr><td colspan="7" class="empty-note">Neither the gold nor the output holds a value.</td></tr>'
        )
    overall = _field_row(view.overall, cell="th")
    return (
        '<h3 class="eval-head">Fields, the worst F1 first</h3>'
        '<div class="card"><table class="eval-fields"><thead><tr><th>Field</th><th class="num">F1</th>'
        '<th class="num">Precision</th><th class="num">Recall</th>'
        '<th class="num" title="true positives: values the output got right">TP</th>'
        '<th class="num" title="false positives: values the output holds that the gold does not">FP</th>'
        '<th class="num" title="false negatives: values of the gold the output misses or gets wrong">FN</th>'
        f"</tr></thead><tbody>{rows}</tbody><tfoot>{overall}</tfoot></table></div>"
    )


def _shown_value(text: str, absent: bool) -> str:
    if absent:
        return '<span class="value none">none</span>'
    return f'<code class="value">{_esc(text)}</code>'


def _mismatch_row(mismatch: ValueMismatch) -> str:
    return (
        f'<tr><td class="path"><code>{_esc(mismatch.path)}</code></td>'
        f'<td class="got">{_shown_value(mismatch.got, mismatch.got_absent)}</td>'
        f'<td class="want">{_shown_value(mismatch.want, mismatch.want_absent)}</td></tr>'
    )


def _wrong_item(item: WrongItem) -> str:
    """One item as a group of rows: a head (its id, how it was scored, how many values are wrong),
    then each wrong value beside the gold's."""
    if item.linked:
        name = (
            f'<button type="button" class="item-link" data-item="{_esc(item.id)}" '
            f'title="Show this item in the table">{_esc(item.id)}</button>'
        )
    else:
        name = f'<code class="item-id">{_esc(item.id)}</code>'
    status = {"matched": "scored", "error": "error", "missing": "missing"}.get(item.status, item.status)
    rows = "".join(_mismatch_row(m) for m in item.mismatches)
    if item.more:
        rows += f'<tr><td colspan="3" class="more-values">… and {item.more:,} more</td></tr>'
    return (
        f'<tbody class="wrong-item" data-eval-item="{_esc(item.id)}"><tr class="wrong-head">'
        f'<th colspan="3" scope="rowgroup">{name}'
        f'<span class="badge {_esc(item.status)}">{_esc(status)}</span>'
        f'<span class="wrong-count">{item.wrong:,} wrong</span></th></tr>{rows}</tbody>'
    )


def _worst(view: EvaluationView) -> str:
    if not view.worst:
        return '<h3 class="eval-head">Items</h3><p class="empty-note">Every value of every item is right.</p>'
    shown = len(view.worst)
    count = (
        f"the {shown:,} with the most values wrong, of {view.wrong_total:,}"
        if view.wrong_total > shown
        else f"{shown:,}"
    )
    return (
        f'<h3 class="eval-head">Items with values wrong ({_esc(count)})</h3>'
        '<p class="section-note">Each value the output got wrong beside the gold\'s: <em>none</em> where a '
        "side holds no value. Paths index the output's lists (<code>people[0].age</code>); "
        "<code>[]</code> marks a gold entity the output has no match for.</p>"
        '<div class="card"><table class="mismatches"><colgroup><col class="c-path"><col><col></colgroup>'
        "<thead><tr><th>Field</th><th>Output</th><th>Gold</th></tr></thead>"
        f"{''.join(_wrong_item(item) for item in view.worst)}</table></div>"
    )


def _reliability(view: EvaluationView) -> str:
    if not view.bins:
        return ""
    title = "Reliability of the confidences"
    note = (
        "Values with a confidence, in bins 0.1 wide: each bar is as high as the share of its values "
        "that were right, the dot sits at their mean confidence, and the number at its foot is how "
        "many values it holds. On the dashed diagonal a value said to be 80% sure is right 80% of the "
        "time; below it the confidences are too high, above it too low."
    )
    return (
        f'<figure class="plot" id="reliability"><figcaption><h3>{_esc(title)}</h3></figcaption>'
        f'<div class="chart-scroll">{reliability_svg(view.bins, title)}</div>'
        f'<p class="note">{_esc(note)}</p></figure>'
    )


def _evaluation(view: EvaluationView) -> str:
    cards = "".join(_fact(fact) for fact in view.facts)
    calibration = f'<p class="calibration-line">{_esc(view.calibration)}</p>' if view.calibration else ""
    plot = _reliability(view)
    plots = f'<div class="plots eval-plots">{plot}</div>' if plot else ""
    return (
        f'<section id="sec-evaluation"><h2>Evaluation</h2><div class="facts eval-facts">{cards}</div>'
        f'<p class="section-note eval-note">{_esc(view.note)}</p>{calibration}'
        f"{_fields_table(view)}{plots}{_worst(view)}</section>"
    )


# --- the page -----------------------------------------------------------------------------------


def render_html(report: RunReport, evaluation: Evaluation | None = None, *, gold: str | None = None) -> str:
    """The whole page, ready to be written as UTF-8. ``evaluation``: the job's output scored against
    gold (:func:`corral.report.evaluate_run`, or :func:`corral.evaluation.evaluate` of its output
    file), shown in a section of its own; ``gold``: the gold file's name, for that section's note."""
    sections: list[str] = []
    toc: list[tuple[str, str]] = []
    if evaluation is not None:  # what the reader asked for, first
        view = evaluation_view(evaluation, gold=gold, linkable={item.id for item in report.items})
        sections.append(_evaluation(view))
        toc.append(("sec-evaluation", f"Evaluation (F1 {view.overall.f1})"))
    if report.plots:
        sections.append(_plots(report.plots))
        toc.append(("sec-plots", "Plots"))
    sections.append(_errors(report.errors))
    toc.append(("sec-errors", f"Errors ({sum(group.count for group in report.errors):,})"))
    if report.documents:  # a document job's results, before its run history
        sections.append(_documents(report))
        toc.append(("sec-documents", f"Documents ({report.documents_total:,})"))
    if report.runs:
        sections.append(_runs(report.runs, report.run))
        toc.append(("sec-runs", "Runs"))
    if report.settings:
        sections.append(_settings(report.settings))
        toc.append(("sec-settings", "Settings"))
    sections.append(_items(report))
    toc.append(("sec-items", f"Items ({report.items_total:,})"))
    facts = _facts(report.facts) if report.facts else ""
    style, script = _asset("report.css"), _asset("report.js")
    documents = ""
    if report.documents:
        script += "\n" + _asset("documents.js")
        documents = (
            f'<script type="application/json" id="documents">{documents_json(report.documents)}</script>\n'
        )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{GENERATOR_META}'
        f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy(style, script)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f'<title>{_esc(report.title)}</title><link rel="icon" href="data:,">'
        f"<style>{style}</style></head>\n"
        f"<body><main>{_header(report)}{_toc(toc)}{facts}{''.join(sections)}"
        "<footer>Written by <code>corral report</code>: this page is self-contained and works offline."
        "</footer></main>\n"
        f'<script type="application/json" id="items">{items_json(report.items)}</script>\n'
        f"{documents}<script>{script}</script>\n</body></html>\n"
    )
