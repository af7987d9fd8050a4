"""``corral eval`` end to end: an output and its gold written here, the command run in this process.
The figures themselves are checked in tests/evaluation; here, what the command does with them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests._support import PERSON
from tests._support.cli import Corral


def sure(**values: float) -> dict[str, dict[str, object]]:
    return {path: {"value": value, "method": "logprobs"} for path, value in values.items()}


OUTPUT = [
    {"id": "1", "input": "t1", "output": {"name": "John Smith", "age": 41}, "error": None,
     "confidence": sure(name=0.95, age=0.9)},
    {"id": "2", "input": "t2", "output": {"name": "Maria", "age": 33}, "error": None,
     "confidence": sure(name=0.99, age=0.4)},
    {"id": "3", "input": "t3", "output": None, "error": {"kind": "invalid_output", "message": "no"}},
]  # fmt: skip
GOLD = [
    {"id": "1", "output": {"name": "john  smith", "age": 41}},
    {"id": "2", "output": {"name": "Maria", "age": 34}},
    {"id": "3", "output": {"name": "Ann", "age": 5}},
]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    out, gold = tmp_path / "out.jsonl", tmp_path / "gold.jsonl"
    out.write_text("".join(json.dumps(record) + "\n" for record in OUTPUT))
    gold.write_text("".join(json.dumps(record) + "\n" for record in GOLD))
    return out, gold


def test_eval_prints_the_table_writes_the_json_and_lists_the_worst_items(
    corral: Corral, files: tuple[Path, Path], tmp_path: Path
) -> None:
    out, gold = files
    figures = tmp_path / "eval.json"
    ran = corral("eval", str(out), "--gold", str(gold), "--schema", PERSON, "--json", str(figures))
    assert ran.returncode == 0, ran.stderr
    # name: 2 right (one after folding case and spaces), 1 lost to an error; age: 1 right, 1 wrong.
    assert "overall (micro)" in ran.stdout and "items: 3 in the gold: 2 matched, 1 errored" in ran.stdout
    assert "age: 33, gold 34" in ran.stdout
    data = json.loads(figures.read_text())
    assert (data["fields"]["name"]["tp"], data["fields"]["name"]["fn"]) == (2, 1)
    assert (data["fields"]["age"]["tp"], data["fields"]["age"]["fp"], data["fields"]["age"]["fn"]) == (
        1,
        1,
        2,
    )
    assert data["errored"] == ["3"]
    assert data["calibration"]["count"] == 4


@pytest.mark.parametrize(("threshold", "code"), [("0.5", 0), ("0.9", 1)])
def test_min_f1_fails_the_command_below_it(
    corral: Corral, files: tuple[Path, Path], threshold: str, code: int
) -> None:
    out, gold = files
    ran = corral(
        "eval", str(out), "--gold", str(gold), "--schema", PERSON, "--min-f1", threshold, "--bootstrap", "0"
    )
    assert ran.returncode == code
    assert ("is below --min-f1" in ran.stderr) == (code == 1)


def test_a_bad_gold_line_is_named(corral: Corral, files: tuple[Path, Path]) -> None:
    out, gold = files
    gold.write_text(gold.read_text() + "{not json\n")
    ran = corral("eval", str(out), "--gold", str(gold), "--schema", PERSON)
    assert ran.returncode == 2
    assert f"{gold}:4" in ran.stderr
