"""``extract_frame`` on each kind of table, through the simulator: the returned columns are the JSONL
output of the same job (same values, errors, attempts), rows in their order, a bad row its own error,
identical texts asked once, a killed call resumed from its store."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from corral import extract_frame
from corral.errors import ConfigError, InputError
from corral.sim import SimConfig, SimulatorThread
from tests._support import PERSON, ROOT, run_args
from tests._support.cli import Corral

N = 60
TEXTS = [f"My name is Person{n} and I am {18 + n % 60} years old" for n in range(N)]


@pytest.fixture(scope="module")
def sim() -> Any:
    # Some answers invalid (re-asked), latency spread so that rows finish out of order.
    config = SimConfig(latency_ms=15, latency_dist="lognormal", latency_sigma=0.8, invalid_rate=0.1, seed=5)
    with SimulatorThread(config) as running:
        yield running


def options(sim: Any) -> dict[str, Any]:
    return {"model": "sim-1", "base_url": sim.url, "concurrency": 8}


def table_of(kind: str, data: dict[str, list[Any]]) -> Any:
    if kind == "pandas":
        return pd.DataFrame(data)
    if kind == "polars":
        return pl.DataFrame(data)
    if kind == "arrow":
        return pa.table(data)
    import datasets

    return datasets.Dataset.from_dict(data)


def column(table: Any, name: str) -> list[Any]:
    if isinstance(table, pd.DataFrame):
        return [None if value is None or value is pd.NA else value for value in table[name].tolist()]
    if isinstance(table, pl.DataFrame):
        return list(table[name].to_list())
    if isinstance(table, pa.Table):
        return list(table.column(name).to_pylist())
    return list(table[name])


def jsonl_output(
    corral_cli: Corral, tmp_path: Path, sim: Any, rows: list[dict[str, Any]], *more: str
) -> list[Any]:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    ran = corral_cli(*run_args(source, sim.url, "-o", str(out), *more))
    assert ran.returncode in (0, 1) and ran.stderr.startswith("corral: "), ran.stderr  # 1: some rows failed
    return [json.loads(line) for line in out.read_text().splitlines()]


#: some answers invalid (re-asked, a few rows failing for good); asked one at a time, so that two runs
#: meet the same faults in the same order
FAULTY = SimConfig(latency_ms=2, invalid_rate=0.3, seed=5)


@pytest.mark.parametrize("kind", ["pandas", "polars", "arrow", "datasets"])
def test_each_kind_of_table_comes_back_with_the_jsonl_outputs_columns(
    kind: str, corral: Corral, tmp_path: Path
) -> None:
    table = table_of(kind, {"text": TEXTS, "n": list(range(N))})
    with SimulatorThread(FAULTY) as sim:
        result = extract_frame(table, PERSON, model="sim-1", base_url=sim.url, concurrency=1)
    assert type(result) is type(table)
    # The table's own columns, unchanged and in their order, then the new ones.
    assert column(result, "n") == list(range(N)) and column(result, "text") == TEXTS
    rows = [{"id": str(n), "text": text} for n, text in enumerate(TEXTS)]
    with SimulatorThread(FAULTY) as sim:
        expected = jsonl_output(corral, tmp_path, sim, rows, "--concurrency", "1", "--no-cache")
    assert column(result, "extraction") == [record["output"] for record in expected]
    assert column(result, "error") == [record["error"] for record in expected]
    assert column(result, "attempts") == [record["attempts"] for record in expected]
    assert any(attempts > 1 for attempts in column(result, "attempts")), "some answers should be re-asked"
    assert any(error is not None for error in column(result, "error")), "some rows should fail for good"
    grounding = column(result, "grounding")
    assert all({entry["path"] for entry in spans or []} <= {"name"} for spans in grounding)
    assert any(spans for spans in grounding)
    assert column(result, "cost") == [0.0] * N  # the simulator's model is priced, at nothing


def _extract(table: Any, sim: Any, **more: Any) -> Any:
    return extract_frame(table, PERSON, **options(sim), **more)


@pytest.mark.parametrize("kind", ["pandas", "polars", "arrow", "datasets"])
def test_a_template_with_a_missing_field_errs_on_that_row_only(kind: str, sim: Any) -> None:
    titles: list[str | None] = [f"Note {n}" for n in range(10)]
    titles[3] = None
    table = table_of(kind, {"title": titles, "body": TEXTS[:10]})
    result = _extract(table, sim, template="{title}\n\n{body}")
    errors = column(result, "error")
    assert [n for n, error in enumerate(errors) if error is not None] == [3]
    assert errors[3]["kind"] == "input" and "template field 'title' is null" in errors[3]["message"]
    values = column(result, "extraction")
    assert values[3] is None
    assert [value["name"] for n, value in enumerate(values) if n != 3] == [
        f"Person{n}" for n in range(10) if n != 3
    ]


def test_flattened_columns_and_a_prefix(sim: Any) -> None:
    frame = pd.DataFrame({"text": TEXTS[:5], "error": ["mine"] * 5})
    with pytest.raises(ConfigError, match=r"already has a column 'error'.*prefix"):
        _extract(frame, sim)
    result = _extract(frame, sim, flatten=True, prefix="p_")
    assert list(result.columns) == [
        "text",
        "error",
        "p_name",
        "p_age",
        "p_error",
        "p_attempts",
        "p_cost",
        "p_grounding",
    ]
    assert result["p_age"].tolist() == [18, 19, 20, 21, 22]
    assert str(result["p_age"].dtype) == "int64[pyarrow]"  # typed, not object
    assert result["error"].tolist() == ["mine"] * 5


def test_identical_texts_are_asked_once(tmp_path: Path) -> None:
    distinct = [f"My name is Twin{n} and I am {20 + n} years old" for n in range(30)]
    texts = [distinct[n % 30] for n in range(100)]  # 70 of the 100 rows repeat an earlier one
    with SimulatorThread(SimConfig(latency_ms=5, seed=1)) as sim:
        result = _extract(pl.DataFrame({"text": texts}), sim)
        assert len(sim.log) == 30
    assert [value["name"] for value in result["extraction"].to_list()] == [
        f"Twin{n % 30}" for n in range(100)
    ]


def test_refusals_name_what_to_change(sim: Any) -> None:
    frame = pd.DataFrame({"body": ["x"], "id": ["a"]})
    with pytest.raises(ConfigError, match=r"no column 'text' \(columns: body, id\); pass text="):
        _extract(frame, sim)
    with pytest.raises(ConfigError, match="unknown option 'concurency'"):
        extract_frame(frame, PERSON, text="body", concurency=3)
    twice = pd.DataFrame({"text": ["a", "b"], "key": ["k", "k"]})
    with pytest.raises(ConfigError, match="rows 0 and 1 have the same id 'k'"):
        _extract(twice, sim, id="key")
    with pytest.raises(ConfigError, match=r"takes a pandas or polars DataFrame.*not a builtins\.list"):
        extract_frame(["a text"], PERSON)


def test_a_column_of_mixed_types_is_named_with_the_fix(sim: Any) -> None:
    with pytest.raises(InputError, match=r"rows 0–2 of the table cannot be read .*astype\('string'\)"):
        _extract(pd.DataFrame({"text": ["My name is Al", 3, None]}), sim)


def test_an_empty_table_comes_back_with_empty_columns(sim: Any) -> None:
    result = _extract(pa.table({"text": pa.array([], pa.string())}), sim)
    assert result.num_rows == 0
    assert result.column_names == ["text", "extraction", "error", "attempts", "cost"]


def test_nothing_heavy_is_imported_until_a_table_of_its_kind_is_given() -> None:
    code = (
        "import sys, corral; corral.extract_frame; "
        "heavy = lambda: sorted(m for m in ('pandas', 'pyarrow', 'polars', 'datasets') if m in sys.modules); "
        "print(heavy()); import polars; from corral.frames._convert import kind_of; "
        "kind_of(polars.DataFrame({'text': ['x']})); print(heavy())"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["[]", "['polars', 'pyarrow']"]


def test_a_missing_library_is_named_with_its_install_hint(monkeypatch: pytest.MonkeyPatch, sim: Any) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pyarrow is not installed: pip install 'corral\[pandas\]'"):
        _extract(pd.DataFrame({"text": ["x"]}), sim)


def test_a_cost_cap_leaves_the_rest_not_started(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"sim-1": {"input": 10.0, "output": 10.0}}))
    with SimulatorThread(SimConfig(latency_ms=5, seed=1)) as sim:
        result = _extract(
            pa.table({"text": TEXTS}), sim, store=str(tmp_path / "store"), prices=str(prices), max_cost=0.03
        )
    errors = result.column("error").to_pylist()
    started = [error is None for error in errors]
    assert any(started) and not all(started)
    assert {error["kind"] for error in errors if error is not None} == {"not_started"}
    assert all(cost > 0 for cost, ok in zip(result.column("cost").to_pylist(), started, strict=True) if ok)


def test_a_killed_call_resumes_from_its_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    script = textwrap.dedent(
        f"""
        import pandas as pd
        import corral
        texts = {TEXTS * 5!r}
        frame = pd.DataFrame({{"text": [t + f" (copy {{n // {N}}})" for n, t in enumerate(texts)]}})
        corral.extract_frame(
            frame, {PERSON!r}, model="sim-1", base_url=URL, concurrency=4, store={str(store)!r}
        )
        """
    )
    texts = [t + f" (copy {n // N})" for n, t in enumerate(TEXTS * 5)]
    with SimulatorThread(SimConfig(latency_ms=40, seed=3)) as sim:
        process = subprocess.Popen(
            [sys.executable, "-c", f"URL = {sim.url!r}\n{script}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60  # a guard against a hang, not a measurement
        while time.monotonic() < deadline and len(sim.log) < 100:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        kept = _stored(store)
        assert 50 <= len(kept) < len(texts) - 8, "the kill should land mid-run"
        asked_before = len(sim.log)

        result = extract_frame(
            pd.DataFrame({"text": texts}), PERSON, model="sim-1", base_url=sim.url, concurrency=4, store=store
        )
        asked_again = [entry.text for entry in list(sim.log)[asked_before:]]
    assert not set(asked_again) & kept, "a row finished before the kill was asked again"
    assert len(asked_again) == len(texts) - len(kept)
    assert result["error"].isna().all()
    assert [value["name"] for value in result["extraction"].tolist()] == [
        f"Person{n % N}" for n in range(len(texts))
    ]


def _stored(store: Path) -> set[str]:
    """The texts of the rows the store holds as finished."""
    with sqlite3.connect(store) as conn:
        return {json.loads(record)["input"] for (record,) in conn.execute("SELECT record FROM items")}
