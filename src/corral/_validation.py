"""JSON Schema validation that a hostile schema cannot turn against corral.

A schema comes from outside (a file, or a client of ``corral serve``) and is applied to text that also
comes from outside (the model's reply). Two things jsonschema would otherwise do with them:

- **fetch**: a ``$ref`` it cannot resolve inside the schema is retrieved (http, https, file). The
  validators made here carry a registry whose retrieval always refuses, so nothing is ever fetched,
  whatever key the reference hides under (:func:`corral.schema.check_json_schema` refuses such
  schemas earlier; this is the guard that does not depend on that check).
- **backtrack without end**: ``pattern`` and ``patternProperties`` run Python's ``re`` on the event
  loop; ``^(a+)+$`` against 30 characters of model output takes seconds, and doubles per character.
  Here they run on the ``regex`` engine with a time limit, and one validation has a total budget:
  a reply that exceeds it is an invalid reply (the item is re-asked, or fails), never a frozen loop.

And one thing it would otherwise not do: check ``format``. Drafts 2019-09 and 2020-12 make it an
annotation, so "2024-13-45" passed as a ``date``. Here the formats in :data:`CHECKED_FORMATS` are
asserted, each by a checker that parses the string and nothing else (no network, nothing compiled),
within the same time budget. Not ``regex``: checking it compiles model output as a pattern. Not
``duration`` (its checker needs ``isoduration`` and ``arrow``, which corral does not depend on), nor
the hostname, IRI, JSON-pointer and URI-template formats: those values pass unchecked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import regex
from jsonschema import FormatChecker, ValidationError
from jsonschema.exceptions import FormatError
from jsonschema.protocols import Validator
from jsonschema.validators import extend
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

__all__ = ["CHECKED_FORMATS", "NO_RETRIEVAL", "VALIDATION_BUDGET_S", "BoundedValidator", "bounded_validator"]

#: the most one reply's validation may spend in pattern matching, in seconds
VALIDATION_BUDGET_S = 0.25
#: the most one pattern match may take
_MATCH_S = 0.05
#: the formats model output is held to (where the schema's draft defines them): "date-time" and
#: "time" are checked by rfc3339-validator, "uri" by rfc3986-validator (dependencies of corral);
#: every checker is linear in the value's length
CHECKED_FORMATS = ("date", "date-time", "time", "email", "uuid", "ipv4", "ipv6", "uri")


def _refuse(uri: str) -> Resource[Any]:
    raise NoSuchResource(uri)


#: resolves references inside the schema only: retrieval of anything else is refused
NO_RETRIEVAL: Registry[Any] = Registry(retrieve=_refuse)  # type: ignore[call-arg]


class _Budget(threading.local):
    """The time left for the validation in progress: one per validator and thread, because replies
    are validated in worker threads (:attr:`corral.schema.ResponseSpec.offload`), several at once."""

    deadline = 0.0


def _search(budget: _Budget, pattern: str, text: str) -> bool | None:
    """Does ``pattern`` match somewhere in ``text``? None: it could not be told in time."""
    left = budget.deadline - time.monotonic()
    if left <= 0:
        return None
    try:
        # concurrent: the GIL is released while matching, so the event loop runs meanwhile
        return regex.search(pattern, text, timeout=min(_MATCH_S, left), concurrent=True) is not None
    except TimeoutError:
        return None


def _too_long(pattern: str) -> ValidationError:
    return ValidationError(
        f"checking the pattern {pattern!r} took too long (over {VALIDATION_BUDGET_S:g} s): the value "
        "cannot be accepted"
    )


def _format_checker(cls: type[Validator]) -> FormatChecker:
    """``cls``'s draft's own checkers for :data:`CHECKED_FORMATS` (a draft-4 schema has no "date"),
    and no other: a format not listed is not checked."""
    drafts = cls.FORMAT_CHECKER.checkers
    checker = FormatChecker(formats=())
    checker.checkers = {name: drafts[name] for name in CHECKED_FORMATS if name in drafts}
    return checker


def bounded_validator(cls: type[Validator], schema: Any) -> BoundedValidator:
    """A validator of ``cls``'s draft for ``schema`` that fetches nothing, bounds its patterns and
    checks the :data:`CHECKED_FORMATS`."""
    budget = _Budget()
    formats = _format_checker(cls)

    # jsonschema calls keywords with its own validator (typed Any: the protocol lacks descend()).
    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if validator.is_type(instance, "string"):
            found = _search(budget, patrn, instance)
            if found is None:
                yield _too_long(patrn)
            elif not found:
                yield ValidationError(f"{instance!r} does not match {patrn!r}")

    def pattern_properties(
        validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
    ) -> Iterator[ValidationError]:
        if not validator.is_type(instance, "object"):
            return
        for patrn, subschema in patterns.items():
            for key, value in instance.items():
                found = _search(budget, patrn, key)
                if found is None:
                    yield _too_long(patrn)
                    return
                if found:
                    yield from validator.descend(value, subschema, path=key, schema_path=patrn)

    def format_(validator: Any, fmt: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
        if fmt not in formats.checkers:
            return
        if time.monotonic() >= budget.deadline:
            yield ValidationError(
                f"checking the format {fmt!r} came after the reply's {VALIDATION_BUDGET_S:g} s were spent: "
                "the value cannot be accepted"
            )
            return
        try:
            formats.check(instance, fmt)
        except FormatError as error:
            yield ValidationError(error.message, cause=error.cause)

    keywords = {"pattern": pattern, "patternProperties": pattern_properties, "format": format_}
    bounded = extend(cls, keywords)  # type: ignore[no-untyped-call]
    return BoundedValidator(bounded(schema, registry=NO_RETRIEVAL), budget)


class BoundedValidator:
    """A validator whose every :meth:`iter_errors` starts a fresh time budget for its patterns."""

    def __init__(self, validator: Validator, budget: _Budget) -> None:
        self._validator = validator
        self._budget = budget

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        self._budget.deadline = time.monotonic() + VALIDATION_BUDGET_S
        return self._validator.iter_errors(instance)
