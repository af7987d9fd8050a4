"""Output sinks: JSONL, CSV and Parquet written to real files and read back."""

from __future__ import annotations

import csv
import datetime
import decimal
import json
import sys
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from pydantic import BaseModel

from corral.errors import ConfigError, OutputError
from corral.io import sinks
from corral.io.sinks import SINK_FORMATS, SinkFormat, check_output, open_sink, sink_format
from corral.schema import ResponseSpec, load_spec


class Address(BaseModel):
    city: str
    zip: str | None = None


class Person(BaseModel):
    name: str
    age: int
    score: float
    member: bool
    tier: Literal["free", "pro"]
    address: Address
    nickname: str | None = None
    tags: list[str]


class Loose(BaseModel):
    counts: dict[str, int]
    either: int | str


class Node(BaseModel):
    label: str
    child: Node | None = None


ADA = {
    "name": "Ada",
    "age": 36,
    "score": 9.5,
    "member": True,
    "tier": "pro",
    "address": {"city": "London", "zip": None},
    "nickname": None,
    "tags": ["math", "engines"],
}
BOB = {
    "name": "Bob, Jr.",
    "age": 7,
    "score": 1.0,
    "member": False,
    "tier": "free",
    "address": {"city": "Paris", "zip": "75001"},
    "nickname": "B",
    "tags": [],
}
CSV_TAIL = [
    "error.kind", "error.message", "attempts",
    "usage.prompt_tokens", "usage.completion_tokens", "usage.total_tokens", "latency",
    "grounding", "conflicts", "chunks", "confidence",
]  # fmt: skip


def record(id_: str, output: Any, error: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "id": id_,
        "input": f"text of {id_}",
        "output": output,
        "error": error,
        "attempts": 2 if error else 1,
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        "latency": 0.125,
    }


RECORDS = [
    record("1", ADA),
    record("2", BOB),
    record("3", None, {"kind": "invalid_output", "message": "age: not an int"}),
]


def write_all(path: Path | str | None, fmt: SinkFormat, spec: ResponseSpec[Any], records: list[Any]) -> None:
    with open_sink(None if path is None else str(path), fmt, spec) as sink:
        for rec in records:
            sink.write(rec)
        sink.flush()


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


@pytest.fixture
def pa() -> Any:
    return pytest.importorskip("pyarrow")


@pytest.fixture
def pq(pa: Any) -> Any:
    return pytest.importorskip("pyarrow.parquet")


# --- choosing the format ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "explicit", "expected"),
    [
        ("out.jsonl", None, "jsonl"),
        ("out.NDJSON", None, "jsonl"),
        ("out.json", None, "jsonl"),
        ("dir/out.csv", None, "csv"),
        ("out.parquet", None, "parquet"),
        ("out.pq", None, "parquet"),
        ("out.txt", None, "jsonl"),
        ("out", None, "jsonl"),
        (None, None, "jsonl"),
        ("-", None, "jsonl"),
        ("-", "csv", "csv"),
        ("out.csv", "jsonl", "jsonl"),
        ("out.data", "parquet", "parquet"),
    ],
)
def test_sink_format_explicit_wins_then_extension(
    path: str | None, explicit: str | None, expected: str
) -> None:
    assert sink_format(path, explicit) == expected


@pytest.mark.parametrize("path", [None, "-"])
def test_parquet_to_stdout_is_refused(path: str | None) -> None:
    with pytest.raises(OutputError, match=r"parquet needs a file: add -o out\.parquet"):
        sink_format(path, "parquet")
    with pytest.raises(OutputError, match="parquet needs a file"):
        open_sink(path, "parquet", load_spec(Person))


def test_unknown_explicit_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'xlsx'.*jsonl, csv, parquet"):
        sink_format("out.xlsx", "xlsx")
    assert SINK_FORMATS == ("jsonl", "csv", "parquet")


