"""JSON Schema → a deterministic answer built from the prompt text.

A schema is compiled once (:func:`filler_for`, cached by its canonical JSON) into a tree of small
nodes; filling walks the tree with the facts read from the text (:mod:`corral.sim.text`). Values the
text supplies are used (a name for ``name``, the number next to "years" for ``age``); everything else
comes from a hash of (text, field path), so the same request always gets the same answer.

Nullable fields stay null unless the text has evidence for them, as a careful model would answer.
The "many" shape ``{"items": [entity, ...]}`` (and any list of objects with a name field) gets one
entity per person named in the text.
"""

from __future__ import annotations

import datetime
import zlib
from collections.abc import Callable
from typing import Any, Final

import orjson

from corral.sim.text import Entity, Facts, Number, read_facts, value_after_key

__all__ = ["Filler", "filler_for", "text_seed"]

JSON = dict[str, Any]
_MISSING: Final = object()
_MAX_DEPTH = 8  # recursive schemas (trees) stop growing here: optional parts left out, lists empty
_FILLER_CACHE_SIZE = 256
_ANSWER_CACHE_SIZE = 4096
_FALLBACK_NAMES = ("Alex", "Sam", "Robin", "Kim", "Charlie", "Jordan", "Taylor", "Morgan")
_EPOCH = datetime.date(1970, 1, 1)


def _mix(a: int, b: int) -> int:
    """A cheap 32-bit avalanche of two ints: per-field values that differ but never vary by run."""
    x = (a ^ (b * 0x9E3779B1)) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def text_seed(text: str) -> int:
    return zlib.crc32(text.encode())


def _salt(key: str) -> int:
    return zlib.crc32(key.encode())


class _Ctx:
    """What one object (or one entity of a list) is being filled from."""

    __slots__ = ("depth", "facts", "name_pos", "names", "numbers", "text", "top")

    def __init__(
        self, facts: Facts, text: str, names: list[str], numbers: list[Number], depth: int, top: bool
    ) -> None:
        self.facts = facts
        self.text = text
        self.names = names
        self.name_pos = 0
        self.numbers = numbers
        #: nesting of objects, to stop recursive schemas
        self.depth = depth
        #: the whole text (not one entity's slice): lists of people here use every entity
        self.top = top

    def entity(self, entity: Entity) -> _Ctx:
        names = [entity.name] if entity.name else []
        return _Ctx(self.facts, entity.text, names, list(entity.numbers), self.depth, False)

    def take_number(self, fits: Callable[[int | float], bool], prefer_age: bool) -> int | float | None:
        candidates = [n for n in self.numbers if fits(n.value)]
        if not candidates:
            return None
        best = candidates[0]
        if prefer_age:
            best = next((n for n in candidates if n.age_cue), None) or next(
                (n for n in candidates if 0 < n.value < 130), best
            )
        self.numbers.remove(best)
        return best.value


# --- field kinds: what a property name tells us --------------------------------------------------

_KINDS: dict[str, tuple[str, ...]] = {
    "name": ("name", "full_name", "fullname", "person", "person_name", "customer", "author", "user", "who"),
    "first": ("first_name", "firstname", "given_name", "forename"),
    "last": ("last_name", "lastname", "surname", "family_name"),
    "place": ("city", "country", "location", "place", "town", "hometown", "company", "employer",
              "organization", "organisation", "address"),
    "text": ("summary", "description", "text", "content", "reason", "notes", "comment", "quote"),
    "age": ("age", "age_years", "years_old"),
    "year": ("year", "birth_year", "year_of_birth"),
    "email": ("email", "email_address", "mail"),
    "url": ("url", "website", "homepage", "link"),
}  # fmt: skip
_KIND_OF = {key: kind for kind, keys in _KINDS.items() for key in keys}
_NAME_LISTS = frozenset({"names", "people", "persons", "friends", "members", "authors", "participants"})


