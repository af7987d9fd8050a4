"""What a simulated model "reads" in a prompt: names, numbers, places, e-mails, dates, ``key is value``.

These are crude, deterministic heuristics, not NLP. They exist so that simple texts come back
plausibly right ("My name is John and I am 20 years old" → John, 20) and so that answers differ per
text; anything they cannot find is filled from a hash of the text instead.

:class:`Facts` reads each kind of fact on first use only: a ``Person`` answer needs names and numbers,
and the simulator's throughput depends on not scanning for e-mails it will never use.

Long texts (a document's chunk) name many people, each more than once. A person is counted once:
a later (or earlier) mention by part of their name ("Maria" beside "Maria Lopez") is the same
person, and each owns the text from their first mention to the next person's. A capitalised run
ending in an organisation's word ("Northwind Traders", "Harbor Bank") or after "in/at/from" is a
place, not a person; a lone capitalised word that opens a sentence is not a name when the text
writes it in lower case elsewhere ("Colleagues describe her"). A bare small number in a person's
stretch reads as their age when nothing next to "years" or "aged" does.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

__all__ = ["Entity", "Facts", "Number", "age_in", "value_after_key"]


class Number(NamedTuple):
    value: int | float
    start: int
    #: followed by "years", "yrs", "y/o" or preceded by "age"/"aged": what an ``age`` field wants
    age_cue: bool


class Entity(NamedTuple):
    """One mentioned person and the stretch of text that talks about them."""

    name: str | None
    text: str
    numbers: tuple[Number, ...]


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
    monday tuesday wednesday thursday friday saturday sunday mondays tuesdays wednesdays thursdays
    fridays saturdays sundays january february march april may june
    july august september october november december mr mrs ms miss dr prof sir madam
    extract text person people user assistant system json schema return answer note
    called named meet
    is am are was were be been has have had do does did will would can could should must
    during despite instead besides recently currently originally eventually together unlike
    earlier soon still yet once again perhaps maybe sometimes often usually never always
    everyone everybody someone somebody nobody nothing everything none neither either such other
    others another outside inside most much more less like indeed overall otherwise nevertheless
    nonetheless therefore thus hence afterwards afterward previously initially ultimately born
    based according following including both let unfortunately fortunately luckily sadly
    colleagues friends students critics officials residents researchers neighbours neighbors
    parents children workers experts visitors members staff
    ask tell look see take give make keep try consider imagine remember think find read watch
    listen check visit enjoy
    """.split()  # noqa: SIM905 - a word list reads (and diffs) better as running text
)
#: the last word of an organisation's or a place's name, never of a person's
_ORG_WORDS = frozenset(
    """
    inc ltd llc corp corporation company co group bank university college school hospital clinic
    institute foundation agency ministry department council association society club museum
    library gallery hotel restaurant cafe airport station street road avenue square park river
    lake mountain city county state republic kingdom traders motors labs systems technologies
    industries partners holdings airlines press times news church cathedral gmbh ag plc
    """.split()  # noqa: SIM905 - as above
)
# Found with str.find, then one anchored match each: a regex alternation scanned over the whole text
# costs more than everything else the simulator does with a text. The same goes for the lookarounds
# that _numbers and _names check by hand below.
_NAME_CUES = (
    "name is", "Name is", "named", "Named", "called", "Called", "I am", "I'm", "I’m",
    "this is", "This is", "meet", "Meet",
)  # fmt: skip
_CUED_NAME = re.compile(r"\s+([A-Z][\w'’-]*(?:\s+[A-Z][\w'’-]*)?)")
_CAPITALISED = re.compile(r"[A-Z][a-z][\w'’-]*(?:[ \t]+[A-Z][a-z][\w'’-]*)*")
_PLACE_BEFORE = frozenset({"in", "at", "from", "to", "near", "for"})
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_AGE_AFTER = ("year", "yr", "y/o", "yo ", "yo,", "yo.")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://[^\s\"'<>)]+")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_WORD = re.compile(r"[A-Za-z][a-z]{3,}")
_LOWER_WORD = re.compile(r"(?<![\w'’-])[a-z][a-z'’-]*")


