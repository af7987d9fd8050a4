"""The corpus of ``bench/documents.py``: documents about people, with the truth of who is in them.

Each document is filler prose (every sentence opens with a word the simulator knows is no name, and
holds no other capital and no digit) with people mentioned in it: once with their age ("Meet María
Lopez, 34 years old, who ..."), then again further on by their full name. The truth of a document is
every person's name, age and the character span of each mention (every occurrence of the full name,
found in the finished text). The simulator's recogniser (:mod:`corral.sim.text`) finds these people:
names are two capitalised words (hyphens and diacritics inside, but each word's first two letters
ASCII and no apostrophe: its pattern ``[A-Z][a-z]`` reads no other), never after "in", "at",
"from", "to", "near" or "for" (it takes those for places), and none is one of the names its
``--hallucinate`` slips invent (:mod:`corral.sim.slips`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Document", "Person", "make_corpus"]

FIRST = (
    "María", "José", "Zoë", "Sigrún", "Björn", "Chloé", "Jean-Luc", "Anne-Marie", "Kwame", "Priya",
    "Tomasz", "Aiko", "Lucía", "Mateo", "Niamh", "Oskar", "Ravi", "Signe", "Tariq", "Wanjiru",
    "Yusuf", "Agnieszka", "Beatriz", "Dmitri", "Elif", "Farid", "Greta", "Hamid", "Ingrid",
    "Joaquín", "Katarzyna", "Leilani", "Magnus", "Nadia", "Olumide", "Pilar", "Rohan", "Sakura",
    "Thiago", "Vesna", "Wiktor", "Ximena", "Yara", "Zainab", "Amara", "Bogdan", "Catalina",
    "Desmond", "Esther", "Florin", "Gunnhild", "Hiroshi", "Ilse", "Jovana", "Kasimir", "Lorenzo",
    "Mireille", "Nikolai", "Ottilie", "Pawel", "Renata", "Stellan", "Tuomas", "Valentina",
)  # fmt: skip
LAST = (
    "Lopez", "Nuñez", "Schüller", "Kowalczyk", "Okonkwo", "Fitzgerald", "McAllister", "Dubois",
    "Haraldsen", "Petrović", "Sandström", "Tanaka", "Abiodun", "Bergström", "Castillo", "Delacroix",
    "Esposito", "Ferreira", "Gallagher", "Hoffmann", "Ivanova", "Jablonski", "Kaur", "Lindqvist",
    "Mbeki", "Nakamura", "Oduya", "Papadopoulos", "Quispe", "Rahman", "Schäfer", "Takahashi",
    "Uribe", "Virtanen", "Wojtowicz", "Yamamoto", "Zielinski", "Achterberg", "Brannigan", "Coutinho",
    "Dragomir", "Eriksdottir", "Falkenrath", "Gonçalves", "Holmqvist", "Ibarra", "Juvonen",
    "Kettering", "Lacroix-Martin", "Moreau", "Novak", "Ostrowski", "Pellegrini", "Renwick",
    "Santangelo", "Tremblay", "Vasquez", "Wexford", "Zubiri", "Albrecht", "Borowski", "Cavanagh",
)  # fmt: skip

# Filler: every sentence opens with a word corral.sim.text lists as no name, and holds no capital after.
_OPENERS = (
    "The", "This", "That", "These", "However, the", "Meanwhile the", "After that, the", "Although the",
    "Each", "Every", "Some", "Most", "During the night the", "Eventually the", "Overall, the",
    "Still, the", "Perhaps the", "Often the", "Afterwards the", "Since then the", "Because of this the",
    "When the", "While the", "Later the", "Once again the", "Together the",
)  # fmt: skip
_ADJ = (
    "old", "northern", "quiet", "narrow", "muddy", "provisional", "wooden", "crowded", "seasonal",
    "long", "broken", "careful", "second", "small", "heavy", "pale", "open", "local", "rusty", "steady",
)  # fmt: skip
_NOUN = (
    "depot", "ledger", "harbour", "warehouse", "bridge", "survey", "shipment", "orchard", "kitchen",
    "archive", "road", "clinic", "market", "committee", "ferry", "workshop", "schedule", "report",
    "garden", "tunnel", "canal", "budget", "inventory", "engine", "barn", "printing press", "library",
)  # fmt: skip
_VERB = (
    "needed", "delayed", "covered", "replaced", "reached", "ignored", "finished", "carried", "opened",
    "closed", "changed", "blocked", "supplied", "measured", "outlasted", "shadowed", "followed",
)  # fmt: skip
_TAIL = (
    "without much fuss", "along the eastern road", "before the end of the season", "after the rain",
    "with some difficulty", "as everyone had expected", "for most of the week", "despite the cold",
    "once the tide turned", "under a grey sky", "more slowly than planned", "without any warning",
    "twice over", "by the middle of the afternoon", "as the lamps were lit",
)  # fmt: skip
_ROLE = (
    "surveyor", "clerk", "ferry pilot", "baker", "archivist", "mechanic", "nurse", "carpenter",
    "bookkeeper", "harbour master", "teacher", "printer", "gardener", "engineer", "translator",
)  # fmt: skip
_DID = (
    "checked the {noun} twice", "signed the {noun} before noon", "walked along the {adj} {noun}",
    "kept careful notes on the {noun}", "argued that the {noun} should wait", "repaired the {adj} {noun}",
    "counted every crate on the {noun}", "asked about the {adj} {noun}", "locked the {noun} early",
    "read the {noun} aloud", "left the {noun} open", "drew a map of the {adj} {noun}",
)  # fmt: skip
_FIRST_MENTION = (
    "Meet {name}, {age} years old, who {did}.",
    "A {role} named {name}, aged {age}, {did}.",
    "{name}, who is {age} years old, {did}.",
    "The {noun} was looked after by {name}, a {role} of {age} years.",
)
_LATER_MENTION = (
    "{name} {did}.",
    "Later, {name} {did}.",
    "Nobody doubted that {name} {did}.",
    "The notes kept by {name} mentioned the {adj} {noun}.",
    "When asked, {name} said that the {noun} {verb} the {noun2}.",
    "Colleagues said that {name} {did}.",
)


@dataclass
class Person:
    name: str
    age: int
    #: [start, end) of every mention of the full name in the document
    spans: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Document:
    id: str  # the path relative to the corpus folder (corral's record id)
    text: str
    people: list[Person]


def make_corpus(
    folder: Path, *, count: int, big_chars: int, long_chars: int, longs: int, seed: int
) -> list[Document]:
    """``count`` documents in ``folder`` (``.md`` and ``.txt``): one of about ``big_chars`` characters,
    ``longs`` of about ``long_chars``, the rest 1,500-15,000 characters."""
    rng = random.Random(seed)
    sizes = [big_chars] + [long_chars + rng.randint(0, long_chars // 5) for _ in range(longs)]
    sizes += [rng.choice((1_500, 3_000, 5_000, 8_000, 15_000)) for _ in range(count - len(sizes))]
    documents = []
    for number, size in enumerate(sizes[:count]):
        prefix = "big" if number == 0 else "long" if number <= longs else "doc"
        name = f"{prefix}-{number:02d}.{'md' if number % 2 else 'txt'}"
        document = _document(name, size, rng, markdown=name.endswith(".md"))
        (folder / name).write_text(document.text, encoding="utf-8")
        documents.append(document)
    return documents


def _document(name: str, size: int, rng: random.Random, *, markdown: bool) -> Document:
    # About one person per 3,500 characters, each mentioned again two to six times later on.
    people = _people(max(1, size // 3_500), rng)
    paragraphs: list[list[str]] = []
    length = 0
    while length < size:
        sentences = [_filler(rng) for _ in range(rng.randint(3, 7))]
        length += sum(len(s) + 1 for s in sentences) + 1
        paragraphs.append(sentences)
    # Each person first appears (with the age) in a random paragraph, then in later ones.
    for person in people:
        first = rng.randrange(len(paragraphs))
        _insert(paragraphs[first], _mention(_FIRST_MENTION, person, rng), rng)
        for _ in range(rng.randint(2, 6)):
            later = rng.randrange(first, len(paragraphs))
            _insert(paragraphs[later], _mention(_LATER_MENTION, person, rng), rng, after_first=later == first)
    blocks = [" ".join(sentences) for sentences in paragraphs]
    if markdown:  # a section break now and then
        blocks = [b if i % 9 != 8 else f"{b}\n\n* * *" for i, b in enumerate(blocks)]
    text = "\n\n".join(blocks) + "\n"
    for person in people:
        pattern = re.compile(rf"(?<![\w'’-]){re.escape(person.name)}(?![\w'’-])")
        person.spans = [m.span() for m in pattern.finditer(text)]
    return Document(name, text, people)


def _people(count: int, rng: random.Random) -> list[Person]:
    chosen: list[Person] = []
    taken: set[str] = set()
    while len(chosen) < count:
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        if name in taken:
            continue
        taken.add(name)
        chosen.append(Person(name, rng.randint(19, 88)))
    return chosen


def _insert(sentences: list[str], sentence: str, rng: random.Random, *, after_first: bool = False) -> None:
    # A later mention in the paragraph of the first one goes after every sentence already there, so
    # it does not precede the first mention.
    at = len(sentences) if after_first else rng.randint(0, len(sentences))
    sentences.insert(at, sentence)


def _mention(templates: tuple[str, ...], person: Person, rng: random.Random) -> str:
    did = rng.choice(_DID).format(noun=rng.choice(_NOUN), adj=rng.choice(_ADJ))
    return rng.choice(templates).format(
        name=person.name,
        age=person.age,
        did=did,
        role=rng.choice(_ROLE),
        noun=rng.choice(_NOUN),
        noun2=rng.choice(_NOUN),
        adj=rng.choice(_ADJ),
        verb=rng.choice(_VERB),
    )


def _filler(rng: random.Random) -> str:
    return (
        f"{rng.choice(_OPENERS)} {rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.choice(_VERB)} the "
        f"{rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.choice(_TAIL)}."
    )
