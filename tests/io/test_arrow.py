"""Parquet and Arrow (IPC file, IPC stream, Feather) inputs: the same items as the same rows in JSONL,
read a batch at a time and only the columns a run needs; whole-file problems refused up front."""

from __future__ import annotations

import decimal
import json
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ConfigError, InputError
from corral.io import arrow as arrow_module
from corral.io.arrow import items_from_batches
from corral.io.items import ItemReader, count_items, keep_types, read_items
from corral.io.template import Template
from corral.types import Item

pa: Any = pytest.importorskip("pyarrow")
pq: Any = pytest.importorskip("pyarrow.parquet")
feather: Any = pytest.importorskip("pyarrow.feather")

ROWS: list[dict[str, Any]] = [
    {"id": "a", "text": "My name is Ann and I am 30", "title": "First", "year": 2001, "wide": "x" * 50},
    {"id": None, "text": "My name is Ben and I am 31", "title": "Second", "year": None, "wide": "y"},
    {"id": "c", "text": None, "title": None, "year": 2003, "wide": "z"},
    {"id": "d", "text": "My name is Dee", "title": "Fourth", "year": 2004, "wide": ""},
]


def table(rows: list[dict[str, Any]] = ROWS) -> Any:
    return pa.Table.from_pylist(rows)


def write(path: Path, data: Any, kind: str) -> Path:
    if kind == "parquet":
        pq.write_table(data, path, row_group_size=2)
    elif kind == "feather":
        feather.write_feather(data, path, chunksize=2)
    elif kind == "file":
        with pa.ipc.new_file(path, data.schema) as writer:
            writer.write_table(data, max_chunksize=2)
    else:
        with pa.ipc.new_stream(path, data.schema) as writer:
            writer.write_table(data, max_chunksize=2)
    return path


#: (file name, how it is written): every suffix corral reads as Parquet or Arrow
FILES = [
    ("in.parquet", "parquet"),
    ("in.pq", "parquet"),
    ("in.feather", "feather"),
    ("in.arrow", "file"),
    ("in.ipc", "file"),
    ("in.arrows", "stream"),
    ("stream-named.arrow", "stream"),  # a stream under a file's name: still read
    ("file-named.arrows", "file"),
]


def shape(items: list[Item], source: Path) -> list[tuple[str, str, str | None, Any]]:
    """What an item is, the file's name left out of its problem."""
    return [(i.id, i.text, i.problem and i.problem.replace(str(source), "FILE"), i.kept) for i in items]


@pytest.mark.parametrize(("name", "kind"), FILES)
def test_the_same_rows_give_the_same_items_as_jsonl(tmp_path: Path, name: str, kind: str) -> None:
    lines = tmp_path / "in.jsonl"
    lines.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    path = write(tmp_path / name, table(), kind)
    from_jsonl = list(read_items(lines, keep=["year"]))
    from_arrow = list(read_items(path, keep=["year"]))
    assert [(i.id, i.text, i.kept) for i in from_arrow] == [(i.id, i.text, i.kept) for i in from_jsonl]
    assert [i.id for i in from_arrow] == ["a", "2", "c", "d"]  # no id: the row's number
    assert from_arrow[2].problem == f"{path}:row 3: column 'text' is null"  # that row's error only
    assert [i.problem is None for i in from_arrow] == [True, True, False, True]
    assert count_items(path) == 4


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_the_format_flag_reads_a_file_whatever_its_name(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path / "data.bin", table(), "parquet" if fmt == "parquet" else "file")
    items = list(read_items(path, format=fmt))  # type: ignore[arg-type]
    assert [i.id for i in items] == ["a", "2", "c", "d"]
    assert count_items(path, format=fmt) == 4  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "kind"), [("in.parquet", "parquet"), ("in.arrow", "file")])
def test_only_the_columns_needed_are_read(tmp_path: Path, name: str, kind: str) -> None:
    path = write(tmp_path / name, table(), kind)
    first = next(read_items(path))
    assert first.fields == {"id": "a", "text": ROWS[0]["text"]}  # not title, year, wide
    templated = next(read_items(path, template="{title}: {text}", keep=["year"]))
    assert templated.text == f"First: {ROWS[0]['text']}"
    assert templated.fields is not None and set(templated.fields) == {"id", "title", "text", "year"}


