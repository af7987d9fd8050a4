"""A run's report, read from the run store: the numbers, the timeline plots, errors, items, documents.

Everything comes from tables a run writes anyway (``runs``, ``items``, ``samples``, ``documents``), so
a report can be made at any time, of a finished run or of one still going, by another process.

    runs       the run's counters: requests, retries, tokens, cost, failures by kind
    samples    its timeline: cumulative counters and in-flight requests, with the limits in effect
    items      every item of the job: latency, finish time, the record written to the output
    documents  a document job's documents: each one's record (its values and their spans) and text;
               a page holds DEFAULT_MAX_DOCUMENTS of them, each text cut at MAX_DOCUMENT_CHARS
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from corral.documents import string_leaves
from corral.errors import StoreError
from corral.report._model import (
    DocumentConflict,
    DocumentField,
    DocumentView,
    ErrorGroup,
    Fact,
    ItemRow,
    Plot,
    RunLine,
    RunReport,
    Series,
)
from corral.store import ItemTiming, RunRecord, RunStore, Sample, StoredDocument, job_keys

__all__ = ["DEFAULT_MAX_DOCUMENTS", "DEFAULT_MAX_ITEMS", "MAX_DOCUMENT_CHARS", "find_run", "load_report"]

DEFAULT_MAX_ITEMS = 20_000
#: documents a page holds at most (every error first), and characters of each one's text: 50 at
#: 300,000 characters keep the page under 20 MB in the worst case
DEFAULT_MAX_DOCUMENTS = 50
MAX_DOCUMENT_CHARS = 300_000
#: values of one document listed at most (a record of thousands of values is still counted whole)
_MAX_FIELDS = 2_000
#: conflicts of one document listed at most
_MAX_CONFLICTS = 200
#: how a value's span may have been found (anything else a record says is shown as not found)
_HOW = ("exact", "normalised", "fuzzy")
#: time plots are drawn from about this many buckets (a bucket is a "nice" number of seconds)
_BUCKETS = 90
_NICE_SECONDS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)
_HISTOGRAM_BINS = 30
#: a rate is taken over a second at least: between samples a tenth of a second apart, one request
#: more or less at 20/s would read as 10/s more or less
_MIN_RATE_WINDOW_S = 1.0
#: ... and over a window that holds about this many requests at the run's mean rate, so that one
#: request more or less moves a bar by a few percent, not past the limit line
_REQUESTS_PER_WINDOW = 30
#: example item ids listed per error kind
_EXAMPLE_IDS = 5
#: job names listed when the one asked for is not in the store
_KNOWN_JOBS = 5


def find_run(store: RunStore, selector: str | None) -> int:
    """The run a report is about: a run number, a job's output (its latest run), or the latest run."""
    if selector is None:
        latest = store.views.latest_run()
        if latest is None:
            raise StoreError(
                f"the run store {store.path} holds no runs yet: run `corral run ... -o OUT` first"
            )
        return latest
    if selector.isdigit():
        if store.views.run(int(selector)) is None:
            raise StoreError(f"there is no run {selector} in {store.path}{_known_runs(store)}")
        return int(selector)
    # A job is named by its output (the one rule of corral.store.job_key, with the store beside the
    # output or apart from it); jobs of `corral serve` by their name in the store.
    latest = store.views.latest_run_named(job_keys(selector))
    if latest is None:
        raise StoreError(f"no job writes {selector} in {store.path}{_known_jobs(store)}")
    return latest


def load_report(
    store: RunStore,
    run_id: int,
    *,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_documents: int = DEFAULT_MAX_DOCUMENTS,
) -> RunReport:
    views = store.views
    run = _load_run(store, run_id)
    job = views.job(run.job)
    assert job is not None  # a run's job is deleted with its runs
    samples = views.samples(run.id)
    finished = views.finished_in(run.id)
    total, _, errors = views.item_counts(run.job)
    history = views.runs_of(run.job)
    latencies = sorted(item.latency for item in finished)
    items, note = _items(store, run.job, total, max_items)
    documents, documents_total, documents_note = _documents(store, run.job, max_documents)
    facts = _facts(run, samples, (total, errors), latencies, history)
    if documents_total:
        facts = (facts[0], _documents_fact(store, run.job, documents_total), *facts[1:])
    return RunReport(
        run=run.id,
        title=f"corral report: {_short(job.name)}",
        subtitle=(
            f"run {run.id} ({_position(history, run)} of {len(history)} of this job) · {run.status} · "
            f"started {_when(run.started)}"
        ),
        facts=facts,
        settings=_settings(job.name, job.settings, store),
        runs=tuple(_run_line(r) for r in history),
        plots=_plots(run, samples, finished, latencies),
        errors=_error_groups(store, run.job, total),
        items=items,
        items_total=total,
        items_note=note,
        generated=_when(time.time()),
        documents=documents,
        documents_total=documents_total,
        documents_note=documents_note,
    )


