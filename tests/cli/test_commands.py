"""The ``corral`` command end to end: ``main`` in this process (the ``corral`` fixture) talking to the
simulator over a socket."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.sim import ScriptCall, SimConfig, SimulatorThread
from tests._support import PERSON
from tests._support.cli import Corral


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimConfig(latency_ms=10, seed=1)) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_api_keys(no_api_keys: None) -> None:
    """The commands see no provider's key this machine may have set."""


def records(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_run_extracts_the_article_to_stdout(corral: Corral, sim: SimulatorThread) -> None:
    result = corral(
        "run", "examples/people.txt", "--schema", PERSON, "--base-url", sim.url, "--model", "sim-1"
    )
    assert result.returncode == 0, result.stderr
    rows = records(result.stdout)
    assert [r["id"] for r in rows] == [str(n) for n in range(1, 8)]
    assert rows[0]["output"] == {"name": "John", "age": 20}
    assert set(rows[0]) == {"id", "input", "output", "error", "attempts", "usage", "latency", "grounding"}
    assert rows[0]["usage"]["total_tokens"] > 0  # type: ignore[index]
    assert "7 items: 7 ok · 7 requests" in result.stderr


def test_run_jsonl_to_file_in_completion_order(corral: Corral, sim: SimulatorThread, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"key": f"k{n}", "body": f"My name is Al{n} and I am {n} years old"}) + "\n"
            for n in range(30)
        )
    )
    out = tmp_path / "out.jsonl"
    result = corral(
        "run",
        str(source),
        "--schema",
        PERSON,
        "--base-url",
        sim.url,
        "--text-field",
        "body",
        "--id-field",
        "key",
        "--order",
        "completion",
        "--concurrency",
        "8",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    rows = records(out.read_text())
    assert sorted(r["id"] for r in rows) == sorted(f"k{n}" for n in range(30))  # type: ignore[type-var]


def test_malformed_jsonl_line_is_recorded_and_the_rest_extracted(
    corral: Corral, sim: SimulatorThread, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"text": "My name is Ann and I am 30 years old"}\n{"text": broken\n'
        '{"text": "My name is Ben and I am 31 years old"}\n'
    )
    result = corral("run", str(source), "--schema", PERSON, "--base-url", sim.url)
    assert result.returncode == 1
    rows = records(result.stdout)
    assert [r["error"] is None for r in rows] == [True, False, True]
    assert f"{source}:2: not valid JSON" in rows[1]["error"]["message"]  # type: ignore[index]
    assert f"{source}:2" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["examples/people.txt", "--schema", "nope/missing.py:Person"],
            "schema file nope/missing.py does not exist",
        ),
        (["examples/people.txt", "--schema", "missing.json"], "schema file missing.json does not exist"),
        (["examples/people.txt", "--schema", "corral.errors:CorralError"], "not a pydantic model"),
        (["examples/none.txt", "--schema", PERSON], "examples/none.txt: does not exist"),
        (["examples/people.txt", "--schema", PERSON, "--model", "gpt-4o"], "unknown model 'gpt-4o'"),
        (
            ["examples/people.txt", "--schema", PERSON, "--model", "openai/gpt-4o-mini"],
            "set the OPENAI_API_KEY environment variable",
        ),
    ],
)
def test_usage_errors_name_the_fix_before_sending(corral: Corral, args: list[str], message: str) -> None:
    result = corral("run", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback


def test_empty_input_file(corral: Corral, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = corral(
        "run", str(empty), "--schema", PERSON, "--base-url", "http://127.0.0.1:9/v1", "--model", "x"
    )
    assert result.returncode == 2
    assert f"{empty}: is empty" in result.stderr


def test_unreachable_server_stops_the_run_at_once_naming_the_fix(corral: Corral) -> None:
    result = corral(
        "run",
        "examples/people.txt",
        "--schema",
        PERSON,
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "x",
    )
    assert result.returncode == 2
    assert "cannot connect to 127.0.0.1:9" in result.stderr
    assert "is the server running, and is the base URL right?" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["run", "sim", "bench"])
def test_help_has_an_example(corral: Corral, command: str) -> None:
    result = corral(command, "--help")
    assert result.returncode == 0
    assert "example:" in result.stdout


def test_bench_prints_the_article_table(corral: Corral, tmp_path: Path) -> None:
    plot = tmp_path / "bench.png"
    result = corral("bench", "--latency-ms", "40", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["Method", "Semaphore", "Article"]
    assert len(lines) == 7 and all(line.endswith("7/7") for line in lines[2:])
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_stdin_many_and_prompt(corral: Corral) -> None:
    seen: list[str] = []

    def capture(call: ScriptCall) -> None:
        seen.append(call.body["messages"][0]["content"])

    with SimulatorThread(script=capture) as server:
        result = corral(
            "run",
            "-",
            "--schema",
            PERSON,
            "--many",
            "--prompt",
            "List everyone mentioned.",
            "--base-url",
            server.url,
            "--model",
            "sim-1",
            stdin="John is 20 years old and Mary is 31.\n",
        )
    assert result.returncode == 0, result.stderr
    (row,) = records(result.stdout)
    assert row["output"] == [{"name": "John", "age": 20}, {"name": "Mary", "age": 31}]
    assert seen == ["List everyone mentioned."]


def test_ray_without_the_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.errors import ConfigError
    from corral.jobs._ray import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'corral\[ray\]'"):
        import_ray()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["examples/people.txt"], "pass -o FILE"),
        (["examples/people.txt", "-o", "out.jsonl", "--batch"], "a provider batch runs at the provider"),
        (
            ["examples/people.txt", "-o", "out.jsonl", "--max-cost", "1"],
            "--max-cost does not work with --ray",
        ),
        (["examples", "-o", "out.jsonl"], "--ray does not read documents yet"),
    ],
)
def test_ray_refuses_what_it_cannot_do_before_starting(
    corral: Corral, options: list[str], words: str
) -> None:
    result = corral("run", *options, "--schema", PERSON, "--ray")
    assert result.returncode == 2
    assert words in result.stderr


