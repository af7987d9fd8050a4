"""Input readers: JSONL, CSV and TXT files streamed row by row into :class:`~corral.types.Item`.

Readers are generators, so a million-line file is never held in memory. A whole-file problem (missing,
empty, unknown format) raises :class:`InputError` before anything is sent. A bad *row* does not stop
the run: it becomes an item that carries its own error (``Item.problem``), which the engine records as
an error outcome naming the file and line, so no earlier or later result is lost; a line that is not
UTF-8 is such a row in every format. A CSV quote that is never closed would make the rest of the file
one cell: the rows before it are yielded, then :class:`InputError` names the line the quote opened on.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from corral.errors import InputError
from corral.io.documents import DOCUMENT_TYPES, Documents, count_documents, read_documents
from corral.types import Item

__all__ = [
    "FORMATS",
    "Format",
    "ItemReader",
    "as_items",
    "count_items",
    "is_documents",
    "open_input",
    "read_items",
    "stdin_format",
]

Format = Literal["jsonl", "csv", "txt", "documents"]
FORMATS: dict[str, Format] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "txt"}


def read_items(
    path: str | Path,
    *,
    format: Format | None = None,
    text_field: str = "text",
    id_field: str = "id",
) -> ItemReader | Documents:
    """Open ``path`` (``-`` for standard input) and stream its items (``close()`` closes the file).

    The file is opened and its first item read eagerly, so a missing, unreadable or empty input fails
    here, before any request is made. A directory, a glob pattern, a ``.md``, ``.html`` or ``.pdf``
    file, or any path with ``format="documents"`` is read as documents, a file an item
    (:func:`~corral.io.documents.read_documents`: listed now, each read as it is taken).
    """
    name = str(path)
    fmt = format or _format_of(name)
    if fmt == "documents":
        return read_documents(name)
    stream = open_input(name)
    rows = {"jsonl": _jsonl, "csv": _csv, "txt": _txt}[fmt](stream, name, text_field, id_field)
    try:
        first = next(rows, None)
        if first is None:
            raise InputError(f"is empty: there are no {_unit(fmt)} to extract from", path=name)
    except BaseException:
        rows.close()
        stream.close()
        raise
    return ItemReader(first, rows, stream)


def count_items(path: str | Path, *, format: Format | None = None) -> int | None:
    """How many items ``path`` holds (for progress), cheaply: rows, not parsed. None for stdin.

    Counts what the readers yield: non-blank lines of JSONL/TXT, records of CSV (quoted newlines
    included) after the header. A malformed row still counts: it ends as an error item.
    """
    name = str(path)
    if name == "-":
        return None
    try:
        fmt = format or _format_of(name)
    except InputError:
        return None
    if fmt == "documents":
        return count_documents(name)
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


class ItemReader(Iterator[Item]):
    """The items of an opened input; ``close()`` closes the file even before the first item is taken
    (a generator's ``finally`` would not run then, and an input opened but never read would leak)."""

    def __init__(self, first: Item, rest: Generator[Item, None, None], stream: IO[bytes]) -> None:
        self._first: Item | None = first
        self._rest = rest
        self._stream = stream

    def __next__(self) -> Item:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        try:
            return next(self._rest)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._first = None
        self._rest.close()
        self._stream.close()

    def __del__(self) -> None:
        # Dropped unfinished, as a generator would be: its file is closed.
        self.close()


def is_documents(source: str) -> bool:
    """Whether ``source`` is read as documents without ``--format``: a directory, a glob pattern that
    is not a file's own name, or a file of a document type other than ``.txt`` (which stays a text a
    line, as it always was: ``--format documents`` reads one whole)."""
    path = Path(source)
    if path.is_dir():
        return True
    if any(char in source for char in "*?[") and not path.is_file():
        return True
    suffix = path.suffix.lower()
    return suffix in DOCUMENT_TYPES and suffix not in FORMATS


def stdin_format() -> Format:
    """What standard input is read as without ``--format``: one text per line."""
    return "txt"


def _format_of(name: str) -> Format:
    if name == "-":
        return stdin_format()
    suffix = Path(name).suffix.lower()
    if is_documents(name):
        return "documents"
    if suffix not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise InputError(
            f"unknown input format {suffix or '(no extension)'!r}: use one of {known} or --format"
        )
    return FORMATS[suffix]


def _unit(fmt: Format) -> str:
    return {"jsonl": "JSON lines", "csv": "CSV rows", "txt": "non-blank lines"}[fmt]


def open_input(name: str) -> IO[bytes]:
    """``name`` opened for reading as bytes (``-``: standard input), or :class:`InputError` saying
    why not (missing, a directory, unreadable); the caller closes it."""
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
    # surrogateescape: a byte that is not UTF-8 becomes a lone surrogate instead of an exception
    # raised for a whole 8 KiB chunk ahead of the row being read, so the row that holds it can be
    # named and skipped while every other row is read.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        yield from _csv_rows(_Lines(text), name, text_field, id_field)
    finally:
        text.detach()  # the caller owns (and closes) the byte stream


#: what surrogateescape decodes a byte that is not UTF-8 to
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_NOT_UTF8_TEXT = "is not UTF-8 text: save the file as UTF-8"


class _Lines:
    """The physical lines of a CSV file for :func:`csv.reader`: counted (a record may span several),
    each checked for bytes that are not UTF-8, the current record's kept (to say what went wrong in
    it), and the end of the file noted."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._text = text
        #: lines read so far
        self.number = 0
        #: lines read since the last :meth:`take_bad` that hold bytes that are not UTF-8
        self.bad: list[int] = []
        #: the lines read since the current record began
        self.record: list[str] = []
        #: the reader asked for a line after the last one
        self.ended = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self._text.readline()
        if not line:
            self.ended = True
            raise StopIteration
        self.number += 1
        if not line.isascii() and _NOT_UTF8.search(line):
            self.bad.append(self.number)
        self.record.append(line)
        return line

    def take_bad(self) -> list[int]:
        bad, self.bad = self.bad, []
        return bad


def _csv_rows(lines: _Lines, name: str, text_field: str, id_field: str) -> Iterator[Item]:
    # strict: a quote that closes a quoted field must be followed by a comma or the end of the line.
    # Without it csv reads a quote that is never closed up to the next quote anywhere below and goes
    # on, every row in between swallowed into one cell without a word.
    reader = csv.reader(lines, strict=True)
    header = _csv_record(reader, lines, name)
    if header is None:
        return
    if bad := lines.take_bad():
        raise InputError(_NOT_UTF8_TEXT, path=name, line=bad[0])
    if text_field not in header:
        columns = ", ".join(header)
        raise InputError(
            f"has no column {text_field!r} (columns: {columns}); pass --text-field", path=name, line=1
        )
    while (values := _csv_record(reader, lines, name)) is not None:
        if not values:
            continue  # a blank line, as csv.DictReader skips it
        row = _as_dict(header, values)
        if bad := lines.take_bad():
            # As a TXT or JSONL line that is not UTF-8: this row's error; the rows after it are read.
            raw_id = row.get(id_field)
            readable = isinstance(raw_id, str) and raw_id != "" and not _NOT_UTF8.search(raw_id)
            item_id = str(raw_id) if readable else str(lines.number)
            yield _bad(item_id, name, bad[0], _NOT_UTF8_TEXT)
            continue
        yield _row_item(row, name, lines.number, text_field, id_field)


def _csv_record(reader: Iterator[list[str]], lines: _Lines, name: str) -> list[str] | None:
    """The next record's fields ([] for a blank line), or None at the end of the file."""
    start = lines.number + 1
    lines.record = []
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        # The reader has lost its place (it takes the next line for the start of a record), so the
        # rest of the file cannot be trusted: stop here. Every row before this one has been yielded.
        raise _unreadable(exc, lines, start, name) from None


def _unreadable(exc: csv.Error, lines: _Lines, start: int, name: str) -> InputError:
    opened, stray = _quote_trouble(lines.record, start)
    if stray is not None:
        line, char = stray
        return InputError(
            f"the quoted field that starts on this line is closed on line {line} by a quote followed "
            f"by {char!r}, not by a comma or the end of the line: if the field's closing quote is "
            'missing, add it where the field ends; if that quote is part of the text, write it twice ("")',
            path=name,
            line=opened,
        )
    if lines.ended and opened is not None:
        return InputError(
            f"a quoted field that starts on this line is never closed, so lines {opened}–{lines.number} "
            'would be one cell; close the quote (a quote inside a quoted field is written twice: "")',
            path=name,
            line=opened,
        )
    return InputError(f"unreadable CSV row (reading line {lines.number}): {exc}", path=name, line=start)


def _quote_trouble(record: list[str], first: int) -> tuple[int | None, tuple[int, str] | None]:
    """Where the quoting of a record that csv refused went wrong, read as csv reads it: the line on
    which its last quoted field opened (None: no field is quoted), and the line and character of a
    closing quote followed by anything but a comma or a line break (None: there is none). Only run
    on a refused record, so plain Python is fast enough."""
    opened: int | None = None
    state = "field"  # at the start of a field | "plain" | "quoted" | "quote" (a quote in "quoted")
    for number, line in enumerate(record, start=first):
        for char in line:
            if state == "quoted":
                state = "quote" if char == '"' else "quoted"
            elif state == "quote" and char == '"':
                state = "quoted"  # a doubled quote: one quote inside the field
            elif state == "quote" and char not in ",\r\n":
                return opened, (number, char)
            elif char in ",\r\n":
                state = "field"
            elif state == "field" and char == '"':
                state, opened = "quoted", number
            elif state == "field":
                state = "plain"
    return (opened if state == "quoted" else None), None


def _as_dict(header: list[str], values: list[str]) -> dict[Any, Any]:
    """A record as csv.DictReader makes it: extra values under None, missing ones None."""
    row: dict[Any, Any] = dict(zip(header, values, strict=False))
    if len(values) > len(header):
        row[None] = values[len(header) :]
    else:
        for key in header[len(values) :]:
            row[key] = None
    return row


def _txt(stream: IO[bytes], name: str, text_field: str, id_field: str) -> Generator[Item, None, None]:
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            yield _bad(str(number), name, number, _NOT_UTF8_TEXT)
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
