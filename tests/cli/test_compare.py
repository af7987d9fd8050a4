"""``corral compare``: three configurations over one sample against the simulator, each a job of its
own (a re-run asks nothing), the table with the Pareto front and the plot."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from corral.errors import ConfigError
from corral.evaluation import Compared, Configuration, pareto_front
from corral.sim import SimConfig, SimulatorThread
from tests._support import PERSON
from tests._support.cli import Corral

PEOPLE = [(f"Person{n}", 20 + n % 50) for n in range(50)]


def test_three_configurations_on_one_sample_give_a_table_and_a_plot(corral: Corral, tmp_path: Path) -> None:
    source, gold, folder = tmp_path / "in.txt", tmp_path / "gold.jsonl", tmp_path / "cmp"
    source.write_text("".join(f"My name is {name} and I am {age} years old\n" for name, age in PEOPLE))
    gold.write_text("".join(json.dumps({"id": str(n), "output": {"name": name, "age": age}}) + "\n"
                            for n, (name, age) in enumerate(PEOPLE, start=1)))  # fmt: skip
    configs = ["small:model=openai/gpt-4o-mini", "big:model=openai/gpt-4o",
               "strict:model=openai/gpt-4o-mini,mode=json_schema"]  # fmt: skip
    # The smaller model gets ages wrong more often than the bigger one.
    errors = {"gpt-4o-mini:age": 0.4, "gpt-4o:age": 0.05}
    with SimulatorThread(SimConfig(latency_ms=1, seed=2, field_errors=errors)) as sim:
        args = ["compare", str(source), "--gold", str(gold), "--schema", PERSON, "--base-url", sim.url,
                "--sample", "30", "-o", str(folder), "--plot", str(folder / "front.png"),
                "--json", str(folder / "table.json")]  # fmt: skip
        for config in configs:
            args += ["--config", config]
        ran = corral(*args)
        asked = len(sim.log)
        again = corral(*args)
        assert len(sim.log) == asked  # every configuration's answers were in its store
    assert ran.returncode == 0 and again.returncode == 0, ran.stderr + again.stderr
    rows = json.loads((folder / "table.json").read_text())
    assert [row["name"] for row in rows] == ["small", "big", "strict"]
    assert asked == 3 * 30
    for row in rows:
        assert row["status"] == "completed" and 0.5 < row["f1"] <= 1.0 and row["cost"] > 0
        assert row["f1_ci"][0] <= row["f1"] <= row["f1_ci"][1]
    small, big, _strict = rows
    assert big["cost"] > small["cost"] and big["f1"] > small["f1"]  # more accurate, at a price
    assert small["front"] and big["front"]
    assert "◆ on the Pareto front" in ran.stdout and "small" in ran.stdout
    assert (folder / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((folder / "sample.jsonl").read_text().splitlines()) == 30


def test_a_configuration_is_read_or_refused_with_the_keys_it_may_set() -> None:
    assert Configuration.parse("fast:model=openai/gpt-4o-mini,max-tokens=200") == Configuration(
        "fast", {"model": "openai/gpt-4o-mini", "max_tokens": 200}
    )
    assert Configuration.parse("model=openai/gpt-4o").name == "openai-gpt-4o"
    with pytest.raises(ConfigError, match="'temperature' is not one of model, base-url"):
        Configuration.parse("x:temperature=1")


def entry(f1: float, cost: float | None, latency: float) -> Compared:
    evaluation: Any = SimpleNamespace(overall=SimpleNamespace(f1=f1))
    return Compared(Configuration("x", {}), Path("x"), evaluation, cost, latency, "completed")


def test_the_pareto_front_keeps_what_nothing_beats() -> None:
    results = [entry(0.9, 1.0, 1.0), entry(0.8, 2.0, 2.0), entry(0.95, 5.0, 1.0), entry(0.7, 0.5, 3.0),
               entry(0.9, None, 1.0)]  # fmt: skip
    # the second is beaten by the first on all three; the last, unpriced, by the first
    assert pareto_front(results) == [True, False, True, True, False]
