"""Calibration: the expected calibration error and the reliability bins of a hand-made case."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from corral.evaluation import evaluate
from corral.evaluation._calibration import calibrate
from tests.evaluation.conftest import Write, gold, out


def test_ece_of_a_hand_case() -> None:
    # Five values: 0.95 right, 0.95 right, 0.95 wrong, 0.65 right, 0.15 wrong.
    #   bin [0.9, 1.0]: 3 values, mean confidence 0.95, accuracy 2/3, gap 0.95 - 2/3 = 0.28333
    #   bin [0.6, 0.7): 1 value, confidence 0.65, accuracy 1, gap 0.35
    #   bin [0.1, 0.2): 1 value, confidence 0.15, accuracy 0, gap 0.15
    #   ECE = 3/5 · 0.28333 + 1/5 · 0.35 + 1/5 · 0.15 = 0.17 + 0.07 + 0.03 = 0.27
    pairs = [(0.95, True, "logprobs"), (0.95, True, "logprobs"), (0.95, False, "logprobs"),
             (0.65, True, "agreement"), (0.15, False, "logprobs")]  # fmt: skip
    cal = calibrate(pairs, threshold=0.8)
    assert cal is not None
    assert cal.ece == pytest.approx(0.27)
    assert cal.count == 5 and cal.accuracy == pytest.approx(3 / 5)
    assert cal.confidence == pytest.approx((0.95 * 3 + 0.65 + 0.15) / 5)
    assert cal.above == 3 and cal.above_accuracy == pytest.approx(2 / 3)
    assert cal.methods == {"logprobs": 4, "agreement": 1}
    filled = [b for b in cal.bins if b.count]
    assert [(b.lo, b.hi, b.count) for b in filled] == [(0.1, 0.2, 1), (0.6, 0.7, 1), (0.9, 1.0, 3)]
    assert [b.confidence for b in filled] == pytest.approx([0.15, 0.65, 0.95])
    assert [b.accuracy for b in filled] == pytest.approx([0.0, 1.0, 2 / 3])
    assert len(cal.bins) == 10 and sum(b.count for b in cal.bins) == 5


def test_a_confidence_of_one_is_in_the_last_bin_and_perfect_calibration_is_zero() -> None:
    cal = calibrate([(1.0, True, "logprobs"), (0.0, False, "logprobs")])
    assert cal is not None
    assert cal.bins[-1].count == 1 and cal.bins[0].count == 1
    assert cal.ece == 0.0


def test_no_confidences_no_calibration() -> None:
    assert calibrate([]) is None


class Person(BaseModel):
    name: str | None = None
    age: int | None = None
    tags: list[str] = []


def test_calibration_from_the_records_confidences(write: Write) -> None:
    # Item 1: name right (0.95), age wrong (0.95), tags[0] right (0.65), tags[1] wrong (0.15).
    # Item 2: name right (0.95); its age has no confidence (not counted); "bogus" is no scored leaf.
    # Item 3 is an error: its confidences (if any) have no values to judge.
    # The same five values as the hand case above: ECE 0.27.
    def confident(value: float) -> dict[str, object]:
        return {"value": value, "method": "logprobs"}

    output = write(
        "out.jsonl",
        [
            out("1", {"name": "Ann", "age": 3, "tags": ["x", "y"]},
                confidence={"name": confident(0.95), "age": confident(0.95),
                            "tags[0]": confident(0.65), "tags[1]": confident(0.15)}),
            out("2", {"name": "Bob", "age": 4}, confidence={"name": 0.95, "bogus": confident(0.1)}),
            {"id": "3", "output": None, "error": {"kind": "x", "message": "y"}, "confidence": {"name": 0.5}},
        ],
    )  # fmt: skip
    golds = write(
        "gold.jsonl",
        [
            gold("1", {"name": "ann", "age": 4, "tags": ["x"]}),
            gold("2", {"name": "Bob", "age": 4}),
            gold("3", {"name": "Cy"}),
        ],
    )
    cal = evaluate(output, golds, Person, bootstrap=0).calibration
    assert cal is not None
    assert cal.count == 5
    assert cal.ece == pytest.approx(0.27)
    assert cal.methods == {"logprobs": 4, "unknown": 1}  # a bare number says no method
    lower = evaluate(output, golds, Person, bootstrap=0, confidence_threshold=0.5).calibration
    assert lower is not None and lower.above == 4  # 0.95, 0.95, 0.65, 0.95


def test_outputs_without_confidences_have_no_calibration(write: Write) -> None:
    ev = evaluate(
        write("o.jsonl", [out("1", {"name": "A"})]), write("g.jsonl", [gold("1", {"name": "A"})]), Person
    )
    assert ev.calibration is None
    assert ev.to_json()["calibration"] is None
