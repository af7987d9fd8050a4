"""Normalisation: which values count as equal, for each kind the schema gives a leaf."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import BaseModel

from corral.evaluation import evaluate
from corral.evaluation._normalise import fold, normalise, parse_date
from corral.evaluation._shape import Kind
from tests.evaluation.conftest import Write, gold, out


@pytest.mark.parametrize(
    ("kind", "one", "other"),
    [
        ("string", "Acme Inc.", "  acme   inc "),
        ("string", "ﬁsh", "fish"),  # NFKC: the ligature is two letters
        ("string", "ＡＢＣ", "abc"),  # full-width letters
        ("string", "STRASSE", "straße"),  # casefold, not lower
        ("string", "café", "cafe\u0301"),  # composed and decomposed é
        ("string", '"Oslo"', "Oslo"),  # quotes around
        ("string", "(Oslo)", "oslo!"),
        ("string", "line\nbreak\t here", "line break here"),
        ("string", "42", 42),  # a number in a string field is its text
        ("integer", 1, 1.0),
        ("integer", "42", 42),
        ("number", " 3.50 ", 3.5),
        ("number", 0.1 + 0.2, 0.3),  # 12 significant digits
        ("number", "1e3", 1000),
        ("boolean", True, "yes"),
        ("boolean", False, "FALSE"),
        ("date", "2024-03-03", "March 3, 2024"),
        ("date", "2024-03-03", "3 Mar 2024"),
        ("date", "Sept. 3rd, 2024", "2024-09-03"),
        ("date", "3/14/2024", "2024-03-14"),  # month first
        ("date", "14/3/2024", "2024-03-14"),  # day first: 14 cannot be a month
        ("date", "5/5/2024", "May 5, 2024"),
        ("string", "2024-03-03", "march 3 2024"),  # a plain string that reads as a date
        ("date-time", "2024-03-03T10:00:00Z", "2024-03-03 11:00+01:00"),  # one instant
        ("enum", "Open", "open"),
        ("any", 2, 2.0),
    ],
)
def test_equal(kind: Kind, one: Any, other: Any) -> None:
    assert normalise(kind, one) is not None
    assert normalise(kind, one) == normalise(kind, other)


@pytest.mark.parametrize(
    ("kind", "one", "other"),
    [
        ("string", "Acme", "Acme Corp"),
        ("string", "-5", "5"),  # a dash is not stripped
        ("string", "a b", "ab"),
        ("integer", 42, 43),
        ("integer", "42", "forty-two"),
        ("number", 1.5, 1.6),
        ("any", 1, "1"),  # no schema says number: a number and a string differ
        ("boolean", True, False),
        ("boolean", True, 1),  # a boolean is not a number
        ("date", "3/4/2024", "2024-03-04"),  # 3/4: March 4 or 3 April? not read as a date
        ("date", "2024-03-03", "2024-03-04"),
        ("date-time", "2024-03-03T10:00:00", "2024-03-03T10:00:00Z"),  # naive vs UTC: not one instant
        ("enum", "2024-03-03", "March 3, 2024"),  # an enum's values are not read as dates
    ],
)
def test_different(kind: Kind, one: Any, other: Any) -> None:
    assert normalise(kind, one) != normalise(kind, other)


@pytest.mark.parametrize("value", [None, "", "   ", "...", [], {}])
def test_absent(value: Any) -> None:
    assert normalise("string", value) is None


def test_fold() -> None:
    assert fold("  «Ｈｅｌｌｏ,   Wörld!»  ") == "hello, wörld"
    assert fold("_id") == "_id"


def test_dates_read_and_refused() -> None:
    assert parse_date("2024-02-29") == dt.date(2024, 2, 29)
    assert parse_date("2023-02-29") is None  # no such day
    assert parse_date("13/13/2024") is None
    assert parse_date("3/4/2024") is None  # March 4 or 3 April: not read at all
    assert parse_date("3/3/2024") == dt.date(2024, 3, 3)  # either way the same day
    assert parse_date("3/14/2024") == parse_date("14/3/2024") == dt.date(2024, 3, 14)
    assert parse_date("march 33, 2024") is None
    assert parse_date("smarch 3, 2024") is None
    assert parse_date("2024-03-03t10:30") == dt.datetime(2024, 3, 3, 10, 30)
    assert parse_date("2024-03-03t10:30z") == dt.datetime(2024, 3, 3, 10, 30, tzinfo=dt.UTC)


class Event(BaseModel):
    title: str
    day: dt.date | None = None
    seats: int | None = None
    price: float | None = None
    open: bool | None = None


def test_normalisation_through_evaluate(write: Write) -> None:
    # title equal (case, width, punctuation), day equal (a date two ways), seats equal ("12" for 12
    # where the schema says integer), price equal (2 == 2.0), open wrong (true vs false): FP+FN.
    output = write(
        "out.jsonl",
        [out("1", {"title": "ＢＩＧ  Show!", "day": "2024-03-03", "seats": "12", "price": 2, "open": True})],
    )
    golds = write(
        "gold.jsonl",
        [gold("1", {"title": "big show", "day": "March 3, 2024", "seats": 12, "price": 2.0, "open": False})],
    )
    ev = evaluate(output, golds, Event, bootstrap=0)
    assert {f: (s.tp, s.fp, s.fn) for f, s in ev.fields.items()} == {
        "title": (1, 0, 0),
        "day": (1, 0, 0),
        "seats": (1, 0, 0),
        "price": (1, 0, 0),
        "open": (0, 1, 1),
    }
