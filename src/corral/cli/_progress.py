"""Progress of a run on stderr: a live bar in a terminal, a periodic status line in logs, a summary.

The run counts into one :class:`~corral.engine._stats.RunStats` as things happen; the display only
*reads* it, from one asyncio task, a few times a second at most, so its cost does not grow with the
item rate. Which display to use is :func:`choose_display`'s call: a rich bar when stderr is a
terminal, one plain line every ``interval`` seconds otherwise (CI logs and redirected output keep a
readable history instead of a screenful of cursor moves), nothing when quiet.

Money is written by one rule everywhere: ``$0`` when exactly nothing was spent (a free or cached-only
run), four decimals below one dollar (``$0.0123``: small runs cost fractions of a cent),
``<$0.0001`` for a positive amount too small for that, and two decimals from one dollar up
(``$1,234.57``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Literal, TextIO, TypedDict

from corral.engine._stats import RunStats

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from corral.documents import DocumentCounts

__all__ = [
    "DisplayMode",
    "choose_display",
    "documents_line",
    "format_duration",
    "show_progress",
    "status_line",
    "summary_line",
]

DisplayMode = Literal["bar", "lines", "none"]

#: seconds between two renders of the bar: smooth to the eye, negligible next to the work
_BAR_PERIOD = 0.25
_SEP = " · "


def choose_display(*, quiet: bool, stream: TextIO) -> DisplayMode:
    """The bar for a real terminal, lines for logs and pipes, nothing when asked to be quiet.

    ``NO_COLOR`` is not consulted here: it asks for no colour, not for no bar (rich honours it).
    """
    if quiet:
        return "none"
    try:
        tty = stream.isatty()
    except ValueError:  # a closed stream: nobody is watching
        tty = False
    return "bar" if tty and os.environ.get("TERM") != "dumb" else "lines"


def format_duration(seconds: float) -> str:
    """``45s``, ``3m07s``, ``2h05m``: whole units, as precise as a human reading a log needs."""
    if not math.isfinite(seconds) or seconds < 0:
        seconds = 0.0
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def status_line(stats: RunStats) -> str:
    """One line of live status; zero counters are left out, the in-flight gauge never is."""
    c = stats
    parts = [f"{c.done:,} done" if c.total is None else f"{c.done:,}/{c.total:,} ({_percent(c)}%)"]
    rate = c.rate()
    if rate > 0:
        parts.append(f"{_per_second(rate)} items/s")
    eta = c.eta()
    if eta:  # neither unknown (None) nor over (0)
        parts.append(f"ETA {format_duration(eta)}")
    # Kept at 0 too: "0 in flight" with a still count is how a stall (all items backing off) shows.
    parts.append(f"{c.in_flight:,} in flight")
    if c.retries:
        parts.append(_count(c.retries, "retry", "retries"))
    if c.errors:
        parts.append(_count(c.errors, "error"))
    if c.tokens:
        parts.append(f"{c.tokens:,} tokens")
    spent = c.spent
    if spent:  # None (price unknown) and 0 (nothing spent yet) both say nothing worth a column
        parts.append(_dollars(spent))
    return "corral: " + _SEP.join(parts)


def _sources(c: RunStats) -> list[str]:
    """Where the answers came from besides requests of this run (and what still waits)."""
    parts = []
    if c.deferred:
        parts.append(f"{c.deferred:,} waiting in batches")
    if c.reused:
        parts.append(f"{c.reused:,} from an earlier run")
    if c.batched:
        parts.append(_count(c.batched, "answer") + " from batches")
    if c.batch_failed:
        parts.append(f"{c.batch_failed:,} failed in batches")
    if c.cache_answers:
        parts.append(f"{c.cache_answers:,} cached")
    if c.duplicates:
        parts.append(f"{c.duplicates:,} {'duplicate' if c.duplicates == 1 else 'duplicates'} sent once")
    return parts


def summary_line(stats: RunStats) -> str:
    """The end-of-run line: what became of the items, what it took, what it cost.

    An interrupted run reads ``8,000/10,000 items``. The job's cost is shown only when tracked and
    different from this run's (on a first run they are the same number).
    """
    c = stats
    head = f"{c.done:,}/{c.total:,}" if c.total is not None and c.done < c.total else f"{c.done:,}"
    outcome = f"{head} {'item' if head == '1' else 'items'}: {c.ok:,} ok"
    if c.errors:
        outcome += ", " + _count(c.errors, "error")
        if c.kinds:
            ranked = sorted(c.kinds.items(), key=lambda kv: (-kv[1], kv[0]))
            outcome += " (" + ", ".join(f"{n:,} {kind}" for kind, n in ranked) + ")"
    parts = [outcome, *_sources(c)]
    traffic = []
    if c.requests:
        traffic.append(_count(c.requests, "request"))
    if c.retries:
        limited = f" ({c.rate_limited:,} rate-limited)" if c.rate_limited else ""
        traffic.append(_count(c.retries, "retry", "retries") + limited)
    if traffic:
        parts.append(", ".join(traffic))
    if c.tokens:
        parts.append(f"{c.tokens:,} tokens")
    cost, job_cost = c.spent, c.job_spent  # the job's is known only when this run's is
    if cost is not None:
        spent = _dollars(cost)
        if job_cost is not None and job_cost != cost:
            spent += f" (job {_dollars(job_cost)})"
        parts.append(spent)
    elapsed = c.elapsed()
    # Short runs (tests, benchmarks) deserve tenths of a second; long ones read better as 3m07s.
    took = f"{elapsed:.1f} s" if elapsed < 60 else format_duration(elapsed)
    rate = c.rate()
    if rate > 0:
        took += f" ({_per_second(rate)} items/s)"
    parts.append(took)
    return "corral: " + _SEP.join(parts)


@contextlib.asynccontextmanager
async def show_progress(
    stats: RunStats,
    *,
    mode: DisplayMode,
    stream: TextIO,
    interval: float = 10.0,
    refresh: Callable[[], None] | None = None,
) -> AsyncIterator[None]:
    """Display ``stats`` (live: read at each render) on ``stream`` while the body runs; ``refresh()``,
    if given, is called before each render.

    The display is one asyncio task (no thread: the bar is drawn with ``auto_refresh=False``). It is
    stopped however the body exits, and the body's own exception, cancellation included, always wins
    over anything the display could raise. A display that failed during a run that succeeded
    re-raises its error at exit, so a bug in it is seen rather than silently freezing the status.
    """
    if mode == "none":
        yield
        return
    pull = refresh or (lambda: None)
    if mode == "lines":
        period = interval  # the first line comes after one interval: a short run prints only its summary

        def draw() -> None:
            pull()
            stream.write(status_line(stats) + "\n")
            stream.flush()

        def finish() -> None:
            pass

    else:
        period = _BAR_PERIOD
        progress, bar = _start_bar(stats, stream)

        def draw() -> None:
            pull()
            _update_bar(progress, bar, stats)
            progress.refresh()

        def finish() -> None:
            try:  # the last state, left on screen (not transient): the bar shows how the run ended
                pull()
                _update_bar(progress, bar, stats)
            finally:
                progress.stop()  # renders once more and gives sys.stdout/sys.stderr back

    task = asyncio.create_task(_every(period, draw), name="corral-progress")
    try:
        yield
    except BaseException:
        await _close(task, finish)  # a display failure now would only hide the body's exception
        raise
    failure = await _close(task, finish)
    if failure is not None:
        raise failure


async def _every(period: float, draw: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(period)
        draw()


async def _close(task: asyncio.Task[None], finish: Callable[[], None]) -> BaseException | None:
    """Stop the display task, run ``finish``, and return the display's error rather than raise it."""
    task.cancel()  # draw() never awaits, so the task sits in its sleep: it will not draw again
    failure: BaseException | None = None
    try:
        finish()
    except Exception as exc:  # returned: only the caller knows whether a body's exception outranks it
        failure = exc
    await asyncio.wait({task})  # unlike `await task`, never raises the task's outcome
    if not task.cancelled():
        failure = task.exception() or failure  # the first failure: it likely caused the second
    return failure


