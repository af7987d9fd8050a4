"""Field-level counting through ``evaluate``: small cases whose every count is worked out by hand in
the comments, the scores then computed from those counts in the test."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from corral.errors import ConfigError
from corral.evaluation import Mismatch, Score, evaluate
from tests.evaluation.conftest import Write, gold, out, ratios


class Person(BaseModel):
    name: str
    age: int | None = None


class Team(BaseModel):
    people: list[Person] = []


class Address(BaseModel):
    city: str | None = None
    zip: str | None = None


class Contact(BaseModel):
    name: str | None = None
    address: Address | None = None
    tags: list[str] = []


def counts(score: Score) -> tuple[int, int, int]:
    return score.tp, score.fp, score.fn


def check(score: Score, tp: int, fp: int, fn: int) -> None:
    """The counts are these, and the scores the ones they give."""
    assert counts(score) == (tp, fp, fn)
    precision, recall, f1 = ratios(tp, fp, fn)
    assert (score.precision, score.recall, score.f1) == (
        pytest.approx(precision) if precision is not None else None,
        pytest.approx(recall) if recall is not None else None,
        pytest.approx(f1) if f1 is not None else None,
    )


def test_entities_out_of_order_one_missing_one_value_wrong(write: Write) -> None:
    # Gold: Alice 30, Bob 40, Carol 50. Output: Bob 40, Alice 31 (another order, Alice's age wrong).
    # Pairs: output Bob-gold Bob (both equal), output Alice-gold Alice (name equal); Carol unpaired.
    #   name: Bob TP, Alice TP, Carol FN                       -> TP 2, FP 0, FN 1
    #   age:  Bob TP, Alice 31 vs 30 FP+FN, Carol 50 FN        -> TP 1, FP 1, FN 2
    #   overall                                                -> TP 3, FP 1, FN 3
    people = [{"name": "Alice", "age": 30}, {"name": "Bob", "age": 40}, {"name": "Carol", "age": 50}]
    ev = evaluate(
        write(
            "out.jsonl", [out("1", {"people": [{"name": "Bob", "age": 40}, {"name": "Alice", "age": 31}]})]
        ),
        write("gold.jsonl", [gold("1", {"people": people})]),
        Team,
        bootstrap=0,
    )
    assert list(ev.fields) == ["people[].name", "people[].age"]
    check(ev.fields["people[].name"], 2, 0, 1)
    check(ev.fields["people[].age"], 1, 1, 2)
    check(ev.overall, 3, 1, 3)
    assert ev.overall.precision == 3 / 4 and ev.overall.recall == 3 / 6 and ev.overall.f1 == 6 / 10
    (item,) = ev.items
    assert item.status == "matched"
    check(item.score, 3, 1, 3)
    assert item.mismatches == (
        Mismatch("people[1].age", 31, 30),  # the output's second person
        Mismatch("people[].name", None, "Carol"),  # no output person: no index
        Mismatch("people[].age", None, 50),
    )


def test_an_extra_output_entity_is_false_positive_for_each_of_its_values(write: Write) -> None:
    # Output: Ann 20, Zed 99; gold: Ann 20. Zed shares nothing with anyone: unpaired, both leaves FP.
    ev = evaluate(
        write("out.jsonl", [out("1", {"people": [{"name": "Ann", "age": 20}, {"name": "Zed", "age": 99}]})]),
        write("gold.jsonl", [gold("1", {"people": [{"name": "Ann", "age": 20}]})]),
        Team,
        bootstrap=0,
    )
    check(ev.fields["people[].name"], 1, 1, 0)
    check(ev.fields["people[].age"], 1, 1, 0)
    assert ev.items[0].mismatches == (
        Mismatch("people[1].name", "Zed", None),
        Mismatch("people[1].age", 99, None),
    )


def test_entities_sharing_no_value_are_not_paired(write: Write) -> None:
    # Output Ann 1, gold Bob 2: nothing equal, so no pair: 2 FP and 2 FN (not 2 wrong values).
    # Were they paired the counts would be the same, but the mismatches would read as one entity.
    ev = evaluate(
        write("out.jsonl", [out("1", {"people": [{"name": "Ann", "age": 1}]})]),
        write("gold.jsonl", [gold("1", {"people": [{"name": "Bob", "age": 2}]})]),
        Team,
        bootstrap=0,
    )
    check(ev.overall, 0, 2, 2)
    assert ev.items[0].mismatches == (
        Mismatch("people[0].name", "Ann", None),
        Mismatch("people[0].age", 1, None),
        Mismatch("people[].name", None, "Bob"),
        Mismatch("people[].age", None, 2),
    )


class City(BaseModel):
    name: str
    age: int
    city: str


class Town(BaseModel):
    people: list[City] = []


def test_list_keys_pair_by_key_before_likeness(write: Write) -> None:
    # Output: A/1/X. Gold: A/2/Y and B/1/X.
    # By likeness: with B/1/X it shares age and city (F1 of the pair 2·2/(4+1+1) = 0.67), with A/2/Y
    # only the name (2·1/(2+2+2) = 0.33): paired with B. Name FP+FN, age TP, city TP; A/2/Y all FN.
    #   name: TP 0, FP 1, FN 2; age: TP 1, FP 0, FN 1; city: TP 1, FP 0, FN 1.
    # Keyed by name: paired with A/2/Y. Name TP, age FP+FN, city FP+FN; B/1/X all FN.
    #   name: TP 1, FP 0, FN 1; age: TP 0, FP 1, FN 2; city: TP 0, FP 1, FN 2.
    output = write("out.jsonl", [out("1", {"people": [{"name": "A", "age": 1, "city": "X"}]})])
    truth = [{"name": "A", "age": 2, "city": "Y"}, {"name": "B", "age": 1, "city": "X"}]
    golds = write("gold.jsonl", [gold("1", {"people": truth})])
    alike = evaluate(output, golds, Town, bootstrap=0)
    assert [counts(alike.fields[f"people[].{f}"]) for f in ("name", "age", "city")] == [
        (0, 1, 2),
        (1, 0, 1),
        (1, 0, 1),
    ]
    keyed = evaluate(output, golds, Town, bootstrap=0, list_keys={"people": ("name",)})
    assert [counts(keyed.fields[f"people[].{f}"]) for f in ("name", "age", "city")] == [
        (1, 0, 1),
        (0, 1, 2),
        (0, 1, 2),
    ]


def test_equal_keys_outweigh_likeness_without_keys(write: Write) -> None:
    # Output: A/1/X and (no name)/2/Y. Gold: A/2/Y.
    # By likeness, gold A/2/Y is the nameless one's (age and city equal: 2·2/(4+0+1) = 0.8) rather
    # than A/1/X's (the name only: 2·1/(2+2+2) = 0.33). Keyed by name, A and A pair first.
    #   keyed: name TP; age FP+FN; city FP+FN; the nameless one FP for age and city.
    #   name: TP 1, FP 0, FN 0; age: TP 0, FP 2, FN 1; city: TP 0, FP 2, FN 1.
    output = write(
        "out.jsonl",
        [out("1", {"people": [{"name": "A", "age": 1, "city": "X"}, {"name": None, "age": 2, "city": "Y"}]})],
    )
    golds = write("gold.jsonl", [gold("1", {"people": [{"name": "A", "age": 2, "city": "Y"}]})])
    schema = {
        "type": "object",
        "properties": {
            "people": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": ["string", "null"]}, "age": {"type": "integer"},
                                   "city": {"type": "string"}},
                },
            }
        },
    }  # fmt: skip
    alike = evaluate(output, golds, schema, bootstrap=0)
    # by likeness: name FN (gold A vs none) and FP (output A unpaired); age, city: TP 1, FP 1
    assert [counts(alike.fields[f"people[].{f}"]) for f in ("name", "age", "city")] == [
        (0, 1, 1),
        (1, 1, 0),
        (1, 1, 0),
    ]
    keyed = evaluate(output, golds, schema, bootstrap=0, list_keys={"people": ["name"]})
    assert [counts(keyed.fields[f"people[].{f}"]) for f in ("name", "age", "city")] == [
        (1, 0, 0),
        (0, 2, 1),
        (0, 2, 1),
    ]


def test_list_keys_never_pair_entities_whose_keys_differ(write: Write) -> None:
    # Output Alice 30, gold Alicia 30: alike (age), so paired without keys: name FP+FN, age TP.
    # Keyed by name they are two people: output Alice's leaves FP (2), gold Alicia's FN (2).
    output = write("out.jsonl", [out("1", {"people": [{"name": "Alice", "age": 30}]})])
    golds = write("gold.jsonl", [gold("1", {"people": [{"name": "Alicia", "age": 30}]})])
    check(evaluate(output, golds, Team, bootstrap=0).overall, 1, 1, 1)
    check(evaluate(output, golds, Team, bootstrap=0, list_keys={"people[]": ["name"]}).overall, 0, 2, 2)


def test_list_keys_name_a_list_of_objects_of_the_schema(write: Write) -> None:
    output = write("out.jsonl", [out("1", {"people": []})])
    golds = write("gold.jsonl", [gold("1", {"people": []})])
    with pytest.raises(ConfigError, match=r"'persons', which is not a list of objects.*people"):
        evaluate(output, golds, Team, list_keys={"persons": ("name",)})
    with pytest.raises(ConfigError, match="'nom'"):
        evaluate(output, golds, Team, list_keys={"people": ("nom",)})


def test_missing_extra_and_errored_items(write: Write) -> None:
    # Gold 1..4. Output: 1 right, 2 an error, 4 right (written otherwise), 5 (no gold); 3 absent.
    #   1: name TP, age TP.    2: error -> name FN, age FN.    3: missing -> name FN (its age is null).
    #   4: "ALICE  smith" is "Alice Smith"; 42.0 is 42 -> name TP, age TP.    5: extra, not scored.
    #   name: TP 2, FP 0, FN 2; age: TP 2, FP 0, FN 1; overall TP 4, FP 0, FN 3.
    output = write(
        "out.jsonl",
        [
            out("1", {"name": "Bob", "age": 7}),
            # an error that kept a partial output: still an error, its output not scored
            {
                "id": "2",
                "input": "t",
                "output": {"name": "Cy"},
                "error": {"kind": "invalid_output", "message": "no"},
            },
            out("5", {"name": "Eve", "age": 1}),
            out("4", {"name": "ALICE  smith", "age": 42.0}),
        ],
    )
    golds = write(
        "gold.jsonl",
        [
            gold("1", {"name": "Bob", "age": 7}),
            gold("2", {"name": "Cy", "age": 3}),
            gold("3", {"name": "Di", "age": None}),
            gold("4", {"name": "Alice Smith", "age": 42}),
        ],
    )
    ev = evaluate(output, golds, Person, bootstrap=0)
    check(ev.fields["name"], 2, 0, 2)
    check(ev.fields["age"], 2, 0, 1)
    check(ev.overall, 4, 0, 3)
    assert ev.missing == ("3",) and ev.extra == ("5",) and ev.errored == ("2",)
    assert [(i.id, i.status) for i in ev.items] == [
        ("1", "matched"),
        ("2", "error"),
        ("3", "missing"),
        ("4", "matched"),
        ("5", "extra"),
    ]
    check(ev.items[1].score, 0, 0, 2)
    assert ev.items[1].mismatches == (Mismatch("name", None, "Cy"), Mismatch("age", None, 3))
    check(ev.items[4].score, 0, 0, 0)  # listed, not scored
    # macro: the mean of name's and age's scores
    name, age = ratios(2, 0, 2), ratios(2, 0, 1)
    assert ev.macro.f1 == pytest.approx((name[2] or 0) / 2 + (age[2] or 0) / 2)
    assert ev.macro.recall == pytest.approx((0.5 + 2 / 3) / 2) and ev.macro.fields == 2


def test_nested_fields_by_path(write: Write) -> None:
    # Item 1: city equal (case, spaces), zip only in the output -> city TP; zip FP.
    # Item 2: the output has no address, the gold a city -> city FN. Names: TP, TP.
    # Item 3: address an object in gold, the output says "Oslo" in the name only -> name FP+FN, city FN.
    output = write(
        "out.jsonl",
        [
            out("1", {"name": "A", "address": {"city": " oslo ", "zip": "0150"}}),
            out("2", {"name": "B", "address": None}),
            out("3", {"name": "Oslo", "address": None}),
        ],
    )
    golds = write(
        "gold.jsonl",
        [
            gold("1", {"name": "A", "address": {"city": "Oslo"}}),
            gold("2", {"name": "B", "address": {"city": "Bergen", "zip": None}}),
            gold("3", {"name": "C", "address": {"city": "Oslo"}}),
        ],
    )
    ev = evaluate(output, golds, Contact, bootstrap=0)
    assert list(ev.fields) == ["name", "address.city", "address.zip"]
    check(ev.fields["name"], 2, 1, 1)
    check(ev.fields["address.city"], 1, 0, 2)
    check(ev.fields["address.zip"], 0, 1, 0)
    assert ev.fields["address.zip"].recall is None  # nothing to find: undefined, not 0 or 1


def test_lists_of_scalars_are_multisets(write: Write) -> None:
    # Output [a, B, b, c], gold [b, A, d]: a=A TP, one b TP, the other b FP, c FP, d FN.
    ev = evaluate(
        write("out.jsonl", [out("1", {"tags": ["a", "B", "b", "c"]})]),
        write("gold.jsonl", [gold("1", {"tags": ["b", "A", "d"]})]),
        Contact,
        bootstrap=0,
    )
    check(ev.fields["tags[]"], 2, 2, 1)
    assert ev.items[0].mismatches == (
        Mismatch("tags[2]", "b", None),
        Mismatch("tags[3]", "c", None),
        Mismatch("tags[]", None, "d"),
    )


def test_a_many_schema_is_a_list_of_entities_at_the_root(write: Write) -> None:
    # Output [Bo 3, Al 1], gold [Al 1, Bo 4]: names TP TP; ages Al TP, Bo FP+FN.
    ev = evaluate(
        write("out.jsonl", [out("1", [{"name": "Bo", "age": 3}, {"name": "Al", "age": 1}])]),
        write("gold.jsonl", [gold("1", [{"name": "Al", "age": 1}, {"name": "Bo", "age": 4}])]),
        list[Person],
        bootstrap=0,
        list_keys={"": ("name",)},
    )
    assert list(ev.fields) == ["[].name", "[].age"]
    check(ev.fields["[].name"], 2, 0, 0)
    check(ev.fields["[].age"], 1, 1, 1)
    assert ev.items[0].mismatches == (Mismatch("[0].age", 3, 4),)


def test_nested_entity_lists_are_paired_inside_their_pair(write: Write) -> None:
    schema = {
        "type": "object",
        "properties": {
            "teams": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "team": {"type": "string"},
                        "members": {"type": "array", "items": {"$ref": "#/$defs/M"}},
                    },
                },
            }
        },
        "$defs": {"M": {"type": "object", "properties": {"who": {"type": "string"}}}},
    }
    # Output: red [x, y], blue [z]. Gold: blue [z, w], red [y]. Teams pair by likeness (red-red,
    # blue-blue); inside red: y TP, x FP; inside blue: z TP, w FN.
    mine = [
        {"team": "red", "members": [{"who": "x"}, {"who": "y"}]},
        {"team": "blue", "members": [{"who": "z"}]},
    ]
    theirs = [
        {"team": "Blue", "members": [{"who": "z"}, {"who": "w"}]},
        {"team": "Red", "members": [{"who": "y"}]},
    ]
    output = write("out.jsonl", [out("1", {"teams": mine})])
    ev = evaluate(output, write("gold.jsonl", [gold("1", {"teams": theirs})]), schema, bootstrap=0)
    check(ev.fields["teams[].team"], 2, 0, 0)
    check(ev.fields["teams[].members[].who"], 2, 1, 1)
    assert set(ev.items[0].mismatches) == {
        Mismatch("teams[0].members[0].who", "x", None),
        Mismatch("teams[1].members[].who", None, "w"),
    }


def test_a_schema_that_does_not_say_is_read_from_the_values(write: Write) -> None:
    schema = {"type": "object", "properties": {"extra": {}}}  # anything at all
    # extra: {"a": 1, "b": [1, 2]} against {"a": "1", "b": [2, 3]}: a is 1 vs "1" (no schema says
    # number: a number and a string differ) FP+FN; b is a multiset: the 2s TP, 1 FP, 3 FN.
    ev = evaluate(
        write("out.jsonl", [out("1", {"extra": {"a": 1, "b": [1, 2]}})]),
        write("gold.jsonl", [gold("1", {"extra": {"a": "1", "b": [2, 3]}})]),
        schema,
        bootstrap=0,
    )
    check(ev.fields["extra.a"], 0, 1, 1)
    check(ev.fields["extra.b[]"], 1, 1, 1)


def test_values_of_different_kinds_have_nothing_in_common(write: Write) -> None:
    # address: an object in the output, a string in the gold (gold is not validated): the output's
    # address.city is FP, the gold's address FN. extra (any schema): {"a": "1"} against ["1"]:
    # extra.a FP, extra[] FN.
    schema = {
        "type": "object",
        "properties": {
            "address": {"type": "object", "properties": {"city": {"type": "string"}}},
            "extra": {},
        },
    }
    ev = evaluate(
        write("out.jsonl", [out("1", {"address": {"city": "Oslo"}, "extra": {"a": "1"}})]),
        write("gold.jsonl", [gold("1", {"address": "Oslo", "extra": ["1"]})]),
        schema,
        bootstrap=0,
    )
    assert {f: counts(s) for f, s in ev.fields.items()} == {
        "address.city": (0, 1, 0),
        "address": (0, 0, 1),
        "extra.a": (0, 1, 0),
        "extra[]": (0, 0, 1),
    }


class Flat(BaseModel):
    a: str | None = None
    b: int | None = None
    c: bool | None = None


def test_flat_records_against_an_independent_count(write: Write) -> None:
    """Random flat records, missing and errored items: every field's counts as a plain loop counts them."""
    rng = random.Random(7)
    pools: dict[str, list[Any]] = {"a": ["x", "y", None], "b": [1, 2, None], "c": [True, False, None]}
    golds, outputs = [], []
    expected = {f: [0, 0, 0] for f in pools}
    for n in range(60):
        truth = {f: rng.choice(values) for f, values in pools.items()}
        golds.append(gold(str(n), truth))
        fate = rng.random()
        if fate < 0.1:
            got = None  # missing
        elif fate < 0.2:
            got = None
            outputs.append(
                {"id": str(n), "input": "", "output": None, "error": {"kind": "x", "message": "x"}}
            )
        else:
            got = {f: rng.choice(values) for f, values in pools.items()}
            outputs.append(out(str(n), got))
        for f in pools:
            mine, theirs = (got or {}).get(f), truth[f]
            if mine is not None and mine == theirs:
                expected[f][0] += 1
            else:
                expected[f][1] += mine is not None
                expected[f][2] += theirs is not None
    ev = evaluate(write("out.jsonl", outputs), write("gold.jsonl", golds), Flat, bootstrap=0)
    assert {f: list(counts(s)) for f, s in ev.fields.items()} == {f: c for f, c in expected.items() if any(c)}
    assert counts(ev.overall) == tuple(sum(c[k] for c in expected.values()) for k in range(3))


def test_the_schema_as_a_file(write: Write, tmp_path: Path) -> None:
    # A JSON Schema file whose root is an array: many entities, paths under [].
    # Output [x, y], gold [y]: y TP, x FP (nothing in common with y: unpaired).
    schema = tmp_path / "thing.json"
    schema.write_text(
        json.dumps({"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}})
    )
    model = tmp_path / "model.py"
    model.write_text("from pydantic import BaseModel\n\n\nclass Thing(BaseModel):\n    k: str\n")
    output = write("out.jsonl", [out("1", [{"k": "x"}, {"k": "y"}])])
    golds = write("gold.jsonl", [gold("1", [{"k": "y"}])])
    assert counts(evaluate(output, golds, str(schema), bootstrap=0).fields["[].k"]) == (1, 1, 0)
    # A pydantic class named by its file: "Y" is "y".
    single = write("out1.jsonl", [out("1", {"k": "y"})])
    ev = evaluate(single, write("g1.jsonl", [gold("1", {"k": "Y"})]), f"{model}:Thing", bootstrap=0)
    assert counts(ev.fields["k"]) == (1, 0, 0)