@pytest.mark.ray
def test_ray_at_an_address_nobody_answers_is_named_at_once(corral: Corral, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed")
    out = str(tmp_path / "out.jsonl")
    result = corral(
        "run",
        "examples/people.txt",
        "--schema",
        PERSON,
        "--model",
        "sim-1",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "-o",
        out,
        "--ray",
        "127.0.0.1:1",
    )
    assert result.returncode == 2
    assert "no Ray cluster answers at 127.0.0.1:1" in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_an_output_that_is_the_input_is_refused_before_anything_is_written(
    corral: Corral, tmp_path: Path
) -> None:
    # Issue 15, M7: a corral output used as the input with the same -o was truncated while read.
    source = tmp_path / "out.jsonl"
    records = [
        {"id": str(n), "input": f"My name is P{n} and I am 20", "output": {"name": f"P{n}", "age": 20},
         "error": None, "attempts": 1, "usage": {}, "latency": 0.1}
        for n in range(300)
    ]  # fmt: skip
    source.write_text("".join(json.dumps(record) + "\n" for record in records))
    before = source.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    for output in (source, link):
        result = corral("run", str(source), "--text-field", "input", "--schema", PERSON, "-o", str(output))
        assert result.returncode == 2, result.stderr
        assert "is the input" in result.stderr
    assert source.read_bytes() == before


def test_a_csv_quote_never_closed_keeps_the_rows_before_it_and_fails_the_run(
    corral: Corral, sim: SimulatorThread, tmp_path: Path
) -> None:
    # Issue 15, L7: the rest of the file became one item and the run exited 0.
    source = tmp_path / "in.csv"
    source.write_text(
        'id,text\na,"My name is Ann and I am 30 years old"\nb,My name is Ben and I am 31 years old\n'
        'c,"My name is Cy and I am 32\nd,My name is Di and I am 33 years old\n'
    )
    out = tmp_path / "out.jsonl"
    result = corral("run", str(source), "--schema", PERSON, "--base-url", sim.url, "-o", str(out))
    assert result.returncode == 2, result.stderr
    assert f"{source}:4: a quoted field that starts on this line is never closed" in result.stderr
    assert [(r["id"], r["error"]) for r in records(out.read_text())] == [("a", None), ("b", None)]


def test_a_csv_row_that_is_not_utf8_is_that_rows_error_and_the_rest_are_extracted(
    corral: Corral, sim: SimulatorThread, tmp_path: Path
) -> None:
    # Issue 15, L8: a bad byte in row 2 stopped the run (exit 2) and named the wrong line.
    source = tmp_path / "in.csv"
    source.write_bytes(
        b"id,text\na,My name is Ann and I am 30 years old\nb,My name is Jos\xe9 and I am 31\n"
        b"c,My name is Cy and I am 32 years old\n"
    )
    result = corral("run", str(source), "--schema", PERSON, "--base-url", sim.url)
    assert result.returncode == 1, result.stderr
    rows = records(result.stdout)
    assert [(r["id"], r["error"] is None) for r in rows] == [("a", True), ("b", False), ("c", True)]
    assert rows[1]["error"]["message"] == f"{source}:3: is not UTF-8 text: save the file as UTF-8"  # type: ignore[index]
    assert f"corral: skipped {source}:3: is not UTF-8 text" in result.stderr
