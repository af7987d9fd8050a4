"""Calibration: whether values said to be 90% sure are right nine times in ten.

Each output leaf that was scored and carries a confidence (``record["confidence"][path]``, by its
path in the output, as corral writes it: ``{"value": p, "method": "logprobs"}``; a bare number is
taken too) is a pair (p, right), right meaning the leaf was a TP. Those pairs fall into equal-width
bins of confidence ([0, 0.1), [0.1, 0.2), ... [0.9, 1.0]); the expected calibration error is the
mean gap between a bin's mean confidence and its accuracy, weighted by how many values it holds:

    ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|

A confidence that is not a number in [0, 1] is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Bin", "Calibration", "calibrate", "confidences"]


@dataclass(frozen=True, slots=True)
class Bin:
    """One bin of the reliability diagram: confidences in [lo, hi) ([lo, hi] for the last)."""

    lo: float
    hi: float
    count: int
    #: the mean confidence of the values in it (None: empty)
    confidence: float | None
    #: the share of them that were right (None: empty)
    accuracy: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "lo": self.lo,
            "hi": self.hi,
            "count": self.count,
            "confidence": self.confidence,
            "accuracy": self.accuracy,
        }


@dataclass(frozen=True, slots=True)
class Calibration:
    """How well the output's confidences predict which values are right."""

    #: expected calibration error (0: perfectly calibrated)
    ece: float
    #: values with a confidence that were scored
    count: int
    #: the share of them that were right
    accuracy: float
    #: their mean confidence
    confidence: float
    bins: tuple[Bin, ...]
    threshold: float
    #: values with a confidence ≥ threshold
    above: int
    #: the share of those that were right (None: there are none)
    above_accuracy: float | None
    #: values by the method that gave their confidence (``logprobs``, ``agreement``)
    methods: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "ece": self.ece,
            "count": self.count,
            "accuracy": self.accuracy,
            "confidence": self.confidence,
            "threshold": self.threshold,
            "above": {"count": self.above, "accuracy": self.above_accuracy},
            "methods": dict(self.methods),
            "bins": [b.to_json() for b in self.bins],
        }


def confidences(
    confidence: Mapping[str, Any], verdicts: Mapping[str, bool]
) -> Iterable[tuple[float, bool, str]]:
    """``(p, right, method)`` for each scored leaf (``verdicts``, by path) that has a confidence."""
    for path, right in verdicts.items():
        entry = confidence.get(path)
        value, method = (
            (entry.get("value"), entry.get("method")) if isinstance(entry, dict) else (entry, None)
        )
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
            yield float(value), right, str(method or "unknown")


def calibrate(
    pairs: Iterable[tuple[float, bool, str]], *, bins: int = 10, threshold: float = 0.8
) -> Calibration | None:
    """The calibration of ``(confidence, right, method)`` pairs; None when there are none."""
    count = [0] * bins
    sure = [0.0] * bins
    right = [0] * bins
    methods: dict[str, int] = {}
    above = above_right = 0
    for p, ok, method in pairs:
        index = min(math.floor(p * bins), bins - 1)
        count[index] += 1
        sure[index] += p
        right[index] += ok
        methods[method] = methods.get(method, 0) + 1
        if p >= threshold:
            above += 1
            above_right += ok
    total = sum(count)
    if total == 0:
        return None
    table = tuple(
        Bin(
            lo=b / bins,
            hi=(b + 1) / bins,
            count=count[b],
            confidence=sure[b] / count[b] if count[b] else None,
            accuracy=right[b] / count[b] if count[b] else None,
        )
        for b in range(bins)
    )
    ece = sum(
        count[b] / total * abs(right[b] / count[b] - sure[b] / count[b]) for b in range(bins) if count[b]
    )
    return Calibration(
        ece=ece,
        count=total,
        accuracy=sum(right) / total,
        confidence=sum(sure) / total,
        bins=table,
        threshold=threshold,
        above=above,
        above_accuracy=above_right / above if above else None,
        methods=methods,
    )
