"""Output writers ("sinks"): where the records of a run go, one per item, as they finish.

Every record is ``Outcome.to_record()``: ``id, input, output, error, attempts, usage, latency``, with
``grounding`` (each value's span in the text) unless it is off, ``confidence`` (each value's, when
the model gave log-probabilities), and a document's ``chunks`` and ``conflicts`` (without ``input``);
every format keeps every field. Input fields passed through (``--keep``) come right after ``id``, in
the order they were named: JSON values as they are (a value JSON cannot hold, a Decimal or bytes, as
its text), CSV cells, and Parquet columns of the input's own Arrow type (an input in Parquet or Arrow;
from any other input they are text).

* **jsonl** — one ``orjson`` line per record, exactly as corral has always written them.
* **csv** — a header row, then one row per record. The output is flattened *from the schema*, so the
  header is known before the first record: object properties become dotted columns
  (``output.address.city``); arrays, maps, unions and ``many`` lists are one cell of compact JSON.
* **parquet** — typed columns derived from the schema (objects are structs, arrays are lists, anything
  without one Arrow type is a JSON string), written a row group per ``flush()``. Needs ``pyarrow``.

:func:`check_output` runs before anything is written: corral never overwrites a file that is not its
own. Any ``OSError`` while writing (a full disk) becomes :class:`~corral.errors.OutputError`.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol, Self, cast

import orjson

from corral.errors import ConfigError, OutputError
from corral.schema import ResponseSpec

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "SINK_FORMATS",
    "ArrowRecords",
    "Sink",
    "SinkFormat",
    "check_output",
    "dump_record",
    "open_sink",
    "same_file",
    "sink_format",
]

SinkFormat = Literal["jsonl", "csv", "parquet"]
SINK_FORMATS: tuple[SinkFormat, ...] = ("jsonl", "csv", "parquet")

_BY_EXTENSION: dict[str, SinkFormat] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
}  # fmt: skip
_JSONL_START = b'{"id":'  # orjson keeps key order, so every line corral writes begins this way
_HEAD_LIMIT = 1 << 24  # first line read by check_output; a longer one is not a plausible record
_ROW_GROUP = 10_000
_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
_TAIL_COLUMNS = [
    "error.kind", "error.message", "attempts", *(f"usage.{k}" for k in _USAGE_KEYS), "latency",
    "grounding", "conflicts", "chunks", "confidence",
]  # fmt: skip

_SCALARS = frozenset({"string", "integer", "number", "boolean"})
Convert = Callable[[Any], Any] | None  # None: the value is stored as it is


def sink_format(path: str | None, explicit: str | None = None) -> SinkFormat:
    """The format to write: ``explicit`` if given, else by the file's extension, else JSONL."""
    if explicit is not None:
        if explicit not in SINK_FORMATS:
            raise ConfigError(f"unknown output format {explicit!r}: choose one of {', '.join(SINK_FORMATS)}")
        fmt: SinkFormat = explicit
    else:
        fmt = _BY_EXTENSION.get(Path(path).suffix.lower(), "jsonl") if path else "jsonl"
    if fmt == "parquet" and _is_stdout(path):
        raise OutputError("parquet needs a file: add -o out.parquet")
    return fmt


def holds_a_file(path: Path, *, option: str, example: str) -> bool:
    """Whether there is a file at ``path`` that writing there would replace (new and empty files,
    and devices such as /dev/null, hold nothing of anyone's); an :class:`OutputError` if nothing can
    be written there (a directory, or no directory to write in). ``option`` named the path."""
    if path.is_dir():
        raise OutputError(f"{path} is a directory: give a file name, e.g. {option} {path / example}")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: directory {path.parent} does not exist; create it first")
    return path.is_file() and path.stat().st_size > 0


def check_output(path: str | None, fmt: SinkFormat, *, source: str | None = None) -> None:
    """Raise :class:`OutputError` unless ``path`` can be (over)written as a ``fmt`` output; never the
    input ``source`` (the same file by any name: a link, a relative path)."""
    if path is None or path == "-":
        return
    file = Path(path)
    if same_file(source, path):
        raise OutputError(
            f"{path} is the input {source}: writing it would destroy the input while it is being "
            "read; choose another -o"
        )
    if not holds_a_file(file, option="-o", example=f"out.{fmt}"):
        return
    why = _parquet_problem(path) if fmt == "parquet" else _text_problem(file, fmt)
    if why:
        raise OutputError(
            f"{path} exists and is not a corral {fmt} output ({why}); corral never overwrites a file "
            "that is not its own: choose another -o, or delete it if it is not needed"
        )


