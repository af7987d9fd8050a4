"""What an evaluation shows: ``to_json()``'s documented shape and the terminal table."""

from __future__ import annotations

import json
import re

from pydantic import BaseModel

from corral.evaluation import Evaluation, evaluate
from tests.evaluation.conftest import Write, gold, out

SCORE_KEYS = {"precision", "recall", "f1", "tp", "fp", "fn"}


class Person(BaseModel):
    name: str | None = None
    age: int | None = None


def sample(write: Write, **options: object) -> Evaluation:
    # 1: name TP, age FP+FN. 2: missing (name FN). 3: extra. 4: error (name FN, age FN).
    output = write(
        "out.jsonl",
        [
            out("1", {"name": "Ann", "age": 3}, confidence={"name": {"value": 0.9, "method": "logprobs"}}),
            out("3", {"name": "Cy"}),
            {"id": "4", "input": "t", "output": None, "error": {"kind": "x", "message": "y"}},
        ],
    )
    golds = write(
        "gold.jsonl",
        [
            gold("1", {"name": "Ann", "age": 4}),
            gold("2", {"name": "Bo"}),
            gold("4", {"name": "Di", "age": 1}),
        ],
    )
    return evaluate(output, golds, Person, **options)  # type: ignore[arg-type]


def test_the_json_shape(write: Write) -> None:
    data = sample(write, bootstrap=50, seed=3).to_json()
    assert json.loads(json.dumps(data)) == data  # plain JSON: nothing a dumper cannot write
    assert set(data) == {
        "version", "overall", "macro", "fields", "counts", "missing", "extra", "errored", "bootstrap",
        "calibration", "items",
    }  # fmt: skip
    assert data["version"] == 1
    assert set(data["overall"]) == SCORE_KEYS | {"ci"}
    assert set(data["overall"]["ci"]) == {"precision", "recall", "f1"}
    assert all(len(v) == 2 for v in data["overall"]["ci"].values())
    # name: TP 1, FN 2 (items 2 and 4); age: FP 1, FN 2 (item 1's 3 vs 4, item 4's 1)
    assert {f: (s["tp"], s["fp"], s["fn"]) for f, s in data["fields"].items()} == {
        "name": (1, 0, 2),
        "age": (0, 1, 2),
    }
    assert list(data["fields"]) == ["name", "age"]
    assert data["overall"]["precision"] == 1 / 2 and data["overall"]["recall"] == 1 / 5
    assert data["macro"] == {
        "precision": (1.0 + 0.0) / 2,
        "recall": (1 / 3 + 0) / 2,
        "f1": (0.5 + 0) / 2,
        "fields": 2,
    }
    assert data["counts"] == {"gold": 3, "matched": 1, "errored": 1, "missing": 1, "extra": 1}
    assert (data["missing"], data["extra"], data["errored"]) == (["2"], ["3"], ["4"])
    assert data["bootstrap"] == {"resamples": 50, "seed": 3, "level": 0.95}
    assert data["calibration"]["count"] == 1 and data["calibration"]["ece"] == 0.09999999999999998
    assert set(data["calibration"]) == {
        "ece",
        "count",
        "accuracy",
        "confidence",
        "threshold",
        "above",
        "methods",
        "bins",
    }
    first = data["items"][0]
    assert first == {
        "id": "1",
        "status": "matched",
        "score": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "tp": 1, "fp": 1, "fn": 1},
        "mismatches": [{"path": "age", "got": 3, "want": 4}],
    }
    assert [(i["id"], i["status"]) for i in data["items"]] == [
        ("1", "matched"), ("2", "missing"), ("4", "error"), ("3", "extra"),
    ]  # fmt: skip


def test_the_table(write: Write) -> None:
    table = sample(write, bootstrap=50).table()
    lines = table.splitlines()
    assert lines[0].split() == ["field", "precision", "recall", "F1", "TP", "FP", "FN"]
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[1:6])}
    # name: precision 1/1, recall 1/3, F1 2/4; age: 0/1, 0/2, 0/3; overall (micro): 1/2, 1/5, 2/7
    assert [cell.split(" ")[0] for cell in rows["name"]] == ["1.000", "0.333", "0.500", "1", "0", "2"]
    assert [cell.split(" ")[0] for cell in rows["age"]] == ["0.000", "0.000", "0.000", "0", "1", "2"]
    assert [cell.split(" ")[0] for cell in rows["overall (micro)"]] == [
        "0.500",
        "0.200",
        "0.286",
        "1",
        "1",
        "4",
    ]
    assert re.fullmatch(r"1\.000 \[1\.000, 1\.000\]", rows["name"][0])  # the interval beside it
    assert set(lines[3]) <= {"─", " "}
    assert lines[5].split()[:4] == ["macro", "0.500", "0.167", "0.250"]
    assert "items: 3 in the gold: 1 matched, 1 errored, 1 missing; 1 in the output only (not scored)" in table
    assert "95% intervals from 50 bootstrap resamples" in table
    assert "calibration: ECE 0.100 over 1 values" in table


def test_the_table_without_intervals(write: Write) -> None:
    table = sample(write, bootstrap=0).table()
    assert "[" not in table.split("items:")[0]
    assert "bootstrap" not in table