# --- the summary --------------------------------------------------------------------------------


def _load_run(store: RunStore, run_id: int) -> RunRecord:
    run = store.views.run(run_id)
    if run is None:
        raise StoreError(f"there is no run {run_id} in {store.path}{_known_runs(store)}")
    return run


def _wall(run: RunRecord) -> float:
    """The run's wall time so far (a run still going: until now)."""
    return max((run.ended or time.time()) - run.started, 1e-9)


def _facts(
    run: RunRecord, samples: Sequence[Sample], job_items: tuple[int, int], latencies: Sequence[float],
    history: Sequence[RunRecord],
) -> tuple[Fact, ...]:  # fmt: skip
    total, errors = job_items
    wall = _wall(run)
    ok = total - errors
    share = errors / total if total else 0.0
    facts = [
        Fact(
            "Items",
            _big(total),
            f"{ok:,} ok · {errors:,} errors" + (f" · {run.reused:,} from earlier runs" if run.reused else ""),
            "good" if total and not errors else "bad" if share > 0.05 else "warn" if errors else "plain",
        ),
        Fact("Wall time", _duration(wall), f"{run.status}, {_rate(run.items - run.reused, wall)}"),
    ]
    requests = _rate_fact("Requests", run.requests, wall, _last(s.rpm for s in samples), "req")
    if not_sent := _not_sent(run):
        requests = dataclasses.replace(requests, detail=f"{requests.detail} · {not_sent}")
    facts.append(requests)
    tokens = run.prompt_tokens + run.completion_tokens
    facts.append(_rate_fact("Tokens", tokens, wall, _last(s.tpm for s in samples), "tok"))
    # 429s and overloads (503/529) alike pause the run: the samples count both as rate-limited.
    limited = samples[-1].rate_limited if samples else run.faults.get("rate_limited", 0)
    # The two counts come from two records (the run's row, its timeline); a part larger than its
    # whole (a Ray run's row said 0 retries, its timeline 5 after a 429) is not shown as if it held.
    after = (
        f"{limited:,} after a 429/overload"
        if limited <= run.retries
        else f"yet its timeline counted {limited:,} after a 429/overload: the run's counts disagree"
    )
    facts.append(
        Fact(
            "Retries",
            f"{run.retries:,}",
            f"{after} · failures: {_kinds(run.faults)}",
            "plain" if not run.retries and limited <= run.retries else "warn",
        )
    )
    if latencies:
        facts.append(
            Fact(
                "Latency",
                _seconds(_quantile(latencies, 0.5)),
                f"median · p95 {_seconds(_quantile(latencies, 0.95))} · "
                f"p99 {_seconds(_quantile(latencies, 0.99))}",
            )
        )
    job_cost = sum(r.cost for r in history)
    facts.append(
        Fact(
            "Cost",
            _dollars(run.cost),
            f"job total {_dollars(job_cost)} over {len(history)} run{'s' if len(history) != 1 else ''}"
            if len(history) > 1
            else f"{run.prompt_tokens:,} prompt + {run.completion_tokens:,} completion tokens"
            + ("" if run.cost or not tokens else " (no price known for the model)"),
        )
    )
    return tuple(facts)


def _not_sent(run: RunRecord) -> str:
    """The answers the run had without sending a request: duplicates and the cache's."""
    parts = []
    if run.shared:
        parts.append(f"{run.shared:,} {'duplicate' if run.shared == 1 else 'duplicates'} sent once")
    if run.cached:
        parts.append(f"{run.cached:,} from the cache")
    return " · ".join(parts)


def _rate_fact(label: str, count: int, wall: float, limit: float | None, unit: str) -> Fact:
    per_minute = count / wall * 60.0
    if limit:
        share = per_minute / limit
        detail = f"{per_minute:,.0f} {unit}/min = {share:.0%} of the {limit:,.0f}/min limit"
        return Fact(label, _big(count), detail, "good" if share >= 0.8 else "plain")
    return Fact(label, _big(count), f"{per_minute:,.0f} {unit}/min · no limit set or learned")


