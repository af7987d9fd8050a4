"""What a simulated model "reads" in a prompt: names, numbers, places, e-mails, dates, ``key is value``.

These are crude, deterministic heuristics, not NLP. They exist so that simple texts come back
plausibly right ("My name is John and I am 20 years old" → John, 20) and so that answers differ per
text; anything they cannot find is filled from a hash of the text instead. The facts of one text are
computed once per request and shared by every field of the answer.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["Entity", "Facts", "Number", "read_facts", "value_after_key"]


@dataclass(slots=True, frozen=True)
class Number:
    value: int | float
    start: int
    #: followed by "years", "yrs", "y/o" or preceded by "age"/"aged": what an ``age`` field wants
    age_cue: bool


@dataclass(slots=True, frozen=True)
class Entity:
    """One mentioned person and the stretch of text that talks about them."""

    name: str | None
    text: str
    numbers: tuple[Number, ...]


@dataclass(slots=True, frozen=True)
class Facts:
    text: str
    lower: str
    #: person names in order of appearance; the ones introduced by a cue ("my name is") first
    names: tuple[str, ...]
    #: capitalised words after "in/at/from/to": cities, countries, employers
    places: tuple[str, ...]
    numbers: tuple[Number, ...]
    emails: tuple[str, ...]
    urls: tuple[str, ...]
    dates: tuple[str, ...]
    #: content words (for deterministic filler strings that still come from the text)
    words: tuple[str, ...]
    #: one entity per distinct name, each with its own slice of the text (at least one entity)
    entities: tuple[Entity, ...]


# Capitalised words that start sentences or name things other than people. Sentence-initial words
# cannot simply be skipped: in "John is 20 and Mary is 31." the first name opens the sentence.
_NOT_NAMES = frozenset(
    """
    a an the this that these those there here my your his her its our their i me we you he she it
    they them mine yours hello hi hey dear yes no not and but or so if then when while because
    although though after before since until as at by for from in into of on onto to with without
    about above below over under between today yesterday tomorrow tonight now later also however
    meanwhile moreover furthermore finally first second third next last please thanks thank
    what who whom whose which why how where each every all some any many most few several both
    one two three four five six seven eight nine ten name names age years year old
    monday tuesday wednesday thursday friday saturday sunday january february march april may june
    july august september october november december mr mrs ms miss dr prof sir madam
    extract text person people user assistant system json schema return answer note
    is am are was were be been has have had do does did will would can could should must
    """.split()
)
_NAME_CUE = re.compile(
    r"\b(?:[Mm]y name is|[Nn]ame is|[Nn]amed|[Cc]alled|I am|I'm|I’m|[Tt]his is|[Mm]eet)\s+"
    r"([A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)?)"
)
_CAPITALISED = re.compile(r"\b[A-Z][a-z][\w'’-]*(?:[ \t]+[A-Z][a-z][\w'’-]*)*")
_PLACE_BEFORE = re.compile(r"\b(?:in|at|from|to|near|for)\s*$")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w@])")
_AGE_AFTER = re.compile(r"\s*(?:-?\s*years?|-?\s*yrs?|\s*y/?o\b|-?\s*year-old)", re.IGNORECASE)
_AGE_BEFORE = re.compile(r"\b(?:age|aged|age of|age is)\s*:?\s*$", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://[^\s\"'<>)]+")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_WORD = re.compile(r"[A-Za-z][a-z]{3,}")


def read_facts(text: str) -> Facts:
    """Everything the answer filler may use from ``text``. Cached: benchmark texts repeat."""
    return _read_facts(text)


@functools.lru_cache(maxsize=4096)
def _read_facts(text: str) -> Facts:
    emails = tuple(_EMAIL.findall(text))
    urls = tuple(_URL.findall(text))
    dates = tuple(_DATE.findall(text))
    # Digits inside e-mails, URLs and dates are not quantities.
    masked = text
    for found in (*emails, *urls, *dates):
        masked = masked.replace(found, " " * len(found))
    numbers = tuple(_numbers(masked))
    names, positions, places = _names(masked)
    lower = text.lower()
    words = tuple(dict.fromkeys(w for w in _WORD.findall(masked) if w.lower() not in _NOT_NAMES))
    return Facts(
        text=text,
        lower=lower,
        names=names,
        places=places,
        numbers=numbers,
        emails=emails,
        urls=urls,
        dates=dates,
        words=words,
        entities=_entities(text, names, positions, numbers),
    )


def _numbers(text: str) -> list[Number]:
    found = []
    for match in _NUMBER.finditer(text):
        raw = match.group()
        value: int | float = float(raw) if "." in raw else int(raw)
        cue = bool(_AGE_AFTER.match(text, match.end())) or bool(
            _AGE_BEFORE.search(text, max(0, match.start() - 12), match.start())
        )
        found.append(Number(value, match.start(), cue))
    return found


def _names(text: str) -> tuple[tuple[str, ...], dict[str, int], tuple[str, ...]]:
    cued: dict[str, int] = {}
    for match in _NAME_CUE.finditer(text):
        words = [w for w in match.group(1).split() if w.lower() not in _NOT_NAMES]
        if words:
            cued.setdefault(" ".join(words), match.start(1))
    others: dict[str, int] = {}
    places: dict[str, None] = {}
    for match in _CAPITALISED.finditer(text):
        words = match.group().split()
        start = match.start()
        while words and words[0].lower() in _NOT_NAMES:  # "Hello John" -> "John"
            start += len(words[0]) + 1
            words.pop(0)
        if not words:
            continue
        name = " ".join(words)
        if _PLACE_BEFORE.search(text, max(0, start - 8), start):
            places.setdefault(name, None)
        elif name not in cued and not any(name in c.split() for c in cued):
            others.setdefault(name, start)
    positions = {**cued, **others}
    ordered = tuple(cued) + tuple(others)
    return ordered, positions, tuple(places)


def _entities(
    text: str, names: tuple[str, ...], positions: dict[str, int], numbers: tuple[Number, ...]
) -> tuple[Entity, ...]:
    if len(names) <= 1:
        return (Entity(names[0] if names else None, text, numbers),)
    # Each person owns the text from their mention to the next person's; the first also owns the
    # lead-in, so "In 2020, John was 20 and Mary 31" gives John both 2020 and 20.
    order = sorted(names, key=positions.__getitem__)
    starts = [0] + [positions[name] for name in order[1:]]
    ends = starts[1:] + [len(text)]
    return tuple(
        Entity(name, text[a:b], tuple(n for n in numbers if a <= n.start < b))
        for name, a, b in zip(order, starts, ends, strict=True)
    )


@functools.lru_cache(maxsize=1024)
def _key_pattern(key: str) -> re.Pattern[str]:
    words = r"[\s_-]*".join(re.escape(part) for part in re.split(r"[\s_-]+", key.strip()) if part)
    return re.compile(
        rf"\b{words}\s*(?:is|was|are|were|:|=)\s+[\"']?([^\"',.;:!?\n]{{1,60}}?)[\"']?(?=[,.;!?\n]|\s+and\s|$)",
        re.IGNORECASE,
    )


def value_after_key(text: str, key: str) -> str | None:
    """``"my city is Paris"`` → ``"Paris"`` for the key ``city``; None if the text never says."""
    if not key:
        return None
    match = _key_pattern(key).search(text)
    return match.group(1).strip() if match else None
