"""Evaluation: a job's output against gold records, value by value through the schema (issue 19).

    ev = evaluate(output="out.jsonl", gold="gold.jsonl", schema=Person)
    ev.overall.f1, ev.fields["address.city"].ci["f1"], ev.items[0].mismatches, ev.calibration
    print(ev.table()); json.dumps(ev.to_json())

**Gold.** JSONL of ``{"id": ..., "output": {...}}``, the shape of corral's own output records (other
keys are ignored, so a corrected output file is a gold file; a line that is still an error is
refused), or CSV with an ``id`` column and a column per field: dotted for nested fields
(``address.city``, or ``output.address.city`` as corral's CSV sink writes it), JSON text for lists,
maps and unions (and for the whole list of a ``many`` schema, in a column ``output``). Cells are
typed by the schema (an integer, a number or a boolean read from its text; empty is null). A line
that cannot be read raises :class:`~corral.errors.InputError` naming file, line and why; so does an
id given twice. The output may be JSONL or CSV too (an ``error.kind`` marks an errored row).

**Slots.** Every scalar leaf of the schema is a slot, counted under its path without indices
(``name``, ``address.city``, ``people[].name``, ``tags[]``; ``[].name`` for a ``many`` schema):
equal after normalisation is a TP; both present and different is an FP *and* an FN; present only
in the output an FP, only in the gold an FN; null, absent or blank in both counts nothing.

**Normalisation** (:mod:`._normalise`). Strings: NFKC, casefolded, whitespace collapsed, punctuation
(but dashes and underscores) stripped from both ends. Numbers compare by value (1 == 1.0; floats to
12 significant digits), and a numeric string equals its number where the schema says integer or
number. Booleans are booleans (``"yes"``/``"true"``/``"1"`` where the schema says boolean). Dates:
where the schema says ``format: date``/``date-time``, and any string in one of a few unambiguous
forms (ISO 8601; ``March 3, 2024``, ``3 Mar 2024``; ``3/14/2024`` month first, ``14/3/2024`` day
first, ``3/4/2024`` not a date), compare as dates; a date-time with an offset compares in UTC.
Enums compare as normalised strings (no date reading).

**Lists.** A list of objects (entities) is paired one to one by the optimal assignment (the
Hungarian algorithm, :mod:`._assign`) that maximises the summed similarity of the pairs, a pair's
similarity being the F1 of its leaves (2·TP / (2·TP + FP + FN)); pairs with no equal leaf are not
pairs. ``list_keys={"people": ("name",)}`` pairs entities with equal keys first, and never pairs
two whose keys are both present and differ. The leaves of an unpaired output entity are FP, of an
unpaired gold entity FN. A list of scalars is a multiset: order does not matter, repeats count.
Nested objects are walked by path; a schema that does not say (a union, ``{}``) by the values.

**Items.** Items are the gold's ids. One in the output is ``matched`` and scored; one whose output is
an error is ``error``, and one absent from the output ``missing``: every gold leaf of both is an FN.
An output id with no gold is ``extra``: listed, not scored (nothing says what it should be).

**Scores.** Precision TP/(TP+FP), recall TP/(TP+FN), F1 2·TP/(2·TP+FP+FN), None where 0/0.
Overall is micro (all slots together); ``macro`` is the mean of the fields' scores.

**Intervals** (:mod:`._bootstrap`). The items are resampled with replacement ``bootstrap`` times
(seeded: the same seed gives the same intervals), every score recomputed, and the 2.5th and
97.5th percentiles are its 95% interval, for every field and overall.

**Calibration** (:mod:`._calibration`). When output records carry ``confidence``
(``{"people[0].name": {"value": 0.93, "method": "logprobs"}}``), each scored output leaf that has one
is right (TP) or not; ``ev.calibration`` holds the expected calibration error over 10 equal-width
bins, the bins (mean confidence, accuracy, count), the accuracy overall and at confidence ≥
``confidence_threshold`` (0.8). None when no record carries a confidence.

**JSON** (``ev.to_json()``, ``version`` 1)::

    {"version": 1,
     "overall": SCORE, "macro": {"precision", "recall", "f1", "fields": n},
     "fields": {"people[].name": SCORE, ...},                  # the schema's order
     "counts": {"gold", "matched", "errored", "missing", "extra"},
     "missing": [id, ...], "extra": [id, ...], "errored": [id, ...],
     "bootstrap": {"resamples": 1000, "seed": 0, "level": 0.95},
     "calibration": null | {"ece", "count", "accuracy", "confidence", "threshold",
                            "above": {"count", "accuracy"}, "methods": {"logprobs": n},
                            "bins": [{"lo", "hi", "count", "confidence", "accuracy"}, ...]},
     "items": [{"id", "status", "score": SCORE without ci,
                "mismatches": [{"path": "people[0].age", "got": 41, "want": 42}, ...]}, ...]}

    SCORE = {"precision", "recall", "f1": number | null, "tp", "fp", "fn": int,
             "ci": {"precision", "recall", "f1": [low, high] | null}}

A mismatch's path has the output's indices (``people[0].age``), and ``[]`` where the output has no
such element (a gold entity nothing was paired with: ``people[].name``); ``got``/``want`` are null
on the side that has no value.
"""

from corral.evaluation._assign import assign
from corral.evaluation._calibration import Bin, Calibration
from corral.evaluation._compare import Mismatch
from corral.evaluation._evaluation import evaluate, read_gold
from corral.evaluation._recalibrate import fit_recalibration
from corral.evaluation._results import Evaluation, ItemResult, Macro, Score, Status
from corral.evaluation._runs import Compared, Configuration, compare, pareto_front

__all__ = [
    "Bin",
    "Calibration",
    "Compared",
    "Configuration",
    "Evaluation",
    "ItemResult",
    "Macro",
    "Mismatch",
    "Score",
    "Status",
    "assign",
    "compare",
    "evaluate",
    "fit_recalibration",
    "pareto_front",
    "read_gold",
]
