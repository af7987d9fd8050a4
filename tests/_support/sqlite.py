"""Reading a run store the way anyone with a copy of the file can: a plain sqlite3 connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

__all__ = ["read_rows"]


def read_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Query a store with a plain sqlite3 connection of our own (WAL lets it read beside the store)."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()
