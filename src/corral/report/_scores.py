"""A run scored against gold (:mod:`corral.evaluation`), and the scores as the report shows them.

:func:`evaluate_run` scores the job's records as the run store holds them: every record the job
wrote is there, whatever its output was (JSONL, CSV, Parquet, stdout), and a document job's
documents are there assembled (its items are the chunks). They are written to a temporary JSONL,
the form :func:`~corral.evaluation.evaluate` reads, in the order the job finished them.

:func:`evaluation_view` turns an :class:`~corral.evaluation.Evaluation` into the page's
:class:`~corral.report._model.EvaluationView`: every number as the text a person reads.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.errors import InputError, StoreError
from corral.report._model import (
    EvaluationView,
    Fact,
    FieldScore,
    ReliabilityBin,
    ValueMismatch,
    WrongItem,
)
from corral.store import RunStore

if TYPE_CHECKING:  # corral.evaluation loads only when a report is scored (it reads the schema)
    from corral.evaluation import Calibration, Evaluation, ItemResult, Score

__all__ = ["MISMATCHES_SHOWN", "WORST_ITEMS", "evaluate_run", "evaluation_view"]

#: items with values wrong listed on the page, the worst first
WORST_ITEMS = 20
#: values of one item listed beside the gold's (the rest are counted)
MISMATCHES_SHOWN = 12
#: characters of a value shown (a longer one is cut, with an ellipsis)
_VALUE_CHARS = 240
#: records read from the store at a time
_PAGE = 2_000
_NONE = "–"


def evaluate_run(
    store: RunStore,
    run: int,
    gold: str | Path,
    schema: object,
    *,
    list_keys: Mapping[str, Sequence[str]] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    confidence_threshold: float = 0.8,
) -> Evaluation:
    """The records of run ``run``'s job, as ``store`` holds them, scored against ``gold`` by
    :func:`corral.evaluation.evaluate` (``schema`` and the options are its own). A document job's
    documents are scored, not its chunks. A gold file that cannot be read raises
    :class:`~corral.errors.InputError` naming its file and line."""
    from corral.evaluation import evaluate

    record = store.views.run(run)
    if record is None:
        raise StoreError(f"there is no run {run} in {store.path}")
    with tempfile.TemporaryDirectory(prefix="corral-report-") as folder:
        path = Path(folder) / "records.jsonl"
        ids = _write_records(store, record.job, path)
        try:
            return evaluate(
                path,
                gold,
                schema,
                bootstrap=bootstrap,
                seed=seed,
                list_keys=list_keys,
                confidence_threshold=confidence_threshold,
            )
        except InputError as exc:
            if exc.path != str(path) or exc.line is None:
                raise
            # A record the store holds that the evaluation cannot read: say which, not the temporary file.
            why = str(exc).removeprefix(f"{path}:{exc.line}: ")
            raise StoreError(
                f"the record of item {ids[exc.line - 1]!r} in {store.path} cannot be scored: {why}"
            ) from None


def _write_records(store: RunStore, job: int, path: Path) -> list[str]:
    """The job's records into ``path`` as JSON lines (an item stored twice: its latest record, where
    it was first); their ids, line by line."""
    records: dict[str, bytes] = {}
    if store.document_count(job):
        for document in store.documents(job, max_chars=0):
            records[document.doc_id] = document.record
    else:
        after: int | None = None
        while page := store.views.page(job, after, _PAGE):
            for cursor, item_id, raw in page:
                records[str(item_id)] = bytes(raw)
                after = cursor
    with path.open("wb") as stream:
        for raw in records.values():
            stream.write(raw.rstrip(b"\n") + b"\n")
    return list(records)


# --- the page's view --------------------------------------------------------------------------


def evaluation_view(
    evaluation: Evaluation, *, gold: str | None = None, linkable: Collection[str] = ()
) -> EvaluationView:
    """``evaluation`` as the page shows it. ``gold``: the gold file's name, for the note;
    ``linkable``: the ids of the items the page's table holds (a wrong item links to its row)."""
    ev = evaluation
    intervals = ev.resamples > 0
    rows = [_field_score(path, score, intervals) for path, score in ev.fields.items()]
    rows.sort(key=lambda row: (row.f1_value is None, row.f1_value or 0.0, -(row.fp + row.fn)))
    worst = ev.worst_items(WORST_ITEMS)
    wrong_total = len(ev.worst_items(len(ev.items)))
    against = f" against the gold records of {gold}" if gold else " against the gold records"
    note = (
        f"Each value of the output{against}, field by field through the schema: a true positive (TP) "
        "where the two agree after normalisation, a false positive (FP) where the output holds a value "
        "the gold does not, a false negative (FN) where it misses or gets wrong one the gold holds "
        "(a wrong value is both)."
    )
    if intervals:
        note += (
            f" [low, high]: 95% intervals from {ev.resamples:,} bootstrap resamples of the items "
            f"(seed {ev.seed})."
        )
    cal = ev.calibration
    return EvaluationView(
        facts=_facts(ev, intervals),
        note=note,
        fields=tuple(rows),
        overall=_field_score("overall (all fields)", ev.overall, intervals),
        worst=tuple(_wrong_item(item, linkable) for item in worst),
        wrong_total=wrong_total,
        bins=() if cal is None else _bins(cal),
        calibration="" if cal is None else _calibration_line(cal),
    )


