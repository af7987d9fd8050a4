"""What each endpoint and model was found to allow and to take (the ``endpoints`` table).

The limits its headers said (or the adaptive rate that held) and the structured-output mode that
worked, so that the next run paces from its first request and asks in a mode the server takes,
instead of finding both out again. Endpoints are kept without the credentials a URL may carry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from corral.store._db import Database

__all__ = ["ENDPOINTS_TABLE", "EndpointMemory", "KnownLimits", "without_credentials"]

ENDPOINTS_TABLE = """
CREATE TABLE endpoints (
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    rpm REAL,
    tpm REAL,
    adaptive_rpm REAL,
    mode TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (endpoint, model)
);
"""


@dataclass(frozen=True, slots=True)
class KnownLimits:
    """What an endpoint was found to allow: kept in the run store between runs."""

    #: requests and tokens per minute, as the provider's headers said
    rpm: float | None = None
    tpm: float | None = None
    #: the request rate adaptation found and held, when the provider said nothing
    adaptive_rpm: float | None = None

    def __bool__(self) -> bool:
        return any(value is not None for value in (self.rpm, self.tpm, self.adaptive_rpm))


class EndpointMemory:
    """Reads and writes of the ``endpoints`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def known_limits(self, endpoint: str, model: str) -> KnownLimits:
        row = self._db.read_one(
            "SELECT rpm, tpm, adaptive_rpm FROM endpoints WHERE endpoint = ? AND model = ?",
            (without_credentials(endpoint), model),
        )
        return KnownLimits(*row) if row else KnownLimits()

    def remember_limits(self, endpoint: str, model: str, known: KnownLimits) -> None:
        if known:
            self._remember(endpoint, model, rpm=known.rpm, tpm=known.tpm, adaptive_rpm=known.adaptive_rpm)

    def known_mode(self, endpoint: str, model: str) -> str | None:
        row = self._db.read_one(
            "SELECT mode FROM endpoints WHERE endpoint = ? AND model = ?",
            (without_credentials(endpoint), model),
        )
        return str(row[0]) if row and row[0] is not None else None

    def remember_mode(self, endpoint: str, model: str, mode: str) -> None:
        self._remember(endpoint, model, mode=mode)

    def _remember(self, endpoint: str, model: str, **columns: Any) -> None:
        # The columns named are set, the others kept: limits and mode are learned at different times.
        names = ", ".join(columns)
        updates = ", ".join(f"{name} = excluded.{name}" for name in (*columns, "updated"))
        marks = ", ".join("?" for _ in columns)
        with self._db.write() as conn:
            conn.execute(
                f"INSERT INTO endpoints (endpoint, model, {names}, updated) VALUES (?, ?, {marks}, ?) "
                f"ON CONFLICT (endpoint, model) DO UPDATE SET {updates}",
                (without_credentials(endpoint), model, *columns.values(), time.time()),
            )


def without_credentials(endpoint: str) -> str:
    """An endpoint as the store keeps it: a URL's ``user:password@`` never reaches the disk."""
    parts = urlsplit(endpoint)
    if not parts.scheme or (parts.password is None and parts.username is None):
        return endpoint
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
