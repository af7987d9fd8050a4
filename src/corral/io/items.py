"""Input readers: JSONL, CSV and TXT files streamed row by row into :class:`~corral.types.Item`
(Parquet and Arrow files: :mod:`corral.io.arrow`, a batch at a time).

Readers are generators, so a million-line file is never held in memory. A whole-file problem (missing,
empty, unknown format) raises :class:`InputError` before anything is sent. A bad *row* does not stop
the run: it becomes an item that carries its own error (``Item.problem``), which the engine records as
an error outcome naming the file and line, so no earlier or later result is lost; a line that is not
UTF-8 is such a row in every format. A CSV quote that is never closed would make the rest of the file
one cell: the rows before it are yielded, then :class:`InputError` names the line the quote opened on.

A row's text is its text field, or a ``--template`` rendered from several of its fields (a row that
lacks one is that row's error); the ``--keep`` fields ride along to its record (``Item.kept``).
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

import orjson

from corral.errors import ConfigError, InputError
from corral.io.arrow import ArrowInput, count_rows, kept_types
from corral.io.documents import DOCUMENT_TYPES, Documents, count_documents, read_documents
from corral.io.template import MissingField, Template
from corral.types import Item, keep_fields

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "FORMATS",
    "Format",
    "ItemReader",
    "as_items",
    "count_items",
    "is_documents",
    "keep_types",
    "open_input",
    "read_items",
    "stdin_format",
]

Format = Literal["jsonl", "csv", "txt", "parquet", "arrow", "documents"]
FORMATS: dict[str, Format] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "txt",
    ".parquet": "parquet", ".pq": "parquet",
    ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow", ".arrows": "arrow",
}  # fmt: skip


def read_items(
    path: str | Path,
    *,
    format: Format | None = None,
    text_field: str = "text",
    id_field: str = "id",
    template: str | Template | None = None,
    keep: Sequence[str] = (),
) -> ItemReader | Documents:
    """Open ``path`` (``-`` for standard input) and stream its items (``close()`` closes the file).

    The file is opened and its first item read eagerly, so a missing, unreadable or empty input fails
    here, before any request is made. A directory, a glob pattern, a ``.md``, ``.html`` or ``.pdf``
    file, or any path with ``format="documents"`` is read as documents, a file an item
    (:func:`~corral.io.documents.read_documents`: listed now, each read as it is taken).

    ``template``: each text built from the row's fields (:class:`~corral.io.template.Template`)
    instead of taken from ``text_field``; ``keep``: fields passed through to each record
    (``Item.kept``, null where a row has none). Both need rows with fields: not TXT, not documents.
    """
    name = str(path)
    fmt = format or _format_of(name)
    if isinstance(template, str):
        template = Template(template)
    keep = keep_fields(keep)
    if (template is not None or keep) and fmt in ("txt", "documents"):
        what = "documents (a file an item) have" if fmt == "documents" else "a TXT input (a text a line) has"
        flags = " and ".join(flag for flag, given in (("--template", template), ("--keep", keep)) if given)
        raise ConfigError(
            f"{name}: {flags} read{'s' if ' and ' not in flags else ''} an input's fields, and {what} "
            "none: give a JSONL, CSV, Parquet or Arrow input, or drop the flag"
        )
    if fmt == "documents":
        return read_documents(name)
    fields = _Fields(text_field, id_field, template, keep)
    source: _Closable
    types: dict[str, pa.DataType] | None = None
    if fmt in ("parquet", "arrow"):
        table = ArrowInput(name, fmt, text_field=text_field, id_field=id_field, template=template, keep=keep)
        rows, source, types = table.items(), table, table.keep_types
    else:
        stream = open_input(name)
        rows, source = {"jsonl": _jsonl, "csv": _csv, "txt": _txt}[fmt](stream, name, fields), stream
    try:
        first = next(rows, None)
        if first is None:
            raise InputError(f"is empty: there are no {_unit(fmt)} to extract from", path=name)
    except BaseException:
        rows.close()
        source.close()
        raise
    return ItemReader(first, rows, source, keep_types=types)


def keep_types(
    path: str | Path, *, format: Format | None = None, keep: Sequence[str]
) -> dict[str, pa.DataType] | None:
    """The Arrow type of each ``keep`` field of a Parquet or Arrow input, from its schema alone (an
    output in Parquet gives the kept columns these types); None for any other input, for standard
    input (it cannot be read twice: :attr:`ItemReader.keep_types` has them), or when it cannot say."""
    name = str(path)
    try:
        fmt = format or _format_of(name)
    except InputError:
        return None
    return kept_types(name, fmt, keep) if fmt in ("parquet", "arrow") else None


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
    if fmt in ("documents", "parquet", "arrow"):
        return count_documents(name) if fmt == "documents" else count_rows(name, fmt)
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


class _Closable(Protocol):
    def close(self) -> None: ...


class ItemReader(Iterator[Item]):
    """The items of an opened input; ``close()`` closes the file even before the first item is taken
    (a generator's ``finally`` would not run then, and an input opened but never read would leak).

    ``keep_types``: for a Parquet or Arrow input, the Arrow type of each kept field (``keep``), which
    an output in Parquet gives its kept columns; None for the other formats (their fields are text)."""

    def __init__(
        self,
        first: Item,
        rest: Generator[Item, None, None],
        stream: _Closable,
        *,
        keep_types: Mapping[str, pa.DataType] | None = None,
    ) -> None:
        self._first: Item | None = first
        self._rest = rest
        self._stream = stream
        self.keep_types = keep_types

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
    return {"jsonl": "JSON lines", "csv": "CSV rows", "txt": "non-blank lines"}.get(fmt, "rows")


@dataclass(frozen=True, slots=True)
class _Fields:
    """Which fields of a row make its item: the text (or a template of several), the id, the kept."""

    text_field: str
    id_field: str
    template: Template | None
    keep: tuple[str, ...]

    def kept(self, row: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The kept fields of ``row`` (null where it has none, or there is no row at all)."""
        if not self.keep:
            return None
        return {name: None if row is None else row.get(name) for name in self.keep}

    def check_header(self, header: list[str], name: str) -> None:
        """A CSV file's header has every column the text, the template and ``--keep`` name."""
        columns = ", ".join(header)
        if self.template is None and self.text_field not in header:
            why = f"has no column {self.text_field!r} (columns: {columns}); pass --text-field"
            raise InputError(why, path=name, line=1)
        wanted = [(field, " for --template") for field in self.template.fields] if self.template else []
        for field, role in [*wanted, *((field, " to --keep") for field in self.keep)]:
            if field not in header:
                raise InputError(f"has no column {field!r}{role} (columns: {columns})", path=name, line=1)


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


def _jsonl(stream: IO[bytes], name: str, fields: _Fields) -> Generator[Item, None, None]:
    for number, line in enumerate(stream, start=1):
        # A UTF-8 byte-order mark (editors on Windows write one) is not part of the first row.
        raw = line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line
        if not raw.strip():
            continue
        fallback_id = str(number)
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield _bad(fallback_id, name, number, f"not valid JSON ({exc})", fields.kept(None))
            continue
        if not isinstance(row, dict):
            why = f"expected a JSON object, got {type(row).__name__}"
            yield _bad(fallback_id, name, number, why, fields.kept(None))
            continue
        yield _row_item(row, name, number, fields)


def _csv(stream: IO[bytes], name: str, fields: _Fields) -> Generator[Item, None, None]:
    # surrogateescape: a byte that is not UTF-8 becomes a lone surrogate instead of an exception
    # raised for a whole 8 KiB chunk ahead of the row being read, so the row that holds it can be
    # named and skipped while every other row is read.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        yield from _csv_rows(_Lines(text), name, fields)
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


def _csv_rows(lines: _Lines, name: str, fields: _Fields) -> Iterator[Item]:
    # strict: a quote that closes a quoted field must be followed by a comma or the end of the line.
    # Without it csv reads a quote that is never closed up to the next quote anywhere below and goes
    # on, every row in between swallowed into one cell without a word.
    reader = csv.reader(lines, strict=True)
    header = _csv_record(reader, lines, name)
    if header is None:
        return
    if bad := lines.take_bad():
        raise InputError(_NOT_UTF8_TEXT, path=name, line=bad[0])
    fields.check_header(header, name)
    while (values := _csv_record(reader, lines, name)) is not None:
        if not values:
            continue  # a blank line, as csv.DictReader skips it
        row = _as_dict(header, values)
        if bad := lines.take_bad():
            # As a TXT or JSONL line that is not UTF-8: this row's error; the rows after it are read.
            raw_id = row.get(fields.id_field)
            readable = isinstance(raw_id, str) and raw_id != "" and not _NOT_UTF8.search(raw_id)
            item_id = str(raw_id) if readable else str(lines.number)
            yield _bad(item_id, name, bad[0], _NOT_UTF8_TEXT, fields.kept(None))
            continue
        yield _row_item(row, name, lines.number, fields)


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


def _txt(stream: IO[bytes], name: str, fields: _Fields) -> Generator[Item, None, None]:
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            yield _bad(str(number), name, number, _NOT_UTF8_TEXT)
            continue
        if line:
            yield Item(id=str(number), text=line)


def _row_item(row: dict[str, Any], name: str, number: int, fields: _Fields) -> Item:
    raw_id = row.get(fields.id_field)
    item_id = str(raw_id) if raw_id not in (None, "") else str(number)
    kept = fields.kept(row)
    if fields.template is not None:
        try:
            text = fields.template.render(row)
        except MissingField as exc:
            listed = ", ".join(str(key) for key in row) or "none"
            return _bad(item_id, name, number, f"{exc} (fields: {listed})", kept)
        return Item(id=item_id, text=text, fields=row, kept=kept)
    text_field = fields.text_field
    value = row.get(text_field)
    if not isinstance(value, str):
        listed = ", ".join(str(key) for key in row) or "none"
        problem = (
            f"has no field {text_field!r} (fields: {listed}); pass --text-field"
            if value is None
            else f"field {text_field!r} is a {type(value).__name__}, not a string"
        )
        return _bad(item_id, name, number, problem, kept)
    return Item(id=item_id, text=value, fields=row, kept=kept)


def _bad(item_id: str, name: str, number: int, problem: str, kept: Mapping[str, Any] | None = None) -> Item:
    return Item(id=item_id, text="", problem=f"{name}:{number}: {problem}", kept=kept)
