from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from corral import InputError, read_items
from corral.errors import ConfigError


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


def test_a_csv_quote_never_closed_stops_at_its_line_after_the_rows_before_it(tmp_path: Path) -> None:
    # Issue 15, L7: the open quote on line 5 made lines 5-7 one cell, and the run exited 0.
    path = tmp_path / "a.csv"
    path.write_text('id,text\nx1,"two\nlines, quoted"\nx2,plain\nx3,"never closed\nx4,lost\nx5,lost too\n')
    stream = read_items(path)
    assert [(item.id, item.text) for item in itertools.islice(stream, 2)] == [
        ("x1", "two\nlines, quoted"),
        ("x2", "plain"),
    ]
    with pytest.raises(InputError, match=rf"{re.escape(str(path))}:5: a quoted field .* never closed"):
        next(stream)


def test_a_csv_quote_never_closed_is_named_where_it_opens_within_a_multi_line_row(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b'id,text,note\r\nx1,"a\r\nb","opened here\r\nand on\r\nto the end')
    with pytest.raises(InputError, match=r"a\.csv:3: a quoted field .* lines 3–5 would be one cell"):
        list(read_items(path))


def test_a_csv_quote_never_closed_is_not_closed_by_the_next_quote_below(tmp_path: Path) -> None:
    # Without strict parsing the next quote (line 4) "closed" the field opened on line 3, the rows
    # between became its text, and csv read on.
    path = tmp_path / "a.csv"
    path.write_text('id,text\nx1,"ok"\nx2,"never closed\nx3,"swallowed"\nx4,swallowed\nx5,"he said ""hi"""\n')
    with pytest.raises(
        InputError, match=r"a\.csv:3: the quoted field .* closed on line 4 by a quote followed by 's'"
    ):
        list(read_items(path))
    path.write_text('id,text\nx1,"he said ""hi"" twice"\nx2,"he said "hi" once"\n')
    stream = read_items(path)
    assert next(stream).text == 'he said "hi" twice'
    with pytest.raises(InputError, match=r"a\.csv:3: .* write it twice"):
        next(stream)


def test_a_csv_row_that_is_not_utf8_is_that_rows_error_at_its_line(tmp_path: Path) -> None:
    # Issue 15, L8: a bad byte far into the file stopped the run, naming a line before the row.
    rows = [b"r%d,row %d\n" % (n, n) for n in range(1, 2001)]
    rows[1499] = b'r1500,"first line\nsecond, caf\xe9"\n'  # Latin-1, on the 2nd line of a 2-line row
    path = tmp_path / "a.csv"
    path.write_bytes(b"id,text\n" + b"".join(rows[:999]) + b'r1000,"one\nmore"\n' + b"".join(rows[1000:]))
    items = list(read_items(path))
    assert len(items) == 2000
    bad = [item for item in items if item.problem is not None]
    assert [(item.id, item.problem) for item in bad] == [
        ("r1500", f"{path}:1503: is not UTF-8 text: save the file as UTF-8")
    ]
    assert items[999].text == "one\nmore" and items[-1].text == "row 2000"
    # A header that is not UTF-8 still stops the read: without its columns no row can be read.
    path.write_bytes(b"id,t\xe9xt\n1,one\n")
    with pytest.raises(InputError, match=r"a\.csv:1: is not UTF-8 text"):
        read_items(path)


# --- --template and --keep -------------------------------------------------------------------


def test_a_jsonl_template_builds_each_text_and_a_row_without_a_field_is_its_error(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"id": "a", "title": "T", "body": "B"}\n{"id": "b", "body": "only"}\n'
        '{"id": "c", "title": null, "body": "x"}\n{"id": "d", "title": 7, "body": ["x", 1]}\n'
    )
    items = list(read_items(path, template="Title: {title}\n\n{body}"))
    assert [i.text for i in items] == ["Title: T\n\nB", "", "", 'Title: 7\n\n["x",1]']
    assert items[1].problem == f"{path}:2: template field 'title' is missing (fields: id, body)"
    assert items[2].problem == f"{path}:3: template field 'title' is null (fields: id, title, body)"
    assert [i.id for i in items] == ["a", "b", "c", "d"]


def test_a_csv_template_and_kept_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,title,body,doi\nx,T1,B1,10.1/a\ny,T2,B2,\nz,T3\n")
    items = list(read_items(path, template="{title}: {body}", keep=["doi", "title"]))
    assert [(i.id, i.text, i.kept) for i in items[:2]] == [
        ("x", "T1: B1", {"doi": "10.1/a", "title": "T1"}),
        ("y", "T2: B2", {"doi": "", "title": "T2"}),
    ]
    assert items[2].problem is not None and "a.csv:4: template field 'body' is null" in items[2].problem
    assert items[2].kept == {"doi": None, "title": "T3"}  # a bad row still carries what it has


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"template": "{title} {nope}"}, r"a\.csv:1: has no column 'nope' for --template"),
        ({"keep": ["doi"]}, r"a\.csv:1: has no column 'doi' to --keep \(columns: id, title, text\)"),
    ],
)
def test_a_csv_without_a_template_or_kept_column_is_refused(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,title,text\n1,T,x\n")
    with pytest.raises(InputError, match=message):
        read_items(path, **changes)  # type: ignore[arg-type]


def test_kept_jsonl_fields_are_null_where_a_row_has_none(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "one", "doi": "d1", "year": 2001}\n{"text": "two"}\nnot json\n')
    items = list(read_items(path, keep=["year", "doi"]))
    assert [i.kept for i in items] == [
        {"year": 2001, "doi": "d1"},
        {"year": None, "doi": None},
        {"year": None, "doi": None},  # an unreadable row: its record has the same keys
    ]
    assert list(next(iter(read_items(path, keep=["year", "doi"]))).kept or {}) == ["year", "doi"]
    assert next(iter(read_items(path))).kept is None


def test_keep_and_template_need_rows_with_fields(tmp_path: Path) -> None:
    text = tmp_path / "a.txt"
    text.write_text("one\n")
    with pytest.raises(ConfigError, match=r"a\.txt: --keep reads an input's fields, and a TXT input"):
        read_items(text, keep=["doi"])
    with pytest.raises(ConfigError, match="--template reads an input's fields"):
        read_items(text, template="{a}")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n")
    with pytest.raises(
        ConfigError, match=r"--keep reads an input's fields, and documents \(a file an item\)"
    ):
        read_items(folder, keep=["doi"])


def test_keeping_a_record_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "one"}\n')
    with pytest.raises(ConfigError, match=r"--keep 'input', 'latency': they are names of keys corral"):
        read_items(path, keep=["doi", "input", "latency"])
