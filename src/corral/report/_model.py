"""What a report shows, as plain data: built from the run store by :mod:`corral.report._data`, drawn
by :mod:`corral.report._html` (one self-contained page, SVG plots) and :mod:`corral.report._png`
(the same plots as images). Renderers format nothing themselves: numbers arrive as display text
where a person reads them, and as floats where a plot needs them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DocumentConflict",
    "DocumentField",
    "DocumentView",
    "ErrorGroup",
    "EvaluationView",
    "Fact",
    "FieldScore",
    "ItemRow",
    "Plot",
    "ReliabilityBin",
    "RunLine",
    "RunReport",
    "Series",
    "ValueMismatch",
    "WrongItem",
]

Tone = Literal["plain", "good", "warn", "bad"]
#: line: a measured curve; step: a level held until the next point (in flight); bars: one bar per
#: point (a histogram bin or a time bucket, ``Plot.bar_width`` wide); limit: a dashed reference line
SeriesStyle = Literal["line", "step", "bars", "limit"]


@dataclass(frozen=True, slots=True)
class Fact:
    """One number in the summary: ``value`` large, ``detail`` under it."""

    label: str
    value: str
    detail: str = ""
    tone: Tone = "plain"


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    #: (x, y): x in seconds since the run started (time plots) or the bin's left edge (histograms)
    points: tuple[tuple[float, float], ...]
    style: SeriesStyle = "line"
    #: a role the renderers map to a colour: ok, error, retry, limit, neutral
    role: Literal["ok", "error", "retry", "limit", "neutral"] = "neutral"
    #: bars only: each point's own bar width, in x units (empty: every bar is ``Plot.bar_width``).
    #: A rate is averaged over windows that need not all be as long (the last one ends with the run)
    widths: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Plot:
    #: file name without extension for ``--png DIR``, and the element id in the page
    slug: str
    title: str
    x_label: str
    y_label: str
    series: tuple[Series, ...]
    #: one sentence under the plot: what it shows, or why it is empty
    note: str = ""
    #: width of each bar in x units (bars series without widths of their own)
    bar_width: float = 1.0
    #: y axis from zero (counts, rates); False lets it fit the data
    from_zero: bool = True
    #: what x measures: seconds (ticks read 5s, 1:30, 1:00:00) or a plain number
    x_unit: Literal["seconds", "number"] = "seconds"

    @property
    def empty(self) -> bool:
        return not any(s.points for s in self.series if s.style != "limit")


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    kind: str
    count: int
    #: share of the job's items
    share: float
    #: the message of one such item (messages differ in detail; the first is representative)
    example: str
    #: ids of the first few items with this error
    item_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ItemRow:
    id: str
    ok: bool
    input: str
    #: the extracted record (a JSON value) or None
    output: Any
    error_kind: str | None
    error_message: str | None
    attempts: int
    latency_s: float
    tokens: int
    cost: float
    #: the run that finished the item
    run: int


@dataclass(frozen=True, slots=True)
class DocumentField:
    """One extracted string value of a document's record, and where the text says it."""

    #: where the record holds it: ``title``, ``people[0].name``
    path: str
    value: str
    #: its span in the document's text, ``text[start:end]`` in characters (code points, as Python
    #: indexes a str), within the text the report holds; None: not highlighted (``missing`` says why)
    span: tuple[int, int] | None
    #: how the span was found: "exact", "normalised", "fuzzy" (None: it was not found)
    how: str | None
    #: how well the span matches the value, 0-1 (1.0 for exact and normalised; None: not found)
    score: float | None
    #: the PDF page the span starts on, from 1 (None: not a PDF, or not found)
    page: int | None
    #: why there is no span: "" (there is one), or "not found in the text", or "beyond the text
    #: shown" (the page holds only the text's start)
    missing: str = ""


@dataclass(frozen=True, slots=True)
class DocumentConflict:
    """A field the document's chunks disagreed on: the value kept, and the others (as JSON text)."""

    path: str
    kept: str
    others: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DocumentView:
    """A document a run assembled from its chunks: its record's values, each grounded in its text."""

    id: str
    ok: bool
    #: how many chunks it was cut into (None: not recorded)
    chunks: int | None
    #: every string value of its record, in the record's order (``fields_total`` may be more)
    fields: tuple[DocumentField, ...]
    #: string values in the record, and those of them not found in the text (all, not only ``fields``)
    fields_total: int
    ungrounded: int
    conflicts: tuple[DocumentConflict, ...]
    error_kind: str | None
    error_message: str | None
    #: the document's text, or its start (``note`` then says how much of it)
    text: str
    #: what of the document the page leaves out ("" when nothing): the rest of its text, values
    note: str
    attempts: int
    tokens: int
    latency_s: float


