"""Confidence intervals by the bootstrap: the items resampled with replacement, the scores recomputed.

The unit resampled is the item (its slots are not independent of each other: one bad text spoils
many). Each item's TP/FP/FN of every field are packed into one Python integer, a fixed-width bit
field per count, wide enough that no sum can carry into the next; a resample's totals are then one
C-level ``sum`` of N integers, read back with shifts. 1,000 resamples of 500 items × 10 fields take
under a tenth of a second, in pure Python. Resample r draws ``random.Random(seed).choices`` of N
items (the r-th call on one generator), so a seed fixes every interval.

An interval is the 2.5th and 97.5th percentiles (linearly interpolated) of the resampled values; a
resample in which a score is undefined (nothing predicted, nothing to find) does not count for it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

__all__ = ["METRICS", "Interval", "intervals", "percentile", "ratios"]

METRICS = ("precision", "recall", "f1")
Interval = tuple[float, float]
Counts = tuple[int, int, int]


def ratios(tp: int, fp: int, fn: int) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and F1; None where undefined (0/0)."""
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return precision, recall, f1


def intervals(
    items: Sequence[Mapping[str, Counts]],
    fields: Sequence[str],
    *,
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> dict[str | None, dict[str, Interval | None]]:
    """For each field (and None: all fields, micro-averaged) the bootstrap interval of each metric,
    from ``items`` (each item's counts by field)."""
    n = len(items)
    targets: list[str | None] = [*fields, None]
    if n == 0 or resamples <= 0:
        return {target: dict.fromkeys(METRICS) for target in targets}
    packed, width = _pack(items, fields)
    mask = (1 << width) - 1
    slots = 3 * len(fields)
    samples: dict[str | None, list[list[float]]] = {t: [[], [], []] for t in targets}
    rng = random.Random(seed)
    for _ in range(resamples):
        total = sum(rng.choices(packed, k=n))
        counts = [(total >> (k * width)) & mask for k in range(slots)]
        all_tp = all_fp = all_fn = 0
        for index, field in enumerate(fields):
            tp, fp, fn = counts[3 * index : 3 * index + 3]
            all_tp, all_fp, all_fn = all_tp + tp, all_fp + fp, all_fn + fn
            _add(samples[field], tp, fp, fn)
        _add(samples[None], all_tp, all_fp, all_fn)
    low, high = (1 - level) / 2, 1 - (1 - level) / 2
    return {
        target: {
            metric: (percentile(values, low), percentile(values, high)) if values else None
            for metric, values in zip(METRICS, samples[target], strict=True)
        }
        for target in targets
    }


def _pack(items: Sequence[Mapping[str, Counts]], fields: Sequence[str]) -> tuple[list[int], int]:
    largest = max((c for item in items for counts in item.values() for c in counts), default=0)
    width = max(1, (largest * len(items)).bit_length())  # a sum of n items never carries over
    packed = []
    for item in items:
        value = 0
        for index, field in enumerate(fields):
            counts = item.get(field)
            if counts is not None:
                for k, count in enumerate(counts):
                    value |= count << ((3 * index + k) * width)
        packed.append(value)
    return packed, width


def _add(lists: list[list[float]], tp: int, fp: int, fn: int) -> None:
    for values, value in zip(lists, ratios(tp, fp, fn), strict=True):
        if value is not None:
            values.append(value)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, linearly interpolated between order statistics (as
    numpy's default and ``statistics.quantiles(method="inclusive")``). Sorts ``values`` in place."""
    values.sort()
    at = q * (len(values) - 1)
    below = int(at)
    above = min(below + 1, len(values) - 1)
    return values[below] + (values[above] - values[below]) * (at - below)
