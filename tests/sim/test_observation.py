"""Observing the simulator: concurrency, its request log, statistics, its config and its thread.

Every request goes over real loopback HTTP, through aiohttp, the official ``openai`` SDK or instructor.
Nothing here depends on wall-clock time except waiting for requests that are held on purpose.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request

import aiohttp
import orjson
import pytest

from corral.errors import ConfigError
from corral.sim import SimConfig, Simulator, SimulatorThread
from tests._support import Person
from tests._support.chat import TEXTS, answer_of, chat_body, post


async def test_peak_concurrency_and_in_flight(http: aiohttp.ClientSession) -> None:
    async with Simulator(SimConfig(latency_ms=1000, latency_dist="fixed")) as sim:
        body = chat_body("tools", Person.model_json_schema(), TEXTS[0])
        tasks = [asyncio.create_task(post(http, sim, body)) for _ in range(8)]
        for _ in range(500):  # wait until all eight are held by the server
            if sim.stats.in_flight == 8:
                break
            await asyncio.sleep(0.01)
        assert sim.stats.in_flight == 8
        await asyncio.gather(*tasks)
        assert sim.stats.peak_concurrency == 8
        assert sim.stats.in_flight == 0


async def test_log_is_a_bounded_ring_and_reset_clears_it(http: aiohttp.ClientSession) -> None:
    async with Simulator(SimConfig(log_size=5)) as sim:
        for i in range(8):
            await post(http, sim, chat_body("json_object", Person.model_json_schema(), f"text {i}"))
        log = sim.log
        assert [entry.seq for entry in log] == [3, 4, 5, 6, 7]
        assert [entry.text for entry in log] == [f"text {i}" for i in range(3, 8)]
        assert {(e.mode, e.status, e.model) for e in log} == {("json_object", 200, "gpt-test")}
        assert log == sorted(log, key=lambda e: e.time)
        assert sim.stats.requests == 8
        sim.reset_stats()
        assert (sim.stats.requests, sim.log) == (0, [])


async def test_http_models_stats_and_reset(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sim.url}/models") as response:
        assert [m["id"] for m in (await response.json())["data"]] == ["sim-1"]
    async with http.get(f"{sim.url}/models/gpt-4o") as response:
        assert (await response.json())["id"] == "gpt-4o"
    await post(http, sim, chat_body("tools", Person.model_json_schema(), "x"))
    root = sim.url.removesuffix("/v1")
    async with http.get(f"{root}/sim/stats") as response:
        assert await response.json() == {
            "requests": 1,
            "peak_concurrency": 1,
            "in_flight": 0,
            "by_status": {"200": 1},
            "by_fault": {},
        }
    async with http.post(f"{root}/sim/reset") as response:
        assert response.status == 200
    assert sim.stats.requests == 0


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="invalid_rate"):
        SimConfig(invalid_rate=1.5)
    with pytest.raises(ConfigError, match="must not exceed 1"):
        SimConfig(invalid_rate=0.6, malformed_rate=0.6)
    with pytest.raises(ConfigError, match=r"reset_rate \+ hang_rate\) must not exceed 1"):
        SimConfig(reset_rate=0.6, hang_rate=0.6)
    SimConfig(reset_rate=0.7, hang_rate=0.2, trickle_rate=0.1)  # exactly 1, give or take float
    with pytest.raises(ConfigError, match="rpm must be a positive"):
        SimConfig(rpm=0)
    with pytest.raises(ConfigError, match="rate_limit_bucket must be 'second' or 'minute'"):
        SimConfig(rate_limit_bucket="hour")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="hang_s"):
        SimConfig(hang_s=-1)
    with pytest.raises(ConfigError, match="latency_dist"):
        SimConfig(latency_dist="uniform")  # type: ignore[arg-type]


def test_simulator_thread_serves_sync_code() -> None:
    with SimulatorThread(SimConfig(model="sim-x")) as sim:
        assert sim.port > 0
        assert sim.url == f"http://127.0.0.1:{sim.port}/v1"
        body = orjson.dumps(chat_body("json_schema", Person.model_json_schema(), TEXTS[0]))
        request = urllib.request.Request(f"{sim.url}/chat/completions", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
        assert json.loads(answer_of(reply)) == {"name": "John", "age": 20}
        with urllib.request.urlopen(f"{sim.url}/models", timeout=10) as response:
            assert json.loads(response.read())["data"][0]["id"] == "sim-x"
        assert sim.stats.requests == 1
    with (
        SimulatorThread() as first,
        pytest.raises(OSError, match="address"),
        SimulatorThread(port=first.port),
    ):
        pass  # the port is taken: start() re-raises the server thread's error
