"""The job layer: ``open_job(JobSpec) → Job`` is the one place a durable job is assembled, and a job
opened from Python is the very job ``corral run`` runs (same store, same name, same output)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import orjson
import pytest

from corral.documents import run_documents
from corral.errors import ConfigError, OutputError, StoreError
from corral.jobs import BatchOptions, DocumentOptions, ExtractOptions, JobSpec, open_job
from corral.sim import SimConfig, SimulatorThread
from corral.types import Item
from tests._support import EXAMPLES, PERSON, ROOT, run_command
from tests._support.sinks import ListSink

TEXTS = [f"My name is Person{n} and I am {20 + n} years old" for n in range(12)]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    return path


def spec_for(source: Path, out: Path, url: str, **changes: object) -> JobSpec:
    extract = ExtractOptions(model="sim-1", base_url=url, concurrency=4)
    return JobSpec(
        schema=str(EXAMPLES / "person.py") + ":Person", input=str(source), output=str(out), extract=extract
    ).replace(**changes)


async def test_a_job_opened_in_python_is_the_job_corral_run_finishes(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=1, seed=2)) as sim:
        async with open_job(spec_for(source, out, sim.url)) as job:
            result = await run_documents(job)  # what corral run runs: long texts chunked, all grounded
            # $CORRAL_STORE names the store (the tests' own), so the output's full path names the job.
            assert job.key == str(out.resolve())
        assert result.status == "completed"
        written = out.read_bytes()
        assert [json.loads(line)["output"]["age"] for line in written.splitlines()] == [
            20 + n for n in range(12)
        ]
        asked = len(sim.log)
        # The command line finds the same job in the same store: every item is answered from it.
        command = run_command(source, sim.url, "--concurrency", "4", "-o", str(out))
        done = await asyncio.to_thread(
            subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        assert len(sim.log) == asked
        assert out.read_bytes() == written


async def test_a_job_runs_given_items_into_a_given_sink(tmp_path: Path) -> None:
    sink = ListSink()
    with SimulatorThread(SimConfig(latency_ms=1, seed=2)) as sim:
        spec = spec_for(Path("unused"), tmp_path / "unused.jsonl", sim.url, input=None, output=None)
        job = await open_job(spec, key="from-python")
        try:
            items = [Item(id=f"t{n}", text=text) for n, text in enumerate(TEXTS[:3])]
            result = await job.run(items, sink)
        finally:
            await job.aclose()
    assert result.status == "completed"
    assert [record["id"] for record in sink.records] == ["t0", "t1", "t2"]
    assert job.key == "from-python"


async def test_a_second_opening_of_a_running_job_is_refused_and_the_first_goes_on(
    source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=1, seed=2)) as sim:
        spec = spec_for(source, out, sim.url)
        async with open_job(spec) as first:
            with pytest.raises(StoreError, match="another"):
                await open_job(spec)
            assert (await first.run()).status == "completed"
        # Closed: the job may be opened again (in this process too).
        async with open_job(spec) as again:
            assert again.handle is not None
            assert again.handle.finished_before == len(TEXTS)


async def test_what_cannot_be_is_refused_before_anything_is_opened(source: Path, tmp_path: Path) -> None:
    batch = BatchOptions()
    with pytest.raises(ConfigError, match="not stdin"):
        await open_job(spec_for(source, tmp_path / "o.jsonl", "http://127.0.0.1:9", input="-", batch=batch))
    with pytest.raises(ConfigError, match="-o FILE"):
        await open_job(spec_for(source, tmp_path / "o.jsonl", "http://127.0.0.1:9", output=None, batch=batch))
    # The output is its input: refused before a store exists.
    with pytest.raises(OutputError, match="input"):
        await open_job(spec_for(source, source, "http://127.0.0.1:9"))
    assert not (tmp_path / "store").exists()


def test_a_kept_spec_is_by_field_name_with_paths_absolute_and_no_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    spec = JobSpec(
        schema=PERSON,
        input="in.jsonl",
        output="out.jsonl",
        extract=ExtractOptions(model="gpt-4o-mini", base_url="https://user:secret@example.test/v1", rpm=60),
        store="kept/elsewhere.db",
        fresh=True,
        retry_errors=True,
        batch=BatchOptions(retries=3, token_limit=90_000),
        documents=DocumentOptions(
            chunk_tokens=800, passes=2, ungrounded="drop", keys=(("people", ("name", "dob")),)
        ),
    )
    kept = spec.to_json()
    assert b"secret" not in kept
    assert orjson.loads(kept)["version"] == 2
    again, credentials = JobSpec.from_json(kept)
    assert credentials
    assert again.extract.base_url == "https://example.test/v1"
    assert again.extract.rpm == 60
    assert again.batch == BatchOptions(retries=3, token_limit=90_000)
    assert again.documents == spec.documents  # a collect chunks, merges and grounds as the submit did
    assert again.input == str(ROOT / "in.jsonl")
    assert again.schema == str(ROOT / "examples" / "person.py") + ":Person"
    # How that invocation ran is not part of the job: a later collect is an invocation of its own.
    assert (again.store, again.fresh, again.retry_errors) == (None, False, False)


def test_a_job_kept_by_corral_0_1_reads_as_the_same_spec() -> None:
    old = {
        "input": "/data/in.jsonl",
        "schema": "/data/person.py:Person",
        "many": False,
        "model": "openai/gpt-4o-mini",
        "base_url": None,
        "api_key_env": "KEY",
        "allow_plain_http": False,
        "prompt": None,
        "mode": "json_schema",
        "strategy": "as_completed",
        "concurrency": 8,
        "order": "input",
        "max_retries": 2,
        "max_tokens": 512,
        "timeout": 60.0,
        "rpm": None,
        "tpm": 1000.0,
        "retries": 6,
        "no_adaptive": True,
        "text_field": "body",
        "id_field": "id",
        "format": None,
        "output": "/data/out.csv",
        "output_format": None,
        "no_cache": True,
        "max_cost": 2.5,
        "prices": None,
        "batch_retries": 1,
        "reask_online": True,
        "batch_token_limit": None,
        "csv_formulas": True,
    }
    spec, credentials = JobSpec.from_json(orjson.dumps(old))
    assert not credentials
    assert spec.extract == ExtractOptions(
        model="openai/gpt-4o-mini",
        api_key_env="KEY",
        mode="json_schema",
        concurrency=8,
        max_tokens=512,
        timeout=60.0,
        tpm=1000.0,
        adaptive=False,
    )
    assert (spec.input, spec.output, spec.text_field, spec.cache, spec.max_cost, spec.csv_formulas) == (
        "/data/in.jsonl",
        "/data/out.csv",
        "body",
        False,
        2.5,
        True,
    )
    assert spec.batch == BatchOptions(retries=1, reask_online=True)


def test_a_spec_from_a_newer_corral_is_refused_with_the_fix() -> None:
    with pytest.raises(StoreError, match="upgrade corral"):
        JobSpec.from_json(orjson.dumps({"version": 99, "schema": "s.json", "extract": {}}))


def test_a_kept_spec_keeps_its_template_and_kept_fields_and_an_older_one_has_none() -> None:
    spec = JobSpec(schema=PERSON, input="in.parquet", template="{title}\n\n{body}", keep=("doi", "year"))
    again, _ = JobSpec.from_json(spec.to_json())
    assert (again.template, again.keep) == ("{title}\n\n{body}", ("doi", "year"))
    older = orjson.loads(spec.to_json())
    del older["template"], older["keep"]
    again, _ = JobSpec.from_json(orjson.dumps(older))
    assert (again.template, again.keep) == (None, ())


def test_a_spec_refuses_a_bad_template_or_a_kept_record_key() -> None:
    with pytest.raises(ConfigError, match="only substitute fields"):
        JobSpec(schema=PERSON, template="{title!r}")
    with pytest.raises(ConfigError, match="--keep 'usage'"):
        JobSpec(schema=PERSON, keep=("doi", "usage"))
