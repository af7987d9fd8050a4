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

from corral._validation import bounded_validator
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


# --- issue 15, I1: a value that breaks its format is an invalid reply -----------------------------


def dated(fmt: str) -> dict[str, Any]:
    properties = {"name": {"type": "string"}, "value": {"type": "string", "format": fmt}}
    return {"type": "object", "properties": properties, "required": ["name", "value"]}


@pytest.mark.parametrize(
    ("fmt", "wrong", "right"),
    [
        ("date", "2024-13-45", "2024-02-29"),
        ("date", "2023-02-29", "2024-02-29"),
        ("date-time", "2024-01-01T25:00:00Z", "2024-01-01T10:00:00.5+02:00"),
        ("date-time", "yesterday at noon", "2024-01-01T10:00:00Z"),
        ("time", "24:61:00Z", "10:00:00Z"),
        ("email", "nobody", "ann@example.com"),
        ("uuid", "not-a-uuid-at-all", "6b6f7f5e-4c1e-4d1a-9e36-0e1f3a2b4c5d"),
        ("ipv4", "256.1.1.1", "10.0.0.1"),
        ("ipv6", "1::2::3", "fd00::1"),
        ("uri", "not a uri", "https://example.com/a?b=c#d"),
    ],
)
def test_a_value_that_breaks_its_format_is_an_invalid_reply(fmt: str, wrong: str, right: str) -> None:
    spec = load_spec(dated(fmt))
    with pytest.raises(OutputInvalid, match=f"is not a '{fmt}'"):
        spec.parse(f'{{"name": "Ann", "value": "{wrong}"}}')
    assert spec.parse(f'{{"name": "Ann", "value": "{right}"}}') == {"name": "Ann", "value": right}


def test_a_regex_format_is_never_compiled_from_model_output() -> None:
    # Checking "regex" would run re.compile on whatever the model wrote: "(" would fail it, and a
    # crafted pattern would cost what compiling it costs. It is not checked: any string passes.
    spec = load_spec(dated("regex"))
    for value in ("(", "[z-a]", "(?P<x" + "(" * 5000):
        assert spec.parse(f'{{"name": "Ann", "value": "{value}"}}')["value"] == value


def test_formats_run_inside_the_replys_time_budget() -> None:
    # Patterns that spent the whole budget leave none for the formats after them: the reply is
    # refused, not checked further at leisure.
    schema = {"type": "object", "properties": {
        "names": {"type": "array", "items": {"type": "string", "pattern": "^(a|aa)+$"}},
        "when": {"type": "string", "format": "date"}}}  # fmt: skip
    validator = bounded_validator(jsonschema.Draft202012Validator, schema)
    hostile = {"names": ["a" * 60 + "!"] * 8, "when": "2024-01-01"}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        errors = pool.submit(lambda: list(validator.iter_errors(hostile))).result(timeout=60)
    late = [error.message for error in errors if list(error.absolute_path) == ["when"]]
    assert len(late) == 1 and "'date'" in late[0] and "spent" in late[0]
    # The budget is the reply's: the next one starts afresh, and its date is checked.
    assert list(validator.iter_errors({"names": ["aa"], "when": "2024-01-01"})) == []
    refused = [error.message for error in validator.iter_errors({"when": "2024-13-45"})]
    assert refused == ["'2024-13-45' is not a 'date'"]


async def test_a_reply_with_an_impossible_date_is_asked_again() -> None:
    from corral import Extractor
    from corral.sim import ScriptCall, SimReply, Simulator

    def script(call: ScriptCall) -> SimReply | None:
        return SimReply(answer_text='{"name": "Ann", "value": "2024-13-45"}') if call.repeat == 0 else None

    async with Simulator(script=script) as sim:
        extractor: Extractor[Any] = Extractor(dated("date"), model="sim-1", base_url=sim.url, adaptive=False)
        async with extractor:
            outcome = await extractor.extract("My name is Ann, born 2024-02-29")
        requests = sim.stats.requests
    assert outcome.ok, outcome.error
    assert outcome.value == {"name": "Ann", "value": "2024-02-29"}
    assert requests == 2, "the first reply was refused and the item asked again"
