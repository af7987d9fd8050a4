"""The simulator driven by the official ``openai`` SDK and by instructor.

Every request goes over real loopback HTTP, through aiohttp, the official ``openai`` SDK or instructor.
Nothing here depends on wall-clock time except waiting for requests that are held on purpose.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from corral.sim import ScriptCall, SimReply, Simulator
from tests._support import Person
from tests._support.chat import TEXTS


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
