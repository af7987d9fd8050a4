"""The one exception the serve modules raise for a client: it carries its HTTP status."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ApiError"]


class ApiError(Exception):
    """A refusal the HTTP layer answers as ``{"error": {"type", "message"}}`` with ``status``."""

    def __init__(
        self, status: int, kind: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        #: a stable name for the problem (invalid_schema, too_large, not_found, ...)
        self.kind = kind
        self.message = message
        self.headers = dict(headers or {})