def _settings(name: str, settings: dict[str, Any], store: RunStore) -> tuple[tuple[str, str], ...]:
    pairs = [("job", name), *((key, str(value)) for key, value in sorted(settings.items()))]
    return (*pairs, ("store", str(store.path)))


def _run_line(run: RunRecord) -> RunLine:
    return RunLine(
        id=run.id,
        started=_when(run.started),
        status=run.status,
        wall=_duration(_wall(run)),
        items=run.items - run.reused,
        requests=run.requests,
        cost=_dollars(run.cost),
    )


# --- plots --------------------------------------------------------------------------------------


def _plots(
    run: RunRecord, samples: Sequence[Sample], finished: Sequence[ItemTiming], latencies: Sequence[float]
) -> tuple[Plot, ...]:
    span = max(_wall(run), samples[-1].time - run.started if samples else 0.0, 1e-3)
    width = _bucket_width(span)
    edges = [k * width for k in range(math.ceil(span / width) + 1)]
    # A clock stepped back cannot put a sample before the run's start.
    times = [max(0.0, s.time - run.started) for s in samples]
    timeline = _Timeline(
        samples=samples,
        times=times,
        windows=_windows(times, max((s.requests for s in samples), default=0)),
        span=span,
        missing="" if samples else "This run recorded no timeline (it was made by an older corral).",
        none="None in this run" if run.ended is not None else "None in this run so far",
    )
    return (
        _completions(run, finished, edges, timeline.none),
        _throughput(run, timeline),
        _in_flight(timeline),
        _latency(latencies),
        _retries(timeline),
    )


@dataclass(frozen=True, slots=True)
class _Timeline:
    """A run's timeline as its plots read it."""

    samples: Sequence[Sample]
    #: each sample's time, in seconds since the run started
    times: Sequence[float]
    #: the windows a rate, or a count per window, is taken over
    windows: _Windows
    #: the seconds the time plots span
    span: float
    #: why there is no timeline ("" when there is one)
    missing: str
    #: how a plot with nothing to draw begins (a run still going may have something later)
    none: str


def _completions(run: RunRecord, finished: Sequence[ItemTiming], edges: Sequence[float], none: str) -> Plot:
    if not finished:
        why = f": its {run.reused:,} items were answered by earlier runs" if run.reused else ""
        return _nothing("completions", "Items finished", "items", f"{none}: it finished no item{why}.")
    ok = [t - run.started for t, status, _ in finished if status == "ok"]
    bad = [t - run.started for t, status, _ in finished if status != "ok"]
    series = [Series("ok", tuple((x, float(bisect.bisect_right(ok, x))) for x in edges), "line", "ok")]
    if bad:
        series.append(
            Series("errors", tuple((x, float(bisect.bisect_right(bad, x))) for x in edges), "line", "error")
        )
    note = f"{len(finished):,} items finished by this run"
    if run.reused:
        note += f"; {run.reused:,} answered from earlier runs are not drawn"
    return Plot("completions", "Items finished", "time since start", "items", tuple(series), note + ".")


def _throughput(run: RunRecord, timeline: _Timeline) -> Plot:
    title = "Requests per second against the limit"
    samples, times, windows, none = timeline.samples, timeline.times, timeline.windows, timeline.none
    if timeline.missing:
        return _nothing("throughput", title, "requests/s", timeline.missing)
    ended = _Counter([s.requests for s in samples], times)
    sent = _Counter(_sent(ended.values, [s.in_flight for s in samples]), times)
    if not sent.total:
        cached = f"; {run.cached:,} answers came from the response cache" if run.cached else ""
        return _nothing("throughput", title, "requests/s", f"{none}: it sent no request{cached}.")
    if not windows.edges:
        return _nothing(
            "throughput", title, "requests/s", "The timeline spans no time: there is no rate to show."
        )
    series = [Series("requests/s", sent.rates(windows), "bars", "neutral", widths=windows.widths)]
    limits = [(t, s.rpm / 60.0) for t, s in zip(times, samples, strict=True) if s.rpm]
    if limits:
        series.append(Series("limit", tuple(_steps(limits, windows.edges[-1])), "limit", "limit"))
    # Why windows: a rate needs enough requests under it. Between two samples a tenth of a second
    # apart, one request more or less is a spike of 10/s, and a count kept over a gap, put in one
    # narrow bar, is a rate the requests never had. A window's count is what the count rose by
    # between its two ends (read straight between the samples around each), so every request is in
    # one bar and the bars' areas add up to the requests.
    against = (
        ". The dashed line is the provider's requests-per-minute limit ÷ 60."
        if limits
        else ". No requests-per-minute limit was given or learned."
    )
    note = (
        "Requests sent per second (those ended plus those in flight, at each sample), each bar the "
        f"average over its window of {_seconds(windows.width)}: a shorter window holds too few requests "
        f"to be a rate{against}"
    )
    gap = _largest_gap(times)
    if gap > windows.width:
        note += (
            f" The timeline has gaps of up to {_seconds(gap)} between its samples: a bar within one shows "
            "the average over the gap."
        )
    return Plot("throughput", title, "time since start", "requests/s", tuple(series),
                note + _went_down(("requests", ended)), bar_width=windows.width)  # fmt: skip


