"""Parquet and Arrow IPC (Feather) inputs, read a batch at a time into :class:`~corral.types.Item`.

Only the columns a run needs are read — the text column (or the ``--template``'s fields), the id
column when there is one, the ``--keep`` fields — and only a few thousand rows are Python values at
any moment, so a file of millions of rows (or a wide one) is never held in memory: a Parquet file is
read with ``ParquetFile.iter_batches``, an IPC file is memory-mapped and taken a record batch at a
time, an IPC stream (``.arrows``, or standard input) a batch at a time as it comes.

As in :mod:`corral.io.items`, a whole-file problem (not Parquet or Arrow, no rows, no such column, a
text column that holds no text) is an :class:`~corral.errors.InputError` raised before anything is
sent, naming the file; a bad row (a null text) is an item carrying its own error (``Item.problem``,
``file:row N: why``), and the other rows are extracted. :func:`items_from_batches` is the same
reading for record batches from anywhere (a DataFrame).

pyarrow is the ``parquet`` extra: it is imported when a file is opened, never with this module.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from corral.errors import ConfigError, InputError
from corral.io.template import MissingField, Template
from corral.types import Item, keep_fields

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

__all__ = ["ArrowFormat", "ArrowInput", "count_rows", "items_from_batches", "kept_types"]

ArrowFormat = Literal["parquet", "arrow"]

#: rows a Parquet batch holds (its row groups are read one at a time beneath)
_BATCH_ROWS = 4096
#: rows turned into Python values at once: one record batch of an IPC file may hold millions
_ROWS_AT_ONCE = 4096
#: columns named in an error at most (a table may have thousands)
_SHOWN_COLUMNS = 30
_INSTALL = "pip install 'corral[parquet]'"


def items_from_batches(
    batches: Iterable[pa.RecordBatch],
    *,
    source: str,
    text_field: str = "text",
    id_field: str | None = "id",
    template: Template | None = None,
    keep: Sequence[str] = (),
    first_row: int = 1,
) -> Iterator[Item]:
    """The items of ``batches``, one per row, a few thousand rows made Python values at a time.

    Each item's text is the ``text_field`` column's (or ``template`` rendered from the row), its id
    the ``id_field`` column's value, or the row's number (counted from ``first_row``) when there is
    no such column, ``id_field`` is None, or the value is null or empty; the ``keep`` columns ride
    along (``Item.kept``). The first batch's schema is checked before any row is read
    (:class:`~corral.errors.InputError`, naming ``source``: a missing column, a text column that is
    not text); a row with a null text (or template field) is an item carrying its error,
    ``source:row N: why``."""
    kept = keep_fields(keep)
    plan: _Plan | None = None
    number = first_row
    for batch in batches:
        if plan is None:
            plan = _Plan(
                batch.schema, source=source, text_field=text_field, id_field=id_field,
                template=template, keep=kept,
            )  # fmt: skip
        for start in range(0, batch.num_rows, _ROWS_AT_ONCE):
            part = batch.slice(start, _ROWS_AT_ONCE)
            values = [(name, part.column(name).to_pylist()) for name in plan.columns]
            for offset in range(part.num_rows):
                yield plan.item({name: column[offset] for name, column in values}, number)
                number += 1


class _Plan:
    """What is read of a table with this schema, checked once, and how a row becomes an item."""

    def __init__(
        self,
        schema: pa.Schema,
        *,
        source: str,
        text_field: str,
        id_field: str | None,
        template: Template | None,
        keep: tuple[str, ...],
    ) -> None:
        names = list(schema.names)
        self.source = source
        self.template = template
        self.text_field = text_field
        self.keep = keep

        def known(name: str, role: str) -> None:
            if name not in names:
                raise InputError(f"has no column {name!r}{role} (columns: {_listed(names)})", path=source)
            if names.count(name) > 1:
                raise InputError(f"has {names.count(name)} columns named {name!r}: rename them", path=source)

        if template is not None:
            for name in template.fields:
                known(name, f" for --template {template.source!r}")
            wanted = list(template.fields)
        else:
            if text_field not in names:
                raise InputError(
                    f"has no column {text_field!r} (columns: {_listed(names)}); pass --text-field NAME, "
                    "or --template 'Title: {title}\\n\\n{body}' to build the text from several columns",
                    path=source,
                )
            known(text_field, "")
            kind = schema.field(text_field).type
            if not _is_text(kind):
                raise InputError(
                    f"column {text_field!r} holds {kind}, not text: pass --template '{{{text_field}}}' to "
                    "send its values as text, or --text-field NAME for a column of text",
                    path=source,
                )
            wanted = [text_field]
        for name in keep:
            known(name, " to --keep")
        self.id_field = id_field if id_field is not None and names.count(id_field) == 1 else None
        #: the columns read, each once: the id (if there is one), the text's, the kept
        self.columns = list(dict.fromkeys([*([self.id_field] if self.id_field else []), *wanted, *keep]))

    def item(self, row: dict[str, Any], number: int) -> Item:
        raw_id = row.get(self.id_field) if self.id_field is not None else None
        item_id = str(number) if raw_id is None or raw_id == "" else str(raw_id)
        kept = {name: row[name] for name in self.keep} if self.keep else None
        if self.template is not None:
            try:
                text = self.template.render(row)
            except MissingField as exc:
                return self._bad(item_id, number, str(exc), kept)
        else:
            text = row[self.text_field]
            if text is None:
                return self._bad(item_id, number, f"column {self.text_field!r} is null", kept)
        return Item(id=item_id, text=text, fields=row, kept=kept)

    def _bad(self, item_id: str, number: int, why: str, kept: Mapping[str, Any] | None) -> Item:
        return Item(id=item_id, text="", problem=f"{self.source}:row {number}: {why}", kept=kept)


def _is_text(kind: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):  # pandas' categorical strings
        kind = kind.value_type
    is_view = getattr(pa.types, "is_string_view", None)  # pyarrow 16 and later
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or bool(is_view and is_view(kind))


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN_COLUMNS])
    return shown + (f", … ({len(names) - _SHOWN_COLUMNS} more)" if len(names) > _SHOWN_COLUMNS else "")


# --- files -----------------------------------------------------------------------------------


class ArrowInput:
    """An opened Parquet or Arrow IPC file (``-``: an IPC stream on standard input), its columns
    checked (an :class:`~corral.errors.InputError` if it cannot be read so, a ``ConfigError``
    without pyarrow): :meth:`items` reads it, :meth:`close` lets it go. ``keep_types``: each kept
    column's Arrow type (an output in Parquet keeps them)."""

    def __init__(
        self,
        name: str,
        fmt: ArrowFormat,
        *,
        text_field: str = "text",
        id_field: str | None = "id",
        template: Template | None = None,
        keep: Sequence[str] = (),
    ) -> None:
        self.name = name
        self._closing = contextlib.ExitStack()
        self._text_field, self._id_field, self._template = text_field, id_field, template
        self._keep = keep_fields(keep)
        try:
            schema, self._read = _open(name, fmt, self._closing)
            self._plan = _Plan(
                schema, source=name, text_field=text_field, id_field=id_field, template=template,
                keep=self._keep,
            )  # fmt: skip
        except BaseException:
            self._closing.close()
            raise
        #: the Arrow type of each ``keep`` column, by name
        self.keep_types: dict[str, pa.DataType] = {name: schema.field(name).type for name in self._keep}

    def items(self) -> Generator[Item, None, None]:
        """The file's items, row by row (its needed columns read a batch at a time)."""
        batches = _guarded(self._read(self._plan.columns), self.name)
        yield from items_from_batches(
            batches, source=self.name, text_field=self._text_field, id_field=self._id_field,
            template=self._template, keep=self._keep,
        )  # fmt: skip

    def close(self) -> None:
        self._closing.close()


