"""Whatever the network does, every item ends exactly once, as a correct result or a named error."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from corral import Extractor, Item
from corral.sim import ScriptCall, SimConfig, SimReply, Simulator, SimulatorThread
from tests._support import Person, run_args
from tests._support.cli import Corral

N = 2000
TEXTS = [f"My name is Name{chr(65 + n % 26)}{n} and I am {18 + n % 70} years old" for n in range(N)]
KNOWN_CAUSES = {"server_error", "transport", "rate_limited", "invalid_output"}


def scripted_rate_limits(call: ScriptCall) -> SimReply | None:
    # The simulator's own rate limiter needs a minute to matter; 1% scripted 429s exercise it now.
    if call.index % 100 == 7:
        return SimReply(status=429, headers={"retry-after-ms": "20"})
    return None


@pytest.mark.slow
async def test_mixed_faults_every_item_ends_exactly_once() -> None:
    config = SimConfig(
        seed=11,
        server_error_rate=0.02,
        reset_rate=0.02,
        bad_body_rate=0.015,
        bad_arguments_rate=0.015,
        hang_rate=0.01,
        trickle_rate=0.01,
        trickle_s=1.0,  # longer than the client's timeout: a slow trickle times out and is retried
        hang_s=30.0,
    )  # 9% faulted by the simulator, 1% 429s by the script: 10%
    items = [Item(id=f"item-{n}", text=text) for n, text in enumerate(TEXTS)]
    async with Simulator(config, script=scripted_rate_limits) as sim:
        extractor: Extractor[Person] = Extractor(
            Person, base_url=sim.url, model="sim-1", mode="tools", concurrency=64, timeout=0.5, retries=4
        )
        async with extractor, asyncio.timeout(300):  # a guard against a hang, not a measurement
            outcomes = [o async for o in extractor.map(items)]
        faults = sim.stats.by_fault
    ids = [o.id for o in outcomes]
    assert len(ids) == N and set(ids) == {item.id for item in items}  # none missing, none twice
    for outcome in outcomes:
        n = int(outcome.id.removeprefix("item-"))
        if outcome.ok:
            assert outcome.unwrap() == Person(name=f"Name{chr(65 + n % 26)}{n}", age=18 + n % 70)
        else:
            assert outcome.error is not None
            assert outcome.error.kind in KNOWN_CAUSES
            assert outcome.error.message  # the cause, in words
    assert sum(o.ok for o in outcomes) >= N * 0.99  # retries and re-asks recover nearly everything
    for kind in ("server_error", "reset", "hang", "trickle", "bad_body", "bad_arguments"):
        assert faults.get(kind, 0) > 0, f"the simulator never produced {kind}"
    assert extractor.stats.retries > 0


@pytest.mark.usefixtures("no_api_keys")
def test_a_rejected_key_ends_the_run_at_once_naming_the_variable(corral: Corral, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:300]) + "\n")
    refuse = SimReply(status=401, error_body={"error": {"message": "Incorrect API key provided: sk-te****"}})
    with SimulatorThread(SimConfig(latency_ms=50), script=lambda call: refuse) as sim:
        result = corral(
            *run_args(source, sim.url, "--concurrency", "8"),
            env={"OPENAI_API_KEY": "sk-test-secret-value", "CORRAL_STORE": str(tmp_path / "s.db")},
        )
        requests = len(sim.log)
    assert result.returncode == 1
    assert "$OPENAI_API_KEY" in result.stderr
    assert "sk-test-secret-value" not in result.stderr + result.stdout
    assert (tmp_path / "s.db").exists()
    for stored in tmp_path.glob("s.db*"):  # the run store and its cache: no key either
        assert b"sk-test-secret-value" not in stored.read_bytes()
    assert re.search(r"HTTP 401", result.stderr)
    assert requests <= 8  # the first answers stopped it: no item after them was sent