# --- JSONL -----------------------------------------------------------------------------------


def test_jsonl_is_byte_for_byte_what_corral_writes(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    write_all(out, "jsonl", load_spec(Person), RECORDS)
    expected = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in RECORDS)
    assert out.read_bytes() == expected
    assert [json.loads(line) for line in out.read_text().splitlines()] == RECORDS


def test_jsonl_flush_puts_records_on_disk_before_close(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    sink = open_sink(str(out), "jsonl", load_spec(Person))
    sink.write(RECORDS[0])
    sink.flush()
    assert json.loads(out.read_text()) == RECORDS[0]
    sink.close()
    sink.close()  # idempotent


def test_jsonl_to_stdout_leaves_stdout_open(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    write_all("-", "jsonl", load_spec(Person), RECORDS[:1])
    assert not sys.stdout.buffer.closed
    assert capsysbinary.readouterr().out == orjson.dumps(RECORDS[0]) + b"\n"


# --- CSV -------------------------------------------------------------------------------------


def test_csv_header_comes_from_the_schema(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    write_all(out, "csv", load_spec(Person), [])  # no records: the header is still complete
    assert read_csv(out) == [
        ["id", "input", "output.name", "output.age", "output.score", "output.member", "output.tier",
         "output.address.city", "output.address.zip", "output.nickname", "output.tags", *CSV_TAIL],
    ]  # fmt: skip


def test_csv_rows_flatten_nested_lists_none_and_booleans(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    write_all(out, "csv", load_spec(Person), RECORDS)
    header, ada, bob, failed = read_csv(out)
    assert dict(zip(header, ada, strict=True)) == {
        "id": "1", "input": "text of 1", "output.name": "Ada", "output.age": "36", "output.score": "9.5",
        "output.member": "true", "output.tier": "pro", "output.address.city": "London",
        "output.address.zip": "", "output.nickname": "", "output.tags": '["math","engines"]',
        "error.kind": "", "error.message": "", "attempts": "1", "usage.prompt_tokens": "10",
        "usage.completion_tokens": "5", "usage.total_tokens": "15", "latency": "0.125",
        "grounding": "", "conflicts": "", "chunks": "", "confidence": "",
    }  # fmt: skip
    assert bob[2:4] == ["Bob, Jr.", "7"] and bob[5] == "false" and bob[8:11] == ["75001", "B", "[]"]
    assert failed[:2] == ["3", "text of 3"]
    assert failed[2:11] == [""] * 9  # no output: every output cell empty
    assert failed[11:14] == ["invalid_output", "age: not an int", "2"]


def test_csv_many_is_one_json_column(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    write_all(out, "csv", load_spec(Person, many=True), [record("1", [ADA, BOB]), record("2", [])])
    header, first, second = read_csv(out)
    assert header == ["id", "input", "output", *CSV_TAIL]
    assert json.loads(first[2]) == [ADA, BOB]
    assert second[2] == "[]"


def test_csv_maps_unions_and_recursion_are_json_cells(tmp_path: Path) -> None:
    out = tmp_path / "loose.csv"
    write_all(out, "csv", load_spec(Loose), [record("1", {"counts": {"a": 1}, "either": "x"})])
    header, row = read_csv(out)
    assert header[2:4] == ["output.counts", "output.either"]
    assert row[2:4] == ['{"a":1}', '"x"']

    out = tmp_path / "node.csv"
    write_all(
        out, "csv", load_spec(Node), [record("1", {"label": "a", "child": {"label": "b", "child": None}})]
    )
    header, row = read_csv(out)
    assert header[2:5] == ["output.label", "output.child", "error.kind"]  # the model again: JSON
    assert row[2:4] == ["a", '{"label":"b","child":null}']


def test_csv_schema_without_properties_is_one_output_column(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    spec = load_spec({"type": "object", "additionalProperties": {"type": "integer"}})
    write_all(out, "csv", spec, [record("1", {"x": 1, "y.z": 2})])
    header, row = read_csv(out)
    assert header == ["id", "input", "output", *CSV_TAIL]
    assert json.loads(row[2]) == {"x": 1, "y.z": 2}


def test_csv_dotted_property_names_and_json_schema_refs(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "$defs": {"Geo": {"type": "object", "properties": {"lat": {"type": "number"}}}},
        "properties": {
            "a.b": {"type": "string"},
            "geo": {"anyOf": [{"$ref": "#/$defs/Geo"}, {"type": "null"}]},
        },
    }
    out = tmp_path / "out.csv"
    write_all(out, "csv", load_spec(schema), [record("1", {"a.b": "v", "geo": {"lat": 51.5}})])
    header, row = read_csv(out)
    assert header[2:4] == ["output.a.b", "output.geo.lat"]
    assert row[2:4] == ["v", "51.5"]


DOCUMENT = {
    "id": "a.pdf", "output": {"name": "Ada", "age": 36}, "error": None, "attempts": 3,
    "usage": {"prompt_tokens": 10, "completion_tokens": 5}, "latency": 0.5,
    "grounding": {"name": {"start": 4, "end": 7, "how": "exact", "score": 1.0, "page": 2}, "tier": None},
    "conflicts": [{"path": "age", "kept": 36, "others": [37, "thirty"]}], "chunks": 3,
    "confidence": {"name": {"value": 0.97, "method": "logprobs"}},
}  # fmt: skip


def test_csv_keeps_grounding_conflicts_and_chunks(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    write_all(out, "csv", load_spec(Person), [DOCUMENT])
    header, row = read_csv(out)
    cells = dict(zip(header, row, strict=True))
    assert json.loads(cells["grounding"]) == DOCUMENT["grounding"]
    assert json.loads(cells["conflicts"]) == DOCUMENT["conflicts"]
    assert cells["chunks"] == "3" and cells["input"] == ""
    assert json.loads(cells["confidence"]) == DOCUMENT["confidence"]


def test_parquet_keeps_grounding_as_a_map_of_spans(tmp_path: Path, pq: Any) -> None:
    out = tmp_path / "out.parquet"
    write_all(out, "parquet", load_spec(Person), [DOCUMENT])
    (row,) = pq.read_table(out).to_pylist()
    assert dict(row["grounding"]) == DOCUMENT["grounding"]
    assert row["conflicts"] == [{"path": "age", "kept": "36", "others": ["37", '"thirty"']}]  # JSON text
    assert row["chunks"] == 3 and row["input"] is None
    assert dict(row["confidence"]) == DOCUMENT["confidence"]


# --- Parquet ---------------------------------------------------------------------------------


def test_parquet_round_trip_with_typed_columns(tmp_path: Path, pa: Any, pq: Any) -> None:
    out = tmp_path / "out.parquet"
    write_all(out, "parquet", load_spec(Person), RECORDS)
    table = pq.read_table(out)
    address = pa.struct([("city", pa.string()), ("zip", pa.string())])
    assert table.schema.field("output").type == pa.struct([
        ("name", pa.string()), ("age", pa.int64()), ("score", pa.float64()), ("member", pa.bool_()),
        ("tier", pa.string()), ("address", address), ("nickname", pa.string()),
        ("tags", pa.list_(pa.string())),
    ])  # fmt: skip
    assert table.schema.field("error").type == pa.struct([("kind", pa.string()), ("message", pa.string())])
    assert table.schema.field("usage").type.field("total_tokens").type == pa.int64()
    assert table.schema.field("latency").type == pa.float64()
    assert table.to_pylist() == [
        {**r, "grounding": None, "conflicts": None, "chunks": None, "confidence": None} for r in RECORDS
    ]
    metadata = pq.read_metadata(out).metadata
    assert metadata[b"corral"] == b"1"
    assert json.loads(metadata[b"corral.schema"]) == load_spec(Person).schema


def test_parquet_many_is_a_list_of_structs(tmp_path: Path, pa: Any, pq: Any) -> None:
    out = tmp_path / "out.parquet"
    records = [record("1", [ADA, BOB]), record("2", []), record("3", None, {"kind": "x", "message": "y"})]
    write_all(out, "parquet", load_spec(Person, many=True), records)
    table = pq.read_table(out)
    output_type = table.schema.field("output").type
    assert pa.types.is_list(output_type) and pa.types.is_struct(output_type.value_type)
    assert table.column("output").to_pylist() == [[ADA, BOB], [], None]


def test_parquet_maps_and_unions_are_json_text(tmp_path: Path, pa: Any, pq: Any) -> None:
    out = tmp_path / "out.parquet"
    write_all(out, "parquet", load_spec(Loose), [record("1", {"counts": {"a": 1, "b": 2}, "either": 3})])
    table = pq.read_table(out)
    assert table.schema.field("output").type == pa.struct([("counts", pa.string()), ("either", pa.string())])
    assert table.column("output").to_pylist() == [{"counts": '{"a":1,"b":2}', "either": "3"}]

    out = tmp_path / "node.parquet"
    write_all(out, "parquet", load_spec(Node), [record("1", {"label": "a", "child": {"label": "b"}})])
    assert pq.read_table(out).column("output").to_pylist() == [{"label": "a", "child": '{"label":"b"}'}]


def test_parquet_row_groups_are_not_cut_by_flushes(
    tmp_path: Path, pq: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sinks, "_ROW_GROUP", 2)
    out = tmp_path / "out.parquet"
    sink = open_sink(str(out), "parquet", load_spec(Person))
    sink.write(RECORDS[0])
    sink.flush()  # a run flushes every commit batch: that must not make a row group each time
    sink.flush()
    sink.write(RECORDS[1])  # the second row fills a group
    sink.write(RECORDS[2])
    sink.close()
    sink.close()
    assert pq.ParquetFile(out).num_row_groups == 2
    assert pq.read_table(out).column("id").to_pylist() == ["1", "2", "3"]


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # None in sys.modules makes the import fail
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match=r"pip install 'corral\[parquet\]'"):
        open_sink(str(tmp_path / "out.parquet"), "parquet", load_spec(Person))


# --- refusing files that are not ours --------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_check_output_accepts_new_empty_and_own_files(tmp_path: Path, fmt: SinkFormat) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"out.{fmt}"
    check_output(str(out), fmt)  # does not exist yet
    out.touch()
    check_output(str(out), fmt)  # empty
    write_all(out, fmt, load_spec(Person), RECORDS)
    check_output(str(out), fmt)  # our own earlier output
    check_output(None, fmt)
    check_output("-", fmt)


def test_check_output_accepts_a_jsonl_cut_short_by_a_full_disk(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(orjson.dumps(RECORDS[0])[:30])
    check_output(str(out), "jsonl")


@pytest.mark.parametrize(
    ("name", "fmt", "content", "shown"),
    [
        ("data.jsonl", "jsonl", b'{"text": "my input"}\n', '{"text": "my input"}'),
        ("data.jsonl", "jsonl", b"[1, 2]\n", "[1, 2]"),
        ("notes.txt", "jsonl", b"dear diary\nsecond line\n", "dear diary"),
        ("table.csv", "csv", b"name,age\nAda,36\n", "name,age"),
        ("ours.csv", "csv", orjson.dumps(RECORDS[0]) + b"\n", '{"id":"1"'),
        ("notes.parquet", "parquet", b"dear diary\n", "not readable as Parquet"),
    ],
)
def test_check_output_refuses_foreign_files(
    tmp_path: Path, name: str, fmt: SinkFormat, content: bytes, shown: str
) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / name
    out.write_bytes(content)
    with pytest.raises(OutputError) as caught:
        check_output(str(out), fmt)
    message = str(caught.value)
    assert str(out) in message and f"not a corral {fmt} output" in message
    assert shown in message
    assert "choose another -o, or delete it if it is not needed" in message
    assert out.read_bytes() == content  # untouched


def test_check_output_refuses_parquet_written_by_someone_else(tmp_path: Path, pa: Any, pq: Any) -> None:
    out = tmp_path / "theirs.parquet"
    pq.write_table(pa.table({"id": ["1"], "input": ["x"]}), out)
    with pytest.raises(OutputError, match="no corral key"):
        check_output(str(out), "parquet")


def test_check_output_shortens_a_long_first_line(tmp_path: Path) -> None:
    out = tmp_path / "big.jsonl"
    out.write_text("x" * 5000 + "\n")
    with pytest.raises(OutputError) as caught:
        check_output(str(out), "jsonl")
    assert "x" * 60 + "…" in str(caught.value) and "x" * 61 not in str(caught.value)


def test_check_output_refuses_a_directory_and_a_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        check_output(str(tmp_path), "jsonl")
    missing = tmp_path / "nope" / "out.csv"
    with pytest.raises(OutputError, match=r"directory .*nope does not exist"):
        check_output(str(missing), "csv")


# --- a full disk -----------------------------------------------------------------------------

needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux /dev/full")


@needs_dev_full
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_full_disk_is_an_output_error(fmt: SinkFormat) -> None:
    sink = open_sink("/dev/full", fmt, load_spec(Person))
    sink.write(RECORDS[0])
    with pytest.raises(OutputError) as caught:
        sink.flush()
    message = str(caught.value)
    assert message.startswith("cannot write /dev/full: No space left on device;")
    assert "finished results are kept in the run store" in message
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(OutputError):
        sink.close()


@needs_dev_full
def test_full_disk_in_parquet_is_an_output_error(pq: Any) -> None:
    spec = load_spec(Person)
    # Opening (the magic bytes), writing or closing (the footer): whichever reaches the disk first fails.
    with (
        pytest.raises(OutputError, match="No space left") as caught,
        open_sink("/dev/full", "parquet", spec) as sink,
    ):
        sink.write(RECORDS[0])
    assert isinstance(caught.value.__cause__, OSError)


def test_unwritable_path_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"cannot write .*missing"):
        open_sink(str(tmp_path / "missing" / "out.jsonl"), "jsonl", load_spec(Person))


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised_unless_asked_for(tmp_path: Path) -> None:
    # Issue 15, M5: an input or an answer beginning with = + - @ is a formula to a spreadsheet.
    class Cell(BaseModel):
        name: str
        count: int

    output = {"name": "@SUM(A1)", "count": -5}
    attack = {"id": "1", "input": '=HYPERLINK("http://evil.test")', "output": output,
              "error": None, "attempts": 1, "usage": {}, "latency": 0.1}  # fmt: skip
    safe, raw = tmp_path / "safe.csv", tmp_path / "raw.csv"
    write_all(safe, "csv", load_spec(Cell), [attack])
    row = read_csv(safe)[1]
    assert row[1:4] == ['\'=HYPERLINK("http://evil.test")', "'@SUM(A1)", "-5"], "numbers stay numbers"
    with open_sink(str(raw), "csv", load_spec(Cell), csv_formulas=True) as sink:
        sink.write(attack)
    assert read_csv(raw)[1][1:4] == ['=HYPERLINK("http://evil.test")', "@SUM(A1)", "-5"]


# --- kept input fields (--keep) ----------------------------------------------------------------


def kept_record(id_: str, **kept: Any) -> dict[str, Any]:
    full = record(id_, ADA)
    return {"id": full.pop("id"), **kept, **full}


def test_jsonl_writes_kept_values_json_cannot_hold_as_text(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    odd = kept_record(
        "1",
        price=decimal.Decimal("1.10"),
        blob=b"\x00ab\xff",
        day=datetime.date(2024, 5, 1),
        huge=2**70,
        nested={"when": datetime.date(2024, 5, 2), "n": [decimal.Decimal("2")]},
    )
    write_all(out, "jsonl", load_spec(Person), [odd, kept_record("2", price=None)])
    first, second = (json.loads(line) for line in out.read_text().splitlines())
    assert list(first)[:7] == ["id", "price", "blob", "day", "huge", "nested", "input"]
    assert first["price"] == "1.10"
    assert first["blob"] == "\x00ab\\xff"  # as UTF-8 where it is, a byte that is not escaped
    assert first["day"] == "2024-05-01"
    assert first["huge"] == str(2**70)
    assert first["nested"] == {"when": "2024-05-02", "n": ["2"]}
    assert first["output"] == ADA
    assert second["price"] is None


def test_dump_record_never_fails_a_row() -> None:
    assert orjson.loads(sinks.dump_record({"id": "1", "k": {1: decimal.Decimal("3")}})) == {
        "id": "1",
        "k": {"1": "3"},
    }
    assert sinks.dump_record({"id": "1"}, newline=True) == b'{"id":"1"}\n'


def test_csv_kept_columns_come_after_the_id_in_keep_order(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    records = [kept_record("1", year=2001, doi="=10.1/x"), kept_record("2", doi=None)]
    with open_sink(str(out), "csv", load_spec(Person), keep=["year", "doi"]) as sink:
        for rec in records:
            sink.write(rec)
    header, first, second = read_csv(out)
    assert header[:4] == ["id", "year", "doi", "input"]
    assert first[:4] == ["1", "2001", "'=10.1/x", "text of 1"]  # a kept text is neutralised too
    assert second[:4] == ["2", "", "", "text of 2"]  # a field a row lacks: an empty cell
    check_output(str(out), "csv")  # a re-run may write over it: it is ours


def test_parquet_kept_columns_keep_the_input_types_after_the_id(tmp_path: Path, pa: Any, pq: Any) -> None:
    out = tmp_path / "out.parquet"
    records = [
        kept_record("1", year=2001, price=decimal.Decimal("1.10"), doi="d1", extra={"a": 1}),
        kept_record("2", year=None, price=None, doi=None, extra=True),
    ]
    with open_sink(
        str(out),
        "parquet",
        load_spec(Person),
        keep=["year", "price", "doi", "extra"],
        keep_types={"year": pa.int64(), "price": pa.decimal128(5, 2)},
    ) as sink:
        for rec in records:
            sink.write(rec)
    table = pq.read_table(out)
    assert table.schema.names[:6] == ["id", "year", "price", "doi", "extra", "input"]
    assert table.schema.field("year").type == pa.int64()
    assert table.schema.field("price").type == pa.decimal128(5, 2)
    # Without the input's type (a JSONL or CSV input), text: a value that is not a string as JSON.
    assert table.schema.field("doi").type == pa.string()
    assert table.schema.field("extra").type == pa.string()
    rows = table.select(["year", "price", "doi", "extra"]).to_pylist()
    assert rows == [
        {"year": 2001, "price": decimal.Decimal("1.10"), "doi": "d1", "extra": '{"a":1}'},
        {"year": None, "price": None, "doi": None, "extra": "true"},
    ]
    check_output(str(out), "parquet")


def test_parquet_keeps_a_categorical_column_as_its_values(tmp_path: Path, pa: Any, pq: Any) -> None:
    out = tmp_path / "out.parquet"
    categorical = pa.dictionary(pa.int32(), pa.string())
    with open_sink(
        str(out), "parquet", load_spec(Person), keep=["kind"], keep_types={"kind": categorical}
    ) as sink:
        sink.write(kept_record("1", kind="a"))
    assert pq.read_table(out).column("kind").to_pylist() == ["a"]
