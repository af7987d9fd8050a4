"""Documents end to end: ``corral run DIR`` against the simulator, the real store.

The promises checked here: every exact value's span slices back to the value; values the model made
up are flagged; a chunk that fails is retried and, if it never succeeds, makes its document an error
naming it (never a silent gap), and ``--retry-errors`` asks that chunk alone; ``kill -9`` in the middle
of a long document resumes without asking finished chunks again; a text too long with chunking off is
an error naming its size and the limit; a long text in a JSONL file is chunked like a document.
"""

from __future__ import annotations

import collections
import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from corral.sim import ScriptCall, SimConfig, SimReply, SimulatorThread
from tests._support import CORRAL_PROCESS, ROOT
from tests._support.cli import Corral
from tests._support.pdf import make_pdf

FIRST = ["Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas"]
LAST = ["Moreau", "Rossi", "Novak", "Ivanov", "Schmidt", "Haddad", "Berg", "Lund", "Costa", "Weber"]
FILLER = (
    "The archive keeps the town's letters in boxes by year. The weather was mild that spring, and "
    "the council met twice a week to talk about the new bridge over the river."
)
SCHEMA = """
from pydantic import BaseModel


class Person(BaseModel):
    name: str
    age: int | None = None


class People(BaseModel):
    people: list[Person]
"""


def names(count: int) -> list[str]:
    return [f"{FIRST[n % 10]} {LAST[(n // 10) % 10]}" for n in range(count)]


def long_text(count: int) -> str:
    """``count`` people, one paragraph each, with filler between them."""
    return "\n\n".join(
        f"My name is {name} and I am {20 + n % 50} years old. {FILLER}" for n, name in enumerate(names(count))
    )


@pytest.fixture
def schema(tmp_path: Path) -> str:
    path = tmp_path / "people.py"
    path.write_text(SCHEMA)
    return f"{path}:People"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "long.md").write_text(long_text(40))
    (docs / "sub" / "short.txt").write_text("My name is John Smith and I am 41 years old.")
    return docs


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def value_at(output: Any, path: str) -> Any:
    node = output
    for part in path.replace("]", "").replace("[", ".").split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def run(folder: Path, schema: str, url: str, out: Path, *options: str) -> list[str]:
    return ["run", str(folder), "--schema", schema, "--base-url", url, "--model", "sim-1", "-o", str(out),
            "--chunk-tokens", "300", *options]  # fmt: skip


def test_a_folder_is_one_record_per_document_every_exact_span_slicing_back_to_its_value(
    corral: Corral, folder: Path, schema: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=2, seed=1)) as sim:
        ran = corral(*run(folder, schema, sim.url, out))
    assert ran.returncode == 0, ran.stderr
    records = {record["id"]: record for record in rows(out)}
    assert list(records) == ["long.md", "sub/short.txt"]  # ids: paths relative to the folder, in order
    long = records["long.md"]
    assert long["chunks"] > 3 and long["error"] is None
    assert [person["name"] for person in long["output"]["people"]] == names(40)  # every one, once
    text = (folder / "long.md").read_text()
    assert len(long["grounding"]) == 40
    for path, span in long["grounding"].items():
        assert span is not None and span["how"] == "exact", path
        assert text[span["start"] : span["end"]] == value_at(long["output"], path)
    short = records["sub/short.txt"]
    assert short["chunks"] == 1 and short["output"] == {"people": [{"name": "John Smith", "age": 41}]}
    assert "2 documents" in ran.stderr


def test_values_the_model_made_up_are_flagged_and_the_rest_grounded(
    corral: Corral, folder: Path, schema: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=2, seed=5, hallucinate=0.3, misplace=0.3)) as sim:
        ran = corral(*run(folder, schema, sim.url, out))
    assert ran.returncode == 0, ran.stderr
    long = next(record for record in rows(out) if record["id"] == "long.md")
    text = (folder / "long.md").read_text()
    folded = " ".join(text.casefold().split())
    hows: collections.Counter[str] = collections.Counter()
    for path, span in long["grounding"].items():
        value = value_at(long["output"], path)
        if span is None:  # flagged: found nowhere, not even folded
            assert " ".join(value.casefold().split()) not in folded, value
            hows["none"] += 1
        else:
            hows[span["how"]] += 1
            if span["how"] == "exact":
                assert text[span["start"] : span["end"]] == value
            else:  # a miscopied value is pointed at what the text says
                assert text[span["start"] : span["end"]] != value
    assert hows["none"] > 0 and hows["exact"] > 0 and hows["normalised"] + hows["fuzzy"] > 0, hows
    assert "values not found in their text" in ran.stderr