def _kind(key: str, fmt: str | None) -> str:
    if fmt in ("email", "idn-email"):
        return "email"
    if fmt in ("uri", "url", "iri"):
        return "url"
    low = key.lower()
    if low in _KIND_OF:
        return _KIND_OF[low]
    if low.endswith("_name") and low not in ("file_name", "filename", "username"):
        return "name"
    if low.endswith("_age"):
        return "age"
    return ""


# --- nodes ---------------------------------------------------------------------------------------


class _Node:
    __slots__ = ()

    def fill(self, ctx: _Ctx, h: int) -> Any:
        raise NotImplementedError

    def evidence(self, ctx: _Ctx, h: int) -> Any:
        """The value the text supports, or _MISSING: decides whether a nullable field is null."""
        return _MISSING

    def is_entity(self) -> bool:
        return False


class _Const(_Node):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def fill(self, ctx: _Ctx, h: int) -> Any:
        return self.value

    def evidence(self, ctx: _Ctx, h: int) -> Any:
        return self.value


class _Enum(_Node):
    __slots__ = ("values",)

    def __init__(self, values: list[Any]) -> None:
        self.values = [v for v in values if v is not None] or values

    def evidence(self, ctx: _Ctx, h: int) -> Any:
        lower = ctx.facts.lower
        for value in self.values:
            if isinstance(value, str) and value and value.lower().replace("_", " ") in lower:
                return value
        return _MISSING

    def fill(self, ctx: _Ctx, h: int) -> Any:
        found = self.evidence(ctx, h)
        return self.values[h % len(self.values)] if found is _MISSING else found


class _Bool(_Node):
    __slots__ = ()

    def fill(self, ctx: _Ctx, h: int) -> Any:
        return bool(h & 1)


class _Null(_Node):
    __slots__ = ()

    def fill(self, ctx: _Ctx, h: int) -> Any:
        return None

    def evidence(self, ctx: _Ctx, h: int) -> Any:
        return None


class _String(_Node):
    __slots__ = ("fmt", "key", "kind", "max_len", "min_len")

    def __init__(self, key: str, schema: JSON) -> None:
        self.key = key
        self.fmt: str | None = schema.get("format")
        self.kind = _kind(key, self.fmt)
        self.min_len = int(schema.get("minLength", 0))
        max_len = schema.get("maxLength")
        self.max_len = int(max_len) if max_len is not None else None

    def evidence(self, ctx: _Ctx, h: int) -> Any:
        kind, facts = self.kind, ctx.facts
        found: str | None = None
        if kind == "name" and ctx.name_pos < len(ctx.names):
            found = ctx.names[ctx.name_pos]
            ctx.name_pos += 1  # a second name field (friend, spouse) takes the next name
        elif kind in ("first", "last") and ctx.names:
            parts = ctx.names[0].split()
            found = parts[0] if kind == "first" else parts[-1] if len(parts) > 1 else None
        elif kind == "place" and facts.places:
            found = facts.places[0]
        elif kind == "email" and facts.emails:
            found = facts.emails[0]
        elif kind == "url" and facts.urls:
            found = facts.urls[0]
        elif self.fmt in ("date", "date-time") and facts.dates:
            found = facts.dates[0] + ("T00:00:00Z" if self.fmt == "date-time" else "")
        elif kind == "text":
            found = ctx.text.strip()[:200] or None
        else:
            found = value_after_key(ctx.text, self.key)
        return _MISSING if found is None else self._fit(found, h)

    def fill(self, ctx: _Ctx, h: int) -> Any:
        found = self.evidence(ctx, h)
        return self._fit(self._invent(ctx, h), h) if found is _MISSING else found

    def _invent(self, ctx: _Ctx, h: int) -> str:
        fmt, kind = self.fmt, self.kind
        if fmt in ("date", "date-time", "time", "duration", "uuid", "ipv4", "ipv6"):
            day = _EPOCH + datetime.timedelta(days=10_000 + h % 10_000)
            hhmm = f"{h % 24:02d}:{h % 60:02d}:00"
            return {
                "date": day.isoformat(),
                "date-time": f"{day.isoformat()}T{hhmm}Z",
                "time": hhmm,
                "duration": f"P{1 + h % 30}D",
                "uuid": f"{h:08x}-{h >> 16 & 0xFFFF:04x}-4{h & 0xFFF:03x}-8{h >> 4 & 0xFFF:03x}-{h:08x}{h & 0xFFFF:04x}",
                "ipv4": f"10.{h >> 16 & 255}.{h >> 8 & 255}.{h & 255}",
                "ipv6": f"fd00::{h >> 16 & 0xFFFF:x}:{h & 0xFFFF:x}",
            }[fmt]
        who = ctx.names[0] if ctx.names else _FALLBACK_NAMES[h % len(_FALLBACK_NAMES)]
        if kind == "email":
            return f"{who.split()[0].lower()}@example.com"
        if kind == "url":
            return f"https://example.com/{who.split()[0].lower()}"
        if kind in ("name", "first", "last"):
            return who if kind == "name" else who.split()[0 if kind == "first" else -1]
        words = ctx.facts.words
        return words[h % len(words)] if words else f"{self.key or 'value'}-{h % 1000}"

    def _fit(self, value: str, h: int) -> str:
        if len(value) < self.min_len:
            value = (value + " " + "x" * self.min_len)[: max(self.min_len, len(value))]
        if self.max_len is not None:
            value = value[: self.max_len]
        return value


