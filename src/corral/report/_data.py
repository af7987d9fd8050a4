"""A run's report, read from the run store: the numbers, the timeline plots, errors and items.

Everything comes from tables a run writes anyway (``runs``, ``items``, ``samples``), so a report can
be made at any time, of a finished run or of one still going, by another process.

    runs     the run's counters: requests, retries, tokens, cost, failures by kind
    samples  its timeline: cumulative counters and in-flight requests, with the limits in effect
    items    every item of the job: latency, finish time, the record written to the output
"""

from __future__ import annotations

import bisect
import math
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from corral.errors import StoreError
from corral.report._model import ErrorGroup, Fact, ItemRow, Plot, RunLine, RunReport, Series
from corral.store import ItemTiming, RunRecord, RunStore, Sample, job_keys

__all__ = ["DEFAULT_MAX_ITEMS", "find_run", "load_report"]

DEFAULT_MAX_ITEMS = 20_000
#: time plots are drawn from about this many buckets (a bucket is a "nice" number of seconds)
_BUCKETS = 90
_NICE_SECONDS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)
_HISTOGRAM_BINS = 30
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


def load_report(store: RunStore, run_id: int, *, max_items: int = DEFAULT_MAX_ITEMS) -> RunReport:
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
    return RunReport(
        run=run.id,
        title=f"corral report: {_short(job.name)}",
        subtitle=(
            f"run {run.id} ({_position(history, run)} of {len(history)} of this job) · {run.status} · "
            f"started {_when(run.started)}"
        ),
        facts=_facts(run, samples, (total, errors), latencies, history),
        settings=_settings(job.name, job.settings, store),
        runs=tuple(_run_line(r) for r in history),
        plots=_plots(run, samples, finished, latencies),
        errors=_error_groups(store, run.job, total),
        items=items,
        items_total=total,
        items_note=note,
        generated=_when(time.time()),
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
    facts.append(_rate_fact("Requests", run.requests, wall, _last(s.rpm for s in samples), "req"))
    tokens = run.prompt_tokens + run.completion_tokens
    facts.append(_rate_fact("Tokens", tokens, wall, _last(s.tpm for s in samples), "tok"))
    # 429s and overloads (503/529) alike pause the run: the samples count both as rate-limited.
    limited = samples[-1].rate_limited if samples else run.faults.get("rate_limited", 0)
    facts.append(
        Fact(
            "Retries",
            f"{run.retries:,}",
            f"{limited:,} after a 429/overload · failures: {_kinds(run.faults)}",
            "plain" if not run.retries else "warn",
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
    times = [s.time - run.started for s in samples]
    no_timeline = "" if samples else "This run recorded no timeline (it was made by an older corral)."
    return (
        _completions(run, finished, edges),
        _throughput(samples, times, edges, width, no_timeline),
        _in_flight(samples, times, span, no_timeline),
        _latency(latencies),
        _retries(samples, times, edges, width, no_timeline),
    )


def _completions(run: RunRecord, finished: Sequence[ItemTiming], edges: Sequence[float]) -> Plot:
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


def _throughput(
    samples: Sequence[Sample], times: Sequence[float], edges: Sequence[float], width: float, empty: str
) -> Plot:
    sent = _per_second([s.requests for s in samples], times, edges, width)
    series = [Series("requests/s", sent, "bars", "neutral")]
    limits = [(t, s.rpm / 60.0) for t, s in zip(times, samples, strict=True) if s.rpm]
    if limits:
        series.append(Series("limit", tuple(_steps(limits, edges[-1])), "limit", "limit"))
    note = empty or (
        "Requests sent per second, against the provider's requests-per-minute limit ÷ 60."
        if limits
        else "Requests sent per second (no requests-per-minute limit was given or learned)."
    )
    return Plot("throughput", "Requests per second against the limit", "time since start", "requests/s",
                tuple(series), note, bar_width=width)  # fmt: skip


def _in_flight(samples: Sequence[Sample], times: Sequence[float], span: float, empty: str) -> Plot:
    series = [Series("in flight", tuple((t, float(s.in_flight)) for t, s in zip(times, samples, strict=True)),
                     "step", "neutral")]  # fmt: skip
    bound = _last(s.concurrency for s in samples)
    if bound:
        series.append(
            Series("concurrency limit", ((0.0, float(bound)), (span, float(bound))), "limit", "limit")
        )
    peak = max((s.in_flight for s in samples), default=0)
    note = empty or f"Requests waiting for an answer, sampled; peak {peak:,}."
    return Plot("in_flight", "Requests in flight", "time since start", "requests", tuple(series), note)


def _latency(latencies: Sequence[float]) -> Plot:
    if not latencies:
        return Plot("latency", "Latency per item", "seconds", "items", (Series("items", ()),),
                    "No item was extracted by this run.")  # fmt: skip
    top = _quantile(latencies, 0.995)
    width = _nice(max(top, 1e-3) / _HISTOGRAM_BINS)
    bins = max(1, math.ceil(top / width))
    counts = [0] * bins
    for value in latencies:
        counts[min(int(value / width), bins - 1)] += 1
    points = tuple((k * width, float(n)) for k, n in enumerate(counts))
    clipped = sum(1 for value in latencies if value >= bins * width)
    note = (
        f"From the first request of an item to its result, re-asks and retries included; "
        f"median {_seconds(_quantile(latencies, 0.5))}, p95 {_seconds(_quantile(latencies, 0.95))}"
    )
    if clipped:
        note += f"; the {clipped:,} slowest (up to {_seconds(latencies[-1])}) are in the last bar"
    return Plot("latency", "Latency per item", "latency", "items", (Series("items", points, "bars", "ok"),),
                note + ".", bar_width=width)  # fmt: skip


def _retries(
    samples: Sequence[Sample], times: Sequence[float], edges: Sequence[float], width: float, empty: str
) -> Plot:
    retries = _per_second([s.retries for s in samples], times, edges, width, per_bucket=True)
    limited = _per_second([s.rate_limited for s in samples], times, edges, width, per_bucket=True)
    total = samples[-1].retries if samples else 0
    note = empty or (
        f"Retried requests per {_seconds(width)}: 429s and overloads (which pause the whole run) in front "
        f"of all retries; {total:,} in all."
    )
    return Plot("retries", "Retries and 429s", "time since start", f"per {_seconds(width)}",
                (Series("retries", retries, "bars", "retry"), Series("429s", limited, "bars", "error")),
                note, bar_width=width)  # fmt: skip


def _per_second(
    values: Sequence[int], times: Sequence[float], edges: Sequence[float], width: float,
    *, per_bucket: bool = False,
) -> tuple[tuple[float, float], ...]:  # fmt: skip
    """A cumulative counter, sampled at ``times``, as a rate per bucket (or a count per bucket).

    Each sample's increase goes to the bucket it was seen in, whole: interpolating between samples
    would split counts into fractions, and two counters (retries, and the 429s among them) would no
    longer keep their order within a bucket."""
    if not values:
        return ()
    counts = [0.0] * (len(edges) - 1)
    previous = 0
    for t, value in zip(times, values, strict=True):
        bucket = min(max(0, int(t / width)), len(counts) - 1)
        counts[bucket] += value - previous
        previous = value
    scale = 1.0 if per_bucket else 1.0 / width
    return tuple((edges[k], n * scale) for k, n in enumerate(counts))


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


# --- formatting ---------------------------------------------------------------------------------


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key that puts item 9 before item 10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


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
    if value >= 1:
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
