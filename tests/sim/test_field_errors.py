"""Field errors: each named field answered wrong with its configured share, schema-valid, by seed.

Answers are checked against what the texts say (the gold a client evaluates against): the texts are
written here, with the names and ages they hold, and a simulator without field errors reads them
right. Every request goes over loopback HTTP.
"""

from __future__ import annotations

import datetime
import json
import random
from typing import Any, Literal

import aiohttp
import jsonschema
import pydantic
import pytest

from corral.errors import ConfigError
from corral.schema import load_spec
from corral.sim import SimConfig, Simulator
from corral.sim.args import add_arguments, config_from_args
from tests._support.chat import JSON, answer_of, chat_body, post
from tests.sim._people import FIRST, LAST


class Someone(pydantic.BaseModel):
    name: str
    age: int | None = None


class Member(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=18, le=70)
    role: Literal["admin", "editor", "viewer"]
    joined: datetime.date
    active: bool
    email: str = pydantic.Field(json_schema_extra={"format": "email"})
    code: str = pydantic.Field(pattern=r"^[A-Z]{3}-\d{3}$")
    steps: int = pydantic.Field(ge=0, le=100, multiple_of=5)
    city: str


PEOPLE = load_spec(list[Someone])  # the "many" shape: {"items": [...]}
MEMBER: JSON = Member.model_json_schema()


def people_text(seed: int) -> tuple[str, list[tuple[str, int]]]:
    """A text naming three to five people with their ages, and what it says of whom."""
    rng = random.Random(seed)
    picked = rng.sample(range(len(FIRST)), rng.randint(3, 5))
    truth = [(f"{FIRST[i]} {LAST[i]}", rng.randint(19, 80)) for i in picked]
    return " ".join(f"{name} is {age} years old." for name, age in truth), truth


def member_text(seed: int) -> str:
    rng = random.Random(seed)
    first, last = FIRST[seed % 40], LAST[(seed * 7) % 40]
    other = f"{FIRST[(seed + 3) % 40]} {LAST[(seed + 5) % 40]}"
    day = datetime.date(2015, 1, 1) + datetime.timedelta(days=rng.randint(0, 3000))
    return (
        f"Meet {first} {last} ({first.lower()}@corp.example), {rng.randint(20, 65)} years old, our new "
        f"{rng.choice(['admin', 'editor', 'viewer'])}, who joined on {day.isoformat()} and lives in "
        f"Lisbon. Her mentor is {other}. Her code: {rng.choice('ABC')}XY-{rng.randint(100, 999)}."
    )


async def answers(
    http: aiohttp.ClientSession, sim: Simulator, schema: JSON, texts: list[str], **extra: Any
) -> list[JSON]:
    out = []
    for text in texts:
        status, reply = await post(http, sim, chat_body("json_schema", schema, text, **extra))
        assert status == 200, reply
        out.append(json.loads(answer_of(reply)))
    return out


async def test_each_field_is_wrong_with_its_share_against_what_the_text_says(
    http: aiohttp.ClientSession,
) -> None:
    texts, truths = zip(*(people_text(i) for i in range(220)), strict=True)
    config = SimConfig(seed=5, field_errors={"age": 0.3, "name": 0.1})
    async with Simulator(SimConfig(seed=5)) as plain, Simulator(config) as erring:
        right = await answers(http, plain, PEOPLE.schema, list(texts))
        given = await answers(http, erring, PEOPLE.schema, list(texts))
    wrong = {"name": 0, "age": 0}
    total = 0
    for truth, clean, answer in zip(truths, right, given, strict=True):
        assert [(p["name"], p["age"]) for p in clean["items"]] == truth, "without errors it reads the text"
        assert len(answer["items"]) == len(truth)
        for (name, age), person in zip(truth, answer["items"], strict=True):
            total += 1
            wrong["name"] += person["name"] != name
            wrong["age"] += person["age"] != age
            if person["age"] != age:
                assert isinstance(person["age"], int) and 1 <= abs(person["age"] - age) <= 5
            if person["name"] != name:
                assert person["name"].strip() and person["name"] != name
    assert total > 800
    assert abs(wrong["age"] / total - 0.3) < 0.06, wrong
    assert abs(wrong["name"] / total - 0.1) < 0.04, wrong


async def test_a_wrong_name_is_another_of_the_text_or_an_invented_one(http: aiohttp.ClientSession) -> None:
    texts, truths = zip(*(people_text(i) for i in range(120)), strict=True)
    async with Simulator(SimConfig(seed=2, field_errors={"name": 1.0})) as sim:
        given = await answers(http, sim, PEOPLE.schema, list(texts))
    from_text = invented = 0
    for text, truth, answer in zip(texts, truths, given, strict=True):
        for (name, age), person in zip(truth, answer["items"], strict=True):
            assert person["name"] != name and person["age"] == age, "only the named field errs"
            others = {other for other, _ in truth if other != name}
            if person["name"] in others:
                from_text += 1
            else:
                invented += 1
                assert not any(word.lower() in text.lower() for word in person["name"].split())
    assert 0.55 < from_text / (from_text + invented) < 0.8  # two times in three another of the text


