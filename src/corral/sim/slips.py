"""Slips: the wrong values a model gives that no schema catches, on purpose and by seed.

A valid answer can still be wrong about the text. Two ways matter to a client that grounds values in
their document, and each free string value of an answer (a name, a city; not an enum, a const, a
format or a pattern, which the schema pins) slips one of them with its configured share:

    hallucinated   a plausible value found nowhere in the text: an invented name (neither its first
                   nor its last word is in the text), an invented place, e-mail address or URL, a
                   number the text never writes, a made-up phrase
    misplaced      the text's value miscopied the way models miscopy: case changed, inner
                   whitespace collapsed or doubled, curly quotes and dashes straightened, one
                   diacritic dropped, or a one-letter typo (values of 7 characters or more, so that a
                   fuzzy search still finds them). An exact search fails; a normalised (case,
                   whitespace, quotes, diacritics) or fuzzy one finds it

Which values slip, and how, is drawn from the seed and the value's path hash (itself drawn from the
text), never from the order requests arrive in: the same request gets the same slips on every run,
and another seed gets others. A value no change can take out of the text (digits only, nothing to
recase) stays as it is.

A third way is wrong about the text whatever the value's type: a *field error*
(``SimConfig.field_errors``), a field answered with another plausible value of its type, with the
share set for its property name (:mod:`corral.sim.field_errors` makes the value). Its draw is
:meth:`Slips.field_error`, from the same seed and path hash as the slips, and independent of them:
a string may be both (another name of the text, then miscopied).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import NamedTuple

from corral.sim.hashing import mix, step, unit
from corral.sim.text import Facts

__all__ = ["NO_SLIPS", "Slips", "invent"]

#: an invented person is never one the test texts or the simulator's fallbacks use
_FIRST = (
    "Orla", "Bastian", "Ines", "Kofi", "Teodor", "Liv", "Ezra", "Paloma", "Anselm", "Runa",
    "Casimir", "Dalia", "Evander", "Freya", "Gideon", "Hedda", "Ilario", "Jessamy", "Korbin",
    "Ludmila", "Mirela", "Nils", "Oona", "Perpetua", "Quillon", "Rasmus", "Saoirse", "Thaddeus",
    "Ulla", "Valter", "Wenona", "Xenia", "Yusra", "Zita",
)  # fmt: skip
_LAST = (
    "Abernathy", "Brandvold", "Castellanos", "Drummond", "Eklund", "Fairweather", "Galloway",
    "Halvorsen", "Iwasaki", "Jovanovic", "Kingsley", "Lundqvist", "Marchetti", "Nakagawa",
    "Oyelaran", "Pemberton", "Quintero", "Rasmussen", "Szabo", "Thorvaldsen", "Underhill",
    "Valcourt", "Whitcombe", "Xiong", "Yildirim", "Zamorano",
)  # fmt: skip
_PLACES = (
    "Brackenford", "Elmsworth", "Harrowgate", "Kestrel Bay", "Marrowby", "Norcaster", "Ostvik",
    "Penhallow", "Quarrendon", "Rivenmouth", "Saltmere", "Thornbury Vale", "Veldhaven", "Wyndale",
)  # fmt: skip
_ADJECTIVES = ("quarterly", "regional", "provisional", "northern", "external", "annual", "temporary")
_NOUNS = ("audit", "review", "contract", "survey", "allowance", "tribunal", "ledger", "mandate")
_PEOPLE_KINDS = frozenset({"name", "first", "last"})
#: what a model writes for the typographer's characters it copies
_STRAIGHT = str.maketrans({"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "–": "-", "—": "-"})
_SPACES = re.compile(r"\s+")
_MIN_TYPO = 7  # shorter, one letter is too much of the value for a fuzzy search to find it again
_SEED_SALT = 0x51175
_FIELD_SALT = 0xF1E1D


class Slips(NamedTuple):
    """The shares of hallucinated and misplaced values, and of field errors, drawn with ``seed``
    (see the module)."""

    seed: int = 0
    hallucinate: float = 0.0
    misplace: float = 0.0
    #: field errors: (property name, share) pairs, sorted; the name "*" stands for every other field
    fields: tuple[tuple[str, float], ...] = ()

    @property
    def active(self) -> bool:
        return self.hallucinate > 0 or self.misplace > 0

    def field_share(self, key: str) -> float:
        """The share of field errors for the property ``key`` (its own, else the "*" one, else 0)."""
        star = 0.0
        for name, share in self.fields:
            if name == key:
                return share
            if name == "*":
                star = share
        return star

    def field_error(self, key: str, h: int) -> int | None:
        """For the field ``key`` at the path hashed ``h``: None when it is answered right, else the
        draw that picks its wrong value."""
        if not self.fields:
            return None
        share = self.field_share(key)
        if share <= 0:
            return None
        base = mix(h ^ mix((self.seed + _FIELD_SALT) & 0xFFFFFFFF))
        return mix(step(base, 3)) if unit(base) < share else None

    def chance(self, key: str, *, slips: bool, errs: bool = True) -> float:
        """How likely a value of the field ``key`` is wrong: its field errors (``errs``: a value of
        this field can be changed) and, for a free string (``slips``), hallucinated or misplaced."""
        right = 1.0 - (self.field_share(key) if errs and self.fields else 0.0)
        if slips:
            right *= 1.0 - min(1.0, self.hallucinate + self.misplace)
        return 1.0 - right

    def apply(self, value: str, h: int, facts: Facts, kind: str = "") -> str:
        """``value`` (at the path hashed ``h``, read from ``facts``' text) as this draw slips it."""
        if not self.active or not value.strip():
            return value
        base = mix(h ^ mix((self.seed + _SEED_SALT) & 0xFFFFFFFF))
        u = unit(base)
        if u < self.hallucinate:
            return invent(value, facts, kind, mix(step(base, 1)))
        if u < self.hallucinate + self.misplace:
            return _miscopy(value, facts.text, mix(step(base, 2)))
        return value


NO_SLIPS = Slips()


# --- hallucinated --------------------------------------------------------------------------------


def invent(value: str, facts: Facts, kind: str, r: int) -> str:
    """A plausible value of ``value``'s kind (``kind``: a field kind, :func:`corral.sim.nodes.field_kind`)
    that the text of ``facts`` nowhere holds, whatever its case; ``r`` picks which."""
    lower = facts.lower
    invented = value
    for invented in _candidates(value, kind, r):
        # Each word apart: half of a real name ("Orla Lopez" beside "Maria Lopez") is no invention.
        if all(word.lower() not in lower for word in invented.split()):
            return invented
    while invented.lower() in lower:  # a text that holds every candidate: lengthen one until it is new
        invented += "x"
    return invented


def _candidates(value: str, kind: str, r: int) -> Iterator[str]:
    """Every invention of ``value``'s kind, from a place that ``r`` picks."""
    if value.isdigit():  # an age, a count: another number of as many digits
        low = 10 ** (len(value) - 1) if len(value) > 1 else 0
        span = min(10 ** len(value) - low, 10_000)
        yield from (str(low + (r + k) % span) for k in range(span))
    elif kind in _PEOPLE_KINDS or kind in ("email", "url"):
        total = len(_FIRST) * len(_LAST)
        for k in range(total):
            at = (r + k) % total
            first, last = _FIRST[at % len(_FIRST)], _LAST[at // len(_FIRST)]
            if kind == "email":  # someone invented, at an address of their own
                yield f"{first}.{last}@{last}-mail.com".lower()
            elif kind == "url":
                yield f"https://{first}.{last}.example.org".lower()
            else:
                yield first if kind == "first" else last if kind == "last" else f"{first} {last}"
    elif kind == "place":
        yield from (_PLACES[(r + k) % len(_PLACES)] for k in range(len(_PLACES)))
    else:
        total = len(_ADJECTIVES) * len(_NOUNS)
        for k in range(total):
            at = (r + k) % total
            yield f"{_ADJECTIVES[at % len(_ADJECTIVES)]} {_NOUNS[at // len(_ADJECTIVES)]}"


# --- misplaced -----------------------------------------------------------------------------------


def _recase(value: str, r: int) -> list[str]:
    return [value.lower(), value.upper()] if r & 1 else [value.upper(), value.lower()]


def _respace(value: str, r: int) -> list[str]:
    inner = value.strip()
    if _SPACES.search(inner) is None:
        return []
    collapsed = _SPACES.sub(" ", value)
    if collapsed != value:
        return [collapsed]
    spaces = [i for i, char in enumerate(value) if char == " " and 0 < i < len(value) - 1]
    return [value[:i] + " " + value[i:] for i in _rotated(spaces, r)]


def _straighten(value: str, r: int) -> list[str]:
    return [value.translate(_STRAIGHT)]


def _drop_diacritic(value: str, r: int) -> list[str]:
    decomposed = unicodedata.normalize("NFD", value)
    marks = [i for i, char in enumerate(decomposed) if unicodedata.combining(char)]
    return [unicodedata.normalize("NFC", decomposed[:i] + decomposed[i + 1 :]) for i in _rotated(marks, r)]


def _typo(value: str, r: int) -> list[str]:
    if len(value) < _MIN_TYPO:
        return []
    letters = [i for i in range(1, len(value) - 1) if value[i].isalpha()]
    out = []
    for i in _rotated(letters, r):
        char = value[i]
        kind = (r >> 3) % 3
        if kind == 0:
            out.append(value[:i] + value[i + 1 :])  # a letter left out
        elif kind == 1:
            out.append(value[:i] + char + value[i:])  # a letter doubled
        else:  # a neighbouring letter for this one
            swapped = chr((ord(char.lower()) - 96) % 26 + 97) if "a" <= char.lower() <= "z" else "e"
            out.append(value[:i] + (swapped.upper() if char.isupper() else swapped) + value[i + 1 :])
    return out


_CHANGES = (_recase, _respace, _straighten, _drop_diacritic, _typo)


def _rotated(items: list[int], r: int) -> list[int]:
    if not items:
        return items
    at = r % len(items)
    return items[at:] + items[:at]


def _miscopy(value: str, text: str, r: int) -> str:
    """``value`` changed one way a model changes what it copies, into something the text does not
    hold exactly; the value itself when no change can do that."""
    start = r % len(_CHANGES)
    for k in range(len(_CHANGES)):
        for changed in _CHANGES[(start + k) % len(_CHANGES)](value, mix(step(r, k))):
            if changed != value and changed not in text:
                return changed
    return value
