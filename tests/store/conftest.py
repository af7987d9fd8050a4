"""The run store's fixtures: a folder for one, and one opened in it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.store import RunStore


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def store(store_dir: Path) -> Iterator[RunStore]:
    with RunStore.open(store_dir) as opened:
        yield opened
