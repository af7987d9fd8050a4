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
from corral.report._data import load_report
from corral.sim import SimConfig, SimulatorThread
from corral.store import RunStore
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


def test_a_job_repeated_into_another_output_sends_nothing_and_reads_stdin(tmp_path: Path) -> None:
    n = 60
    src = source(tmp_path, n)
    with SimulatorThread(SimConfig(latency_ms=20, seed=4)) as sim:
        # The first job reads standard input (spooled: a job on Ray reads its input twice).
        first_out = tmp_path / "first.jsonl"
        argv = ray_command(sim, Path("-"), first_out, "--concurrency", "4")
        first = subprocess.run(
            argv, cwd=ROOT, input=src.read_text(), capture_output=True, text=True, timeout=300, check=False
        )
        assert first.returncode == 0, first.stderr
        check_every_item_once(first_out, n)
        asked = len(sim.log)
        assert asked == n
        # The same job into another output: every answer is in the response cache, as on one machine.
        second_out = tmp_path / "second.jsonl"
        second = subprocess.run(
            ray_command(sim, src, second_out, "--concurrency", "4"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert second.returncode == 0, second.stderr
        assert len(sim.log) == asked, "the repeated job sent nothing"
        check_every_item_once(second_out, n)


def test_a_killed_driver_rerun_asks_again_at_most_what_was_in_flight(tmp_path: Path) -> None:
    n, workers, concurrency = 200, 2, 4
    out = tmp_path / "out.jsonl"
    src = source(tmp_path, n)
    store = tmp_path / "store" / "corral.db"
    # Slow answers, so that a result committed late would show: results reach the store one by one.
    with SimulatorThread(SimConfig(latency_ms=300, latency_dist="fixed", seed=5)) as sim:
        argv = ray_command(sim, src, out, "--concurrency", str(concurrency))
        first = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 180  # a guard against a hang, not a measurement
        while time.monotonic() < deadline and len(finished_ids(store)) < 30:
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        time.sleep(3)  # the killed job's workers notice their Ray is gone and stop
        seen = len(sim.log)
        asked_first = {entry.text for entry in sim.log[:seen]}
        second = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert second.returncode == 0, second.stderr
        asked_again = {entry.text for entry in sim.log[seen:]} & asked_first
    assert len(asked_again) <= workers * concurrency, f"{len(asked_again)} items asked twice"
    check_every_item_once(out, n)


def test_the_counts_are_what_the_server_saw_and_the_timeline_never_goes_back(tmp_path: Path) -> None:
    n = 120
    out = tmp_path / "out.jsonl"
    store = tmp_path / "store" / "corral.db"
    with SimulatorThread(SimConfig(latency_ms=30, server_error_rate=0.15, seed=6)) as sim:
        argv = ray_command(sim, source(tmp_path, n), out, "--concurrency", "4")
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        texts_asked = collections.Counter(entry.text for entry in sim.log)
    retried = sum(count - 1 for count in texts_asked.values())
    assert retried > 0, "the faults made retries"
    with sqlite3.connect(store) as db:
        requests, retries = db.execute("SELECT requests, retries FROM runs").fetchone()
        samples = db.execute("SELECT done, requests, retries FROM samples ORDER BY time").fetchall()
    assert (requests, retries) == (sum(texts_asked.values()), retried)
    assert len(samples) >= 2
    for column in range(3):
        values = [sample[column] for sample in samples]
        assert values == sorted(values), "a count never goes down"
        assert min(values) >= 0
    assert samples[-1][1:] == (requests, retries)
    # The report reads the same: no plot has a negative value, and none says its counts disagree.
    with RunStore.open(store) as kept:
        report = load_report(kept, 1)
    for plot in report.plots:
        assert all(y >= 0 for series in plot.series for _, y in series.points), plot.slug
        assert "disagree" not in plot.note and "went down" not in plot.note, plot.note


def test_errors_are_extracted_again_with_retry_errors(tmp_path: Path) -> None:
    n = 60
    out = tmp_path / "out.jsonl"
    src = source(tmp_path, n)
    with SimulatorThread(SimConfig(latency_ms=10, server_error_rate=0.3, seed=7)) as sim:
        first = subprocess.run(
            ray_command(sim, src, out, "--retries", "0"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert first.returncode == 1, first.stderr  # some items ended in error
    failed = {record["input"] for record in map(json.loads, out.read_text().splitlines()) if record["error"]}
    assert failed
    with SimulatorThread(SimConfig(latency_ms=10, seed=7)) as sim:
        again = subprocess.run(
            ray_command(sim, src, out, "--retry-errors"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert again.returncode == 0, again.stderr
        assert {entry.text for entry in sim.log} == failed, "only the items in error were asked again"
    check_every_item_once(out, n)


def test_identical_texts_are_asked_once_across_workers(tmp_path: Path) -> None:
    distinct = texts(20)
    lines = [distinct[k % 20] for k in range(100)]  # each text five times, near and far apart
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=60, seed=4)) as sim:
        done = subprocess.run(
            ray_command(sim, src, out, "--concurrency", "8"),
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        asked = collections.Counter(entry.text for entry in sim.log)
    assert sorted(asked) == sorted(distinct) and set(asked.values()) == {1}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [str(k) for k in range(1, 101)]
    assert all(r["output"]["name"] == f"Person{k % 20}" for k, r in enumerate(records))
    with RunStore.open(Path(os.environ["CORRAL_STORE"])) as store:
        job = store.find_job(str(out.resolve()))
        assert job is not None
        (run,) = store.views.runs_of(job.id)
    assert (run.requests, run.shared) == (20, 80)
