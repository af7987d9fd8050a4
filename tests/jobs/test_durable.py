"""Durable runs end to end: ``corral run`` (in this process, and as a process where one is killed), the
simulator's request log, the real store.

The promises checked here: after ``kill -9`` the same command finishes the job with every item
exactly once and nothing that was finished asked again; a finished job re-run asks nothing; a
changed job is refused; errors can be retried alone; a cost cap stops new requests and resumes.
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from corral.sim import SimConfig, SimulatorThread
from tests._support import CORRAL_PROCESS, PERSON, ROOT, run_args, run_command
from tests._support.cli import Corral

N = 400
TEXTS = [f"My name is Person{n} and I am {18 + n % 60} years old" for n in range(N)]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    return path


@pytest.fixture
def beside_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use the default store location (``.corral/`` beside the output), not the tests' own."""
    monkeypatch.delenv("CORRAL_STORE")


def rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected(item_id: object) -> dict[str, object]:
    n = int(str(item_id)) - 1  # txt ids are 1-based line numbers
    return {"name": f"Person{n}", "age": 18 + n % 60}


def requested(sim: SimulatorThread) -> collections.Counter[str]:
    return collections.Counter(entry.text for entry in sim.log)


@pytest.mark.usefixtures("beside_output")
def test_killed_run_resumes_with_every_item_once_and_nothing_finished_asked_again(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    config = SimConfig(latency_ms=40, latency_dist="lognormal", latency_sigma=0.5, seed=3)
    with SimulatorThread(config) as sim:
        args = run_args(source, sim.url, "--concurrency", "8", "-o", str(out))
        process = subprocess.Popen(
            [*CORRAL_PROCESS, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 80):
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        text = out.read_text()
        finished = {row["input"] for row in (json.loads(line) for line in text.splitlines()[:-1])}
        assert 80 <= len(finished) < N - 8, "the kill should land mid-run"
        asked_before = requested(sim)

        resumed = corral(*args)
        asked = requested(sim)

    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / ".corral" / "corral.db").exists()
    records = rows(out)
    assert [r["id"] for r in records] == [str(n) for n in range(1, N + 1)]  # every item once, in order
    assert all(r["output"] == expected(r["id"]) for r in records)
    for text_ in finished:  # finished before the kill: never asked again
        assert asked[text_] == 1, text_
    # Everything not finished was asked by the second run; nothing was asked more than twice.
    assert set(asked) == set(TEXTS)
    assert max(asked.values()) <= 2
    assert sum(asked.values()) - sum(asked_before.values()) <= N - len(finished)
    assert "from an earlier run" in resumed.stderr


def test_rerunning_a_finished_job_sends_nothing_and_writes_the_same_output(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=5, seed=1)) as sim:
        args = run_args(source, sim.url, "--concurrency", "16", "-o", str(out))
        first = corral(*args)
        assert first.returncode == 0, first.stderr
        before, output = len(sim.log), out.read_bytes()
        second = corral(*args)
        assert second.returncode == 0, second.stderr
        assert len(sim.log) == before == N
    assert out.read_bytes() == output
    assert f"{N} from an earlier run" in second.stderr


def test_an_identical_job_elsewhere_is_answered_from_the_cache(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    with SimulatorThread(SimConfig(latency_ms=5, seed=1)) as sim:
        first = corral(*run_args(source, sim.url, "-o", str(tmp_path / "a.jsonl")))
        assert first.returncode == 0, first.stderr
        copy = corral(*run_args(source, sim.url, "-o", str(tmp_path / "b.csv")))
        assert copy.returncode == 0, copy.stderr
        assert len(sim.log) == N  # the second job, another output and format, sent nothing
        bypass = corral(*run_args(source, sim.url, "-o", str(tmp_path / "c.jsonl"), "--no-cache"))
        assert bypass.returncode == 0, bypass.stderr
        assert len(sim.log) == 2 * N
    assert f"{N} cached" in copy.stderr
    assert (tmp_path / "b.csv").read_text().splitlines()[1].startswith("1,My name is Person0")


def test_a_changed_job_is_refused_until_fresh(corral: Corral, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=5)) as sim:
        assert corral(*run_args(source, sim.url, "-o", str(out))).returncode == 0
        output = out.read_bytes()
        changed = corral(*run_args(source, sim.url, "-o", str(out), "--prompt", "Find the person."))
        assert changed.returncode == 2
        assert "different prompt" in changed.stderr and "--fresh" in changed.stderr
        assert out.read_bytes() == output  # refused before the output was touched
        fresh = corral(*run_args(source, sim.url, "-o", str(out), "--prompt", "Find the person.", "--fresh"))
        assert fresh.returncode == 0, fresh.stderr
        assert len(sim.log) == 2 * N  # a new prompt is a new request: nothing to replay
    assert len(rows(out)) == N


