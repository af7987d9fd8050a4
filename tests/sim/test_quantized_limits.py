"""The simulator's default rate limits: quantized, enforced over a second's worth, as OpenAI documents.

Most tests run the real simulator over loopback HTTP with its clock frozen (``clock``): a burst then
meets buckets that do not refill while it arrives, so what is let through is exact, and "wait what
retry-after says" is a step of the clock. One test obeys retry-after on the real clock.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict

import corral.sim.core
import corral.sim.server
from corral.sim import LogEntry, SimConfig, Simulator
from corral.sim.anthropic import parse_messages_body
from corral.sim.limits import RateLimits, overdraft
from corral.sim.openai import parse_request

JSON = dict[str, Any]
PERSON: JSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
TEXT = "My name is John and I am 20 years old"


class Clock:
    """The simulator's ``time.monotonic``, moved only by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    # Only the simulator's reads of the clock: the event loop keeps the real one.
    frozen = Clock()
    monkeypatch.setattr(corral.sim.core, "time", frozen)
    monkeypatch.setattr(corral.sim.server, "time", frozen)
    return frozen


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def chat_body(total_tokens: int | None = None) -> JSON:
    """A tools-mode request; ``total_tokens``: set ``max_tokens`` so that it is charged exactly that."""
    body: JSON = {
        "model": "gpt-test",
        "tools": [{"type": "function", "function": {"name": "extract", "parameters": PERSON}}],
        "tool_choice": {"type": "function", "function": {"name": "extract"}},
        "messages": [{"role": "user", "content": TEXT}],
    }
    if total_tokens is not None:
        body["max_tokens"] = total_tokens - parse_request(orjson.dumps(body), "sim-1").prompt_tokens
    return body


class Reply:
    """What a client saw of one request (the headers match whatever their case)."""

    def __init__(self, status: int, headers: CIMultiDict[str], body: JSON) -> None:
        self.status, self.headers, self.body = status, headers, body


async def post(http: aiohttp.ClientSession, sim: Simulator, body: JSON) -> Reply:
    async with http.post(f"{sim.url}/chat/completions", json=body) as response:
        return Reply(response.status, response.headers.copy(), await response.json())


async def burst(http: aiohttp.ClientSession, sim: Simulator, n: int, body: JSON) -> list[Reply]:
    return list(await asyncio.gather(*(post(http, sim, body) for _ in range(n))))


# --- requests per minute -------------------------------------------------------------------------


async def test_a_burst_gets_one_seconds_worth_and_retry_after_lets_the_next_through(
    clock: Clock, http: aiohttp.ClientSession
) -> None:
    async with Simulator(SimConfig(rpm=1200)) as sim:  # 20 a second, in a bucket of 20
        replies = await burst(http, sim, 40, chat_body())
        accepted = [r for r in replies if r.status == 200]
        refused = [r for r in replies if r.status == 429]
        assert (len(accepted), len(refused)) == (20, 20)
        # The headers speak of the minute: 1,200, and nearly all of it left.
        assert {r.headers["x-ratelimit-limit-requests"] for r in replies} == {"1200"}
        assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in accepted) == list(
            range(1180, 1200)
        )
        assert {r.headers["x-ratelimit-remaining-requests"] for r in refused} == {"1180"}
        assert {r.headers["x-ratelimit-reset-requests"] for r in refused} == {"1s"}  # 20 back at 20/s
        for reply in refused:
            error = reply.body["error"]
            assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
            assert "on requests per min (RPM): Limit 1200, Used 20, Requested 1." in error["message"]
            assert error["message"].endswith("Please try again in 50ms.")
            # The wait is the second's bucket's: one request comes back in 1/20 s.
            assert (reply.headers["retry-after-ms"], reply.headers["retry-after"]) == ("50", "1")
        clock.advance(0.049)
        assert (await post(http, sim, chat_body())).status == 429  # a millisecond short
        clock.advance(0.001)
        assert (await post(http, sim, chat_body())).status == 200  # retry-after obeyed
        assert sim.stats.rate_limited == 21
        assert sim.overdraft() == (0, 0)
        assert sim.overdraft(bucket="minute") == (0, 0)


async def test_the_minute_bucket_takes_a_whole_minutes_burst(
    clock: Clock, http: aiohttp.ClientSession
) -> None:
    async with Simulator(SimConfig(rpm=1200, rate_limit_bucket="minute")) as sim:
        replies = await burst(http, sim, 40, chat_body())
        assert [r.status for r in replies] == [200] * 40
        assert min(int(r.headers["x-ratelimit-remaining-requests"]) for r in replies) == 1160
        assert sim.overdraft() == (0, 0)
        # The same log read the quantized way: 40 at once against a second's worth of 20.
        assert sim.overdraft(bucket="second") == (20, 0)


