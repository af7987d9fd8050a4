"""Context windows: a request whose prompt and max_tokens do not fit is refused in the provider's
words, on each wire and in batch lines; one that just fits is answered; ``/v1/models`` says how large
the window is, as vLLM does.

The window is set just around each request's own prompt, whose size the simulator reports in
``usage``: the tests pin the boundary to the token, not to an estimate of their own.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from corral.errors import ConfigError
from corral.sim import SimConfig, Simulator
from corral.sim.args import add_arguments, config_from_args
from corral.sim.config import DEFAULT_CONTEXT_WINDOW
from tests._support import Person
from tests._support.chat import JSON, chat_body, post

TEXT = "My name is Ann and I am 30 years old. " * 20
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-test"}


def openai_refusal(message: str) -> JSON:
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


def anthropic_refusal(message: str) -> JSON:
    return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}


async def post_messages(http: aiohttp.ClientSession, sim: Simulator, body: JSON) -> tuple[int, JSON]:
    url = f"{sim.anthropic_url}/v1/messages"
    async with http.post(url, json=body, headers=ANTHROPIC_HEADERS) as response:
        return response.status, await response.json()


def messages_body(max_tokens: int) -> JSON:
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": TEXT}],
        "tools": [{"name": "extract", "input_schema": Person.model_json_schema()}],
        "tool_choice": {"type": "tool", "name": "extract"},
    }


async def prompt_tokens(http: aiohttp.ClientSession, body: JSON, *, wire: str = "openai") -> int:
    """The prompt tokens the simulator counts for ``body`` (asked of one without a window)."""
    async with Simulator(SimConfig(context_window=None)) as sim:
        if wire == "anthropic":
            status, reply = await post_messages(http, sim, body)
            assert status == 200
            return int(reply["usage"]["input_tokens"])
        status, reply = await post(http, sim, body)
        assert status == 200
        return int(reply["usage"]["prompt_tokens"])


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_openai_refuses_a_request_beyond_the_window_with_its_exact_body(
    http: aiohttp.ClientSession, field: str
) -> None:
    body = chat_body("tools", Person.model_json_schema(), TEXT, **{field: 100})
    prompt = await prompt_tokens(http, body)
    async with Simulator(SimConfig(context_window=prompt + 100)) as sim:
        status, reply = await post(http, sim, body)
        assert status == 200, "prompt + max_tokens == the window: it fits"
        body[field] = 101
        status, reply = await post(http, sim, body)
        assert status == 400
        assert reply == openai_refusal(
            f"This model's maximum context length is {prompt + 100} tokens. However, you requested "
            f"{prompt + 101} tokens ({prompt} in the messages, 101 in the completion). Please reduce "
            "the length of the messages or completion."
        )
        refused = sim.log[-1]
        assert (refused.status, refused.fault, refused.tokens) == (400, "context_length", 0)
        assert sim.stats.by_fault == {"context_length": 1}


async def test_without_max_tokens_the_prompt_must_leave_room_for_one_token(
    http: aiohttp.ClientSession,
) -> None:
    body = chat_body("json_schema", Person.model_json_schema(), TEXT)
    prompt = await prompt_tokens(http, body)
    async with Simulator(SimConfig(context_window=prompt + 1)) as sim:
        assert (await post(http, sim, body))[0] == 200
    async with Simulator(SimConfig(context_window=prompt)) as sim:
        status, reply = await post(http, sim, body)
        assert status == 400
        assert reply == openai_refusal(
            f"This model's maximum context length is {prompt} tokens. However, your messages resulted in "
            f"{prompt} tokens. Please reduce the length of the messages."
        )


async def test_the_openai_sdk_reads_it_as_a_bad_request_and_does_not_retry() -> None:
    async with (
        Simulator(SimConfig(context_window=50)) as sim,
        openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test", max_retries=2) as client,
    ):
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": TEXT}], max_tokens=10
            )
        assert raised.value.code == "context_length_exceeded"
        assert sim.stats.requests == 1


async def test_anthropic_refuses_in_its_own_two_messages(http: aiohttp.ClientSession) -> None:
    prompt = await prompt_tokens(http, messages_body(100), wire="anthropic")
    async with Simulator(SimConfig(context_window=prompt + 100)) as sim:
        assert (await post_messages(http, sim, messages_body(100)))[0] == 200, "input + max_tokens fit"
        status, reply = await post_messages(http, sim, messages_body(101))
    assert status == 400
    assert reply == anthropic_refusal(
        f"input length and `max_tokens` exceed context limit: {prompt} + 101 > {prompt + 100}, "
        "decrease input length or `max_tokens` and try again"
    )
    async with Simulator(SimConfig(context_window=prompt - 1)) as sim:
        status, reply = await post_messages(http, sim, messages_body(1))
    assert status == 400
    assert reply == anthropic_refusal(f"prompt is too long: {prompt} tokens > {prompt - 1} maximum")
    async with (
        Simulator(SimConfig(context_window=prompt)) as sim,
        anthropic.AsyncAnthropic(base_url=sim.anthropic_url, api_key="sk-ant-test", max_retries=2) as client,
    ):
        with pytest.raises(anthropic.BadRequestError) as raised:
            await client.messages.create(**messages_body(1))
        assert "exceed context limit" in str(raised.value)
        assert sim.stats.requests == 1


async def test_a_refused_request_is_not_charged_against_the_token_limit(http: aiohttp.ClientSession) -> None:
    body = chat_body("tools", Person.model_json_schema(), TEXT, max_tokens=100)
    prompt = await prompt_tokens(http, body)
    config = SimConfig(context_window=prompt + 100, tpm=60_000, rate_limit_bucket="minute")
    async with Simulator(config) as sim:
        body["max_tokens"] = 5_000
        assert (await post(http, sim, body))[0] == 400
        body["max_tokens"] = 100
        async with http.post(f"{sim.url}/chat/completions", json=body) as response:
            assert response.status == 200
            remaining = int(response.headers["x-ratelimit-remaining-tokens"])
        assert 60_000 - (prompt + 100) - remaining <= 1, "only the answered request was charged"
        assert [entry.tokens for entry in sim.log] == [0, prompt + 100]


# --- batches -------------------------------------------------------------------------------------


async def test_openai_batch_lines_beyond_the_window_fail_alone_with_the_same_body(
    http: aiohttp.ClientSession,
) -> None:
    body = chat_body("tools", Person.model_json_schema(), TEXT, max_tokens=100)
    prompt = await prompt_tokens(http, body)
    lines = b"".join(
        orjson.dumps({"custom_id": f"c{n}", "method": "POST", "url": "/v1/chat/completions",
                      "body": {**body, "max_tokens": n}}) + b"\n"
        for n in (100, 101)
    )  # fmt: skip
    async with (
        Simulator(SimConfig(context_window=prompt + 100, batch_seconds=0)) as sim,
        openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test", max_retries=0) as client,
    ):
        uploaded = await client.files.create(file=("in.jsonl", lines), purpose="batch")
        batch = await client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        batch = await client.batches.retrieve(batch.id)
        assert batch.status == "completed"
        assert batch.output_file_id is not None and batch.error_file_id is not None
        output = orjson.loads((await client.files.content(batch.output_file_id)).content)
        error = orjson.loads((await client.files.content(batch.error_file_id)).content)
    assert output["custom_id"] == "c100" and output["response"]["status_code"] == 200
    assert error["custom_id"] == "c101" and error["response"]["status_code"] == 400
    assert error["response"]["body"] == openai_refusal(
        f"This model's maximum context length is {prompt + 100} tokens. However, you requested "
        f"{prompt + 101} tokens ({prompt} in the messages, 101 in the completion). Please reduce "
        "the length of the messages or completion."
    )


async def test_anthropic_batch_lines_beyond_the_window_are_errored_with_the_same_body(
    http: aiohttp.ClientSession,
) -> None:
    prompt = await prompt_tokens(http, messages_body(100), wire="anthropic")
    async with (
        Simulator(SimConfig(context_window=prompt + 100, batch_seconds=0)) as sim,
        anthropic.AsyncAnthropic(base_url=sim.anthropic_url, api_key="sk-ant-test", max_retries=0) as client,
    ):
        requests: Any = [{"custom_id": f"c{n}", "params": messages_body(n)} for n in (100, 101)]
        batch = await client.messages.batches.create(requests=requests)
        for _ in range(100):
            batch = await client.messages.batches.retrieve(batch.id)
            if batch.processing_status == "ended":
                break
            await asyncio.sleep(0.01)
        results = {r.custom_id: r.result async for r in await client.messages.batches.results(batch.id)}
    assert results["c100"].type == "succeeded"
    errored: Any = results["c101"]
    assert errored.type == "errored"
    assert errored.error.to_dict() == anthropic_refusal(
        f"input length and `max_tokens` exceed context limit: {prompt} + 101 > {prompt + 100}, "
        "decrease input length or `max_tokens` and try again"
    )


# --- what the server says of its window, and how it is configured ---------------------------------


async def test_models_report_the_window_as_vllm_does(http: aiohttp.ClientSession) -> None:
    async with Simulator(SimConfig(model="sim-1", context_window=32_768)) as sim:
        async with http.get(f"{sim.url}/models") as response:
            listed = (await response.json())["data"]
        async with http.get(f"{sim.url}/models/gpt-4o-mini") as response:
            one = await response.json()
    assert [(m["id"], m["max_model_len"]) for m in listed] == [("sim-1", 32_768)]
    assert (one["id"], one["max_model_len"]) == ("gpt-4o-mini", 32_768)
    async with Simulator(SimConfig(context_window=None)) as sim, http.get(f"{sim.url}/models") as response:
        assert "max_model_len" not in (await response.json())["data"][0]


async def test_the_default_window_is_gpt_4o_minis_and_refuses_what_exceeds_it(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    assert sim.config.context_window == DEFAULT_CONTEXT_WINDOW == 128_000
    body = chat_body("json_schema", Person.model_json_schema(), "Hi Bob.", max_completion_tokens=128_000)
    status, reply = await post(http, sim, body)
    assert status == 400 and reply["error"]["code"] == "context_length_exceeded"


def test_the_flags_set_the_window_and_the_slips() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    default = config_from_args(parser.parse_args([]))
    assert (default.context_window, default.hallucinate, default.misplace) == (128_000, 0.0, 0.0)
    args = parser.parse_args(["--context-window", "8192", "--hallucinate", "0.1", "--misplace", "0.2"])
    assert (config_from_args(args).context_window, args.hallucinate, args.misplace) == (8192, 0.1, 0.2)
    assert config_from_args(parser.parse_args(["--context-window", "0"])).context_window is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--context-window", "-1"])
    assert "max_model_len" in parser.format_help()


@pytest.mark.parametrize(
    "fields",
    [{"context_window": 0}, {"context_window": 1.5}, {"hallucinate": -0.1}, {"misplace": 1.5},
     {"hallucinate": 0.6, "misplace": 0.5}],
)  # fmt: skip
def test_bad_settings_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SimConfig(**fields)