def _in_flight(timeline: _Timeline) -> Plot:
    title = "Requests in flight"
    samples, times, span, none = timeline.samples, timeline.times, timeline.span, timeline.none
    points = [(t, s.in_flight) for t, s in zip(times, samples, strict=True)]
    # Fewer than none in flight cannot be: such a sample is left out, and the note says so.
    impossible = sum(1 for _, n in points if n < 0)
    shown = [(t, float(n)) for t, n in points if n >= 0]
    left_out = (
        f" {impossible:,} sample{'s' if impossible != 1 else ''} recorded fewer than none in flight, "
        "which cannot be: left out."
        if impossible
        else ""
    )
    peak = max((n for _, n in points if n >= 0), default=0)
    if samples and not peak:
        why = (
            f"{none}: it sent no request."
            if not max(s.requests for s in samples)
            else "None seen: no request was in flight when the timeline was sampled (each one ended "
            "between two samples)."
        )
        return _nothing("in_flight", title, "requests", why + left_out)
    series = [Series("in flight", tuple(shown), "step", "neutral")]
    bound = _last(s.concurrency for s in samples)
    if bound:
        series.append(
            Series("concurrency limit", ((0.0, float(bound)), (span, float(bound))), "limit", "limit")
        )
    note = timeline.missing or f"Requests waiting for an answer, sampled; peak {peak:,}.{left_out}"
    return Plot("in_flight", title, "time since start", "requests", tuple(series), note)


def _latency(latencies: Sequence[float]) -> Plot:
    if not latencies:
        return Plot(
            "latency", "Latency per item", "latency", "items", (), "No item was extracted by this run."
        )
    top = _quantile(latencies, 0.995)
    width = _nice(max(top, 1e-3) / _HISTOGRAM_BINS)
    bins = max(1, math.ceil(top / width))
    counts = [0] * bins
    for value in latencies:
        counts[min(max(int(value / width), 0), bins - 1)] += 1
    points = tuple((k * width, float(n)) for k, n in enumerate(counts))
    clipped = sum(1 for value in latencies if value >= bins * width)
    # What the engine measures (corral.engine._extract): from when a worker starts on the item to its
    # outcome. Its requests wait there for the rate limit (limits.admit) and for a free slot, and
    # retries wait out their backoff: all of that is in, and no separate waiting time is kept.
    note = (
        "From when the run started on the item to its result: waiting for its turn under the rate and "
        "concurrency limits, every request, the backoff before each retry and any re-asks are all in it "
        "(the waiting is not recorded apart from the requests); "
        f"median {_seconds(_quantile(latencies, 0.5))}, p95 {_seconds(_quantile(latencies, 0.95))}"
    )
    if clipped:
        note += f"; the {clipped:,} slowest (up to {_seconds(latencies[-1])}) are in the last bar"
    return Plot("latency", "Latency per item", "latency", "items", (Series("items", points, "bars", "ok"),),
                note + ".", bar_width=width)  # fmt: skip


