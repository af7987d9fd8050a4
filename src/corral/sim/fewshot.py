"""Few-shot extraction prompts (langextract's), answered as a model that follows the examples would.

langextract 1.7.1 sends no schema of corral's kind: it shows the model examples and asks it to answer
the last question the same way. Its prompt is one user message (``prompting.QAPromptGenerator.render``)::

    {description}

    [{additional context; "[Previous text]: ..." when it carries the last chunk's tail}
    ]Examples
    Q: {an example's text}
    A: {its answer}            {"extractions": [{"<class>": "<text>", "<class>_attributes": {...}}]},
                               JSON indented by 2 (``core/format_handler.py``,
    Q: ...                     ``format_extraction_example``), in ```json fences with fence_output
    A: ...
    Q: {the chunk to extract from}
    A: {nothing: the model's turn}

beside the system message "You are a helpful assistant that responds in JSON format." Its OpenAI
provider (``providers/openai.py``) asks for ``response_format`` ``json_object``, or, with
``use_schema_constraints`` (the default), ``json_schema`` of the answers' shape
(``providers/schemas/openai.py``: ``extractions``, an array of ``anyOf`` one strict object per
class, every attribute listed and nullable).

The answer reads the last question only: never the examples' entities, nor the context before them.
It finds the people there with the recogniser that schema answers use (:mod:`corral.sim.text`), one
extraction each, in order of appearance, of the examples' people class (``person``, ``patient``,
``character``...; a prompt whose classes name no people gets no extractions): the name as the text
writes it, and the attributes the examples give that class when the person's own stretch of text
has them (an age, a name, ``key is value``), left out otherwise (null under a schema, which lists
them all). Values take the examples' types ("34" or 34), wrapper key and fences, or the schema's.
The slips of :mod:`corral.sim.slips` change the extraction texts and string attributes with the same
shares as a schema answer's strings, so a comparison with corral meets the same mistakes.

A prompt of another shape (not ending in the answer prefix, examples that are not JSON, a schema of
another shape) is not one of these: :func:`read_fewshot` returns None and the request is answered
as any other.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, NamedTuple

import orjson

from corral.sim.hashing import step, text_seed
from corral.sim.nodes import field_kind
from corral.sim.slips import Slips
from corral.sim.text import Entity, Facts, age_in, value_after_key

__all__ = ["FewShot", "fewshot_answer", "read_fewshot"]

JSON = dict[str, Any]
_QUESTION, _ANSWER = "Q: ", "A: "
_HEADING = "\nExamples\n" + _QUESTION
_DEFAULT_SUFFIX = "_attributes"
_DEFAULT_WRAPPER = "extractions"
_DECODER = json.JSONDecoder()
#: class names that mean "a person" (besides any name field_kind reads as a name)
_PEOPLE = frozenset(
    """
    person people persons individual individuals human character characters patient patients
    employee employees speaker speakers author authors customer customers member members
    participant participants contact contacts witness witnesses name names
    """.split()  # noqa: SIM905 - a word list reads (and diffs) better as running text
)
#: class → attribute → the JSON types its values take
_Classes = dict[str, dict[str, tuple[str, ...]]]
_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array"}


class FewShot(NamedTuple):
    """What a few-shot prompt asks: the text to read and the shape of its answer."""

    #: the last question: the only text the answer is read from
    question: str
    #: the key the extractions are wrapped in; None: the examples answer a bare list
    wrapper: str | None
    #: the examples' fence language ("json"), "" for a bare fence; None: not fenced
    fence: str | None
    #: what joins a class to its attributes' key ("_attributes")
    suffix: str
    #: class → attribute → the JSON types its values take (the examples' or the schema's)
    classes: _Classes
    #: a schema lists every attribute as required: unknown ones are null, not left out
    strict: bool


def read_fewshot(prompt: str, schema: JSON | None) -> FewShot | None:
    """The few-shot request in ``prompt`` (with its ``schema``, if any), or None when it is not one."""
    cut = max(0, len(prompt) - 16)  # the end only: a long prompt is not copied to be stripped
    tail = prompt[cut:].rstrip()
    if not tail.endswith(_ANSWER.rstrip()) or _QUESTION not in prompt:
        return None
    final = cut + len(tail) - len(_ANSWER.rstrip())  # where the last "A:" starts
    classes: _Classes = {}
    shape = _Shape()
    start = _last_question(prompt, final, classes, shape) if final > 0 and prompt[final - 1] == "\n" else None
    if start is None:
        return None
    # A schema of another shape is answered from the schema, as any other request.
    if (schema is not None and not _read_schema(schema, classes, shape)) or not classes:
        return None
    question = prompt[start + len(_QUESTION) : final - 1]
    return FewShot(question, shape.wrapper, shape.fence, shape.suffix, classes, strict=schema is not None)


def _last_question(prompt: str, final: int, classes: _Classes, shape: _Shape) -> int | None:
    """Where the question to answer starts (its "Q: "), the examples before it read into ``classes``
    and ``shape``; None when the prompt is not of this kind."""
    heading = prompt.find(_HEADING)
    if heading >= 0:
        return _read_examples(prompt, heading + len(_HEADING) - len(_QUESTION), final, classes, shape)
    # No examples (an output schema instead): the first question is the only one.
    if prompt.startswith(_QUESTION):
        return 0
    at = prompt.find("\n" + _QUESTION)
    return at + 1 if 0 <= at < final else None


def fewshot_answer(shot: FewShot, slips: Slips) -> str:
    """The answer to ``shot``: one extraction per person its question names (see the module)."""
    cls = next((c for c in shot.classes if c.lower() in _PEOPLE or field_kind(c, None) == "name"), None)
    items: list[JSON] = []
    if cls is not None:
        facts = Facts(shot.question)
        seed = text_seed(shot.question)
        attributes = shot.classes[cls]
        people = [entity for entity in facts.entities if entity.name]
        for i, entity in enumerate(people):
            assert entity.name is not None
            h = step(seed, i + 1)
            found: JSON = {}
            for attr, types in attributes.items():
                value = _attribute(entity, attr, types)
                if isinstance(value, str):
                    at = step(h, zlib.crc32(attr.encode()))
                    value = slips.apply(value, at, facts, field_kind(attr, None))
                if value is not None or shot.strict:
                    found[attr] = value
            items.append({cls: slips.apply(entity.name, step(h, 0), facts, "name"), cls + shot.suffix: found})
    payload: Any = {shot.wrapper: items} if shot.wrapper is not None else items
    if shot.strict:  # structured output: the bare JSON, as the API writes it
        return orjson.dumps(payload).decode()
    text = json.dumps(payload, indent=2, ensure_ascii=False)  # the examples' own layout
    return f"```{shot.fence}\n{text}\n```" if shot.fence is not None else text


# --- reading the prompt --------------------------------------------------------------------------


class _Shape:
    """The answers' wrapper, fences and attribute suffix, as the examples (or schema) show them."""

    def __init__(self) -> None:
        self.wrapper: str | None = _DEFAULT_WRAPPER
        self.fence: str | None = None
        self.suffix = _DEFAULT_SUFFIX


