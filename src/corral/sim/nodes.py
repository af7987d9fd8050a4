"""The pieces a compiled schema is made of: one small node per JSON Schema construct.

Each node answers ``fill(ctx, h)`` (a value, from the text where it can, else from the path hash
``h``) and ``evidence(ctx, h)`` (only what the text supports, or :data:`MISSING`: nullable fields
are null without evidence). :mod:`corral.sim.answers` builds the tree from a schema.

A fill can also record, for each leaf it answers, where it stands in the answer and whether the
seeded mistakes (:mod:`corral.sim.slips`, :mod:`corral.sim.field_errors`) changed it: a :class:`Mark`
per path, which the logprobs of :mod:`corral.sim.logprobs` are drawn from. Only a fill given a
``marks`` dictionary keeps paths; the others pay one ``is None`` test per field.

A recursive schema makes the tree a graph (a :class:`Ref` leads back up). Each node's ``rank`` says
how it ends: the height of its smallest finite value (0 for a string, a number, null), or None when
it has none (a ``$ref`` that only leads to itself, a required cycle with no way out).
:func:`corral.sim.answers.rank_graph` sets it. Past :data:`MAX_DEPTH` objects (or :data:`MAX_HOPS`
references) a fill stops growing: optional parts are left out, lists keep their minimum, and a union
takes its lowest-ranked branch; every step down then lowers the rank, so every fill ends.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from corral.sim.field_errors import wrong_member, wrong_number, wrong_string
from corral.sim.hashing import mix, step, text_seed
from corral.sim.slips import NO_SLIPS, Slips
from corral.sim.text import Entity, Facts, value_after_key
from corral.sim.text import Number as TextNumber

__all__ = [
    "MISSING",
    "Array",
    "Bool",
    "Choice",
    "Const",
    "Ctx",
    "Enum",
    "Mark",
    "Node",
    "Null",
    "Nullable",
    "Number",
    "Object",
    "Path",
    "Ref",
    "String",
    "field_kind",
    "mix",
    "step",
    "text_seed",
]

JSON = dict[str, Any]
MISSING: Final = object()
MAX_DEPTH = 8  # recursive schemas (trees) stop growing here: optional parts left out, lists empty
#: references followed in one branch before it stops growing the same way (a recursion through
#: arrays or unions only, which never nests an object, stops here)
MAX_HOPS = MAX_DEPTH
_FALLBACK_NAMES = ("Alex", "Sam", "Robin", "Kim", "Charlie", "Jordan", "Taylor", "Morgan")
_EPOCH = datetime.date(1970, 1, 1)
#: where a value stands in an answer: its keys and list indices from the top
Path = tuple[str | int, ...]


class Mark(NamedTuple):
    """One leaf of an answer as a fill gave it."""

    #: the value the text gives (what the answer would be without seeded mistakes)
    right: Any
    #: the value answered: ``right`` unless a field error or a slip changed it
    value: Any
    #: how likely a value of this field is wrong, from the configured shares (0: never)
    chance: float


class Ctx:
    """What one object (or one entity of a list) is being filled from."""

    __slots__ = (
        "depth", "facts", "hops", "marks", "name_pos", "names", "numbers", "path", "slips", "text", "top",
    )  # fmt: skip

    def __init__(
        self,
        facts: Facts,
        text: str,
        names: list[str],
        numbers: list[TextNumber],
        *,
        depth: int,
        top: bool,
        hops: int = 0,
        slips: Slips = NO_SLIPS,
        marks: dict[Path, Mark] | None = None,
        path: list[str | int] | None = None,
    ) -> None:
        self.facts = facts
        self.text = text
        self.names = names
        self.name_pos = 0
        self.numbers = numbers
        #: nesting of objects, and references followed, to stop recursive schemas
        self.depth = depth
        self.hops = hops
        #: the whole text (not one entity's slice): lists of people here use every entity
        self.top = top
        #: how the answer's values go wrong on purpose (:mod:`corral.sim.slips`)
        self.slips = slips
        #: where each leaf's :class:`Mark` goes (None: nowhere), and the path being filled
        self.marks = marks
        self.path = path if path is not None or marks is None else []

    @property
    def deep(self) -> bool:
        """Past the point where a recursive schema stops growing."""
        return self.depth >= MAX_DEPTH or self.hops >= MAX_HOPS

    def entity(self, entity: Entity) -> Ctx:
        names = [entity.name] if entity.name else []
        return Ctx(self.facts, entity.text, names, list(entity.numbers), depth=self.depth, top=False,
                   hops=self.hops, slips=self.slips, marks=self.marks, path=self.path)  # fmt: skip

    def mark(self, right: Any, value: Any, chance: float) -> None:
        """Record the leaf at the current path (only called when ``marks`` is set)."""
        assert self.marks is not None
        assert self.path is not None
        self.marks[tuple(self.path)] = Mark(right, value, chance)

    def at(self, node: Node, h: int, index: int) -> Any:
        """``node`` filled as the list item at ``index`` of the current path."""
        path = self.path
        if path is None:
            return node.fill(self, h)
        path.append(index)
        value = node.fill(self, h)
        path.pop()
        return value

    def take_number(self, fits: Callable[[int | float], bool], prefer_age: bool) -> int | float | None:
        """The next unused number that fits; for an age, one next to "years", else one below 130."""
        best = plausible = first = None
        for number in self.numbers:
            if not fits(number.value):
                continue
            if not prefer_age or number.age_cue:
                best = number
                break
            first = first or number
            if plausible is None and 0 < number.value < 130:
                plausible = number
        # A year is no age: without an age-like number, an age is not in the text.
        best = best or plausible or (None if prefer_age else first)
        if best is None:
            return None
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


def field_kind(key: str, fmt: str | None) -> str:
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


class Node:
    __slots__ = ("rank",)
    #: the height of the smallest finite value; None: there is none (see the module's doc)
    rank: int | None

    def fill(self, ctx: Ctx, h: int) -> Any:
        raise NotImplementedError

    def children(self) -> list[Node]:
        """The nodes a value of this one may hold (all of them, to rank the graph)."""
        return []

    def rank_now(self) -> int | None:
        """The rank, from the children's ranks as known so far (None: not known to end, yet)."""
        return 0

    def evidence(self, ctx: Ctx, h: int) -> Any:
        """The value the text supports, or MISSING: decides whether a nullable field is null."""
        return MISSING

    def choices(self) -> list[Any]:
        """Every value, when there are few (enums, booleans): how unique lists reach their minimum."""
        return []

    def is_entity(self) -> bool:
        return False


