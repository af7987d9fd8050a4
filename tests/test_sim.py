"""The simulator: schema-valid answers read from the prompt, faults by seed, scripting, observation.

Every request goes over real loopback HTTP, through aiohttp, the official ``openai`` SDK or instructor.
Nothing here depends on wall-clock time except waiting for requests that are held on purpose.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import json
import urllib.request
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
import jsonschema
import openai
import orjson
import pydantic
import pytest

from corral.errors import ConfigError, OutputInvalid
from corral.schema import load_spec
from corral.sim import ScriptCall, SimConfig, SimReply, Simulator, SimulatorThread
from corral.sim.answers import Filler
from corral.sim.core import SimCore
from corral.sim.protocol import parse_request

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
            "code",
            "maybe",
            "either",
            "fixed",
        ],
    }
    filler = Filler(schema)
    for text in ("I like blue things", "", "x y z 1 2 3"):
        value = json.loads(filler.answer(text))
        jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
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
        }
    async with http.post(f"{root}/sim/reset") as response:
        assert response.status == 200
    assert sim.stats.requests == 0


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="invalid_rate"):
        SimConfig(invalid_rate=1.5)
    with pytest.raises(ConfigError, match="must not exceed 1"):
        SimConfig(invalid_rate=0.6, malformed_rate=0.6)
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