def test_retry_errors_asks_again_for_the_failed_items_only(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=5, invalid_rate=0.2, seed=7)) as flaky:
        first = corral(*run_args(source, flaky.url, "-o", str(out), "--max-retries", "0"))
    assert first.returncode == 1
    failed = {r["id"] for r in rows(out) if r["error"] is not None}
    assert 20 < len(failed) < N // 2
    with SimulatorThread(SimConfig(latency_ms=5)) as healthy:
        again = corral(*run_args(source, healthy.url, "-o", str(out), "--max-retries", "0"))
        assert again.returncode == 1  # a plain re-run keeps the recorded errors
        assert len(healthy.log) == 0
        retried = corral(*run_args(source, healthy.url, "-o", str(out), "--retry-errors"))
        assert retried.returncode == 0, retried.stderr
        assert len(healthy.log) == len(failed)
        assert {entry.text for entry in healthy.log} == {TEXTS[int(str(i)) - 1] for i in failed}
    records = rows(out)
    assert [r["id"] for r in records] == [str(n) for n in range(1, N + 1)]
    assert all(r["output"] == expected(r["id"]) for r in records)


def test_max_cost_stops_new_requests_and_a_higher_cap_finishes(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"sim-1": {"input": 100.0, "output": 100.0}}))  # ~$0.012 a request
    out = tmp_path / "out.jsonl"
    store = tmp_path / "store" / "corral.db"
    options = ["-o", str(out), "--prices", str(prices), "--max-tokens", "20", "--concurrency", "4"]
    with SimulatorThread(SimConfig(latency_ms=5)) as sim:
        capped = corral(*run_args(source, sim.url, *options, "--max-cost", "1"))
        assert capped.returncode == 1
        assert "budget reached" in capped.stderr and "--max-cost" in capped.stderr
        sent = len(sim.log)
        done = rows(out)
        assert 0 < len(done) == sent < N
        with sqlite3.connect(store) as db:
            spent = db.execute("SELECT SUM(cost) FROM runs").fetchone()[0]
        assert 0.5 < spent <= 1.0
        finished = corral(*run_args(source, sim.url, *options, "--max-cost", "100"))
        assert finished.returncode == 0, finished.stderr
        assert len(sim.log) == N  # the rest, and nothing twice
    assert [r["id"] for r in rows(out)] == [str(n) for n in range(1, N + 1)]


def test_a_cost_cap_needs_a_known_price(corral: Corral, source: Path, tmp_path: Path) -> None:
    with SimulatorThread(SimConfig(latency_ms=5)) as sim:
        args = run_args(source, sim.url, "--max-cost", "5")
        args[args.index("sim-1")] = "mystery-model"
        result = corral(*args)
        assert len(sim.log) == 0
    assert result.returncode == 2
    assert "no price is known for model 'mystery-model'" in result.stderr
    assert "--prices" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a database at all, just text", "not a corral run store"),
        (None, "an SQLite database but not a corral run store"),
    ],
)
@pytest.mark.usefixtures("beside_output")
def test_a_bad_store_is_refused_and_the_output_left_alone(
    corral: Corral, source: Path, tmp_path: Path, content: bytes | None, message: str
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "1", "input": "x", "output": null, "error": null}\n')
    store = tmp_path / ".corral" / "corral.db"
    store.parent.mkdir()
    if content is None:
        with sqlite3.connect(store) as db:
            db.execute("CREATE TABLE notes (body TEXT)")
    else:
        store.write_bytes(content)
    before = out.read_bytes(), store.read_bytes()
    with SimulatorThread(SimConfig(latency_ms=5)) as sim:
        result = corral(*run_args(source, sim.url, "-o", str(out)))
        assert len(sim.log) == 0
    assert result.returncode == 2
    assert message in result.stderr and str(store) in result.stderr
    assert result.stderr.count("\n") == 1
    assert (out.read_bytes(), store.read_bytes()) == before