def _start_bar(stats: RunStats, stream: TextIO) -> tuple[Progress, TaskID]:
    # Imported here: rich costs tens of milliseconds to import, and only a terminal needs it.
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    progress = Progress(
        TextColumn("[bold]corral"),
        BarColumn(),
        # markup=False: these texts are data ("$", "["), never markup.
        TextColumn("{task.fields[count]}", markup=False),
        TextColumn("{task.fields[percent]}", markup=False),
        TextColumn("{task.fields[rate]}", markup=False),
        TextColumn("{task.fields[eta]}", markup=False),
        TextColumn("{task.fields[stats]}", markup=False),
        # The caller chose the bar for this stream; rich must not second-guess it from the stream.
        console=Console(file=stream, force_terminal=True),
        auto_refresh=False,
        transient=False,
        # Records may go to stdout: rich would re-render them through the console (wrapped at the
        # terminal's width, onto stderr). Only stderr's occasional warnings are moved above the bar.
        redirect_stdout=False,
        redirect_stderr=True,
    )
    bar = progress.add_task("corral", total=stats.total, **_bar_fields(stats))
    progress.start()
    return progress, bar


def _update_bar(progress: Progress, bar: TaskID, stats: RunStats) -> None:
    # total stays None (a pulsing bar) until counted; rich ignores total=None in update().
    progress.update(bar, completed=stats.done, total=stats.total, **_bar_fields(stats))