def _read_examples(prompt: str, at: int, final: int, classes: _Classes, shape: _Shape) -> int | None:
    """Read the examples from ``at`` (a "Q: "); the position of the last question, or None when an
    example's answer is not one this module can read."""
    while True:
        answer = prompt.find("\n" + _ANSWER, at)
        if answer < 0 or answer + 1 >= final:
            return at  # this question's answer is the model's turn: it is the one to answer
        parsed = _answer_at(prompt, answer + 1 + len(_ANSWER))
        if parsed is None:
            # An answer in another format (YAML) is no example we can follow; a question that holds
            # a line "A: " of its own is still the last question.
            opening = prompt[answer + 1 + len(_ANSWER) : answer + 8].lstrip()
            return None if opening[:1] in ("{", "[", "`") else at
        value, fence, end = parsed
        _learn(value, fence, classes, shape)
        following = prompt.find("\n" + _QUESTION, end)
        if following < 0 or following >= final:
            return None
        at = following + 1


def _answer_at(prompt: str, at: int) -> tuple[Any, str | None, int] | None:
    """The JSON answer starting at ``at`` (fenced or not): (value, fence language, its end)."""
    fence: str | None = None
    if prompt.startswith("```", at):
        newline = prompt.find("\n", at)
        if newline < 0:
            return None
        fence, at = prompt[at + 3 : newline].strip(), newline + 1
    try:
        value, end = _DECODER.raw_decode(prompt, at)
    except ValueError:
        return None
    if fence is not None:
        close = prompt.find("```", end)
        end = close + 3 if close >= 0 else end
    return value, fence, end