def _facts(ev: Evaluation, intervals: bool) -> tuple[Fact, ...]:
    overall = ev.overall

    def detail(metric: str, counts: str) -> str:
        ci = overall.ci.get(metric) if intervals else None
        return counts if ci is None else f"95% interval {_number(ci[0])}–{_number(ci[1])} · {counts}"

    gold = len(ev.items) - len(ev.extra)
    unanswered = len(ev.missing) + len(ev.errored)
    items = f"{gold - unanswered:,} matched · {len(ev.errored):,} errored · {len(ev.missing):,} missing"
    if ev.extra:
        items += f" · {len(ev.extra):,} not in the gold (not scored)"
    macro = f"macro {_number(ev.macro.f1)} over {ev.macro.fields} field{'s' if ev.macro.fields != 1 else ''}"
    tp, fp, fn = f"TP {overall.tp:,}", f"FP {overall.fp:,}", f"FN {overall.fn:,}"
    facts = [
        Fact("F1", _number(overall.f1), detail("f1", macro)),
        Fact("Precision", _number(overall.precision), detail("precision", f"{tp} · {fp}")),
        Fact("Recall", _number(overall.recall), detail("recall", f"{tp} · {fn}")),
        Fact("Gold items", f"{gold:,}", items, "warn" if unanswered else "plain"),
    ]
    if ev.calibration is not None:
        cal = ev.calibration
        facts.append(
            Fact(
                "Calibration error",
                _number(cal.ece),
                f"ECE over {cal.count:,} values · accuracy {_number(cal.accuracy)} "
                f"at mean confidence {_number(cal.confidence)}",
            )
        )
    return tuple(facts)


def _field_score(name: str, score: Score, intervals: bool) -> FieldScore:
    def ci(metric: str) -> str:
        found = score.ci.get(metric) if intervals else None
        return "" if found is None else f"[{_number(found[0])}, {_number(found[1])}]"

    return FieldScore(
        name=name,
        precision=_number(score.precision),
        precision_ci=ci("precision"),
        recall=_number(score.recall),
        recall_ci=ci("recall"),
        f1=_number(score.f1),
        f1_ci=ci("f1"),
        tp=score.tp,
        fp=score.fp,
        fn=score.fn,
        f1_value=score.f1,
    )


def _wrong_item(item: ItemResult, linkable: Collection[str]) -> WrongItem:
    shown = item.mismatches[:MISMATCHES_SHOWN]
    return WrongItem(
        id=item.id,
        status=item.status,
        wrong=item.score.fp + item.score.fn,
        mismatches=tuple(
            ValueMismatch(m.path, _value(m.got), _value(m.want), m.got is None, m.want is None) for m in shown
        ),
        more=len(item.mismatches) - len(shown),
        linked=item.status != "missing" and item.id in linkable,
    )


def _bins(cal: Calibration) -> tuple[ReliabilityBin, ...]:
    return tuple(
        ReliabilityBin(b.lo, b.hi, b.count, b.confidence, b.accuracy)
        for b in cal.bins
        if b.count and b.confidence is not None and b.accuracy is not None
    )


def _calibration_line(cal: Calibration) -> str:
    methods = ", ".join(f"{method} {count:,}" for method, count in sorted(cal.methods.items()))
    line = (
        f"Expected calibration error (ECE) {_number(cal.ece)} over {cal.count:,} values with a confidence"
        + (f" ({methods})" if methods else "")
        + f": {_number(cal.accuracy)} of them right, at a mean confidence of {_number(cal.confidence)}"
    )
    if cal.above_accuracy is None:
        return line + f"; no value at confidence ≥ {cal.threshold:g}."
    return line + (
        f"; at confidence ≥ {cal.threshold:g}, {_number(cal.above_accuracy)} right "
        f"({cal.above:,} value{'s' if cal.above != 1 else ''})."
    )


def _value(value: Any) -> str:
    """A value as JSON text ("" for none), cut to a length a table cell holds."""
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def _number(value: float | None) -> str:
    return _NONE if value is None else f"{value:.3f}"
