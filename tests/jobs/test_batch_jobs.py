"""Batch jobs end to end: ``corral run --batch`` and ``corral batch ...`` (in this process, or as a
process where one is killed, interrupted or must be new) against the simulator's OpenAI Batch and
Anthropic Message Batches endpoints, and the real run store.

The promises checked here: every item ends as a result or an error exactly once, whatever the
batches did to its lines (errored, expired, schema-invalid answers); invalid answers are re-asked in
follow-up batches (or online); a process stopped between submit and collect is finished by
``collect`` in a new one; batch answers are priced at half the online rate.
"""

from __future__ import annotations

import collections
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from corral._extractor import Extractor
from corral.backends import COMPATIBLE_PROFILE
from corral.backends.batch import BatchLimits, OpenAIBatchAPI
from corral.backends.openai import OpenAIBackend
from corral.cost import PRICES
from corral.engine._stats import RunStats
from corral.io.sinks import open_sink
from corral.jobs import run_job
from corral.jobs._batch import BatchBackend
from corral.jobs._rounds import BatchJob, Poll
from corral.sim import SimConfig, Simulator, SimulatorThread
from corral.store import RunStore
from corral.store._cache import ResponseCache
from corral.types import Item
from tests._support import CORRAL_PROCESS, PERSON, ROOT
from tests._support.cli import Corral

N = 500
TEXTS = [f"My name is Person{n} and I am {18 + n % 60} years old" for n in range(N)]
ANTHROPIC_MODEL = "anthropic/claude-haiku-4-5"
# Faults in every batch: 5xx lines, lines the window closed on, answers that break the schema.
FAULTY = SimConfig(
    seed=11, server_error_rate=0.04, invalid_rate=0.08, batch_expire_rate=0.04, batch_seconds=0.3
)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    return path


def target(sim: SimulatorThread, provider: str) -> list[str]:
    if provider == "anthropic":
        return ["--model", ANTHROPIC_MODEL, "--base-url", sim.anthropic_url]
    return ["--model", "sim-1", "--base-url", sim.url]


@pytest.fixture(autouse=True)
def _anthropic_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key every command here runs with (the tests check that it reaches no output or store)."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-secret")


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected(item_id: object) -> dict[str, object]:
    n = int(str(item_id)) - 1  # txt ids are 1-based line numbers
    return {"name": f"Person{n}", "age": 18 + n % 60}


def store_rows(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "store" / "corral.db") as db:
        return db.execute(sql).fetchall()


def check_every_item_once(out: Path) -> list[dict[str, Any]]:
    rows = records(out)
    ids = [row["id"] for row in rows]
    assert ids == [str(n) for n in range(1, N + 1)], "every item exactly once, in input order"
    for row in rows:
        if row["error"] is None:
            assert row["output"] == expected(row["id"])
        else:
            assert row["output"] is None
            assert row["error"]["kind"] in {"invalid_output", "server_error", "expired"}
            assert row["error"]["message"]
    return rows


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_batch_job_with_errored_expired_and_invalid_lines_ends_every_item_once(
    corral: Corral, provider: str, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(FAULTY) as sim:
        done = corral(
            "run", str(source), "--schema", PERSON, *target(sim, provider), "-o", str(out),
            "--batch", "--poll-every", "0.05", "--batch-retries", "3", "--max-retries", "3",
        )  # fmt: skip
        online = sim.stats.by_status  # the online endpoint was never used: everything went in batches
    assert done.returncode in (0, 1), done.stderr
    rows = check_every_item_once(out)
    ok = sum(row["error"] is None for row in rows)
    assert ok >= N * 0.97, f"re-asks and resubmissions should recover nearly all: {ok}/{N}"
    assert sum(online.values()) == 0, online
    # The first batch held every item once; follow-ups held only re-asks and failed lines.
    batches = store_rows(tmp_path, "SELECT requests, open, status FROM batches ORDER BY id")
    assert batches[0][0] == N
    assert len(batches) >= 2, "invalid and failed lines need a follow-up batch"
    assert all(count < N / 4 for count, _, _ in batches[1:])
    assert all(open_ == 0 for _, open_, _ in batches), "every batch collected"
    # Every request the store knows ended answered or failed; none is still pending.
    states = collections.Counter(
        state for (state,) in store_rows(tmp_path, "SELECT state FROM batch_requests")
    )
    assert set(states) <= {"done", "failed"}, states
    assert "sk-ant-test-secret" not in out.read_text() + done.stderr


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_batch_wait_survives_transient_errors_on_polls_and_downloads(
    corral: Corral, provider: str, source: Path, tmp_path: Path
) -> None:
    # A third of the reads of the batch (status, listing, results) fail: OpenAI's 500, Anthropic's
    # 529. Over a 24-hour wait a few are nearly certain; none may end the run.
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(seed=5, batch_seconds=0.5, batch_api_error_rate=0.35)) as sim:
        done = corral(
            "run", str(source), "--schema", PERSON, *target(sim, provider), "-o", str(out),
            "--batch", "--poll-every", "0.05",
        )  # fmt: skip
        stats = sim.stats
    assert done.returncode == 0, done.stderr
    assert stats.batch_api_errors >= 3, "the reads did fail, more than once"
    assert stats.batches == 1, "the failures were waited out, not answered by a new batch"
    rows = check_every_item_once(out)
    assert [row["error"] for row in rows] == [None] * N
    assert "asking again" in done.stderr