class Facts:
    """What one text says, each kind read on first use."""

    __slots__ = (
        "_dates",
        "_emails",
        "_entities",
        "_lower",
        "_masked",
        "_names",
        "_numbers",
        "_places",
        "_positions",
        "_urls",
        "_words",
        "text",
    )

    def __init__(self, text: str) -> None:
        self.text = text
        self._lower: str | None = None
        self._masked: str | None = None
        self._emails: tuple[str, ...] | None = None
        self._urls: tuple[str, ...] | None = None
        self._dates: tuple[str, ...] | None = None
        self._numbers: tuple[Number, ...] | None = None
        self._names: tuple[str, ...] | None = None
        self._places: tuple[str, ...] = ()
        self._positions: dict[str, int] = {}
        self._words: tuple[str, ...] | None = None
        self._entities: tuple[Entity, ...] | None = None

    @property
    def lower(self) -> str:
        if self._lower is None:
            self._lower = self.text.lower()
        return self._lower

    @property
    def emails(self) -> tuple[str, ...]:
        if self._emails is None:
            self._emails = tuple(_EMAIL.findall(self.text)) if "@" in self.text else ()
        return self._emails

    @property
    def urls(self) -> tuple[str, ...]:
        if self._urls is None:
            self._urls = tuple(_URL.findall(self.text)) if "://" in self.text else ()
        return self._urls

    @property
    def dates(self) -> tuple[str, ...]:
        if self._dates is None:
            self._dates = tuple(_DATE.findall(self.text)) if "-" in self.text else ()
        return self._dates

    @property
    def masked(self) -> str:
        """The text with e-mails, URLs and dates blanked: their digits and words are not facts."""
        if self._masked is None:
            masked = self.text
            for found in (*self.emails, *self.urls, *self.dates):
                masked = masked.replace(found, " " * len(found))
            self._masked = masked
        return self._masked

    @property
    def numbers(self) -> tuple[Number, ...]:
        if self._numbers is None:
            self._numbers = _numbers(self.masked)
        return self._numbers

    @property
    def names(self) -> tuple[str, ...]:
        """Person names in order of appearance; the ones introduced by a cue ("my name is") first."""
        if self._names is None:
            self._names, self._positions, self._places = _names(self.masked)
        return self._names

    @property
    def places(self) -> tuple[str, ...]:
        """Capitalised words after "in/at/from/to": cities, countries, employers."""
        _ = self.names
        return self._places

    @property
    def words(self) -> tuple[str, ...]:
        """Content words, for filler strings that still come from the text."""
        if self._words is None:
            found = (w for w in _WORD.findall(self.masked) if w.lower() not in _NOT_NAMES)
            self._words = tuple(dict.fromkeys(found))
        return self._words

    @property
    def entities(self) -> tuple[Entity, ...]:
        """One entity per distinct name, each with its own slice of the text (at least one)."""
        if self._entities is None:
            self._entities = _entities(self.text, self.names, self._positions, self.numbers)
        return self._entities


def _numbers(text: str) -> tuple[Number, ...]:
    found = []
    size = len(text)
    for match in _NUMBER.finditer(text):
        start, end = match.span()
        before = text[start - 1] if start else " "
        if before.isalnum() or before in "._" or (end < size and (text[end].isalnum() or text[end] in "_@")):
            continue  # part of a word, an identifier or an address, not a quantity
        raw = match.group()
        value: int | float = float(raw) if "." in raw else int(raw)
        if before == "-" and (start < 2 or not text[start - 2].isalnum()):
            value, start = -value, start - 1
        # "20 years", "20-year-old", "20 yrs", "20 y/o" / "aged 20", "age: 20"
        after = text[end : end + 8].lstrip(" -").lower()
        cue = after.startswith(_AGE_AFTER) or "age" in text[max(0, start - 9) : start].lower()
        found.append(Number(value, start, cue))
    return tuple(found)


