"""Merging chunk answers: lists joined without repeats, objects field by field, scalars by a rule
that lists every disagreement instead of dropping it."""

from __future__ import annotations

from typing import Any

from corral.documents._merging import Conflict, merge


def test_lists_are_joined_in_document_order_without_repeats() -> None:
    answers = [
        {"people": ["Alice Smith", "Bob"]},
        {"people": ["bob", "Carol", "ALICE  SMITH"]},
        {"people": []},
        None,
    ]
    assert merge(answers).value == {"people": ["Alice Smith", "Bob", "Carol"]}


def test_list_entries_that_share_their_key_fields_merge_into_one() -> None:
    answers = [
        {"people": [{"name": "Alice", "age": 30, "city": None}]},
        {"people": [{"name": "alice", "age": None, "city": "Oslo"}, {"name": "Bob", "age": 4, "city": None}]},
    ]
    merged = merge(answers, keys={"people": ["name"]})
    assert merged.value == {
        "people": [{"name": "Alice", "age": 30, "city": "Oslo"}, {"name": "Bob", "age": 4, "city": None}]
    }
    assert merged.conflicts == []


def test_without_keys_objects_are_the_same_only_when_every_field_is() -> None:
    answers = [
        {"items": [{"sku": "A1", "qty": 2}]},
        {"items": [{"sku": "a1", "qty": 2.0}, {"sku": "A1", "qty": 3}]},
    ]
    assert merge(answers).value == {"items": [{"sku": "A1", "qty": 2}, {"sku": "A1", "qty": 3}]}


def test_a_scalar_keeps_the_first_answer_and_lists_the_others_as_conflicts() -> None:
    answers = [{"title": None, "year": 2024}, {"title": "Annual Report", "year": 2023}, {"year": 2024.0}]
    merged = merge(answers)
    assert merged.value == {"title": "Annual Report", "year": 2024}
    assert merged.conflicts == [Conflict("year", 2024, (2023,))]


def test_a_grounded_scalar_wins_over_an_ungrounded_one_that_came_first() -> None:
    answers = [{"ceo": "Jane Invented"}, {"ceo": "John Real"}]

    def grounded(path: str, value: Any) -> bool:
        return bool(value == "John Real")

    merged = merge(answers, grounded=grounded)
    assert merged.value == {"ceo": "John Real"}
    assert merged.conflicts == [Conflict("ceo", "John Real", ("Jane Invented",))]


def test_nested_lists_of_objects_merge_by_their_own_keys_and_the_result_is_stable() -> None:
    answers = [
        {"orders": [{"id": "1", "lines": [{"sku": "X", "qty": 1}]}]},
        {"orders": [{"id": "1", "lines": [{"sku": "x", "qty": 1}, {"sku": "Y", "qty": 2}]}]},
    ]
    keys = {"orders": ["id"], "orders.lines": ["sku"]}
    once = merge(answers, keys=keys)
    assert once.value == {"orders": [{"id": "1", "lines": [{"sku": "X", "qty": 1}, {"sku": "Y", "qty": 2}]}]}
    assert merge([once.value, *answers], keys=keys).value == once.value


def test_nothing_is_invented_when_every_chunk_found_nothing() -> None:
    assert merge([None, None]).value is None
    assert merge([{"a": None}, {"a": None}]).value == {"a": None}
    assert merge([]).value is None
