"""Answers read from a document's chunk: every person of a long text once, with their own values, and
the values a model gets wrong on purpose (hallucinated, misplaced) with the shares configured.

A value is classified the way a client grounds it: found exactly, found once both sides are folded
(case, whitespace, quotes and dashes, diacritics), found fuzzily (a one-letter typo), or absent.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections import Counter
from typing import Any

import aiohttp
import jsonschema
import pydantic
import pytest
from rapidfuzz import fuzz

from corral.schema import load_spec
from corral.sim import SimConfig, Simulator
from corral.sim.answers import Filler
from corral.sim.hashing import step
from corral.sim.slips import Slips
from corral.sim.text import Facts
from tests._support.chat import JSON, answer_of, chat_body, post
from tests.sim._people import document


class Someone(pydantic.BaseModel):
    name: str
    age: int | None = None


PEOPLE = load_spec(list[Someone])  # the "many" shape: {"items": [...]}
#: a list of people under a key of its own, beside other fields
ROSTER: JSON = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "staff": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"full_name": {"type": "string"}, "age": {"type": ["integer", "null"]}},
                "required": ["full_name", "age"],
            },
        },
    },
    "required": ["title", "staff"],
}
_STRAIGHT = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-"})


def fold(text: str) -> str:
    """What a normalising search compares: no diacritics, one case, straight quotes, single spaces."""
    stripped = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", stripped.translate(_STRAIGHT).casefold()).strip()


def found(value: str, text: str) -> str:
    """How a client finds ``value`` in ``text``: "exact", "normalised", "fuzzy" or "absent"."""
    if value in text:
        return "exact"
    if fold(value) in fold(text):
        return "normalised"
    if fuzz.partial_ratio(fold(value), fold(text), score_cutoff=85):
        return "fuzzy"
    return "absent"


async def people_in(http: aiohttp.ClientSession, sim: Simulator, text: str, mode: str = "json_schema") -> Any:
    status, reply = await post(http, sim, chat_body(mode, PEOPLE.schema, text))
    assert status == 200
    return PEOPLE.parse(answer_of(reply))


# --- long chunks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["tools", "json_schema", "json_object"])
async def test_a_long_chunk_lists_each_person_once_with_their_own_values(
    sim: Simulator, http: aiohttp.ClientSession, mode: str
) -> None:
    text, figures = document(40)
    assert len(text) >= 16_000
    people = await people_in(http, sim, text, mode)
    assert [(p.name, p.age) for p in people] == [(f.name, f.age) for f in figures]


async def test_a_list_of_people_under_its_own_key_reads_the_same(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    text, figures = document(40, seed=2)
    status, reply = await post(http, sim, chat_body("tools", ROSTER, text))
    assert status == 200
    staff = [(p["full_name"], p["age"]) for p in json.loads(answer_of(reply))["staff"]]
    assert staff == [(f.name, f.age) for f in figures]


def test_a_long_chunk_is_answered_in_milliseconds() -> None:
    text, _ = document(40)
    filler = Filler(PEOPLE.schema)
    took = []
    for n in range(5):  # fresh texts: the answer cache must not do the work
        start = time.perf_counter()
        filler.answer(text + " " * n)
        took.append(time.perf_counter() - start)
    assert min(took) < 0.05, f"{min(took) * 1000:.1f} ms for {len(text)} characters and 40 people"


# --- hallucinated and misplaced values ----------------------------------------------------------------


async def test_hallucinated_names_are_nowhere_in_the_text(http: aiohttp.ClientSession) -> None:
    text, figures = document(40)
    async with Simulator(SimConfig(hallucinate=1.0)) as sim:
        people = await people_in(http, sim, text)
    assert len(people) == 40
    for person, figure in zip(people, figures, strict=True):
        assert found(person.name, text) == "absent", person.name
        assert len(person.name.split()) == 2, "a plausible full name"
        assert person.age == figure.age, "numbers are not strings: they do not slip"


async def test_misplaced_names_are_found_only_by_a_normalised_or_fuzzy_search(
    http: aiohttp.ClientSession,
) -> None:
    text, figures = document(40)
    async with Simulator(SimConfig(misplace=1.0)) as sim:
        people = await people_in(http, sim, text)
    ways = Counter(found(p.name, text) for p in people)
    assert set(ways) <= {"normalised", "fuzzy"} and ways["normalised"] and ways["fuzzy"], ways
    for person, figure in zip(people, figures, strict=True):
        assert person.name != figure.name
        assert fuzz.ratio(fold(person.name), fold(figure.name)) >= 85, (person.name, figure.name)


async def test_the_shares_hold_over_many_values_and_repeat_for_a_seed(http: aiohttp.ClientSession) -> None:
    texts = [document(40, seed=n)[0] for n in range(10)]
    config = SimConfig(seed=7, hallucinate=0.2, misplace=0.3)
    async with Simulator(config) as sim:
        answers = [await people_in(http, sim, text) for text in texts]
    ways = Counter(found(p.name, text) for text, people in zip(texts, answers, strict=True) for p in people)
    total = sum(ways.values())
    assert total == 400
    assert abs(ways["absent"] / total - 0.2) < 0.07, ways
    assert abs((ways["normalised"] + ways["fuzzy"]) / total - 0.3) < 0.07, ways
    assert abs(ways["exact"] / total - 0.5) < 0.07, ways
    async with Simulator(config) as again:
        assert [await people_in(http, again, text) for text in texts[:3]] == answers[:3]
    async with Simulator(SimConfig(seed=8, hallucinate=0.2, misplace=0.3)) as other:
        assert [await people_in(http, other, text) for text in texts[:3]] != answers[:3]


class Record(pydantic.BaseModel):
    name: str
    city: str
    email: str | None = None
    status: str = pydantic.Field(json_schema_extra={"enum": ["active", "retired"]})
    since: str = pydantic.Field(json_schema_extra={"format": "date"})
    code: str = pydantic.Field(pattern=r"^[A-Z][a-z]+$")
    summary: str


async def test_slips_leave_what_the_schema_pins_alone(http: aiohttp.ClientSession) -> None:
    schema = Record.model_json_schema()
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    # The simulator does not write strings to a pattern (it never did): checked apart, not validated.
    unpinned = {**schema, "properties": {**schema["properties"], "code": {"type": "string"}}}
    text = "Our active member Jane Doe (jane@corp.com) lives in Berlin since 2021-03-04. She is retired."
    async with Simulator(SimConfig(hallucinate=0.5, misplace=0.5)) as sim:
        for n in range(30):
            status, reply = await post(http, sim, chat_body("json_schema", schema, f"{text} ({n})"))
            assert status == 200
            value = json.loads(answer_of(reply))
            jsonschema.validate(value, unpinned, format_checker=checker)
            assert value["status"] in ("active", "retired") and value["since"] == "2021-03-04"
            plain = json.loads(Filler(schema).answer(f"{text} ({n})"))
            assert value["code"] == plain["code"], "a pattern pins it: it never slips"
            assert value["email"] is None or "@" in value["email"]
            assert found(value["name"], text) != "exact", "every free string slipped one way or the other"


@pytest.mark.parametrize(
    ("text", "value", "ways"),
    [
        ("The pub belongs to Seán O’Brien—landlord since 1999.", "Seán O’Brien", {"normalised", "fuzzy"}),
        ("We met José Álvarez at the station.", "José Álvarez", {"normalised", "fuzzy"}),
        ("Her name is Anna Maria  Ferreira.", "Anna Maria  Ferreira", {"normalised", "fuzzy"}),
        ("Signed: Bartholomew", "Bartholomew", {"normalised", "fuzzy"}),
        # Both recasings are in the text already: a change must still leave it, another way.
        ("Maria Lopez, also MARIA LOPEZ and maria lopez.", "Maria Lopez", {"normalised", "fuzzy"}),
        ("Signed: Bo", "Bo", {"normalised"}),
    ],
)
def test_each_way_of_miscopying_fails_an_exact_search_only(text: str, value: str, ways: set[str]) -> None:
    facts = Facts(text)
    slips = Slips(misplace=1.0)
    seen: Counter[str] = Counter()
    for h in range(200):
        changed = slips.apply(value, step(h, 1), facts, "name")
        seen[found(changed, text)] += 1
        assert changed not in text
    assert set(seen) <= ways and len(seen) == len(ways), seen


def test_the_miscopies_include_each_kind_a_model_makes() -> None:
    text = "Seán O’Brien and Anna Maria  Ferreira met Bartholomew Stone."
    facts, slips = Facts(text), Slips(misplace=1.0)
    values = ("Seán O’Brien", "Anna Maria  Ferreira", "Bartholomew Stone")
    made = {slips.apply(value, step(h, 2), facts, "name") for h in range(400) for value in values}
    assert "seán o’brien" in made or "SEÁN O’BRIEN" in made  # case
    assert "Seán O'Brien" in made  # a curly quote straightened
    assert "Sean O’Brien" in made  # a diacritic dropped
    assert "Anna Maria Ferreira" in made  # whitespace collapsed
    assert "Bartholomew  Stone" in made  # whitespace doubled
    assert any(len(m) == len(values[2]) - 1 and m.startswith("B") for m in made)  # a letter left out


def test_a_hallucination_keeps_to_the_kind_of_value() -> None:
    text = "Maria Lopez, 34, lives in Lisbon and works on the annual report."
    facts, slips = Facts(text), Slips(hallucinate=1.0)
    for h in range(50):
        name, city = slips.apply("Maria Lopez", h, facts, "name"), slips.apply("Lisbon", h, facts, "place")
        age, summary = slips.apply("34", h, facts, "age"), slips.apply("annual report", h, facts, "text")
        assert all(found(value, text) == "absent" for value in (name, city, summary)), (name, city, summary)
        assert age.isdigit() and len(age) == 2 and age not in text
        assert not {word.lower() for word in name.split()} & {"maria", "lopez"}
    assert Slips(seed=1, hallucinate=1.0).apply("Maria Lopez", 5, facts, "name") != slips.apply(
        "Maria Lopez", 5, facts, "name"
    ), "another seed, another invention"