def _names(text: str) -> tuple[tuple[str, ...], dict[str, int], tuple[str, ...]]:
    cued: dict[str, int] = {}
    for cue in _NAME_CUES:
        at = text.find(cue)
        while at >= 0:
            match = _CUED_NAME.match(text, at + len(cue))
            if match and (at == 0 or not text[at - 1].isalnum()):
                words = [w for w in match.group(1).split() if w.lower() not in _NOT_NAMES]
                if words:
                    cued.setdefault(" ".join(words), match.start(1))
            at = text.find(cue, at + 1)
    if len(cued) > 1:
        cued = dict(sorted(cued.items(), key=lambda item: item[1]))
    others: dict[str, int] = {}
    places: dict[str, None] = {}
    lowered: frozenset[str] | None = None
    for match in _CAPITALISED.finditer(text):
        if match.group() in cued:
            continue
        start, words = _trimmed(text, match)
        if not words:
            continue
        name = " ".join(words)
        before = text[max(0, start - 6) : start].rpartition(" ")[0].rpartition(" ")[2].lower()
        if before in _PLACE_BEFORE or any(word.lower() in _ORG_WORDS for word in words):
            places.setdefault(name, None)
        elif name not in cued and name not in others:
            if len(words) == 1 and _opens_sentence(text, start):
                # "Colleagues describe her...": a capital that only the sentence gives, when the
                # text writes the word in lower case elsewhere.
                lowered = lowered or frozenset(_LOWER_WORD.findall(text))
                if name.lower() in lowered:
                    continue
            others[name] = start
    found = {**cued, **{name: at for name, at in others.items() if name not in cued}}
    # A part of a longer name is that person again ("Maria" after "Maria Lopez"), not another one.
    kept = {name: at for name, at in found.items() if not _part_of_another(name, found)}
    return tuple(kept), kept, tuple(places)


def _trimmed(text: str, match: re.Match[str]) -> tuple[int, list[str]]:
    """A run of capitalised words without what is not part of a name: (where it starts, its words)."""
    start = match.start()
    words = match.group().split()
    if start and text[start - 1].isalnum():  # "iPhone Tim": the run began inside a word
        start += len(words[0]) + 1
        words.pop(0)
    while words and words[0].lower() in _NOT_NAMES:  # "Hello John" -> "John"
        start += len(words[0]) + 1
        words.pop(0)
    return start, words


def _opens_sentence(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i] in " \t\"'“‘([":
        i -= 1
    return i < 0 or text[i] in ".!?\n:;"


def _part_of_another(name: str, found: dict[str, int]) -> bool:
    words = name.split()
    if len(found) < 2:
        return False
    return any(
        other != name and len(other) > len(name) and all(word in other.split() for word in words)
        for other in found
        if words[0] in other
    )


def age_in(numbers: tuple[Number, ...]) -> Number | None:
    """The number that gives an age: one next to "years" or "aged", else the first whole one under
    130; None when there is neither (a year is no age)."""
    plausible = None
    for number in numbers:
        if number.age_cue:
            return number
        if plausible is None and 0 < number.value < 130 and number.value == int(number.value):
            plausible = number
    return plausible


def _entities(
    text: str, names: tuple[str, ...], positions: dict[str, int], numbers: tuple[Number, ...]
) -> tuple[Entity, ...]:
    if len(names) <= 1:
        return (Entity(names[0] if names else None, text, numbers),)
    # Each person owns the text from their mention to the next person's; the first also owns the
    # lead-in, so "In 2020, John was 20 and Mary 31" gives John both 2020 and 20.
    order = sorted(names, key=positions.__getitem__)
    starts = [0] + [positions[name] for name in order[1:]]
    ends = [*starts[1:], len(text)]
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