@pytest.mark.parametrize("told", [False, True], ids=["learned", "given"])
def test_a_job_over_the_enqueued_token_limit_completes_in_waves_with_no_item_error(
    corral: Corral, told: bool, source: Path, tmp_path: Path
) -> None:
    # The organisation's queue holds 25,000 prompt tokens of this model: the whole job is ~3 times
    # that. Learned, the first batch fails (token_limit_exceeded, nothing answered, nothing paid);
    # given, no batch ever goes over it.
    out = tmp_path / "out.jsonl"
    limit = 25_000
    with SimulatorThread(SimConfig(seed=8, batch_seconds=0.3, batch_token_limit=limit)) as sim:
        done = corral(
            "run", str(source), "--schema", PERSON, *target(sim, "openai"), "-o", str(out),
            "--batch", "--poll-every", "0.05", *(["--batch-token-limit", str(limit)] if told else []),
        )  # fmt: skip
        views = sim.batches
    assert done.returncode == 0, done.stderr
    assert [row["error"] for row in check_every_item_once(out)] == [None] * N
    refused = [view for view in views if view.phase == "failed"]
    assert len(refused) == (0 if told else 1)
    assert len(views) - len(refused) >= 3, "in waves: each under the limit"
    if not told:
        assert f"enqueued-token limit ({limit:,} tokens) is reached" in done.stderr
    summary = done.stderr.strip().splitlines()[-1]
    assert f"{N:,} answers from batches" in summary and "failed" not in summary, summary


