"""The report's plots from a run's timeline, numbers only: timelines are written into a real run store
(as a run's job layer writes them) and read back by :func:`corral.report._data.load_report`.

The timelines are the awkward ones real runs leave: samples every tenth of a second, some late, then a
gap of seconds (a Ray run's driver samples when a batch reaches it); counters that go down (a Ray
run's retries read 39, 65, then 0); a run with nothing to show in a plot.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.report._data import load_report
from corral.report._model import Plot, RunReport, Series
from corral.store import RunStore, Sample

#: the limit the paced runs keep: 1,200 requests a minute
RATE = 20.0
#: how far above the limit a bar of a run paced exactly at it may go: one request in a window of 30
TOLERANCE = 1.05


@dataclass(frozen=True)
class Tick:
    """What one sample of the timeline says, ``t`` seconds after the run started."""

    t: float
    requests: int
    retries: int = 0
    rate_limited: int = 0
    in_flight: int = 0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    with RunStore.open(tmp_path / "store" / "corral.db") as opened:
        yield opened


def report_of(
    store: RunStore, ticks: Sequence[Tick], *, rpm: float | None = RATE * 60, ended: bool = True
) -> RunReport:
    """The report of one run whose timeline is ``ticks`` (its row's counters stay at zero)."""
    job = store.open_job("out.jsonl", {"model": "sim-1"})
    run = store.views.run(job.run)
    assert run is not None
    for tick in ticks:
        store.add_sample(job, Sample(
            time=run.started + tick.t, done=0, ok=0, errors=0, requests=tick.requests, retries=tick.retries,
            rate_limited=tick.rate_limited, in_flight=tick.in_flight, tokens=0, cost=0.0, rpm=rpm, tpm=None,
            concurrency=16,
        ))  # fmt: skip
    store.flush()
    if ended:
        store.finish_run(job, "completed")
    return load_report(store, job.run)


def plot(report: RunReport, slug: str) -> Plot:
    return next(p for p in report.plots if p.slug == slug)


def series(found: Plot, label: str) -> Series:
    return next(s for s in found.series if s.label == label)


def area(bars: Series) -> float:
    """A rate's bars times their widths: the requests they stand for."""
    return sum(y * width for (_, y), width in zip(bars.points, bars.widths, strict=True))


def paced(seconds: float, *, seed: int, gaps: Sequence[tuple[float, float]] = ()) -> list[Tick]:
    """A run sending exactly :data:`RATE` requests a second (one every 50 ms, as the pacer lets them
    go), each counted when it ends (0.05 to 3 s later: answers take their time) and in flight until
    then, sampled as the job layer samples: every tenth of a second, a fifth of the ticks late, and
    nothing inside ``gaps``."""
    rng = random.Random(seed)
    sent = [k / RATE for k in range(1, int(seconds * RATE) + 1)]
    ends = sorted(t + rng.uniform(0.05, 3.0) for t in sent)
    ticks, t = [], 0.0
    while t < ends[-1]:
        if not any(start < t < stop for start, stop in gaps):
            answered = bisect.bisect_right(ends, t)
            ticks.append(Tick(t, answered, in_flight=bisect.bisect_right(sent, t) - answered))
        t += 0.1 if rng.random() < 0.8 else 0.1 + rng.uniform(0.05, 0.15)
    ticks.append(Tick(t, len(ends)))
    return ticks


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_run_paced_at_the_limit_shows_no_bar_above_it(store: RunStore, seed: int) -> None:
    # Issue 17: samples a tenth of a second apart, two in one narrow bucket, made spikes of 25-40/s
    # against a 20/s line the requests never crossed.
    ticks = paced(30.0, seed=seed)
    throughput = plot(report_of(store, ticks), "throughput")
    bars = series(throughput, "requests/s")
    limit = {y for _, y in series(throughput, "limit").points}
    assert limit == {RATE}
    assert max(y for _, y in bars.points) <= RATE * TOLERANCE
    assert min(y for _, y in bars.points[1:-1]) >= RATE / TOLERANCE, "nor holes beside the spikes"
    assert area(bars) == pytest.approx(ticks[-1].requests), "every request in one bar, none twice"
    assert all(width >= 1.0 for width in bars.widths), "a rate is taken over a second at least"
    assert f"average over its window of {throughput.bar_width:g} s" in throughput.note


def test_a_gap_in_the_timeline_shows_its_average_not_a_spike(store: RunStore) -> None:
    # A Ray run's driver sampled only when a batch reached it: every request sent in a 3 s gap
    # landed in the one bucket after it, as 130-220/s against a 20/s limit.
    ticks = paced(40.0, seed=4, gaps=[(12.0, 15.0), (25.0, 29.5)])
    throughput = plot(report_of(store, ticks), "throughput")
    bars = series(throughput, "requests/s")
    assert max(y for _, y in bars.points) <= RATE * TOLERANCE
    assert area(bars) == pytest.approx(ticks[-1].requests)
    longest = max(b.t - a.t for a, b in itertools.pairwise(ticks))
    assert 4.5 <= longest < 4.8
    assert f"gaps of up to {longest:.2f} s between its samples: a bar within one shows the average" in (
        throughput.note
    )


def test_a_timeline_sampled_every_few_seconds_draws_fewer_wider_windows(store: RunStore) -> None:
    ticks = [Tick(3.0 * k, int(3.0 * k * RATE)) for k in range(11)]
    throughput = plot(report_of(store, ticks), "throughput")
    bars = series(throughput, "requests/s")
    assert throughput.bar_width == 5.0, "a window holds a sample most of the time"
    assert [round(y, 6) for _, y in bars.points] == [RATE] * 6
    assert area(bars) == pytest.approx(600)


def test_a_counter_that_goes_down_makes_no_negative_bar(store: RunStore) -> None:
    # Issue 17: a Ray run's stored retries went 39 -> 65 -> 0, drawn as a bar of -65.
    ticks = [
        Tick(0.0, 0),
        Tick(3.0, 60, retries=39, rate_limited=5, in_flight=32),
        Tick(6.0, 120, retries=65, rate_limited=5, in_flight=32),
        Tick(9.0, 180, retries=0, rate_limited=0, in_flight=-3),
        Tick(12.0, 140, retries=0, rate_limited=0, in_flight=20),
        Tick(15.0, 300, retries=7, rate_limited=2, in_flight=0),
    ]
    report = report_of(store, ticks)
    for shown in report.plots:
        for one in shown.series:
            assert all(y >= 0 for _, y in one.points), f"{shown.slug}: {one.label}"
    retries = plot(report, "retries")
    assert sum(y for _, y in series(retries, "retries").points) == 65, "the highest count recorded"
    assert sum(y for _, y in series(retries, "429s").points) == 5
    assert (
        "The recorded counts of retries went down at 9.0 s (from 65 to 0) and of retries after a 429 went "
        "down at 9.0 s (from 5 to 0), which a run's count cannot do" in retries.note
    )
    assert "not to be trusted" in retries.note and "65 in all" in retries.note
    throughput = plot(report, "throughput")
    assert area(series(throughput, "requests/s")) == pytest.approx(300)
    assert "count of requests went down at 12.0 s (from 180 to 140)" in throughput.note
    in_flight = plot(report, "in_flight")
    assert [y for _, y in series(in_flight, "in flight").points] == [0, 32, 32, 20, 0]
    assert "1 sample recorded fewer than none in flight, which cannot be: left out." in in_flight.note
    # The run's row says 0 retries (as a Ray run's did) while its timeline counted 2 after a 429.
    retries_fact = next(fact for fact in report.facts if fact.label == "Retries")
    assert retries_fact.value == "0" and retries_fact.tone == "warn"
    assert retries_fact.detail.startswith("yet its timeline counted 2 after a 429/overload: the run's counts")


def test_what_was_in_flight_but_never_became_a_request_is_not_counted_as_sent(store: RunStore) -> None:
    # Sent = ended + in flight; but a batch run's line is in flight while its batch uploads and then
    # is no request of the run: the sum goes down, and is no sign of a broken counter.
    ticks = [Tick(k, 20 * k) for k in range(4)]
    ticks += [Tick(4, 80, in_flight=30), Tick(5, 81), *(Tick(k, 81 + 20 * (k - 5)) for k in range(6, 10))]
    throughput = plot(report_of(store, ticks, rpm=None), "throughput")
    bars = series(throughput, "requests/s")
    assert area(bars) == pytest.approx(161)
    assert max(y for _, y in bars.points) <= 20.5, "the 30 were not sent at once (one of them may have been)"
    assert "went down" not in throughput.note


def test_a_plot_with_nothing_in_it_says_so_instead_of_drawing_empty_axes(store: RunStore) -> None:
    # Issue 17: a run without retries showed an empty chart with axes 0 to 1 and no word of why.
    ticks = [Tick(t / 10, int(t / 10 * RATE), in_flight=4) for t in range(51)]
    report = report_of(store, ticks)
    retries = plot(report, "retries")
    assert retries.empty and retries.series == ()
    assert retries.note == "None in this run: no request was retried, and none met a 429 or an overload."
    completions = plot(report, "completions")
    assert completions.empty and completions.note == "None in this run: it finished no item."
    assert not plot(report, "throughput").empty and not plot(report, "in_flight").empty


def test_a_run_that_sent_nothing_says_so_in_each_timeline_plot(store: RunStore) -> None:
    report = report_of(store, [Tick(t / 10, 0) for t in range(31)], rpm=None)
    for slug in ("throughput", "in_flight", "retries", "completions"):
        assert plot(report, slug).empty, slug
    assert plot(report, "throughput").note == "None in this run: it sent no request."
    assert plot(report, "in_flight").note == "None in this run: it sent no request."


def test_a_run_still_going_has_none_so_far(store: RunStore) -> None:
    report = report_of(store, [Tick(t / 10, 0) for t in range(11)], ended=False)
    assert plot(report, "retries").note.startswith("None in this run so far: no request was retried")
    assert plot(report, "completions").note == "None in this run so far: it finished no item."


def test_the_latency_note_says_it_includes_waiting_for_the_limits() -> None:
    # Issue 17: the note said "from the first request of an item", but the engine starts the clock
    # before the item's first request waits for the rate limit and a free slot (engine._extract).
    from corral.report._data import _latency

    note = _latency([0.2, 0.8, 1.0, 1.1]).note
    assert note.startswith("From when the run started on the item to its result: waiting for its turn")
    assert "under the rate and concurrency limits, every request, the backoff before each retry" in note
    assert "the waiting is not recorded apart from the requests" in note
    assert "first request" not in note
