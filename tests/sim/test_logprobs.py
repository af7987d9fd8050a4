"""Token logprobs on OpenAI's wire, drawn to match the simulator's own mistakes; refused where the
providers refuse them.

A value's confidence is read here the way a client reads it: the product (and the minimum) of the
probabilities of the tokens that overlap the value's characters in the content. The answers are
checked against what the texts say. Every request goes over loopback HTTP (or the official SDKs).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import statistics
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from corral.sim import SimConfig, Simulator
from tests._support import Person
from tests._support.chat import JSON, answer_of, chat_body, post
from tests.sim.test_field_errors import PEOPLE, people_text

MODES = ["json_schema", "json_object", "text"]
#: a value of the compact answers: its key, and the value with its quotes
_VALUE = re.compile(r'"(name|age)":("(?:[^"\\]|\\.)*"|-?\d+|null)')
SUMMARY: JSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "summary": {"type": "string"}},
    "required": ["name", "age", "summary"],
}
TEXTS = [
    "My name is José Müller and I am 41 years old.",
    'Zoë "Zo" Ødegaard, 29, said:\n\t"ship it" — twice…',
    "Nothing to see here.",
    "",
    "Meet 李小龙, 32 years old; he signs emails with ✨.",
]


def logprobs_of(reply: JSON) -> Any:
    return reply["choices"][0]["logprobs"]


def confidences(reply: JSON) -> list[tuple[str, Any, float, float]]:
    """(field, value, product, minimum) of each name and age in a compact answer of people."""
    content = reply["choices"][0]["message"]["content"]
    entries = logprobs_of(reply)["content"]
    ends, at = [], 0
    for entry in entries:
        at += len(entry["token"])
        ends.append(at)
    out = []
    for match in _VALUE.finditer(content):
        start, end = match.span(2)
        if match.group(2).startswith('"'):
            start, end = start + 1, end - 1
        probabilities = [
            math.exp(entry["logprob"])
            for entry, stop in zip(entries, ends, strict=True)
            if stop - len(entry["token"]) < max(end, start + 1) and stop > start
        ]
        out.append((match.group(1), json.loads(match.group(2)), math.prod(probabilities), min(probabilities)))
    return out


async def test_tokens_spell_the_content_exactly_in_every_mode(http: aiohttp.ClientSession) -> None:
    config = SimConfig(seed=1, field_errors={"*": 0.3}, hallucinate=0.1, misplace=0.2)
    async with Simulator(config) as sim:
        for mode in MODES:
            for text in TEXTS:
                for top in (0, 3, 20):
                    extra = {"logprobs": True, **({"top_logprobs": top} if top else {})}
                    status, reply = await post(http, sim, chat_body(mode, SUMMARY, text, **extra))
                    assert status == 200, reply
                    content = reply["choices"][0]["message"]["content"]
                    entries = logprobs_of(reply)["content"]
                    assert logprobs_of(reply)["refusal"] is None
                    assert "".join(entry["token"] for entry in entries) == content
                    assert reply["usage"]["completion_tokens"] == len(entries) > 0
                    for entry in entries:
                        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
                        assert entry["bytes"] == list(entry["token"].encode("utf-8"))
                        assert entry["logprob"] <= 0.0 and math.isfinite(entry["logprob"])
                        alternatives = entry["top_logprobs"]
                        assert len(alternatives) == top
                        if top:
                            assert alternatives[0]["token"] == entry["token"]
                            assert alternatives[0]["logprob"] == entry["logprob"]
                            assert len({a["token"] for a in alternatives}) == top
                            ranked = [a["logprob"] for a in alternatives]
                            assert ranked == sorted(ranked, reverse=True)
                            assert all(a["bytes"] == list(a["token"].encode()) for a in alternatives)
                            assert sum(math.exp(a["logprob"]) for a in alternatives) <= 1 + 1e-9


async def test_json_is_tokenised_as_gpt_4o_tokenises_it(http: aiohttp.ClientSession) -> None:
    async with Simulator() as sim:
        status, reply = await post(
            http,
            sim,
            chat_body(
                "json_schema",
                Person.model_json_schema(),
                "My name is John and I am 20 years old",
                logprobs=True,
            ),
        )
    assert status == 200
    tokens = [entry["token"] for entry in logprobs_of(reply)["content"]]
    assert tokens == ['{"', "name", '":"', "John", '","', "age", '":', "20", "}"]
    keys = [entry["logprob"] for entry in logprobs_of(reply)["content"] if entry["token"] in ("name", "age")]
    assert keys == [0.0, 0.0], "a strict schema's grammar forces its keys"


async def test_wrong_values_are_less_likely_than_right_ones_but_not_always(
    http: aiohttp.ClientSession,
) -> None:
    texts, truths = zip(*(people_text(i) for i in range(250)), strict=True)
    config = SimConfig(seed=7, field_errors={"age": 0.3, "name": 0.1}, misplace=0.05)
    right: dict[str, list[tuple[float, float]]] = {"name": [], "age": []}
    wrong: dict[str, list[tuple[float, float]]] = {"name": [], "age": []}
    async with Simulator(config) as sim:
        for text, truth in zip(texts, truths, strict=True):
            body = chat_body("json_schema", PEOPLE.schema, text, logprobs=True)
            status, reply = await post(http, sim, body)
            assert status == 200
            values = confidences(reply)
            expected = [value for person in truth for value in person]
            assert [value for _, value, _, _ in values] != [] and len(values) == len(expected)
            for (field, value, product, least), true in zip(values, expected, strict=True):
                (right if value == true else wrong)[field].append((product, least))
    for field, share in (("age", 0.3), ("name", 0.145)):
        n_right, n_wrong = len(right[field]), len(wrong[field])
        assert abs(n_wrong / (n_right + n_wrong) - share) < 0.05, (field, n_wrong, n_right)
        products_right = [product for product, _ in right[field]]
        products_wrong = [product for product, _ in wrong[field]]
        # Informative: wrong values score well below right ones, by product and by minimum alike...
        assert statistics.mean(products_wrong) + 0.2 < statistics.mean(products_right)
        assert statistics.mean(m for _, m in wrong[field]) + 0.15 < statistics.mean(
            m for _, m in right[field]
        )
        # ... and near calibrated: right values average about 1 - q (a little above), not 1
        assert 1 - share - 0.05 < statistics.mean(products_right) < 1 - share / 3
        # Not perfect: a share of the wrong values scores above a share of the right ones.
        above = sum(w > r for w in products_wrong for r in products_right) / (n_right * n_wrong)
        assert 0.04 < above < 0.3, (field, above)


async def test_a_wrong_value_has_the_right_one_as_runner_up(http: aiohttp.ClientSession) -> None:
    texts, truths = zip(*(people_text(i) for i in range(60)), strict=True)
    found = missed = 0
    async with Simulator(SimConfig(seed=3, field_errors={"age": 1.0})) as sim:
        for text, truth in zip(texts, truths, strict=True):
            status, reply = await post(
                http, sim, chat_body("json_schema", PEOPLE.schema, text, logprobs=True, top_logprobs=2)
            )
            assert status == 200
            ages = iter(str(age) for _, age in truth)
            entries = logprobs_of(reply)["content"]
            for before, entry in itertools.pairwise(entries):
                if before["token"] == '":' and entry["token"].isdigit():  # an age (the one number field)
                    right = next(ages)
                    assert entry["token"] != right
                    runner = entry["top_logprobs"][1]
                    found += runner["token"] == right
                    missed += runner["token"] != right
                    assert runner["logprob"] < entry["logprob"], (
                        "the answer is each position's most likely token"
                    )
    assert found > 150 and missed == 0


async def test_the_same_answer_gets_the_same_logprobs(http: aiohttp.ClientSession) -> None:
    config = SimConfig(seed=4, field_errors={"age": 0.5})
    body = chat_body("json_schema", PEOPLE.schema, people_text(1)[0], logprobs=True, top_logprobs=2)
    async with Simulator(config) as one, Simulator(config) as other:
        first, again, elsewhere = [await post(http, sim, body) for sim in (one, one, other)]
    assert logprobs_of(first[1]) == logprobs_of(again[1]) == logprobs_of(elsewhere[1])


async def test_no_logprobs_unless_asked_and_none_for_a_tool_call(http: aiohttp.ClientSession) -> None:
    schema = Person.model_json_schema()
    text = "My name is John and I am 20 years old"
    async with Simulator() as sim:
        for mode in [*MODES, "tools"]:
            status, reply = await post(http, sim, chat_body(mode, schema, text))
            assert status == 200 and logprobs_of(reply) is None
            status, reply = await post(http, sim, chat_body(mode, schema, text, logprobs=False))
            assert status == 200 and logprobs_of(reply) is None
        # OpenAI gives no logprobs for a tool call's arguments: the choice carries an empty shell.
        status, reply = await post(http, sim, chat_body("tools", schema, text, logprobs=True, top_logprobs=5))
        assert status == 200 and json.loads(answer_of(reply)) == {"name": "John", "age": 20}
        assert logprobs_of(reply) == {"content": None, "refusal": None}


async def test_max_tokens_cuts_at_a_token_and_counts_tokens(http: aiohttp.ClientSession) -> None:
    text = "My name is John and I am 20 years old"
    async with Simulator() as sim:
        body = chat_body("json_schema", Person.model_json_schema(), text, logprobs=True, max_tokens=4)
        status, reply = await post(http, sim, body)
    assert status == 200
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "length" and choice["message"]["content"] == '{"name":"John'
    assert [entry["token"] for entry in choice["logprobs"]["content"]] == ['{"', "name", '":"', "John"]
    assert reply["usage"]["completion_tokens"] == 4


NOT_ALLOWED = ("You are not allowed to request logprobs from this model", None, None)
UNSUPPORTED = (
    "Unsupported parameter: 'logprobs' is not supported with this model.",
    "logprobs",
    "unsupported_parameter",
)
NOT_BOOLEAN = "Invalid type for 'logprobs': expected a boolean, but got a string instead."
BELOW = "Invalid 'top_logprobs': integer below minimum value. Expected a value >= 0, but got -1 instead."


@pytest.mark.parametrize(
    ("model", "extra", "status", "error"),
    [
        ("o3-mini", {}, 403, NOT_ALLOWED),
        ("o4-mini-2025-04-16", {}, 403, NOT_ALLOWED),
        ("gpt-5", {}, 403, NOT_ALLOWED),
        ("gpt-5-nano", {"reasoning_effort": "minimal"}, 403, NOT_ALLOWED),
        ("gpt-5.4-mini", {}, 400, UNSUPPORTED),
        ("gpt-5.4-mini", {"reasoning_effort": "low"}, 400, UNSUPPORTED),
        ("gpt-5.4-mini", {"reasoning_effort": "none", "top_logprobs": 6}, 400,
         ("Invalid value for 'top_logprobs': must be less than or equal to 5.", "top_logprobs", None)),
        ("gpt-4o-mini", {"top_logprobs": 21}, 400,
         ("Invalid value for 'top_logprobs': must be less than or equal to 20.", "top_logprobs", None)),
        ("gpt-4o-mini", {"top_logprobs": -1}, 400, (BELOW, "top_logprobs", "integer_below_min_value")),
        ("gpt-4o-mini", {"logprobs": False, "top_logprobs": 2}, 400,
         ("The 'top_logprobs' parameter is only allowed when 'logprobs' is enabled.", "top_logprobs", None)),
        ("gpt-4o-mini", {"logprobs": "yes"}, 400, (NOT_BOOLEAN, "logprobs", "invalid_type")),
    ],
)  # fmt: skip
async def test_logprobs_are_refused_in_openai_s_words(
    http: aiohttp.ClientSession,
    model: str,
    extra: JSON,
    status: int,
    error: tuple[str, str | None, str | None],
) -> None:
    body = chat_body("json_schema", Person.model_json_schema(), "My name is John and I am 20 years old")
    body.update({"model": model, "logprobs": True, **extra})
    body.pop("temperature")  # the reasoning models take none but the default
    async with Simulator() as sim:
        got, reply = await post(http, sim, body)
        assert got == status, reply
        message, param, code = error
        assert reply == {
            "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
        }
        assert sim.stats.by_status == {status: 1}


async def test_a_reasoning_model_told_not_to_reason_gives_logprobs(http: aiohttp.ClientSession) -> None:
    body = chat_body("json_schema", Person.model_json_schema(), "My name is John and I am 20 years old")
    body.update({"model": "gpt-5.4-mini", "logprobs": True, "top_logprobs": 5, "reasoning_effort": "none"})
    body.pop("temperature")
    async with Simulator() as sim:
        status, reply = await post(http, sim, body)
    assert status == 200 and len(logprobs_of(reply)["content"][0]["top_logprobs"]) == 5


async def test_anthropic_refuses_logprobs_as_a_field_it_does_not_know(http: aiohttp.ClientSession) -> None:
    headers = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-test"}
    async with Simulator() as sim:
        for field, value in (("logprobs", True), ("top_logprobs", 3), ("logprobs", False)):
            body = {
                "model": "claude-haiku-4-5",
                "max_tokens": 200,
                "messages": [{"role": "user", "content": "My name is John and I am 20 years old"}],
                "tools": [{"name": "extract", "input_schema": Person.model_json_schema()}],
                "tool_choice": {"type": "tool", "name": "extract"},
                field: value,
            }
            async with http.post(f"{sim.anthropic_url}/v1/messages", json=body, headers=headers) as response:
                assert response.status == 400
                assert await response.json() == {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": f"{field}: Extra inputs are not permitted",
                    },
                }
        async with anthropic.AsyncAnthropic(
            base_url=sim.anthropic_url, api_key="sk-ant-test", max_retries=0
        ) as sdk:
            params: Any = {**body, "logprobs": True}
            params.pop("top_logprobs", None)
            with pytest.raises(anthropic.BadRequestError, match="logprobs: Extra inputs are not permitted"):
                await sdk.messages.batches.create(requests=[{"custom_id": "a", "params": params}])


async def run_batch(sdk: openai.AsyncOpenAI, body: JSON) -> tuple[list[JSON], list[JSON]]:
    """One line with ``body`` as a batch: its output and error files, read once it completed."""
    line = {"custom_id": "only", "method": "POST", "url": "/v1/chat/completions", "body": body}
    uploaded = await sdk.files.create(file=("in.jsonl", orjson.dumps(line) + b"\n"), purpose="batch")
    batch = await sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    for _ in range(400):
        batch = await sdk.batches.retrieve(batch.id)
        if batch.status == "completed":
            break
        await asyncio.sleep(0.02)
    assert batch.status == "completed", batch
    files = []
    for file_id in (batch.output_file_id, batch.error_file_id):
        data = (await sdk.files.content(file_id)).content if file_id else b""
        files.append([orjson.loads(line) for line in data.splitlines()])
    return files[0], files[1]


async def test_openai_batch_lines_get_the_online_logprobs_and_refusals(http: aiohttp.ClientSession) -> None:
    body = chat_body("json_schema", PEOPLE.schema, people_text(3)[0], logprobs=True, top_logprobs=2)
    refused = {**body, "model": "o4-mini"}
    refused.pop("temperature")
    config = SimConfig(seed=6, batch_seconds=0.1, field_errors={"age": 0.5})
    async with (
        Simulator(config) as sim,
        openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test", max_retries=0) as sdk,
    ):
        online = (await post(http, sim, body))[1]
        output, errors = await run_batch(sdk, body)
        assert errors == [] and logprobs_of(output[0]["response"]["body"]) == logprobs_of(online)
        output, errors = await run_batch(sdk, refused)
    assert output == [] and errors[0]["response"]["status_code"] == 403
    assert (
        errors[0]["response"]["body"]["error"]["message"]
        == "You are not allowed to request logprobs from this model"
    )


async def test_the_openai_sdk_reads_the_logprobs(sim: Simulator) -> None:
    schema = Person.model_json_schema()
    async with openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test", max_retries=0) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "My name is John and I am 20 years old"}],
            response_format={"type": "json_schema", "json_schema": {"name": "Person", "schema": schema}},
            logprobs=True,
            top_logprobs=2,
        )
    choice = completion.choices[0]
    assert (
        choice.logprobs is not None
        and choice.logprobs.content is not None
        and choice.logprobs.refusal is None
    )
    assert "".join(token.token for token in choice.logprobs.content) == choice.message.content
    assert [len(token.top_logprobs) for token in choice.logprobs.content] == [2] * len(
        choice.logprobs.content
    )
    with pytest.raises(openai.PermissionDeniedError, match="not allowed to request logprobs"):
        async with openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test", max_retries=0) as client:
            await client.chat.completions.create(
                model="o3-mini", messages=[{"role": "user", "content": "hi"}], logprobs=True
            )
