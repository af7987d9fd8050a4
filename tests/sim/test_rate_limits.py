"""The simulator's minute buckets and what it says when it refuses: durations, headers, overdraft.

Every request goes over real loopback HTTP, through aiohttp, the official ``openai`` SDK or instructor.
Nothing here depends on wall-clock time except waiting for requests that are held on purpose.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import orjson
import pytest

from corral.errors import ConfigError
from corral.sim import LogEntry, ScriptCall, SimConfig, SimReply, Simulator
from corral.sim.core import SimCore
from corral.sim.limits import RateLimits, format_duration, overdraft
from corral.sim.openai import parse_request
from tests._support import Person
from tests._support.chat import TEXTS, chat_body, post

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
    # tests/sim/test_quantized_limits.py's)
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