def _learn(value: Any, fence: str | None, classes: _Classes, shape: _Shape) -> None:
    """What one example's answer shows: its classes, their attributes' types, wrapper and fence."""
    shape.fence = fence
    items: Any = value
    if isinstance(value, dict):
        lists = [key for key, inner in value.items() if isinstance(inner, list)]
        shape.wrapper = _DEFAULT_WRAPPER if _DEFAULT_WRAPPER in lists else lists[0] if lists else None
        items = value.get(shape.wrapper, []) if shape.wrapper is not None else []
    else:
        shape.wrapper = None
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        cls, suffix = _class_of(list(item))
        if cls is None:
            continue
        shape.suffix = suffix
        known = classes.setdefault(cls, {})
        attributes = item.get(cls + suffix)
        for attr, attr_value in (attributes if isinstance(attributes, dict) else {}).items():
            kind = _TYPES.get(type(attr_value))
            types = known.get(attr, ())
            known[attr] = (*types, kind) if kind is not None and kind not in types else types


def _class_of(keys: list[str]) -> tuple[str | None, str]:
    """The class among an extraction's keys, and its attributes' suffix: the key another extends."""
    for key in keys:
        for other in keys:
            if other != key and other.startswith(key) and other[len(key) :].startswith("_"):
                return key, other[len(key) :]
    plain = [key for key in keys if not key.endswith((_DEFAULT_SUFFIX, "_index"))]
    return (plain[0] if plain else None), _DEFAULT_SUFFIX


def _read_schema(schema: JSON, classes: _Classes, shape: _Shape) -> bool:
    """Take the classes and attribute types from langextract's schema; False when it is not one."""
    props = schema.get("properties")
    if not isinstance(props, dict):
        return False
    wrapper = next((k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "array"), None)
    if wrapper is None:
        return False
    items = props[wrapper].get("items")
    if not isinstance(items, dict):
        return False
    variants = items.get("anyOf") or items.get("oneOf") or [items]
    found: dict[str, dict[str, tuple[str, ...]]] = {}
    for variant in variants:
        variant_props = variant.get("properties") if isinstance(variant, dict) else None
        if not isinstance(variant_props, dict):
            continue
        cls, suffix = _class_of(list(variant_props))
        if cls is None:
            continue
        shape.suffix = suffix
        attributes = _object_of(variant_props.get(cls + suffix))
        found[cls] = {name: _types_of(sub) for name, sub in (attributes.get("properties") or {}).items()}
    if not found:
        return False
    shape.wrapper, shape.fence = wrapper, None
    classes.clear()
    classes.update(found)
    return True


def _object_of(schema: Any) -> JSON:
    """The object branch of ``{"anyOf": [{object}, {"type": "null"}]}`` (or the object itself)."""
    if not isinstance(schema, dict):
        return {}
    for branch in schema.get("anyOf") or schema.get("oneOf") or [schema]:
        if isinstance(branch, dict) and (branch.get("type") == "object" or "properties" in branch):
            return branch
    return {}


def _types_of(schema: Any) -> tuple[str, ...]:
    if not isinstance(schema, dict):
        return ()
    branches = schema.get("anyOf") or schema.get("oneOf") or [schema]
    types: list[str] = []
    for branch in branches:
        kind = branch.get("type") if isinstance(branch, dict) else None
        for name in kind if isinstance(kind, list) else [kind]:
            if isinstance(name, str) and name not in types:
                types.append(name)
    return tuple(types)


# --- answering -----------------------------------------------------------------------------------


def _attribute(entity: Entity, attr: str, types: tuple[str, ...]) -> Any:
    """What ``entity``'s stretch of text says of ``attr``, in one of ``types``; None when it is silent."""
    kind = field_kind(attr, None)
    value: Any = None
    if kind == "age":
        age = age_in(entity.numbers)
        value = None if age is None else age.value
    elif kind in ("name", "first", "last") and entity.name:
        parts = entity.name.split()
        value = entity.name if kind == "name" else parts[0] if kind == "first" else parts[-1]
    else:
        value = value_after_key(entity.text, attr)
    if value is None:
        return None
    allowed = [t for t in types if t != "null"] or ["string"]
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "integer" in allowed and value == int(value):
            return int(value)
        if "number" in allowed:
            return value
        return str(value) if "string" in allowed else None
    return value if "string" in allowed else None