class _Number(_Node):
    __slots__ = ("integer", "kind", "lo", "multiple", "hi")

    def __init__(self, key: str, schema: JSON, integer: bool) -> None:
        self.integer = integer
        self.kind = _kind(key, None)
        step = 1 if integer else 0.01
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if "exclusiveMinimum" in schema:
            lo = schema["exclusiveMinimum"] + step
        if "exclusiveMaximum" in schema:
            hi = schema["exclusiveMaximum"] - step
        self.lo: float | None = lo
        self.hi: float | None = hi
        self.multiple: float | None = schema.get("multipleOf")

    def _fits(self, value: float) -> bool:
        if self.integer and value != int(value):
            return False
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            return False
        return not self.multiple or (value / self.multiple) == int(value / self.multiple)

    def evidence(self, ctx: _Ctx, h: int) -> Any:
        value = ctx.take_number(self._fits, self.kind == "age")
        if value is None:
            return _MISSING
        return int(value) if self.integer else value

    def fill(self, ctx: _Ctx, h: int) -> Any:
        found = self.evidence(ctx, h)
        if found is not _MISSING:
            return found
        default_lo, default_hi = {"age": (18, 80), "year": (1950, 2024)}.get(self.kind, (1, 100))
        lo = self.lo if self.lo is not None else min(default_lo, self.hi if self.hi is not None else default_lo)
        hi = self.hi if self.hi is not None else max(default_hi, lo)
        if self.multiple:
            first, last = int(-(-lo // self.multiple)), int(hi // self.multiple)
            value: float = self.multiple * (first + h % max(1, last - first + 1))
            return int(value) if self.integer else value
        if self.integer:
            lo_i, hi_i = int(-(-lo // 1)), int(hi // 1)
            return lo_i + h % max(1, hi_i - lo_i + 1)
        return round(lo + (hi - lo) * (h % 10_000) / 10_000, 2)


class _Nullable(_Node):
    __slots__ = ("inner",)

    def __init__(self, inner: _Node) -> None:
        self.inner = inner

    def fill(self, ctx: _Ctx, h: int) -> Any:
        found = self.inner.evidence(ctx, h)
        return None if found is _MISSING else found

    def evidence(self, ctx: _Ctx, h: int) -> Any:
        return self.inner.evidence(ctx, h)


class _Array(_Node):
    __slots__ = ("entities", "item", "key", "max_items", "min_items", "prefix", "unique")

    def __init__(self, key: str, schema: JSON, item: _Node, prefix: list[_Node], entities: bool) -> None:
        self.key = key
        self.item = item
        self.prefix = prefix
        self.min_items = int(schema.get("minItems", 0))
        max_items = schema.get("maxItems")
        self.max_items = int(max_items) if max_items is not None else None
        if prefix and "items" not in schema and self.max_items is None:
            self.max_items = len(prefix)  # a tuple: exactly the listed positions
        self.unique = bool(schema.get("uniqueItems"))
        self.entities = entities

    def _clamp(self, n: int) -> int:
        n = max(n, self.min_items)
        return n if self.max_items is None else min(n, self.max_items)

    def fill(self, ctx: _Ctx, h: int) -> Any:
        values: list[Any] = [node.fill(ctx, _mix(h, i)) for i, node in enumerate(self.prefix)]
        if ctx.depth >= _MAX_DEPTH:
            return values + [self.item.fill(ctx, _mix(h, i)) for i in range(len(values), self.min_items)]
        if self.entities:
            entities = _entities_for(ctx)
            count = self._clamp(len(entities))
            values += [
                self.item.fill(ctx.entity(entities[i % len(entities)]), _mix(h, i)) for i in range(count)
            ]
            return values
        if self.key.lower() in _NAME_LISTS and isinstance(self.item, _String) and ctx.names:
            values += ctx.names[: self._clamp(len(ctx.names))]
        count = self._clamp(max(len(values), 1 + h % 3))
        # Distinct values read better; only uniqueItems makes them a must.
        for i in range(len(values), count + 16):
            if len(values) >= count:
                break
            value = self.item.fill(ctx, _mix(h, i))
            if value not in values or (not self.unique and i >= count + 8):
                values.append(value)
        return values


def _entities_for(ctx: _Ctx) -> tuple[Entity, ...]:
    if ctx.top:
        return ctx.facts.entities
    # A nested list of people inside one entity: that entity's own names, or just itself.
    return tuple(Entity(name, ctx.text, tuple(ctx.numbers)) for name in ctx.names) or (
        Entity(None, ctx.text, tuple(ctx.numbers)),
    )


class _Object(_Node):
    __slots__ = ("fields", "min_props")

    def __init__(self, fields: list[tuple[str, _Node, int, bool]], schema: JSON) -> None:
        self.fields = fields
        self.min_props = int(schema.get("minProperties", 0))

    def fill(self, ctx: _Ctx, h: int) -> Any:
        if ctx.depth >= 2 * _MAX_DEPTH:
            return {}  # a schema that requires infinite nesting: give up politely
        deep = ctx.depth >= _MAX_DEPTH
        ctx.depth += 1
        try:
            out = {
                key: node.fill(ctx, _mix(h, salt))
                for key, node, salt, required in self.fields
                if required or not deep
            }
        finally:
            ctx.depth -= 1
        for i in range(len(out), self.min_props):
            out[f"key{i}"] = f"value{i}"
        return out

    def evidence(self, ctx: _Ctx, h: int) -> Any:
        # An optional sub-object is filled one level down (an address, a manager) but not deeper,
        # so a recursive Optional[Self] ends in null as quickly as a model would end it.
        return self.fill(ctx, h) if ctx.depth < 2 else _MISSING


class _Ref(_Node):
    """A ``$ref``, compiled on first use so that recursive schemas compile in finite time."""

    __slots__ = ("compiler", "key", "ref", "target")

    def __init__(self, compiler: _Compiler, ref: str, key: str) -> None:
        self.compiler = compiler
        self.ref = ref
        self.key = key
        self.target: _Node | None = None

    def _node(self) -> _Node:
        if self.target is None:
            self.target = self.compiler.ref_node(self.ref, self.key)
        return self.target

    def fill(self, ctx: _Ctx, h: int) -> Any:
        return self._node().fill(ctx, h)

    def evidence(self, ctx: _Ctx, h: int) -> Any:
        return self._node().evidence(ctx, h)


# --- compiling -----------------------------------------------------------------------------------

_META = frozenset({"title", "description", "default", "examples", "$comment", "deprecated"})


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and (schema.get("type") == "null" or schema == {"const": None})


class _Compiler:
    def __init__(self, root: JSON) -> None:
        self.root = root
        self.refs: dict[tuple[str, str], _Node] = {}

    def resolve(self, ref: str) -> JSON:
        """A local JSON pointer (``#/$defs/Person``); anything unresolvable is a free-form value."""
        node: Any = self.root
        if not ref.startswith("#"):
            return {}
        for raw in ref[1:].split("/"):
            if not raw:
                continue
            part = raw.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError, TypeError):
                return {}
        return node if isinstance(node, dict) else {}

    def deref(self, schema: Any) -> JSON:
        for _ in range(32):  # a chain of refs; a cycle of bare refs ends as a free-form value
            if not isinstance(schema, dict) or "$ref" not in schema:
                break
            schema = {**self.resolve(schema["$ref"]), **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema if isinstance(schema, dict) else {}

    def ref_node(self, ref: str, key: str) -> _Node:
        slot = (ref, key)
        if slot not in self.refs:
            self.refs[slot] = self.node(self.resolve(ref), key)
        return self.refs[slot]

    def node(self, schema: Any, key: str, entities: bool = False) -> _Node:
        if not isinstance(schema, dict):
            return _String(key, {})  # `true` / `{}`: anything goes, a string is the likeliest
        if "$ref" in schema:
            if set(schema) - _META == {"$ref"} and not entities:
                return _Ref(self, schema["$ref"], key)
            return self.node(self.deref(schema), key, entities)
        if "const" in schema:
            return _Const(schema["const"])
        if "enum" in schema and schema["enum"]:
            return _Enum(list(schema["enum"]))
        for combinator in ("anyOf", "oneOf"):
            if combinator in schema:
                branches = schema[combinator]
                real = [b for b in branches if not _is_null(b)]
                inner = self.node(real[0], key, entities) if real else _Null()
                return _Nullable(inner) if len(real) < len(branches) and real else inner
        if "allOf" in schema:
            return self.node(self._merge(schema), key, entities)
        kind = schema.get("type")
        nullable = False
        if isinstance(kind, list):
            nullable = "null" in kind
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        node = self._typed(schema, kind, key, entities)
        return _Nullable(node) if nullable else node

    def _typed(self, schema: JSON, kind: str, key: str, entities: bool) -> _Node:
        if kind == "object":
            required = set(schema.get("required", ()))
            props: dict[str, Any] = schema.get("properties") or {}
            # The "many" shape: one array of objects is the whole answer, one element per entity.
            many = len(props) == 1 and entities
            fields = [
                (name, self.node(sub, name, many), _salt(name), name in required) for name, sub in props.items()
            ]
            return _Object(fields, schema)
        if kind == "array":
            items = schema.get("items", {})
            prefix = [self.node(sub, key) for sub in schema.get("prefixItems", ())]
            item_schema = self.deref(items)
            is_objects = item_schema.get("type") == "object" or "properties" in item_schema
            names_inside = any(_kind(p, None) == "name" for p in item_schema.get("properties") or {})
            return _Array(key, schema, self.node(items, key), prefix, is_objects and (entities or names_inside))
        if kind == "string":
            return _String(key, schema)
        if kind in ("integer", "number"):
            return _Number(key, schema, kind == "integer")
        if kind == "boolean":
            return _Bool()
        return _Null()

    def _merge(self, schema: JSON) -> JSON:
        merged: JSON = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = self.deref(part)
            for k, v in part.items():
                if k == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **v}
                elif k == "required":
                    merged["required"] = [*merged.get("required", []), *v]
                else:
                    merged.setdefault(k, v)
        return merged


# --- the compiled schema -------------------------------------------------------------------------


class Filler:
    """Answers for one schema: valid ones, schema-violating ones and unparseable ones."""

    def __init__(self, schema: JSON) -> None:
        self.schema = schema
        self._root = _Compiler(schema).node(schema, "", entities=True)
        self._answers: dict[str, str] = {}
        self._breakers: list[Callable[[Any], Any]] | None = None

    def value(self, text: str) -> Any:
        """A fresh (mutable) answer for ``text``."""
        facts = read_facts(text)
        ctx = _Ctx(facts, text, list(facts.names), list(facts.numbers), 0, True)
        return self._root.fill(ctx, text_seed(text))

    def answer(self, text: str) -> str:
        """The valid answer as JSON text; the same text always gets the same answer."""
        found = self._answers.get(text)
        if found is None:
            if len(self._answers) >= _ANSWER_CACHE_SIZE:
                self._answers.clear()
            found = self._answers[text] = orjson.dumps(self.value(text)).decode()
        return found

    def invalid(self, text: str, pick: float) -> str:
        """Valid JSON that breaks the schema: a required field missing or a value of the wrong type."""
        if self._breakers is None:
            self._breakers = _breakers(self.schema, self.value(""))
        value = self.value(text)
        breaker = self._breakers[min(int(pick * len(self._breakers)), len(self._breakers) - 1)]
        return orjson.dumps(breaker(value)).decode()


def malformed(answer: str, pick: float) -> str:
    """Not JSON at all: the answer cut short, as when a model stops mid-object."""
    if len(answer) < 2:
        return "{"
    return answer[: 1 + int(pick * (len(answer) - 1))]


_WRONG_VALUES: tuple[Any, ...] = ("not a valid value", 123456789, [], {"unexpected": True}, None)


def _breakers(schema: JSON, sample: Any) -> list[Callable[[Any], Any]]:
    """Ways to spoil an answer, each checked once against the schema so it surely fails."""
    import jsonschema  # deferred: only simulators with invalid_rate > 0 pay for it

    try:
        validator: Any = jsonschema.validators.validator_for(schema)(schema)
        validator.is_valid(sample)
    except Exception:  # a schema jsonschema cannot use: fall back to a wrong root type, unverified
        return [lambda value: []]

    def get(value: Any, path: tuple[Any, ...]) -> Any:
        for step in path:
            value = value[step]
        return value

    def drop(path: tuple[Any, ...], key: str) -> Callable[[Any], Any]:
        def apply(value: Any) -> Any:
            get(value, path).pop(key, None)
            return value

        return apply

    def replace(path: tuple[Any, ...], key: str, wrong: Any) -> Callable[[Any], Any]:
        def apply(value: Any) -> Any:
            get(value, path)[key] = wrong
            return value

        return apply

    targets: list[tuple[Any, ...]] = [()]
    if isinstance(sample, dict) and len(sample) == 1:
        (key, inner), *_ = sample.items()
        if isinstance(inner, list) and inner and isinstance(inner[0], dict):
            targets.append((key, 0))  # the many shape: spoil the first entity too
    breakers: list[Callable[[Any], Any]] = []
    for path in targets:
        obj = get(sample, path)
        if not isinstance(obj, dict):
            continue
        for key in obj:
            # Both ways a model gets it wrong: leaving a field out, and the first wrong type that fails.
            for candidates in ([drop(path, key)], [replace(path, key, wrong) for wrong in _WRONG_VALUES]):
                for breaker in candidates:
                    if not validator.is_valid(breaker(orjson.loads(orjson.dumps(sample)))):
                        breakers.append(breaker)
                        break
    spoil_root: Callable[[Any], Any] = lambda value: []  # noqa: E731 - a one-line fallback
    return breakers or [spoil_root]


_FILLERS: dict[bytes, Filler] = {}


def filler_for(key: bytes, schema: JSON) -> Filler:
    """The compiled filler for a schema, keyed by its canonical JSON (sorted keys)."""
    filler = _FILLERS.get(key)
    if filler is None:
        if len(_FILLERS) >= _FILLER_CACHE_SIZE:
            _FILLERS.clear()
        filler = _FILLERS[key] = Filler(schema)
    return filler
