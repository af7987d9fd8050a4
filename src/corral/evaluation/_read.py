"""Reading gold records and a job's output records, from JSONL or CSV.

JSONL: one record a line, ``{"id": ..., "output": ...}`` (the output record's own shape: other keys
are ignored in gold, ``error`` and ``confidence`` are read from an output).

CSV: an ``id`` column and one column per field, as corral's CSV sink writes them (``output.name``,
``output.address.city``; its other columns are let be, but ``error.kind`` and ``confidence`` are read
from an output) or bare (``name``, ``address.city``; a column that is no field is refused, but for
the sink's own: ``input``, ``latency``, ...). A list, a map or a union is one cell of JSON; so is
the whole output of a ``many`` schema, in a column ``output``. Cells are typed by the schema:
integers, numbers and booleans (``true``/``false``, ``yes``/``no``, ``1``/``0``) are read from
their text, an empty cell (or ``null`` in a cell that is not a string's) is null, and the
apostrophe the sink puts before a text that a spreadsheet would run as a formula is taken off.

A line or row that cannot be read raises :class:`~corral.errors.InputError` naming the file, the
line and why; nothing is skipped quietly.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from corral.errors import InputError
from corral.evaluation._shape import Array, Leaf, Record, Shape, lookup
from corral.io.items import open_input

__all__ = ["Row", "read_rows"]

Role = Literal["gold", "output"]


@dataclass(frozen=True, slots=True)
class Row:
    """One record: its id, line, output (None: nothing), error (output only) and confidences."""

    id: str
    line: int
    output: Any
    error: dict[str, Any] | None = None
    confidence: dict[str, Any] | None = None


_JSONL = (".jsonl", ".ndjson", ".json")
#: the CSV sink's columns that are not the output, let be in a CSV of bare field columns too
_SINK_COLUMNS = frozenset(
    {"input", "error.kind", "error.message", "attempts", "latency", "grounding", "conflicts", "chunks"}
    | {"confidence"}
    | {f"usage.{key}" for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def read_rows(path: str | Path, shape: Shape, *, many: bool, role: Role) -> Iterator[Row]:
    """The records of a gold or output file, each checked: an id, and an output of the schema's kind
    (an object, or a list for ``many``). Ids are unique."""
    name = str(path)
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        rows = _csv(name, shape, many=many, role=role)
    elif suffix in _JSONL:
        rows = _jsonl(name, many=many, role=role)
    else:
        raise InputError(f"unknown {role} format {suffix or '(none)'!r}: use .jsonl or .csv", path=name)
    seen: dict[str, int] = {}
    for row in rows:
        first = seen.setdefault(row.id, row.line)
        if first != row.line:
            raise InputError(f"id {row.id!r} is here again (first on line {first})", path=name, line=row.line)
        yield row


# --- JSONL -----------------------------------------------------------------------------------


def _jsonl(name: str, *, many: bool, role: Role) -> Iterator[Row]:
    with open_input(name) as stream:
        for number, line in enumerate(stream, start=1):
            raw = line.removeprefix(b"\xef\xbb\xbf") if number == 1 else line
            if not raw.strip():
                continue
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"not valid JSON ({exc})", path=name, line=number) from None
            if not isinstance(record, dict):
                raise InputError(f"expected a JSON object, got {_kind(record)}", path=name, line=number)
            yield _record(record, name, number, many=many, role=role)


def _record(record: dict[str, Any], name: str, number: int, *, many: bool, role: Role) -> Row:
    item_id = _id(record.get("id"), name, number)
    if "output" not in record:
        raise InputError(
            'has no "output": a record is {"id": ..., "output": {...}}, as corral writes it',
            path=name,
            line=number,
        )
    output, error = record["output"], record.get("error")
    if error is not None and not isinstance(error, dict):
        raise InputError(f'"error" is {_kind(error)}, not an object or null', path=name, line=number)
    if role == "gold" and output is None and error is not None:
        raise InputError(
            "is an error, not a gold record: write the right output in it, or remove the line",
            path=name,
            line=number,
        )
    _check_output(output, name, number, many=many)
    confidence = record.get("confidence") if role == "output" else None
    return Row(
        item_id,
        number,
        output,
        error if role == "output" else None,
        confidence if isinstance(confidence, dict) else None,
    )


def _id(value: Any, name: str, number: int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise InputError(f'has no "id" (a string or an integer), got {value!r}', path=name, line=number)
    return str(value)


def _check_output(output: Any, name: str, number: int, *, many: bool) -> None:
    expected = list if many else dict
    if output is not None and not isinstance(output, expected):
        what = "a list (the schema is many)" if many else "an object"
        raise InputError(f'"output" is {_kind(output)}, not {what}', path=name, line=number)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


# --- CSV -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Column:
    header: str
    keys: tuple[str, ...]  # into the output; () is the whole output
    shape: Shape


def _csv(name: str, shape: Shape, *, many: bool, role: Role) -> Iterator[Row]:
    with open_input(name) as stream:
        data = stream.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError("is not UTF-8 text: save the file as UTF-8", path=name, line=line) from None
    # Lines end at \n, \r\n or \r only (not at the other breaks str.splitlines knows), as csv counts them.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InputError(f"unreadable CSV header: {exc}", path=name, line=1) from None
    if header is None:
        return
    if "id" not in header:
        raise InputError(f"has no column 'id' (columns: {', '.join(header)})", path=name, line=1)
    columns = _columns(header, shape, many=many, name=name)
    start = reader.line_num + 1
    while True:
        try:
            values = next(reader, None)
        except csv.Error as exc:
            raise InputError(f"unreadable CSV row: {exc}", path=name, line=start) from None
        if values is None:
            return
        number, start = start, reader.line_num + 1
        if values:  # not a blank line
            yield _csv_row(values, header, columns, name=name, number=number, many=many, role=role)


def _csv_row(
    values: list[str],
    header: list[str],
    columns: list[_Column],
    *,
    name: str,
    number: int,
    many: bool,
    role: Role,
) -> Row:
    if len(values) > len(header):
        raise InputError(f"has {len(values)} cells, the header {len(header)}", path=name, line=number)
    cells = dict(zip(header, values + [""] * (len(header) - len(values)), strict=True))
    item_id = cells["id"]
    if not item_id:
        raise InputError("has no id", path=name, line=number)
    output: Any = None
    for column in columns:
        value = _cell(column, cells[column.header], name, number)
        if not column.keys:
            output = value
        elif value is not None:
            output = _put(output if isinstance(output, dict) else {}, column.keys, value)
    _check_output(output, name, number, many=many)
    if role == "gold":
        return Row(item_id, number, output)
    kind = cells.get("error.kind", "")
    error = {"kind": kind, "message": cells.get("error.message", "")} if kind else None
    return Row(
        item_id, number, output if error is None else None, error, _confidence(cells.get("confidence"))
    )


def _confidence(cell: str | None) -> dict[str, Any] | None:
    """The sink's ``confidence`` cell (JSON); None where there is none, or it is not a map."""
    if not cell:
        return None
    try:
        found = orjson.loads(cell)
    except orjson.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def _columns(header: list[str], shape: Shape, *, many: bool, name: str) -> list[_Column]:
    """The output's columns: as the sink writes them (``output``, ``output.x``) or bare (``x``)."""
    names = shape.props if isinstance(shape, Record) else {}
    sink = "output" not in names and any(c == "output" or c.startswith("output.") for c in header)
    columns = []
    for column in header:
        if column == "id" or (column in _SINK_COLUMNS and column not in names):
            continue
        if sink and column != "output" and not column.startswith("output."):
            continue  # the sink's own (usage, latency, ...): not the output
        keys = tuple(column.removeprefix("output.").split(".")) if column != "output" or not sink else ()
        found = lookup(shape, keys)
        if found is None or (many and keys):
            fields = ", ".join(names) if not many else "none: a many schema's list is one JSON cell"
            raise InputError(
                f"has a column {column!r} that is no field of the schema (its fields: {fields})",
                path=name,
                line=1,
            )
        columns.append(_Column(column, keys, found))
    if many and not columns:
        raise InputError(
            "has no column 'output': a many schema's records are read as one JSON list in it",
            path=name,
            line=1,
        )
    return columns


