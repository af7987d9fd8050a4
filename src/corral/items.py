"""Input readers: JSONL, CSV and TXT files streamed row by row into :class:`~corral.outcome.Item`.

Readers are generators, so a million-line file is never held in memory. A whole-file problem (missing,
empty, unknown format) raises :class:`InputError` before anything is sent. A bad *row* does not stop
the run: it becomes an item that carries its own error (``Item.problem``), which the engine records as
an error outcome naming the file and line, so no earlier or later result is lost.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from corral.errors import InputError
from corral.outcome import Item

__all__ = ["FORMATS", "Format", "as_items", "count_items", "read_items"]

Format = Literal["jsonl", "csv", "txt"]
FORMATS: dict[str, Format] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "txt"}


def read_items(
    path: str | Path,
    *,
    format: Format | None = None,
    text_field: str = "text",
    id_field: str = "id",
) -> Iterator[Item]:
    """Open ``path`` (``-`` for standard input) and stream its items.

    The file is opened and its first item read eagerly, so a missing, unreadable or empty input fails
    here, before any request is made.
    """
    name = str(path)
    fmt = format or _format_of(name)
    stream = _open(name)
    rows = {"jsonl": _jsonl, "csv": _csv, "txt": _txt}[fmt](stream, name, text_field, id_field)
    try:
        first = next(rows, None)
        if first is None:
            raise InputError(f"is empty: there are no {_unit(fmt)} to extract from", path=name)
    except BaseException:
        rows.close()
        stream.close()
        raise
    return _chain(first, rows, stream)


def count_items(path: str | Path, *, format: Format | None = None) -> int | None:
    """How many items ``path`` holds (for progress), cheaply: rows, not parsed. None for stdin.

    Counts what the readers yield: non-blank lines of JSONL/TXT, records of CSV (quoted newlines
    included) after the header. A malformed row still counts: it ends as an error item.
    """
    name = str(path)
    if name == "-":
        return None
    fmt = format or _format_of(name)
    try:
        if fmt == "csv":
            with open(name, encoding="utf-8-sig", newline="", errors="replace") as text:
                return max(0, sum(1 for _ in csv.reader(text)) - 1)
        with open(name, "rb") as stream:
            return sum(1 for line in stream if not line.isspace() and line)
    except (OSError, csv.Error):
        return None


def as_items(texts: Iterable[str | Item]) -> Iterator[Item]:
    """Items from Python values: strings get their 1-based position as id; Items pass through."""
    for number, text in enumerate(texts, start=1):
        if isinstance(text, Item):
            yield text
        elif isinstance(text, str):
            yield Item(id=str(number), text=text)
        else:
            raise InputError(f"item {number} is a {type(text).__name__}, not a str or corral.Item")


def _chain(first: Item, rest: Generator[Item, None, None], stream: IO[bytes]) -> Iterator[Item]:
    try:
        yield first
        yield from rest
    finally:
        rest.close()
        stream.close()


def _format_of(name: str) -> Format:
    if name == "-":
        return "txt"
    suffix = Path(name).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise InputError(
            f"unknown input format {suffix or '(no extension)'!r}: use one of {known} or --format"
        )
    return FORMATS[suffix]


def _unit(fmt: Format) -> str:
    return {"jsonl": "JSON lines", "csv": "CSV rows", "txt": "non-blank lines"}[fmt]


def _open(name: str) -> IO[bytes]:
    if name == "-":
        return sys.stdin.buffer
    try:
        return open(name, "rb")
    except FileNotFoundError:
        raise InputError("does not exist", path=name) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", path=name) from None
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror}", path=name) from None


def _jsonl(stream: IO[bytes], name: str, text_field: str, id_field: str) -> Generator[Item, None, None]:
    for number, line in enumerate(stream, start=1):
        # A UTF-8 byte-order mark (editors on Windows write one) is not part of the first row.
        raw = line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line
        if not raw.strip():
            continue
        fallback_id = str(number)
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield _bad(fallback_id, name, number, f"not valid JSON ({exc})")
            continue
        if not isinstance(row, dict):
            yield _bad(fallback_id, name, number, f"expected a JSON object, got {type(row).__name__}")
            continue
        yield _row_item(row, name, number, text_field, id_field)


def _csv(stream: IO[bytes], name: str, text_field: str, id_field: str) -> Generator[Item, None, None]:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield from _csv_rows(text, name, text_field, id_field)
    finally:
        text.detach()  # the caller owns (and closes) the byte stream


def _csv_rows(text: io.TextIOWrapper, name: str, text_field: str, id_field: str) -> Iterator[Item]:
    reader = csv.DictReader(text)
    try:
        header = reader.fieldnames
    except UnicodeDecodeError:
        raise InputError("is not UTF-8 text", path=name, line=1) from None
    if header is None:
        return
    if text_field not in header:
        columns = ", ".join(header)
        raise InputError(
            f"has no column {text_field!r} (columns: {columns}); pass --text-field", path=name, line=1
        )
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InputError(f"unreadable CSV row: {exc}", path=name, line=reader.line_num + 1) from None
        yield _row_item(row, name, reader.line_num, text_field, id_field)


def _txt(stream: IO[bytes], name: str, text_field: str, id_field: str) -> Generator[Item, None, None]:
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            yield _bad(str(number), name, number, "is not UTF-8 text")
            continue
        if line:
            yield Item(id=str(number), text=line)


def _row_item(row: dict[str, Any], name: str, number: int, text_field: str, id_field: str) -> Item:
    raw_id = row.get(id_field)
    item_id = str(raw_id) if raw_id not in (None, "") else str(number)
    text = row.get(text_field)
    if not isinstance(text, str):
        fields = ", ".join(row) or "none"
        problem = (
            f"has no field {text_field!r} (fields: {fields}); pass --text-field"
            if text is None
            else f"field {text_field!r} is a {type(text).__name__}, not a string"
        )
        return _bad(item_id, name, number, problem)
    return Item(id=item_id, text=text, fields=row)


def _bad(item_id: str, name: str, number: int, problem: str) -> Item:
    return Item(id=item_id, text="", problem=f"{name}:{number}: {problem}")
