"""Fixtures of the evaluation tests: files of records written in the test's own directory."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

Write = Callable[[str, Iterable[Mapping[str, Any]]], Path]


@pytest.fixture
def write(tmp_path: Path) -> Write:
    """``write("out.jsonl", records)``: the records as JSON lines in a file of the test's directory."""

    def write(name: str, records: Iterable[Mapping[str, Any]]) -> Path:
        path = tmp_path / name
        path.write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records))
        return path

    return write


def out(item_id: str, output: Any, **extra: Any) -> dict[str, Any]:
    """An output record as corral writes it (``error`` null unless given)."""
    return {"id": item_id, "input": "text", "output": output, "error": None, **extra}


def gold(item_id: str | int, output: Any) -> dict[str, Any]:
    return {"id": item_id, "output": output}


def ratios(tp: int, fp: int, fn: int) -> tuple[float | None, float | None, float | None]:
    """Precision, recall, F1 from counts, as the tests compute them (None: 0/0)."""
    return (
        tp / (tp + fp) if tp + fp else None,
        tp / (tp + fn) if tp + fn else None,
        2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
    )
