"""Grounding: where in its source document each extracted value stands, as character spans.

A value is looked for three ways, in order, and the first that finds it says how good the span is:

    exact        the value as it is, in the text as it is                      score 1.0
    normalised   both folded (Unicode NFKC, case, runs of whitespace as one)   score 1.0
    fuzzy        the best partial match of the folded value (rapidfuzz's       its score, if ≥ min_score
                 bit-parallel alignment: linear in the text's length)

A value found nowhere is ungrounded (``None``): the model said something the text does not. The
document is folded once, with a map from every folded character back to the original one, so a span
found in the folded text is a span of the original (``text[start:end]`` is what the reader sees).
Each lookup is a C-speed search over the folded text (``str.find`` or rapidfuzz), so grounding every
value of a long document costs milliseconds per value, and a lookup may be held to a range (the chunk
the value was extracted from) to cost less still.
"""

from __future__ import annotations

import unicodedata
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rapidfuzz import fuzz

__all__ = ["Aligner", "Span", "ground_record", "string_leaves"]

#: fuzzy matches below this score (0-1) do not ground a value
MIN_SCORE = 0.85
#: a span of whole words is taken over a closer one that cuts a word if it is this close (0-100)
_WHOLE_WORDS_SLACK = 6.0
#: values longer than this are not matched fuzzily (the alignment grows with the value's length, and a
#: long value that is found neither as it is nor folded is a paraphrase, not a typo)
_MAX_FUZZY = 512


@dataclass(frozen=True, slots=True)
class Span:
    """Where a value stands in its document: ``text[start:end]``."""

    start: int
    end: int
    how: Literal["exact", "normalised", "fuzzy"]
    #: 1.0 for exact and normalised matches; the fuzzy match's similarity otherwise
    score: float = 1.0


