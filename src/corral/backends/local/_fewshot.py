"""The few-shot completion prompt for small base models, synthesised from the response schema.

A base model (not chat-tuned) extracts best from worked examples: the instruction, a few
``Text: … / JSON: …`` pairs made up from the schema's field names and types, then the item. The part
before the item is identical for every item of a spec, so llama.cpp reuses its evaluated prefix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from corral.backends.base import Message
from corral.schema import ResponseSpec

__all__ = ["Prompter", "prompter_for"]


@dataclass(frozen=True, slots=True)
class Prompter:
    """Renders a request as a completion prompt. The part before the item is the same for every
    item of a spec, so llama.cpp reuses its evaluated prefix and only the item's tokens cost time."""

    task: str
    example: str

    def render(self, messages: list[Message]) -> str:
        turns = [m for m in messages if m.get("role") != "system"]
        text = _content(turns[0]).strip() if turns else ""
        note = _correction(turns[1:])
        return self.head(messages) + f"\n\nText: {text}\n{note}JSON:"

    def head(self, messages: list[Message]) -> str:
        """The prompt before the item: the same for every item of a spec and instruction, so its
        evaluation is shared."""
        system = next((_content(m) for m in messages if m.get("role") == "system"), "")
        return "\n".join(p for p in (system.strip(), self.task, self.example) if p)


def _correction(history: list[Message]) -> str:
    """The latest rejected answer and why, for a re-ask; "" when there is nothing useful to say.

    A reply cut off at max_tokens is not shown: it is not JSON, and the engine already re-asks with
    more room, which is all a grammar-constrained decoder needs.
    """
    replies = [m for m in history if m.get("role") == "assistant"]
    feedback = [m for m in history if m.get("role") in ("user", "tool")]
    if not replies or not feedback:
        return ""
    previous = _content(replies[-1]).strip()
    try:
        json.loads(previous)
    except ValueError:
        return ""
    why = " ".join(_content(feedback[-1]).split())
    return f"Rejected JSON: {previous}\nReason: {why}\n"


def _content(message: Message) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


_PROMPTERS: dict[str, Prompter] = {}


def prompter_for(spec: ResponseSpec[Any]) -> Prompter:
    """The (cached) prompter for a spec."""
    cached = _PROMPTERS.get(spec.schema_json)
    if cached is None:
        cached = _PROMPTERS[spec.schema_json] = _build_prompter(spec)
    return cached


def _build_prompter(spec: ResponseSpec[Any]) -> Prompter:
    # A 270M base model copies its examples closely, so they leave it little to copy by mistake:
    # where fields are optional, the examples state all, some and none of them (and the JSON has
    # exactly those), so the model follows the text rather than the example. The order was picked
    # by measuring, the last example weighing most: one entity ends on the bare example (a few
    # missed optional values for far fewer invented ones); many entities end on a text with one,
    # after one with none (ending on the empty example made the model answer [] for every text).
    schema = spec.schema
    synth = _Synth({**schema.get("definitions", {}), **schema.get("$defs", {})})
    if spec.many:
        item = synth.resolve(schema["properties"]["items"]["items"])
        task = f"Extract every {item.get('title') or 'item'} in the text as JSON."
        pair = [synth.value(item, "", 0, optional="some"), synth.value(item, "", 1, optional="none")]
        single = synth.value(item, "", 2)
        examples: list[tuple[str, Any]] = [
            (" ".join(_Synth.sentence(v) for v in pair), {"items": pair}),
            (_NOTHING, {"items": []}),
            (_Synth.sentence(single), {"items": [single]}),
        ]
    else:
        title = schema.get("title") or ("information" if spec.name == "extract" else spec.name)
        task = f"Extract the {title} as JSON."
        every = synth.value(schema, "", 2)
        examples = [(_Synth.sentence(every), every)]
        some = synth.value(schema, "", 0, optional="some")
        bare = synth.value(schema, "", 1, optional="none")
        if bare != synth.value(schema, "", 1):  # there are optional fields
            examples += [(_Synth.sentence(some), some), (_Synth.sentence(bare), bare)]
    shots = "\n".join(
        f"\nText: {text}\nJSON: {json.dumps(value, ensure_ascii=False)}" for text, value in examples
    )
    return Prompter(task=task, example=shots)


# --- synthesising the worked examples ----------------------------------------------------------