def _retries(timeline: _Timeline) -> Plot:
    title = "Retries and 429s"
    samples, times, windows = timeline.samples, timeline.times, timeline.windows
    if timeline.missing:
        return _nothing("retries", title, "retries", timeline.missing)
    retried = _Counter([s.retries for s in samples], times)
    limited = _Counter([s.rate_limited for s in samples], times)
    if not retried.total and not limited.total:
        why = f"{timeline.none}: no request was retried, and none met a 429 or an overload."
        return _nothing("retries", title, "retries", why)
    per = _seconds(windows.width)
    series = (
        Series("retries", retried.counts(windows), "bars", "retry", widths=windows.widths),
        Series("429s", limited.counts(windows), "bars", "error", widths=windows.widths),
    )
    note = (
        f"Retried requests per window of {per}, in the window where the timeline first counted them: 429s "
        f"and overloads (which pause the whole run) in front of all retries; {retried.total:,} in all"
        + ("" if limited.total else ", none after a 429 or an overload")
        + "."
    )
    note += _went_down(("retries", retried), ("retries after a 429", limited))
    return Plot("retries", title, "time since start", f"per {per}", series, note, bar_width=windows.width)


def _sent(ended: Sequence[int], in_flight: Sequence[int]) -> list[int]:
    """How many requests had been sent at each sample, which is what a limit counts.

    The requests counter counts a request when it ends; counted so, answers that took different
    times bunch up, and a run paced exactly at its limit seems to cross it. Sent by a sample are
    those ended plus those in flight then; and, as each of those in flight ends later as a request,
    no more than that sum at any later sample. The smallest of those later sums drops what was in
    flight but never became a request (a line put in a provider batch), and keeps the count from
    going down; it is never below the requests already ended."""
    sent = [0] * len(ended)
    bound: int | None = None
    for k in range(len(ended) - 1, -1, -1):
        total = ended[k] + in_flight[k]
        bound = total if bound is None else min(bound, total)
        sent[k] = max(ended[k], bound)
    return sent


def _nothing(slug: str, title: str, y_label: str, why: str) -> Plot:
    """A plot with nothing to draw: the page shows ``why`` in its frame (an axis of zeros would look
    like a chart that failed to draw), and no image of it is written."""
    return Plot(slug, title, "time since start", y_label, (), why)


@dataclass(frozen=True, slots=True)
class _Windows:
    """The windows a rate (or a count per window) is taken over: ``edges[k]`` to ``edges[k + 1]``,
    seconds since the start, each ``width`` long but the last, which ends with the timeline (a last
    sliver would be too short to be a rate: it joins the window before, which grows to 1.5 × at most)."""

    edges: tuple[float, ...]
    width: float

    @property
    def widths(self) -> tuple[float, ...]:
        return tuple(b - a for a, b in itertools.pairwise(self.edges))


def _windows(times: Sequence[float], requests: int) -> _Windows:
    """Windows long enough for a rate: a second at least, long enough to hold about
    :data:`_REQUESTS_PER_WINDOW` requests at the run's mean rate, and to hold a sample most of the
    time (a window between two samples has nothing of its own); no more than :data:`_BUCKETS` of
    them."""
    end = times[-1] if times else 0.0
    gaps = sorted(b - a for a, b in itertools.pairwise([0.0, *times]))
    width = _nice_seconds(
        max(
            _MIN_RATE_WINDOW_S,
            end / _BUCKETS,
            _quantile(gaps, 0.9) if gaps else 0.0,
            _REQUESTS_PER_WINDOW * end / requests if requests else 0.0,
        )
    )
    if end <= 0:
        return _Windows((), width)
    whole = math.floor(end / width + 1e-9)
    if end - whole * width >= width / 2:
        whole += 1
    inner = tuple(k * width for k in range(max(whole, 1)))
    return _Windows((*inner, end), width)


def _largest_gap(times: Sequence[float]) -> float:
    return max((b - a for a, b in itertools.pairwise([0.0, *times])), default=0.0)


