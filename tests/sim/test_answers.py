"""The simulator's answers: schema-valid records read from the prompt, and recursive schemas.

Every request goes over real loopback HTTP, through aiohttp, the official ``openai`` SDK or instructor.
Nothing here depends on wall-clock time except waiting for requests that are held on purpose.
"""

from __future__ import annotations

import datetime
import enum
import json
from typing import Any, Literal

import aiohttp
import jsonschema
import openai
import pydantic
import pytest

from corral.errors import OutputInvalid
from corral.schema import load_spec
from corral.sim import Simulator
from corral.sim.answers import Filler
from tests._support import Person
from tests._support.chat import JSON, TEXTS, answer_of, chat_body, post


class Role(enum.Enum):
    ADMIN = "admin"
    USER = "user"
    GUEST = "guest"


class Address(pydantic.BaseModel):
    street: str
    city: str
    zip_code: str | None = None


class Employee(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=18, le=70)
    role: Role
    email: str | None = None
    hired: datetime.date
    skills: list[str] = pydantic.Field(min_length=2, max_length=4)
    addresses: list[Address]
    manager: Employee | None = None
    score: float = pydantic.Field(gt=0, lt=1)
    kind: Literal["staff"] = "staff"
    tags: set[Role]
    pair: tuple[int, str]
    active: bool


MODES = ["tools", "json_schema", "json_object"]