def count_rows(name: str, fmt: ArrowFormat) -> int | None:
    """The rows of ``name`` from its metadata (a Parquet footer, an IPC file's batch lengths) without
    reading them; None when that cannot be known cheaply (standard input, an unreadable file)."""
    if name == "-":
        return None
    closing = contextlib.ExitStack()
    try:
        _pyarrow()
        import pyarrow as pa

        if fmt == "parquet":
            return int(_parquet(name, closing).metadata.num_rows)
        reader = _ipc(name, closing)
        if isinstance(reader, pa.ipc.RecordBatchFileReader):
            return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        return sum(batch.num_rows for batch in reader)  # a stream, memory-mapped: nothing copied
    except (InputError, ConfigError, OSError, ValueError):
        return None
    finally:
        closing.close()


def kept_types(name: str, fmt: ArrowFormat, keep: Sequence[str]) -> dict[str, pa.DataType] | None:
    """The Arrow type of each ``keep`` column of ``name``, read from its schema alone; None when it
    cannot be read again (standard input) or lacks one of them."""
    if name == "-" or not keep:
        return None
    closing = contextlib.ExitStack()
    try:
        _pyarrow()
        schema = _parquet(name, closing).schema_arrow if fmt == "parquet" else _ipc(name, closing).schema
        return {field: schema.field(field).type for field in keep}
    except (InputError, ConfigError, OSError, ValueError, KeyError):
        return None
    finally:
        closing.close()