_NOTHING = "The meeting was moved to Tuesday."
_RECURSION = object()  # marks where a recursive model's example stops
_NAMES = ("Ada Lovelace", "Alan Turing", "Grace Hopper")
_PLACES = ("London", "Manchester", "Bristol")
_FIRMS = ("Acme Ltd", "Globex", "Initech")
_JOBS = ("engineer", "mathematician", "admiral")
_LINKS = ("https://example.com", "https://example.org", "https://example.net")
_MAILS = ("ada@example.com", "alan@example.org", "grace@example.net")
_DATES = ("1843-09-05", "1936-05-28", "1952-05-03")
# Plausible values, chosen by a word of the field's name; three so that examples differ.
_SAMPLES: dict[str, tuple[Any, ...]] = {
    **dict.fromkeys(("first", "given"), ("Ada", "Alan", "Grace")),
    **dict.fromkeys(("last", "surname", "family"), ("Lovelace", "Turing", "Hopper")),
    **dict.fromkeys(("name", "person", "author"), _NAMES),
    **dict.fromkeys(("city", "town", "place", "location"), _PLACES),
    **dict.fromkeys(("company", "employer", "organization", "organisation"), _FIRMS),
    **dict.fromkeys(("role", "job", "occupation", "profession"), _JOBS),
    **dict.fromkeys(("street", "address"), ("12 Baker Street", "3 Mill Lane", "7 Park Road")),
    **dict.fromkeys(("url", "website", "link"), _LINKS),
    **dict.fromkeys(("colour", "color"), ("blue", "green", "red")),
    "email": _MAILS,
    "country": ("England", "Scotland", "Wales"),
    "phone": ("020 7946 0018", "0161 496 0123", "0117 496 0456"),
    "language": ("English", "French", "Spanish"),
    "date": _DATES,
    "age": (36, 41, 29),
    "year": (1843, 1936, 1952),
    **dict.fromkeys(("count", "number", "quantity"), (3, 5, 2)),
    **dict.fromkeys(("price", "cost", "amount"), (19.99, 4.5, 12.0)),
}
_FORMATS: dict[str, tuple[Any, ...]] = {
    "date": _DATES,
    "date-time": ("1843-09-05T10:30:00Z", "1936-05-28T16:00:00Z", "1952-05-03T09:15:00Z"),
    "time": ("10:30:00", "16:00:00", "09:15:00"),
    "email": _MAILS,
    "uri": _LINKS,
    "uuid": ("3f2b8c1e-9d4a-4e2b-8c1e-9d4a4e2b8c1e", "7a1c2e3f-4b5d-4e6f-8a9b-0c1d2e3f4a5b"),
}
_FALLBACK: dict[str, tuple[Any, ...]] = {
    "string": ("Alpha", "Beta", "Gamma"),
    "integer": (7, 12, 4),
    "number": (2.5, 7.25, 1.5),
    "boolean": (True, False, True),
}
# How a field named with this word reads in a sentence about the subject ("Ada Lovelace ...").
_PHRASES = {
    "age": "is {} years old",
    "email": "has the email address {}",
    **dict.fromkeys(("city", "town"), "lives in {}"),
    "country": "comes from {}",
    **dict.fromkeys(("company", "employer"), "works at {}"),
    **dict.fromkeys(("role", "job", "occupation", "profession"), "works as {}"),
    "phone": "can be reached on {}",
}
_SUBJECT_WORDS = frozenset({"name", "person", "author", "first", "given"})
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


