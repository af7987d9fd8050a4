"""What an evaluation finds: scores (per field, overall, per item) and how they are shown."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from corral.evaluation._bootstrap import METRICS, Interval, ratios
from corral.evaluation._calibration import Calibration
from corral.evaluation._compare import Mismatch

__all__ = ["LEVEL", "Evaluation", "ItemResult", "Macro", "Score", "Status", "macro"]

Status = Literal["matched", "missing", "extra", "error"]
#: the confidence level of every interval
LEVEL = 0.95


def _no_intervals() -> dict[str, Interval | None]:
    return dict.fromkeys(METRICS)


@dataclass(frozen=True, slots=True)
class Score:
    """Counts of slots and the scores they give; a score is None where undefined (0/0)."""

    tp: int
    fp: int
    fn: int
    #: the bootstrap interval of ``precision``, ``recall`` and ``f1`` (None: none, or undefined)
    ci: Mapping[str, Interval | None] = field(default_factory=_no_intervals)

    @property
    def precision(self) -> float | None:
        return ratios(self.tp, self.fp, self.fn)[0]

    @property
    def recall(self) -> float | None:
        return ratios(self.tp, self.fp, self.fn)[1]

    @property
    def f1(self) -> float | None:
        return ratios(self.tp, self.fp, self.fn)[2]

    def to_json(self, *, ci: bool = True) -> dict[str, Any]:
        found: dict[str, Any] = {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }
        if ci:
            found["ci"] = {m: None if (c := self.ci.get(m)) is None else list(c) for m in METRICS}
        return found


@dataclass(frozen=True, slots=True)
class Macro:
    """The unweighted mean over fields of each score (fields where it is undefined left out)."""

    precision: float | None
    recall: float | None
    f1: float | None
    fields: int

    def to_json(self) -> dict[str, Any]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "fields": self.fields}


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One item: ``matched`` (scored), ``error`` (its output is an error: every gold value FN),
    ``missing`` (not in the output: every gold value FN), ``extra`` (not in the gold: not scored)."""

    id: str
    status: Status
    score: Score
    mismatches: tuple[Mismatch, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "score": self.score.to_json(ci=False),
            "mismatches": [{"path": m.path, "got": m.got, "want": m.want} for m in self.mismatches],
        }


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Scores of an output against gold: overall (micro), per field, per item, and calibration."""

    overall: Score
    macro: Macro
    #: by field path without indices (``people[].name``), in the schema's order
    fields: dict[str, Score]
    #: the gold's items in its order, then the output's items that have no gold
    items: tuple[ItemResult, ...]
    #: ids in the gold and not in the output
    missing: tuple[str, ...]
    #: ids in the output and not in the gold
    extra: tuple[str, ...]
    #: ids whose output is an error
    errored: tuple[str, ...]
    calibration: Calibration | None
    resamples: int
    seed: int
    #: each scored value's confidence, whether it was right, and the confidence's method (what a
    #: recalibration is fitted on: :func:`corral.evaluation.fit_recalibration`)
    confidence_pairs: tuple[tuple[float, bool, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The whole evaluation as JSON-able data (its shape is documented in :mod:`corral.evaluation`)."""
        scored = len(self.items) - len(self.extra)
        return {
            "version": 1,
            "overall": self.overall.to_json(),
            "macro": self.macro.to_json(),
            "fields": {path: score.to_json() for path, score in self.fields.items()},
            "counts": {
                "gold": scored,
                "matched": scored - len(self.missing) - len(self.errored),
                "errored": len(self.errored),
                "missing": len(self.missing),
                "extra": len(self.extra),
            },
            "missing": list(self.missing),
            "extra": list(self.extra),
            "errored": list(self.errored),
            "bootstrap": {"resamples": self.resamples, "seed": self.seed, "level": LEVEL},
            "calibration": None if self.calibration is None else self.calibration.to_json(),
            "items": [item.to_json() for item in self.items],
        }

    def table(self, *, worst: int = 0) -> str:
        """A table for the terminal: per field P/R/F1 with intervals, overall, counts; and the
        ``worst`` items (most values wrong), each value beside the gold's."""
        return _render(self) + _worst(self, worst)

    def worst_items(self, count: int) -> list[ItemResult]:
        """The ``count`` items with the most values wrong (missing and errored items first among
        equals), in that order."""
        scored = [
            item
            for item in self.items
            if item.status != "extra" and (item.mismatches or item.status != "matched")
        ]
        rank = {"error": 0, "missing": 1, "matched": 2}
        scored.sort(key=lambda item: (-(item.score.fp + item.score.fn), rank.get(item.status, 3), item.id))
        return scored[:count]


