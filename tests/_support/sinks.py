"""A sink that keeps every record in memory, for tests that run a job without an output file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self


class ListSink:
    """Keeps each record written (a copy), in order; ``keep=False`` drops them instead."""

    path: str | None = None

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep
        self.records: list[dict[str, Any]] = []

    def write(self, record: Mapping[str, Any]) -> None:
        if self.keep:
            self.records.append(dict(record))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
