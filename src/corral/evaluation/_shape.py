"""The schema as evaluation reads it: records of named fields, arrays, and typed leaves.

A JSON Schema (as :func:`corral.schema.load_spec` builds it) becomes a small tree of :class:`Record`,
:class:`Array` and :class:`Leaf`. ``$ref`` is followed (a recursive model becomes a cyclic tree: the
values walked along it are finite); ``X | None`` is X; a union of several kinds, or a schema that
says nothing, is :data:`UNKNOWN`, whose shape is read from the values themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from corral.schema import ResponseSpec

__all__ = [
    "UNKNOWN",
    "Array",
    "Kind",
    "Leaf",
    "Record",
    "Shape",
    "entity_lists",
    "field_order",
    "join",
    "lookup",
    "shape_of",
]

#: how a leaf's values are compared (see :mod:`._normalise`)
Kind = Literal["string", "enum", "integer", "number", "boolean", "date", "date-time", "any"]


@dataclass(eq=False, slots=True)
class Leaf:
    kind: Kind


@dataclass(eq=False, slots=True)
class Record:
    #: the named fields, in the schema's order
    props: dict[str, Shape] = field(default_factory=dict)
    #: the shape of keys beyond ``props`` (a map's values); None: such keys are ignored
    extra: Shape | None = None


@dataclass(eq=False, slots=True)
class Array:
    item: Shape


class _Unknown:
    """A schema that does not say (a union of kinds, ``{}``): the values say, as they are walked."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()
Shape = Leaf | Record | Array | _Unknown

_SIMPLE: dict[str, Kind] = {"integer": "integer", "number": "number", "boolean": "boolean", "null": "any"}
_FORMATS: dict[str, Kind] = {"date": "date", "date-time": "date-time"}


def shape_of(spec: ResponseSpec[Any]) -> Shape:
    """The shape of a record's ``output``: for a ``many`` spec the bare list (the wire schema wraps it
    as ``{"items": [...]}``; output records hold the list itself)."""
    root = spec.schema
    cache: dict[str, Shape] = {}
    if spec.many:
        items = root.get("properties", {}).get("items", {})
        return _convert(items, root, cache)
    return _convert(root, root, cache)


def _convert(node: Any, root: Mapping[str, Any], cache: dict[str, Shape]) -> Shape:  # noqa: PLR0911, PLR0912 - one per keyword
    if not isinstance(node, dict):
        return UNKNOWN
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in cache:
            return cache[ref]
        target = _resolve(ref, root)
        if _is_object(target) and target.get("properties"):
            # Cached before its fields are converted, so a model that holds itself refers back here.
            record = Record()
            cache[ref] = record
            _fill(record, target, root, cache)
            return record
        cache[ref] = UNKNOWN  # a loop through anything but a record: read from the values
        cache[ref] = shape = _convert(target, root, cache)
        return shape
    for union in ("anyOf", "oneOf"):
        alternatives = node.get(union)
        if isinstance(alternatives, list):
            return _union([_convert(alt, root, cache) for alt in alternatives if not _is_null(alt)])
    every = node.get("allOf")
    if isinstance(every, list) and len(every) == 1:
        return _convert(every[0], root, cache)
    values = node.get("enum", [node["const"]] if "const" in node else None)
    if isinstance(values, list):
        return Leaf(_enum_kind(values))
    kinds = _types(node)
    if _is_object(node):
        record = Record()
        _fill(record, node, root, cache)
        return record
    if kinds == {"array"}:
        items = node.get("items")
        return Array(_convert(items, root, cache) if isinstance(items, dict) else UNKNOWN)
    if kinds == {"string"}:
        return Leaf(_FORMATS.get(str(node.get("format")), "string"))
    if kinds == {"integer", "number"}:
        return Leaf("number")
    if len(kinds) == 1:
        (kind,) = kinds
        if kind in _SIMPLE:
            return Leaf(_SIMPLE[kind])
    return UNKNOWN


def _fill(record: Record, node: dict[str, Any], root: Mapping[str, Any], cache: dict[str, Shape]) -> None:
    props = node.get("properties")
    if isinstance(props, dict):
        for name, prop in props.items():
            record.props[str(name)] = _convert(prop, root, cache)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        record.extra = _convert(extra, root, cache)
    elif not record.props and extra is not False:
        record.extra = UNKNOWN  # a bare object: a map of anything


def _union(shapes: list[Shape]) -> Shape:
    if not shapes:
        return Leaf("any")  # null alone
    if len(shapes) == 1:
        return shapes[0]
    if all(isinstance(shape, Leaf) for shape in shapes):
        kinds = {shape.kind for shape in shapes if isinstance(shape, Leaf)}
        if kinds <= {"integer", "number"}:
            return Leaf("number")
        if len(kinds) == 1:
            return Leaf(kinds.pop())
    return UNKNOWN


def _enum_kind(values: list[Any]) -> Kind:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, str) for v in present):
        return "enum"
    if present and all(isinstance(v, bool) for v in present):
        return "boolean"
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "number"
    return "any"


def _types(node: Mapping[str, Any]) -> set[str]:
    kind = node.get("type")
    found = set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else set()
    return found - {"null"} if found != {"null"} else found


def _is_object(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    kinds = _types(node)
    return kinds == {"object"} or (not kinds and "properties" in node)


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and node.get("type") == "null" and len(node) == 1


def _resolve(ref: str, root: Mapping[str, Any]) -> Any:
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for part in ref[1:].split("/")[1:]:
        key = part.replace("~1", "/").replace("~0", "~")
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


# --- walking the tree ------------------------------------------------------------------------


def join(path: str, key: str) -> str:
    """``address`` + ``city``: ``address.city``; at the root, the key alone."""
    return f"{path}.{key}" if path else key


def lookup(shape: Shape, keys: tuple[str, ...]) -> Shape | None:
    """The shape at ``keys`` (field names) below ``shape``; None when the schema has no such field."""
    for key in keys:
        if isinstance(shape, Record):
            found = shape.props.get(key, shape.extra)
            if found is None:
                return None
            shape = found
        elif shape is not UNKNOWN:
            return None
    return shape


def field_order(shape: Shape) -> list[str]:
    """The field paths the schema names (``people[].name``), in its order; a recursive model is
    walked once round."""
    return [path for path, _ in _walk(shape, "", set())]


def entity_lists(shape: Shape) -> dict[str, Shape]:
    """Each list of objects the schema names, by its items' path (``people[]``, ``[]`` for a
    ``many`` root), with the items' shape."""
    return dict(_walk(shape, "", set(), lists=True))


def _walk(shape: Shape, path: str, seen: set[int], *, lists: bool = False) -> Iterator[tuple[str, Shape]]:
    if isinstance(shape, Record):
        if id(shape) in seen:
            return
        seen = seen | {id(shape)}
        for name, child in shape.props.items():
            yield from _walk(child, join(path, name), seen, lists=lists)
    elif isinstance(shape, Array):
        item_path = f"{path}[]"
        if lists and (isinstance(shape.item, Record) or shape.item is UNKNOWN):
            yield item_path, shape.item
        if isinstance(shape.item, Record | Array):
            yield from _walk(shape.item, item_path, seen, lists=lists)
        elif not lists:
            yield item_path, shape.item
    elif not lists:
        yield path, shape