def test_parquet_is_read_in_batches_of_the_needed_columns_never_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = 200_000
    data = pa.table(
        {
            "id": [f"r{n}" for n in range(rows)],
            "text": [f"My name is P{n}" for n in range(rows)],
            "other": list(range(rows)),
        }
    )
    path = tmp_path / "big.parquet"
    pq.write_table(data, path, row_group_size=50_000)
    del data

    calls: list[dict[str, Any]] = []
    real = pq.ParquetFile.iter_batches

    def spied(self: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        calls.append(kwargs)
        return real(self, *args, **kwargs)  # type: ignore[no-any-return]

    def refused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the whole table was read")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spied)
    monkeypatch.setattr(pq.ParquetFile, "read", refused)
    monkeypatch.setattr(pq, "read_table", refused)
    assert count_items(path) == rows  # from the footer
    reader = read_items(path)
    seen = 0
    for seen, item in enumerate(reader, start=1):  # noqa: B007  # counted, not kept
        pass
    assert seen == rows
    assert item.id == f"r{rows - 1}"
    assert calls == [{"batch_size": arrow_module._BATCH_ROWS, "columns": ["id", "text"]}]


@pytest.mark.parametrize("kind", ["parquet", "file", "stream"])
def test_memory_stays_bounded_however_large_the_file_or_its_batches(tmp_path: Path, kind: str) -> None:
    rows = 100_000
    # One record batch of 100,000 rows (an IPC file holds it so): only a few thousand are ever
    # Python values at once. As Python strings every text would take ~45 MB together.
    data = pa.table({"text": pa.array(["x" * 400] * rows)})
    path = tmp_path / f"big.{kind}"
    if kind == "parquet":
        pq.write_table(data, path)
    else:
        writer = pa.ipc.new_file if kind == "file" else pa.ipc.new_stream
        with writer(path, data.schema) as out:
            out.write_table(data)  # one batch
    del data
    tracemalloc.start()
    try:
        reader = read_items(path, format="parquet" if kind == "parquet" else "arrow")
        count = sum(1 for _ in reader)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB of Python objects"


# --- whole-file problems ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt", "message"),
    [
        ("fake.parquet", None, r"fake\.parquet: is not a Parquet file \(pyarrow: .+\); check the file"),
        ("fake.feather", None, r"fake\.feather: is not an Arrow IPC .*file or stream \(pyarrow: "),
        ("fake.arrows", None, r"fake\.arrows: is not an Arrow IPC"),
        ("fake.txt", "parquet", r"fake\.txt: is not a Parquet file"),
    ],
)
def test_a_file_that_is_not_parquet_or_arrow_is_named_without_a_traceback(
    tmp_path: Path, name: str, fmt: str | None, message: str
) -> None:
    path = tmp_path / name
    path.write_text("id,text\n1,hello there, this is not a columnar file at all\n")
    with pytest.raises(InputError, match=message) as raised:
        read_items(path, format=fmt)  # type: ignore[arg-type]
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert count_items(path, format=fmt) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "kind"), [("e.parquet", "parquet"), ("e.arrow", "file"), ("e.arrows", "stream")]
)
def test_a_file_without_rows_is_empty(tmp_path: Path, name: str, kind: str) -> None:
    path = write(tmp_path / name, pa.table({"text": pa.array([], pa.string())}), kind)
    with pytest.raises(InputError, match=rf"{name}: is empty: there are no rows"):
        read_items(path)


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.parquet: does not exist"):
        read_items(tmp_path / "nope.parquet")
    (tmp_path / "dir.arrow").mkdir()
    with pytest.raises(InputError, match=r"dir\.arrow: is a directory, not a file"):
        read_items(tmp_path / "dir.arrow", format="arrow")


def test_a_missing_text_column_lists_the_columns_and_the_ways_out(tmp_path: Path) -> None:
    path = write(tmp_path / "in.parquet", table(), "parquet")
    with pytest.raises(InputError) as raised:
        read_items(path, text_field="body")
    message = str(raised.value)
    assert message.startswith(f"{path}: has no column 'body' (columns: id, text, title, year, wide)")
    assert "--text-field NAME" in message and "--template" in message


def test_a_text_column_that_holds_numbers_says_so_and_offers_a_template(tmp_path: Path) -> None:
    path = write(tmp_path / "in.arrow", table(), "file")
    with pytest.raises(InputError) as raised:
        read_items(path, text_field="year")
    message = str(raised.value)
    assert "column 'year' holds int64, not text" in message
    assert "--template '{year}'" in message
    # ... and the template does send its values as text (a null one is that row's error).
    items = list(read_items(path, template="{year}"))
    assert [i.text for i in items] == ["2001", "", "2003", "2004"]
    assert items[1].problem == f"{path}:row 2: template field 'year' is null"


def test_text_columns_of_every_string_type_are_text(tmp_path: Path) -> None:
    data = pa.table(
        {
            "large": pa.array(["one", "two"], pa.large_string()),
            "categorical": pa.array(["a", "b"]).dictionary_encode(),
        }
    )
    path = write(tmp_path / "in.parquet", data, "parquet")
    assert [i.text for i in read_items(path, text_field="large")] == ["one", "two"]
    assert [i.text for i in read_items(path, text_field="categorical")] == ["a", "b"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"template": "{title} {nope}"}, r"has no column 'nope' for --template '\{title\} \{nope\}'"),
        ({"keep": ["year", "doi"]}, r"has no column 'doi' to --keep \(columns: id, text, title"),
    ],
)
def test_a_template_or_keep_field_that_is_no_column_is_refused(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    path = write(tmp_path / "in.parquet", table(), "parquet")
    with pytest.raises(InputError, match=message):
        read_items(path, **changes)


def test_keeping_a_field_named_like_a_record_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "in.parquet", table(), "parquet")
    with pytest.raises(ConfigError, match=r"--keep 'output': it is the name of a key corral writes"):
        read_items(path, keep=["year", "output"])