class Const(Node):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def fill(self, ctx: Ctx, h: int) -> Any:
        return self.value

    def evidence(self, ctx: Ctx, h: int) -> Any:
        return self.value


class Enum(Node):
    __slots__ = ("key", "values")

    def __init__(self, values: list[Any], key: str = "") -> None:
        self.values = [v for v in values if v is not None] or values
        self.key = key

    def choices(self) -> list[Any]:
        return self.values

    def _read(self, ctx: Ctx) -> Any:
        lower = ctx.facts.lower
        for value in self.values:
            if isinstance(value, str) and value and value.lower().replace("_", " ") in lower:
                return value
        return MISSING

    def evidence(self, ctx: Ctx, h: int) -> Any:
        found = self._read(ctx)
        return found if found is MISSING else self._settle(ctx, found, h)

    def fill(self, ctx: Ctx, h: int) -> Any:
        found = self._read(ctx)
        return self._settle(ctx, self.values[mix(h) % len(self.values)] if found is MISSING else found, h)

    def _settle(self, ctx: Ctx, right: Any, h: int) -> Any:
        """``right`` as the answer gives it: another member when the field errs."""
        slips = ctx.slips
        r = slips.field_error(self.key, h) if slips.fields else None
        value = right if r is None else wrong_member(right, self.values, r)
        if ctx.marks is not None:
            ctx.mark(right, value, slips.chance(self.key, slips=False, errs=len(self.values) > 1))
        return value


class Bool(Node):
    __slots__ = ("key",)

    def __init__(self, key: str = "") -> None:
        self.key = key

    def fill(self, ctx: Ctx, h: int) -> Any:
        right = bool(mix(h) & 1)
        slips = ctx.slips
        value = right if not slips.fields or slips.field_error(self.key, h) is None else not right
        if ctx.marks is not None:
            ctx.mark(right, value, slips.chance(self.key, slips=False))
        return value

    def choices(self) -> list[Any]:
        return [False, True]


