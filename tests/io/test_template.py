"""``--template``: a text made of a row's fields, plain substitutions only."""

from __future__ import annotations

import datetime
import decimal

import pytest

from corral.errors import ConfigError
from corral.io.template import MissingField, Template


def test_fields_are_substituted_in_order_each_named_once() -> None:
    template = Template("Title: {title}\n\n{body} ({title})")
    assert template.fields == ("title", "body")
    assert template.render({"title": "Hi", "body": "Text", "other": 1}) == "Title: Hi\n\nText (Hi)"


def test_doubled_braces_are_literal_braces() -> None:
    template = Template("{{json}} {a} }}{{")
    assert template.fields == ("a",)
    assert template.render({"a": "x"}) == "{json} x }{"


def test_a_name_with_dots_brackets_or_spaces_is_one_key_never_an_attribute_or_index() -> None:
    template = Template("{a.b}|{c[0]}|{first name}")
    assert template.fields == ("a.b", "c[0]", "first name")
    row = {"a.b": "dotted", "a": {"b": "nested"}, "c[0]": "bracketed", "c": ["listed"], "first name": "Ann"}
    assert template.render(row) == "dotted|bracketed|Ann"
    with pytest.raises(MissingField):
        template.render({"a": {"b": "nested"}, "c": ["x"], "first name": "Ann"})


def test_values_that_are_not_strings_are_written_plainly() -> None:
    template = Template("{b} {i} {f} {l} {d} {day} {money}")
    row = {
        "b": True,
        "i": 7,
        "f": 1.5,
        "l": [1, "a"],
        "d": {"k": None},
        "day": datetime.date(2024, 5, 1),
        "money": decimal.Decimal("1.10"),
    }
    assert template.render(row) == 'True 7 1.5 [1,"a"] {"k":null} 2024-05-01 1.10'


@pytest.mark.parametrize(
    ("row", "why"), [({"b": "x"}, "missing"), ({"a": None}, "null"), ({"a": float("nan")}, "NaN")]
)
def test_an_absent_null_or_nan_field_cannot_be_rendered(row: dict[str, object], why: str) -> None:
    with pytest.raises(MissingField) as raised:
        Template("x {a}").render(row)
    assert (raised.value.name, raised.value.why) == ("a", why)
    assert str(raised.value) == f"template field 'a' is {why}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{}", "{} names no field; corral templates only substitute fields"),
        ("a {0}", "{0} names no field"),
        ("{title!r}", "{title!r} converts or formats the value; corral templates only substitute fields"),
        ("{n:>5}", "{n:>5} converts or formats the value"),
        ("{open", "expected '}' before end of string; write a literal brace twice"),
        ("close}", "Single '}' encountered"),
    ],
)
def test_what_str_format_does_beyond_substitution_is_refused_when_made(source: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Template(source)
    assert message in str(raised.value)
    assert repr(source) in str(raised.value)  # the template is named


def test_a_template_of_no_fields_is_its_text() -> None:
    assert Template("just text").fields == ()
    assert Template("just text").render({}) == "just text"
