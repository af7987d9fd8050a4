"""JSON Schema → a deterministic answer built from the prompt text.

A schema is compiled once (:func:`filler_for`, cached by its canonical JSON) into a tree of small
nodes (:mod:`corral.sim.nodes`); filling walks the tree with the facts read from the text
(:mod:`corral.sim.text`). Values the text supplies are used (a name for ``name``, the number next
to "years" for ``age``); everything else comes from a hash of (text, field path), so the same request
always gets the same answer.

Nullable fields stay null unless the text has evidence for them, as a careful model would answer.
The "many" shape ``{"items": [entity, ...]}`` (and any list of objects with a name field) gets one
entity per person named in the text, each filled from the stretch of text that is theirs (a long
chunk with dozens of people included: a few milliseconds for 16,000 characters). With
:class:`~corral.sim.slips.Slips`, a share of the free strings comes out hallucinated or misplaced,
and a share of each named field's values wrong (:mod:`corral.sim.field_errors`); :meth:`Filler.marks`
says which, leaf by leaf, for the logprobs.

A recursive schema (a tree: ``children`` holding more of the same) gets a finite answer: past a
depth the answer stops growing (:mod:`corral.sim.nodes`). A schema no finite value satisfies
(``{"$ref": "#"}``, a required cycle with no way out) has a :attr:`Filler.problem`, which the wires
answer with a 400, as the providers refuse a schema they cannot use.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from corral.sim.faults import Breaker, breakers
from corral.sim.nodes import (
    Array,
    Bool,
    Choice,
    Const,
    Ctx,
    Enum,
    Mark,
    Node,
    Null,
    Nullable,
    Number,
    Object,
    Path,
    Ref,
    String,
    field_kind,
    text_seed,
)
from corral.sim.slips import NO_SLIPS, Slips
from corral.sim.text import Facts

__all__ = ["Filler", "filler_for", "rank_graph", "schema_key", "schema_problem"]

JSON = dict[str, Any]
_FILLER_CACHE_SIZE = 256
_ANSWER_CACHE_SIZE = 4096
_MARKS_CACHE_SIZE = 256


# --- compiling -----------------------------------------------------------------------------------

_META = frozenset({"title", "description", "default", "examples", "$comment", "deprecated"})


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and (schema.get("type") == "null" or schema == {"const": None})


class _Compiler:
    def __init__(self, root: JSON) -> None:
        self.root = root
        #: one node per reference and place: a cycle of references closes on itself, not for ever
        self.refs: dict[tuple[str, str, bool], Node] = {}

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
        """What a chain of references leads to, to look at (not to compile: see :meth:`ref_node`)."""
        for _ in range(32):  # a cycle of bare refs ends as a free-form value
            if not isinstance(schema, dict) or "$ref" not in schema:
                break
            schema = self._deref_once(schema)
        return schema if isinstance(schema, dict) else {}

    def ref_node(self, schema: JSON, key: str, entities: bool) -> Node:
        """A ``$ref`` (with what stands beside it) at ``key``, compiled once."""
        ref = schema["$ref"]
        bare = set(schema) - _META == {"$ref"} and isinstance(ref, str)
        name = ref if bare else orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
        slot = (name, key, entities)
        if slot not in self.refs:
            # Followed one step only: a reference that leads to another is another Ref node.
            target = self.resolve(ref) if bare else self._deref_once(schema)
            self.refs[slot] = self.node(target, key, entities)
        return self.refs[slot]

    def _deref_once(self, schema: JSON) -> JSON:
        ref = schema["$ref"]
        target = self.resolve(ref) if isinstance(ref, str) else {}
        return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}

    def node(self, schema: Any, key: str, entities: bool = False) -> Node:  # noqa: PLR0911 - one per keyword
        if not isinstance(schema, dict):
            return String(key, {})  # `true` / `{}`: anything goes, a string is the likeliest
        if "$ref" in schema:
            # Compiled when first filled (or ranked): a recursive schema compiles in finite time.
            return Ref(lambda: self.ref_node(schema, key, entities))
        if "const" in schema:
            return Const(schema["const"])
        if schema.get("enum"):
            return Enum(list(schema["enum"]), key)
        for combinator in ("anyOf", "oneOf"):
            if combinator in schema:
                branches = schema[combinator]
                real = [self.node(b, key, entities) for b in branches if not _is_null(b)]
                inner = (real[0] if len(real) == 1 else Choice(real)) if real else Null()
                return Nullable(inner) if len(real) < len(branches) and real else inner
        if "allOf" in schema:
            return self.node(self._merge(schema), key, entities)
        kind = schema.get("type")
        nullable = schema.get("nullable") is True  # OpenAPI 3.0's spelling
        if isinstance(kind, list):
            nullable = "null" in kind
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        node = self._typed(schema, kind, key, entities)
        return Nullable(node) if nullable else node

    def _typed(self, schema: JSON, kind: str, key: str, entities: bool) -> Node:
        if kind == "object":
            required = set(schema.get("required", ()))
            props: dict[str, Any] = schema.get("properties") or {}
            # The "many" shape: one array of objects is the whole answer, one element per entity.
            many = len(props) == 1 and entities
            fields = [
                (name, self.node(sub, name, many), zlib.crc32(name.encode()), name in required)
                for name, sub in props.items()
            ]
            return Object(fields, schema)
        if kind == "array":
            items = schema.get("items", {})
            prefix = [self.node(sub, key) for sub in schema.get("prefixItems", ())]
            item_schema = self.deref(items)
            is_objects = item_schema.get("type") == "object" or "properties" in item_schema
            names_inside = any(field_kind(p, None) == "name" for p in item_schema.get("properties") or {})
            per_entity = is_objects and (entities or names_inside)
            return Array(key, schema, self.node(items, key), prefix, per_entity)
        if kind == "string":
            return String(key, schema)
        if kind in ("integer", "number"):
            return Number(key, schema, kind == "integer")
        if kind == "boolean":
            return Bool(key)
        return Null()

    def _merge(self, schema: JSON) -> JSON:
        merged: JSON = {k: v for k, v in schema.items() if k != "allOf"}
        for raw in schema["allOf"]:
            for k, v in self.deref(raw).items():
                if k == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **v}
                elif k == "required":
                    merged["required"] = [*merged.get("required", []), *v]
                else:
                    merged.setdefault(k, v)
        return merged


# --- the compiled schema -------------------------------------------------------------------------


def rank_graph(root: Node) -> None:
    """Set every reachable node's ``rank`` (see :mod:`corral.sim.nodes`): compile every reference,
    then raise ranks from the leaves up until nothing changes. Walked without recursion."""
    nodes: list[Node] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            node.rank = None
            nodes.append(node)
            stack.extend(node.children())
    nodes.reverse()  # children before parents, mostly: one pass ranks a schema without cycles
    pending = nodes
    while pending:
        for node in pending:
            node.rank = node.rank_now()
        left = [node for node in pending if node.rank is None]
        if len(left) == len(pending):
            return  # what is left has no finite value
        pending = left


_TOO_DEEP = "the schema is nested too deeply"
_NO_END = (
    "no finite value satisfies this schema: its references go round without ever reaching a value, "
    "or every way out of its recursion is required"
)


class Filler:
    """Answers for one schema: valid ones, schema-violating ones and unparseable ones."""

    def __init__(self, schema: JSON) -> None:
        self.schema = schema
        #: why no value can satisfy the schema (the API refuses it); None: it can be answered
        self.problem: str | None = None
        self._root: Node | None = None
        try:
            root = _Compiler(schema).node(schema, "", entities=True)
            rank_graph(root)
        except RecursionError:
            self.problem = _TOO_DEEP
        else:
            if root.rank is None:
                self.problem = _NO_END
            else:
                self._root = root
        #: answers by (text, slips): fillers are shared by every simulator in the process
        self._answers: dict[tuple[str, Slips], str] = {}
        self._marks: dict[tuple[str, Slips], dict[Path, Mark]] = {}
        self._breakers: list[Breaker] | None = None

    def value(self, text: str, slips: Slips = NO_SLIPS, marks: dict[Path, Mark] | None = None) -> Any:
        """A fresh (mutable) answer for ``text``; ``{}`` for a schema no value satisfies (asked for in
        a prompt, where no API checks it: a model can only answer something that fails it).
        ``slips``: which values come out wrong (:mod:`corral.sim.slips`); ``marks``: where to record
        each leaf answered, by path (:class:`~corral.sim.nodes.Mark`)."""
        if self._root is None:
            return {}
        facts = Facts(text)
        ctx = Ctx(facts, text, list(facts.names), list(facts.numbers), depth=0, top=True, slips=slips,
                  marks=marks)  # fmt: skip
        try:
            return self._root.fill(ctx, text_seed(text))
        except RecursionError:  # a schema so deep that even its smallest value is out of reach
            return {}

    def answer(self, text: str, slips: Slips = NO_SLIPS) -> str:
        """The valid answer as JSON text; the same text (and slips) always gets the same answer."""
        key = (text, slips)
        found = self._answers.get(key)
        if found is None:
            if len(self._answers) >= _ANSWER_CACHE_SIZE:
                self._answers.clear()
            found = self._answers[key] = orjson.dumps(self.value(text, slips)).decode()
        return found

    def marks(self, text: str, slips: Slips = NO_SLIPS) -> dict[Path, Mark]:
        """Each leaf of :meth:`answer`'s answer by path: the value the text gives, the value answered
        and its chance of being wrong. Filled again on first use (a request that asks for logprobs),
        then kept like the answer."""
        key = (text, slips)
        found = self._marks.get(key)
        if found is None:
            if len(self._marks) >= _MARKS_CACHE_SIZE:
                self._marks.clear()
            found = self._marks[key] = {}
            value = self.value(text, slips, found)
            if key not in self._answers:  # one fill for both, when the marks are asked first
                if len(self._answers) >= _ANSWER_CACHE_SIZE:
                    self._answers.clear()
                self._answers[key] = orjson.dumps(value).decode()
        return found

    def invalid(self, text: str, pick: float, slips: Slips = NO_SLIPS) -> str:
        """Valid JSON that breaks the schema: a required field missing or a value of the wrong type."""
        if self._breakers is None:
            self._breakers = breakers(self.schema, self.value(""))
        value = self.value(text, slips)
        breaker = self._breakers[min(int(pick * len(self._breakers)), len(self._breakers) - 1)]
        return orjson.dumps(breaker(value)).decode()


_FILLERS: dict[bytes, Filler] = {}


def schema_key(schema: JSON) -> bytes | None:
    """The schema's canonical JSON (sorted keys); None when it nests too deeply to write out."""
    try:
        return orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson's recursion limit (255 levels)
        return None


def schema_problem(key: bytes | None, schema: JSON) -> str | None:
    """Why no value can satisfy ``schema`` (its :func:`schema_key` is ``key``); None: it can be answered."""
    return _TOO_DEEP if key is None else filler_for(key, schema).problem


def filler_for(key: bytes, schema: JSON) -> Filler:
    """The compiled filler for a schema, keyed by its canonical JSON (sorted keys)."""
    filler = _FILLERS.get(key)
    if filler is None:
        if len(_FILLERS) >= _FILLER_CACHE_SIZE:
            _FILLERS.clear()
        filler = _FILLERS[key] = Filler(schema)
    return filler