# --- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_person_is_read_from_the_text(sim: Simulator, http: aiohttp.ClientSession, mode: str) -> None:
    status, reply = await post(http, sim, chat_body(mode, Person.model_json_schema(), TEXTS[0]))
    assert status == 200
    assert json.loads(answer_of(reply)) == {"name": "John", "age": 20}
    assert reply["object"] == "chat.completion"
    assert reply["model"] == "gpt-test"
    usage = reply["usage"]
    assert usage["prompt_tokens"] > 10
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] == (len(answer_of(reply)) + 3) // 4
    # A forced tool call finishes with "stop" at OpenAI too, not "tool_calls".
    assert reply["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("mode", MODES)
async def test_nested_model_answers_validate(sim: Simulator, http: aiohttp.ClientSession, mode: str) -> None:
    schema = Employee.model_json_schema()
    for text in TEXTS:
        status, reply = await post(http, sim, chat_body(mode, schema, text))
        assert status == 200
        answer = answer_of(reply)
        jsonschema.validate(json.loads(answer), schema)
        employee = Employee.model_validate_json(answer)
        assert 2 <= len(employee.skills) <= 4
    assert employee.manager is None or employee.manager.manager is None  # recursion stops early
    jane = Employee.model_validate_json(
        answer_of((await post(http, sim, chat_body(mode, schema, TEXTS[1])))[1])
    )
    assert (jane.name, jane.age, jane.role, jane.email) == ("Jane Doe", 34, Role.ADMIN, "jane@corp.com")
    assert jane.hired == datetime.date(2021, 3, 4)


async def test_same_request_same_answer(sim: Simulator, http: aiohttp.ClientSession) -> None:
    body = chat_body("tools", Employee.model_json_schema(), TEXTS[2])
    first = answer_of((await post(http, sim, body))[1])
    assert answer_of((await post(http, sim, body))[1]) == first
    other = answer_of((await post(http, sim, chat_body("tools", Employee.model_json_schema(), "Hi Bob.")))[1])
    assert other != first


@pytest.mark.parametrize(
    ("text", "people"),
    [
        ("John is 20 and Mary is 31.", [("John", 20), ("Mary", 31)]),
        ("My name is John and I am 20 years old", [("John", 20)]),
        (
            "Alice (34), Bob Smith (29) and Carol, aged 41, met in Paris.",
            [("Alice", 34), ("Bob Smith", 29), ("Carol", 41)],
        ),
    ],
)
async def test_many_shape_gives_one_entity_per_person(
    sim: Simulator, http: aiohttp.ClientSession, text: str, people: list[tuple[str, int]]
) -> None:
    spec = load_spec(list[Person])
    status, reply = await post(http, sim, chat_body("json_schema", spec.schema, text))
    assert status == 200
    found = spec.parse(answer_of(reply))
    assert [(p.name, p.age) for p in found] == people


async def test_many_shape_of_a_text_that_names_nobody_is_empty(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    # As a careful model answers: no stand-in person is made up (that is what --hallucinate is for).
    spec = load_spec(list[Person])
    _, reply = await post(http, sim, chat_body("tools", spec.schema, "no people at all"))
    assert spec.parse(answer_of(reply)) == []
    _, reply = await post(http, sim, chat_body("tools", spec.schema, "My name is Ann and I am 30 years old."))
    assert [person.name for person in spec.parse(answer_of(reply))] == ["Ann"]


def test_filler_handles_refs_unions_bounds_and_formats() -> None:
    schema: JSON = {
        "type": "object",
        "definitions": {"Color": {"enum": ["red", "green", "blue"]}},
        "properties": {
            "color": {"$ref": "#/definitions/Color"},
            "count": {"type": "integer", "minimum": 500, "maximum": 510},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
            "even": {"type": "integer", "multipleOf": 2, "minimum": 3},
            "email": {"type": "string", "format": "email"},
            "id": {"type": "string", "format": "uuid"},
            "at": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "clock": {"type": "string", "format": "time"},
            "ip": {"type": "string", "format": "ipv4"},
            "ip6": {"type": "string", "format": "ipv6"},
            "site": {"type": "string", "format": "uri"},
            "code": {"type": "string", "minLength": 5, "maxLength": 6},
            "maybe": {"type": ["integer", "null"]},
            "either": {"oneOf": [{"type": "null"}, {"type": "boolean"}]},
            "fixed": {"const": 7},
            "merged": {"allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]}]},
            "tuple": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
            "set": {
                "type": "array",
                "items": {"$ref": "#/definitions/Color"},
                "uniqueItems": True,
                "minItems": 3,
            },
            "free": {},
        },
        "required": [
            "color",
            "count",
            "ratio",
            "even",
            "email",
            "id",
            "at",
            "day",
            "clock",
            "ip",
            "ip6",
            "site",
            "code",
            "maybe",
            "either",
            "fixed",
        ],
    }
    filler = Filler(schema)
    for text in ("I like blue things", "", "x y z 1 2 3"):
        value = json.loads(filler.answer(text))
        # Every format corral checks in replies (and more) holds: a valid answer is valid there too.
        jsonschema.validate(value, schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        assert value["fixed"] == 7
        assert 500 <= value["count"] <= 510
        assert sorted(value["set"]) == ["blue", "green", "red"]
    assert json.loads(filler.answer("I like blue things"))["color"] == "blue"
    assert json.loads(filler.answer(""))["maybe"] is None  # nothing in the text supports a value


@pytest.mark.parametrize("model", [Person, Employee, list[Person]])
def test_invalid_answers_always_break_the_schema(model: Any) -> None:
    spec = load_spec(model)
    filler = Filler(spec.schema)
    for text in TEXTS:
        spec.parse(filler.answer(text))
        for pick in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999):
            broken = filler.invalid(text, pick)
            json.loads(broken)  # still JSON
            with pytest.raises(OutputInvalid):
                spec.parse(broken)


def test_filler_stops_recursive_schemas() -> None:
    class Node(pydantic.BaseModel):
        name: str
        children: list[Node]

    schema = Node.model_json_schema()
    value = json.loads(Filler(schema).answer("Root node called Tree"))
    jsonschema.validate(value, schema)
    depth, node = 0, value
    while node["children"]:
        node, depth = node["children"][0], depth + 1
    assert 0 < depth < 20


@pytest.mark.parametrize("mode", MODES)
async def test_max_tokens_cuts_the_answer(sim: Simulator, http: aiohttp.ClientSession, mode: str) -> None:
    body = chat_body(mode, Employee.model_json_schema(), TEXTS[1], max_tokens=10)
    status, reply = await post(http, sim, body)
    assert status == 200
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == 10
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer_of(reply))
    body["max_completion_tokens"] = 4096
    _, reply = await post(http, sim, body)
    assert reply["choices"][0]["finish_reason"] == "stop"


async def test_json_object_finds_pretty_printed_schema_and_falls_back(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    schema_text = json.dumps(Person.model_json_schema(), indent=2)
    pretty = f"Return JSON. Code: {{not json}} then the schema:\n{schema_text}\n"
    body: JSON = {
        "model": "m",
        "response_format": {"type": "json_object"},
        "messages": [{"role": "system", "content": pretty}, {"role": "user", "content": TEXTS[0]}],
    }
    assert json.loads(answer_of((await post(http, sim, body))[1])) == {"name": "John", "age": 20}
    body["messages"][0]["content"] = "Reply in JSON."
    assert isinstance(json.loads(answer_of((await post(http, sim, body))[1])), dict)


async def test_plain_text_and_content_parts(sim: Simulator, http: aiohttp.ClientSession) -> None:
    body: JSON = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}],
    }
    status, reply = await post(http, sim, body)
    assert status == 200
    assert "Hi there" in reply["choices"][0]["message"]["content"]
    assert sim.log[-1].mode == "text"