def _cell(column: _Column, text: str, name: str, number: int) -> Any:  # noqa: PLR0911 - one per kind
    shape = column.shape
    if text == "":
        return None
    if isinstance(shape, Leaf) and shape.kind in ("string", "enum", "date", "date-time"):
        if text.startswith("'") and text[1:].startswith(_FORMULA_STARTS):
            return text[1:]  # the sink's guard against spreadsheet formulas
        return text
    if text.strip().casefold() == "null":
        return None
    if isinstance(shape, Leaf) and shape.kind != "any":
        value = _typed(shape.kind, text.strip())
        if value is None:
            raise InputError(
                f"column {column.header!r}: {text!r} is not {_ARTICLE[shape.kind]}", path=name, line=number
            )
        return value
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if isinstance(shape, Record | Array):
            raise InputError(
                f"column {column.header!r} holds a list or an object, as JSON: {exc}", path=name, line=number
            ) from None
        return text  # a value of any kind, written as text


_ARTICLE = {"integer": "an integer", "number": "a number", "boolean": "a boolean (true or false)"}


def _typed(kind: str, text: str) -> Any:
    """An integer, a number or a boolean read from a cell; None: it is not one."""
    if kind == "boolean":
        word = text.casefold()
        return True if word in ("true", "yes", "1") else False if word in ("false", "no", "0") else None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or (kind == "integer" and not number.is_integer()):
        return None
    return int(number) if kind == "integer" else number


def _put(output: dict[str, Any], keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    node = output
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value
    return output