#: the batches of an opened file, given the columns to read
Read = Callable[[list[str]], Iterator["pa.RecordBatch"]]


def _open(name: str, fmt: ArrowFormat, closing: contextlib.ExitStack) -> tuple[pa.Schema, Read]:
    """The schema of ``name`` and how to read its batches (given the columns to read)."""
    _pyarrow()
    if fmt == "parquet":
        if name == "-":
            raise InputError(
                "Parquet is read from its end (the footer), which standard input cannot do: "
                "give the file's path",
                path="<stdin>",
            )
        parquet = _parquet(name, closing)

        def parquet_batches(columns: list[str]) -> Iterator[pa.RecordBatch]:
            return parquet.iter_batches(batch_size=_BATCH_ROWS, columns=columns)

        return parquet.schema_arrow, parquet_batches
    import pyarrow as pa

    reader = _ipc(name, closing)

    def ipc_batches(columns: list[str]) -> Iterator[pa.RecordBatch]:
        if isinstance(reader, pa.ipc.RecordBatchFileReader):  # batches one at a time, memory-mapped
            for index in range(reader.num_record_batches):
                yield reader.get_batch(index).select(columns)
        else:
            for batch in reader:
                yield batch.select(columns)

    return reader.schema, ipc_batches


def _pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401  # optional extra: fail here with the install command
    except ImportError:
        raise ConfigError(f"reading Parquet or Arrow files needs pyarrow: {_INSTALL}") from None


def _parquet(name: str, closing: contextlib.ExitStack) -> pq.ParquetFile:
    import pyarrow.parquet as pq

    _readable(name)
    try:
        parquet = pq.ParquetFile(name)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise _not_readable(name, "a Parquet file", exc) from None
    closing.callback(parquet.close)
    return parquet


def _ipc(
    name: str, closing: contextlib.ExitStack
) -> pa.ipc.RecordBatchFileReader | pa.ipc.RecordBatchStreamReader:
    """An IPC file's reader (batches taken by index), else a stream's (``.arrows``, or ``-``)."""
    import pyarrow as pa

    if name == "-":
        try:
            stdin = cast("io.IOBase", sys.stdin.buffer)  # a BufferedReader, as typeshed does not say
            return pa.ipc.open_stream(pa.PythonFile(stdin, mode="r"))
        except (OSError, ValueError) as exc:
            raise _not_readable("<stdin>", "an Arrow IPC stream", exc) from None
    _readable(name)
    try:
        mapped = pa.memory_map(name, "r")
    except OSError as exc:
        raise InputError(f"cannot be read: {exc}", path=name) from None
    closing.callback(mapped.close)
    # A file that is not in the format its name says may well be in the other one (a .arrow stream).
    stream_first = Path(name).suffix.lower() == ".arrows"
    file_error: Exception | None = None
    for as_stream in (True, False) if stream_first else (False, True):
        mapped.seek(0)
        try:
            return pa.ipc.open_stream(mapped) if as_stream else pa.ipc.open_file(mapped)
        except (OSError, ValueError) as exc:
            if not as_stream:  # what the file reader says ("Not an Arrow file") reads best
                file_error = exc
    assert file_error is not None
    raise _not_readable(name, "an Arrow IPC (Feather version 2) file or stream", file_error) from None


def _readable(name: str) -> None:
    """What the operating system says of ``name``, in corral's words, before pyarrow says it."""
    path = Path(name)
    if path.is_dir():
        raise InputError("is a directory, not a file", path=name)
    if not path.exists():
        raise InputError("does not exist", path=name)


def _not_readable(name: str, what: str, exc: Exception) -> InputError:
    why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(
        f"is not {what} (pyarrow: {why}); check the file, or pass --format for what it really is",
        path=name,
    )


def _guarded(batches: Iterator[pa.RecordBatch], name: str) -> Generator[pa.RecordBatch, None, None]:
    """Batches, a file damaged after its first ones an :class:`InputError` (the rows before it are
    yielded, as a CSV file's are before a quote never closed)."""
    rows = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, ValueError) as exc:
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot be read after row {rows:,} (pyarrow: {why})", path=name) from None
        rows += batch.num_rows
        yield batch
