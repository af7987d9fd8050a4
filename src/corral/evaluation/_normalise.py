"""Values as they are compared: two values are equal when their normal forms are.

A normal form is a hashable tagged pair (so lists of scalars compare as multisets), or None for a
value that is not there (null, an empty or blank string, an empty list or object):

    ("s", text)       a string: NFKC, casefolded, runs of whitespace as one space, punctuation (but
                      dashes and underscores) and whitespace around it stripped: "  Acme, Inc. " is
                      "acme, inc"
    ("n", number)     a number: an int when integral (1 == 1.0), else the float to 12 significant
                      digits; a numeric string too where the schema says integer or number
    ("b", bool)       a boolean; "true"/"false", "yes"/"no" and "1"/"0" too where the schema says boolean
    ("d", date)       a date: where the schema says ``format: date``/``date-time``, and any string that
                      reads as one of the forms of :func:`parse_date`
    ("t", datetime)   a date-time (ISO 8601; one with an offset is compared in UTC)
    ("j", json)       anything else (a list inside a list of scalars): its JSON, keys sorted
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from typing import Any

import orjson

from corral.evaluation._shape import Kind

__all__ = ["Norm", "fold", "normalise", "parse_date"]

Norm = tuple[str, Any]

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})


def normalise(kind: Kind, value: Any) -> Norm | None:  # noqa: PLR0911 - one per kind of value
    """The normal form of ``value`` for a leaf of ``kind``; None: the value is not there."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return ("s", str(value).casefold())
        if kind in ("string", "enum"):
            return _text(kind, _number_text(value))  # "42" and 42 in a string field are one value
        return ("n", _number(value))
    if isinstance(value, str):
        if kind in ("integer", "number"):
            number = _parse_number(value)
            if number is not None:
                return ("n", number)
        elif kind == "boolean":
            word = value.strip().casefold()
            if word in _TRUE or word in _FALSE:
                return ("b", word in _TRUE)
        return _text(kind, value)
    if isinstance(value, dict | list):
        if not value:
            return None
        return ("j", orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode())
    return ("s", fold(str(value)))


def _text(kind: Kind, value: str) -> Norm | None:
    folded = fold(value)
    if not folded:
        return None
    if kind != "enum":
        when = parse_date(folded)
        if when is not None:
            return ("t" if isinstance(when, dt.datetime) else "d", when)
    return ("s", folded)


def fold(text: str) -> str:
    """``text`` as strings are compared: NFKC, casefolded, whitespace collapsed, and punctuation (and
    whitespace) around it stripped."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    if folded.isascii() and folded.isalnum():
        return folded  # the common case, without a look at each character
    start, end = 0, len(folded)
    while start < end and _edge(folded[start]):
        start += 1
    while end > start and _edge(folded[end - 1]):
        end -= 1
    return folded[start:end]


def _edge(char: str) -> bool:
    # Punctuation but dashes and connectors: "-5" is not "5", "_id" not "id".
    return char.isspace() or unicodedata.category(char) in _STRIPPED


_STRIPPED = frozenset({"Po", "Ps", "Pe", "Pi", "Pf"})


def _number(value: int | float) -> int | float:
    if isinstance(value, int):
        return value
    if value.is_integer():
        return int(value)
    return float(f"{value:.12g}")


def _number_text(value: int | float) -> str:
    number = _number(value)
    return str(number) if isinstance(number, int) else repr(number)


_NUMERIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _parse_number(text: str) -> int | float | None:
    """A number written as text (``42``, ``-1.5``, ``1e3``); None for anything else."""
    text = text.strip()
    if not _NUMERIC.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:
        number = float(text)
    return _number(number) if math.isfinite(number) else None


# --- dates -----------------------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",),
            ("june", "jun"), ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"),
            ("october", "oct"), ("november", "nov"), ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}  # fmt: skip
_MONTH = r"(?P<month>[a-z]+)\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})"
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(z|[+-]\d{2}:?\d{2})?")
_WORDS = (
    re.compile(rf"{_MONTH} {_DAY},? {_YEAR}"),  # march 3, 2024 · mar. 3 2024 · march 3rd, 2024
    re.compile(rf"{_DAY} {_MONTH},? {_YEAR}"),  # 3 march 2024 · 3rd mar 2024
)
_SLASHED = re.compile(r"(?P<first>\d{1,2})/(?P<second>\d{1,2})/(?P<year>\d{4})")


def parse_date(text: str) -> dt.date | dt.datetime | None:
    """The date (or date-time) a folded string writes, in one of a few unambiguous forms; None for
    anything else, which stays a string:

    * ISO 8601: ``2024-03-03``, ``2024-03-03T10:30[:00[.123]][Z|+01:00]`` (a space for the T too);
    * the month in English words: ``March 3, 2024``, ``Mar. 3 2024``, ``3 March 2024``, ``3rd Mar 2024``;
    * numbers with slashes, month first as in the US (``3/14/2024``), or day first when the first
      number cannot be a month (``14/3/2024``). ``3/4/2024`` could be either: it is not read as a date.
    """
    if len(text) > 40 or not text[:1].isalnum():
        return None
    try:
        return _iso(text) or _in_words(text) or _slashed(text)
    except ValueError:  # 2024-02-30, month 13: not a date
        return None


def _iso(text: str) -> dt.date | dt.datetime | None:
    if _ISO_DATE.fullmatch(text):
        return dt.date.fromisoformat(text)
    if _ISO_TIME.fullmatch(text):
        moment = dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        return moment.astimezone(dt.UTC) if moment.tzinfo is not None else moment
    return None


def _in_words(text: str) -> dt.date | None:
    for pattern in _WORDS:
        match = pattern.fullmatch(text)
        if match and match["month"] in _MONTHS:
            return dt.date(int(match["year"]), _MONTHS[match["month"]], int(match["day"]))
    return None


def _slashed(text: str) -> dt.date | None:
    match = _SLASHED.fullmatch(text)
    if match is None:
        return None
    first, second, year = int(match["first"]), int(match["second"]), int(match["year"])
    if first == second or second > 12:
        return dt.date(year, first, second)
    if first > 12:
        return dt.date(year, second, first)
    return None  # 3/4/2024: March 4th in the US, 3 April elsewhere