class _Counter:
    """A cumulative counter of the timeline (requests, retries) as it may be drawn.

    Such a count of a run only grows. Should a stored timeline say otherwise (it happened: a Ray run's
    retries read 39, 65, then 0), drawing the difference would make a negative bar, which no run can
    have. Nor is it known whether the count restarted or one reading was wrong, so nothing is counted
    twice: the counter is read as the highest count recorded so far, and the note says where it went
    down."""

    def __init__(self, values: Sequence[int], times: Sequence[float]) -> None:
        self.times = times
        self.values: list[int] = []
        #: where a reading was lower than the one before: (time, highest count so far, the reading)
        self.drops: list[tuple[float, int, int]] = []
        highest = previous = 0
        for t, value in zip(times, values, strict=True):
            if value < previous:
                self.drops.append((t, highest, value))
            highest, previous = max(highest, value), value
            self.values.append(highest)

    @property
    def total(self) -> int:
        return self.values[-1] if self.values else 0

    def at(self, t: float) -> float:
        """The count at ``t``, straight between the samples around it (from zero at the start): the
        best that can be said of a moment between two samples."""
        times, values = self.times, self.values
        index = bisect.bisect_right(times, t)
        if index == len(times):
            return float(values[-1])
        before_t, before = (times[index - 1], values[index - 1]) if index else (0.0, 0)
        after_t, after = times[index], values[index]
        if after_t <= before_t:
            return float(after)
        return before + (after - before) * (t - before_t) / (after_t - before_t)

    def rates(self, windows: _Windows) -> tuple[tuple[float, float], ...]:
        """Per second over each window: what the count rose by across it, over its real length. The
        rises add up to the count (no request is lost or counted twice between windows)."""
        return tuple((a, (self.at(b) - self.at(a)) / (b - a)) for a, b in itertools.pairwise(windows.edges))

    def counts(self, windows: _Windows) -> tuple[tuple[float, float], ...]:
        """Whole counts per window: each rise goes to the window of the sample that saw it (the window
        ``(a, b]`` holds the rises seen after ``a`` and up to ``b``). Not spread between samples: a
        count cut in fractions reads as nonsense (0.3 retries), and a subset (the 429s among retries)
        would no longer stay inside its whole."""
        edges = windows.edges
        counts = [0.0] * (len(edges) - 1)
        if not counts:
            return ()
        previous = 0
        for t, value in zip(self.times, self.values, strict=True):
            window = min(max(bisect.bisect_left(edges, t) - 1, 0), len(counts) - 1)
            counts[window] += value - previous
            previous = value
        return tuple(zip(edges, counts, strict=False))

    def where_down(self, name: str) -> str:
        """Where the recorded count went down, as a clause ("" when it never did)."""
        if not self.drops:
            return ""
        t, highest, value = self.drops[0]
        more = len(self.drops) - 1
        again = f", and {more:,} more time{'s' if more != 1 else ''} after" if more else ""
        return f"of {name} went down at {_duration(t)} (from {highest:,} to {value:,}{again})"


def _went_down(*counters: tuple[str, _Counter]) -> str:
    """A sentence for a plot's note on the counts that went down ("" when none did)."""
    clauses = [clause for name, counter in counters if (clause := counter.where_down(name))]
    if not clauses:
        return ""
    counts = "count" if len(clauses) == 1 else "counts"
    return (
        f" The recorded {counts} {' and '.join(clauses)}, which a run's count cannot do: the bars count "
        "only rises above the highest count recorded before, so none is below zero, but the counts around "
        "it are not to be trusted."
    )


def _steps(points: Sequence[tuple[float, float]], end: float) -> list[tuple[float, float]]:
    """Points where a level changes (and the last one held to ``end``)."""
    out: list[tuple[float, float]] = []
    for t, value in points:
        if not out or out[-1][1] != value:
            out.append((t, value))
    out.append((end, out[-1][1]))
    return out


def _bucket_width(span: float) -> float:
    for width in _NICE_SECONDS:
        if span / width <= _BUCKETS:
            return float(width)
    return float(_NICE_SECONDS[-1])


def _nice_seconds(at_least: float) -> float:
    """The first of :data:`_NICE_SECONDS` at or above ``at_least`` (whole multiples of the last one
    beyond it)."""
    for width in _NICE_SECONDS:
        if width >= at_least:
            return float(width)
    last = _NICE_SECONDS[-1]
    return float(last * math.ceil(at_least / last))


def _nice(x: float) -> float:
    """The 1-2-5 number at or above ``x``."""
    power = 10.0 ** math.floor(math.log10(x))
    for step in (1, 2, 5, 10):
        if step * power >= x:
            return step * power
    return 10 * power


# --- errors and items ---------------------------------------------------------------------------


def _error_groups(store: RunStore, job: int, total: int) -> tuple[ErrorGroup, ...]:
    groups = []
    for kind, count in store.views.error_kinds(job):
        rows = store.views.errors_of_kind(job, kind, _EXAMPLE_IDS)
        error = orjson.loads(rows[0][1]).get("error") or {}
        groups.append(
            ErrorGroup(
                kind=kind,
                count=count,
                share=count / total if total else 0.0,
                example=str(error.get("message", "")),
                item_ids=tuple(str(row[0]) for row in rows),
            )
        )
    return tuple(groups)