async def test_obeying_retry_after_gets_through_on_the_real_clock(http: aiohttp.ClientSession) -> None:
    async with Simulator(SimConfig(rpm=1200)) as sim:
        replies = await burst(http, sim, 40, chat_body())
        refused = [r for r in replies if r.status == 429]
        # However long the burst took to arrive, far less than a minute's worth went through.
        assert 20 <= 40 - len(refused) < 40
        wait_ms = max(int(r.headers["retry-after-ms"]) for r in refused)
        assert 0 < wait_ms <= 50
        await asyncio.sleep(wait_ms / 1000)
        assert (await post(http, sim, chat_body())).status == 200
        assert sim.overdraft() == (0, 0)


def test_requests_below_60_a_minute_are_one_at_a_time() -> None:
    limits = RateLimits(rpm=3, tpm=None, headers=True, now=0.0)  # a bucket of one, back in 20 s
    assert limits.charge(10, 0.0, "m") is None
    refused = limits.charge(10, 5.0, "gpt-x")
    assert refused is not None and refused.headers is not None
    message = orjson.loads(refused.body)["error"]["message"]
    assert "Limit 3, Used 1, Requested 1. Please try again in 15s." in message
    assert (refused.headers["retry-after"], refused.headers["retry-after-ms"]) == ("15", "15000")
    # The minute's bucket: 3 less the one charged, plus 5 s of refill at 3 a minute.
    assert refused.headers["x-ratelimit-remaining-requests"] == "2"
    assert refused.headers["x-ratelimit-reset-requests"] == "15s"
    assert limits.charge(10, 19.999, "m") is not None
    assert limits.charge(10, 20.0, "m") is None


# --- tokens per minute ---------------------------------------------------------------------------


async def test_a_prompt_beyond_a_seconds_worth_goes_on_a_full_bucket_and_leaves_a_debt(
    clock: Clock, http: aiohttp.ClientSession
) -> None:
    async with Simulator(SimConfig(tpm=120_000)) as sim:  # 2,000 tokens a second
        big = await post(http, sim, chat_body(4000))
        assert big.status == 200  # twice the bucket, but the bucket was full
        assert sim.log[-1].tokens == 4000
        assert big.headers["x-ratelimit-limit-tokens"] == "120000"
        assert big.headers["x-ratelimit-remaining-tokens"] == "116000"
        assert big.headers["x-ratelimit-reset-tokens"] == "2s"
        # 2,000 tokens in debt: a 100-token request waits for the debt and its own 100.
        small = await post(http, sim, chat_body(100))
        assert small.status == 429
        assert small.body["error"]["type"] == "tokens"
        assert small.headers["retry-after-ms"] == "1050"
        assert small.headers["x-ratelimit-remaining-tokens"] == "116000"  # the minute's, as ever
        clock.advance(1.049)
        assert (await post(http, sim, chat_body(100))).status == 429
        clock.advance(0.001)
        assert (await post(http, sim, chat_body(100))).status == 200
        # The big one again waits for a full bucket: a whole second from empty.
        again = await post(http, sim, chat_body(4000))
        assert (again.status, again.headers["retry-after-ms"]) == (429, "1000")
        clock.advance(1.0)
        assert (await post(http, sim, chat_body(4000))).status == 200
        assert sim.overdraft() == (0, 0)


async def test_only_a_request_beyond_the_minutes_limit_is_too_large(
    clock: Clock, http: aiohttp.ClientSession
) -> None:
    async with Simulator(SimConfig(tpm=120_000)) as sim:
        too_large = await post(http, sim, chat_body(120_001))
        assert too_large.status == 429
        message = too_large.body["error"]["message"]
        assert message.startswith("Request too large for gpt-test")
        assert "Limit 120000, Requested 120001. The input or output tokens must be reduced" in message
        assert not [name for name in too_large.headers if name.lower().startswith("retry-after")]
        whole = await post(http, sim, chat_body(120_000))
        assert whole.status == 200  # the whole minute's limit, taken on a full bucket
        assert whole.headers["x-ratelimit-remaining-tokens"] == "0"
        # ... and 118,000 in debt: the next waits out nearly the minute, as the minute's limit says.
        after = await post(http, sim, chat_body(100))
        assert after.status == 429
        assert (after.headers["retry-after-ms"], after.headers["retry-after"]) == ("59050", "60")
        assert after.body["error"]["message"].endswith("Please try again in 59.05s.")
        assert sim.overdraft() == (0, 0)


