"""``--template``: each item's text built from several fields of its row, ``'Title: {title}\\n\\n{body}'``.

A template only substitutes fields: ``{name}`` is the row's value under exactly that key (a column
name with dots, brackets or spaces is just a name: corral never calls ``str.format``, so no attribute
or index is ever looked up); ``{{`` and ``}}`` are literal braces. Anything ``str.format`` would do
beyond that (``{}``, ``{0}``, ``{name!r}``, ``{name:>10}``) is refused when the template is made, so a
typo fails the run before anything is sent instead of rendering a surprise into every prompt.

A row that lacks a field (or holds null there) cannot be rendered: :meth:`Template.render` raises
:class:`MissingField`, which the readers turn into that row's error; the other rows are extracted.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from typing import Any

import orjson

from corral.errors import ConfigError

__all__ = ["MissingField", "Template"]


class MissingField(Exception):
    """A row has nothing to put in a template's field: ``why`` is "missing", "null" or "NaN"."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"template field {name!r} is {why}")
        self.name = name
        self.why = why


class Template:
    """A user message made from a row's fields: ``Template("Title: {title}\\n\\n{body}")``."""

    def __init__(self, source: str) -> None:
        self.source = source
        #: literal text, or a field's name (``(False, text)`` / ``(True, name)``), in order
        self._parts: list[tuple[bool, str]] = []
        try:
            parsed = list(string.Formatter().parse(source))
        except ValueError as exc:
            raise ConfigError(
                f"--template {source!r}: {exc}; write a literal brace twice ({{{{ or }}}})"
            ) from None
        for literal, name, spec, conversion in parsed:
            if literal:
                self._parts.append((False, literal))
            if name is None:
                continue
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            if not name or name.isdigit():
                raise ConfigError(
                    f"--template {source!r}: {shown} names no field; corral templates only substitute "
                    "fields by name, like {title} (a literal brace is written twice: {{ or }})"
                )
            if conversion or spec:
                raise ConfigError(
                    f"--template {source!r}: {shown} converts or formats the value; corral templates "
                    f"only substitute fields: write {{{name}}}"
                )
            self._parts.append((True, name))
        #: the fields the template uses, each once, in order
        names = (part for is_field, part in self._parts if is_field)
        self.fields: tuple[str, ...] = tuple(dict.fromkeys(names))

    def render(self, row: Mapping[str, Any]) -> str:
        """The text for ``row``; :class:`MissingField` when a field is absent, null or NaN."""
        out = []
        for is_field, part in self._parts:
            if not is_field:
                out.append(part)
                continue
            if part not in row:
                raise MissingField(part, "missing")
            out.append(_text(part, row[part]))
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


def _text(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise MissingField(name, "null")
    if isinstance(value, float) and math.isnan(value):
        raise MissingField(name, "NaN")  # pandas' way of saying null
    if isinstance(value, dict | list | tuple):
        try:  # default=str: a date or a Decimal inside is its text, as it would be on its own
            return orjson.dumps(value, default=str).decode()
        except orjson.JSONEncodeError:  # keys that are not strings, an integer over 64 bits
            return str(value)
    return str(value)  # bool, int, float, and anything else (dates, Decimal) as Python writes it
