"""``evaluate``: a job's output file against a gold file, scored field by field, with intervals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from corral.errors import ConfigError, InputError
from corral.evaluation._bootstrap import intervals
from corral.evaluation._calibration import calibrate, confidences
from corral.evaluation._compare import Comparer
from corral.evaluation._read import Row, read_rows
from corral.evaluation._results import LEVEL, Evaluation, ItemResult, Score, Status, macro
from corral.evaluation._shape import UNKNOWN, Leaf, Shape, entity_lists, field_order, lookup, shape_of
from corral.schema import ResponseSpec, load_spec

__all__ = ["evaluate", "read_gold"]


def evaluate(
    output: str | Path,
    gold: str | Path,
    schema: object,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    list_keys: Mapping[str, Sequence[str]] | None = None,
    confidence_threshold: float = 0.8,
) -> Evaluation:
    """Score the records of ``output`` (a job's JSONL or CSV) against those of ``gold``.

    ``schema`` is what the job ran with (a pydantic class, a JSON Schema, ``"file.py:Class"``,
    ``"schema.json"``, or a :class:`~corral.schema.ResponseSpec`). ``bootstrap`` resamples (0: none)
    with ``seed`` give every score a 95% interval. ``list_keys`` names the key fields of lists of
    objects (``{"people": ("name",)}``), which pair entities before their likeness does.
    ``confidence_threshold``: calibration also reports the accuracy of values at least this sure.
    """
    spec = _spec(schema)
    shape = shape_of(spec)
    comparer = Comparer(shape, _list_keys(list_keys, shape))
    golds = _rows(gold, shape, spec, "gold")
    outputs: dict[str, Row] = {}
    extra: list[str] = []
    for row in read_rows(output, shape, many=spec.many, role="output"):
        if row.id in golds:
            outputs[row.id] = row
        else:
            extra.append(row.id)

    items: list[ItemResult] = []
    counts: list[dict[str, tuple[int, int, int]]] = []
    sure: list[tuple[float, bool, str]] = []
    for item_id, row in golds.items():
        mine = outputs.get(item_id)
        status: Status = "missing" if mine is None else "error" if mine.error is not None else "matched"
        tally = comparer.item(mine.output if mine is not None and status == "matched" else None, row.output)
        if mine is not None and status == "matched" and mine.confidence:
            sure.extend(confidences(mine.confidence, tally.verdicts))
        counts.append({path: (c[0], c[1], c[2]) for path, c in tally.counts.items()})
        score = Score(tally.tp, tally.fp, tally.fn)
        items.append(ItemResult(item_id, status, score, tuple(tally.mismatches)))
    items += [ItemResult(item_id, "extra", Score(0, 0, 0)) for item_id in extra]

    paths = _ordered(field_order(shape), counts)
    cis = intervals(counts, paths, resamples=bootstrap, seed=seed, level=LEVEL)
    totals = {path: [0, 0, 0] for path in paths}
    for item in counts:
        for path, (tp, fp, fn) in item.items():
            total = totals[path]
            total[0], total[1], total[2] = total[0] + tp, total[1] + fp, total[2] + fn
    fields = {path: Score(tp, fp, fn, ci=cis[path]) for path, (tp, fp, fn) in totals.items()}
    tp, fp, fn = (sum(t[k] for t in totals.values()) for k in range(3))
    overall = Score(tp, fp, fn, ci=cis[None])
    return Evaluation(
        overall=overall,
        macro=macro(fields.values()),
        fields=fields,
        items=tuple(items),
        missing=tuple(i.id for i in items if i.status == "missing"),
        extra=tuple(extra),
        errored=tuple(i.id for i in items if i.status == "error"),
        calibration=calibrate(sure, threshold=confidence_threshold),
        resamples=max(0, bootstrap),
        seed=seed,
        confidence_pairs=tuple(sure),
    )


def read_gold(path: str | Path, schema: object) -> dict[str, Any]:
    """The gold outputs of a JSONL or CSV file by id, in its order (CSV cells typed by ``schema``)."""
    spec = _spec(schema)
    return {item_id: row.output for item_id, row in _rows(path, shape_of(spec), spec, "gold").items()}


def _spec(schema: object) -> ResponseSpec[Any]:
    return schema if isinstance(schema, ResponseSpec) else load_spec(schema)


def _rows(path: str | Path, shape: Shape, spec: ResponseSpec[Any], role: Literal["gold"]) -> dict[str, Row]:
    rows = {row.id: row for row in read_rows(path, shape, many=spec.many, role=role)}
    if not rows:
        raise InputError("is empty: there are no gold records to score against", path=str(path))
    return rows


def _ordered(schema_order: list[str], counts: list[dict[str, tuple[int, int, int]]]) -> list[str]:
    """The fields that have any slot: in the schema's order, then those only the values name."""
    seen = {path: None for item in counts for path in item}
    rank = {path: index for index, path in enumerate(schema_order)}
    first = {path: index for index, path in enumerate(seen)}
    return sorted(seen, key=lambda p: (rank.get(p, len(rank)), first[p]))


def _list_keys(list_keys: Mapping[str, Sequence[str]] | None, shape: Shape) -> dict[str, tuple[str, ...]]:
    """``list_keys`` by the items' path (``people`` and ``people[]`` both name ``people[]``; ``""``
    and ``[]`` the list of a ``many`` schema), each checked against the schema."""
    if not list_keys:
        return {}
    lists = entity_lists(shape)
    found = {}
    for path, given in list_keys.items():
        items = path if path.endswith("[]") else f"{path}[]"
        if items not in lists:
            known = ", ".join(p.removesuffix("[]") or "[]" for p in lists) or "none"
            raise ConfigError(
                f"list_keys names {path!r}, which is not a list of objects in the schema (its lists of "
                f"objects: {known})"
            )
        keys = (given,) if isinstance(given, str) else tuple(given)
        for key in keys:
            target = lookup(lists[items], tuple(key.split(".")))
            if not isinstance(target, Leaf) and target is not UNKNOWN:
                raise ConfigError(
                    f"list_keys[{path!r}] names {key!r}, which is no field of one value in the list's items"
                )
        found[items] = keys
    return found
