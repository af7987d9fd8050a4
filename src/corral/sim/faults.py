"""Wrong answers on purpose: valid JSON that breaks the schema, and text that is not JSON at all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["Breaker", "breakers", "malformed"]

JSON = dict[str, Any]
#: spoils a (fresh, mutable) valid answer in place and returns it
Breaker = Callable[[Any], Any]


def malformed(answer: str, pick: float) -> str:
    """Not JSON at all: the answer cut short, as when a model stops mid-object."""
    if len(answer) < 2:
        return "{"
    return answer[: 1 + int(pick * (len(answer) - 1))]


_WRONG_VALUES: tuple[Any, ...] = ("not a valid value", 123456789, [], {"unexpected": True}, None)


def breakers(schema: JSON, sample: Any) -> list[Breaker]:
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
    breakers: list[Breaker] = []
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
    spoil_root: Breaker = lambda value: []  # noqa: E731 - a one-line fallback
    return breakers or [spoil_root]