class _BarFields(TypedDict):
    """The bar's text columns, as rich task fields (precomputed: rich formats them with str.format)."""

    count: str
    percent: str
    rate: str
    eta: str
    stats: str


def _bar_fields(c: RunStats) -> _BarFields:
    eta = c.eta()
    stats = [
        f"in flight {c.in_flight:,}",
        f"retries {c.retries:,}",
        f"errors {c.errors:,}",
        f"tokens {c.tokens:,}",
    ]
    spent = c.spent
    if spent is not None:
        stats.append(_dollars(spent))
    rate = c.rate()
    return {
        "count": f"{c.done:,}" if c.total is None else f"{c.done:,}/{c.total:,}",
        "percent": "" if c.total is None else f"{_percent(c)}%",
        "rate": f"{_per_second(rate)} items/s" if rate > 0 else "",
        "eta": f"ETA {format_duration(eta)}" if eta else "",
        "stats": _SEP.join(stats),
    }


def _percent(c: RunStats) -> int:
    # Floored, so 100% means every item has ended, never 99.6% rounded up.
    if not c.total:
        return 100
    return min(c.done * 100 // c.total, 100)


def _per_second(rate: float) -> str:
    # Tenths from 1/s up; hundredths below, where a slow local model would otherwise read "0.0".
    # The cut is where .2f would round up to "1.00".
    return f"{rate:,.1f}" if rate >= 0.995 else f"{rate:.2f}"


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def _dollars(usd: float) -> str:
    if usd == 0:
        return "$0"
    if usd < 0.0001:
        return "<$0.0001"
    return f"${usd:.4f}" if usd < 0.99995 else f"${usd:,.2f}"  # the cut: where .4f reads "1.0000"


def documents_line(counts: DocumentCounts) -> str:
    """``corral: 12 documents (340 chunks): 11 ok, 1 error; 3 values not found in their text``."""
    parts = [f"{counts.ok:,} ok"]
    if counts.errors:
        parts.append(f"{counts.errors:,} error{'s' if counts.errors != 1 else ''}")
    if counts.pending:
        parts.append(f"{counts.pending:,} waiting for chunks")
    total = counts.documents + counts.pending
    line = f"corral: {total:,} documents ({counts.chunks:,} chunks): {', '.join(parts)}"
    if counts.ungrounded:
        line += f"; {counts.ungrounded:,} values not found in their text (null in 'grounding')"
    if counts.review:
        line += f"; {counts.review:,} records to review (their 'review' list)"
    return line