def test_an_output_that_is_not_ours_is_never_overwritten(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "notes.csv"
    out.write_text("date,amount\n2026-01-01,12\n")
    with SimulatorThread(SimConfig(latency_ms=5)) as sim:
        result = corral(*run_args(source, sim.url, "-o", str(out)))
        assert len(sim.log) == 0
    assert result.returncode == 2
    assert "notes.csv" in result.stderr and "not a corral" in result.stderr
    assert out.read_text() == "date,amount\n2026-01-01,12\n"


def test_a_changed_input_line_is_extracted_again(corral: Corral, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=5)) as sim:
        assert corral(*run_args(source, sim.url, "-o", str(out))).returncode == 0
        lines = source.read_text().splitlines()
        lines[9] = "My name is Zed and I am 99 years old"
        source.write_text("\n".join(lines) + "\n")
        again = corral(*run_args(source, sim.url, "-o", str(out)))
        assert again.returncode == 0, again.stderr
        assert len(sim.log) == N + 1
    assert rows(out)[9]["output"] == {"name": "Zed", "age": 99}


@pytest.mark.slow
def test_status_lines_when_not_a_terminal_and_silence_when_quiet(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    with SimulatorThread(SimConfig(latency_ms=50, latency_dist="fixed")) as sim:
        chatty = corral(*run_args(source, sim.url, "--concurrency", "8", "--status-every", "0.5", "-o",
                                    str(tmp_path / "a.jsonl")))  # fmt: skip
        quiet = corral(*run_args(source, sim.url, "--no-cache", "-q", "-o", str(tmp_path / "b.jsonl")))
    assert chatty.returncode == 0 and quiet.returncode == 0
    status = [line for line in chatty.stderr.splitlines() if "in flight" in line]
    assert status, chatty.stderr
    assert all(line.startswith("corral: ") and f"/{N:,}" in line for line in status)
    assert chatty.stderr.splitlines()[-1].startswith(f"corral: {N} items: {N} ok")
    assert quiet.stderr == ""


def test_parquet_output_holds_every_record(corral: Corral, source: Path, tmp_path: Path) -> None:
    parquet = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "out.parquet"
    with SimulatorThread(SimConfig(latency_ms=5)) as sim:
        result = corral(*run_args(source, sim.url, "-o", str(out)))
    assert result.returncode == 0, result.stderr
    table = parquet.read_table(out)
    assert table.num_rows == N
    first = table.slice(0, 1).to_pylist()[0]
    assert first["id"] == "1"
    assert first["output"] == {"name": "Person0", "age": 18}


def test_two_runs_cannot_write_one_output_at_once(corral: Corral, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=100, latency_dist="fixed")) as sim:
        args = run_args(source, sim.url, "--concurrency", "2", "-o", str(out))
        first = subprocess.Popen(
            [*CORRAL_PROCESS, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(sim.log) == 0:
                time.sleep(0.02)
            second = corral(*args)
        finally:
            first.kill()
            first.wait(timeout=30)
    assert second.returncode == 2
    assert "another corral run is writing" in second.stderr


def test_a_reader_that_closes_the_pipe_ends_the_run_quietly(source: Path) -> None:
    with SimulatorThread(SimConfig(latency_ms=20, latency_dist="fixed")) as sim:
        process = subprocess.Popen(
            run_command(source, sim.url, "--concurrency", "4"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.readline()  # `corral run ... | head -1`
        process.stdout.close()
        stderr = process.stderr.read().decode()
        process.stderr.close()
        process.wait(timeout=60)
    assert json.loads(first)["id"] == "1"
    assert process.returncode == 128 + signal.SIGPIPE
    assert "Traceback" not in stderr and "error" not in stderr


async def test_two_runs_sharing_a_store_each_write_every_record(tmp_path: Path) -> None:
    """One run's commit takes the other's rows too (a server runs many jobs on one store): each run
    must still hand every record it committed to its own output."""
    from corral._extractor import Extractor
    from corral.engine._stats import RunStats
    from corral.io.sinks import open_sink
    from corral.jobs import run_job
    from corral.sim import Simulator
    from corral.store import RunStore
    from corral.types import Item

    async with Simulator(SimConfig(latency_ms=2, seed=1)) as sim:
        with RunStore.open(tmp_path / "store") as store:

            async def job(name: str, count: int) -> list[dict[str, object]]:
                out = tmp_path / f"{name}.jsonl"
                async with Extractor[Any](PERSON, base_url=sim.url, model="sim-1", concurrency=8) as ex:
                    info = store.open_job(name, {"model": "sim-1"})
                    items = [
                        Item(str(n), f"My name is {name}{n} and I am 30 years old") for n in range(count)
                    ]
                    with open_sink(str(out), "jsonl", ex.spec) as sink:
                        await run_job(ex, items, sink, RunStats(), store=store, job=info)
                return rows(out)

            outputs = await asyncio.gather(*(job(f"job{k}", 40 + k) for k in range(6)))
    for k, records in enumerate(outputs):
        assert [r["id"] for r in records] == [str(n) for n in range(40 + k)], f"job{k} wrote every record"
