from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from corral import OutputInvalid, SchemaError, load_spec
from corral.schema import strictify


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    city: str
    zip: str | None = None


class Customer(BaseModel):
    name: str
    tier: Literal["free", "pro"]
    favourite: Color
    addresses: list[Address]
    note: str | None = None


class WithDefault(BaseModel):
    name: str
    count: int = 3


def test_pydantic_spec_is_built_once_per_model() -> None:
    assert load_spec(Customer) is load_spec(Customer)
    assert load_spec(Customer, many=True) is load_spec(list[Customer])


def test_parse_returns_model_and_dumps_json() -> None:
    spec = load_spec(Customer)
    value = spec.parse('{"name":"Ada","tier":"pro","favourite":"red","addresses":[{"city":"Paris"}]}')
    assert isinstance(value, Customer)
    assert value.favourite is Color.RED
    assert spec.dump(value)["addresses"] == [{"city": "Paris", "zip": None}]


def test_problems_name_the_field() -> None:
    spec = load_spec(Customer)
    with pytest.raises(OutputInvalid) as caught:
        spec.parse('{"name":"Ada","tier":"gold","favourite":"red","addresses":[{}]}')
    problems = caught.value.problems
    assert any(p.startswith("tier:") and "'gold'" in p for p in problems)
    assert any(p.startswith("addresses.0.city:") for p in problems)


def test_invalid_json_is_reported() -> None:
    with pytest.raises(OutputInvalid, match="Invalid JSON"):
        load_spec(Customer).parse('{"name": "Ada", ')


def test_many_wraps_in_items_and_returns_list() -> None:
    spec = load_spec(list[Address])
    assert spec.many
    assert spec.schema["required"] == ["items"]
    value = spec.parse('{"items":[{"city":"Oslo"},{"city":"Rome","zip":"00100"}]}')
    assert [a.city for a in value] == ["Oslo", "Rome"]
    assert spec.dump(value)[1] == {"city": "Rome", "zip": "00100"}


def test_strict_schema_when_faithful() -> None:
    strict = load_spec(Customer).strict_schema
    assert strict is not None
    assert strict["additionalProperties"] is False
    assert set(strict["required"]) == {"name", "tier", "favourite", "addresses", "note"}
    address = strict["$defs"]["Address"]
    assert address["required"] == ["city", "zip"]
    assert "default" not in address["properties"]["zip"]


def test_no_strict_schema_when_a_default_would_be_lost() -> None:
    assert load_spec(WithDefault).strict_schema is None
    assert strictify({"type": "object", "additionalProperties": {"type": "string"}}) is None


def test_file_and_module_specs(examples: Path) -> None:
    spec = load_spec(f"{examples}/person.py:Person")
    assert spec.parse('{"name":"John","age":20}').age == 20
    assert load_spec("tests._support.article:Person").name == "Person"


def test_json_schema_file(tmp_path: Path) -> None:
    path = tmp_path / "person.json"
    path.write_text(
        json.dumps(
            {
                "title": "Person",
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                "required": ["name", "age"],
            }
        )
    )
    spec = load_spec(str(path))
    assert spec.parse('{"name":"Mary","age":21}') == {"name": "Mary", "age": 21}
    with pytest.raises(OutputInvalid, match="age: 'x' is not of type 'integer'"):
        spec.parse('{"name":"Mary","age":"x"}')


def test_json_schema_array_root_means_many(tmp_path: Path) -> None:
    path = tmp_path / "people.json"
    path.write_text(
        json.dumps({"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}})
    )
    spec = load_spec(str(path))
    assert spec.many
    assert spec.parse('{"items":[{"n":"a"}]}') == [{"n": "a"}]


def test_missing_schema_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"schema file .*nope\.json does not exist"):
        load_spec(str(tmp_path / "nope.json"))
    with pytest.raises(SchemaError, match=r"schema file .*nope\.py does not exist"):
        load_spec(f"{tmp_path}/nope.py:Person")


def test_class_that_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "models.py"
    path.write_text("class Person:\n    name: str\n\nVALUE = 3\n")
    with pytest.raises(SchemaError, match=r"models\.py:Person' is the class Person, not a pydantic model"):
        load_spec(f"{path}:Person")
    with pytest.raises(SchemaError, match=r"has no attribute 'Nobody'"):
        load_spec(f"{path}:Nobody")


def test_broken_json_schema_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "type": "object",\n  "properties": {,}\n}')
    with pytest.raises(SchemaError, match=r"bad\.json:3:\d+: not valid JSON"):
        load_spec(str(path))


def test_invalid_json_schema(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"type": "object", "properties": {"a": {"type": "strnig"}}}')
    with pytest.raises(SchemaError, match="not a valid JSON Schema"):
        load_spec(str(path))


def test_field_descriptions_reach_the_schema() -> None:
    class Tagged(BaseModel):
        label: str = Field(description="the main label")

    assert load_spec(Tagged).schema["properties"]["label"]["description"] == "the main label"


def test_a_json_schema_error_names_its_place_and_remote_references_are_refused() -> None:
    bad = {"type": "object", "properties": {"age": {"type": "integr"}}}
    with pytest.raises(SchemaError, match=r"at properties\.age\.type: 'integr' is not"):
        load_spec(bad)
    remote = {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}
    with pytest.raises(SchemaError, match=r"reference at properties\.a\.\$ref .* points outside"):
        load_spec(remote)
    dangling = {"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}}
    with pytest.raises(SchemaError, match="points to nothing"):
        load_spec(dangling)
