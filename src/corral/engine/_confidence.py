"""Confidence per field from the model's token log-probabilities.

A reply's JSON text is read once more, this time for where each value stands in it: every leaf
(string, number, boolean, null) by its path (``people[0].name``, the paths of ``grounding``) and its
character span ``[start, end)`` in the text (a string's without its quotes). The provider's tokens
are laid end to end over the same text; a value's confidence is the probability the model gave to
the tokens that spell it, one after the other: ``exp(sum(logprob))`` over the tokens that overlap
its span. A value the model was sure of scores near 1; one it hesitated over (a digit, a spelling, a
name it picked among others) lower.

The product is what the model's own distribution says of the whole value given what came before it;
it is not calibrated by itself (``corral eval`` measures how well it is), and it says nothing of
values the text does not hold (grounding does). A reply whose tokens do not spell its text (a server
that changed it) gets no confidence rather than a wrong one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Recalibration", "leaf_spans", "path_parts", "value_confidence", "value_leaves"]

_WHITESPACE = " \t\n\r"


def value_confidence(text: str, tokens: Sequence[tuple[str, float]]) -> dict[str, float] | None:
    """Each leaf of the JSON ``text`` by path, with the probability of the tokens that spell it; None
    when the tokens do not spell ``text`` (around it: a reply's code fence) or it is not JSON."""
    spelled = "".join(token for token, _ in tokens)
    offset = spelled.find(text) if text else -1
    if offset < 0:
        return None
    try:
        spans = {path: (start + offset, end + offset) for path, (start, end) in leaf_spans(text)}
    except ValueError:
        return None
    ends: list[int] = []
    at = 0
    for token, _ in tokens:
        at += len(token)
        ends.append(at)
    confidence: dict[str, float] = {}
    first = 0  # tokens before a span's start are behind every later span too (spans come in order)
    for path, (start, end) in spans.items():
        while first < len(ends) and ends[first] <= start:
            first += 1
        total = 0.0
        index = first
        while index < len(tokens) and (ends[index] - len(tokens[index][0])) < max(end, start + 1):
            total += tokens[index][1]
            index += 1
        confidence[path] = round(math.exp(total), 4)
    return confidence


def leaf_spans(text: str) -> Iterator[tuple[str, tuple[int, int]]]:
    """Every leaf of a JSON text, in order, by path, with its span in the text (a string's content
    without the quotes). Raises ValueError for text that is not one JSON value."""
    reader = _Reader(text)
    yield from reader.value("")
    reader.skip()
    if reader.at != len(text):
        raise ValueError("text after the JSON value")


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def skip(self) -> None:
        while self.at < len(self.text) and self.text[self.at] in _WHITESPACE:
            self.at += 1

    def value(self, path: str) -> Iterator[tuple[str, tuple[int, int]]]:
        self.skip()
        if self.at >= len(self.text):
            raise ValueError("the JSON ends early")
        char = self.text[self.at]
        if char == "{":
            yield from self._object(path)
        elif char == "[":
            yield from self._array(path)
        elif char == '"':
            start = self.at + 1
            self._string()
            yield path, (start, self.at - 1)
        else:
            start = self.at
            while self.at < len(self.text) and self.text[self.at] not in ",]} \t\n\r":
                self.at += 1
            if self.at == start:
                raise ValueError(f"no value at {start}")
            yield path, (start, self.at)

    def _object(self, path: str) -> Iterator[tuple[str, tuple[int, int]]]:
        self.at += 1
        self.skip()
        if self._take("}"):
            return
        while True:
            self.skip()
            start = self.at + 1
            self._string()
            key = self.text[start : self.at - 1]
            self.skip()
            if not self._take(":"):
                raise ValueError(f"no ':' at {self.at}")
            yield from self.value(f"{path}.{key}" if path else key)
            self.skip()
            if self._take("}"):
                return
            if not self._take(","):
                raise ValueError(f"no ',' or '}}' at {self.at}")

    def _array(self, path: str) -> Iterator[tuple[str, tuple[int, int]]]:
        self.at += 1
        self.skip()
        if self._take("]"):
            return
        index = 0
        while True:
            yield from self.value(f"{path}[{index}]")
            index += 1
            self.skip()
            if self._take("]"):
                return
            if not self._take(","):
                raise ValueError(f"no ',' or ']' at {self.at}")

    def _string(self) -> None:
        if not self._take('"'):
            raise ValueError(f"no string at {self.at}")
        text = self.text
        while self.at < len(text):
            char = text[self.at]
            if char == "\\":
                self.at += 2
                continue
            self.at += 1
            if char == '"':
                return
        raise ValueError("a string does not end")

    def _take(self, char: str) -> bool:
        if self.at < len(self.text) and self.text[self.at] == char:
            self.at += 1
            return True
        return False


def path_parts(path: str) -> list[str | int]:
    """A value's path as keys and indices: ``people[2].name`` → ``["people", 2, "name"]``."""
    parts: list[str | int] = []
    for name in path.replace("]", "").split("."):
        head, *indices = name.split("[")
        if head:
            parts.append(head)
        parts.extend(int(index) for index in indices)
    return parts


def value_leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of an output by path (``people[0].name``): strings, numbers, booleans, nulls."""
    if isinstance(node, dict):
        for key, child in node.items():
            yield from value_leaves(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from value_leaves(child, f"{path}[{index}]")
    else:
        yield path, node


@dataclass(frozen=True, slots=True)
class Recalibration:
    """A model's confidences mapped to how often it is right, per method: a monotone piecewise-linear
    map through ``points`` ((confidence, accuracy), increasing), fitted on labelled data by
    ``corral eval --fit-calibration`` and applied by ``corral run --calibration``."""

    points: Mapping[str, tuple[tuple[float, float], ...]]

    def apply(self, method: str, confidence: float) -> float:
        """``confidence`` recalibrated (as it is when the method has no map)."""
        points = self.points.get(method)
        if not points:
            return confidence
        if confidence <= points[0][0]:
            return points[0][1]
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            if confidence <= x1:
                share = 0.0 if x1 == x0 else (confidence - x0) / (x1 - x0)
                return round(y0 + share * (y1 - y0), 4)
        return points[-1][1]

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "methods": {m: [list(p) for p in pts] for m, pts in self.points.items()}}

    @classmethod
    def from_json(cls, data: Any) -> Recalibration:
        """A map as ``to_json`` wrote it; ValueError for anything else."""
        if (
            not isinstance(data, dict)
            or data.get("version") != 1
            or not isinstance(data.get("methods"), dict)
        ):
            raise ValueError('not a corral calibration map: {"version": 1, "methods": {...}}')
        points: dict[str, tuple[tuple[float, float], ...]] = {}
        for method, pairs in data["methods"].items():
            try:
                parsed = tuple((float(x), float(y)) for x, y in pairs)
            except (TypeError, ValueError):
                raise ValueError(
                    f"the map of {method!r} is not a list of [confidence, accuracy] pairs"
                ) from None
            if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in parsed) or any(
                b[0] < a[0] or b[1] < a[1] for a, b in itertools.pairwise(parsed)
            ):
                raise ValueError(f"the map of {method!r} must rise, within [0, 1]")
            points[str(method)] = parsed
        return cls(points)