class Aligner:
    """One document, folded once; :meth:`find` looks values up in it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._folded, self._origin = _fold(text)

    def find(
        self, value: str, *, within: tuple[int, int] | None = None, min_score: float = MIN_SCORE
    ) -> Span | None:
        """The span of ``value`` in the document (the first, from ``within``'s start if given), or
        None when it is found nowhere (a fuzzy match under ``min_score`` is nowhere)."""
        if not value.strip():
            return None
        start, end = within if within is not None else (0, len(self.text))
        exact = self.text.find(value, start, end)
        if exact >= 0:
            return Span(exact, exact + len(value), "exact")
        folded_value, _ = _fold(value)
        lo, hi = self._folded_range(start, end)
        at = self._folded.find(folded_value, lo, hi)
        if at >= 0:
            return self._span(at, at + len(folded_value), "normalised", 1.0)
        return self._fuzzy(folded_value, lo, hi, min_score)

    def _fuzzy(self, folded_value: str, lo: int, hi: int, min_score: float) -> Span | None:
        if len(folded_value) > _MAX_FUZZY:
            return None
        match = fuzz.partial_ratio_alignment(folded_value, self._folded[lo:hi], score_cutoff=min_score * 100)
        if match is None or match.dest_end <= match.dest_start:
            return None
        start, end, score = self._snapped(folded_value, lo + match.dest_start, lo + match.dest_end, lo, hi)
        if score < min_score * 100:
            start, end, score = lo + match.dest_start, lo + match.dest_end, match.score
        return self._span(start, end, "fuzzy", score / 100)

    def _snapped(self, value: str, start: int, end: int, lo: int, hi: int) -> tuple[int, int, float]:
        """The span near ``[start, end)`` most like ``value`` as a whole, whole words preferred.

        The partial alignment's window is as long as the value, so a value a letter longer or shorter
        than the text's (a typo, a dropped letter) comes back a character off at one edge, cutting a
        word (``awel Achterberg``) or taking a space. Each edge is tried a character either way and at
        its word's edge; the most similar span of whole words wins, unless one that cuts a word is much
        more similar."""
        folded = self._folded
        starts = {start - 1, start, start + 1, _word_start(folded, start, lo)}
        ends = {end - 1, end, end + 1, _word_end(folded, end, hi)}
        best: tuple[float, int, int] = (-1.0, start, end)
        best_whole: tuple[float, int, int] = (-1.0, start, end)
        for a in starts:
            for b in ends:
                if not lo <= a < b <= hi or folded[a].isspace() or folded[b - 1].isspace():
                    continue
                candidate = (fuzz.ratio(value, folded[a:b]), a, b)
                best = max(best, candidate)
                if (a == lo or not folded[a - 1].isalnum()) and (b == hi or not folded[b].isalnum()):
                    best_whole = max(best_whole, candidate)
        # A letter changed costs the whole word a few points against the span that leaves it out.
        score, a, b = best_whole if best_whole[0] >= best[0] - _WHOLE_WORDS_SLACK else best
        return a, b, score

    def _span(
        self, folded_start: int, folded_end: int, how: Literal["normalised", "fuzzy"], score: float
    ) -> Span:
        # From the original character of the first folded one to that of the last (a ligature that
        # folded into two characters is taken whole).
        return Span(self._origin[folded_start], self._origin[folded_end - 1] + 1, how, score)

    def _folded_range(self, start: int, end: int) -> tuple[int, int]:
        """The folded text's range covering the original ``[start, end)``."""
        origin = self._origin
        lo = _bisect(origin, start)
        hi = _bisect(origin, end)
        return lo, hi


def ground_record(
    output: Any, aligner: Aligner, *, within: tuple[int, int] | None = None, min_score: float = MIN_SCORE
) -> dict[str, Span | None]:
    """Every string leaf of an extraction's output (nested objects and lists included), by its path
    (``people[0].name``), with its span in the document or None (ungrounded)."""
    return {
        path: aligner.find(value, within=within, min_score=min_score) for path, value in string_leaves(output)
    }


def string_leaves(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string of an output (nested objects and lists included), by its path: ``people[0].name``
    (the names of the ``grounding`` map)."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for key, child in node.items():
            yield from string_leaves(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, Sequence) and not isinstance(node, bytes | bytearray):
        for index, child in enumerate(node):
            yield from string_leaves(child, f"{path}[{index}]")


def _fold(text: str) -> tuple[str, array[int]]:
    """``text`` folded (NFKC, casefolded, every run of whitespace one space, none at the ends), and for
    each folded character the index of the original character it came from."""
    out: list[str] = []
    origin = array("q")
    space_pending = False
    cache: dict[str, str] = {}
    for index, char in enumerate(text):
        if char.isspace():
            space_pending = bool(out)
            continue
        folded = cache.get(char)
        if folded is None:
            folded = char.lower() if char.isascii() else unicodedata.normalize("NFKC", char).casefold()
            cache[char] = folded
        if space_pending:
            out.append(" ")
            origin.append(index - 1)
            space_pending = False
        for piece in folded:
            out.append(piece)
            origin.append(index)
    return "".join(out), origin


def _word_start(text: str, at: int, lo: int, most: int = 24) -> int:
    """Where the word around ``at`` begins (at most ``most`` characters back, not before ``lo``)."""
    stop = max(lo, at - most)
    while at > stop and text[at - 1].isalnum():
        at -= 1
    return at


def _word_end(text: str, at: int, hi: int, most: int = 24) -> int:
    """Where the word around ``at`` ends (at most ``most`` characters on, not after ``hi``)."""
    stop = min(hi, at + most)
    while at < stop and text[at].isalnum():
        at += 1
    return at


def _bisect(origin: array[int], index: int) -> int:
    """The first folded position whose original index is at least ``index``."""
    lo, hi = 0, len(origin)
    while lo < hi:
        mid = (lo + hi) // 2
        if origin[mid] < index:
            lo = mid + 1
        else:
            hi = mid
    return lo
