"""Anthropic Messages, both sides: corral's backend and the simulator's ``POST /v1/messages``.

The official ``anthropic`` SDK checks the simulator's shapes (replies and errors parse into its own
types); corral's backend is then checked against that simulator over real loopback HTTP.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anthropic
import orjson
import pydantic
import pytest
from aiohttp import web

from corral import AuthError, Extractor
from corral.backends import open_backend
from corral.backends.anthropic import AnthropicBackend, error_from_type, translate_messages
from corral.backends.base import Mode, Request
from corral.backends.openai import OpenAIBackend
from corral.errors import (
    BadRequest,
    ConfigError,
    ModelNotFound,
    ProviderError,
    RateLimited,
    ServerError,
)
from corral.schema import load_spec
from corral.sim import ScriptCall, SimConfig, SimReply, Simulator, SimulatorThread
from corral.sim.anthropic import parse_messages_body
from corral.sim.core import SimCore
from corral.sim.openai import RequestError
from tests._support import EXAMPLES, PERSON
from tests._support.cli import Corral

JSON = dict[str, Any]
MODEL = "anthropic/claude-haiku-4-5"
KEY = "sk-ant-test-0123456789-secret"
JOHN = "My name is John and I am 20 years old"
PEOPLE = (EXAMPLES / "people.txt").read_text().splitlines()


class Person(pydantic.BaseModel):
    name: str
    age: int


PERSON_TOOL: anthropic.types.ToolParam = {
    "name": "Person",
    "description": "A person",
    "input_schema": Person.model_json_schema(),
}


def expected(text: str) -> JSON:
    match = re.fullmatch(r"My name is (\w+) and I am (\d+) years old", text)
    assert match is not None
    return {"name": match[1], "age": int(match[2])}


@pytest.fixture(autouse=True)
def _anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


@contextlib.asynccontextmanager
async def extractor(sim: Simulator, **options: Any) -> AsyncIterator[Extractor[Person]]:
    ex: Extractor[Person] = Extractor(Person, model=MODEL, base_url=sim.anthropic_url, **options)
    async with ex:
        yield ex


def first_fails(reply: SimReply, times: int = 1) -> Any:
    def script(call: ScriptCall) -> SimReply | None:
        return reply if call.repeat < times else None

    return script


async def sdk_person(client: anthropic.AsyncAnthropic, *, max_tokens: int = 256) -> anthropic.types.Message:
    return await client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=max_tokens,
        messages=[{"role": "user", "content": JOHN}],
        tools=[PERSON_TOOL],
        tool_choice={"type": "tool", "name": "Person"},
    )


# --- the simulator, as the official SDK sees it ---------------------------------------------------


async def test_sdk_gets_a_forced_tool_call_with_the_person() -> None:
    async with Simulator() as sim:
        client = anthropic.AsyncAnthropic(base_url=sim.anthropic_url, api_key="test", max_retries=0)
        message = await sdk_person(client)
        await client.close()
    (block,) = message.content
    assert isinstance(block, anthropic.types.ToolUseBlock) and block.name == "Person"
    assert block.input == {"name": "John", "age": 20}
    assert block.id.startswith("toolu_") and message.id.startswith("msg_")
    assert message.stop_reason == "tool_use"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert [entry.mode for entry in sim.log] == ["tools"]


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (529, anthropic.OverloadedError, "overloaded_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
    ],
)
async def test_sdk_raises_its_own_error_for_scripted_errors(
    status: int, error_class: type[anthropic.APIStatusError], error_type: str
) -> None:
    async with Simulator(script=lambda call: SimReply(status=status)) as sim:
        client = anthropic.AsyncAnthropic(base_url=sim.anthropic_url, api_key="test", max_retries=0)
        with pytest.raises(error_class) as caught:
            await sdk_person(client)
        await client.close()
    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == error_type


async def test_sdk_sees_malformed_invalid_and_truncated_answers() -> None:
    async with Simulator(SimConfig(malformed_rate=1.0)) as sim:
        client = anthropic.AsyncAnthropic(base_url=sim.anthropic_url, api_key="test", max_retries=0)
        broken = await sdk_person(client)
        await client.close()
    # Tool input is always an object on this wire: a reply that is not JSON comes as text.
    (text,) = broken.content
    assert isinstance(text, anthropic.types.TextBlock) and broken.stop_reason == "end_turn"
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text.text)

    async with Simulator(SimConfig(invalid_rate=1.0)) as sim:
        client = anthropic.AsyncAnthropic(base_url=sim.anthropic_url, api_key="test", max_retries=0)
        invalid = await sdk_person(client)
        cut = await sdk_person(client, max_tokens=2)
        await client.close()
    (block,) = invalid.content
    assert isinstance(block, anthropic.types.ToolUseBlock) and isinstance(block.input, dict)
    with pytest.raises(pydantic.ValidationError):
        Person.model_validate(block.input)
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 2


def test_random_server_errors_are_overloaded_529s_on_this_wire() -> None:
    core = SimCore(SimConfig(server_error_rate=1.0, seed=3), None)
    body = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": JOHN}]}
    statuses, types = set(), set()
    for index in range(40):
        out = core.reply(parse_messages_body(body, "m"), index, 0.0)
        statuses.add(out.status)
        types.add(orjson.loads(out.body)["error"]["type"])
    assert statuses == {500, 502, 529}
    assert types == {"api_error", "overloaded_error"}


async def test_rate_limit_headers_and_429s_take_anthropic_shapes() -> None:
    async with Simulator(SimConfig(rpm=1)) as sim:
        backend = AnthropicBackend(model="claude-haiku-4-5", api_key="k", base_url=sim.anthropic_url)
        request = person_request([{"role": "user", "content": JOHN}])
        completion = await backend.complete(request)
        with pytest.raises(RateLimited) as caught:
            await backend.complete(request)
        await backend.aclose()
    assert completion.rate_limits is not None
    assert completion.rate_limits.limit_requests == 1
    assert completion.rate_limits.remaining_requests == 0
    refused = caught.value
    assert refused.status == 429 and "rate_limit_error" in str(refused)
    assert refused.retry_after is not None and refused.retry_after >= 1
    assert "retry-after-ms" not in refused.headers  # Anthropic's is whole seconds only
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", refused.headers["anthropic-ratelimit-requests-reset"]
    )
    assert not any(name.lower().startswith("x-ratelimit") for name in refused.headers)


# --- the simulator's parser: what the real API refuses -------------------------------------------

GOOD: JSON = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": JOHN}]}
TOOL_TURNS: list[JSON] = [
    {"role": "user", "content": JOHN},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Person", "input": {}}]},
]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "at least one message"),
        ({"messages": [{"role": "system", "content": "be brief"}]}, "messages.0.role"),
        ({"system": 7}, "system"),
        ({"temperature": 1.5}, "temperature"),
        ({"tools": [{"name": "Person"}]}, "input_schema"),
        ({"tools": [PERSON_TOOL], "tool_choice": {"type": "tool", "name": "Other"}}, "tool_choice"),
        ({"messages": [*TOOL_TURNS, {"role": "user", "content": "again"}]}, "without a tool_result"),
        (
            {
                "messages": [
                    *TOOL_TURNS,
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]},
                ]
            },
            "toolu_9",
        ),
    ],
)
def test_sim_parser_refuses_what_the_api_refuses(change: JSON, problem: str) -> None:
    body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(RequestError, match=re.escape(problem)):
        parse_messages_body(body, "m")


def test_sim_parser_reads_modes_and_the_user_text() -> None:
    tools = parse_messages_body(
        {**GOOD, "tools": [PERSON_TOOL], "tool_choice": {"type": "tool", "name": "Person"}}, "m"
    )
    assert (tools.mode, tools.tool_name, tools.forced_tool, tools.wire) == (
        "tools",
        "Person",
        True,
        "anthropic",
    )
    schema_prompt = f"Reply with JSON matching:\n{orjson.dumps(Person.model_json_schema()).decode()}"
    blocks = [{"type": "text", "text": JOHN}]
    json_mode = parse_messages_body(
        {**GOOD, "system": schema_prompt, "messages": [{"role": "user", "content": blocks}]}, "m"
    )
    assert json_mode.mode == "json_object" and json_mode.schema == Person.model_json_schema()
    assert json_mode.user_text == JOHN
    assert parse_messages_body(GOOD, "m").mode == "text"
    assert json_mode.prompt_tokens > parse_messages_body(GOOD, "m").prompt_tokens  # the system counts


@pytest.mark.parametrize(
    ("headers", "body", "problem"),
    [
        ({}, GOOD, "anthropic-version"),
        ({"anthropic-version": "2023-06-01"}, {**GOOD, "max_tokens": None}, "max_tokens"),
    ],
)
async def test_sim_answers_bad_requests_with_anthropic_400s(
    headers: dict[str, str], body: JSON, problem: str
) -> None:
    async with Simulator() as sim, aiohttp.ClientSession() as session:
        data = orjson.dumps({k: v for k, v in body.items() if v is not None})
        async with session.post(f"{sim.anthropic_url}/v1/messages", data=data, headers=headers) as response:
            status, reply = response.status, await response.json()
    assert status == 400
    assert reply["type"] == "error" and reply["error"]["type"] == "invalid_request_error"
    assert problem in reply["error"]["message"]


# --- corral's backend: translation ------------------------------------------------------------------


def person_request(messages: list[JSON], mode: Mode = Mode.TOOLS) -> Request:
    return Request(messages=messages, spec=load_spec(Person), mode=mode, max_tokens=100)


def test_messages_are_translated_to_anthropic_turns() -> None:
    call = {"id": "toolu_1", "type": "function", "function": {"name": "Person", "arguments": '{"name":"Jo"}'}}
    system, messages = translate_messages(
        [
            {"role": "system", "content": "Extract people."},
            {"role": "user", "content": JOHN},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "age: Field required"},
            {"role": "system", "content": "Be exact."},
            {"role": "user", "content": "Reply again."},
            {"role": "assistant", "content": ""},  # empty: dropped, so the users around it merge
            {"role": "user", "content": "Please."},
        ]
    )
    assert system == "Extract people.\n\nBe exact."
    assert messages == [
        {"role": "user", "content": JOHN},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "Person", "input": {"name": "Jo"}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "is_error": True,
                    "content": "age: Field required",
                },
                {"type": "text", "text": "Reply again."},
                {"type": "text", "text": "Please."},
            ],
        },
    ]  # fmt: skip


def test_tool_results_open_the_user_turn_they_are_merged_into() -> None:
    call = {"id": "t", "type": "function", "function": {"name": "Person", "arguments": "{}"}}
    _, messages = translate_messages(
        [
            {"role": "user", "content": JOHN},
            {"role": "assistant", "content": "Let me see.", "tool_calls": [call]},
            {"role": "user", "content": "note"},
            {"role": "tool", "tool_call_id": "t", "content": "wrong"},
        ]
    )
    assert [block["type"] for block in messages[1]["content"]] == ["text", "tool_use"]
    assert [block["type"] for block in messages[2]["content"]] == ["tool_result", "text"]


def test_body_forces_the_tool_or_relies_on_the_prompt() -> None:
    backend = AnthropicBackend(model="claude-haiku-4-5", api_key=KEY)
    conversation = [{"role": "system", "content": "S"}, {"role": "user", "content": JOHN}]
    tools = backend.body(person_request(conversation))
    assert tools["system"] == "S" and tools["max_tokens"] == 100 and tools["temperature"] == 0.0
    assert tools["tool_choice"] == {"type": "tool", "name": "Person"}
    assert tools["tools"][0]["input_schema"] == load_spec(Person).schema
    assert all(m["role"] != "system" for m in tools["messages"])
    plain = backend.body(person_request(conversation, Mode.JSON_OBJECT))
    assert "tools" not in plain and "tool_choice" not in plain
    with pytest.raises(ConfigError, match="json_schema"):
        backend.body(person_request(conversation, Mode.JSON_SCHEMA))
    assert KEY not in repr(backend)
    assert backend.base_url == "https://api.anthropic.com" and backend.endpoint == backend.base_url


def test_replies_become_openai_shaped_completions() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 2,
    }
    tool = AnthropicBackend.parse(
        {
            "content": [
                {"type": "tool_use", "id": "toolu_7", "name": "Person", "input": {"name": "A", "age": 1}}
            ],
            "stop_reason": "tool_use",
            "usage": usage,
        }
    )
    assert orjson.loads(tool.text) == {"name": "A", "age": 1}
    assert tool.tool_call_id == "toolu_7" and tool.finish_reason == "tool_calls"
    assert (tool.usage.prompt_tokens, tool.usage.completion_tokens) == (15, 5)
    assert tool.reply == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "toolu_7", "type": "function", "function": {"name": "Person", "arguments": tool.text}}
        ],
    }
    fenced = AnthropicBackend.parse(
        {
            "content": [{"type": "text", "text": '```json\n{"a": 1}\n```'}],
            "stop_reason": "max_tokens",
            "usage": usage,
        }
    )
    assert orjson.loads(fenced.text) == {"a": 1} and fenced.finish_reason == "length"
    assert fenced.tool_call_id is None and fenced.reply["content"].startswith("```")
    ended = AnthropicBackend.parse({"content": [], "stop_reason": "end_turn", "usage": usage})
    assert ended.finish_reason == "stop" and ended.text == ""


@pytest.mark.parametrize(
    ("error_type", "cls", "status"),
    [
        ("invalid_request_error", BadRequest, 400),
        ("authentication_error", AuthError, 401),
        ("permission_error", AuthError, 403),
        ("not_found_error", ModelNotFound, 404),
        ("request_too_large", BadRequest, 413),
        ("rate_limit_error", RateLimited, 429),
        ("api_error", ServerError, 500),
        ("overloaded_error", ServerError, 529),
    ],
)
def test_error_types_map_to_corral_errors(error_type: str, cls: type[ProviderError], status: int) -> None:
    error = error_from_type(error_type, "boom")
    assert type(error) is cls and error.status == status and "boom" in str(error)
    if isinstance(error, ServerError):
        assert error.overloaded == (status == 529)


def test_unknown_error_types_fall_back_on_the_status() -> None:
    assert type(error_from_type("new_error", "x", status=429)) is RateLimited
    assert type(error_from_type("new_error", "x", status=418)) is BadRequest
    assert type(error_from_type("new_error", "x")) is ServerError
    auth = error_from_type("authentication_error", "invalid x-api-key", key_env="MY_KEY")
    assert "$MY_KEY" in str(auth)
    unknown = error_from_type("not_found_error", "model: nope", model="claude-nope")
    assert "claude-nope" in str(unknown)


# --- corral against the simulator ----------------------------------------------------------------


async def test_extractor_extracts_the_article() -> None:
    async with Simulator() as sim:
        ex: Extractor[Any] = Extractor(
            str(EXAMPLES / "person.py") + ":Person", model=MODEL, base_url=sim.anthropic_url
        )
        async with ex:
            outcomes = [o async for o in ex.map(PEOPLE)]
    assert sorted((o.output for o in outcomes), key=str) == sorted(map(expected, PEOPLE), key=str)
    assert all(o.attempts == 1 for o in outcomes) and len(sim.log) == 7
    assert {entry.mode for entry in sim.log} == {"tools"}


async def test_invalid_answer_is_reasked_with_an_error_tool_result() -> None:
    bodies: list[JSON] = []

    def script(call: ScriptCall) -> SimReply | None:
        bodies.append(call.body)
        return SimReply(answer_text='{"name": "John"}') if call.repeat == 0 else None

    # Every request was let in: the simulator refuses any without an anthropic-version header.
    async with Simulator(script=script) as sim, extractor(sim) as ex:
        outcome = await ex.extract(JOHN)
    assert outcome.unwrap() == Person(name="John", age=20) and outcome.attempts == 2
    first, reask = bodies
    assert isinstance(first["system"], str) and first["system"] == reask["system"]
    assert all(m["role"] in ("user", "assistant") for m in reask["messages"])
    user, assistant, answer = reask["messages"]
    assert user == {"role": "user", "content": JOHN}
    (tool_use,) = assistant["content"]
    assert tool_use["type"] == "tool_use" and tool_use["input"] == {"name": "John"}
    assert tool_use["id"].startswith("toolu_sim") and tool_use["id"].endswith(f"{0:014x}")  # the sim's first
    (result,) = answer["content"]
    assert result["type"] == "tool_result" and result["is_error"] is True
    assert result["tool_use_id"] == tool_use["id"]
    assert "age" in result["content"] and "Field required" in result["content"]


async def test_text_instead_of_a_tool_call_is_reasked_as_the_user() -> None:
    bodies: list[JSON] = []

    def script(call: ScriptCall) -> SimReply | None:
        bodies.append(call.body)
        return SimReply(answer_text='{"name": "Jo') if call.repeat == 0 else None

    async with Simulator(script=script) as sim, extractor(sim) as ex:
        outcome = await ex.extract(JOHN)
    assert outcome.ok and outcome.attempts == 2
    _, assistant, feedback = bodies[1]["messages"]
    assert assistant == {"role": "assistant", "content": '{"name": "Jo'}
    assert feedback["role"] == "user" and "schema" in feedback["content"]


async def test_json_object_mode_reads_the_reply_text() -> None:
    async with Simulator() as sim, extractor(sim, mode="json_object") as ex:
        outcome = await ex.extract(JOHN)
    assert outcome.unwrap() == Person(name="John", age=20)
    assert [entry.mode for entry in sim.log] == ["json_object"]


async def test_overload_is_retried_and_counted_as_rate_limiting() -> None:
    script = first_fails(SimReply(status=529, headers={"retry-after": "0"}))
    async with Simulator(script=script) as sim, extractor(sim) as ex:
        outcome = await ex.extract(JOHN)
        stats = ex.stats
    assert outcome.unwrap() == Person(name="John", age=20)
    assert [entry.status for entry in sim.log] == [529, 200]
    assert stats.faults == {"server_error": 1} and stats.rate_limited == 1


async def test_retry_after_on_a_429_is_honoured() -> None:
    script = first_fails(SimReply(status=429, headers={"retry-after": "1"}))
    async with Simulator(script=script) as sim, extractor(sim) as ex:
        outcome = await ex.extract(JOHN)
        assert ex.stats.rate_limited == 1
    assert outcome.ok and [entry.status for entry in sim.log] == [429, 200]
    assert sim.log[1].time - sim.log[0].time >= 1.0  # never sooner than the provider asked


async def test_a_bad_request_is_not_retried() -> None:
    async with Simulator(script=lambda call: SimReply(status=400)) as sim, extractor(sim) as ex:
        outcome = await ex.extract(JOHN)
    assert outcome.error is not None and outcome.error.kind == "bad_request"
    assert "invalid_request_error" in outcome.error.message
    assert outcome.attempts == 1 and len(sim.log) == 1


async def test_a_rejected_key_stops_the_run_without_showing_the_key() -> None:
    refuse = SimReply(
        status=401,
        error_body={
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        },
    )
    async with Simulator(script=lambda call: refuse) as sim, extractor(sim, concurrency=4) as ex:
        with pytest.raises(AuthError) as caught:
            async for _ in ex.map(PEOPLE * 5):
                pass
        shown = f"{caught.value} {caught.value!r} {caught.value.body} {caught.value.headers} {ex.backend!r}"
    assert "ANTHROPIC_API_KEY" in str(caught.value) and "authentication_error" in str(caught.value)
    assert KEY not in shown
    assert len(sim.log) <= 4


def test_a_missing_key_is_a_config_error_before_anything_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        open_backend(MODEL)
    monkeypatch.setenv("OTHER_KEY", "k")
    backend = open_backend(MODEL, api_key_env="OTHER_KEY", base_url="http://127.0.0.1:9/v1")
    assert isinstance(backend, AnthropicBackend) and backend.base_url == "http://127.0.0.1:9"
    assert backend.model == "claude-haiku-4-5" and backend.profile.batch_api == "anthropic"
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:7")
    assert open_backend(MODEL, api_key_env="OTHER_KEY").endpoint == "http://127.0.0.1:7"


async def test_the_scheduler_learns_the_limit_from_anthropic_headers() -> None:
    async with Simulator(SimConfig(rpm=600, tpm=500_000)) as sim, extractor(sim) as ex:
        outcome = await ex.extract(JOHN)
        # Learned from anthropic-ratelimit-* alone: no limit was given to the extractor.
        learned = (ex.limits.rpm, ex.limits.tpm)
    assert outcome.ok
    assert learned[0] == pytest.approx(600)
    assert learned[1] == pytest.approx(500_000)


# --- streaming lines (batch results) ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_lines_streams_the_non_empty_lines_and_translates_errors(kind: str) -> None:
    chunks = [b'{"a": 1}\n\n{"b"', b": 2}\r\n", b"", b'{"c": 3}']

    async def results(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
        return response

    async def missing(request: web.Request) -> web.Response:
        return web.json_response(
            {"type": "error", "error": {"type": "not_found_error", "message": "no"}}, status=404
        )

    app = web.Application()
    app.router.add_get("/results", results)
    app.router.add_get("/missing", missing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    root = f"http://127.0.0.1:{runner.addresses[0][1]}"
    backend: AnthropicBackend | OpenAIBackend
    if kind == "anthropic":
        backend = AnthropicBackend(model="m", api_key="k", base_url=root)
    else:
        backend = OpenAIBackend(base_url=root, model="m", profile=open_backend(base_url=root).profile)
    try:
        lines = [line async for line in backend.lines(f"{root}/results")]
        with pytest.raises(ModelNotFound):
            _ = [line async for line in backend.lines(f"{root}/missing")]
    finally:
        await backend.aclose()
        await runner.cleanup()
    assert lines == [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}']


# --- the command line ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def thread_sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimConfig(latency_ms=5, seed=2)) as server:
        yield server


@pytest.mark.usefixtures("no_api_keys")
def test_cli_runs_the_article_against_anthropic(corral: Corral, thread_sim: SimulatorThread) -> None:
    result = corral(
        "run",
        "examples/people.txt",
        "--schema",
        PERSON,
        "--model",
        MODEL,
        "--base-url",
        thread_sim.anthropic_url,
        env={"ANTHROPIC_API_KEY": KEY},
    )
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [row["output"] for row in rows] == [expected(text) for text in PEOPLE]
    assert "7 items: 7 ok" in result.stderr and KEY not in result.stderr + result.stdout