def same_file(one: str | None, other: str | None) -> bool:
    """Whether two paths name one file: by any name (a link, a relative path), or, while one of them
    is not written yet, by the path it will have. ``-`` and None (stdin, stdout) are no file."""
    if one is None or other is None or "-" in (one, other):
        return False
    try:
        return os.path.samefile(one, other)
    except OSError:  # one of them does not exist (yet): the same file only if it would be created there
        pass
    try:
        return Path(one).resolve() == Path(other).resolve()
    except (OSError, RuntimeError):  # a loop of links: nothing can be written there anyway
        return False


def _is_stdout(path: str | None) -> bool:
    return path is None or path == "-"


def _text_problem(file: Path, fmt: SinkFormat) -> str | None:
    try:
        with file.open("rb") as fh:
            line = fh.readline(_HEAD_LIMIT)
    except OSError as exc:
        return f"it cannot be read: {exc.strerror or exc}"
    shown = line[:60].decode("utf-8", "replace").rstrip("\r\n")
    quoted = f"its first line is {shown + ('…' if len(line) > 60 else '')!r}"
    if fmt == "jsonl":
        with contextlib.suppress(orjson.JSONDecodeError):
            head = orjson.loads(line)
            if isinstance(head, dict) and {"id", "output", "error"} <= head.keys():
                return None
        # A lone unfinished line starting as ours: an earlier run that died mid-write (disk full).
        finished = line.endswith(b"\n")
        return None if not finished and line.startswith(_JSONL_START) else quoted
    try:
        header = next(csv.reader([line.decode("utf-8")]), [])
    except (UnicodeDecodeError, csv.Error):
        return quoted
    # Ours: "id", the kept input fields (--keep) if any, then "input".
    return None if header[:1] == ["id"] and "input" in header else quoted


def _parquet_problem(path: str) -> str | None:
    _require_pyarrow()
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path).metadata or {}
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError: "magic bytes not found"
        return f"it is not readable as Parquet: {exc}"
    return None if b"corral" in metadata else "its metadata has no corral key"


def _require_pyarrow() -> None:
    try:
        import pyarrow.parquet  # noqa: F401  # optional extra: fail here with the install command
    except ImportError:
        raise ConfigError("writing Parquet needs pyarrow: pip install 'corral[parquet]'") from None


def _write_failed(path: str | None, exc: OSError) -> OutputError:
    if isinstance(exc, BrokenPipeError):
        return OutputError(
            f"{path or '<stdout>'} was closed by its reader (broken pipe); finished results are kept "
            "in the run store"
        )
    return OutputError(
        f"cannot write {path or '<stdout>'}: {exc.strerror or exc}; free space (or fix the path) and re-run"
        " — finished results are kept in the run store"
    )


@contextlib.contextmanager
def _writing(path: str | None) -> Iterator[None]:
    """Report a failed write (a full disk) as what to do about it, not as a traceback."""
    try:
        yield
    except OSError as exc:
        raise _write_failed(path, exc) from exc


# --- the sinks -------------------------------------------------------------------------------


class Sink(Protocol):
    """Where records go. ``flush()`` puts everything written so far in the file; ``close()`` finishes."""

    path: str | None

    def write(self, record: Mapping[str, Any]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def open_sink(
    path: str | None,
    fmt: SinkFormat,
    spec: ResponseSpec[Any],
    *,
    csv_formulas: bool = False,
    keep: Sequence[str] = (),
    keep_types: Mapping[str, pa.DataType] | None = None,
) -> Sink:
    """Create (or truncate) ``path`` and return its sink; ``None`` or ``"-"`` is stdout (never closed).

    ``csv_formulas``: write CSV cells that a spreadsheet would run as formulas as they are (by
    default they are neutralised, see :func:`_cell`). ``keep``: the input fields the records carry
    after ``id`` (``--keep``), which CSV and Parquet need before the first record for their columns;
    ``keep_types``: their Arrow types for Parquet (an input in Parquet or Arrow), text otherwise."""
    if fmt == "parquet":
        return _ParquetSink(path, spec, keep=keep, keep_types=keep_types)
    return _CsvSink(path, spec, formulas=csv_formulas, keep=keep) if fmt == "csv" else _JsonlSink(path)


def dump_record(record: Mapping[str, Any], *, newline: bool = False) -> bytes:
    """``record`` as one line of JSON, which never fails for a value JSON cannot hold: an input field
    passed through (``--keep``) may be a Decimal, bytes or an integer over 64 bits; each is its text."""
    return _json(record, newline=newline)


def _json(value: Any, *, newline: bool = False) -> bytes:
    option = orjson.OPT_APPEND_NEWLINE if newline else None
    try:
        return orjson.dumps(value, default=_as_text, option=option)
    except orjson.JSONEncodeError:  # what default= is not asked about: big integers, non-string keys
        return orjson.dumps(_jsonable(value), default=_as_text, option=option)


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)
    return value


