"""corral's batch API clients against the simulator's batch endpoints, over loopback HTTP."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from corral.backends.anthropic import AnthropicBackend
from corral.backends.base import Mode, Profile, Request
from corral.backends.batch import AnthropicBatchAPI, BatchAPI, LineResult, OpenAIBatchAPI, RemoteBatch
from corral.backends.openai import OpenAIBackend
from corral.errors import (
    BadRequest,
    BatchCanceled,
    BatchExpired,
    ConfigError,
    OutputInvalid,
    ProviderError,
    ServerError,
)
from corral.schema import ResponseSpec, load_spec
from corral.sim import SimConfig, Simulator

PERSON = "examples/person.py:Person"
FAULTY = SimConfig(server_error_rate=0.05, invalid_rate=0.1, batch_expire_rate=0.1, batch_seconds=0.3, seed=7)


def request(spec: ResponseSpec[Any], i: int) -> Request:
    messages: Any = [
        {"role": "system", "content": "Extract the person."},
        {"role": "user", "content": f"My name is Person{i} and I am {18 + i % 60} years old"},
    ]
    return Request(messages, spec, Mode.TOOLS, max_tokens=200)


def openai_backend(url: str) -> OpenAIBackend:
    return OpenAIBackend(
        base_url=url, model="sim-1", profile=Profile("sim", (Mode.TOOLS,)), api_key="sk-test"
    )


def lines_for(
    api: BatchAPI, backend: OpenAIBackend | AnthropicBackend, n: int
) -> tuple[list[str], list[bytes]]:
    spec = load_spec(PERSON)
    ids = [f"line-{i:04d}" for i in range(n)]
    return ids, [api.line(cid, backend.body(request(spec, i))) for i, cid in enumerate(ids)]


async def wait(api: BatchAPI, batch: RemoteBatch) -> RemoteBatch:
    for _ in range(400):
        batch = await api.status(batch.id)
        if batch.done:
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {batch.id} still {batch.status}")


async def collect(api: BatchAPI, batch: RemoteBatch) -> list[LineResult]:
    return [line async for line in api.results(batch)]


def by_outcome(results: list[LineResult]) -> Counter[str]:
    """How many lines ended which way: "ok", "invalid" (answered, but not a Person), or the error kind."""
    spec = load_spec(PERSON)
    kinds: Counter[str] = Counter()
    for line in results:
        assert (line.completion is None) != (line.error is None)
        if line.completion is not None:
            try:
                person = spec.parse(line.completion.text)
            except OutputInvalid:
                kinds["invalid"] += 1
                continue
            assert person.name.startswith("Person") and line.custom_id.startswith("line-")
            kinds["ok"] += 1
        else:
            assert line.error is not None
            kinds[line.error.kind] += 1
    return kinds


@pytest.fixture
async def faulty() -> AsyncIterator[Simulator]:
    async with Simulator(FAULTY) as sim:
        yield sim


# --- OpenAI ------------------------------------------------------------------------------------


async def test_openai_batch_answers_every_line_once(faulty: Simulator) -> None:
    backend = openai_backend(faulty.url)
    api = OpenAIBatchAPI(backend)
    try:
        ids, lines = lines_for(api, backend, 500)
        assert lines[0].endswith(b"\n") and orjson.loads(lines[0])["url"] == "/v1/chat/completions"
        submitted = await api.submit(lines, label="job-a")
        assert submitted.status == "validating" and not submitted.done
        batch = await wait(api, submitted)
        assert batch.status == "expired" and batch.done
        results = await collect(api, batch)
    finally:
        await backend.aclose()
    assert sorted(line.custom_id for line in results) == ids
    assert [line.custom_id for line in results] != sorted(line.custom_id for line in results)
    kinds = by_outcome(results)
    assert set(kinds) == {"ok", "invalid", "server_error", "expired"}
    assert all(kinds[k] > 0 for k in kinds)
    assert batch.counts == {
        "total": 500,
        "completed": kinds["ok"] + kinds["invalid"],
        "failed": kinds["server_error"] + kinds["expired"],
    }
    errors = [line.error for line in results if line.error is not None]
    assert all(e.status in (500, 502, 503) for e in errors if isinstance(e, ServerError))
    assert all(e.retryable for e in errors)
    assert faulty.stats.requests == 0 and faulty.stats.batch_lines == 500 - kinds["expired"]
    [view] = faulty.batches
    assert view.id == batch.id and list(view.custom_ids) == ids


async def test_openai_find_recovers_a_batch_by_its_label(faulty: Simulator) -> None:
    backend = openai_backend(faulty.url)
    api = OpenAIBatchAPI(backend)
    try:
        _, lines = lines_for(api, backend, 1)
        old = await api.submit(lines, label="the-old-one")
        for i in range(120):  # the old one is on the second page now
            await api.submit(lines, label=f"other-{i}")
        found = await api.find("the-old-one")
        assert found is not None and found.id == old.id
        assert found.raw["metadata"] == {"corral_batch": "the-old-one"}
        assert await api.find("never-submitted") is None
    finally:
        await backend.aclose()


async def test_openai_server_without_batches_says_so(faulty: Simulator) -> None:
    backend = openai_backend(faulty.url + "/elsewhere")
    try:
        with pytest.raises(ConfigError, match="no OpenAI Batch API") as caught:
            await OpenAIBatchAPI(backend).submit([b"{}\n"], label="x")
        assert "sk-test" not in str(caught.value)
    finally:
        await backend.aclose()


async def test_openai_refused_file_fails_with_reasons(faulty: Simulator) -> None:
    backend = openai_backend(faulty.url)
    api = OpenAIBatchAPI(backend)
    try:
        body = backend.body(request(load_spec(PERSON), 1))
        batch = await wait(
            api, await api.submit([api.line("same", body), api.line("same", body)], label="dup")
        )
        assert batch.status == "failed" and batch.done
        assert (
            len(batch.errors) == 1
            and "line 2" in batch.errors[0]
            and "duplicate_custom_id" in batch.errors[0]
        )
        assert await collect(api, batch) == []
        with pytest.raises(BadRequest) as caught:
            await api.status("batch_unknown")
        assert caught.value.status == 404 and not caught.value.fatal
    finally:
        await backend.aclose()


async def test_openai_cancel_gives_canceled_lines() -> None:
    async with Simulator(SimConfig(batch_seconds=4.0, seed=1)) as sim:
        backend = openai_backend(sim.url)
        api = OpenAIBatchAPI(backend)
        try:
            ids, lines = lines_for(api, backend, 50)
            submitted = await api.submit(lines, label="to-cancel")
            cancelling = await api.cancel(submitted.id)
            assert cancelling.status == "cancelling" and not cancelling.done
            batch = await wait(api, cancelling)
            assert batch.status == "cancelled"
            results = await collect(api, batch)
        finally:
            await backend.aclose()
    assert sorted(line.custom_id for line in results) == ids
    canceled = [line.error for line in results if isinstance(line.error, BatchCanceled)]
    assert canceled and all(not e.retryable for e in canceled)
    assert all(line.completion is not None or isinstance(line.error, BatchCanceled) for line in results)


async def test_openai_submit_refused_is_translated(faulty: Simulator) -> None:
    backend = openai_backend(faulty.url)
    api = OpenAIBatchAPI(backend)
    try:
        with pytest.raises(BadRequest, match="metadata"):
            await api.submit([b"{}\n"], label="x" * 600)  # a label longer than metadata values may be
    finally:
        await backend.aclose()


# --- Anthropic ---------------------------------------------------------------------------------


def anthropic_backend(sim: Simulator) -> AnthropicBackend:
    return AnthropicBackend(base_url=sim.anthropic_url, model="claude-sim", api_key="sk-ant-test")


async def test_anthropic_batch_answers_every_line_once(faulty: Simulator) -> None:
    backend = anthropic_backend(faulty)
    api = AnthropicBatchAPI(backend)
    try:
        ids, lines = lines_for(api, backend, 500)
        assert set(orjson.loads(lines[0])) == {"custom_id", "params"}
        submitted = await api.submit(lines, label="ignored")
        assert submitted.status == "in_progress" and not submitted.done
        assert await api.find("ignored") is None
        batch = await wait(api, submitted)
        assert batch.status == "ended"
        results = await collect(api, batch)
    finally:
        await backend.aclose()
    assert sorted(line.custom_id for line in results) == ids
    assert [line.custom_id for line in results] != ids
    kinds = by_outcome(results)
    assert set(kinds) == {"ok", "invalid", "server_error", "expired"}
    assert batch.counts == {
        "processing": 0,
        "succeeded": kinds["ok"] + kinds["invalid"],
        "errored": kinds["server_error"],
        "canceled": 0,
        "expired": kinds["expired"],
    }
    errors = [line.error for line in results if line.error is not None]
    assert all(isinstance(e, ServerError | BatchExpired) and e.retryable for e in errors)


async def test_anthropic_refused_batch_and_unknown_ids(faulty: Simulator) -> None:
    backend = anthropic_backend(faulty)
    api = AnthropicBatchAPI(backend)
    try:
        body = backend.body(request(load_spec(PERSON), 1))
        with pytest.raises(BadRequest, match="custom_id") as caught:
            await api.submit([api.line("same", body), api.line("same", body)], label="dup")
        assert caught.value.status == 400
        with pytest.raises(BadRequest, match="custom_id"):
            await api.submit([api.line("not ok!", body)], label="bad-id")
        with pytest.raises(BadRequest) as missing:
            await api.status("msgbatch_unknown")
        assert missing.value.status == 404
    finally:
        await backend.aclose()


async def test_anthropic_cancel_gives_canceled_lines() -> None:
    async with Simulator(SimConfig(batch_seconds=4.0, seed=1)) as sim:
        backend = anthropic_backend(sim)
        api = AnthropicBatchAPI(backend)
        try:
            ids, lines = lines_for(api, backend, 50)
            submitted = await api.submit(lines, label="x")
            assert await collect(api, submitted) == []  # not ended: nothing to read yet
            cancelling = await api.cancel(submitted.id)
            assert cancelling.status == "canceling" and not cancelling.done
            batch = await wait(api, cancelling)
            results = await collect(api, batch)
        finally:
            await backend.aclose()
    assert sorted(line.custom_id for line in results) == ids
    assert batch.counts["canceled"] > 0
    assert sum(isinstance(line.error, BatchCanceled) for line in results) == batch.counts["canceled"]


def test_limits_are_the_providers() -> None:
    openai_api = OpenAIBatchAPI(openai_backend("http://127.0.0.1:9/v1"))
    anthropic_api = AnthropicBatchAPI(
        AnthropicBackend(base_url="http://127.0.0.1:9", model="m", api_key=None)
    )
    assert (openai_api.limits.max_requests, openai_api.limits.max_bytes, openai_api.limits.one_model) == (
        50_000,
        200 * 1024 * 1024,
        True,
    )
    assert (anthropic_api.limits.max_requests, anthropic_api.limits.max_bytes) == (100_000, 256 * 1024 * 1024)
    assert not anthropic_api.limits.one_model


async def test_provider_errors_are_provider_errors(faulty: Simulator) -> None:
    backend = openai_backend(faulty.url)
    try:
        with pytest.raises(ProviderError):
            await OpenAIBatchAPI(backend).cancel("batch_unknown")
    finally:
        await backend.aclose()


async def test_anthropic_results_are_never_fetched_from_another_host() -> None:
    backend = AnthropicBackend(base_url="http://127.0.0.1:9", model="m", api_key="sk-ant-secret")
    batch = RemoteBatch("msgbatch_x", "ended", True, raw={"results_url": "http://127.0.0.2:9/v1/x/results"})
    with pytest.raises(ConfigError, match="another host") as caught:
        await collect(AnthropicBatchAPI(backend), batch)
    assert "sk-ant-secret" not in str(caught.value)
