"""corral on Ray: ``corral run --ray`` starts a local Ray (2 CPUs) with 2 workers against the
simulator. The promises of one machine hold across workers: the provider's limit is kept by all of
them together, every item is written once, and a killed job re-run finishes only what was left."""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from corral.engine._limits import _BURST_S
from corral.sim import SimConfig, SimulatorThread
from tests._support import ROOT, run_command

pytest.importorskip("ray", reason="the ray extra is not installed")
pytestmark = pytest.mark.ray

RPM = 600


def texts(n: int) -> list[str]:
    return [f"My name is Person{k} and I am {18 + k % 60} years old" for k in range(n)]


def source(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("\n".join(texts(n)) + "\n")
    return path


def ray_command(sim: SimulatorThread, src: Path, out: Path, *options: str) -> list[str]:
    return run_command(src, sim.url, "-o", str(out), "--ray", "--ray-workers", "2", "-q", *options)


def check_every_item_once(out: Path, n: int) -> None:
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [str(k) for k in range(1, n + 1)], "every item once, in input order"
    for record in records:
        k = int(record["id"]) - 1
        assert record["output"] == {"name": f"Person{k}", "age": 18 + k % 60}, record


def test_two_workers_keep_one_rpm_limit_together(tmp_path: Path) -> None:
    n = 120
    out = tmp_path / "out.jsonl"
    # The simulator enforces the limit with 429s; corral is told it. Two workers each sending at the
    # full limit would go twice over it.
    with SimulatorThread(SimConfig(latency_ms=50, rpm=RPM, seed=2)) as sim:
        argv = ray_command(sim, source(tmp_path, n), out, "--rpm", str(RPM), "--concurrency", "8")
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        stats = sim.stats
        assert sim.overdraft(rpm=RPM).requests == 0, "never more than the limit in any minute"
    assert stats.by_status == {200: n}, "no 429: the workers paced themselves through one budget"
    check_every_item_once(out, n)


def test_two_workers_learn_the_limit_from_headers_without_a_start_up_burst(tmp_path: Path) -> None:
    n = 120
    out = tmp_path / "out.jsonl"
    # No --rpm: the keeper slow-starts for both workers (one request, then more as answers come
    # back) until the first answer's headers give the limit, then paces them to it together.
    with SimulatorThread(SimConfig(latency_ms=50, rpm=RPM, seed=4)) as sim:
        argv = ray_command(sim, source(tmp_path, n), out, "--concurrency", "8")
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        stats = sim.stats
        arrived = sorted(entry.time for entry in sim.log)
    assert stats.by_status.get(200) == n
    assert stats.by_status.get(429, 0) <= 0.01 * n, "at most 1% refused"
    assert sum(1 for t in arrived if t < arrived[0] + 0.05) == 1, "one request until the limits are known"
    # The pace's promise: a second's budget plus its burst tolerance (a quarter second of budget),
    # whatever the workers' timing. A worker held up by a busy machine sends its granted requests
    # late and together; that is within the promise, and the provider's per-second bucket took them.
    most = int(RPM / 60 * (1 + _BURST_S))
    assert max(sum(1 for t in arrived if start <= t < start + 1.0) for start in arrived) <= most
    check_every_item_once(out, n)


def test_a_killed_job_rerun_finishes_the_rest_without_asking_again(tmp_path: Path) -> None:
    n = 240
    out = tmp_path / "out.jsonl"
    src = source(tmp_path, n)
    store = tmp_path / "store" / "corral.db"  # the tests' own store ($CORRAL_STORE, see conftest)
    with SimulatorThread(SimConfig(latency_ms=20, seed=3)) as sim:
        argv = ray_command(sim, src, out, "--rpm", "1200", "--concurrency", "4")
        first = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 180  # a guard against a hang, not a measurement
        while time.monotonic() < deadline and len(finished_ids(store)) < 40:
            time.sleep(0.2)
        os.killpg(first.pid, signal.SIGKILL)  # the driver and the Ray it started
        first.wait(timeout=30)
        before = finished_ids(store)
        assert 40 <= len(before) < n, "killed mid-way"
        time.sleep(3)  # the killed job's workers notice their Ray is gone and stop
        seen = len(sim.log)
        second = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert second.returncode == 0, second.stderr
        asked_again = collections.Counter(entry.text for entry in sim.log[seen:])
    by_id = {str(k + 1): text for k, text in enumerate(texts(n))}
    assert not [i for i in before if asked_again[by_id[i]]], (
        "nothing finished before the kill was asked again"
    )
    check_every_item_once(out, n)
    with sqlite3.connect(store) as db:
        runs = db.execute("SELECT status, reused FROM runs ORDER BY id").fetchall()
    assert runs[-1] == ("completed", len(before))


def finished_ids(store: Path) -> set[str]:
    try:
        with sqlite3.connect(store) as db:
            return {row[0] for row in db.execute("SELECT item_id FROM items")}
    except sqlite3.Error:
        return set()  # not created yet
