"""``corral run`` over Parquet and Arrow inputs, with ``--template`` and ``--keep``, end to end against
the simulator: the kept fields in every output format (and after a resume, and in a chunked text's
one record), a row a template cannot render its own error, what cannot be done refused up front."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.sim import SimConfig, SimulatorThread
from tests._support import PERSON
from tests._support.cli import Corral

pa: Any = pytest.importorskip("pyarrow")
pq: Any = pytest.importorskip("pyarrow.parquet")

PEOPLE = [
    {
        "doi": "10.1/a",
        "year": 2001,
        "first": "Ann",
        "age": "30",
        "text": "My name is Ann and I am 30 years old",
    },
    {
        "doi": "10.1/b",
        "year": 2002,
        "first": "Ben",
        "age": "31",
        "text": "My name is Ben and I am 31 years old",
    },
    {"doi": None, "year": None, "first": "Cy", "age": "32", "text": "My name is Cy and I am 32 years old"},
]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimConfig(latency_ms=2, seed=1)) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_api_keys(no_api_keys: None) -> None:
    """The commands see no provider's key this machine may have set."""


def run(source: Path, sim: SimulatorThread, *options: str) -> list[str]:
    return ["run", str(source), "--schema", PERSON, "--base-url", sim.url, "--model", "sim-1", *options]


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def parquet(tmp_path: Path) -> Path:
    path = tmp_path / "people.parquet"
    pq.write_table(pa.Table.from_pylist(PEOPLE), path)
    return path