def _items(store: RunStore, job: int, total: int, cap: int) -> tuple[tuple[ItemRow, ...], str]:
    # Errors first when the page cannot hold every item: they are what a reader looks for.
    rows = store.views.records(job, errors=True, limit=cap)
    rows += store.views.records(job, errors=False, limit=max(0, cap - len(rows)))
    items = sorted((_item_row(*row) for row in rows), key=lambda item: _natural(item.id))
    note = ""
    if len(items) < total:
        note = (
            f"The table holds {len(items):,} of the job's {total:,} items (every error first); "
            "the output file holds them all. Raise --max-items to include more."
        )
    return tuple(items), note


def _item_row(raw: bytes, run: int, cost: float) -> ItemRow:
    record = orjson.loads(raw)
    error = record.get("error")
    usage = record.get("usage") or {}
    return ItemRow(
        id=str(record["id"]),
        ok=error is None,
        input=str(record.get("input", "")),
        output=record.get("output"),
        error_kind=None if error is None else str(error.get("kind")),
        error_message=None if error is None else str(error.get("message")),
        attempts=int(record.get("attempts", 0)),
        latency_s=float(record.get("latency", 0.0)),
        tokens=int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0)),
        cost=float(cost),
        run=int(run),
    )


# --- documents ----------------------------------------------------------------------------------


def _documents_fact(store: RunStore, job: int, total: int) -> Fact:
    errors = store.document_count(job, status="error")
    detail = f"{total - errors:,} ok · {errors:,} errors"
    return Fact(
        "Documents", _big(total), detail, "good" if not errors else "bad" if errors / total > 0.05 else "warn"
    )


def _documents(store: RunStore, job: int, cap: int) -> tuple[tuple[DocumentView, ...], int, str]:
    """The job's documents the page holds (every error first, then in id order, each text cut at
    :data:`MAX_DOCUMENT_CHARS`), how many it has, and why the page holds fewer ("" when it does not)."""
    total = store.document_count(job)
    if not total:
        return (), 0, ""
    cap = max(cap, 0)
    stored = store.documents(job, status="error", limit=cap, max_chars=MAX_DOCUMENT_CHARS)
    stored += store.documents(job, status="ok", limit=cap - len(stored), max_chars=MAX_DOCUMENT_CHARS)
    views = sorted((_document_view(doc) for doc in stored), key=lambda view: _natural(view.id))
    note = ""
    if len(views) < total:
        note = (
            f"The page holds {len(views):,} of the job's {total:,} documents (every error first); "
            "the output file holds them all."
        )
    return tuple(views), total, note


def _document_view(doc: StoredDocument) -> DocumentView:
    """A stored document as the page shows it. Its record is a run's, but every value in it came from
    the document or the model: nothing in it is trusted to be well formed."""
    try:
        record = orjson.loads(doc.record)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        record = {"error": {"kind": "unreadable", "message": "the stored record is not a JSON object"}}
    grounding = record.get("grounding")
    spans = grounding if isinstance(grounding, Mapping) else {}
    length = doc.cut_from if doc.cut_from is not None else len(doc.text)
    fields = [_document_field(path, value, spans.get(path), length, len(doc.text))
              for path, value in string_leaves(record.get("output"), "")]  # fmt: skip
    error = record.get("error")
    error = error if isinstance(error, Mapping) else None
    usage = record.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    ok = doc.status == "ok" and error is None
    return DocumentView(
        id=doc.doc_id,
        ok=ok,
        chunks=_count(record.get("chunks")),
        fields=tuple(fields[:_MAX_FIELDS]),
        fields_total=len(fields),
        ungrounded=sum(1 for field in fields if field.missing and field.how is None),
        conflicts=_conflicts(record.get("conflicts")),
        error_kind=None if ok else str((error or {}).get("kind") or "error"),
        error_message=None if error is None or error.get("message") is None else str(error["message"]),
        text=doc.text,
        note=_document_note(doc, fields),
        attempts=_count(record.get("attempts")) or 0,
        tokens=(_count(usage.get("prompt_tokens")) or 0) + (_count(usage.get("completion_tokens")) or 0),
        latency_s=_number(record.get("latency")) or 0.0,
    )


