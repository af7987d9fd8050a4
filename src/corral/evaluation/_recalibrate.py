"""Recalibration: confidences mapped to how often they are right, fitted on labelled data.

The fit is isotonic regression (pool-adjacent-violators): sorted by confidence, neighbouring values
whose accuracy goes down are pooled until it only rises; each pool becomes a point (its mean
confidence, its accuracy) of a monotone piecewise-linear map (:class:`~corral.engine._confidence.
Recalibration`). It keeps the order of the confidences (what was surer stays surer) and only moves
them to the accuracy measured; it needs labelled values of the kind it will be applied to (the same
model, prompt and sort of texts), and should be measured on values it was not fitted on.
"""

from __future__ import annotations

from collections.abc import Iterable

from corral.engine._confidence import Recalibration

__all__ = ["fit_recalibration"]

#: a pool needs this many values before it stands as a point (fewer: an accuracy of 0 or 1 by chance)
_MIN_POOL = 5


def fit_recalibration(pairs: Iterable[tuple[float, bool, str]]) -> Recalibration:
    """A map per method from ``(confidence, right, method)`` pairs (an evaluation's
    ``confidence_pairs``)."""
    by_method: dict[str, list[tuple[float, bool]]] = {}
    for confidence, right, method in pairs:
        by_method.setdefault(method, []).append((confidence, right))
    return Recalibration({method: _isotonic(values) for method, values in by_method.items() if values})


def _isotonic(values: list[tuple[float, bool]]) -> tuple[tuple[float, float], ...]:
    # Each pool: [sum of confidences, number right, count]
    # Equal confidences are one pool from the start: their order among themselves means nothing.
    grouped: dict[float, list[float]] = {}
    for confidence, right in values:
        pool = grouped.setdefault(confidence, [0.0, 0.0, 0.0])
        pool[0] += confidence
        pool[1] += right
        pool[2] += 1
    pools: list[list[float]] = []
    for confidence in sorted(grouped):
        pools.append(grouped[confidence])
        while len(pools) > 1 and (
            pools[-2][1] / pools[-2][2] >= pools[-1][1] / pools[-1][2] or pools[-2][2] < _MIN_POOL
        ):
            last = pools.pop()
            for index in range(3):
                pools[-1][index] += last[index]
    if len(pools) > 1 and pools[-1][2] < _MIN_POOL:  # a small last pool joins the one before it
        last = pools.pop()
        for index in range(3):
            pools[-1][index] += last[index]
    points = [(round(total / count, 4), round(right / count, 4)) for total, right, count in pools]
    # Pooling keeps the accuracies rising; equal ones may remain: keep them non-decreasing.
    rising: list[tuple[float, float]] = []
    for x, y in points:
        rising.append((x, max(y, rising[-1][1]) if rising else y))
    return tuple(rising)
