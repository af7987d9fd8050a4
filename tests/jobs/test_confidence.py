"""Confidence per value end to end: ``corral run`` against a simulator that answers some fields wrong
and gives log-probabilities that follow its mistakes, then ``corral eval`` against the right answers:
the records carry each value's confidence, a re-run keeps it, and the calibration is measured."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from corral.sim import SimConfig, SimulatorThread
from tests._support import PERSON, run_args
from tests._support.cli import Corral

N = 120
PEOPLE = [(f"Person{n}", 20 + n % 50) for n in range(N)]


def test_values_carry_confidence_that_eval_finds_informative(corral: Corral, tmp_path: Path) -> None:
    source, out, gold, figures = (
        tmp_path / name for name in ("in.txt", "out.jsonl", "gold.jsonl", "eval.json")
    )
    source.write_text("".join(f"My name is {name} and I am {age} years old\n" for name, age in PEOPLE))
    gold.write_text("".join(json.dumps({"id": str(n), "output": {"name": name, "age": age}}) + "\n"
                            for n, (name, age) in enumerate(PEOPLE, start=1)))  # fmt: skip
    config = SimConfig(latency_ms=1, seed=4, field_errors={"age": 0.3})
    options = ("--mode", "json_schema", "--confidence", "logprobs", "-o", str(out))
    with SimulatorThread(config) as sim:
        ran = corral(*run_args(source, sim.url, *options))
        assert ran.returncode == 0, ran.stderr
        records = [json.loads(line) for line in out.read_text().splitlines()]
        again = corral(*run_args(source, sim.url, *options))  # answered from the store
    assert again.returncode == 0, again.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == records  # confidences kept
    assert all(set(r["confidence"]) == {"name", "age"} for r in records)
    assert all(entry["method"] == "logprobs" for r in records for entry in r["confidence"].values())

    wrong = [r["confidence"]["age"]["value"] for r, (_, age) in zip(records, PEOPLE, strict=True)
             if r["output"]["age"] != age]  # fmt: skip
    right = [r["confidence"]["age"]["value"] for r, (_, age) in zip(records, PEOPLE, strict=True)
             if r["output"]["age"] == age]  # fmt: skip
    assert 0.15 * N < len(wrong) < 0.45 * N
    assert sum(wrong) / len(wrong) < sum(right) / len(right) - 0.15  # the doubtful ones are the wrong ones

    scored = corral("eval", str(out), "--gold", str(gold), "--schema", PERSON, "--json", str(figures))
    assert scored.returncode == 0, scored.stderr
    calibration = json.loads(figures.read_text())["calibration"]
    assert calibration["count"] == 2 * N
    assert calibration["above"]["accuracy"] > calibration["accuracy"]
    assert "calibration: ECE" in scored.stdout


def test_a_server_not_known_to_give_logprobs_is_not_asked(corral: Corral, tmp_path: Path) -> None:
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("My name is Ann and I am 30 years old\n")
    with SimulatorThread(SimConfig(latency_ms=1)) as sim:
        ran = corral(*run_args(source, sim.url, "--mode", "json_schema", "-o", str(out)))
    assert ran.returncode == 0, ran.stderr
    (record,) = (json.loads(line) for line in out.read_text().splitlines())
    assert "confidence" not in record


def test_values_below_the_review_line_are_marked_for_a_person(corral: Corral, tmp_path: Path) -> None:
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("".join(f"My name is {name} and I am {age} years old\n" for name, age in PEOPLE))
    config = SimConfig(latency_ms=1, seed=4, field_errors={"age": 0.3})
    options = ("--mode", "json_schema", "--confidence", "logprobs", "--review-below", "0.6", "-o", str(out))
    with SimulatorThread(config) as sim:
        ran = corral(*run_args(source, sim.url, *options))
    assert ran.returncode == 0, ran.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    marked = [r for r in records if "review" in r]
    for record in records:
        doubtful = sorted(path for path, entry in record["confidence"].items() if entry["value"] < 0.6)
        assert record.get("review", []) == doubtful
    assert marked and f"{len(marked)} records to review" in ran.stderr
    wrong = {r["id"] for r, (_, age) in zip(records, PEOPLE, strict=True) if r["output"]["age"] != age}
    caught = wrong & {r["id"] for r in marked}
    assert len(caught) > len(wrong) / 2  # most wrong ages are among those to check


def test_without_logprobs_confidence_comes_from_agreement_among_samples(
    corral: Corral, tmp_path: Path
) -> None:
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    people = PEOPLE[:60]
    source.write_text("".join(f"My name is {name} and I am {age} years old\n" for name, age in people))
    config = SimConfig(latency_ms=1, seed=6, field_errors={"age": 0.3})
    asked: list[float] = []
    # Tool calls carry no log-probabilities: four further answers at temperature 1 vote.
    with SimulatorThread(config, script=lambda call: asked.append(call.body.get("temperature", 1))) as sim:
        ran = corral(*run_args(source, sim.url, "--mode", "tools", "--samples", "5", "-o", str(out)))
    assert ran.returncode == 0, ran.stderr
    assert asked.count(0) == len(people) and asked.count(1.0) == 4 * len(people)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(entry["method"] == "agreement" for r in records for entry in r["confidence"].values())
    assert all(r["confidence"]["age"]["value"] in (0.2, 0.4, 0.6, 0.8, 1.0) for r in records)
    wrong = [r["confidence"]["age"]["value"] for r, (_, age) in zip(records, people, strict=True)
             if r["output"]["age"] != age]  # fmt: skip
    right = [r["confidence"]["age"]["value"] for r, (_, age) in zip(records, people, strict=True)
             if r["output"]["age"] == age]  # fmt: skip
    assert wrong and right
    assert sum(wrong) / len(wrong) < sum(right) / len(right) - 0.2  # the samples seldom repeat a mistake
    assert all(r["confidence"]["name"]["value"] == 1.0 for r in records)  # names are never wrong here


def test_doubtful_values_are_asked_again_of_a_stronger_model(corral: Corral, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("".join(f"My name is {name} and I am {age} years old\n" for name, age in PEOPLE))
    errors = {"gpt-4o-mini:age": 0.4, "gpt-4o:age": 0.02}  # the smaller model errs more
    models: list[str] = []
    config = SimConfig(latency_ms=1, seed=8, field_errors=errors)
    with SimulatorThread(config, script=lambda call: models.append(call.model)) as sim:

        def run(out: Path, *options: str) -> list[dict[str, Any]]:
            args = ["--mode", "json_schema", "-o", str(out), "--model", "openai/gpt-4o-mini", *options]
            ran = corral("run", str(source), "--schema", PERSON, "--base-url", sim.url, *args)
            assert ran.returncode == 0, ran.stderr
            return [json.loads(line) for line in out.read_text().splitlines()]

        alone = run(tmp_path / "alone.jsonl")
        models.clear()
        both = run(tmp_path / "both.jsonl", "--review-below", "0.6", "--escalate", "openai/gpt-4o")

    def right(records: list[dict[str, Any]]) -> int:
        return sum(r["output"]["age"] == age for r, (_, age) in zip(records, PEOPLE, strict=True))

    escalated = [r for r in both if "escalation" in r]
    assert escalated and models.count("gpt-4o") == len(escalated) < N / 2  # only the doubtful ones
    for record in escalated:
        assert record["escalation"]["model"] == "gpt-4o" and "age" in record["escalation"]["paths"]
        assert record["escalation"]["first"]["name"] == record["output"]["name"]  # a sure value is kept
    assert right(both) > right(alone) + 0.15 * N  # the stronger model's ages replace the doubtful ones


def test_a_calibration_fitted_on_labelled_items_is_applied_to_a_run(corral: Corral, tmp_path: Path) -> None:
    source, out, gold, fitted = (
        tmp_path / name for name in ("in.txt", "out.jsonl", "gold.jsonl", "map.json")
    )
    source.write_text("".join(f"My name is {name} and I am {age} years old\n" for name, age in PEOPLE))
    gold.write_text("".join(json.dumps({"id": str(n), "output": {"name": name, "age": age}}) + "\n"
                            for n, (name, age) in enumerate(PEOPLE, start=1)))  # fmt: skip
    options = ("--mode", "json_schema", "--confidence", "logprobs")
    with SimulatorThread(SimConfig(latency_ms=1, seed=4, field_errors={"age": 0.3})) as sim:
        assert corral(*run_args(source, sim.url, *options, "-o", str(out))).returncode == 0
        scored = corral(
            "eval", str(out), "--gold", str(gold), "--schema", PERSON, "--fit-calibration", str(fitted)
        )
        assert scored.returncode == 0, scored.stderr
        again = tmp_path / "again.jsonl"
        ran = corral(
            *run_args(source, sim.url, *options, "--calibration", str(fitted), "-o", str(again), "--no-cache")
        )
    assert ran.returncode == 0, ran.stderr
    first = [json.loads(line) for line in out.read_text().splitlines()]
    second = [json.loads(line) for line in again.read_text().splitlines()]
    mapping = json.loads(fitted.read_text())["methods"]["logprobs"]
    assert mapping == sorted(mapping)
    for one, two in zip(first, second, strict=True):
        assert two["output"] == one["output"]
        assert {entry["method"] for entry in two["confidence"].values()} == {"logprobs (recalibrated)"}
    # The same answers, their confidences moved onto what was measured: order kept.
    raw = [one["confidence"]["age"]["value"] for one in first]
    mapped = [two["confidence"]["age"]["value"] for two in second]
    pairs = sorted(zip(raw, mapped, strict=True))
    assert all(low[1] <= high[1] for low, high in itertools.pairwise(pairs) if low[0] < high[0])
    assert mapped != raw