class Null(Node):
    __slots__ = ()

    def fill(self, ctx: Ctx, h: int) -> Any:
        return None

    def evidence(self, ctx: Ctx, h: int) -> Any:
        return None


class String(Node):
    __slots__ = ("fmt", "free", "key", "kind", "max_len", "min_len", "pattern")

    def __init__(self, key: str, schema: JSON) -> None:
        self.key = key
        self.fmt: str | None = schema.get("format")
        self.kind = field_kind(key, self.fmt)
        #: a pattern pins it: no field error can promise to match it
        self.pattern = bool(schema.get("pattern"))
        #: neither a format nor a pattern pins it: a slip (:mod:`corral.sim.slips`) may change it
        self.free = not self.fmt and not self.pattern
        self.min_len = int(schema.get("minLength", 0))
        max_len = schema.get("maxLength")
        self.max_len = int(max_len) if max_len is not None else None

    def evidence(self, ctx: Ctx, h: int) -> Any:
        found = self._read(ctx, h)
        return found if found is MISSING else self.settle(ctx, found, h)

    def fill(self, ctx: Ctx, h: int) -> Any:
        found = self._read(ctx, h)
        return self.settle(ctx, self._fit(self._invent(ctx, h), h) if found is MISSING else found, h)

    def settle(self, ctx: Ctx, right: str, h: int) -> str:
        """``right`` as the answer gives it: changed by a field error, then by a slip (most often:
        as it is)."""
        slips, value = ctx.slips, right
        if slips.fields and not self.pattern:
            r = slips.field_error(self.key, h)
            if r is not None:
                value = self._fit(self._wrong(ctx, value, r), h)
        if slips.active and self.free:
            value = self._fit(slips.apply(value, h, ctx.facts, self.kind), h)
        if ctx.marks is not None:
            ctx.mark(right, value, slips.chance(self.key, slips=self.free, errs=not self.pattern))
        return value

    def _wrong(self, ctx: Ctx, value: str, r: int) -> str:
        def other_format(draw: int) -> str:
            return self._invent(ctx, draw)

        return wrong_string(
            value, kind=self.kind, fmt=self.fmt, facts=ctx.facts, r=r, other_format=other_format
        )

    def _read(self, ctx: Ctx, h: int) -> Any:
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
        return MISSING if found is None else self._fit(found, h)

    def _invent(self, ctx: Ctx, h: int) -> str:
        fmt, kind = self.fmt, self.kind
        h = mix(h)
        if fmt in ("date", "date-time", "time", "duration", "uuid", "ipv4", "ipv6"):
            day = _EPOCH + datetime.timedelta(days=10_000 + h % 10_000)
            hhmm = f"{h % 24:02d}:{h % 60:02d}:00"
            node_id = f"{h:08x}{h & 0xFFFF:04x}"
            return {
                "date": day.isoformat(),
                "date-time": f"{day.isoformat()}T{hhmm}Z",
                "time": f"{hhmm}Z",  # JSON Schema's time is RFC 3339's full-time: the offset is part of it
                "duration": f"P{1 + h % 30}D",
                "uuid": f"{h:08x}-{h >> 16:04x}-4{h & 0xFFF:03x}-8{h >> 4 & 0xFFF:03x}-{node_id}",
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


class Number(Node):
    __slots__ = ("hi", "integer", "key", "kind", "lo", "multiple")

    def __init__(self, key: str, schema: JSON, integer: bool) -> None:
        self.key = key
        self.integer = integer
        self.kind = field_kind(key, None)
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

    def evidence(self, ctx: Ctx, h: int) -> Any:
        value = ctx.take_number(self._fits, self.kind == "age")
        if value is None:
            return MISSING
        return self._settle(ctx, int(value) if self.integer else value, h)

    def fill(self, ctx: Ctx, h: int) -> Any:
        found = self.evidence(ctx, h)
        return self._settle(ctx, self._invent(h), h) if found is MISSING else found

    def _settle(self, ctx: Ctx, right: float, h: int) -> Any:
        """``right`` as the answer gives it: off by a little when the field errs."""
        slips, value = ctx.slips, right
        r = slips.field_error(self.key, h) if slips.fields else None
        if r is not None:
            value = wrong_number(
                right, kind=self.kind, integer=self.integer, multiple=self.multiple, fits=self._fits, r=r
            )
        if ctx.marks is not None:
            ctx.mark(right, value, slips.chance(self.key, slips=False))
        return value

    def _invent(self, h: int) -> float:
        h = mix(h)
        lo: float
        hi: float
        lo, hi = {"age": (18, 80), "year": (1950, 2024)}.get(self.kind, (1, 100))
        width = hi - lo
        if self.lo is not None:
            lo = self.lo
            hi = self.hi if self.hi is not None else max(hi, lo + width)
        elif self.hi is not None:
            hi = self.hi
            lo = min(lo, hi - width)
        if self.multiple:
            first, last = int(-(-lo // self.multiple)), int(hi // self.multiple)
            value: float = self.multiple * (first + h % max(1, last - first + 1))
            return int(value) if self.integer else value
        if self.integer:
            lo_i, hi_i = int(-(-lo // 1)), int(hi // 1)
            return lo_i + h % max(1, hi_i - lo_i + 1)
        return round(lo + (hi - lo) * (h % 10_000) / 10_000, 2)


class Nullable(Node):
    __slots__ = ("inner",)

    def __init__(self, inner: Node) -> None:
        self.inner = inner

    def fill(self, ctx: Ctx, h: int) -> Any:
        if ctx.deep or self.inner.rank is None:
            return None  # how a recursion through Optional[...] ends
        found = self.inner.evidence(ctx, h)
        return None if found is MISSING else found

    def evidence(self, ctx: Ctx, h: int) -> Any:
        return MISSING if self.inner.rank is None else self.inner.evidence(ctx, h)

    def children(self) -> list[Node]:
        return [self.inner]


class Choice(Node):
    """``anyOf`` / ``oneOf`` of several branches: the first that can end; past the depth limit, the
    one that ends soonest (a tree's leaf, not another subtree)."""

    __slots__ = ("branches",)

    def __init__(self, branches: list[Node]) -> None:
        self.branches = branches

    def _pick(self, ctx: Ctx) -> Node:
        ending = [branch for branch in self.branches if branch.rank is not None]
        if ctx.deep:
            return min(ending, key=lambda branch: branch.rank or 0)
        return ending[0]

    def fill(self, ctx: Ctx, h: int) -> Any:
        return self._pick(ctx).fill(ctx, h)

    def evidence(self, ctx: Ctx, h: int) -> Any:
        return self._pick(ctx).evidence(ctx, h)

    def children(self) -> list[Node]:
        return self.branches

    def rank_now(self) -> int | None:
        known = [branch.rank for branch in self.branches if branch.rank is not None]
        return min(known) + 1 if known else None


class Array(Node):
    __slots__ = ("entities", "item", "key", "max_items", "min_items", "prefix", "unique")

    def __init__(self, key: str, schema: JSON, item: Node, prefix: list[Node], entities: bool) -> None:
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

    def children(self) -> list[Node]:
        return [*self.prefix, self.item]

    def rank_now(self) -> int | None:
        needed = [*self.prefix, self.item] if self.min_items > len(self.prefix) else self.prefix
        ranks = [node.rank for node in needed]
        return None if None in ranks else max((r for r in ranks if r is not None), default=0) + 1

    def fill(self, ctx: Ctx, h: int) -> Any:
        # ctx.at: each item filled at its own index of the path (the index it takes in the list)
        values: list[Any] = [ctx.at(node, step(h, i + 1), i) for i, node in enumerate(self.prefix)]
        if ctx.deep or self.item.rank is None:  # an item that cannot end: none beyond the prefix
            return values + [ctx.at(self.item, step(h, i + 1), i) for i in range(len(values), self.min_items)]
        if self.entities:
            entities = _entities_for(ctx)
            # A list of people from a text that names nobody is empty, as a careful model answers
            # (a made-up stand-in is what --hallucinate is for); unless the schema wants some.
            named = any(entity.name for entity in entities) or not ctx.top
            count = self._clamp(len(entities)) if named else self.min_items
            values += [
                ctx.entity(entities[i % len(entities)]).at(self.item, step(h, i + 1), len(values) + i)
                for i in range(count)
            ]
            return values
        if self.key.lower() in _NAME_LISTS and isinstance(self.item, String) and ctx.names:
            names = ctx.names[: self._clamp(len(ctx.names))]
            values += [self._name(ctx, name, step(h, i + 1), len(values) + i) for i, name in enumerate(names)]
        count = self._clamp(max(len(values), 1 + mix(h) % 3))
        # Distinct values read better; only uniqueItems makes them a must.
        i = len(values)
        while len(values) < count and i < count + 16:
            i += 1
            value = ctx.at(self.item, step(h, i), len(values))
            if value not in values:
                values.append(value)
        for value in self.item.choices():  # an enum answered from the text repeats itself
            if len(values) >= count:
                break
            if value not in values:
                values.append(value)
        while len(values) < count and not self.unique:
            values.append(ctx.at(self.item, step(h, len(values) + 1), len(values)))
        return values

    def _name(self, ctx: Ctx, name: str, h: int, index: int) -> str:
        assert isinstance(self.item, String)
        if ctx.path is None:
            return self.item.settle(ctx, name, h)
        ctx.path.append(index)
        value = self.item.settle(ctx, name, h)
        ctx.path.pop()
        return value


def _entities_for(ctx: Ctx) -> tuple[Entity, ...]:
    if ctx.top:
        return ctx.facts.entities
    # A nested list of people inside one entity: that entity's own names, or just itself.
    return tuple(Entity(name, ctx.text, tuple(ctx.numbers)) for name in ctx.names) or (
        Entity(None, ctx.text, tuple(ctx.numbers)),
    )


class Object(Node):
    __slots__ = ("fields", "min_props")

    def __init__(self, fields: list[tuple[str, Node, int, bool]], schema: JSON) -> None:
        self.fields = fields
        self.min_props = int(schema.get("minProperties", 0))

    def children(self) -> list[Node]:
        return [node for _, node, _, _ in self.fields]

    def rank_now(self) -> int | None:
        ranks = [node.rank for _, node, _, required in self.fields if required]
        return None if None in ranks else max((r for r in ranks if r is not None), default=0) + 1

    def fill(self, ctx: Ctx, h: int) -> Any:
        deep = ctx.deep
        ctx.depth += 1
        try:
            # An optional field that cannot end is left out, as a model would leave it.
            if ctx.path is None:
                out = {
                    key: node.fill(ctx, step(h, salt))
                    for key, node, salt, required in self.fields
                    if required or (not deep and node.rank is not None)
                }
            else:
                out = self._fill_marked(ctx, h, ctx.path, deep)
        finally:
            ctx.depth -= 1
        for i in range(len(out), self.min_props):
            out[f"key{i}"] = f"value{i}"
        return out

    def _fill_marked(self, ctx: Ctx, h: int, path: list[str | int], deep: bool) -> dict[str, Any]:
        """The fields, each filled at its own key of the path."""
        out: dict[str, Any] = {}
        for key, node, salt, required in self.fields:
            if required or (not deep and node.rank is not None):
                path.append(key)
                out[key] = node.fill(ctx, step(h, salt))
                path.pop()
        return out

    def evidence(self, ctx: Ctx, h: int) -> Any:
        # An optional sub-object is filled one level down (an address, a manager) but not deeper,
        # so a recursive Optional[Self] ends in null as quickly as a model would end it.
        return self.fill(ctx, h) if ctx.depth < 2 else MISSING


class Ref(Node):
    """A ``$ref``, compiled on first use so that recursive schemas compile in finite time. Following
    one counts as a hop: a recursion that nests no object still stops growing."""

    __slots__ = ("make", "target")

    def __init__(self, make: Callable[[], Node]) -> None:
        self.make = make
        self.target: Node | None = None

    def _node(self) -> Node:
        if self.target is None:
            self.target = self.make()
        return self.target

    def fill(self, ctx: Ctx, h: int) -> Any:
        ctx.hops += 1
        try:
            return self._node().fill(ctx, h)
        finally:
            ctx.hops -= 1

    def evidence(self, ctx: Ctx, h: int) -> Any:
        ctx.hops += 1
        try:
            return self._node().evidence(ctx, h)
        finally:
            ctx.hops -= 1

    def choices(self) -> list[Any]:
        return [] if self.rank is None else self._node().choices()

    def children(self) -> list[Node]:
        return [self._node()]

    def rank_now(self) -> int | None:
        rank = self._node().rank
        return None if rank is None else rank + 1
