"""The simulator: schema-valid answers read from the prompt, faults by seed, scripting, observation.

Every request goes over real loopback HTTP, through aiohttp, the official ``openai`` SDK or instructor.
Nothing here depends on wall-clock time except waiting for requests that are held on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import enum
import json
import re
import urllib.request
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
import jsonschema
import openai
import orjson
import pydantic
import pytest

from corral.backends.base import Mode, Profile, Request
from corral.backends.openai import OpenAIBackend
from corral.errors import ConfigError, OutputInvalid, RateLimited, ServerError, TransportError
from corral.schema import load_spec
from corral.sim import LogEntry, ScriptCall, SimConfig, SimReply, Simulator, SimulatorThread
from corral.sim.answers import Filler
from corral.sim.args import add_arguments, config_from_args
from corral.sim.core import SimCore
from corral.sim.limits import RateLimits, format_duration, overdraft
from corral.sim.openai import parse_request

JSON = dict[str, Any]


class Person(pydantic.BaseModel):
    name: str
    age: int


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


TEXTS = [
    "My name is John and I am 20 years old",
    "Our new admin Jane Doe (jane@corp.com), 34 years old, was hired on 2021-03-04 and lives in Berlin.",
    "Nothing to see here.",
    "",
]
MODES = ["tools", "json_schema", "json_object"]


def chat_body(mode: str, schema: JSON, text: str, **extra: Any) -> JSON:
    """A request as corral (compact schema in the system prompt for json_object) would send it."""
    system = "Extract the data."
    body: JSON = {"model": "gpt-test", "temperature": 0, **extra}
    if mode == "tools":
        body["tools"] = [{"type": "function", "function": {"name": "extract", "parameters": schema}}]
        body["tool_choice"] = {"type": "function", "function": {"name": "extract"}}
    elif mode == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    elif mode == "json_object":
        body["response_format"] = {"type": "json_object"}
        system += " Answer with JSON matching this schema: " + json.dumps(schema, separators=(",", ":"))
    body["messages"] = [{"role": "system", "content": system}, {"role": "user", "content": text}]
    return body


def answer_of(reply: JSON) -> str:
    message = reply["choices"][0]["message"]
    if message.get("tool_calls"):
        return str(message["tool_calls"][0]["function"]["arguments"])
    return str(message["content"])


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, sim: Simulator, body: JSON) -> tuple[int, JSON]:
    async with http.post(f"{sim.url}/chat/completions", json=body) as response:
        return response.status, await response.json()


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


async def test_many_shape_has_at_least_one_entity(sim: Simulator, http: aiohttp.ClientSession) -> None:
    spec = load_spec(list[Person])
    _, reply = await post(http, sim, chat_body("tools", spec.schema, "no people at all"))
    assert len(spec.parse(answer_of(reply))) == 1


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


# --- faults, latency, scripting --------------------------------------------------------------


async def test_invalid_and_malformed_rates_are_reproducible(http: aiohttp.ClientSession) -> None:
    config = SimConfig(invalid_rate=0.2, malformed_rate=0.1, seed=7)
    runs = []
    for _ in range(2):
        kinds = []
        async with Simulator(config) as sim:
            for i in range(200):
                _, reply = await post(
                    http, sim, chat_body("tools", Person.model_json_schema(), f"I am Bob, {i}.")
                )
                try:
                    Person.model_validate_json(answer_of(reply))
                    kinds.append("ok")
                except pydantic.ValidationError:
                    try:
                        json.loads(answer_of(reply))
                        kinds.append("invalid")
                    except json.JSONDecodeError:
                        kinds.append("malformed")
        runs.append(kinds)
    assert runs[0] == runs[1]
    counts = {kind: runs[0].count(kind) for kind in ("ok", "invalid", "malformed")}
    assert counts == {"ok": 129, "invalid": 46, "malformed": 25}  # about 20% and 10% of 200


def test_latency_draws_are_reproducible_and_zero_means_no_wait() -> None:
    raw = orjson.dumps(chat_body("tools", Person.model_json_schema(), "x"))
    request = parse_request(raw, "sim-1")

    def delays(config: SimConfig) -> list[float]:
        core = SimCore(config, None)
        return [core.reply(request, i).delay for i in range(50)]

    assert delays(SimConfig()) == [0.0] * 50
    assert delays(SimConfig(latency_ms=200, latency_dist="fixed")) == [0.2] * 50
    lognormal = delays(SimConfig(latency_ms=200, seed=3))
    assert lognormal == delays(SimConfig(latency_ms=200, seed=3))
    assert lognormal != delays(SimConfig(latency_ms=200, seed=4))
    assert 0.1 < sorted(lognormal)[25] < 0.4  # the median is near 200 ms


async def test_script_sees_repeats_and_overrides_answers(http: aiohttp.ClientSession) -> None:
    calls: list[ScriptCall] = []

    def script(call: ScriptCall) -> SimReply | None:
        calls.append(call)
        if call.user_text == "limit me":
            return SimReply(status=429, headers={"retry-after": "2"})
        if call.user_text == "html":
            return SimReply(
                status=502, error_body="<html>Bad gateway</html>", headers={"content-type": "text/html"}
            )
        if call.repeat == 0:
            return SimReply(answer_text='{"name": "John"}', headers={"x-sim": "scripted"})
        return None

    async with Simulator(script=script) as sim:
        body = chat_body("json_schema", Person.model_json_schema(), TEXTS[0])
        async with http.post(f"{sim.url}/chat/completions", json=body) as response:
            assert response.headers["x-sim"] == "scripted"
            first = await response.json()
        body["messages"] += [
            {"role": "assistant", "content": answer_of(first)},
            {"role": "user", "content": "age: Field required. Fix the errors."},
        ]
        _, second = await post(http, sim, body)
        async with http.post(
            f"{sim.url}/chat/completions", json=chat_body("tools", Person.model_json_schema(), "limit me")
        ) as response:
            assert response.status == 429
            assert response.headers["retry-after"] == "2"
            error = await response.json()
        # The same text asked for in another mode is another task: its count starts again.
        _, third = await post(http, sim, chat_body("tools", Person.model_json_schema(), TEXTS[0]))
        async with http.post(f"{sim.url}/chat/completions", json=chat_body("text", {}, "html")) as response:
            assert (response.status, response.content_type) == (502, "text/html")
            assert await response.text() == "<html>Bad gateway</html>"
        assert sim.stats.by_status == {200: 3, 429: 1, 502: 1}
    assert answer_of(first) == '{"name": "John"}'
    assert json.loads(answer_of(second)) == {"name": "John", "age": 20}
    assert error["error"]["code"] == "rate_limit_exceeded"
    assert answer_of(third) == '{"name": "John"}'
    assert [(c.repeat, c.index, c.mode) for c in calls] == [
        (0, 0, "json_schema"),
        (1, 1, "json_schema"),
        (0, 2, "tools"),
        (0, 3, "tools"),
        (0, 4, "text"),
    ]
    assert calls[0].default_answer == '{"name":"John","age":20}'
    assert calls[0].schema == Person.model_json_schema()


async def test_script_errors_answer_500_and_are_kept(http: aiohttp.ClientSession) -> None:
    def script(call: ScriptCall) -> SimReply | None:
        raise RuntimeError("bug in the test")

    async with Simulator(script=script) as sim:
        status, reply = await post(http, sim, chat_body("tools", Person.model_json_schema(), "x"))
        assert status == 500
        assert "bug in the test" in reply["error"]["message"]
        assert [str(e) for e in sim.script_errors] == ["bug in the test"]


# --- observation -----------------------------------------------------------------------------


async def test_peak_concurrency_and_in_flight(http: aiohttp.ClientSession) -> None:
    async with Simulator(SimConfig(latency_ms=1000, latency_dist="fixed")) as sim:
        body = chat_body("tools", Person.model_json_schema(), TEXTS[0])
        tasks = [asyncio.create_task(post(http, sim, body)) for _ in range(8)]
        for _ in range(500):  # wait until all eight are held by the server
            if sim.stats.in_flight == 8:
                break
            await asyncio.sleep(0.01)
        assert sim.stats.in_flight == 8
        await asyncio.gather(*tasks)
        assert sim.stats.peak_concurrency == 8
        assert sim.stats.in_flight == 0


async def test_log_is_a_bounded_ring_and_reset_clears_it(http: aiohttp.ClientSession) -> None:
    async with Simulator(SimConfig(log_size=5)) as sim:
        for i in range(8):
            await post(http, sim, chat_body("json_object", Person.model_json_schema(), f"text {i}"))
        log = sim.log
        assert [entry.seq for entry in log] == [3, 4, 5, 6, 7]
        assert [entry.text for entry in log] == [f"text {i}" for i in range(3, 8)]
        assert {(e.mode, e.status, e.model) for e in log} == {("json_object", 200, "gpt-test")}
        assert log == sorted(log, key=lambda e: e.time)
        assert sim.stats.requests == 8
        sim.reset_stats()
        assert (sim.stats.requests, sim.log) == (0, [])


async def test_http_models_stats_and_reset(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sim.url}/models") as response:
        assert [m["id"] for m in (await response.json())["data"]] == ["sim-1"]
    async with http.get(f"{sim.url}/models/gpt-4o") as response:
        assert (await response.json())["id"] == "gpt-4o"
    await post(http, sim, chat_body("tools", Person.model_json_schema(), "x"))
    root = sim.url.removesuffix("/v1")
    async with http.get(f"{root}/sim/stats") as response:
        assert await response.json() == {
            "requests": 1,
            "peak_concurrency": 1,
            "in_flight": 0,
            "by_status": {"200": 1},
            "by_fault": {},
        }
    async with http.post(f"{root}/sim/reset") as response:
        assert response.status == 200
    assert sim.stats.requests == 0


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="invalid_rate"):
        SimConfig(invalid_rate=1.5)
    with pytest.raises(ConfigError, match="must not exceed 1"):
        SimConfig(invalid_rate=0.6, malformed_rate=0.6)
    with pytest.raises(ConfigError, match=r"reset_rate \+ hang_rate\) must not exceed 1"):
        SimConfig(reset_rate=0.6, hang_rate=0.6)
    SimConfig(reset_rate=0.7, hang_rate=0.2, trickle_rate=0.1)  # exactly 1, give or take float
    with pytest.raises(ConfigError, match="rpm must be a positive"):
        SimConfig(rpm=0)
    with pytest.raises(ConfigError, match="rate_limit_bucket must be 'second' or 'minute'"):
        SimConfig(rate_limit_bucket="hour")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="hang_s"):
        SimConfig(hang_s=-1)
    with pytest.raises(ConfigError, match="latency_dist"):
        SimConfig(latency_dist="uniform")  # type: ignore[arg-type]


def test_simulator_thread_serves_sync_code() -> None:
    with SimulatorThread(SimConfig(model="sim-x")) as sim:
        assert sim.port > 0
        assert sim.url == f"http://127.0.0.1:{sim.port}/v1"
        body = orjson.dumps(chat_body("json_schema", Person.model_json_schema(), TEXTS[0]))
        request = urllib.request.Request(f"{sim.url}/chat/completions", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
        assert json.loads(answer_of(reply)) == {"name": "John", "age": 20}
        with urllib.request.urlopen(f"{sim.url}/models", timeout=10) as response:
            assert json.loads(response.read())["data"][0]["id"] == "sim-x"
        assert sim.stats.requests == 1
    with (
        SimulatorThread() as first,
        pytest.raises(OSError, match="address"),
        SimulatorThread(port=first.port),
    ):
        pass  # the port is taken: start() re-raises the server thread's error


# --- the official SDK and instructor ---------------------------------------------------------


async def test_openai_sdk_parses_every_mode(sim: Simulator) -> None:
    schema = Person.model_json_schema()
    async with openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test", max_retries=0) as client:
        messages: Any = [{"role": "user", "content": TEXTS[0]}]
        tools: Any = [{"type": "function", "function": {"name": "Person", "parameters": schema}}]
        by_tool = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "Person"}},
        )
        call = by_tool.choices[0].message.tool_calls
        assert call is not None
        assert call[0].type == "function"
        assert Person.model_validate_json(call[0].function.arguments) == Person(name="John", age=20)
        assert by_tool.usage is not None
        assert by_tool.usage.total_tokens > 0
        by_schema = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            response_format={"type": "json_schema", "json_schema": {"name": "Person", "schema": schema}},
        )
        assert Person.model_validate_json(by_schema.choices[0].message.content or "").name == "John"
        prompt: Any = [{"role": "system", "content": json.dumps(schema)}, *messages]
        by_object = await client.chat.completions.create(
            model="gpt-4o-mini", messages=prompt, response_format={"type": "json_object"}
        )
        assert Person.model_validate_json(by_object.choices[0].message.content or "").age == 20
        models = await client.models.list()
        assert [m.id for m in models.data] == ["sim-1"]


@pytest.mark.parametrize("mode_name", ["TOOLS", "JSON", "JSON_SCHEMA"])
async def test_instructor_extracts_person(sim: Simulator, mode_name: str) -> None:
    instructor = pytest.importorskip("instructor")
    async with openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test", max_retries=0) as raw:
        client = instructor.from_openai(raw, mode=getattr(instructor.Mode, mode_name))
        person = await client.chat.completions.create(
            model="gpt-4o-mini",
            response_model=Person,
            messages=[{"role": "user", "content": "My name is Alice and I am 23 years old"}],
        )
    assert person.model_dump() == {"name": "Alice", "age": 23}


async def test_instructor_reasks_after_invalid_answer() -> None:
    instructor = pytest.importorskip("instructor")

    def script(call: ScriptCall) -> SimReply | None:
        return SimReply(answer_text='{"name": "Alice", "age": "old"}') if call.repeat == 0 else None

    async with (
        Simulator(script=script) as scripted,
        openai.AsyncOpenAI(base_url=scripted.url, api_key="sk-test", max_retries=0) as raw,
    ):
        client = instructor.from_openai(raw, mode=instructor.Mode.TOOLS)
        person = await client.chat.completions.create(
            model="gpt-4o-mini",
            response_model=Person,
            max_retries=2,
            messages=[{"role": "user", "content": "My name is Alice and I am 23 years old"}],
        )
        assert person.model_dump() == {"name": "Alice", "age": 23}
        assert scripted.stats.requests == 2


# --- rate limits -----------------------------------------------------------------------------

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(\d+(?:\.\d{1,3})?)s|(\d+)ms")


def seconds(text: str) -> float:
    """An OpenAI reset duration (``6m0s``, ``1.5s``, ``20ms``) in seconds; fails on any other form."""
    match = _DURATION.fullmatch(text)
    assert match is not None, f"not an OpenAI duration: {text!r}"
    hours, minutes, secs, ms = match.groups()
    if ms is not None:
        return int(ms) / 1000
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(secs)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0s"),
        (0.02, "20ms"),
        (0.0001, "1ms"),  # rounded up: waiting the time written is always enough
        (0.1, "100ms"),
        (1.0, "1s"),
        (1.2345, "1.235s"),
        (59.9996, "1m0s"),
        (90.5, "1m30.5s"),
        (360.0, "6m0s"),
        (3725.25, "1h2m5.25s"),
    ],
)
def test_durations_are_written_like_openai(value: float, text: str) -> None:
    assert format_duration(value) == text
    assert seconds(text) == pytest.approx(value, abs=0.001)


def test_minute_buckets_start_full_refill_continuously_and_refuse_without_charging() -> None:
    # 1 request per 20 s, 100/60 tokens/s, in buckets of a whole minute's worth
    limits = RateLimits(rpm=3, tpm=100, headers=True, now=0.0, bucket="minute")
    for _ in range(3):
        assert limits.charge(10, 0.0, "m") is None
    assert limits.headers() == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "70",
        "x-ratelimit-reset-tokens": "18s",
    }
    refused = limits.charge(10, 5.0, "gpt-x")
    assert refused is not None and refused.headers is not None
    error = orjson.loads(refused.body)["error"]
    assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)
    assert error["message"].startswith("Rate limit reached for gpt-x in organization")
    assert "Limit 3, Used 3, Requested 1. Please try again in 15s." in error["message"]
    assert (refused.headers["retry-after"], refused.headers["retry-after-ms"]) == ("15", "15000")
    assert refused.headers["x-ratelimit-remaining-tokens"] == "78"  # 70 + 5 s of refill; nothing charged
    assert limits.charge(10, 20.0, "m") is None  # one request's worth has come back
    # Tokens alone: the type says which limit was hit.
    tokens_only = RateLimits(rpm=None, tpm=100, headers=True, now=0.0, bucket="minute")
    assert tokens_only.charge(90, 0.0, "m") is None
    refused = tokens_only.charge(13, 0.0, "m")
    assert refused is not None and refused.headers is not None
    assert orjson.loads(refused.body)["error"]["type"] == "tokens"
    assert refused.headers["retry-after-ms"] == "1800"  # 3 tokens short at 100/60 a second
    assert "x-ratelimit-limit-requests" not in refused.headers
    # Larger than the whole bucket: no wait can help, so no retry-after either.
    too_large = tokens_only.charge(101, 1000.0, "m")
    assert too_large is not None and too_large.headers is not None
    assert "retry-after" not in too_large.headers
    assert "Request too large" in orjson.loads(too_large.body)["error"]["message"]


async def test_minute_bucket_rpm_burst_gets_429_with_retry_after_and_passes_after_waiting(
    http: aiohttp.ClientSession,
) -> None:
    # A burst of 120 (the whole minute's bucket), then one every 0.5 s.
    async with Simulator(SimConfig(rpm=120, rate_limit_bucket="minute")) as sim:
        body = chat_body("tools", Person.model_json_schema(), TEXTS[0])
        passed = 0
        for _ in range(200):
            async with http.post(f"{sim.url}/chat/completions", json=body) as response:
                headers, reply = response.headers, await response.json()
                if response.status == 429:
                    break
                assert response.status == 200
                passed += 1
                assert headers["x-ratelimit-limit-requests"] == "120"
                assert "x-ratelimit-limit-tokens" not in headers  # only the limits that are set
        assert passed >= 120  # the whole bucket, and whatever came back while the burst went on
        assert reply["error"]["type"] == "requests"
        assert reply["error"]["code"] == "rate_limit_exceeded"
        assert "Please try again in" in reply["error"]["message"]
        wait_ms = int(headers["retry-after-ms"])
        assert 0 < wait_ms <= 500
        assert headers["retry-after"] == "1"  # whole seconds, rounded up
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert 59 < seconds(headers["x-ratelimit-reset-requests"]) <= 60
        await asyncio.sleep(wait_ms / 1000)
        status, _ = await post(http, sim, body)
        assert status == 200
        assert sim.stats.rate_limited == 1
        assert sim.stats.by_status == {200: passed + 1, 429: 1}
        assert [e.fault for e in sim.log if e.status == 429] == ["rate_limit"]
        assert [e.tokens for e in sim.log if e.status == 429] == [0]  # a refused request costs nothing
        assert sim.overdraft() == (0, 0)


async def test_tpm_charges_prompt_plus_max_tokens(http: aiohttp.ClientSession) -> None:
    # 1,000 tokens a second, in a bucket of the whole minute's worth (the one-second bucket is
    # tests/test_sim_quantized.py's)
    async with Simulator(SimConfig(tpm=60_000, rate_limit_bucket="minute")) as sim:
        body = chat_body("json_schema", Person.model_json_schema(), TEXTS[0])
        prompt = parse_request(orjson.dumps(body), "sim-1").prompt_tokens
        body["max_tokens"] = 60_000 - prompt  # the whole bucket
        async with http.post(f"{sim.url}/chat/completions", json=body) as response:
            assert response.status == 200
            assert (await response.json())["usage"]["prompt_tokens"] == prompt
            assert response.headers["x-ratelimit-remaining-tokens"] == "0"
            assert "x-ratelimit-limit-requests" not in response.headers
            assert 59.9 <= seconds(response.headers["x-ratelimit-reset-tokens"]) <= 60
        assert sim.log[-1].tokens == 60_000
        body["max_tokens"] = 200
        async with http.post(f"{sim.url}/chat/completions", json=body) as response:
            assert response.status == 429
            assert (await response.json())["error"]["type"] == "tokens"
            wait_ms = int(response.headers["retry-after-ms"])
            assert 0 < wait_ms <= prompt + 200
        await asyncio.sleep(wait_ms / 1000)
        status, _ = await post(http, sim, body)
        assert status == 200
        assert sim.log[-1].tokens == prompt + 200
        # Without max_tokens the answer's own tokens are charged, as OpenAI reconciles them.
        del body["max_tokens"]
        await asyncio.sleep(0.15)
        status, reply = await post(http, sim, body)
        assert (status, sim.log[-1].tokens) == (200, reply["usage"]["total_tokens"])
        body["max_tokens"] = 70_000
        status, reply = await post(http, sim, body)
        assert status == 429
        assert reply["error"]["message"].startswith("Request too large for gpt-test")
        assert sim.overdraft() == (0, 0)


async def test_rate_limit_headers_can_be_switched_off(http: aiohttp.ClientSession) -> None:
    config = SimConfig(rpm=1, tpm=1000, rate_limit_headers=False)
    async with Simulator(config) as sim:
        body = chat_body("tools", Person.model_json_schema(), TEXTS[0])
        statuses = []
        for _ in range(2):
            async with http.post(f"{sim.url}/chat/completions", json=body) as response:
                statuses.append(response.status)
                assert not [h for h in response.headers if h.startswith(("x-ratelimit", "retry-after"))]
                message = (await response.json()).get("error", {}).get("message", "")
        assert statuses == [200, 429]
        assert "try again" not in message  # nothing to go by: the client must find the rate itself


def test_503_carries_retry_after_only_with_headers_on() -> None:
    request = parse_request(orjson.dumps(chat_body("tools", Person.model_json_schema(), "x")), "sim-1")
    for headers_on in (True, False):
        core = SimCore(SimConfig(server_error_rate=1.0, seed=2, rate_limit_headers=headers_on), None)
        replies = [core.reply(request, i) for i in range(30)]
        assert {r.status for r in replies} == {500, 502, 503}
        assert {r.fault for r in replies} == {"server_error"}
        for reply in replies:
            assert orjson.loads(reply.body)["error"]["type"] == "server_error"
            retry_after = (reply.headers or {}).get("retry-after")
            assert retry_after == ("1" if headers_on and reply.status == 503 else None)


def test_overdraft_replays_the_log_through_full_minute_buckets() -> None:
    def entry(time: float, tokens: int) -> LogEntry:
        return LogEntry(time, 0, "m", "tools", 200 if tokens else 429, "", 0, "", tokens)

    burst = [entry(0.0, 10) for _ in range(4)] + [entry(0.0, 0)]  # the refused one does not count
    assert overdraft(burst, rpm=3, bucket="minute") == (1, 0)
    assert overdraft(burst, tpm=35, bucket="minute") == (0, 5)
    # one came back in 20 s
    assert overdraft([*burst[:3], entry(20.0, 10)], rpm=3, bucket="minute") == (0, 0)
    assert overdraft([], rpm=1, bucket="minute") == (0, 0)


async def test_overdraft_checks_a_client_against_a_simulator_without_limits(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    with pytest.raises(ConfigError, match="needs a limit"):
        sim.overdraft()
    body = chat_body("tools", Person.model_json_schema(), TEXTS[0])
    await asyncio.gather(*(post(http, sim, body) for _ in range(5)))
    assert sim.overdraft(rpm=10_000) == (0, 0)  # a second's worth is 166 requests
    assert sim.overdraft(rpm=3, bucket="minute").requests > 1.9  # 5 at once against a bucket of 3
    # A second's worth of 3 a minute is less than one request: the bucket holds one, so 5 at once
    # are 4 beyond (less what came back while they arrived).
    assert 3.9 < sim.overdraft(rpm=3).requests <= 4
    assert sim.stats.rate_limited == 0


async def test_a_refused_request_is_neither_scripted_nor_faulted(http: aiohttp.ClientSession) -> None:
    seen: list[int] = []

    def record(call: ScriptCall) -> SimReply | None:
        seen.append(call.index)
        return None

    async with Simulator(SimConfig(rpm=1, reset_rate=1.0), script=record) as sim:
        body = chat_body("tools", Person.model_json_schema(), TEXTS[0])
        with pytest.raises(aiohttp.ClientPayloadError):
            await post(http, sim, body)
        status, reply = await post(http, sim, body)
        assert (status, reply["error"]["code"]) == (429, "rate_limit_exceeded")
        assert seen == [0]
        assert [(e.fault, e.tokens > 0) for e in sim.log] == [("reset", True), ("rate_limit", False)]


# --- transport faults ------------------------------------------------------------------------


async def settle(sim: Simulator, in_flight: int = 0) -> None:
    """Wait until the server holds ``in_flight`` requests (a client that left takes a moment to see)."""
    for _ in range(500):
        if sim.stats.in_flight == in_flight:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"in_flight stayed {sim.stats.in_flight}")


async def observe(http: aiohttp.ClientSession, sim: Simulator, body: JSON) -> str:
    """What a plain client sees of one request, named after the fault that would explain it."""
    try:
        async with http.post(f"{sim.url}/chat/completions", json=body) as response:
            raw = await response.read()
            if response.status >= 500:
                return "server_error"
    except aiohttp.ClientPayloadError:
        return "reset"
    except aiohttp.ServerDisconnectedError:
        return "hang"
    try:
        answer = answer_of(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return "bad_body"
    return kind_of_answer(answer)


def kind_of_answer(answer: str) -> str:
    try:
        Person.model_validate_json(answer)
    except pydantic.ValidationError:
        try:
            json.loads(answer)
        except json.JSONDecodeError:
            return "malformed"
        return "invalid"
    return ""


FAULTY = SimConfig(
    seed=11,
    malformed_rate=0.05,
    bad_arguments_rate=0.05,
    invalid_rate=0.1,
    server_error_rate=0.1,
    reset_rate=0.1,
    hang_rate=0.05,
    trickle_rate=0.05,
    bad_body_rate=0.1,
    hang_s=0.01,
    trickle_s=0.01,
)


async def test_fault_shares_are_exact_for_a_seed(http: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        async with Simulator(FAULTY) as sim:
            seen = [
                await observe(http, sim, chat_body("tools", Person.model_json_schema(), f"I am Bob, {i}."))
                for i in range(200)
            ]
            logged = [entry.fault for entry in sim.log]
            # The client saw each fault as the failure it stands for; a trickle arrives whole, only late.
            expected = {"trickle": "", "bad_arguments": "malformed"}  # late but whole; malformed by name
            assert seen == [expected.get(fault, fault) for fault in logged]
            assert all(entry.tokens > 0 for entry in sim.log)  # faults are charged like answers
            runs.append((logged, sim.stats))
    assert runs[0][0] == runs[1][0]
    stats = runs[0][1]
    # About 10% each (5% for malformed, bad_arguments, hang, trickle) of 200; exact for this seed.
    assert stats.by_fault == {
        "malformed": 10,
        "invalid": 22,
        "bad_arguments": 11,
        "server_error": 23,
        "reset": 15,
        "hang": 8,
        "trickle": 10,
        "bad_body": 17,
    }
    assert stats.by_status[499] == stats.by_fault["hang"]  # never answered
    assert sum(stats.by_status[s] for s in (500, 502, 503)) == stats.by_fault["server_error"]


async def test_trickle_fails_a_short_timeout_and_passes_a_long_one(http: aiohttp.ClientSession) -> None:
    async with Simulator(SimConfig(trickle_rate=1.0, trickle_s=0.3)) as sim:
        body = chat_body("tools", Person.model_json_schema(), TEXTS[0])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await post(http, sim, body)
        await settle(sim)
        status, reply = await post(http, sim, body)
        assert status == 200
        assert json.loads(answer_of(reply)) == {"name": "John", "age": 20}
        # The one the client gave up on is logged as never answered.
        assert [(e.fault, e.status) for e in sim.log] == [("trickle", 499), ("trickle", 200)]


async def test_hang_outlasts_the_client_and_ends_with_the_server(http: aiohttp.ClientSession) -> None:
    async with Simulator(SimConfig(hang_rate=1.0)) as sim:  # an hour, unless something ends it
        body = chat_body("tools", Person.model_json_schema(), TEXTS[0])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await post(http, sim, body)
        await settle(sim)  # the client left: the server lets go of the request too
        held = asyncio.create_task(post(http, sim, body))
        await settle(sim, 1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await held
    assert [(e.fault, e.status) for e in sim.log] == [("hang", 499), ("hang", 499)]


async def test_scripted_faults(http: aiohttp.ClientSession) -> None:
    faults: dict[str, SimReply] = {
        "reset": SimReply(fault="reset"),
        "hang": SimReply(fault="hang"),
        "bad_body": SimReply(fault="bad_body"),
        "trickle": SimReply(fault="trickle", answer_text='{"name": "Slow", "age": 1}'),
        "limit": SimReply(status=429, headers={"retry-after": "1"}),
    }
    config = SimConfig(hang_s=0.01, trickle_s=0.01, malformed_rate=1.0)  # scripted faults come first
    async with Simulator(config, script=lambda call: faults.get(call.user_text)) as sim:
        seen = {
            text: await observe(http, sim, chat_body("tools", Person.model_json_schema(), text))
            for text in ("reset", "hang", "bad_body", "trickle")
        }
        # The trickled answer arrives whole; malformed_rate=1 did not touch any of them.
        assert seen == {"reset": "reset", "hang": "hang", "bad_body": "bad_body", "trickle": ""}
        async with http.post(f"{sim.url}/chat/completions", json=chat_body("text", {}, "bad_body")) as r:
            assert (r.status, r.content_type) == (200, "text/html")
        async with http.post(f"{sim.url}/chat/completions", json=chat_body("text", {}, "limit")) as r:
            assert (r.status, r.headers["retry-after"]) == (429, "1")
        assert [e.fault for e in sim.log] == ["reset", "hang", "bad_body", "trickle", "bad_body", ""]


async def test_corral_backend_sees_faults_as_its_errors() -> None:
    faults = {
        "reset": SimReply(fault="reset"),
        "html": SimReply(fault="bad_body"),
        "limit": SimReply(status=429, headers={"retry-after": "1"}),
        "busy": SimReply(status=503),
    }
    spec = load_spec(Person)
    async with Simulator(script=lambda call: faults.get(call.user_text)) as sim:
        backend = OpenAIBackend(base_url=sim.url, model="sim-1", profile=Profile("sim", (Mode.TOOLS,)))
        try:

            async def complete(text: str) -> Any:
                messages: Any = [{"role": "user", "content": text}]
                return await backend.complete(Request(messages, spec, Mode.TOOLS, max_tokens=100))

            for text in ("reset", "html"):
                with pytest.raises(TransportError):
                    await complete(text)
            with pytest.raises(RateLimited) as limited:
                await complete("limit")
            assert limited.value.retry_after == 1.0
            with pytest.raises(ServerError):
                await complete("busy")
            assert (await complete(TEXTS[0])).text == '{"name":"John","age":20}'
        finally:
            await backend.aclose()


def test_cli_options_make_the_config() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            *("--rpm", "500", "--tpm", "90000", "--no-rate-limit-headers", "--rate-limit-bucket", "minute"),
            *("--error-rate", "0.1", "--reset-rate", "0.05", "--hang-rate", "0.01"),
            *("--trickle-rate", "0.02", "--bad-body-rate", "0.03", "--bad-arguments-rate", "0.04"),
            *("--hang-s", "30", "--trickle-s", "5"),
        ]
    )
    config = config_from_args(args)
    assert (config.rpm, config.tpm, config.rate_limit_headers) == (500, 90_000, False)
    assert config.rate_limit_bucket == "minute"
    assert (config.server_error_rate, config.reset_rate, config.hang_rate) == (0.1, 0.05, 0.01)
    assert (config.trickle_rate, config.bad_body_rate, config.bad_arguments_rate) == (0.02, 0.03, 0.04)
    assert (config.hang_s, config.trickle_s) == (30, 5)
    defaults = config_from_args(parser.parse_args([]))
    assert defaults == SimConfig()
    assert defaults.rate_limit_bucket == "second"  # quantized unless asked otherwise
    with pytest.raises(SystemExit):
        parser.parse_args(["--rate-limit-bucket", "hour"])


async def test_scripted_headers_win_over_the_rate_limit_headers(http: aiohttp.ClientSession) -> None:
    reply = SimReply(headers={"X-RateLimit-Remaining-Requests": "7"})
    async with (
        Simulator(SimConfig(rpm=100), script=lambda call: reply) as sim,
        http.post(f"{sim.url}/chat/completions", json=chat_body("text", {}, "x")) as response,
    ):
        assert response.headers.getall("x-ratelimit-remaining-requests") == ["7"]
        assert response.headers["x-ratelimit-limit-requests"] == "100"
