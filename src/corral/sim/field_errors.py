"""Field errors: a field answered wrong on purpose, with a value of its type that the schema accepts.

``SimConfig.field_errors`` sets a share per property name (``{"age": 0.3, "name": 0.1}``; ``"*"``
for every field without a share of its own). A field is matched by its name wherever it stands (the
``age`` of every person of a list, of a manager inside an employee); the items of a list of plain
values go by the list's name. Whether a value is wrong is drawn from the seed and the value's path
hash (:meth:`corral.sim.slips.Slips.field_error`), so over many values the share comes out as set,
and the same request gets the same wrong values. The wrong value is what a model gets wrong while
it reads the right text, never a type error, a format error or a value out of range:

    number     off by a little: an age by 1-5 years, a year by 1-10, another whole number by up to
               a fifth of itself (at least 1), a decimal by 5-30 %; inside ``minimum``/``maximum``
               and a multiple of ``multipleOf`` (the other way round when one way leaves them)
    name       another person the text names (a first or last name: theirs), else an invented one
    place      another place the text names, else an invented one
    date       the same date 1-30 days or a year away (a date-time keeps its time)
    e-mail     an invented address; a URL, another format: another value of that format
    string     another word of the text, else an invented phrase; ``minLength``/``maxLength`` kept
    enum       another member;  boolean: the other one

A string with a ``pattern``, a ``const``, an enum of one member and a value that is null (a nullable
field the text has no evidence for) are never changed: nothing else is sure to fit, or there is no
value to get wrong.

Re-asks do not fix a field error. corral re-asks with the first user message unchanged (the
simulator's answer depends on that text only), and a field error is schema-valid, so no re-ask is
ever about it: the same request gets the same answer, as the answer caches expect.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from typing import Any

from corral.sim.hashing import mix, step
from corral.sim.slips import invent
from corral.sim.text import Facts

__all__ = ["wrong_member", "wrong_number", "wrong_string"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PEOPLE = frozenset({"name", "first", "last"})


def wrong_number(
    value: float, *, kind: str, integer: bool, multiple: float | None, fits: Callable[[float], bool], r: int
) -> float:
    """``value`` off by a little, still one that ``fits`` the schema; ``value`` itself when none is."""
    sign = 1 if r & 1 else -1
    r = mix(r)
    candidates: list[float]
    if multiple:  # k steps of the multiple away, k in 1-3; else one step
        base, k = round(value / multiple), 1 + r % 3
        candidates = [multiple * (base + s) for s in (sign * k, -sign * k, sign, -sign)]
    elif integer:
        by = {"age": 1 + r % 5, "year": 1 + r % 10}.get(kind) or max(1, round(abs(value) * (r % 21) / 100))
        candidates = [value + sign * by, value - sign * by, value + sign, value - sign]
    else:
        off = abs(value) * (0.05 + (r % 26) / 100) if value else 0.5 + r % 5
        candidates = [round(value + sign * off, 2), round(value - sign * off, 2), value + sign / 100]
    for candidate in candidates:
        number = int(candidate) if integer else candidate
        if number != value and fits(number):
            return number
    return value


def wrong_member(value: Any, members: Sequence[Any], r: int) -> Any:
    """Another member of an enum; ``value`` itself when there is no other."""
    others = [member for member in members if member != value]
    return others[r % len(others)] if others else value


def wrong_string(value: str, *, kind: str, fmt: str | None, facts: Facts, r: int,
                 other_format: Callable[[int], str]) -> str:  # fmt: skip
    """Another plausible value for a string field of ``kind`` (:func:`corral.sim.nodes.field_kind`)
    and format ``fmt``; ``other_format(r)``: a value of that format, drawn from ``r``."""
    if fmt in ("date", "date-time") and _DATE.match(value):
        return _shifted(value, r)
    if kind in ("email", "url") or (not fmt and value.isdigit()):
        return invent(value, facts, kind, r)  # an address, a number of as many digits
    if fmt and kind not in _PEOPLE and kind != "place":
        changed = (other_format(mix(step(r, k))) for k in range(4))
        return next((other for other in changed if other != value), value)
    found = _people(facts, kind) if kind in _PEOPLE else facts.places if kind == "place" else facts.words
    return _another(value, found, facts, kind, r)


def _people(facts: Facts, kind: str) -> list[str]:
    names = list(facts.names)
    if kind == "first":
        return [name.split()[0] for name in names]
    if kind == "last":
        return [name.split()[-1] for name in names if len(name.split()) > 1]
    return names


def _another(value: str, found: Sequence[str], facts: Facts, kind: str, r: int) -> str:
    """One of ``found`` (what the text holds of this kind) other than ``value``; two times in three
    when there is one, else (and the third time) an invented one, which the text does not hold."""
    others = [other for other in dict.fromkeys(found) if other != value and other.lower() != value.lower()]
    if others and r % 3:
        return others[(r >> 2) % len(others)]
    return invent(value, facts, kind, r >> 2)


def _shifted(value: str, r: int) -> str:
    """The date at the start of ``value`` moved 1-30 days, or a year, either way."""
    try:
        day = datetime.date.fromisoformat(value[:10])
    except ValueError:
        return value
    sign = 1 if r & 1 else -1
    days = 365 if (r >> 1) % 4 == 0 else 1 + (r >> 3) % 30
    try:
        moved = day + datetime.timedelta(days=sign * days)
    except OverflowError:
        moved = day - datetime.timedelta(days=sign * days)
    return moved.isoformat() + value[10:]