class _Closing:
    path: str | None = None
    _closed = False

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # the error already on its way out says more than a second one from close() would
            with contextlib.suppress(OutputError):
                self.close()


class _FileSink(_Closing):
    """A byte handle on the file, or on stdout (flushed but left open at the end)."""

    _fh: IO[bytes]

    def _open(self, path: str | None) -> IO[bytes]:
        self.path = path
        if path is None or path == "-":
            return sys.stdout.buffer
        with _writing(path):
            return open(path, "wb")  # the sink owns the handle until close()

    def flush(self) -> None:
        with _writing(self.path):
            self._fh.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _writing(self.path):
            if _is_stdout(self.path):
                self._fh.flush()
            else:
                self._fh.close()  # flushes, and closes the descriptor even when that flush fails


class _JsonlSink(_FileSink):
    def __init__(self, path: str | None) -> None:
        self._fh = self._open(path)
        self._write = self._fh.write  # bound once: this runs for every record, thousands per second

    def write(self, record: Mapping[str, Any]) -> None:
        try:  # not `with _writing(...)`: a plain try costs nothing on this hot path
            try:
                line = orjson.dumps(record, default=_as_text, option=orjson.OPT_APPEND_NEWLINE)
            except orjson.JSONEncodeError:
                line = _json(record, newline=True)
            self._write(line)
        except OSError as exc:
            raise _write_failed(self.path, exc) from exc


class _CsvSink(_FileSink):
    def __init__(
        self, path: str | None, spec: ResponseSpec[Any], *, formulas: bool = False, keep: Sequence[str] = ()
    ) -> None:
        self._columns = _csv_columns(spec)
        self._keep = list(dict.fromkeys(keep))
        self._cell = _cell if formulas else _safe_cell
        self._fh = self._open(path)
        # Encoded straight into the byte handle: a TextIOWrapper around stdout would close it when freed.
        self._writer = csv.writer(codecs.getwriter("utf-8")(self._fh))
        header = ["id", *self._keep, "input", *(c[0] for c in self._columns), *_TAIL_COLUMNS]
        with _writing(path):
            self._writer.writerow(header)

    def write(self, record: Mapping[str, Any]) -> None:
        output, error, usage = record.get("output"), record.get("error") or {}, record.get("usage") or {}
        row = [record.get("id"), *(record.get(name) for name in self._keep), record.get("input")]
        for _, keys, as_json in self._columns:
            value = _dig(output, keys)
            row.append(orjson.dumps(value).decode() if as_json and value is not None else value)
        row += [error.get("kind"), error.get("message"), record.get("attempts")]
        row += [usage.get(k) for k in _USAGE_KEYS] + [record.get("latency")]
        row += [
            _json_cell(record.get("grounding")),
            _json_cell(record.get("conflicts")),
            record.get("chunks"),
            _json_cell(record.get("confidence")),
        ]
        try:
            self._writer.writerow([self._cell(v) for v in row])
        except OSError as exc:
            raise _write_failed(self.path, exc) from exc