# --- the Anthropic wire --------------------------------------------------------------------------


async def test_anthropic_wire_gets_the_same_enforcement(clock: Clock, http: aiohttp.ClientSession) -> None:
    body: JSON = {"model": "claude-test", "max_tokens": 64, "messages": [{"role": "user", "content": TEXT}]}
    tokens = parse_messages_body(body, "m").prompt_tokens + 64
    headers = {"anthropic-version": "2023-06-01", "x-api-key": "k"}

    async def send(sim: Simulator) -> Reply:
        url = f"{sim.anthropic_url}/v1/messages"
        async with http.post(url, data=orjson.dumps(body), headers=headers) as response:
            return Reply(response.status, response.headers.copy(), await response.json())

    async with Simulator(SimConfig(rpm=1200, tpm=tokens * 60 * 100)) as sim:  # requests run out first
        replies = await asyncio.gather(*(send(sim) for _ in range(40)))
        refused = [r for r in replies if r.status == 429]
        assert len(refused) == 20
        for reply in refused:
            assert reply.body["type"] == "error"
            assert reply.body["error"]["type"] == "rate_limit_error"
            assert (
                "Limit 1200, Used 20, Requested 1. Please try again in 50ms."
                in reply.body["error"]["message"]
            )
            assert reply.headers["retry-after"] == "1"
            assert "retry-after-ms" not in reply.headers  # Anthropic's is whole seconds only
            assert reply.headers["anthropic-ratelimit-requests-limit"] == "1200"
            assert reply.headers["anthropic-ratelimit-requests-remaining"] == "1180"
            assert reply.headers["anthropic-ratelimit-tokens-limit"] == str(tokens * 6000)
            assert re.fullmatch(
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", reply.headers["anthropic-ratelimit-requests-reset"]
            )
        clock.advance(0.05)
        accepted = await send(sim)
        assert accepted.status == 200 and accepted.body["type"] == "message"
        assert TEXT in accepted.body["content"][0]["text"]
        assert sim.overdraft() == (0, 0)


# --- overdraft, replayed from hand-made logs ------------------------------------------------------


def entry(time: float, tokens: int = 10) -> LogEntry:
    return LogEntry(time, 0, "m", "tools", 200 if tokens else 429, "", 0, "", tokens)


def test_an_evenly_paced_log_at_the_limit_is_no_overdraft() -> None:
    paced = [entry(i * 0.05) for i in range(400)]  # 20 a second for 20 s: exactly 1,200 a minute
    assert overdraft(paced, rpm=1200) == (0, 0)
    assert overdraft(paced, rpm=1200, bucket="minute") == (0, 0)
    # A second's worth at once, then at the rate: the bucket is empty at every step but never short
    # (float rounding of the refill is not an overdraft).
    tight = [entry(0.0) for _ in range(20)] + [entry(i * 0.05) for i in range(1, 200)]
    assert overdraft(tight, rpm=1200) == (0, 0)
    tokens = [entry(float(i), 2000) for i in range(30)]  # 2,000 tokens a second
    assert overdraft(tokens, tpm=120_000) == (0, 0)


def test_two_seconds_worth_at_once_is_an_overdraft_only_when_quantized() -> None:
    at_once = [entry(0.0) for _ in range(40)] + [entry(0.0, 0)]  # the refused one does not count
    assert overdraft(at_once, rpm=1200) == (20, 0)
    assert overdraft(at_once, rpm=1200, bucket="minute") == (0, 0)
    # Tokens too: 2 × 2,000 at once against a second's worth of 2,000.
    assert overdraft([entry(0.0, 2000), entry(0.0, 2000)], tpm=120_000) == (0, 2000)
    assert overdraft([entry(0.0, 2000), entry(0.0, 2000)], tpm=120_000, bucket="minute") == (0, 0)


def test_a_big_request_on_a_full_bucket_is_no_overdraft_but_its_debt_counts() -> None:
    assert overdraft([entry(0.0, 4000)], tpm=120_000) == (0, 0)
    assert overdraft([entry(0.0, 4000), entry(1.05, 100)], tpm=120_000) == (0, 0)  # debt repaid
    assert overdraft([entry(0.0, 4000), entry(1.0, 100)], tpm=120_000) == (0, 100)  # 100 short
    assert overdraft([entry(0.0, 4000), entry(0.5, 4000)], tpm=120_000) == (0, 3000)  # not yet full
    # Beyond the whole minute's limit nothing allows it, full bucket or not.
    assert overdraft([entry(0.0, 4000)], tpm=3000) == (0, 1000)
    assert overdraft([entry(0.0, 4000)], tpm=3000, bucket="minute") == (0, 1000)
