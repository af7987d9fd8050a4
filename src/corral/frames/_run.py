"""``extract_frame``: a table's rows through a job, its extraction back as typed columns.

    table ─► Arrow batches (the text column, or a template's) ─► items ─► run_documents(job) ─►
        records (input order) ─► Arrow columns, as the Parquet output types them ─► the same table + columns

The job is the one ``corral run`` runs (:func:`~corral.jobs.open_job`, :func:`~corral.documents.
run_documents`): re-asks, retries, limits, long texts chunked and grounded, identical texts asked once.
Given a ``store`` it is durable like the command line: a call killed half way, made again with the
same table and options, answers the finished rows from the store and asks only the rest; a cost cap
counts every call of the job. A row that fails is that row's ``error``; the call fails only when the
job cannot run at all (no model, a refused store, a bad template).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from corral.documents import run_documents
from corral.engine._stats import RunStats
from corral.errors import ConfigError
from corral.frames._convert import columns_of, kind_of, record_batches, row_count, with_columns
from corral.io.arrow import items_from_batches
from corral.io.sinks import ArrowRecords
from corral.io.template import Template
from corral.jobs import DocumentOptions, ExtractOptions, JobSpec, open_job
from corral.schema import load_spec
from corral.store._cache import MemoryAnswers
from corral.types import Item, Outcome

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["aextract_frame", "extract_frame"]

T = TypeVar("T")

#: a chunk's item id: its document's id, then ``#k`` (and ``/p`` for a later pass)
_CHUNK_ID = re.compile(r"#\d+(?:/\d+)?$")


async def aextract_frame(
    data: T,
    schema: Any,
    *,
    text: str = "text",
    template: str | None = None,
    id: str | None = None,
    column: str = "extraction",
    flatten: bool = False,
    prefix: str = "",
    store: str | Path | None = None,
    job: str | None = None,
    fresh: bool = False,
    retry_errors: bool = False,
    max_cost: float | None = None,
    prices: str | None = None,
    documents: DocumentOptions | None = None,
    **options: Any,
) -> T:
    """Extract ``schema`` from every row of ``data`` (a pandas or polars DataFrame, a pyarrow Table, a
    ``datasets.Dataset``); the same kind of table comes back with the extraction as new columns.

    The text is the ``text`` column's, or ``template`` made from several (``"Title: {title}\\n\\n
    {body}"``; a row missing a field is that row's error). The new columns, after the table's own:
    ``column`` (default ``extraction``: one struct, typed from the schema; or with ``flatten=True``
    one column per top-level field), ``error`` (kind and message; null when the row has a value),
    ``attempts``, ``cost`` (USD this call spent on the row: null when the model's price is unknown,
    0 for a row answered from the store or by an identical row's request), ``grounding`` (each
    value's span in the text) and ``confidence`` when there are any. ``prefix`` goes before every
    new column's name (a table may already have an ``error``).

    ``store``: a run store directory or file; with it the call is a durable job named ``job``
    (default: after the table's texts and the options), resumed when made again, ``fresh`` to start
    over, ``retry_errors`` to ask the rows that failed again, ``max_cost`` (USD, all its calls) to stop
    starting requests. Rows the cap kept from starting end as ``not_started`` errors. Without a store
    nothing is kept beyond the call. ``id``: a column of unique row ids (default: the row's
    position), so that a resumed job finds its rows even when the table's order changed.

    ``options`` are :class:`~corral.jobs.ExtractOptions`' (``model``, ``base_url``, ``concurrency``,
    ``prompt``, ``rpm``, ...); ``documents`` how long texts are chunked and values grounded.
    """
    kind = kind_of(data)
    extract = _extract_options(options)
    names = columns_of(data, kind)
    parsed = Template(template) if template is not None else None
    needed = list(parsed.fields) if parsed is not None else [text]
    if id is not None:
        needed.append(id)
    missing = [name for name in dict.fromkeys(needed) if name not in names]
    if missing:
        shown = ", ".join(names[:30]) + (", …" if len(names) > 30 else "")
        hint = "" if template is not None else "; pass text='column' or template='...'"
        raise ConfigError(f"the table has no column {missing[0]!r} (columns: {shown}){hint}")
    rows = row_count(data, kind)
    batches = record_batches(data, kind, list(dict.fromkeys(needed)))
    items = list(
        items_from_batches(
            batches, source="table", text_field=text, id_field=id, template=parsed, first_row=0
        )
    )
    position = _positions(items, id)
    spec = JobSpec(
        schema=schema,
        extract=extract,
        store=None if store is None else str(store),
        durable=store is not None,
        fresh=fresh,
        retry_errors=retry_errors,
        max_cost=max_cost,
        prices=prices,
        documents=documents or DocumentOptions(),
        template=template,
        text_field=text,
    )
    key = job or _job_name(spec, items)
    collected = _Collect(rows, position)
    stats = RunStats(total=rows)
    # Without a store, every answer is kept for the call (the records are held anyway): an identical
    # row far down the table is still answered by the first one's request.
    async with open_job(spec, key=key if store is not None else None, answers=MemoryAnswers(None)) as opened:
        result = await run_documents(opened, items, collected, counters=stats, on_outcome=collected.cost_of)
        records = ArrowRecords(opened.extractor.spec)
        priced = opened.extractor.price is not None
    if result.status == "budget":
        collected.not_started(result.budget_message)
    added = _columns(collected, records, priced, column=column, flatten=flatten, prefix=prefix)
    clash = [name for name in added.column_names if name in names]
    if clash:
        raise ConfigError(
            f"the table already has a column {clash[0]!r}: pass prefix='x_' (or column='...') to name "
            "the new columns apart"
        )
    return with_columns(data, kind, added)  # type: ignore[no-any-return]


def extract_frame(data: T, schema: Any, **options: Any) -> T:
    """Synchronous :func:`aextract_frame` (in a notebook, whose loop is running, ``await
    aextract_frame(...)`` instead)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(aextract_frame(data, schema, **options))
    raise ConfigError(
        "extract_frame was called inside a running event loop (a notebook, an async function): "
        "use `await corral.aextract_frame(...)` there"
    )


def _extract_options(options: Mapping[str, Any]) -> ExtractOptions:
    known = {f.name for f in dataclasses.fields(ExtractOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"unknown option {unknown[0]!r} for extract_frame; the request options are: "
            + ", ".join(sorted(known))
        )
    return ExtractOptions(**options)


def _positions(items: list[Item], id_column: str | None) -> dict[str, int]:
    """Each item's row, by its id; ids must be unique (a job finds its rows by them)."""
    position: dict[str, int] = {}
    for row, item in enumerate(items):
        if item.id in position:
            raise ConfigError(
                f"rows {position[item.id]} and {row} have the same id {item.id!r} in column "
                f"{id_column!r}: ids must be unique (or leave id=None: rows are known by position)"
            )
        position[item.id] = row
    return position


def _job_name(spec: JobSpec, items: list[Item]) -> str:
    """A job's default name: the table's ids and texts and what is asked of them, hashed. The same
    call again is the same job (resumed); a changed prompt or model is another job, not a refusal."""
    digest = hashlib.blake2b(digest_size=12)
    asked = {
        "schema": load_spec(spec.schema).schema_json,
        "extract": spec.extract.extractor_options(),
        "documents": dataclasses.asdict(spec.documents),
    }
    digest.update(orjson.dumps(asked, default=str, option=orjson.OPT_SORT_KEYS))
    for item in items:
        digest.update(orjson.dumps([item.id, item.text]))
    return f"frame/{digest.hexdigest()}"


class _Collect:
    """The job's sink: each row's record, in its place; and what each row's requests cost."""

    path: str | None = None

    def __init__(self, rows: int, position: dict[str, int]) -> None:
        self.records: list[Mapping[str, Any] | None] = [None] * rows
        self.costs: list[float] = [0.0] * rows
        self._position = position

    def write(self, record: Mapping[str, Any]) -> None:
        self.records[self._position[str(record["id"])]] = record

    def cost_of(self, outcome: Outcome[Any]) -> None:
        row = self._position.get(outcome.id)
        if row is None:  # a chunk of a long text: its document's row
            row = self._position.get(_CHUNK_ID.sub("", outcome.id))
        if row is not None:
            self.costs[row] += outcome.cost

    def not_started(self, why: str) -> None:
        message = f"not started: {why}" if why else "not started"
        for row, record in enumerate(self.records):
            if record is None:
                self.records[row] = {"error": {"kind": "not_started", "message": message}, "attempts": 0}

    def flush(self) -> None:
        return

    def close(self) -> None:
        return

    def __enter__(self) -> _Collect:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _columns(
    collected: _Collect, records: ArrowRecords, priced: bool, *, column: str, flatten: bool, prefix: str
) -> pa.Table:
    import pyarrow as pa

    rows = [records.row(record or {}) for record in collected.records]
    table = records.table(rows).combine_chunks()
    output = table.column("output")
    names: list[str] = []
    columns: list[Any] = []
    if flatten:
        if not pa.types.is_struct(output.type):
            raise ConfigError(
                "flatten=True makes a column of each field of one object; this schema's output is "
                f"{output.type} (a list per row with many=True?): leave flatten off"
            )
        struct: Any = output.chunk(0) if output.num_chunks else pa.array([], output.type)
        for index in range(struct.type.num_fields):
            names.append(prefix + struct.type.field(index).name)
            # A field of a null struct is null (StructArray.field would show what lies under it).
            columns.append(pa.compute.struct_field(struct, [index]))
    else:
        names.append(prefix + column)
        columns.append(output)
    names += [prefix + "error", prefix + "attempts", prefix + "cost"]
    columns += [
        table.column("error"),
        table.column("attempts"),
        pa.array(collected.costs if priced else [None] * len(collected.costs), pa.float64()),
    ]
    for extra in ("grounding", "confidence"):
        values = table.column(extra)
        if values.null_count < len(values):
            names.append(prefix + extra)
            columns.append(_as_list(values.chunk(0)))
    return pa.table(dict(zip(names, columns, strict=True)))


def _as_list(column: Any) -> Any:
    """A map column as a list of ``{path, value}`` structs: polars and ``datasets`` hold no Arrow maps."""
    import pyarrow as pa

    entries = pa.StructArray.from_arrays([column.keys, column.items], names=["path", "value"])
    return pa.ListArray.from_arrays(column.offsets, entries, mask=column.is_null())
