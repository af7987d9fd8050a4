"""One item's output against its gold record, leaf by leaf through the schema's shape.

Every scalar leaf is a slot, counted under its field path without indices (``people[].name``):

    equal after normalisation        TP
    both there, different            FP and FN (a wrong value is both)
    only in the output               FP
    only in the gold                 FN
    in neither (null, absent, "")    nothing

A list of objects is paired entity to entity by :func:`~._assign.assign`, maximising the summed
similarity of the pairs (2·TP / (2·TP + FP + FN) of the pair's leaves); a pair that shares no equal
leaf is no pair. With key fields for the list, entities whose keys are equal are paired first and
entities whose keys differ never are. An unpaired output entity counts every leaf FP, an unpaired
gold one every leaf FN. A list of scalars is a multiset: order does not matter, repeats do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from corral.evaluation._assign import assign
from corral.evaluation._normalise import Norm, normalise
from corral.evaluation._shape import UNKNOWN, Array, Kind, Leaf, Record, Shape, join, lookup

__all__ = ["At", "Comparer", "Mismatch", "Tally"]


class Mismatch(NamedTuple):
    """A slot that is not a TP: where (indices as in the output, ``[]`` where the output has no
    such element), the output's value (None: absent) and the gold's (None: absent)."""

    path: str
    got: Any
    want: Any


class Tally:
    """What one comparison counted: per field ``[tp, fp, fn]``, the mismatches, and for each output
    leaf (by its path in the output, ``people[0].name``) whether it was right."""

    __slots__ = ("counts", "fn", "fp", "keep", "mismatches", "tp", "verdicts")

    def __init__(self, *, keep: bool = True) -> None:
        self.counts: dict[str, list[int]] = {}
        self.mismatches: list[Mismatch] = []
        self.verdicts: dict[str, bool] = {}
        self.tp = self.fp = self.fn = 0
        #: record mismatches and verdicts (off while only the similarity of a pair is wanted)
        self.keep = keep

    def similarity(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp else 0.0

    def right(self, at: At) -> None:
        self._count(at.field, 0)
        self.tp += 1
        if self.keep:
            self.verdicts[at.place] = True

    def wrong(self, at: At, got: Any, want: Any) -> None:
        """A slot that is not a TP: ``got``/``want`` None where that side has no value."""
        if got is not None:
            self._count(at.field, 1)
            self.fp += 1
        if want is not None:
            self._count(at.field, 2)
            self.fn += 1
        if self.keep:
            if got is not None:
                self.verdicts[at.place] = False
            self.mismatches.append(Mismatch(at.place, got, want))

    def _count(self, field: str, which: int) -> None:
        counts = self.counts.get(field)
        if counts is None:
            counts = self.counts[field] = [0, 0, 0]
        counts[which] += 1


class At(NamedTuple):
    """Where a comparison stands: the field (path without indices, ``people[].name``) and the place
    in the output (with the output's indices, ``people[0].name``; ``[]`` where it has none)."""

    field: str
    place: str

    def key(self, name: str) -> At:
        return At(join(self.field, name), join(self.place, name))

    def element(self, index: int | None) -> At:
        """An element of the list here (None: one the output does not have)."""
        return At(f"{self.field}[]", f"{self.place}[{'' if index is None else index}]")


_ROOT = At("", "")


class Comparer:
    """Compares outputs with gold records of one shape; ``keys`` are the key fields of lists of
    objects, by their items' path (``people[]``), each a tuple of field names (dotted if nested)."""

    def __init__(self, shape: Shape, keys: Mapping[str, tuple[str, ...]] | None = None) -> None:
        self.shape = shape
        self.keys = dict(keys or {})

    def item(self, got: Any, want: Any) -> Tally:
        """The tally of one item (``got`` None: the output has nothing, every gold leaf is FN)."""
        tally = Tally()
        self.compare(self.shape, got, want, tally, _ROOT)
        return tally

    def compare(self, shape: Shape, got: Any, want: Any, t: Tally, at: At) -> None:
        """Count the slots of ``got`` against ``want`` (values of ``shape``) into ``t``."""
        if got is None and want is None:
            return
        if shape is UNKNOWN:
            shape = _guess(got, want)
        if not (_fits(shape, got) and _fits(shape, want)):
            self._apart(shape, got, want, t, at)
        elif isinstance(shape, Record):
            self._record(shape, got or {}, want or {}, t, at)
        elif isinstance(shape, Array):
            self._array(shape.item, got or [], want or [], t, at)
        else:
            assert isinstance(shape, Leaf)
            self._leaf(shape.kind, got, want, t, at)

    def _leaf(self, kind: Kind, got: Any, want: Any, t: Tally, at: At) -> None:
        mine, theirs = normalise(kind, got), normalise(kind, want)
        if mine is None and theirs is None:
            return
        if mine == theirs:
            t.right(at)
        else:
            t.wrong(at, None if mine is None else got, None if theirs is None else want)

    def _record(self, shape: Record, got: dict[str, Any], want: dict[str, Any], t: Tally, at: At) -> None:
        for name, child in shape.props.items():
            self.compare(child, got.get(name), want.get(name), t, at.key(name))
        if shape.extra is not None:
            for name in dict.fromkeys([*got, *want]):
                if name not in shape.props:
                    self.compare(shape.extra, got.get(name), want.get(name), t, at.key(str(name)))

    def _apart(self, shape: Shape, got: Any, want: Any, t: Tally, at: At) -> None:
        """Values of different kinds (an object against a string): nothing in common. The output's
        leaves are FP, the gold's FN, each walked as the schema says if it fits, else as it is."""
        self.compare(shape if _fits(shape, got) else UNKNOWN, got, None, t, at)
        self.compare(shape if _fits(shape, want) else UNKNOWN, None, want, t, at)

    def _array(self, item: Shape, got: list[Any], want: list[Any], t: Tally, at: At) -> None:
        if isinstance(item, Record) or (item is UNKNOWN and any(isinstance(v, dict) for v in (*got, *want))):
            self._entities(item, got, want, t, at)
        else:
            self._multiset(item.kind if isinstance(item, Leaf) else "any", got, want, t, at)

    def _multiset(self, kind: Kind, got: list[Any], want: list[Any], t: Tally, at: At) -> None:
        waiting: dict[Norm, list[Any]] = {}
        for value in want:
            norm = normalise(kind, value)
            if norm is not None:
                waiting.setdefault(norm, []).append(value)
        for index, value in enumerate(got):
            norm = normalise(kind, value)
            if norm is None:
                continue
            same = waiting.get(norm)
            if same:
                same.pop(0)
                t.right(at.element(index))
            else:
                t.wrong(at.element(index), value, None)
        for left in waiting.values():
            for value in left:
                t.wrong(at.element(None), None, value)

    def _entities(self, item: Shape, got: list[Any], want: list[Any], t: Tally, at: At) -> None:
        mine = [(i, v) for i, v in enumerate(got) if v is not None]
        theirs = [v for v in want if v is not None]
        paired = dict(self._pairs(item, [v for _, v in mine], theirs, at.element(None)))
        for row, (index, value) in enumerate(mine):
            column = paired.get(row)
            self.compare(item, value, None if column is None else theirs[column], t, at.element(index))
        taken = set(paired.values())
        for column, other in enumerate(theirs):
            if column not in taken:
                self.compare(item, None, other, t, at.element(None))

    def _pairs(self, item: Shape, mine: list[Any], theirs: list[Any], at: At) -> list[tuple[int, int]]:
        """Which of ``mine`` is which of ``theirs``: the assignment of greatest summed similarity,
        pairs by equal keys outweighing any number of others; no pair that shares nothing."""
        if not mine or not theirs:
            return []
        keys = self.keys.get(at.field)
        their_keys = [self._key(item, v, keys) for v in theirs]
        bonus = min(len(mine), len(theirs)) + 1.0
        weights = []
        for value in mine:
            my_key = self._key(item, value, keys)
            row = []
            for other, other_key in zip(theirs, their_keys, strict=True):
                keyed = my_key is not None and other_key is not None
                if keyed and my_key != other_key:
                    row.append(0.0)  # different keys: different entities
                    continue
                trial = Tally(keep=False)
                self.compare(item, value, other, trial, at)
                row.append(trial.similarity() + (bonus if keyed else 0.0))
            weights.append(row)
        return [(r, c) for r, c in assign(weights) if weights[r][c] > 0]

    def _key(self, item: Shape, entity: Any, keys: tuple[str, ...] | None) -> tuple[Norm, ...] | None:
        """The normal forms of an entity's key fields; None: no keys, or one of them is missing."""
        if keys is None or not isinstance(entity, dict):
            return None
        found = []
        for key in keys:
            parts = tuple(key.split("."))
            value: Any = entity
            for part in parts:
                value = value.get(part) if isinstance(value, dict) else None
            shape = lookup(item, parts)
            norm = normalise(shape.kind if isinstance(shape, Leaf) else "any", value)
            if norm is None:
                return None
            found.append(norm)
        return tuple(found)


def _fits(shape: Shape, value: Any) -> bool:
    """Whether ``value`` can be walked as ``shape`` (a leaf takes anything: a list is a value too)."""
    if value is None or isinstance(shape, Leaf):
        return True
    if isinstance(shape, Record):
        return isinstance(value, dict)
    if isinstance(shape, Array):
        return isinstance(value, list)
    return False  # UNKNOWN left: values of different kinds (see _guess)


def _guess(got: Any, want: Any) -> Shape:
    """The shape two values of an unknown schema share: an open object, a list, or a leaf; still
    UNKNOWN for values of different kinds, which have nothing in common."""
    present = [v for v in (got, want) if v is not None]
    if all(isinstance(v, dict) for v in present):
        return Record(extra=UNKNOWN)
    if all(isinstance(v, list) for v in present):
        return Array(UNKNOWN)
    if not any(isinstance(v, dict | list) for v in present):
        return Leaf("any")
    return UNKNOWN