def _json_cell(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return _json(value).decode()  # data wider than its schema said: still kept whole
    if isinstance(value, bytes | bytearray | memoryview):
        return _as_text(value)  # a kept input field of binary type
    return str(value)


#: what makes a spreadsheet read a cell as a formula (OWASP's list for CSV injection)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _safe_cell(value: Any) -> str:
    """A cell no spreadsheet runs: a text from outside (an input, a model's answer) that begins like a
    formula gets a leading apostrophe, as OWASP advises. Numbers stay numbers (-5 is not a formula)."""
    text = _cell(value)
    if isinstance(value, str) and text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def _dig(value: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _csv_columns(spec: ResponseSpec[Any]) -> list[tuple[str, tuple[str, ...], bool]]:
    """``(header, keys into output, cell is JSON)`` for each output column, from the schema alone."""
    root = spec.schema
    columns: list[tuple[str, tuple[str, ...], bool]] = []

    def walk(node: Any, keys: tuple[str, ...], seen: frozenset[str]) -> None:
        node, seen = _resolve(node, root, seen)
        if _is_record(node):
            for name, prop in node["properties"].items():
                walk(prop, (*keys, name), seen)
        else:
            columns.append((".".join(("output", *keys)), keys, _scalar(node) is None))

    if spec.many or not _is_record(_resolve(root, root, frozenset())[0]):
        return [("output", (), True)]  # a list, or nothing to flatten: the whole output as JSON
    walk(root, (), frozenset())
    return columns


# --- JSON Schema, as far as output columns need it -------------------------------------------


def _resolve(node: Any, root: Mapping[str, Any], seen: frozenset[str]) -> tuple[Any, frozenset[str]]:
    """Follow ``$ref`` (a cycle is left unresolved, so stored as JSON) and unwrap ``X | None``."""
    while isinstance(node, dict):
        ref = node.get("$ref")
        alts = node.get("anyOf") or node.get("oneOf") or node.get("allOf")
        if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
            seen |= {ref}
            target: Any = root
            for part in ref[2:].split("/"):
                key = part.replace("~1", "/").replace("~0", "~")
                target = target.get(key) if isinstance(target, dict) else None
            node = target if isinstance(target, dict) else {}
        elif ref is None and isinstance(alts, list) and len(alts) - alts.count({"type": "null"}) == 1:
            node = next(alt for alt in alts if alt != {"type": "null"})
        else:
            return node, seen
    return node, seen


def _types(node: Any) -> set[str]:
    kind = node.get("type") if isinstance(node, dict) else None
    found = set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else set()
    return found - {"null"}


def _is_record(node: Any) -> bool:
    """An object with named properties and no open extra keys (those would be lost as columns)."""
    return (
        isinstance(node, dict)
        and bool(node.get("properties"))
        and _types(node) <= {"object"}
        and node.get("additionalProperties", False) is False
    )


def _scalar(node: Any) -> str | None:
    """The one JSON scalar type of ``node`` (an enum of strings is a string), else None."""
    if not isinstance(node, dict):
        return None
    values = node.get("enum", [node["const"]] if "const" in node else None)
    if isinstance(values, list):
        return "string" if values and all(isinstance(v, str) for v in values) else None
    kinds = _types(node)
    return kinds.pop() if len(kinds) == 1 and kinds <= _SCALARS else None


# --- Parquet ---------------------------------------------------------------------------------


class ArrowRecords:
    """Records as rows of one Arrow schema, typed from the response schema: the Parquet output's
    columns (and a DataFrame's, :func:`corral.extract_frame`). ``keep``/``keep_types`` as for
    :func:`open_sink`."""

    def __init__(
        self,
        spec: ResponseSpec[Any],
        *,
        keep: Sequence[str] = (),
        keep_types: Mapping[str, pa.DataType] | None = None,
    ) -> None:
        _require_pyarrow()
        import pyarrow as pa

        span = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("how", pa.string()),
                          ("score", pa.float64()), ("page", pa.int64())])  # fmt: skip
        conflict = pa.struct(
            [("path", pa.string()), ("kept", pa.string()), ("others", pa.list_(pa.string()))]
        )
        confident = pa.struct([("value", pa.float64()), ("method", pa.string())])

        root = spec.schema
        # many: the wire schema wraps the list as {"items": [...]}; the record holds the bare list
        output, self._convert = _arrow(root["properties"]["items"] if spec.many else root, root, frozenset())
        # Kept input fields (--keep) in the input's own types; without them (a JSONL or CSV input), text.
        types = {name: _storable((keep_types or {}).get(name)) for name in dict.fromkeys(keep)}
        self._as_text = [name for name, type_ in types.items() if type_ is None]
        kept = [(name, pa.string() if type_ is None else type_) for name, type_ in types.items()]
        fields = [
            ("id", pa.string()), *kept, ("input", pa.string()), ("output", output),
            ("error", pa.struct([("kind", pa.string()), ("message", pa.string())])),
            ("attempts", pa.int64()), ("usage", pa.struct([(k, pa.int64()) for k in _USAGE_KEYS])),
            ("latency", pa.float64()),
            ("grounding", pa.map_(pa.string(), span)), ("conflicts", pa.list_(conflict)),
            ("chunks", pa.int64()),
            ("confidence", pa.map_(pa.string(), confident)),
        ]  # fmt: skip
        schema_json = spec.schema_json.encode()  # lets a reader rebuild the types the output came from
        self.schema = pa.schema(fields, metadata={b"corral": b"1", b"corral.schema": schema_json})

    def row(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` as a row of :attr:`schema` (for :meth:`table`)."""
        row = dict(record)
        for name in self._as_text:
            value = row.get(name)
            if value is not None and not isinstance(value, str):
                json_native = isinstance(value, bool | int | float | dict | list | tuple)
                row[name] = _json(value).decode() if json_native else _as_text(value)
        if self._convert is not None and row.get("output") is not None:
            row["output"] = self._convert(row["output"])
        for name in ("grounding", "confidence"):
            if row.get(name) is not None:
                row[name] = list(row[name].items())  # a map is written as its pairs
        if row.get("conflicts"):
            # Kept values are any JSON (a number, an object): one type for Arrow, JSON text.
            row["conflicts"] = [
                {"path": c["path"], "kept": _dumps(c["kept"]), "others": [_dumps(o) for o in c["others"]]}
                for c in row["conflicts"]
            ]
        return row

    def table(self, rows: list[dict[str, Any]]) -> pa.Table:
        """Rows made by :meth:`row`, as a table of :attr:`schema`."""
        import pyarrow as pa

        return pa.Table.from_pylist(rows, schema=self.schema)


class _ParquetSink(_Closing):
    def __init__(
        self,
        path: str | None,
        spec: ResponseSpec[Any],
        *,
        keep: Sequence[str] = (),
        keep_types: Mapping[str, pa.DataType] | None = None,
    ) -> None:
        if path is None or path == "-":
            raise OutputError("parquet needs a file: add -o out.parquet")
        _require_pyarrow()
        import pyarrow.parquet as pq

        self.path = path
        self._records = ArrowRecords(spec, keep=keep, keep_types=keep_types)
        self._rows: list[dict[str, Any]] = []
        with _writing(path):
            self._writer = pq.ParquetWriter(path, self._records.schema)

    def write(self, record: Mapping[str, Any]) -> None:
        self._rows.append(self._records.row(record))
        if len(self._rows) >= _ROW_GROUP:
            self._write_group()

    def flush(self) -> None:
        # A Parquet file is readable only once its footer is written (at close), so flushing a
        # run's small commit batches would only cut it into thousands of tiny row groups. Rows go
        # out every _ROW_GROUP records, which also bounds the memory they hold.
        return

    def _write_group(self) -> None:
        if self._rows:
            table, self._rows = self._records.table(self._rows), []
            with _writing(self.path):
                self._writer.write_table(table)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._write_group()
        finally:
            with _writing(self.path):
                self._writer.close()  # the footer: without it the file is unreadable


def _storable(type_: pa.DataType | None) -> pa.DataType | None:
    """An input column's type as an output column: a dictionary (pandas' categorical) as its values'
    type, since each row group would otherwise need the dictionary again."""
    import pyarrow as pa

    if type_ is not None and pa.types.is_dictionary(type_):
        return cast("pa.DataType", type_.value_type)
    return type_


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _to_json(value: Any) -> Any:
    return None if value is None else orjson.dumps(value).decode()


def _arrow(node: Any, root: Mapping[str, Any], seen: frozenset[str]) -> tuple[pa.DataType, Convert]:
    """The Arrow type for a JSON Schema node, and how to turn a value into it (None: as it is)."""
    import pyarrow as pa

    node, seen = _resolve(node, root, seen)
    kind = _scalar(node)
    if kind is not None:
        arrow: dict[str, pa.DataType] = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64()}
        return arrow.get(kind, pa.bool_()), None
    if _is_record(node):
        parts = {name: _arrow(prop, root, seen) for name, prop in node["properties"].items()}
        fix = {name: convert for name, (_, convert) in parts.items() if convert is not None}

        def to_struct(v: Any) -> Any:
            return None if v is None else {**v, **{name: fixer(v.get(name)) for name, fixer in fix.items()}}

        return pa.struct([(name, type_) for name, (type_, _) in parts.items()]), to_struct if fix else None
    if _types(node) == {"array"} and "prefixItems" not in node:
        item, convert = _arrow(node.get("items", {}), root, seen)
        to_list = None if convert is None else lambda v: None if v is None else [convert(x) for x in v]
        return pa.list_(item), to_list
    return pa.string(), _to_json  # unions, maps, tuples, untyped, recursive: compact JSON text
