"""Response models: a pydantic class or a JSON Schema, turned once into what every request needs.

A :class:`ResponseSpec` holds the wire schema (plain and, where faithful, OpenAI-strict), the tool
name, and a validator. It is built once per model and cached, because rebuilding the schema on every
call is measurably the largest per-request cost in SDK-wrapper stacks (see DESIGN.md).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import re
import sys
import types
import typing
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson
import pydantic
from pydantic import BaseModel, TypeAdapter

from corral.errors import OutputInvalid, SchemaError

__all__ = ["ResponseSpec", "check_json_schema", "load_model", "load_spec"]

T = TypeVar("T")
JSON = dict[str, Any]

_MAX_PROBLEMS = 8  # a re-ask prompt with fifty errors helps nobody; the first few carry the fix
_TOOL_NAME = re.compile(r"[^a-zA-Z0-9_-]")


class ResponseSpec(Generic[T]):
    """Everything corral needs to ask for, and check, one kind of structured answer."""

    __slots__ = (
        "_dump",
        "_parse",
        "description",
        "many",
        "name",
        "offload",
        "schema",
        "schema_json",
        "strict_schema",
    )

    def __init__(
        self,
        *,
        name: str,
        description: str,
        schema: JSON,
        parse: Callable[[str | bytes], T],
        dump: Callable[[T], Any],
        many: bool,
        offload: bool = False,
    ) -> None:
        self.name = _TOOL_NAME.sub("_", name)[:64] or "extract"
        self.description = description
        #: the JSON Schema of the object the provider must return (always an object at the root)
        self.schema = schema
        #: the same schema made OpenAI-strict, or None where strict mode would change its meaning
        self.strict_schema = strictify(schema)
        #: compact JSON text of ``schema``, for prompts
        self.schema_json = json.dumps(schema, separators=(",", ":"))
        #: the provider returns ``{"items": [...]}`` and callers get the list
        self.many = many
        self._parse = parse
        self._dump = dump
        #: validation may take a while (a JSON Schema's patterns and formats, up to the validation
        #: budget, in pure Python): callers on an event loop run :meth:`parse` in a worker thread
        self.offload = offload

    def parse(self, text: str | bytes) -> T:
        """Parse and validate a reply. Raises :class:`OutputInvalid` listing the problems."""
        return self._parse(text)

    def dump(self, value: T) -> Any:
        """The validated value as plain JSON-able data."""
        return self._dump(value)

    def __repr__(self) -> str:
        return f"ResponseSpec({self.name!r}, many={self.many})"


# --- loading ---------------------------------------------------------------------------------


def load_spec(spec: object, *, many: bool = False) -> ResponseSpec[Any]:
    """Build (or fetch from cache) the spec for a response model.

    ``spec`` may be a pydantic model class, ``list[Model]`` (many entities per text), a JSON Schema
    mapping, or a string: ``path/to/file.py:Class``, ``package.module:Class`` or ``schema.json``.
    """
    if isinstance(spec, types.GenericAlias) and typing.get_origin(spec) is list:
        (inner,) = typing.get_args(spec)
        return load_spec(inner, many=True)
    if isinstance(spec, type) and issubclass(spec, BaseModel):
        return _pydantic_spec(spec, many)
    if isinstance(spec, Mapping):
        return _jsonschema_spec(dict(spec), "extract", many)
    if isinstance(spec, str | Path):
        return _spec_from_string(str(spec), many)
    raise SchemaError(
        f"cannot use {spec!r} as a response model: pass a pydantic BaseModel subclass, "
        "'file.py:Class', 'package.module:Class', or a JSON Schema file"
    )


def _spec_from_string(text: str, many: bool) -> ResponseSpec[Any]:
    if text.endswith(".json"):
        return _jsonschema_file_spec(text, many)
    return _pydantic_spec(load_model(text), many)


def load_model(text: str) -> type[BaseModel]:
    """The pydantic class ``path/to/file.py:Class`` or ``package.module:Class`` names."""
    target, sep, attr = text.rpartition(":")
    if not sep or not target or not attr:
        raise SchemaError(
            f"schema {text!r}: expected 'path/to/file.py:Class', 'package.module:Class' or a .json file"
        )
    module = _import_file(target) if target.endswith(".py") or "/" in target else _import_module(target)
    obj = getattr(module, attr, None)
    if obj is None:
        models = sorted(
            n for n, v in vars(module).items() if _is_model(v) and v.__module__ == module.__name__
        )
        hint = f"; it defines {', '.join(models)}" if models else "; it defines no pydantic models"
        raise SchemaError(f"schema {text!r}: {target} has no attribute {attr!r}{hint}")
    if not _is_model(obj):
        what = f"a {type(obj).__name__}" if not isinstance(obj, type) else f"the class {obj.__name__}"
        raise SchemaError(
            f"schema {text!r} is {what}, not a pydantic model: "
            f"declare it as 'class {attr}(pydantic.BaseModel)' or pass a JSON Schema file"
        )
    return obj


def _is_model(obj: object) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel


def _import_file(path_text: str) -> types.ModuleType:
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise SchemaError(f"schema file {path_text} does not exist")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"corral_user_{stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise SchemaError(f"schema file {path_text} cannot be imported as Python")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # pydantic resolves forward references through sys.modules
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise SchemaError(f"schema file {path_text} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(name: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise SchemaError(f"schema module {name!r} cannot be imported: {exc}") from exc


# --- pydantic models -------------------------------------------------------------------------


@functools.cache
def _pydantic_spec(model: type[BaseModel], many: bool) -> ResponseSpec[Any]:
    description = inspect.cleandoc(model.__doc__) if model.__doc__ else f"Extract a {model.__name__}."
    if many:
        wrapper = pydantic.create_model(f"{model.__name__}List", items=(list[model], ...))  # type: ignore[valid-type]
        adapter: TypeAdapter[Any] = TypeAdapter(wrapper)

        def parse(text: str | bytes) -> Any:
            return _validate(adapter, text).items

        def dump(value: Any) -> Any:
            return [item.model_dump(mode="json") for item in value]

        return ResponseSpec(
            name=f"{model.__name__}_list",
            description=f"Extract every {model.__name__} in the text. {description}",
            schema=_schema_of(wrapper),
            parse=parse,
            dump=dump,
            many=True,
        )
    single: TypeAdapter[Any] = TypeAdapter(model)
    return ResponseSpec(
        name=model.__name__,
        description=description,
        schema=_schema_of(model),
        parse=functools.partial(_validate, single),
        dump=lambda value: value.model_dump(mode="json"),
        many=False,
    )


def _schema_of(model: type[BaseModel]) -> JSON:
    try:
        return model.model_json_schema()
    except pydantic.PydanticUserError as exc:
        raise SchemaError(f"{model.__name__} cannot be expressed as JSON Schema: {exc}") from exc


def _validate(adapter: TypeAdapter[Any], text: str | bytes) -> Any:
    try:
        return adapter.validate_json(text)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False)[:_MAX_PROBLEMS]:
            where = ".".join(str(part) for part in err["loc"]) or "(root)"
            problem = f"{where}: {err['msg']}"
            if err["type"] not in ("missing", "json_invalid"):
                problem += f" (got {_short(err.get('input'))})"
            problems.append(problem)
        raise OutputInvalid(problems) from None


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- JSON Schema files -----------------------------------------------------------------------


def _jsonschema_file_spec(path_text: str, many: bool) -> ResponseSpec[Any]:
    path = Path(path_text).expanduser()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SchemaError(f"schema file {path_text} does not exist") from None
    except OSError as exc:
        raise SchemaError(f"schema file {path_text} cannot be read: {exc.strerror}") from exc
    try:
        schema = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{path_text}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    if not isinstance(schema, dict):
        raise SchemaError(f"{path_text}: a JSON Schema must be a JSON object, not {type(schema).__name__}")
    return _jsonschema_spec(schema, str(schema.get("title") or path.stem), many, origin=path_text)


def check_json_schema(schema: JSON, origin: str = "JSON Schema") -> None:
    """Refuse a schema that is not valid JSON Schema, naming where it is wrong; and one that refers
    outside itself (nothing is ever fetched) or to a place in itself that does not exist."""
    import jsonschema
    from jsonschema.exceptions import best_match

    deep = _deeper_than(schema, _MAX_DEPTH)
    if deep is not None:
        raise SchemaError(
            f"{origin}: nested deeper than {_MAX_DEPTH} levels (at {_where(deep)[:80]}...); corral takes "
            "schemas of sane depth only"
        )
    loop = _reference_loop(schema)
    if loop:
        raise SchemaError(
            f"{origin}: the references {' -> '.join(loop)} go round without ever reaching a value to check"
        )
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        error = best_match(cls(cls.META_SCHEMA).iter_errors(schema))
    except RecursionError:
        raise SchemaError(f"{origin}: the schema refers to itself without end") from None
    if error is not None:
        # "not valid under any of the given schemas" says little: the closest alternative says why.
        detail = best_match(error.context) if error.context else None
        raise SchemaError(
            f"{origin}: not a valid JSON Schema at {_where(error.absolute_path)}: {(detail or error).message}"
        )
    for where, ref in _refs(schema, ()):
        if not ref.startswith("#"):
            raise SchemaError(
                f"{origin}: the reference at {where} ({ref!r}) points outside the schema; only references "
                "within it (like '#/$defs/Name') are allowed: corral fetches nothing"
            )
        if (ref == "#" or ref.startswith("#/")) and not _resolves(schema, ref):
            raise SchemaError(f"{origin}: the reference at {where} ({ref!r}) points to nothing in the schema")


def _where(path: Any) -> str:
    return ".".join(str(part) for part in path) or "(root)"


#: how deep a schema may nest (objects and arrays): far more than any real schema, far less than the
#: interpreter's recursion limit that a hostile one would otherwise reach
_MAX_DEPTH = 64


def _deeper_than(schema: Any, limit: int) -> tuple[Any, ...] | None:
    """Where ``schema`` nests deeper than ``limit`` (walked without recursion); None: it does not."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(schema, ())]
    while stack:
        node, path = stack.pop()
        if len(path) > limit:
            return path
        if isinstance(node, dict):
            stack.extend((value, (*path, key)) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, (*path, index)) for index, value in enumerate(node))
    return None