@dataclass(frozen=True, slots=True)
class _Synth:
    """Makes plausible values for a schema, and a text stating them, from field names and types."""

    defs: dict[str, Any]

    def resolve(self, node: Any) -> dict[str, Any]:
        for _ in range(32):  # a chain of $refs; bounded so a cycle cannot hang us
            if not (isinstance(node, dict) and "$ref" in node):
                break
            node = self.defs.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
        return node if isinstance(node, dict) else {}

    def refs(self, node: Any) -> tuple[str, ...]:
        """The definitions a node stands for: its own ``$ref`` and its alternatives'."""
        if not isinstance(node, dict):
            return ()
        own = (str(node["$ref"]),) if "$ref" in node else ()
        alternatives = node.get("anyOf") or node.get("oneOf") or []
        return own + tuple(str(a["$ref"]) for a in alternatives if isinstance(a, dict) and "$ref" in a)

    def value(
        self, node: Any, name: str, k: int, *, optional: str = "all", seen: tuple[str, ...] = ()
    ) -> Any:
        """A sample value. ``k`` picks among samples; ``optional`` says which optional fields to fill:
        "all", "none", or "some" (every other one), so that examples differ in what they state.
        A recursive model is unrolled once (``seen``); deeper, its lists are empty."""
        refs = self.refs(node)
        if any(seen.count(ref) >= 2 for ref in refs):
            return _RECURSION
        seen += refs
        node = self.resolve(node)
        alternatives = node.get("anyOf") or node.get("oneOf")
        if alternatives:  # Optional[X] is anyOf [X, null]: show X, the case worth teaching
            real = [a for a in alternatives if self.resolve(a).get("type") != "null"] or [{"type": "null"}]
            node = self.resolve(real[0])
        kind = node.get("type")
        if isinstance(kind, list):
            kind = next((t for t in kind if t != "null"), "null")
        if kind == "object" or "properties" in node:
            return self._fields(node, k, optional, seen)
        if kind == "array":
            item = node.get("items", {})
            values = [
                self.value(item, _singular(name), k + i, optional=optional, seen=seen) for i in range(2)
            ]
            return [] if _RECURSION in values else values
        return _scalar(node, str(kind or "string"), name, k)

    def _fields(self, node: dict[str, Any], k: int, optional: str, seen: tuple[str, ...]) -> dict[str, Any]:
        required = set(node.get("required", []))
        result: dict[str, Any] = {}
        optional_seen = 0
        for key, sub in _ordered(node):
            if key not in required:
                optional_seen += 1
                if optional == "none" or (optional == "some" and optional_seen % 2 == 0):
                    continue
            value = self.value(sub, key, k, optional=optional, seen=seen)
            if value is not _RECURSION:
                result[key] = value
        return result

    @staticmethod
    def sentence(value: Any) -> str:
        """A text stating ``value``: "Ada Lovelace is 36 years old and lives in London."."""
        if not isinstance(value, dict):
            return f"It is {_spoken(value)}."
        subject_key = next(
            (key for key, v in value.items() if isinstance(v, str) and _SUBJECT_WORDS & set(_words(key))),
            None,
        )
        about: list[str] = []  # clauses about the subject: "is 36 years old", "lives in London"
        facts: list[str] = []  # sentences of their own: "The colour is blue."
        for key, v in value.items():
            if key == subject_key or v is None or v in ([], {}):
                continue
            words = _words(key)
            label = " ".join(words)
            template = next((_PHRASES[w] for w in words if w in _PHRASES), None)
            if isinstance(v, bool):
                about.append(f"is {'' if v else 'not '}{label.removeprefix('is ')}")
            elif template is not None and subject_key is not None:
                about.append(template.format(_spoken(v)))
            else:
                facts.append(f"The {label} {'are' if isinstance(v, list) else 'is'} {_spoken(v)}.")
        subject = str(value[subject_key]) if subject_key is not None else "It"
        if about:
            facts.insert(0, f"{subject} {_spoken(about)}.")
        elif subject_key is not None:
            facts.insert(0, f"This is {subject}.")
        return " ".join(facts)


def _scalar(node: dict[str, Any], kind: str, name: str, k: int) -> Any:
    if "const" in node or node.get("enum"):
        return node["const"] if "const" in node else node["enum"][k % len(node["enum"])]
    if kind == "null":
        return None
    samples = _FORMATS.get(str(node.get("format")))
    if samples is None:
        fitting = (_SAMPLES[w] for w in _words(name) if w in _SAMPLES and _fits(_SAMPLES[w][0], kind))
        samples = next(fitting, None) or _FALLBACK.get(kind, _FALLBACK["string"])
    value = samples[k % len(samples)]
    if kind == "string" or isinstance(value, str):
        text = str(value).ljust(int(node.get("minLength", 0)), "x")
        return text[: int(node.get("maxLength", len(text)))]
    if isinstance(value, bool):
        return value
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    number = float(value)
    if low is not None and high is not None and not low < number < high:
        number = (low + high) / 2
    elif low is not None and number <= low:
        number = low + 1
    elif high is not None and number >= high:
        number = high - 1
    return int(number) if kind == "integer" else number


def _ordered(node: dict[str, Any]) -> list[tuple[str, Any]]:
    # llama.cpp's converter puts required properties first, then optional ones, each in schema
    # order; an example in any other order would teach the model a sequence the grammar forbids.
    properties: dict[str, Any] = node.get("properties", {})
    required = set(node.get("required", []))
    first = [(k, v) for k, v in properties.items() if k in required]
    return first + [(k, v) for k, v in properties.items() if k not in required]


def _fits(sample: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(sample, str)
    return kind in ("integer", "number") and isinstance(sample, int | float) and not isinstance(sample, bool)


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(name)]


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") and not name.endswith("ss") else name


def _spoken(value: Any) -> str:
    if isinstance(value, list):
        spoken = [text for text in map(_spoken, value) if text]
        return ", ".join(spoken[:-1]) + f" and {spoken[-1]}" if len(spoken) > 1 else "".join(spoken)
    if isinstance(value, dict):
        return ", ".join(text for text in map(_spoken, value.values()) if text)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
