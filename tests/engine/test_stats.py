"""The run's one counter object: what a new pass starts over, what the money figures mean, and the
frozen snapshot the store and Ray's driver take."""

from __future__ import annotations

import dataclasses

import pytest

from corral.engine._stats import RunStats
from corral.types import ErrorInfo, Outcome, Usage


def test_items_are_counted_as_they_end_and_reused_ones_bring_no_tokens() -> None:
    stats = RunStats()
    stats.ended(Outcome("1", "a", value=1, usage=Usage(10, 5)))
    stats.ended(Outcome("2", "b", error=ErrorInfo("invalid_output", "no"), usage=Usage(20, 5)))
    stats.ended(Outcome("3", "c", value=3, usage=Usage(7, 7), reused=True))
    assert (stats.done, stats.ok, stats.errors, stats.reused) == (3, 2, 1, 1)
    assert stats.kinds == {"invalid_output": 1}
    assert (stats.prompt_tokens, stats.completion_tokens, stats.tokens) == (30, 10, 40)


def test_a_later_pass_counts_its_items_afresh_while_requests_cost_and_clock_go_on() -> None:
    stats = RunStats(total=10, requests=5, cached=2, cost=0.5, started=123.0)
    stats.start_pass()
    stats.done, stats.ok, stats.deferred, stats.prompt_tokens = 8, 8, 2, 100
    stats.kinds["x"] = 1
    assert stats.cache_answers == 2
    stats.cached += 3  # the first pass's hits, then answers a batch brought, replayed from the cache
    stats.start_pass()
    stats.cached += 4
    assert (stats.done, stats.ok, stats.deferred, stats.tokens, stats.kinds) == (0, 0, 0, 0, {})
    assert (stats.total, stats.requests, stats.cost, stats.started, stats.passes) == (10, 5, 0.5, 123.0, 2)
    assert stats.cached == 9, "the store's run row counts every hit"
    assert stats.cache_answers == 5, "the summary counts the cache's answers: the first pass's hits"


@pytest.mark.parametrize(
    ("priced", "spent_before", "spent", "job_spent"),
    [(True, None, 0.25, None), (True, 1.0, 0.25, 1.25), (False, 1.0, None, None)],
)
def test_what_the_money_figures_say(
    priced: bool, spent_before: float | None, spent: float | None, job_spent: float | None
) -> None:
    stats = RunStats(cost=0.25, priced=priced, spent_before=spent_before)
    assert (stats.spent, stats.job_spent) == (spent, job_spent)


def test_a_snapshot_is_a_frozen_copy() -> None:
    stats = RunStats(done=2, requests=3, faults={"rate_limited": 1})
    snapshot = stats.snapshot()
    stats.done, stats.faults["rate_limited"] = 5, 9
    assert (snapshot.done, snapshot.requests, dict(snapshot.faults)) == (2, 3, {"rate_limited": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.done = 7  # type: ignore[misc]