async def test_star_is_every_field_and_every_value_stays_schema_valid(http: aiohttp.ClientSession) -> None:
    texts = [member_text(i) for i in range(80)]
    async with (
        Simulator(SimConfig(seed=9)) as plain,
        Simulator(SimConfig(seed=9, field_errors={"*": 1.0})) as erring,
    ):
        right = await answers(http, plain, MEMBER, texts)
        given = await answers(http, erring, MEMBER, texts)
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    for text, clean, answer in zip(texts, right, given, strict=True):
        jsonschema.validate(answer, MEMBER, format_checker=checker)
        Member.model_validate(answer)
        assert clean["name"] in text and clean["city"] == "Lisbon" and clean["code"] in text
        assert answer["code"] == clean["code"], "a pattern pins it: no field error can promise to match it"
        for field in ("name", "age", "role", "joined", "active", "email", "steps", "city"):
            assert answer[field] != clean[field], (field, clean, answer)
        assert 1 <= abs(answer["age"] - clean["age"]) <= 5
        assert answer["active"] is (not clean["active"])
        shift = abs(
            datetime.date.fromisoformat(answer["joined"]) - datetime.date.fromisoformat(clean["joined"])
        )
        assert 1 <= shift.days <= 30 or shift.days == 365
        assert answer["steps"] % 5 == 0 and abs(answer["steps"] - clean["steps"]) <= 15


async def test_a_field_of_its_own_overrides_star(http: aiohttp.ClientSession) -> None:
    texts = [member_text(i) for i in range(30)]
    config = SimConfig(seed=9, field_errors={"*": 1.0, "age": 0.0, "role": 0.0})
    async with Simulator(SimConfig(seed=9)) as plain, Simulator(config) as erring:
        right = await answers(http, plain, MEMBER, texts)
        given = await answers(http, erring, MEMBER, texts)
    assert all(a["age"] == r["age"] and a["role"] == r["role"] for a, r in zip(given, right, strict=True))
    assert all(a["name"] != r["name"] for a, r in zip(given, right, strict=True))


async def test_the_same_request_gets_the_same_wrong_values_and_a_reask_does_not_fix_them(
    http: aiohttp.ClientSession,
) -> None:
    texts = [people_text(i)[0] for i in range(40)]
    config = SimConfig(seed=11, field_errors={"age": 0.4, "name": 0.2})
    async with (
        Simulator(config) as one,
        Simulator(config) as other,
        Simulator(SimConfig(seed=12, field_errors=config.field_errors)) as reseeded,
    ):
        first = await answers(http, one, PEOPLE.schema, texts)
        again = await answers(http, one, PEOPLE.schema, texts)
        backwards = await answers(http, other, PEOPLE.schema, texts[::-1])
        elsewhere = await answers(http, reseeded, PEOPLE.schema, texts)
        reasked = []
        for text, answer in zip(texts, first, strict=True):
            body = chat_body("json_schema", PEOPLE.schema, text)
            body["messages"] += [
                {"role": "assistant", "content": json.dumps(answer)},
                {"role": "user", "content": "Check every age and name against the text and answer again."},
            ]
            status, reply = await post(http, one, body)
            assert status == 200
            reasked.append(json.loads(answer_of(reply)))
    assert first == again == backwards[::-1] == reasked
    assert first != elsewhere, "another seed, other wrong values"


def test_field_errors_are_configured_by_name_and_share() -> None:
    parser = __import__("argparse").ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--field-error", "age=0.3", "--field-error", "*=0.1", "--field-error", "age=0.2"]
    )
    assert dict(config_from_args(args).field_errors) == {"age": 0.2, "*": 0.1}
    assert dict(config_from_args(parser.parse_args([])).field_errors) == {}
    for bad in ("age", "=0.3", "age=lots", "age=1.5"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--field-error", bad])
    for shares in ({"age": 1.5}, {"age": -0.1}, {"": 0.1}, {"age": True}):
        with pytest.raises(ConfigError):
            SimConfig(field_errors=shares)
    given = {"age": 0.5}
    config = SimConfig(field_errors=given)
    given["age"] = 0.0
    assert config.field_errors["age"] == 0.5, "the simulator keeps a copy of its own"


def test_a_share_can_be_set_for_one_model() -> None:
    from corral.sim.core import _model_shares

    shares = {"age": 0.2, "name": 0.1, "gpt-4o-mini:age": 0.5, "gpt-4o:name": 0.0}
    assert _model_shares(shares, "gpt-4o-mini") == (("age", 0.5), ("name", 0.1))
    assert _model_shares(shares, "gpt-4o") == (("age", 0.2), ("name", 0.0))
    assert _model_shares(shares, "other") == (("age", 0.2), ("name", 0.1))