def _document_field(path: str, value: str, found: Any, length: int, shown: int) -> DocumentField:
    """A value and its span, checked: a span must lie in the text (``length`` characters) and be
    highlighted only where the page holds the text (its first ``shown`` characters)."""
    if not isinstance(found, Mapping):
        return DocumentField(path, value, None, None, None, None, "not found in the text")
    start, end = _count(found.get("start")), _count(found.get("end"))
    if start is None or end is None or not start < end <= length:
        return DocumentField(
            path, value, None, None, None, None, "not found in the text (its span is not in it)"
        )
    how = found.get("how")
    score = _number(found.get("score"))
    page = _count(found.get("page"))
    grounded = DocumentField(
        path,
        value,
        None,
        str(how) if how in _HOW else "exact",
        None if score is None else min(max(score, 0.0), 1.0),
        page if page else None,
    )
    if start >= shown:
        return dataclasses.replace(grounded, missing="beyond the text shown")
    return dataclasses.replace(grounded, span=(start, min(end, shown)))


def _document_note(doc: StoredDocument, fields: Sequence[DocumentField]) -> str:
    parts = []
    if doc.cut_from is not None:
        beyond = sum(1 for field in fields if field.missing == "beyond the text shown")
        parts.append(
            f"The page holds the first {len(doc.text):,} of the text's {doc.cut_from:,} characters"
            + (f"; {beyond:,} values found after them are listed without a highlight." if beyond else ".")
        )
    if len(fields) > _MAX_FIELDS:
        parts.append(f"The first {_MAX_FIELDS:,} of its {len(fields):,} values are listed.")
    return " ".join(parts)


def _conflicts(raw: Any) -> tuple[DocumentConflict, ...]:
    if not isinstance(raw, list):
        return ()
    found = []
    for entry in raw[:_MAX_CONFLICTS]:
        if isinstance(entry, Mapping):
            others = entry.get("others")
            others = others if isinstance(others, list) else []
            found.append(DocumentConflict(str(entry.get("path", "")), _shown(entry.get("kept")),
                                          tuple(_shown(other) for other in others)))  # fmt: skip
    return tuple(found)


def _shown(value: Any) -> str:
    """A value as text: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


def _count(value: Any) -> int | None:
    """A whole number ≥ 0 from a record (None: it is something else)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _number(value: Any) -> float | None:
    """A finite number from a record (None: it is something else)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


# --- formatting ---------------------------------------------------------------------------------


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key that puts item 9 before item 10. The split leaves the digits at odd places (a part
    between them may still pass ``isdigit``, "²" does, and not be a number)."""
    return tuple(int(part) if odd % 2 else part for odd, part in enumerate(re.split(r"(\d+)", text)))


def _quantile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _last(values: Any) -> Any:
    last = None
    for value in values:
        if value is not None:
            last = value
    return last


def _big(count: int) -> str:
    """A count for a summary card: exact up to a million, then in millions (it must fit the card)."""
    return f"{count:,}" if count < 1_000_000 else f"{count / 1e6:,.2f} M"


def _dollars(amount: float) -> str:
    if not amount:
        return "$0"
    return f"${amount:,.2f}" if amount >= 10 else f"${amount:,.4f}"


def _kinds(counts: dict[str, int]) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{kind.replace('_', ' ')} ×{n:,}" for kind, n in ranked) if ranked else "none"


def _rate(items: int, wall: float) -> str:
    return f"{items / wall:,.1f} items/s" if items else "no new items"


def _seconds(value: float) -> str:
    if value >= 100:
        return _duration(value)
    if round(value * 1000) >= 1000:  # 0.9996 s reads "1 s", not "1000 ms"
        return f"{value:.2f} s".replace(".00 s", " s")
    return f"{value * 1000:.0f} ms"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(name: str) -> str:
    return name if len(name) <= 60 else "…" + name[-59:]


def _position(history: Sequence[RunRecord], run: RunRecord) -> int:
    return next((n for n, r in enumerate(history, 1) if r.id == run.id), len(history))


def _known_runs(store: RunStore) -> str:
    ids = store.views.run_ids()
    return f" (it holds runs {ids[0]}–{ids[1]})" if ids is not None else " (it holds no runs)"


def _known_jobs(store: RunStore) -> str:
    names = store.views.recent_job_names(_KNOWN_JOBS)
    return f"; its jobs: {', '.join(names)}" if names else " (it holds no jobs)"
