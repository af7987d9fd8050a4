"""Merging: the answers of a document's chunks (and passes) as one record, in the user's schema.

The rule per field, applied recursively (each chunk answered the same schema, so the shapes agree):

    list     the chunks' lists concatenated in document order, equal entries kept once: equal by
             their normalised value (case, whitespace and Unicode folded; objects by every field),
             or by the ``keys`` the user names for a list of objects (then their other fields merge
             by these same rules)
    object   merged field by field
    scalar   the first value that is not null, taking a grounded one before an ungrounded one when
             ``grounded`` says which are; every other different value is a conflict, listed with the
             path (``conflicts`` in the result), never silently dropped

Only the values the chunks gave are in the result: nothing is invented, and the order of first
appearance is kept, so merging the same answers again gives the same record.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Conflict", "Merged", "folded", "merge"]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A scalar the chunks disagree on: the value kept and the others, by the field's path."""

    path: str
    kept: Any
    others: tuple[Any, ...]


@dataclass(slots=True)
class Merged:
    """One record from many answers, and the scalars they disagreed on."""

    value: Any
    conflicts: list[Conflict] = field(default_factory=list)


def merge(
    answers: Sequence[Any],
    *,
    keys: Mapping[str, Sequence[str]] | None = None,
    grounded: Callable[[str, Any], bool] | None = None,
) -> Merged:
    """``answers`` (one per chunk and pass, in document order) as one record.

    ``keys``: for a list of objects, by its path without indices (``people``, ``orders.items``), the
    fields that say two entries are the same one. ``grounded(path, value)``: whether the value was
    found in the document (a grounded scalar wins over an ungrounded one that came first)."""
    merged = Merged(None)
    merged.value = _merge(list(answers), "", keys or {}, grounded, merged.conflicts)
    return merged


def _merge(
    values: list[Any],
    path: str,
    keys: Mapping[str, Sequence[str]],
    grounded: Callable[[str, Any], bool] | None,
    conflicts: list[Conflict],
) -> Any:
    present = [value for value in values if value is not None]
    if not present:
        return None
    if all(isinstance(value, Mapping) for value in present):
        names = list(dict.fromkeys(name for value in present for name in value))
        return {
            name: _merge([value.get(name) for value in present], _join(path, name), keys, grounded, conflicts)
            for name in names
        }
    if all(_is_list(value) for value in present):
        return _merge_lists(present, path, keys, grounded, conflicts)
    return _merge_scalars(present, path, grounded, conflicts)


def _merge_lists(
    lists: list[Any],
    path: str,
    keys: Mapping[str, Sequence[str]],
    grounded: Callable[[str, Any], bool] | None,
    conflicts: list[Conflict],
) -> list[Any]:
    by_key = keys.get(path.replace("[]", ""))
    groups: dict[Any, list[Any]] = {}
    for entries in lists:
        for entry in entries:
            identity = _identity(entry, by_key)
            groups.setdefault(identity, []).append(entry)
    # Entries the same by their key fields merge into one (their other fields by these rules);
    # entries equal as a whole are one already.
    return [
        _merge(group, f"{path}[]", keys, grounded, conflicts) if by_key else group[0]
        for group in groups.values()
    ]


def _merge_scalars(
    values: list[Any], path: str, grounded: Callable[[str, Any], bool] | None, conflicts: list[Conflict]
) -> Any:
    kept = values[0]
    if grounded is not None and not grounded(path, kept):
        kept = next((value for value in values if grounded(path, value)), kept)
    seen = {_normalised(kept)}
    others = []
    for value in values:
        norm = _normalised(value)
        if norm not in seen:
            seen.add(norm)
            others.append(value)
    if others:
        conflicts.append(Conflict(path, kept, tuple(others)))
    return kept


def _identity(entry: Any, by_key: Sequence[str] | None) -> Any:
    if by_key and isinstance(entry, Mapping):
        return tuple(_normalised(entry.get(name)) for name in by_key)
    return _normalised(entry)


def _normalised(value: Any) -> Any:
    """A hashable form of ``value`` under which equal-looking answers are equal."""
    if isinstance(value, str):
        return folded(value)
    if isinstance(value, Mapping):
        return tuple(sorted((str(name), _normalised(child)) for name, child in value.items()))
    if _is_list(value):
        return tuple(_normalised(child) for child in value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def folded(text: str) -> str:
    """``text`` as values are compared: Unicode NFKC, case folded, every run of whitespace one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
