from __future__ import annotations

from pathlib import Path

import pytest

from corral import InputError, read_items


def test_txt_one_item_per_nonblank_line(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("first\n\n  second  \n")
    assert [(i.id, i.text) for i in read_items(path)] == [("1", "first"), ("3", "second")]


def test_jsonl_text_and_id_fields(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"id": "a", "text": "one"}\n{"body": "two", "k": 1}\n')
    items = list(read_items(path, text_field="text"))
    assert items[0].id == "a" and items[0].text == "one"
    assert items[1].problem is not None
    assert "a.jsonl:2: has no field 'text' (fields: body, k); pass --text-field" in items[1].problem
    other = list(read_items(path, text_field="body"))
    assert other[1].text == "two" and other[1].id == "2"


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "ok"}\n{"text": oops}\n{"text": "fine"}\n')
    items = list(read_items(path))
    assert [i.problem is None for i in items] == [True, False, True]
    assert items[1].problem is not None and items[1].problem.startswith(f"{path}:2: not valid JSON")


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text('id,text\nx1,"Hello, world"\nx2,"two\nlines"\n')
    assert [(i.id, i.text) for i in read_items(path)] == [("x1", "Hello, world"), ("x2", "two\nlines")]


def test_csv_without_text_column(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,body\n1,x\n")
    with pytest.raises(InputError, match=r"a\.csv:1: has no column 'text' \(columns: id, body\)"):
        list(read_items(path))


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    for name in ("e.txt", "e.jsonl", "e.csv"):
        path = tmp_path / name
        path.write_text("\n\n" if name != "e.csv" else "")
        with pytest.raises(InputError, match=rf"{name}: is empty"):
            read_items(path)


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.txt: does not exist"):
        read_items(tmp_path / "nope.txt")
    (tmp_path / "a.xml").write_text("<a/>")
    with pytest.raises(InputError, match=r"unknown input format '\.xml'"):
        read_items(tmp_path / "a.xml")


def test_reading_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("line\n" * 100_000)
    stream = read_items(path)
    assert next(stream).id == "1"
    assert next(stream).id == "2"


def test_a_jsonl_file_with_a_byte_order_mark_keeps_its_first_row(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a", "text": "first"}\n{"id": "b", "text": "second"}\n')
    items = list(read_items(str(path)))
    assert [(item.id, item.text, item.problem) for item in items] == [
        ("a", "first", None),
        ("b", "second", None),
    ]
