"""Reading gold (and output) files: JSONL records, CSV with dotted columns typed by the schema, the
CSV corral's own sink writes, and every bad line named by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from corral.errors import InputError
from corral.evaluation import evaluate, read_gold
from corral.io.sinks import open_sink
from corral.schema import load_spec
from tests.evaluation.conftest import Write, gold, out


class Address(BaseModel):
    city: str | None = None
    zip: str | None = None


class Person(BaseModel):
    name: str
    age: int | None = None
    score: float | None = None
    member: bool | None = None
    address: Address | None = None
    tags: list[str] = []


def csv_file(tmp_path: Path, text: str, name: str = "gold.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_gold_is_the_output_record_shape(write: Write) -> None:
    path = write(
        "gold.jsonl",
        [
            {**out("a", {"name": "Ann"}), "usage": {}, "latency": 1.0},  # a corrected output line
            gold(7, {"name": "Bob"}),  # an integer id is its text
        ],
    )
    assert read_gold(path, Person) == {"a": {"name": "Ann"}, "7": {"name": "Bob"}}


def test_csv_gold_with_dotted_columns_typed_by_the_schema(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "id,name,age,score,member,address.city,address.zip,tags\n"
        '1,Ann,42,3.5,true,Oslo,0150,"[""a"", ""b""]"\n'
        "\n"  # a blank line is skipped
        "2,Bob,,,no,,,\n"
        '3,"Cy, Jr.",7.0,2,1,"Multi\nline",,[]\n',
    )
    assert read_gold(path, Person) == {
        "1": {
            "name": "Ann",
            "age": 42,
            "score": 3.5,
            "member": True,
            "address": {"city": "Oslo", "zip": "0150"},  # a string field keeps its leading zero
            "tags": ["a", "b"],
        },
        "2": {"name": "Bob", "member": False},
        "3": {
            "name": "Cy, Jr.",
            "age": 7,
            "score": 2,
            "member": True,
            "address": {"city": "Multi\nline"},
            "tags": [],
        },
    }
    assert type(read_gold(path, Person)["1"]["age"]) is int


def test_the_csv_corral_writes_is_a_gold_file(tmp_path: Path, write: Write) -> None:
    records = [
        out(
            "1",
            {
                "name": "=Ann",
                "age": 42,
                "score": 1.5,
                "member": True,
                "address": {"city": "Oslo"},
                "tags": ["x"],
            },
        ),
        out("2", {"name": "Bob", "age": None, "score": None, "member": None, "address": None, "tags": []}),
    ]
    spec = load_spec(Person)
    path = tmp_path / "written.csv"
    with open_sink(str(path), "csv", spec) as sink:
        for record in records:
            sink.write(record)
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("id,input,output.name,output.age,output.score,output.member,output.address.city")
    # Read back as gold, the CSV holds what the JSONL holds: scored against it, every value is right:
    # item 1's name, age, score, member, address.city and its one tag, and item 2's name.
    ev = evaluate(write("out.jsonl", records), path, Person, bootstrap=0)
    assert (ev.overall.tp, ev.overall.fp, ev.overall.fn) == (7, 0, 0)
    assert read_gold(path, Person)["1"]["name"] == "=Ann"  # the sink's guard against formulas is undone


def test_a_many_schema_reads_its_list_from_one_json_column(tmp_path: Path) -> None:
    path = csv_file(tmp_path, 'id,output\n1,"[{""name"": ""Ann""}]"\n2,\n')
    assert read_gold(path, list[Person]) == {"1": [{"name": "Ann"}], "2": None}


def test_the_output_may_be_csv_too(tmp_path: Path, write: Write) -> None:
    output = csv_file(
        tmp_path,
        "id,input,output.name,output.age,error.kind,error.message\n1,t,Ann,3,,\n2,t,,,invalid_output,bad\n",
        "out.csv",
    )
    golds = write("gold.jsonl", [gold("1", {"name": "Ann", "age": 3}), gold("2", {"name": "B"})])
    ev = evaluate(output, golds, Person, bootstrap=0)
    assert ev.errored == ("2",)
    assert (ev.overall.tp, ev.overall.fp, ev.overall.fn) == (2, 0, 1)


@pytest.mark.parametrize(
    ("lines", "line", "why"),
    [
        (['{"id": "1", "output": {}}', "{not json"], 2, "not valid JSON"),
        (['{"id": "1", "output": {}}', "", "[1, 2]"], 3, "expected a JSON object, got a list"),
        (['{"output": {}}'], 1, 'has no "id"'),
        (['{"id": "1", "gold": {}}'], 1, 'has no "output"'),
        (['{"id": "1", "output": ["a"]}'], 1, '"output" is a list, not an object'),
        (
            ['{"id": "1", "output": {}}', '{"id": "1", "output": {}}'],
            2,
            "id '1' is here again (first on line 1)",
        ),
        (
            ['{"id": "1", "output": null, "error": {"kind": "x", "message": "y"}}'],
            1,
            "is an error, not a gold",
        ),
    ],
)
def test_bad_jsonl_gold_lines_are_named(tmp_path: Path, lines: list[str], line: int, why: str) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_gold(path, Person)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert why in str(caught.value)
    assert caught.value.line == line


@pytest.mark.parametrize(
    ("text", "line", "why"),
    [
        ("id,name,age\n1,Ann,3\n2,Bob,forty\n", 3, "column 'age': 'forty' is not an integer"),
        ("id,name,age\n1,Ann,3.5\n", 2, "'3.5' is not an integer"),
        ("id,name,member\n1,Ann,maybe\n", 2, "is not a boolean"),
        ("id,name,score\n1,Ann,nan\n", 2, "is not a number"),
        ("id,name,tags\n1,Ann,[a\n", 2, "column 'tags' holds a list or an object, as JSON"),
        ("id,name,adress.city\n1,Ann,Oslo\n", 1, "column 'adress.city' that is no field of the schema"),
        ("id,name,age.years\n1,Ann,3\n", 1, "column 'age.years' that is no field"),
        ("name,age\nAnn,3\n", 1, "has no column 'id'"),
        ("id,name\n1,Ann\n,Bob\n", 3, "has no id"),
        ("id,name\n1,Ann,extra\n", 2, "has 3 cells, the header 2"),
        ('id,name\n1,Ann\n2,"Bob\n3,Cy\n', 3, "unreadable CSV row"),
        ("id,name\n1,Ann\n1,Bob\n", 3, "id '1' is here again (first on line 2)"),
        ("id,output.name,output.nom\n1,Ann,hm\n", 1, "column 'output.nom' that is no field"),
        (
            "id,name,notes\n1,Ann,hm\n",
            1,
            "column 'notes' that is no field of the schema (its fields: name, age",
        ),
    ],
)
def test_bad_csv_gold_rows_are_named(tmp_path: Path, text: str, line: int, why: str) -> None:
    path = csv_file(tmp_path, text)
    with pytest.raises(InputError) as caught:
        read_gold(path, Person)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert why in str(caught.value)


def test_a_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gold.csv"
    path.write_bytes(b"id,name\n1,Ann\n2,B\xe9\n")
    with pytest.raises(InputError, match=r"gold\.csv:3: is not UTF-8"):
        read_gold(path, Person)


def test_whole_file_problems(tmp_path: Path, write: Write) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_gold(tmp_path / "nowhere.jsonl", Person)
    with pytest.raises(InputError, match=r"unknown gold format '\.txt'"):
        read_gold(csv_file(tmp_path, "x", "gold.txt"), Person)
    with pytest.raises(InputError, match="is empty: there are no gold records"):
        read_gold(write("gold.jsonl", []), Person)
    golds = write("gold.jsonl", [gold("1", {"name": "A"})])
    bad_output = tmp_path / "out.jsonl"
    bad_output.write_text('{"id": "1", "output": {}, "error": null}\nnope\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"out\.jsonl:2: not valid JSON"):
        evaluate(bad_output, golds, Person)
