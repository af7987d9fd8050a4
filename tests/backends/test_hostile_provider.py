"""A provider's answers are outside text (issue 15, M1 and M3): a key it echoes, or the credentials of
the base URL, never reach a record, a message or the store."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from corral import ConfigError, Extractor, ModelNotFound
from corral.sim import ScriptCall, SimConfig, SimReply, Simulator
from corral.sim.openai import error_body
from tests._support import Person

KEY = "sk-test-hostile-0123456789abcdef"


def echo_the_key(call: ScriptCall) -> SimReply:
    return SimReply(
        status=400, error_body=error_body(400, f"Incorrect request for key {KEY} (sent as Bearer {KEY})")
    )


async def test_a_key_the_provider_echoes_is_scrubbed_from_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTILE_KEY", KEY)
    async with (
        Simulator(SimConfig(latency_ms=1), script=echo_the_key) as sim,
        Extractor(Person, base_url=sim.url, model="sim-1", api_key_env="HOSTILE_KEY", adaptive=False) as ex,
    ):
        [outcome] = [o async for o in ex.map(["My name is John and I am 20 years old"])]
    assert outcome.error is not None
    record = str(outcome.to_record())
    assert KEY not in record and "***" in outcome.error.message


def model_not_found(call: ScriptCall) -> SimReply:
    return SimReply(
        status=404, error_body=error_body(404, "The model does not exist")
    )  # code model_not_found


async def test_base_url_credentials_are_not_in_the_model_not_found_message() -> None:
    async with Simulator(SimConfig(latency_ms=1), script=model_not_found) as sim:
        url = sim.url.replace("http://", "http://someone:hunter2-secret@")
        async with Extractor(Person, base_url=url, model="nope", adaptive=False) as ex:
            with pytest.raises(ModelNotFound) as raised:
                _ = [o async for o in ex.map(["My name is John and I am 20 years old"])]
    assert "hunter2-secret" not in str(raised.value) and "someone" not in str(raised.value)
    assert "/v1" in str(raised.value)


async def test_a_redirect_to_another_host_takes_no_key_along(monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 15, M2: aiohttp drops Authorization on a redirect to another host, not x-api-key.
    seen: list[dict[str, str]] = []

    async def collect(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"type": "error", "error": {"type": "not_found_error", "message": "x"}})

    elsewhere = web.Application()
    elsewhere.router.add_route("*", "/{tail:.*}", collect)
    async with TestServer(elsewhere, host="127.0.0.1") as other:

        async def bounce(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(str(other.make_url(request.path)))

        redirecting = web.Application()
        redirecting.router.add_route("*", "/{tail:.*}", bounce)
        async with TestServer(redirecting, host="127.0.0.1") as server:
            monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
            base = str(server.make_url("")).rstrip("/")
            with pytest.raises(ConfigError, match="does not follow redirects"):
                async with Extractor(Person, model="anthropic/claude-haiku-4-5", base_url=base) as ex:
                    _ = [o async for o in ex.map(["My name is John and I am 20 years old"])]
    assert seen == [], "nothing, and no key, reached the other host"
