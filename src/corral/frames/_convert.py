"""The tables corral takes and gives back: a pandas or polars DataFrame, a pyarrow Table, a Hugging
Face ``datasets.Dataset``. Each goes in as Arrow record batches (only the columns the extraction
reads) and comes back as the same kind of object with the new columns added after its own; the rows
and their order are the caller's. Every library is imported only when its kind of table is given,
and a missing one is named with its install hint."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from corral.errors import ConfigError, InputError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Kind", "columns_of", "kind_of", "record_batches", "row_count", "with_columns"]

Kind = Literal["pandas", "polars", "arrow", "datasets"]

#: the module a table's class comes from → its kind and the extra that installs what corral needs
_KINDS: dict[str, tuple[Kind, str]] = {
    "pandas": ("pandas", "pandas"),
    "polars": ("polars", "polars"),
    "pyarrow": ("arrow", "parquet"),
    "datasets": ("datasets", "datasets"),
}
#: rows per record batch handed to the reader
_BATCH_ROWS = 4096


def kind_of(data: Any) -> Kind:
    """Which kind of table ``data`` is, or a :class:`ConfigError` saying what corral takes. Told by
    the class's module, so that nothing is imported to ask."""
    root = type(data).__module__.partition(".")[0]
    name = type(data).__name__
    known = _KINDS.get(root)
    if known is not None and name in {"DataFrame", "Table", "Dataset"}:
        kind, extra = known
        _require("pyarrow", extra)  # every kind goes through Arrow
        return kind
    raise ConfigError(
        f"extract_frame takes a pandas or polars DataFrame, a pyarrow Table or a datasets.Dataset, "
        f"not a {type(data).__module__}.{name}; for a list of texts use corral.run"
    )


def _require(module: str, extra: str) -> None:
    if sys.modules.get(module) is not None:
        return
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{module} is not installed: pip install 'corral[{extra}]'") from None


def columns_of(data: Any, kind: Kind) -> list[str]:
    """The table's column names."""
    if kind in ("arrow", "datasets"):
        return list(data.column_names)
    return [str(name) for name in data.columns]


def row_count(data: Any, kind: Kind) -> int:
    return int(data.num_rows) if kind in ("arrow", "datasets") else len(data)


def record_batches(data: Any, kind: Kind, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """The ``columns`` of ``data`` as Arrow record batches, in row order (a pandas frame's columns
    are converted a batch of rows at a time, so only that much is copied at once)."""
    import pyarrow as pa

    names = list(columns)
    if kind == "arrow":
        yield from data.select(names).to_batches(max_chunksize=_BATCH_ROWS)
    elif kind == "polars":
        yield from data.select(names).to_arrow().to_batches(max_chunksize=_BATCH_ROWS)
    elif kind == "datasets":
        # Row order as the dataset shows it (a selected or shuffled dataset keeps an index mapping).
        for part in data.select_columns(names).with_format("arrow").iter(batch_size=_BATCH_ROWS):
            yield from part.to_batches()
    else:
        selected = data[names]
        for start in range(0, len(selected), _BATCH_ROWS):
            part = selected.iloc[start : start + _BATCH_ROWS]
            try:
                yield pa.RecordBatch.from_pandas(part, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                # An object column holding a number among its strings, say: Arrow wants one type.
                why = "; ".join(str(arg) for arg in exc.args)
                raise InputError(
                    f"rows {start}–{start + len(part) - 1} of the table cannot be read ({why}): give the "
                    "column one type, e.g. frame['text'] = frame['text'].astype('string')"
                ) from None


def with_columns(data: Any, kind: Kind, added: pa.Table) -> Any:
    """``data`` with ``added``'s columns after its own: the same kind of object, the same rows.
    pandas gets Arrow-backed columns (``pd.ArrowDtype``), so that a struct stays a struct and an
    integer with nulls stays an integer."""
    if kind == "arrow":
        table = data
        for name, column in zip(added.column_names, added.columns, strict=True):
            table = table.append_column(name, column)
        return table
    if kind == "polars":
        import polars as pl

        new = pl.from_arrow(added)
        assert isinstance(new, pl.DataFrame)
        return data.hstack(new.get_columns())
    if kind == "datasets":
        import datasets

        return datasets.concatenate_datasets([data, datasets.Dataset(added)], axis=1)
    import pandas as pd

    result = data.copy(deep=False)
    for name, column in zip(added.column_names, added.columns, strict=True):
        result[name] = pd.Series(pd.arrays.ArrowExtensionArray(column), index=data.index, name=name)
    return result