@dataclass(frozen=True, slots=True)
class RunLine:
    """One run of the job, for the history table."""

    id: int
    started: str
    status: str
    wall: str
    items: int
    requests: int
    cost: str


@dataclass(frozen=True, slots=True)
class RunReport:
    #: the run reported on (its line in ``runs`` is marked)
    run: int
    title: str
    #: one line under the title: job, run, status, when
    subtitle: str
    facts: tuple[Fact, ...]
    #: what the job asked (model, schema, prompt, mode, …) as label/value pairs
    settings: tuple[tuple[str, str], ...]
    runs: tuple[RunLine, ...]
    plots: tuple[Plot, ...]
    errors: tuple[ErrorGroup, ...]
    items: tuple[ItemRow, ...]
    #: items the job holds; ``items`` may be fewer (a size cap keeps the page light)
    items_total: int
    #: why ``items`` is fewer than ``items_total`` ("" when it is not)
    items_note: str = ""
    generated: str = ""
    #: the job's documents (chunked inputs merged into one record each), errors first; () when none
    documents: tuple[DocumentView, ...] = ()
    #: documents the job holds; ``documents`` may be fewer (a size cap keeps the page light)
    documents_total: int = 0
    #: why ``documents`` is fewer than ``documents_total`` ("" when it is not)
    documents_note: str = ""


# --- evaluation: the job's output against gold (corral.evaluation) ------------------------------


@dataclass(frozen=True, slots=True)
class FieldScore:
    """One field's scores (or the overall's) as display text: ``"0.912"``, its interval
    ``"[0.880, 0.940]"`` ("" when there is none), ``"–"`` where a score is undefined (0/0)."""

    name: str
    precision: str
    precision_ci: str
    recall: str
    recall_ci: str
    f1: str
    f1_ci: str
    tp: int
    fp: int
    fn: int
    #: the F1 as a number, for its bar (None: undefined)
    f1_value: float | None


@dataclass(frozen=True, slots=True)
class ValueMismatch:
    """A value the output got wrong: where (``people[0].age``), what it holds, what the gold holds,
    each as display text (JSON; "" with ``*_absent`` when that side has no value)."""

    path: str
    got: str
    want: str
    got_absent: bool
    want_absent: bool


@dataclass(frozen=True, slots=True)
class WrongItem:
    """An item with values wrong: ``matched`` (scored), ``error`` (its output is an error) or
    ``missing`` (not in the output), and each value beside the gold's."""

    id: str
    status: str
    #: values wrong (FP + FN)
    wrong: int
    mismatches: tuple[ValueMismatch, ...]
    #: mismatches not listed (the page lists the first few of an item)
    more: int
    #: whether the item is in the page's items table (a link shows it there)
    linked: bool


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """One bin of confidence ``[lo, hi)`` with values in it: their mean confidence, the share right."""

    lo: float
    hi: float
    count: int
    confidence: float
    accuracy: float


@dataclass(frozen=True, slots=True)
class EvaluationView:
    """An evaluation as the page shows it (built by :func:`corral.report._scores.evaluation_view`)."""

    #: overall precision, recall and F1 (with intervals), and the items scored
    facts: tuple[Fact, ...]
    #: what was scored against what, and how the intervals were made
    note: str
    #: every field, the worst F1 first (undefined last)
    fields: tuple[FieldScore, ...]
    #: all fields together (micro)
    overall: FieldScore
    #: the items with the most values wrong, the worst first
    worst: tuple[WrongItem, ...]
    #: items with anything wrong (``worst`` lists the first of them)
    wrong_total: int
    #: the reliability diagram's bins with values (empty: the output carries no confidence)
    bins: tuple[ReliabilityBin, ...] = ()
    #: the calibration's figures in a sentence: ECE, accuracy, accuracy above the threshold
    calibration: str = ""
