"""Bootstrap intervals: recomputed here the slow, obvious way from the same draws; deterministic for
a seed; around the point estimate; fast."""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, create_model

from corral.evaluation import evaluate
from corral.evaluation._bootstrap import intervals, percentile
from tests.evaluation.conftest import Write, gold, out, ratios

Counts = dict[str, tuple[int, int, int]]


def random_items(rng: random.Random, n: int, fields: list[str]) -> list[Counts]:
    return [
        {f: (rng.randint(0, 3), rng.randint(0, 2), rng.randint(0, 2)) for f in fields if rng.random() < 0.8}
        for _ in range(n)
    ]


Found = dict[str | None, dict[str, tuple[float, float]]]


def slow_intervals(items: list[Counts], fields: list[str], resamples: int, seed: int) -> Found:
    """Resample the item indices (``random.Random(seed).choices`` of n, as documented), add each
    field's counts item by item, and take the 2.5th and 97.5th percentiles with statistics."""
    rng = random.Random(seed)
    values: dict[str | None, list[list[float]]] = {f: [[], [], []] for f in [*fields, None]}
    for _ in range(resamples):
        drawn = rng.choices(range(len(items)), k=len(items))
        overall = [0, 0, 0]
        for f in fields:
            sums = [sum(items[i].get(f, (0, 0, 0))[k] for i in drawn) for k in range(3)]
            overall = [a + b for a, b in zip(overall, sums, strict=True)]
            for index, value in enumerate(ratios(*sums)):
                if value is not None:
                    values[f][index].append(value)
        for index, value in enumerate(ratios(*overall)):
            if value is not None:
                values[None][index].append(value)
    result: Found = {}
    for target, lists in values.items():
        result[target] = {}
        for metric, data in zip(("precision", "recall", "f1"), lists, strict=True):
            cuts = statistics.quantiles(data, n=40, method="inclusive")  # 2.5%, 5%, ... 97.5%
            result[target][metric] = (cuts[0], cuts[-1])
    return result


def test_intervals_are_the_percentiles_of_the_resampled_scores() -> None:
    rng = random.Random(3)
    fields = ["a", "b", "c"]
    items = random_items(rng, 40, fields)
    fast = intervals(items, fields, resamples=200, seed=11)
    slow = slow_intervals(items, fields, resamples=200, seed=11)
    for target in [*fields, None]:
        for metric in ("precision", "recall", "f1"):
            got, want = fast[target][metric], slow[target][metric]
            assert got is not None
            assert got == pytest.approx(want), (target, metric)


def test_percentile_interpolates_between_order_statistics() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.025) == pytest.approx(1.1)
    assert percentile([7.0], 0.975) == 7.0


class Pair(BaseModel):
    a: str | None = None
    b: str | None = None


def noisy_files(write: Write, n: int) -> tuple[Path, Path]:
    rng = random.Random(5)
    outputs, golds = [], []
    for i in range(n):
        truth = {"a": rng.choice("xyz"), "b": rng.choice("xyz")}
        guess = {k: v if rng.random() < 0.7 else rng.choice("xyz") for k, v in truth.items()}
        golds.append(gold(str(i), truth))
        outputs.append(out(str(i), guess))
    return write("out.jsonl", outputs), write("gold.jsonl", golds)


def test_the_interval_holds_the_estimate_and_a_seed_fixes_it(write: Write) -> None:
    output, golds = noisy_files(write, 120)
    first = evaluate(output, golds, Pair, seed=1)
    again = evaluate(output, golds, Pair, seed=1)
    other = evaluate(output, golds, Pair, seed=2)
    for score in [first.overall, *first.fields.values()]:
        for metric in ("precision", "recall", "f1"):
            low, high = score.ci[metric] or (2.0, -1.0)
            value = getattr(score, metric)
            assert low <= value <= high, (metric, low, value, high)
            assert high - low < 0.4  # 120 items: an interval, not everything
    assert first.overall.ci == again.overall.ci
    assert {f: s.ci for f, s in first.fields.items()} == {f: s.ci for f, s in again.fields.items()}
    assert first.overall.ci != other.overall.ci


def test_without_resamples_there_are_no_intervals(write: Write) -> None:
    output, golds = noisy_files(write, 5)
    ev = evaluate(output, golds, Pair, bootstrap=0)
    assert ev.overall.ci == {"precision": None, "recall": None, "f1": None}
    assert ev.to_json()["overall"]["ci"] == {"precision": None, "recall": None, "f1": None}


def test_a_score_undefined_in_every_resample_has_no_interval() -> None:
    # Field "a" never has an output value: its precision is 0/0 in every resample.
    items: list[Counts] = [{"a": (0, 0, 1)}, {"a": (0, 0, 2)}]
    found = intervals(items, ["a"], resamples=50, seed=0)
    assert found["a"]["precision"] is None
    assert found["a"]["recall"] == (0.0, 0.0)


def test_a_thousand_resamples_of_500_items_by_10_fields_take_well_under_a_second() -> None:
    rng = random.Random(0)
    fields = [f"f{k}" for k in range(10)]
    items = random_items(rng, 500, fields)
    start = time.process_time()
    intervals(items, fields, resamples=1000, seed=0)
    assert time.process_time() - start < 1.0


def test_evaluate_500_items_by_10_fields_in_a_few_seconds(write: Write) -> None:
    model = create_model("Ten", **{f"f{k}": (str | None, None) for k in range(10)})  # type: ignore[call-overload]
    rng = random.Random(1)
    golds, outputs = [], []
    for i in range(500):
        truth = {f"f{k}": rng.choice(["a", "b", None]) for k in range(10)}
        golds.append(gold(str(i), truth))
        outputs.append(out(str(i), {f: v if rng.random() < 0.8 else "c" for f, v in truth.items()}))
    output, golden = write("out.jsonl", outputs), write("gold.jsonl", golds)
    start = time.process_time()
    ev = evaluate(output, golden, model)
    assert time.process_time() - start < 3.0
    assert len(ev.fields) == 10 and all(s.ci["f1"] is not None for s in ev.fields.values())
