"""A schema is hostile until checked (issue 15, H1 and H2): nothing it names is ever fetched, whatever
key its reference hides under, and its patterns cannot freeze the event loop on a model's reply."""

from __future__ import annotations

import concurrent.futures
import http.server
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import jsonschema
import pytest
from referencing.exceptions import Unresolvable

from corral.bounded_validation import bounded_validator
from corral.errors import OutputInvalid, SchemaError
from corral.schema import load_spec


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        body = b'{"type": "string"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def bait() -> Iterator[str]:
    """A server on loopback that would hand a schema to whoever fetched it, and counts who does."""
    _Recorder.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/leak.json"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", ["enum", "const", "default", "examples", "example", "items", "x"])
def test_a_reference_out_of_the_schema_is_refused_whatever_key_it_hides_under(name: str, bait: str) -> None:
    schema = {"type": "object", "properties": {name: {"$ref": bait}}}
    with pytest.raises(SchemaError, match="points outside the schema"):
        load_spec(schema)
    assert _Recorder.hits == [], "nothing was fetched"


@pytest.mark.parametrize("target", ["bait", "file:///etc/hostname"])
def test_the_validator_itself_fetches_nothing_even_past_the_check(target: str, bait: str) -> None:
    ref = bait if target == "bait" else target
    schema = {"type": "object", "properties": {"enum": {"$ref": ref}}}
    validator = bounded_validator(jsonschema.Draft202012Validator, schema)
    with pytest.raises(Unresolvable):
        list(validator.iter_errors({"enum": "anything"}))
    assert _Recorder.hits == []


def parse_in_a_thread(spec: Any, reply: str) -> Any:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(spec.parse, reply).result(timeout=60)  # a guard against a hang, not a measurement


def test_the_reviews_pattern_no_longer_backtracks_for_ever() -> None:
    # ^(a+)+$ against 40 a's and a "!": Python's re backtracks for hours (seconds at 28 characters,
    # doubling per character); the regex engine answers at once.
    schema = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}}
    spec = load_spec(schema)
    with pytest.raises(OutputInvalid, match="does not match"):
        parse_in_a_thread(spec, '{"name": "' + "a" * 40 + '!"}')
    assert spec.parse('{"name": "aaa"}') == {"name": "aaa"}


def test_a_pattern_even_the_safer_engine_backtracks_on_is_cut_off_as_an_invalid_reply() -> None:
    # ^(a|aa)+$ is exponential on the regex engine too: its time limit ends it.
    schema = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^(a|aa)+$"}}}
    spec = load_spec(schema)
    with pytest.raises(OutputInvalid) as raised:
        parse_in_a_thread(spec, '{"name": "' + "a" * 60 + '!"}')
    assert "took too long" in str(raised.value)
    assert spec.parse('{"name": "aaa"}') == {"name": "aaa"}


def test_pattern_properties_are_bounded_too() -> None:
    schema = {"type": "object", "patternProperties": {"^(a|aa)+$": {"type": "integer"}}}
    spec = load_spec(schema)
    with pytest.raises(OutputInvalid, match="took too long"):
        parse_in_a_thread(spec, '{"' + "a" * 60 + '!": 1}')
    assert spec.parse('{"aa": 1}') == {"aa": 1}
    with pytest.raises(OutputInvalid, match="is not of type"):
        spec.parse('{"aa": "one"}')


def test_a_schema_nested_without_end_is_a_schema_error_not_a_recursion_error() -> None:
    # Issue 15, L3: ~99 levels reached the interpreter's recursion limit (a 500 from serve).
    schema: dict[str, Any] = {"type": "object"}
    node = schema
    for _ in range(200):
        node["properties"] = {"a": {"type": "object"}}
        node = node["properties"]["a"]
    with pytest.raises(SchemaError, match="nested deeper than 64 levels"):
        load_spec(schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "type": "object",
         "properties": {"x": {"$ref": "#/$defs/a"}}},
    ],
    ids=["root", "a-b-a"],
)  # fmt: skip
def test_references_that_go_round_without_a_value_are_refused(schema: dict[str, Any]) -> None:
    # Issue 15, L4: they passed the check, then recursed for ever during validation.
    with pytest.raises(SchemaError, match="go round"):
        load_spec(schema)


def test_a_recursive_schema_that_descends_into_the_value_is_fine() -> None:
    tree = {"type": "object", "properties": {"name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#"}}}}  # fmt: skip
    spec = load_spec(tree)
    value = {"name": "a", "children": [{"name": "b", "children": []}]}
    assert spec.parse('{"name": "a", "children": [{"name": "b", "children": []}]}') == value