def test_parquet_from_stdin_is_refused_and_an_arrow_stream_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InputError, match="standard input cannot do: give the file's path"):
        read_items("-", format="parquet")
    path = write(tmp_path / "in.arrows", table(), "stream")

    class Stdin:
        buffer = path.open("rb")

    monkeypatch.setattr(sys, "stdin", Stdin)
    try:
        reader = read_items("-", format="arrow", keep=["year"])
        assert isinstance(reader, ItemReader) and reader.keep_types == {"year": pa.int64()}
        assert [i.id for i in reader] == ["a", "2", "c", "d"]
    finally:
        Stdin.buffer.close()


def test_without_pyarrow_the_extra_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "in.parquet", table(), "parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # None in sys.modules makes the import fail
    with pytest.raises(ConfigError, match=r"needs pyarrow: pip install 'corral\[parquet\]'"):
        read_items(path)
    assert count_items(path) is None


# --- kept fields and their types -------------------------------------------------------------


def test_kept_fields_keep_their_arrow_types(tmp_path: Path) -> None:
    data = pa.table(
        {
            "text": ["a", "b"],
            "year": pa.array([2001, None], pa.int64()),
            "price": pa.array([decimal.Decimal("1.10"), None], pa.decimal128(5, 2)),
        }
    )
    path = write(tmp_path / "in.parquet", data, "parquet")
    reader = read_items(path, keep=["price", "year"])
    assert isinstance(reader, ItemReader)
    assert reader.keep_types == {"price": pa.decimal128(5, 2), "year": pa.int64()}
    assert keep_types(path, keep=["price", "year"]) == reader.keep_types  # from the schema alone
    assert [i.kept for i in reader] == [
        {"price": decimal.Decimal("1.10"), "year": 2001},
        {"price": None, "year": None},
    ]
    lines = tmp_path / "in.jsonl"
    lines.write_text('{"text": "a"}\n')
    jsonl = read_items(lines, keep=["year"])
    assert isinstance(jsonl, ItemReader) and jsonl.keep_types is None
    assert keep_types(lines, keep=["year"]) is None


# --- record batches from anywhere (a DataFrame) ----------------------------------------------


def batches(rows: list[dict[str, Any]], size: int) -> list[Any]:
    return list(table(rows).to_batches(max_chunksize=size))


def test_items_from_batches_numbers_rows_across_batches_from_first_row() -> None:
    rows: list[dict[str, Any]] = [{"body": f"text {n}", "title": f"T{n}"} for n in range(7)]
    rows[4]["body"] = None
    items = list(items_from_batches(batches(rows, 3), source="frame", text_field="body", first_row=0))
    assert [i.id for i in items] == [str(n) for n in range(7)]  # no id column: positions from 0
    assert items[4].problem == "frame:row 4: column 'body' is null"
    assert [i.problem is None for i in items].count(False) == 1


def test_items_from_batches_takes_ids_templates_and_kept_fields() -> None:
    rows: list[dict[str, Any]] = [{"key": f"k{n}", "title": f"T{n}", "body": "b", "n": n} for n in range(3)]
    rows[1]["key"] = None
    items = list(
        items_from_batches(
            batches(rows, 2), source="frame", id_field="key", template=Template("{title}: {body}"), keep=["n"]
        )
    )
    assert [(i.id, i.text, i.kept) for i in items] == [
        ("k0", "T0: b", {"n": 0}),
        ("2", "T1: b", {"n": 1}),  # a null id: the row's number
        ("k2", "T2: b", {"n": 2}),
    ]
    without_ids = list(items_from_batches(batches(rows, 2), source="frame", id_field=None, text_field="body"))
    assert [i.id for i in without_ids] == ["1", "2", "3"]


def test_items_from_batches_checks_the_first_batch_schema() -> None:
    rows = [{"body": "a", "n": 1}]
    with pytest.raises(InputError, match=r"^frame: has no column 'text' \(columns: body, n\)"):
        list(items_from_batches(batches(rows, 1), source="frame"))
    with pytest.raises(InputError, match=r"^frame: column 'n' holds int64, not text"):
        list(items_from_batches(batches(rows, 1), source="frame", text_field="n"))
    with pytest.raises(InputError, match=r"^frame: has no column 'x' for --template"):
        list(items_from_batches(batches(rows, 1), source="frame", template=Template("{x}")))
    with pytest.raises(ConfigError, match="--keep 'id'"):
        list(items_from_batches(batches(rows, 1), source="frame", text_field="body", keep=["id"]))
    assert list(items_from_batches([], source="frame")) == []