def macro(scores: Iterable[Score]) -> Macro:
    listed = list(scores)
    means: list[float | None] = []
    for metric in METRICS:
        values = [v for s in listed if (v := getattr(s, metric)) is not None]
        means.append(sum(values) / len(values) if values else None)
    return Macro(means[0], means[1], means[2], len(listed))


# --- the table -------------------------------------------------------------------------------

_NONE = "–"


def _render(ev: Evaluation) -> str:
    intervals = ev.resamples > 0
    header = ["field", "precision", "recall", "F1", "TP", "FP", "FN"]
    rows = [_row(path, score, intervals) for path, score in ev.fields.items()]
    overall = _row("overall (micro)", ev.overall, intervals)
    means = ["macro", *(_number(getattr(ev.macro, m)) for m in METRICS), "", "", ""]
    table = [header, *rows, None, overall, means]
    widths = [max(len(r[i]) for r in table if r is not None) for i in range(len(header))]
    lines = []
    for row in table:
        if row is None:
            lines.append("  ".join("─" * w for w in widths))
            continue
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) if index >= 4 else cell.ljust(width)
                  for index, (cell, width) in enumerate(zip(row, widths, strict=True)) if index]  # fmt: skip
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    lines.append(_counts(ev))
    if intervals:
        lines.append(
            f"[low, high]: {LEVEL:.0%} intervals from {ev.resamples} bootstrap resamples of the items "
            f"(seed {ev.seed})"
        )
    lines += _calibration(ev)
    return "\n".join(lines)


def _worst(ev: Evaluation, count: int) -> str:
    items = ev.worst_items(count)
    if not items:
        return ""
    lines = ["", "", f"the {len(items)} item{'s' if len(items) != 1 else ''} with the most values wrong:"]
    for item in items:
        wrong = item.score.fp + item.score.fn
        lines.append(f"  {item.id} ({item.status}, {wrong} wrong):")
        for mismatch in item.mismatches[:_SHOWN]:
            lines.append(f"    {mismatch.path}: {_shown(mismatch.got)}, gold {_shown(mismatch.want)}")
        if len(item.mismatches) > _SHOWN:
            lines.append(f"    ... and {len(item.mismatches) - _SHOWN} more")
    return "\n".join(lines)


#: mismatches listed per item in the terminal
_SHOWN = 5


def _shown(value: Any) -> str:
    text = "(none)" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _row(name: str, score: Score, intervals: bool) -> list[str]:
    cells = [name]
    for metric in METRICS:
        value = _number(getattr(score, metric))
        ci = score.ci.get(metric)
        if intervals and ci is not None:
            value += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
        cells.append(value)
    return [*cells, str(score.tp), str(score.fp), str(score.fn)]


def _number(value: float | None) -> str:
    return _NONE if value is None else f"{value:.3f}"


def _counts(ev: Evaluation) -> str:
    gold = len(ev.items) - len(ev.extra)
    matched = gold - len(ev.missing) - len(ev.errored)
    line = f"items: {gold} in the gold: {matched} matched, {len(ev.errored)} errored, "
    line += f"{len(ev.missing)} missing"
    if ev.extra:
        line += f"; {len(ev.extra)} in the output only (not scored)"
    return line


def _calibration(ev: Evaluation) -> list[str]:
    cal = ev.calibration
    if cal is None:
        return []
    line = (
        f"calibration: ECE {cal.ece:.3f} over {cal.count} values with a confidence; "
        f"accuracy {cal.accuracy:.3f} (mean confidence {cal.confidence:.3f})"
    )
    if cal.above_accuracy is not None:
        line += f", {cal.above_accuracy:.3f} at confidence ≥ {cal.threshold:g} ({cal.above} values)"
    lines = ["", line, "  confidence   values  mean  accuracy"]
    for b in cal.bins:
        if b.count and b.confidence is not None and b.accuracy is not None:
            lines.append(f"  {b.lo:.1f}–{b.hi:.1f}    {b.count:>7}  {b.confidence:.2f}  {b.accuracy:>8.2f}")
    return lines