def test_a_parquet_input_keeps_its_fields_after_the_id_in_jsonl(
    corral: Corral, sim: SimulatorThread, parquet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    ran = corral(*run(parquet, sim, "--keep", "doi", "year", "-o", str(out)))
    assert ran.returncode == 0, ran.stderr
    records = lines(out)
    assert [list(r)[:4] for r in records] == [["id", "doi", "year", "input"]] * 3
    assert [(r["id"], r["doi"], r["year"]) for r in records] == [
        ("1", "10.1/a", 2001),
        ("2", "10.1/b", 2002),
        ("3", None, None),  # a null is kept as null
    ]
    assert records[0]["output"] == {"name": "Ann", "age": 30}
    assert "3 items: 3 ok" in ran.stderr


def test_a_template_row_that_lacks_a_field_is_its_error_and_the_others_are_extracted(
    corral: Corral, sim: SimulatorThread, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    rows = [{"first": "Ann", "age": 30}, {"age": 31}, {"first": "Cy", "age": 32}]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    # The shell leaves \n as two characters: corral makes it a newline.
    ran = corral(
        *run(source, sim, "--template", "My name is {first}\\nand I am {age} years old", "-o", str(out))
    )
    assert ran.returncode == 1
    first, second, third = lines(out)
    assert first["input"] == "My name is Ann\nand I am 30 years old"
    assert first["output"] == {"name": "Ann", "age": 30}
    assert third["output"] == {"name": "Cy", "age": 32}
    assert second["error"] == {
        "kind": "input",
        "message": f"{source}:2: template field 'first' is missing (fields: age)",
    }
    assert "3 items: 2 ok" in ran.stderr


def test_a_template_over_parquet_columns(
    corral: Corral, sim: SimulatorThread, parquet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    ran = corral(
        *run(parquet, sim, "--template", "My name is {first} and I am {age} years old", "-o", str(out))
    )
    assert ran.returncode == 0, ran.stderr
    assert [r["output"] for r in lines(out)] == [
        {"name": "Ann", "age": 30},
        {"name": "Ben", "age": 31},
        {"name": "Cy", "age": 32},
    ]


def test_kept_fields_are_csv_columns_after_the_id(
    corral: Corral, sim: SimulatorThread, parquet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"
    args = run(parquet, sim, "--keep", "year", "--keep", "doi", "-o", str(out))
    ran = corral(*args)
    assert ran.returncode == 0, ran.stderr
    header, *rows = [line.split(",") for line in out.read_text().splitlines()]
    assert header[:4] == ["id", "year", "doi", "input"]
    assert [row[:3] for row in rows] == [["1", "2001", "10.1/a"], ["2", "2002", "10.1/b"], ["3", "", ""]]
    again = corral(*args)  # its own output, with the kept columns, is written over
    assert again.returncode == 0, again.stderr


def test_kept_fields_keep_the_inputs_arrow_types_in_parquet(
    corral: Corral, sim: SimulatorThread, parquet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.parquet"
    ran = corral(*run(parquet, sim, "--keep", "year", "doi", "-o", str(out)))
    assert ran.returncode == 0, ran.stderr
    table = pq.read_table(out)
    assert table.schema.names[:4] == ["id", "year", "doi", "input"]
    assert table.schema.field("year").type == pa.int64()  # stays int64
    assert table.column("year").to_pylist() == [2001, 2002, None]
    # From a JSONL input the kept columns are text.
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in PEOPLE))
    out_jsonl = tmp_path / "from-jsonl.parquet"
    ran = corral(*run(source, sim, "--keep", "year", "-o", str(out_jsonl)))
    assert ran.returncode == 0, ran.stderr
    assert pq.read_table(out_jsonl).column("year").to_pylist() == ["2001", "2002", None]


def test_a_resumed_run_still_writes_this_runs_kept_fields(
    corral: Corral, sim: SimulatorThread, parquet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    first = corral(*run(parquet, sim, "--keep", "doi", "-o", str(out)))
    assert first.returncode == 0, first.stderr
    asked = len(sim.log)
    second = corral(*run(parquet, sim, "--keep", "year", "doi", "-o", str(out)))
    assert second.returncode == 0, second.stderr
    assert len(sim.log) == asked  # every answer from the store
    assert "3 from an earlier run" in second.stderr
    assert [{k: r[k] for k in list(r)[:3]} for r in lines(out)] == [
        {"id": "1", "year": 2001, "doi": "10.1/a"},
        {"id": "2", "year": 2002, "doi": "10.1/b"},
        {"id": "3", "year": None, "doi": None},
    ]
    third = corral(*run(parquet, sim, "-o", str(out)))  # kept nothing this time: nothing is written
    assert third.returncode == 0, third.stderr
    assert list(lines(out)[0])[:2] == ["id", "input"]


def test_a_long_text_cut_into_chunks_keeps_its_fields_in_its_one_record(
    corral: Corral, sim: SimulatorThread, tmp_path: Path
) -> None:
    filler = "The archive keeps the town's letters in boxes by year, and the council met twice a week. "
    long = " ".join(f"My name is Person{n} and I am {20 + n} years old. {filler * 3}" for n in range(25))
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"id": "short", "text": "My name is Ann and I am 30 years old", "doi": "d1"}) + "\n"
        + json.dumps({"id": "long", "text": long, "doi": "d2", "year": 1999}) + "\n"
    )  # fmt: skip
    out = tmp_path / "out.jsonl"
    args = run(source, sim, "--keep", "doi", "year", "--chunk-tokens", "200", "-o", str(out))
    ran = corral(*args)
    assert ran.returncode == 0, ran.stderr
    short, document = lines(out)
    assert (short["id"], short["doi"], short["year"]) == ("short", "d1", None)
    assert document["chunks"] > 1
    assert list(document)[:3] == ["id", "doi", "year"]
    assert (document["doi"], document["year"]) == ("d2", 1999)
    again = corral(*args)  # resumed: every chunk from the store, the fields still there
    assert again.returncode == 0, again.stderr
    assert lines(out)[1]["doi"] == "d2"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--keep", "doi", "output"], "--keep 'output': it is the name of a key corral writes"),
        (["--template", "{first}", "--text-field", "first"], "give one of them"),
        (["--template", "{first!r}"], "corral templates only substitute fields"),
        (["--template", "{nope}"], "has no column 'nope' for --template"),
        (["--keep", "nope"], "has no column 'nope' to --keep"),
        (["--text-field", "year"], "column 'year' holds int64, not text: pass --template '{year}'"),
    ],
)
def test_what_cannot_be_done_is_refused_before_anything_is_sent(
    corral: Corral, sim: SimulatorThread, parquet: Path, options: list[str], message: str
) -> None:
    asked = len(sim.log)
    out = parquet.with_name("out.jsonl")
    ran = corral(*run(parquet, sim, *options, "-o", str(out)))
    assert ran.returncode == 2
    assert message in ran.stderr
    assert ran.stderr.count("\n") == 1  # one line, no traceback
    assert len(sim.log) == asked
    assert not out.exists()


def test_documents_have_no_fields_to_keep(corral: Corral, sim: SimulatorThread, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("My name is Ann and I am 30 years old.")
    ran = corral(*run(docs, sim, "--keep", "doi"))
    assert ran.returncode == 2
    assert "documents (a file an item) have none" in ran.stderr


def test_a_file_that_is_not_parquet_is_named_without_a_traceback(
    corral: Corral, sim: SimulatorThread, tmp_path: Path
) -> None:
    fake = tmp_path / "fake.parquet"
    fake.write_text("id,text\n1,hello\n")
    ran = corral(*run(fake, sim))
    assert ran.returncode == 2
    assert f"{fake}: is not a Parquet file" in ran.stderr
    assert "Traceback" not in ran.stderr and ran.stderr.count("\n") == 1


def test_the_template_flags_backslash_sequences_are_what_they_stand_for() -> None:
    from corral.cli._options import input_template

    assert input_template(r"a\nb\tc\\nd\x", None) == "a\nb\tc\\nd\\x"
    assert input_template(None, "body") is None
