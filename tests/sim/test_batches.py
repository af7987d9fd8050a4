"""The simulator's provider batches, driven by the official SDKs over loopback HTTP.

Batches run on the simulator's accelerated clock (``SimConfig.batch_seconds``); tests poll with a
bounded number of short sleeps and assert on what the batch reports, never on how long it took.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import math
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pydantic
import pytest
from anthropic.types.messages import MessageBatch
from openai.types import Batch
from openai.types.chat import ChatCompletion

from corral.errors import ConfigError
from corral.sim import SimConfig, Simulator
from corral.sim.args import add_arguments, config_from_args
from corral.sim.batches import BatchLine, BatchStore, SimBatch, shuffled
from corral.sim.core import SimCore
from corral.sim.openai import parse_body
from tests._support import Person

JSON = dict[str, Any]
OPENAI_TERMINAL = ("completed", "failed", "expired", "cancelled")
TEXTS = [f"My name is Person{i} and I am {20 + i % 50} years old" for i in range(40)]


def chat_body(text: str, model: str = "gpt-test") -> JSON:
    schema = Person.model_json_schema()
    return {
        "model": model,
        "max_tokens": 200,
        "messages": [{"role": "system", "content": "Extract the person."}, {"role": "user", "content": text}],
        "tools": [{"type": "function", "function": {"name": "Person", "parameters": schema}}],
        "tool_choice": {"type": "function", "function": {"name": "Person"}},
    }


def openai_line(custom_id: str, body: JSON, **override: Any) -> bytes:
    entry = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    return orjson.dumps({**entry, **override}) + b"\n"


def input_file(texts: list[str] = TEXTS) -> tuple[list[str], bytes]:
    ids = [f"item-{i}" for i in range(len(texts))]
    return ids, b"".join(openai_line(cid, chat_body(text)) for cid, text in zip(ids, texts, strict=True))


def jsonl(data: bytes) -> list[JSON]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


@pytest.fixture
async def client() -> AsyncIterator[tuple[Simulator, openai.AsyncOpenAI]]:
    config = SimConfig(batch_seconds=0.3, seed=3, server_error_rate=0.1, invalid_rate=0.2)
    async with (
        Simulator(config) as sim,
        openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test", max_retries=0) as sdk,
    ):
        yield sim, sdk


async def submit(sdk: openai.AsyncOpenAI, data: bytes, **params: Any) -> Batch:
    uploaded = await sdk.files.create(file=("in.jsonl", data), purpose="batch")
    return await sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h", **params
    )


async def wait_openai(
    sdk: openai.AsyncOpenAI, batch_id: str, until: tuple[str, ...] = OPENAI_TERMINAL
) -> Batch:
    for _ in range(400):
        batch = await sdk.batches.retrieve(batch_id)
        if batch.status in until:
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {batch_id} never reached {until}: still {batch.status}")


async def results(sdk: openai.AsyncOpenAI, batch: Batch) -> tuple[list[JSON], list[JSON]]:
    output = jsonl((await sdk.files.content(batch.output_file_id)).content) if batch.output_file_id else []
    errors = jsonl((await sdk.files.content(batch.error_file_id)).content) if batch.error_file_id else []
    return output, errors


# --- OpenAI ------------------------------------------------------------------------------------


async def test_openai_batch_answers_every_line_once_in_shuffled_files(
    client: tuple[Simulator, openai.AsyncOpenAI],
) -> None:
    sim, sdk = client
    ids, data = input_file()
    created = await submit(sdk, data, metadata={"corral_batch": "job-1"})
    assert created.status == "validating" and created.metadata == {"corral_batch": "job-1"}
    assert created.expires_at == created.created_at + 24 * 3600
    assert created.request_counts is not None and created.request_counts.total == len(ids)

    batch = await wait_openai(sdk, created.id)
    assert batch.status == "completed" and batch.errors is None
    output, errors = await results(sdk, batch)
    assert sorted(line["custom_id"] for line in output + errors) == sorted(ids)
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (len(output), len(errors))
    assert [line["custom_id"] for line in output] != [i for i in ids if i in {o["custom_id"] for o in output}]
    stamps = [batch.created_at, batch.in_progress_at, batch.finalizing_at, batch.completed_at]
    assert all(s is not None for s in stamps) and stamps == sorted(stamps)  # type: ignore[type-var]
    assert batch.completed_at is not None and batch.expires_at is not None
    assert batch.completed_at <= batch.expires_at

    # Seeded faults reach batch lines: 5xx lines in the error file, invalid answers among the outputs.
    assert errors and all(line["response"]["status_code"] in (500, 502, 503) for line in errors)
    assert all(line["response"]["body"]["error"]["type"] == "server_error" for line in errors)
    invalid = 0
    texts = dict(zip(ids, TEXTS, strict=True))
    for line in output:
        assert line["error"] is None and line["response"]["status_code"] == 200
        completion = ChatCompletion.model_validate(line["response"]["body"])
        calls = completion.choices[0].message.tool_calls
        assert calls is not None and calls[0].type == "function"
        try:
            person = Person.model_validate_json(calls[0].function.arguments)
        except pydantic.ValidationError:
            invalid += 1
            continue
        assert person.name in texts[line["custom_id"]]
    assert 0 < invalid < len(output)

    # Batch lines are counted apart: no online request, nothing in the log.
    assert sim.stats.requests == 0 and sim.log == []
    assert (sim.stats.batches, sim.stats.batch_lines) == (1, len(ids))
    [view] = sim.batches
    assert view.id == batch.id and view.custom_ids == tuple(ids) and view.model == "gpt-test"
    assert view.phase == "completed"

    # The same batch read twice gives the same files (answers are computed once).
    again = await sdk.batches.retrieve(batch.id)
    assert (again.output_file_id, again.error_file_id) == (batch.output_file_id, batch.error_file_id)
    assert sim.stats.batch_lines == len(ids)


async def test_openai_files_can_be_read_and_deleted(client: tuple[Simulator, openai.AsyncOpenAI]) -> None:
    _, sdk = client
    _, data = input_file(TEXTS[:3])
    uploaded = await sdk.files.create(file=("in.jsonl", data), purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.bytes == len(data) and uploaded.filename == "in.jsonl"
    assert (await sdk.files.retrieve(uploaded.id)).purpose == "batch"
    assert (await sdk.files.content(uploaded.id)).content == data
    deleted = await sdk.files.delete(uploaded.id)
    assert deleted.deleted and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        await sdk.files.retrieve(uploaded.id)


async def test_openai_bad_file_fails_the_batch_with_line_errors(
    client: tuple[Simulator, openai.AsyncOpenAI],
) -> None:
    sim, sdk = client
    body = chat_body("My name is Ann")
    data = b"".join(
        [
            openai_line("a", body),
            openai_line("a", body),
            openai_line("b", body, url="/v1/embeddings"),
            openai_line("c", body, method="GET"),
            b"{not json\n",
            openai_line("d", chat_body("My name is Bo", model="other-model")),
            openai_line("e", {"messages": body["messages"]}),
        ]
    )
    batch = await wait_openai(sdk, (await submit(sdk, data)).id)
    assert batch.status == "failed" and batch.failed_at is not None and batch.in_progress_at is None
    assert batch.output_file_id is None and batch.error_file_id is None
    assert batch.errors is not None and batch.errors.data is not None
    found = [(e.line, e.code, e.param) for e in batch.errors.data]
    assert found == [
        (2, "duplicate_custom_id", "custom_id"),
        (3, "mismatched_url", "url"),
        (4, "invalid_method", "method"),
        (5, "invalid_json_line", None),
        (6, "mismatched_model", "body.model"),
        (7, "missing_model", "body.model"),
    ]
    assert all(e.message for e in batch.errors.data)
    assert sim.stats.batch_lines == 0

    too_many = await wait_openai(sdk, (await submit(sdk, b'{"custom_id": "x"}\n' * 50_001)).id)
    assert too_many.status == "failed" and too_many.errors is not None and too_many.errors.data
    assert [(e.code, e.line) for e in too_many.errors.data] == [("too_many_requests", None)]


async def test_openai_line_the_endpoint_refuses_is_answered_400(
    client: tuple[Simulator, openai.AsyncOpenAI],
) -> None:
    _, sdk = client
    good = chat_body("My name is Ann")
    data = openai_line("ok", good) + openai_line("bad", {**good, "messages": []})
    batch = await wait_openai(sdk, (await submit(sdk, data)).id)
    assert batch.status == "completed"
    output, errors = await results(sdk, batch)
    assert sorted(line["custom_id"] for line in output + errors) == ["bad", "ok"]
    [bad] = [line for line in errors if line["custom_id"] == "bad"]
    assert bad["response"]["status_code"] == 400
    assert bad["response"]["body"]["error"]["param"] == "messages"


async def test_openai_create_refuses_bad_parameters(client: tuple[Simulator, openai.AsyncOpenAI]) -> None:
    _, sdk = client
    _, data = input_file(TEXTS[:2])
    uploaded = await sdk.files.create(file=("in.jsonl", data), purpose="batch")
    other = await sdk.files.create(file=("notes.jsonl", data), purpose="assistants")
    cases: list[tuple[JSON, str]] = [
        ({"input_file_id": "file-nope"}, "input_file_id"),
        ({"input_file_id": other.id}, "input_file_id"),
        ({"input_file_id": uploaded.id, "endpoint": "/v1/embeddings"}, "endpoint"),
        ({"input_file_id": uploaded.id, "completion_window": "48h"}, "completion_window"),
        ({"input_file_id": uploaded.id, "metadata": {"k": "v" * 600}}, "metadata"),
    ]
    for params, param in cases:
        full = {"endpoint": "/v1/chat/completions", "completion_window": "24h", **params}
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.batches.create(**full)
        assert caught.value.status_code == 400 and caught.value.param == param
    with pytest.raises(openai.NotFoundError):
        await sdk.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        await sdk.batches.cancel("batch_nope")


async def test_openai_expired_lines_go_to_the_error_file() -> None:
    config = SimConfig(batch_seconds=0.2, seed=5, batch_expire_rate=0.3)
    async with (
        Simulator(config) as sim,
        openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test", max_retries=0) as sdk,
    ):
        ids, data = input_file()
        batch = await wait_openai(sdk, (await submit(sdk, data)).id)
        assert batch.status == "expired" and batch.expired_at == batch.expires_at
        output, errors = await results(sdk, batch)
        assert sorted(line["custom_id"] for line in output + errors) == sorted(ids)
        assert all(line["response"] is None for line in errors)
        assert {line["error"]["code"] for line in errors} == {"batch_expired"}
        assert 0 < len(errors) < len(ids)
        assert batch.request_counts is not None and batch.request_counts.failed == len(errors)
        assert sim.stats.batch_lines == len(output)


async def test_openai_cancel_stops_unanswered_lines() -> None:
    async with (
        Simulator(SimConfig(batch_seconds=4.0, seed=2)) as sim,
        openai.AsyncOpenAI(base_url=sim.url, api_key="sk-test", max_retries=0) as sdk,
    ):
        ids, data = input_file()
        created = await submit(sdk, data)
        cancelling = await sdk.batches.cancel(created.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        batch = await wait_openai(sdk, created.id)
        assert batch.status == "cancelled" and batch.cancelled_at is not None
        assert batch.completed_at is None and batch.finalizing_at is None
        output, errors = await results(sdk, batch)
        assert sorted(line["custom_id"] for line in output + errors) == sorted(ids)
        cancelled = [line for line in errors if line["error"] and line["error"]["code"] == "batch_cancelled"]
        assert cancelled and len(cancelled) == len(errors)
        assert batch.request_counts is not None
        assert batch.request_counts.completed + batch.request_counts.failed == len(ids)
        with pytest.raises(openai.ConflictError):
            await sdk.batches.cancel(created.id)


async def test_openai_list_pages_newest_first(client: tuple[Simulator, openai.AsyncOpenAI]) -> None:
    _, sdk = client
    _, data = input_file(TEXTS[:2])
    made = [(await submit(sdk, data, metadata={"n": str(i)})).id for i in range(3)]
    first = await sdk.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    assert [b.id async for b in sdk.batches.list(limit=2)] == made[::-1]


async def test_sim_stats_report_batches_once_there_are_some(
    client: tuple[Simulator, openai.AsyncOpenAI],
) -> None:
    sim, sdk = client
    root = sim.url.removesuffix("/v1")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{root}/sim/stats") as response:
            assert "batches" not in await response.json()
        _, data = input_file(TEXTS[:4])
        await wait_openai(sdk, (await submit(sdk, data)).id)
        async with http.get(f"{root}/sim/stats") as response:
            stats = await response.json()
    assert (stats["batches"], stats["batch_lines"], stats["requests"]) == (1, 4, 0)
    sim.reset_stats()
    assert (sim.stats.batches, sim.stats.batch_lines) == (0, 0) and len(sim.batches) == 1


# --- Anthropic ---------------------------------------------------------------------------------


def messages_params(text: str) -> JSON:
    return {
        "model": "claude-test",
        "max_tokens": 200,
        "system": "Extract the person.",
        "messages": [{"role": "user", "content": text}],
        "tools": [{"name": "Person", "input_schema": Person.model_json_schema()}],
        "tool_choice": {"type": "tool", "name": "Person"},
    }


def message_requests(texts: list[str] = TEXTS) -> tuple[list[str], list[JSON]]:
    ids = [f"item_{i}" for i in range(len(texts))]
    return ids, [{"custom_id": cid, "params": messages_params(t)} for cid, t in zip(ids, texts, strict=True)]


async def wait_anthropic(sdk: anthropic.AsyncAnthropic, batch_id: str) -> MessageBatch:
    for _ in range(400):
        batch = await sdk.messages.batches.retrieve(batch_id)
        counts = batch.request_counts
        assert (
            counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
            == len(TEXTS)
        )
        if batch.processing_status == "ended":
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {batch_id} never ended: still {batch.processing_status}")


async def test_anthropic_sdk_batch_round_trip() -> None:
    config = SimConfig(batch_seconds=0.3, seed=4, server_error_rate=0.1, batch_expire_rate=0.2)
    async with (
        Simulator(config) as sim,
        anthropic.AsyncAnthropic(base_url=sim.anthropic_url, api_key="sk-ant-test", max_retries=0) as sdk,
    ):
        ids, requests = message_requests()
        created = await sdk.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        assert created.processing_status == "in_progress" and created.results_url is None
        assert created.request_counts.processing == len(ids) and created.id.startswith("msgbatch_")
        assert created.expires_at - created.created_at == datetime.timedelta(hours=24)
        with pytest.raises(anthropic.AnthropicError, match="results_url"):
            await sdk.messages.batches.results(created.id)

        batch = await wait_anthropic(sdk, created.id)
        assert batch.ended_at is not None and batch.ended_at == batch.expires_at  # some lines expired
        assert batch.results_url == f"{sim.anthropic_url}/v1/messages/batches/{batch.id}/results"
        lines = [line async for line in await sdk.messages.batches.results(batch.id)]
        order = [line.custom_id for line in lines]
        assert sorted(order) == sorted(ids) and order != [i for i in ids if i in set(order)]
        kinds = Counter(line.result.type for line in lines)
        counts = batch.request_counts
        assert (kinds["succeeded"], kinds["errored"], kinds["expired"]) == (
            counts.succeeded,
            counts.errored,
            counts.expired,
        )
        assert counts.succeeded and counts.errored and counts.expired and not counts.canceled
        texts = dict(zip(ids, TEXTS, strict=True))
        for line in lines:
            if line.result.type == "succeeded":
                [block] = line.result.message.content
                assert block.type == "tool_use" and block.name == "Person"
                assert Person.model_validate(block.input).name in texts[line.custom_id]
            elif line.result.type == "errored":
                assert line.result.error.error.type in ("api_error", "overloaded_error")
        assert sim.stats.batch_lines == counts.succeeded + counts.errored and sim.stats.requests == 0
        assert [v.wire for v in sim.batches] == ["anthropic"]


async def test_anthropic_sdk_refuses_bad_batches_at_creation() -> None:
    async with (
        Simulator(SimConfig(batch_seconds=0.2)) as sim,
        anthropic.AsyncAnthropic(base_url=sim.anthropic_url, api_key="sk-ant-test", max_retries=0) as sdk,
    ):
        good = messages_params("My name is Ann")
        cases: list[tuple[list[JSON], str]] = [
            ([], "requests"),
            ([{"custom_id": "has space", "params": good}], "requests.0.custom_id"),
            ([{"custom_id": "x" * 65, "params": good}], "requests.0.custom_id"),
            (
                [{"custom_id": "a", "params": good}, {"custom_id": "a", "params": good}],
                "requests.1.custom_id",
            ),
            ([{"custom_id": "a", "params": {**good, "max_tokens": None}}], "requests.0.params.max_tokens"),
            ([{"custom_id": "a", "params": {**good, "messages": []}}], "requests.0.params.messages"),
        ]
        for requests, where in cases:
            with pytest.raises(anthropic.BadRequestError) as caught:
                await sdk.messages.batches.create(requests=requests)  # type: ignore[arg-type]
            assert caught.value.status_code == 400 and where in caught.value.message
            assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        assert sim.batches == []
        with pytest.raises(anthropic.NotFoundError):
            await sdk.messages.batches.retrieve("msgbatch_nope")

        root = f"{sim.anthropic_url}/v1/messages/batches"
        async with aiohttp.ClientSession() as http:
            async with http.post(root, json={"requests": [{"custom_id": "a", "params": good}]}) as response:
                assert response.status == 400  # no anthropic-version header
                error = await response.json()
            assert error["type"] == "error" and "anthropic-version" in error["error"]["message"]
            headers = {"anthropic-version": "2023-06-01"}
            async with http.post(
                root, json={"requests": [{"custom_id": "a", "params": good}]}, headers=headers
            ) as response:
                batch_id = (await response.json())["id"]
            async with http.get(f"{root}/{batch_id}/results", headers=headers) as response:
                assert response.status == 404  # not ended yet
                assert (await response.json())["error"]["type"] == "not_found_error"


async def test_anthropic_sdk_cancel_list_and_delete() -> None:
    async with (
        Simulator(SimConfig(batch_seconds=4.0, seed=9)) as sim,
        anthropic.AsyncAnthropic(base_url=sim.anthropic_url, api_key="sk-ant-test", max_retries=0) as sdk,
    ):
        ids, requests = message_requests()
        made = [(await sdk.messages.batches.create(requests=requests)).id for _ in range(3)]  # type: ignore[arg-type]
        page = await sdk.messages.batches.list(limit=2)
        assert [b.id for b in page.data] == made[::-1][:2] and page.has_more
        assert [b.id async for b in sdk.messages.batches.list(limit=2)] == made[::-1]

        canceling = await sdk.messages.batches.cancel(made[0])
        assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
        with pytest.raises(anthropic.BadRequestError):
            await sdk.messages.batches.delete(made[0])  # not ended yet
        batch = await wait_anthropic(sdk, made[0])
        assert batch.request_counts.canceled > 0
        assert batch.request_counts.canceled + batch.request_counts.succeeded == len(ids)
        lines = [line async for line in await sdk.messages.batches.results(made[0])]
        assert sorted(line.custom_id for line in lines) == sorted(ids)
        assert sum(line.result.type == "canceled" for line in lines) == batch.request_counts.canceled
        with pytest.raises(anthropic.BadRequestError):
            await sdk.messages.batches.cancel(made[0])  # it has ended
        deleted = await sdk.messages.batches.delete(made[0])
        assert deleted.id == made[0] and deleted.type == "message_batch_deleted"
        with pytest.raises(anthropic.NotFoundError):
            await sdk.messages.batches.retrieve(made[0])


# --- the clock and the config ------------------------------------------------------------------


def store_with_batch(config: SimConfig) -> tuple[BatchStore, SimBatch]:
    store = BatchStore(SimCore(config, None), config)
    lines = [BatchLine(f"c{i}", parse_body(chat_body(text), "x")) for i, text in enumerate(TEXTS)]
    return store, store.create("openai", "batch_x", lines, model="gpt-test")


def test_phases_follow_the_clock_and_a_cancel_keeps_the_share_done() -> None:
    config = SimConfig(batch_seconds=10.0, seed=1)
    store, batch = store_with_batch(config)
    start = batch.created
    phases = [batch.phase(start + at) for at in (0.5, 1.0, 8.9, 9.5, 10.0)]
    assert phases == ["validating", "in_progress", "in_progress", "finalizing", "completed"]
    assert store.settle(batch, start + 9.9) is None and batch.outcomes is None

    # Half-way through processing (0.1 to 0.9 of the span): half the lines were answered.
    assert store.cancel(batch, start + 5.0)
    assert [batch.phase(start + at) for at in (5.2, 5.4, 20.0)] == ["cancelling", "cancelling", "cancelled"]
    assert store.settle(batch, start + 5.2) is None
    outcomes = store.settle(batch, start + 5.6)
    assert outcomes is not None and store.settle(batch, start + 6.0) is outcomes  # computed once
    assert Counter(o.kind for o in outcomes) == {"succeeded": 20, "canceled": 20}
    assert not store.cancel(batch, start + 6.0)
    moments = batch.moments(start + 6.0)
    assert moments["cancelling_at"] == pytest.approx(batch.created_at + 0.5 * 3600)
    assert moments["cancelled_at"] == moments["ended_at"] == pytest.approx(batch.created_at + 0.55 * 3600)
    assert moments["finalizing_at"] is None and moments["completed_at"] is None
    assert (store.created, store.answered) == (1, 20)

    # The same seed cancels the same lines.
    again, other = store_with_batch(config)
    again.cancel(other, other.created + 5.0)
    repeat = again.settle(other, other.created + 5.6)
    assert repeat is not None
    assert [o.custom_id for o in repeat if o.kind == "canceled"] == [
        o.custom_id for o in outcomes if o.kind == "canceled"
    ]


def test_an_expiring_batch_reports_the_whole_window() -> None:
    store, batch = store_with_batch(SimConfig(batch_seconds=1.0, seed=2, batch_expire_rate=0.5))
    end = batch.created + 1.5
    assert batch.phase(end) == "expired" and 0 < len(batch.expired) < len(TEXTS)
    assert batch.moments(end)["expired_at"] == pytest.approx(batch.created_at + 24 * 3600)
    outcomes = store.settle(batch, end)
    assert outcomes is not None
    assert {o.line for o in outcomes if o.kind == "expired"} == set(batch.expired)
    assert store.answered == len(TEXTS) - len(batch.expired)


def test_shuffled_never_keeps_the_given_order() -> None:
    rng = random.Random(0)
    for n in range(2, 6):
        for _ in range(50):
            items = list(range(n))
            out = shuffled(items, rng)
            assert out != items and sorted(out) == items
    assert shuffled([7], rng) == [7]


def test_batch_config_and_flags() -> None:
    with pytest.raises(ConfigError, match="batch_seconds"):
        SimConfig(batch_seconds=-1)
    with pytest.raises(ConfigError, match="batch_seconds"):
        SimConfig(batch_seconds=math.inf)
    with pytest.raises(ConfigError, match="batch_expire_rate"):
        SimConfig(batch_expire_rate=1.5)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--batch-seconds", "0.5", "--batch-expire-rate", "0.25"]))
    assert (config.batch_seconds, config.batch_expire_rate) == (0.5, 0.25)
