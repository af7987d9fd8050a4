"""Ctrl-C and SIGTERM: in-flight requests cancelled, finished records kept, exit 130, nothing left."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from corral import Extractor
from corral.sim import SimConfig, SimulatorThread
from tests._support import ROOT, Person, run_command

TEXTS = [f"My name is Name{n} and I am {20 + n % 50} years old" for n in range(200)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_keeps_finished_records_and_exits_130(sig: signal.Signals, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=100, latency_dist="fixed")) as sim:
        process = subprocess.Popen(
            run_command(source, sim.url, "--concurrency", "4", "-o", str(out)),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30  # a guard against a hang, not a measurement
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 8):
            time.sleep(0.05)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert f"interrupted ({sig.name})" in stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]  # every line complete
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert 8 <= len(rows) < len(TEXTS)
    assert all(row["error"] is None for row in rows)  # nothing cancelled was written as a result


async def test_cancelling_a_run_leaves_no_task_behind() -> None:
    with SimulatorThread(SimConfig(latency_ms=200, latency_dist="fixed")) as sim:
        extractor: Extractor[Person] = Extractor(Person, base_url=sim.url, model="sim-1", concurrency=8)
        async with extractor:
            eight_done = asyncio.Event()

            async def consume() -> None:
                seen = 0
                async for _ in extractor.map(TEXTS):
                    seen += 1
                    if seen == 8:
                        eight_done.set()

            run = asyncio.create_task(consume())
            await eight_done.wait()
            for _ in range(100):  # until the next wave is on the wire (a guard, not a measurement)
                if sim.stats.in_flight > 0:
                    break
                await asyncio.sleep(0.01)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            # The simulator runs on its own thread: every task on this loop but the test's is ours.
            assert asyncio.all_tasks() == {asyncio.current_task()}
            # Every connection was closed too: the server saw its clients go (it ends a request whose
            # client disconnects), long before the 200 ms answers were due.
            for _ in range(100):  # a guard against a hang, not a measurement
                if sim.stats.in_flight == 0:
                    break
                await asyncio.sleep(0.01)
            assert sim.stats.in_flight == 0
            assert sim.stats.by_status.get(499, 0) > 0  # requests cut off by the client, not answered