def test_ungrounded_values_can_be_dropped(corral: Corral, folder: Path, schema: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=2, seed=5, hallucinate=0.3)) as sim:
        ran = corral(*run(folder, schema, sim.url, out, "--ungrounded", "drop"))
    assert ran.returncode == 0, ran.stderr
    long = next(record for record in rows(out) if record["id"] == "long.md")
    kept = [person["name"] for person in long["output"]["people"]]
    assert kept and set(kept) < set(names(40))  # the made-up ones went, the real ones stayed
    assert all(span is not None for span in long["grounding"].values())


def test_ungrounded_values_can_be_reasked(corral: Corral, folder: Path, schema: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    reasked: list[str] = []

    def watch(call: ScriptCall) -> None:
        if "is not in the text" in json.dumps(call.body):
            reasked.append(call.user_text)

    with SimulatorThread(SimConfig(latency_ms=2, seed=5, hallucinate=0.3), script=watch) as sim:
        ran = corral(*run(folder, schema, sim.url, out, "--ungrounded", "reask", "--max-retries", "1"))
    assert ran.returncode == 0, ran.stderr
    assert reasked, "an answer with a made-up value is asked again, naming it"
    long = next(record for record in rows(out) if record["id"] == "long.md")
    assert long["attempts"] > long["chunks"]


def test_a_chunk_that_never_succeeds_makes_its_document_an_error_and_retry_errors_asks_it_alone(
    corral: Corral, folder: Path, schema: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    doomed = "My name is Greta Rossi"  # in one chunk of long.md only
    tries = 0

    def fail(call: ScriptCall) -> SimReply | None:
        nonlocal tries
        if doomed in call.user_text:
            tries += 1
            return SimReply(status=500)
        return None

    with SimulatorThread(SimConfig(latency_ms=1, seed=1), script=fail) as sim:
        ran = corral(*run(folder, schema, sim.url, out, "--retries", "2"))
    assert ran.returncode == 1
    assert tries == 3  # retried, then given up
    records = {record["id"]: record for record in rows(out)}
    assert records["sub/short.txt"]["error"] is None  # the other document is written
    error = records["long.md"]["error"]
    assert records["long.md"]["output"] is None and error["kind"] == "chunks"
    assert "of " in error["message"] and "server_error" in error["message"], error
    chunks = records["long.md"]["chunks"]

    asked: list[str] = []
    with SimulatorThread(
        SimConfig(latency_ms=1, seed=1), script=lambda call: asked.append(call.user_text)
    ) as healthy:
        again = corral(*run(folder, schema, healthy.url, out, "--retry-errors"))
    assert again.returncode == 0, again.stderr
    assert len(asked) == 1 and doomed in asked[0]  # the failed chunk alone; the others are in the store
    fixed = next(record for record in rows(out) if record["id"] == "long.md")
    assert fixed["error"] is None and fixed["chunks"] == chunks
    assert [person["name"] for person in fixed["output"]["people"]] == names(40)


def test_a_killed_run_resumes_a_long_document_without_asking_finished_chunks_again(
    corral: Corral, schema: str, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "book.md").write_text(long_text(400))
    out = tmp_path / "out.jsonl"
    store = tmp_path / "store.db"
    config = SimConfig(latency_ms=30, latency_dist="lognormal", latency_sigma=0.5, seed=3)
    with SimulatorThread(config) as sim:
        args = [*run(docs, schema, sim.url, out, "--concurrency", "4", "--store", str(store))]
        process = subprocess.Popen(
            [*CORRAL_PROCESS, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
        while time.monotonic() < deadline and _chunks_stored(store) < 20:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        finished = _chunk_texts(store)
        before = collections.Counter(entry.text for entry in sim.log)
        resumed = corral(*args)
        asked = collections.Counter(entry.text for entry in sim.log)

    assert resumed.returncode == 0, resumed.stderr
    (book,) = rows(out)
    assert book["error"] is None and book["chunks"] > len(finished) >= 20
    assert [person["name"] for person in book["output"]["people"]] == list(dict.fromkeys(names(400)))
    for text in finished:  # committed before the kill: never asked again
        assert asked[text] == 1
    assert sum(asked.values()) - sum(before.values()) <= book["chunks"] - len(finished)


def _chunks_stored(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store) as db:
            return int(db.execute("SELECT count(*) FROM items WHERE status = 'ok'").fetchone()[0])
    except sqlite3.Error:
        return 0


def _chunk_texts(store: Path) -> set[str]:
    with sqlite3.connect(store) as db:
        records = [json.loads(row[0]) for row in db.execute("SELECT record FROM items WHERE status = 'ok'")]
    return {record["input"][:200] for record in records}  # as the simulator's log keeps them


def test_a_text_too_long_with_chunking_off_is_an_error_naming_its_size_and_the_limit(
    corral: Corral, schema: str, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    lines = [
        {"id": "short", "text": "My name is Ann Lee and I am 30 years old."},
        {"id": "long", "text": long_text(60)},
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    # The server reports its window (vLLM's max_model_len), and corral counts before it sends.
    with SimulatorThread(SimConfig(latency_ms=1, context_window=2048)) as sim:
        ran = corral(*run(source, schema, sim.url, out, "--no-chunking"))
        sent = [entry.text for entry in sim.log]
    assert ran.returncode == 1
    short, long = rows(out)
    assert short["error"] is None and short["grounding"]["people[0].name"]["how"] == "exact"
    assert long["error"]["kind"] == "too_long"
    message = long["error"]["message"]
    assert "2,048-token context window" in message and "tokens of prompt" in message, message
    assert sent == [lines[0]["text"]]  # never sent, never cut


def test_a_long_text_in_a_jsonl_file_is_chunked_like_a_document(
    corral: Corral, schema: str, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    lines = [
        {"id": "a", "text": "My name is Ann Lee and I am 30 years old."},
        {"id": "b", "text": long_text(30)},
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=1, context_window=2048)) as sim:
        ran = corral(*run(source, schema, sim.url, out))
    assert ran.returncode == 0, ran.stderr
    short, long = rows(out)
    assert short["input"] == lines[0]["text"] and "chunks" not in short  # the usual record, grounded
    assert long["chunks"] > 1 and "input" not in long
    assert [person["name"] for person in long["output"]["people"]] == names(30)


@pytest.mark.local_model
def test_the_embedded_model_gets_chunks_that_fit_its_n_ctx_and_refuses_a_whole_text_that_does_not(
    corral: Corral, schema: str, tmp_path: Path
) -> None:
    pytest.importorskip("llama_cpp")
    docs = tmp_path / "docs"
    docs.mkdir()
    paragraphs = [
        f"My name is {name} and I am {30 + n} years old. {FILLER * 20}" for n, name in enumerate(names(4))
    ]
    (docs / "notes.md").write_text("\n\n".join(paragraphs))  # about 3,000 tokens: over n_ctx 2048
    out = tmp_path / "out.jsonl"
    whole = corral(
        "run", str(docs), "--schema", schema, "-o", str(out), "--no-chunking", "--max-retries", "0"
    )
    (record,) = rows(out)
    assert whole.returncode == 1 and record["error"]["kind"] == "too_long", record  # counted, never cut
    assert "n_ctx is 2048" in record["error"]["message"]

    options = ["--fresh", "--max-retries", "1", "--max-tokens", "256"]
    chunked = corral("run", str(docs), "--schema", schema, "-o", str(out), *options)
    (record,) = rows(out)
    assert record["chunks"] > 1
    # The 270M model may fail a chunk's JSON now and then; what it must never meet is a prompt too long.
    assert "too_long" not in json.dumps(record), record
    assert chunked.returncode in (0, 1)
    if record["error"] is None:
        text = (docs / "notes.md").read_text()
        for path, span in record["grounding"].items():
            if span is not None and span["how"] == "exact":
                assert text[span["start"] : span["end"]] == value_at(record["output"], path)


def test_a_pdf_value_is_put_on_its_page(corral: Corral, schema: str, tmp_path: Path) -> None:
    pytest.importorskip("pypdf")
    docs = tmp_path / "docs"
    docs.mkdir()
    pages = [[f"My name is {name} and I am {30 + n} years old.", "The archive keeps letters."] for n, name in
             enumerate(names(3))]  # fmt: skip
    (docs / "staff.pdf").write_bytes(make_pdf(pages))
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=1)) as sim:
        ran = corral(*run(docs, schema, sim.url, out))
    assert ran.returncode == 0, ran.stderr
    (record,) = rows(out)
    assert [person["name"] for person in record["output"]["people"]] == names(3)
    assert [record["grounding"][f"people[{n}].name"]["page"] for n in range(3)] == [1, 2, 3]


def test_passes_read_every_chunk_again_and_merge_by_the_key_fields(
    corral: Corral, folder: Path, schema: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    asked: list[str] = []
    with SimulatorThread(
        SimConfig(latency_ms=1), script=lambda call: asked.append(json.dumps(call.body))
    ) as sim:
        ran = corral(*run(folder, schema, sim.url, out, "--passes", "2", "--merge-key", "people=name"))
    assert ran.returncode == 0, ran.stderr
    long = next(record for record in rows(out) if record["id"] == "long.md")
    assert len(asked) == 2 * (long["chunks"] + 1)  # every chunk of both documents, twice
    assert sum("This is reading 2 of this text" in body for body in asked) == long["chunks"] + 1
    assert [person["name"] for person in long["output"]["people"]] == names(40)  # each once
    assert long["conflicts"] == []


def test_a_bad_merge_key_is_refused_before_anything_is_sent(
    corral: Corral, folder: Path, schema: str, tmp_path: Path
) -> None:
    ran = corral(
        *run(folder, schema, "http://127.0.0.1:9/v1", tmp_path / "out.jsonl", "--merge-key", "people")
    )
    assert ran.returncode == 2 and "--merge-key 'people': write it LIST=FIELD" in ran.stderr


def test_no_ground_writes_no_grounding(corral: Corral, folder: Path, schema: str, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=1)) as sim:
        ran = corral(*run(folder, schema, sim.url, out, "--no-ground"))
    assert ran.returncode == 0, ran.stderr
    assert all("grounding" not in record for record in rows(out))
    assert all(record["chunks"] >= 1 for record in rows(out))


def test_a_rerun_cuts_where_the_first_run_did_and_asks_nothing(
    corral: Corral, schema: str, tmp_path: Path
) -> None:
    # The engine learns tokens per character from each answer's usage; chunks are cut by a measure
    # that does not learn, so a document read late in one run and early in the next is cut the same.
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(long_text(60))
    (docs / "b.md").write_text(long_text(60))
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=1)) as sim:
        first = corral(*run(docs, schema, sim.url, out, "--concurrency", "1"))
        asked = len(sim.log)
        again = corral(*run(docs, schema, sim.url, out, "--concurrency", "16", "--no-cache"))
        assert len(sim.log) == asked  # every chunk of the second run was in the store
    assert first.returncode == 0 and again.returncode == 0, again.stderr


def test_a_window_that_leaves_no_room_for_text_is_refused_before_the_output_is_touched(
    corral: Corral, folder: Path, schema: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    with SimulatorThread(SimConfig(latency_ms=1)) as sim:
        assert corral(*run(folder, schema, sim.url, out)).returncode == 0
        before = out.read_bytes()
        ran = corral(*run(folder, schema, sim.url, out, "--context-window", "1300", "--max-tokens", "1024"))
    assert ran.returncode == 2
    assert "context window of 1,300 tokens leaves" in ran.stderr and "lower --max-tokens" in ran.stderr
    assert out.read_bytes() == before


def test_a_documents_values_carry_the_confidence_their_chunks_gave_them(
    corral: Corral, folder: Path, schema: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    config = SimConfig(latency_ms=1, seed=3, field_errors={"age": 0.3})
    with SimulatorThread(config) as sim:
        ran = corral(*run(folder, schema, sim.url, out, "--mode", "json_schema", "--confidence", "logprobs"))
    assert ran.returncode == 0, ran.stderr
    long = next(record for record in rows(out) if record["id"] == "long.md")
    confidence = long["confidence"]
    assert set(confidence) == {f"people[{n}].{field}" for n in range(40) for field in ("name", "age")}
    assert all(entry["method"] == "logprobs" and 0 < entry["value"] <= 1 for entry in confidence.values())
    truth = {name: 20 + n % 50 for n, name in enumerate(names(40))}
    people = long["output"]["people"]
    wrong = [
        confidence[f"people[{n}].age"]["value"] for n, p in enumerate(people) if p["age"] != truth[p["name"]]
    ]
    right = [
        confidence[f"people[{n}].age"]["value"] for n, p in enumerate(people) if p["age"] == truth[p["name"]]
    ]
    assert wrong and right and sum(wrong) / len(wrong) < sum(right) / len(right)
