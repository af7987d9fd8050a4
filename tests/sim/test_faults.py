"""The simulator's faults by seed, its latency and scripting, and the transport faults a client sees.

Every request goes over real loopback HTTP, through aiohttp, the official ``openai`` SDK or instructor.
Nothing here depends on wall-clock time except waiting for requests that are held on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import aiohttp
import orjson
import pydantic
import pytest

from corral.backends.base import Mode, Profile, Request
from corral.backends.openai import OpenAIBackend
from corral.errors import RateLimited, ServerError, TransportError
from corral.schema import load_spec
from corral.sim import ScriptCall, SimConfig, SimReply, Simulator
from corral.sim.args import add_arguments, config_from_args
from corral.sim.core import SimCore
from corral.sim.openai import parse_request
from tests._support import Person
from tests._support.chat import JSON, TEXTS, answer_of, chat_body, post

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