async def test_bad_requests_get_openai_errors(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sim.url}/chat/completions", data=b"{nope") as response:
        assert response.status == 400
        assert (await response.json())["error"]["type"] == "invalid_request_error"
    body = chat_body("tools", Person.model_json_schema(), "x")
    body["tool_choice"] = {"type": "function", "function": {"name": "missing"}}
    status, reply = await post(http, sim, body)
    assert (status, reply["error"]["param"]) == (400, "tool_choice")
    async with http.get(f"{sim.url}/nowhere") as response:
        assert response.status == 404
    async with http.get(f"{sim.url}/chat/completions") as response:
        assert response.status == 405
    assert sim.stats.by_status == {400: 2}


# --- recursive schemas (issue 15, L13: every one of them was a 500, and clients retried for 20 s) --

NODE = {"type": "object", "properties": {"name": {"type": "string"},
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}  # fmt: skip
ENDING = {
    # The review's tree, hung off a property.
    "tree": {"type": "object", "$defs": {"node": NODE}, "properties": {"root": {"$ref": "#/$defs/node"}},
             "required": ["root"]},
    # A linked list whose only property is the next link.
    "list": {"type": "object", "properties": {"next": {"$ref": "#"}}},
    # The reference stands beside keywords of its own.
    "ref-and-siblings": {"type": "object", "$defs": {"node": NODE}, "required": ["root"], "properties": {
        "root": {"$ref": "#/$defs/node", "type": "object", "minProperties": 1}}},
    # An expression: the first branch recurses, the second ends it.
    "expression": {"type": "object", "required": ["left", "right"], "properties": {
        "left": {"anyOf": [{"$ref": "#"}, {"type": "integer"}]},
        "right": {"anyOf": [{"$ref": "#"}, {"type": "integer"}]}}},
    # Lists of lists, no object in between.
    "arrays": {"type": "object", "$defs": {"a": {"type": "array", "items": {"$ref": "#/$defs/a"}}},
               "properties": {"nested": {"$ref": "#/$defs/a"}}, "required": ["nested"]},
}  # fmt: skip
NO_END = {
    "root-self": {"$ref": "#"},
    "a-b-a": {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    "required-self": {"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]},
    "required-non-empty-children": {"type": "object", "required": ["children"], "properties": {
        "children": {"type": "array", "minItems": 1, "items": {"$ref": "#"}}}},
    # Not a cycle, but the same 500 had it: deeper than the simulator can write out.
    "nested-300": json.loads('{"type": "object", "properties": {"a": ' * 300 + "{}" + "}}" * 300),
}  # fmt: skip


async def ask(http: aiohttp.ClientSession, sim: Simulator, wire: str, schema: JSON) -> tuple[int, JSON]:
    text = "My name is Ann and I am 30 years old"
    if wire == "anthropic":
        body = {"model": "claude-haiku-4-5", "max_tokens": 100_000,
                "messages": [{"role": "user", "content": text}],
                "tools": [{"name": "extract", "input_schema": schema}],
                "tool_choice": {"type": "tool", "name": "extract"}}  # fmt: skip
        headers = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-test"}
        async with http.post(f"{sim.anthropic_url}/v1/messages", json=body, headers=headers) as response:
            return response.status, await response.json()
    return await post(http, sim, chat_body(wire, schema, text, max_completion_tokens=100_000))


def answer_on(wire: str, reply: JSON) -> Any:
    if wire == "anthropic":
        return reply["content"][0]["input"]
    return json.loads(answer_of(reply))


@pytest.mark.parametrize("wire", ["tools", "json_schema", "anthropic"])
@pytest.mark.parametrize("name", list(ENDING))
async def test_a_recursive_schema_that_can_end_gets_a_finite_valid_answer(
    sim: Simulator, http: aiohttp.ClientSession, wire: str, name: str
) -> None:
    schema = ENDING[name]
    status, reply = await ask(http, sim, wire, schema)
    assert status == 200, reply
    value = answer_on(wire, reply)
    jsonschema.Draft202012Validator(schema).validate(value)
    assert len(json.dumps(value)) < 1_000_000, "it stopped growing"


@pytest.mark.parametrize("name", list(NO_END))
async def test_a_schema_no_value_satisfies_is_a_400_in_each_wires_words(
    sim: Simulator, http: aiohttp.ClientSession, name: str
) -> None:
    schema = NO_END[name]
    status, reply = await ask(http, sim, "json_schema", schema)
    assert status == 400
    assert reply["error"]["type"] == "invalid_request_error"
    assert (reply["error"]["param"], reply["error"]["code"]) == ("response_format", "invalid_json_schema")
    assert reply["error"]["message"].startswith("Invalid schema for response_format 'x': In context=(), ")
    status, reply = await ask(http, sim, "tools", schema)
    assert status == 400
    assert (reply["error"]["param"], reply["error"]["code"]) == (
        "tools[0].function.parameters",
        "invalid_function_parameters",
    )
    assert reply["error"]["message"].startswith("Invalid schema for function 'extract': In context=(), ")
    status, reply = await ask(http, sim, "anthropic", schema)
    assert status == 400
    assert reply["type"] == "error" and reply["error"]["type"] == "invalid_request_error"
    assert reply["error"]["message"].startswith("tools.0.custom.input_schema: JSON schema is invalid")
    assert sim.stats.by_status == {400: 3}, "refused, never a 500 that a client retries"
    # A schema written in the prompt reaches no check: the model answers (what it answers fails).
    status, reply = await ask(http, sim, "json_object", schema)
    assert status == 200 and isinstance(answer_on("json_object", reply), dict)


async def test_the_openai_sdk_reads_the_refusal_as_a_bad_request_and_does_not_retry(sim: Simulator) -> None:
    async with openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test", max_retries=2) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(
                model="gpt-test",
                messages=[{"role": "user", "content": "hi"}],
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"$ref": "#"}},
                },
            )
    assert raised.value.code == "invalid_json_schema"
    assert sim.stats.requests == 1