def test_submit_then_collect_in_a_new_process_finishes_the_job(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    config = SimConfig(seed=5, invalid_rate=0.05, batch_seconds=0.5)
    with SimulatorThread(config) as sim:
        submitted = corral(
            "batch", "submit", str(source), "--schema", PERSON, *target(sim, "openai"), "-o", str(out)
        )
        assert submitted.returncode == 0, submitted.stderr
        assert "corral batch collect" in submitted.stderr
        assert records(out) == [], "nothing is answered yet: the output holds no item"
        assert store_rows(tmp_path, "SELECT COUNT(*), SUM(open) FROM batches") == [(1, 1)]

        status = corral("batch", "status", "-o", str(out))
        assert status.returncode == 0, status.stderr
        assert "batch_" in status.stdout and f"{N:,} requests" in status.stdout

        # A new process, with nothing but the output's name: it waits, re-asks, and writes the output.
        collected = subprocess.run(
            [*CORRAL_PROCESS, "batch", "collect", "-o", str(out), "--poll-every", "0.05"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        lines = sim.stats.by_status
    assert collected.returncode in (0, 1), collected.stderr  # 1: an item invalid after every re-ask
    rows = check_every_item_once(out)
    assert sum(row["error"] is None for row in rows) >= N - 3
    assert sum(lines.values()) == 0
    runs = store_rows(tmp_path, "SELECT status FROM runs ORDER BY id")
    assert [status for (status,) in runs] == ["submitted", "completed"]


def submit_and_lose_the_create_answer(
    corral: Corral, sim: SimulatorThread, source: Path, out: Path, tmp_path: Path
) -> None:
    """An Anthropic batch submitted, and the store as a process leaves it that died after sending the
    create, before its answer came: the batch recorded, its provider id unknown."""
    submitted = corral("batch", "submit", str(source), "--schema", PERSON, *target(sim, "anthropic"),
                       "-o", str(out))  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    with sqlite3.connect(tmp_path / "store" / "corral.db") as db:
        db.execute("UPDATE batches SET remote_id = NULL, status = 'submitting'")


def test_a_lost_anthropic_create_is_found_again_by_its_time_and_size(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(seed=6, batch_seconds=0.3)) as sim:
        submit_and_lose_the_create_answer(corral, sim, source, out, tmp_path)
        collected = corral("batch", "collect", "-o", str(out), "--poll-every", "0.05")
        created = sim.stats.batches
    assert collected.returncode == 0, collected.stderr
    assert "submitted by an interrupted run" in collected.stderr
    assert created == 1, "found, not sent again: nothing paid twice"
    assert [row["error"] for row in check_every_item_once(out)] == [None] * N


def test_a_lost_anthropic_create_that_cannot_be_told_apart_is_said_before_anything_is_paid_twice(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(seed=7, batch_seconds=0.3)) as sim:
        submit_and_lose_the_create_answer(corral, sim, source, out, tmp_path)
        # Someone else's batch of the same size (another store), made at the same time: which is ours?
        twin = corral("batch", "submit", str(source), "--schema", PERSON, *target(sim, "anthropic"),
                      "-o", str(tmp_path / "twin.jsonl"), "--store", str(tmp_path / "other"))  # fmt: skip
        assert twin.returncode == 0, twin.stderr
        waited = corral("batch", "collect", "-o", str(out), "--poll-every", "0.05", "--lost-batches", "wait")
        assert sim.stats.batches == 2, "nothing was sent again"
        resubmitted = corral("batch", "collect", "-o", str(out), "--poll-every", "0.05")
        created = sim.stats.batches
    assert waited.returncode != 0
    assert "may have been created" in waited.stderr and "Nothing was resubmitted" in waited.stderr
    assert resubmitted.returncode == 0, resubmitted.stderr
    assert "may be paid twice" in resubmitted.stderr
    assert created == 3
    assert [row["error"] for row in check_every_item_once(out)] == [None] * N


@pytest.mark.slow
def test_a_run_killed_while_waiting_is_finished_by_collect(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(seed=2, batch_seconds=3.0)) as sim:
        argv = [sys.executable, "-m", "corral.cli", "run", str(source), "--schema", PERSON,
                *target(sim, "openai"), "-o", str(out), "--batch", "--poll-every", "0.05"]  # fmt: skip
        process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
        while time.monotonic() < deadline and not store_rows_safe(tmp_path, "SELECT remote_id FROM batches"):
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        collected = corral("batch", "collect", "-o", str(out), "--poll-every", "0.05")
    assert collected.returncode == 0, collected.stderr
    assert [row["output"] for row in records(out)] == [expected(n) for n in range(1, N + 1)]
    # The kill did not make anybody pay twice: one batch, every line in it once.
    assert store_rows(tmp_path, "SELECT COUNT(*), SUM(requests) FROM batches") == [(1, N)]


def store_rows_safe(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        return [row for row in store_rows(tmp_path, sql) if row[0]]
    except sqlite3.Error:
        return []  # not created yet


def test_batch_answers_are_priced_at_half_the_online_rate(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(seed=1, batch_seconds=0.2)) as sim:
        done = corral(
            "run", str(source), "--schema", PERSON, *target(sim, "anthropic"), "-o", str(out),
            "--batch", "--poll-every", "0.05",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = records(out)
    price = PRICES["claude-haiku-4-5"]
    online = sum(
        (row["usage"]["prompt_tokens"] * price.input + row["usage"]["completion_tokens"] * price.output) / 1e6
        for row in rows
    )
    ((spent,),) = store_rows(tmp_path, "SELECT SUM(cost) FROM runs")
    assert online > 0
    assert spent == pytest.approx(online / 2, rel=1e-6)


def test_reask_online_sends_only_the_re_asks_online(corral: Corral, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(seed=4, invalid_rate=0.1, batch_seconds=0.2)) as sim:
        done = corral(
            "run", str(source), "--schema", PERSON, *target(sim, "openai"), "-o", str(out),
            "--batch", "--poll-every", "0.05", "--reask-online",
        )  # fmt: skip
        online = list(sim.log)
    assert done.returncode in (0, 1), done.stderr
    rows = check_every_item_once(out)
    assert sum(row["error"] is None for row in rows) >= N - 3
    batches = store_rows(tmp_path, "SELECT requests FROM batches")
    assert batches == [(N,)], "one batch; the re-asks went online"
    assert 0 < len(online) < N / 4
    assert all(entry.status == 200 for entry in online)


def test_batch_mode_refuses_what_it_cannot_do(corral: Corral, source: Path, tmp_path: Path) -> None:
    refused = corral("run", str(source), "--schema", PERSON, "--model", "ollama/llama3.2", "--batch", "-o",
                     str(tmp_path / "o.jsonl"))  # fmt: skip
    assert refused.returncode == 2
    assert "no provider batch API" in refused.stderr
    no_output = corral("run", str(source), "--schema", PERSON, "--model", "openai/gpt-4o-mini", "--batch")
    assert no_output.returncode == 2
    assert "-o FILE" in no_output.stderr
    nothing = corral("batch", "collect", "-o", str(tmp_path / "never.jsonl"))
    assert nothing.returncode == 2
    assert "submit one first" in nothing.stderr or "no run store" in nothing.stderr


def test_retry_errors_resubmits_only_the_failed_items_once(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(seed=8, server_error_rate=0.1, batch_seconds=0.2)) as sim:
        argv = ["run", str(source), "--schema", PERSON, *target(sim, "openai"), "-o", str(out),
                "--batch", "--poll-every", "0.05", "--batch-retries", "0"]  # fmt: skip
        first = corral(*argv)
        failed = {row["id"] for row in records(out) if row["error"] is not None}
        assert first.returncode == 1, first.stderr
        assert 20 < len(failed) < 100, "about a tenth of the lines failed and were not resubmitted"
        assert all(row["error"]["kind"] == "server_error" for row in records(out) if row["error"])

        again = corral(*argv, "--retry-errors")
    assert again.returncode in (0, 1), again.stderr
    rows = check_every_item_once(out)
    still = {row["id"] for row in rows if row["error"] is not None}
    assert len(still) < len(failed) / 3, "most failed items succeed when asked again"
    assert still <= failed, "items that were fine stay fine"
    batches = store_rows(tmp_path, "SELECT requests FROM batches ORDER BY id")
    assert batches[0] == (N,)
    assert sum(count for (count,) in batches[1:]) == len(failed), "only the failed items went again"


def test_a_base_urls_password_never_reaches_the_store_and_collect_asks_for_it_again(
    corral: Corral, tmp_path: Path
) -> None:
    # Issue 15, L12: job_args kept --base-url as given, user:password@ included, for collect to reuse.
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:20]) + "\n")
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(seed=9, batch_seconds=0.2)) as sim:
        secret_url = sim.url.replace("http://", "http://someone:hunter2-secret@")
        submitted = corral("batch", "submit", str(source), "--schema", PERSON, "--model", "sim-1",
                           "--base-url", secret_url, "-o", str(out))  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        ((kept,),) = store_rows(tmp_path, "SELECT args FROM job_args")
        assert json.loads(kept)["extract"]["base_url"] == sim.url
        for path in (tmp_path / "store").iterdir():  # the database and any journal beside it
            assert b"hunter2" not in path.read_bytes(), path

        # A new process has nothing to take them from: it says so, and sends nothing.
        for command in ("status", "collect", "cancel"):
            bare = corral("batch", command, "-o", str(out))
            assert bare.returncode == 2, bare.stderr
            assert "--base-url" in bare.stderr and "hunter2" not in bare.stderr
        elsewhere = corral("batch", "collect", "-o", str(out), "--base-url", "http://u:p@127.0.0.1:9/v1")
        assert elsewhere.returncode == 2 and "not the job's base URL" in elsewhere.stderr
        assert "hunter2" not in elsewhere.stderr

        collected = corral("batch", "collect", "-o", str(out), "--base-url", secret_url,
                           "--poll-every", "0.05")  # fmt: skip
        created = sim.stats.batches
    assert collected.returncode == 0, collected.stderr
    assert [row["output"] for row in records(out)] == [expected(n) for n in range(1, 21)]
    assert created == 1, "the same batch, collected: nothing submitted twice"
    for path in (tmp_path / "store").iterdir():
        assert b"hunter2" not in path.read_bytes(), path


class SmallBatches(OpenAIBatchAPI):
    """The OpenAI batch API with a provider that takes at most 120 lines per batch."""

    @property
    def limits(self) -> BatchLimits:
        return BatchLimits(120, 200 * 1024 * 1024, one_model=True)


async def test_a_job_is_split_by_the_providers_limits_and_finishes_through_the_library(
    tmp_path: Path,
) -> None:
    """The pieces the CLI uses, from Python: a BatchBackend under an Extractor, driven by BatchJob."""
    async with Simulator(SimConfig(seed=3, invalid_rate=0.05, batch_seconds=0.1)) as sim:
        online = OpenAIBackend(base_url=sim.url, model="sim-1", profile=COMPATIBLE_PROFILE)
        backend = BatchBackend(online, SmallBatches(online))
        async with contextlib.aclosing(backend):
            with RunStore.open(tmp_path / "store") as store:
                async with Extractor[Any](PERSON, backend=backend, cache=ResponseCache(store)) as extractor:
                    job = store.open_job("out", {"model": "sim-1"})
                    backend.attach(store, job)
                    out = tmp_path / "out.jsonl"
                    stats = RunStats()

                    async def replay() -> int:
                        items = (Item(str(n + 1), text) for n, text in enumerate(TEXTS))
                        with open_sink(str(out), "jsonl", extractor.spec) as sink:
                            result = await run_job(extractor, items, sink, stats, store=store, job=job)
                        return result.counts.deferred

                    driver = BatchJob(backend, price=None, stats=stats, poll=Poll(0.02))
                    assert await driver.run(replay, wait=True) == "completed"
                sizes = [batch.requests for batch in store.batches.of_job(job.id)]
    assert sizes[:5] == [120, 120, 120, 120, 20], "500 first requests in batches of at most 120"
    assert all(size <= 120 for size in sizes)
    rows = check_every_item_once(out)
    assert sum(row["error"] is None for row in rows) >= N - 3


@pytest.mark.slow
def test_ctrl_c_while_waiting_leaves_the_batches_running_and_says_how_to_go_on(
    corral: Corral, source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(seed=6, batch_seconds=3.0)) as sim:
        argv = [sys.executable, "-m", "corral.cli", "run", str(source), "--schema", PERSON,
                *target(sim, "openai"), "-o", str(out), "--batch", "--poll-every", "0.05"]  # fmt: skip
        process = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
        while time.monotonic() < deadline and not store_rows_safe(tmp_path, "SELECT remote_id FROM batches"):
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert "corral batch collect -o" in stderr
        assert [status for (status,) in store_rows(tmp_path, "SELECT status FROM runs")] == ["interrupted"]
        assert [phase for (phase,) in store_rows(tmp_path, "SELECT open FROM batches")] == [1]
        collected = corral("batch", "collect", "-o", str(out), "--poll-every", "0.05")
    assert collected.returncode == 0, collected.stderr
    assert [row["output"] for row in records(out)] == [expected(n) for n in range(1, N + 1)]