def _reference_loop(schema: JSON) -> list[str]:
    """A chain of references that leads back to itself with nothing in between (``{"$ref": "#"}``,
    or a -> b -> a): validation would recurse on the same value for ever. Empty: none."""
    for _, start in _refs(schema, ()):
        seen: list[str] = []
        ref = start
        while ref.startswith("#") and (ref == "#" or ref.startswith("#/")) and _resolves(schema, ref):
            if ref in seen:
                return [*seen[seen.index(ref) :], ref]
            seen.append(ref)
            target = _resolve(schema, ref)
            following = target.get("$ref") if isinstance(target, dict) else None
            if not isinstance(following, str):
                break
            ref = following
    return []


def _resolve(schema: JSON, ref: str) -> Any:
    node: Any = schema
    for raw in urllib.parse.unquote(ref[1:]).split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _refs(node: Any, path: tuple[Any, ...]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            # Every key is walked, whatever its name: a property called "enum" holds a schema, and
            # skipping keys by name once let a reference through. A "$ref" inside real data (an
            # enum's values) is refused too: harmless, and nothing can hide behind a name.
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                found.append((_where((*path, key)), value))
            else:
                found.extend(_refs(value, (*path, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_refs(value, (*path, index)))
    return found


def _resolves(schema: JSON, ref: str) -> bool:
    node: Any = schema
    for raw in urllib.parse.unquote(ref[1:]).split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _jsonschema_spec(schema: JSON, name: str, many: bool, origin: str = "JSON Schema") -> ResponseSpec[Any]:

    import jsonschema  # deferred: only JSON Schema users pay for importing it
    from referencing.exceptions import Unresolvable

    from corral._validation import bounded_validator

    check_json_schema(schema, origin)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    root_type = schema.get("type")
    if root_type == "array":
        many = True
        item_schema = copy.deepcopy(schema.get("items", {}))
    elif root_type in ("object", None):
        item_schema = copy.deepcopy(schema)
    else:
        raise SchemaError(f"{origin}: the root must be an object (or an array of objects), not {root_type!r}")
    wire = _wrap_many(item_schema) if many else item_schema
    # Nothing is fetched, and patterns run with a time limit: see corral._validation.
    validator = bounded_validator(cls, wire)

    def parse(text: str | bytes) -> Any:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise OutputInvalid([f"Invalid JSON: {exc}"]) from None
        try:
            problems = [
                f"{'.'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
                for _, err in zip(range(_MAX_PROBLEMS), validator.iter_errors(data), strict=False)
            ]
        except RecursionError:  # a loop through references the check did not see: the reply fails
            raise OutputInvalid(["the schema refers to itself without end"]) from None
        except Unresolvable as exc:  # a reference the schema check let through: never fetched
            raise OutputInvalid([f"the schema refers to {exc.ref!r}, which corral does not fetch"]) from None
        if problems:
            raise OutputInvalid(problems)
        return data["items"] if many else data

    description = str(schema.get("description") or f"Extract a {name}.")
    return ResponseSpec(
        name=f"{name}_list" if many else name,
        description=description,
        schema=wire,
        parse=parse,
        dump=lambda value: value,
        many=many,
        offload=True,
    )


def _wrap_many(item_schema: JSON) -> JSON:
    """``{"items": [item, ...]}``: tool arguments and json_schema roots must be objects."""
    defs: JSON = {key: item_schema.pop(key) for key in ("$defs", "definitions") if key in item_schema}
    item_schema.pop("$schema", None)
    return {
        "type": "object",
        "properties": {"items": {"type": "array", "items": item_schema}},
        "required": ["items"],
        **defs,
    }


# --- OpenAI strict mode ----------------------------------------------------------------------


def strictify(schema: JSON) -> JSON | None:
    """The schema in OpenAI's strict form, or None where that would change what it accepts.

    Strict mode needs every property listed as required and ``additionalProperties: false``. An
    optional field can only become required faithfully when it is nullable with a null default
    (``x: int | None = None``); an optional field with another default, or an open mapping, cannot.
    """
    result = copy.deepcopy(schema)
    return result if _strictify_node(result) else None


def _strictify_node(node: Any) -> bool:
    if isinstance(node, list):
        return all(_strictify_node(child) for child in node)
    if not isinstance(node, dict):
        return True
    if _is_null_default(node):
        del node["default"]  # strict mode has no defaults; a required nullable field means the same
    if node.get("type") == "object" or "properties" in node:
        extra = node.get("additionalProperties", False)
        properties = node.get("properties")
        if extra not in (False, None) or not properties:
            return False
        required = set(node.get("required", []))
        for key, prop in properties.items():
            if key not in required and not _is_nullable_optional(prop):
                return False
        node["required"] = list(properties)
        node["additionalProperties"] = False
    if "default" in node:
        return False
    return all(_strictify_node(child) for key, child in node.items() if key not in {"enum", "const"})


def _is_null_default(node: JSON) -> bool:
    return "default" in node and node["default"] is None and _is_nullable_optional(node)


def _is_nullable_optional(prop: Any) -> bool:
    if not isinstance(prop, dict) or prop.get("default", None) is not None:
        return False
    types_ = prop.get("type")
    if types_ == "null" or (isinstance(types_, list) and "null" in types_):
        return True
    return any(isinstance(alt, dict) and alt.get("type") == "null" for alt in prop.get("anyOf", []))
