"""Confidence per value from token log-probabilities: where each value stands in the reply's JSON, and
the probability of the tokens that spell it (checked against sums written out here)."""

from __future__ import annotations

import json
import math

import pytest

from corral.engine._confidence import leaf_spans, value_confidence

REPLY = '{"name": "Ann Lee", "age": 30, "tags": ["a", "b"], "home": {"city": "Oslo"}, "x": null}'


def test_every_leaf_is_found_by_path_with_its_span() -> None:
    spans = dict(leaf_spans(REPLY))
    assert list(spans) == ["name", "age", "tags[0]", "tags[1]", "home.city", "x"]
    assert {path: REPLY[a:b] for path, (a, b) in spans.items()} == {
        "name": "Ann Lee", "age": "30", "tags[0]": "a", "tags[1]": "b", "home.city": "Oslo", "x": "null",
    }  # fmt: skip


@pytest.mark.parametrize("text", ['{"a": 1', '{"a" 1}', "[1, 2", '"open', "1 2"])
def test_text_that_is_not_one_json_value_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"ends early|no ':'|no ','|does not end|after the JSON"):
        list(leaf_spans(text))


def test_escaped_quotes_stay_inside_their_string() -> None:
    text = json.dumps({"quote": 'he said "hi"', "n": 2})
    spans = dict(leaf_spans(text))
    a, b = spans["quote"]
    assert json.loads(f'"{text[a:b]}"') == 'he said "hi"'
    assert text[slice(*spans["n"])] == "2"


def test_a_value_gets_the_probability_of_the_tokens_that_spell_it() -> None:
    tokens = [
        ('{"', -0.0), ("name", -0.01), ('":', 0.0), (' "', 0.0), ("Ann", -0.2), (" Lee", -0.3),
        ('",', -0.01), (' "', 0.0), ("age", 0.0), ('":', 0.0), (" ", 0.0), ("3", -0.5), ("0", -0.1),
        ("}", 0.0),
    ]  # fmt: skip
    text = "".join(token for token, _ in tokens)
    assert json.loads(text) == {"name": "Ann Lee", "age": 30}
    confidence = value_confidence(text, tokens)
    assert confidence == {"name": round(math.exp(-0.5), 4), "age": round(math.exp(-0.6), 4)}


def test_a_token_that_spans_a_value_and_its_quote_counts_for_the_value() -> None:
    tokens = [('{"n":"', 0.0), ('x"', -1.0), ("}", 0.0)]
    assert value_confidence('{"n":"x"}', tokens) == {"n": round(math.exp(-1.0), 4)}


def test_a_fenced_reply_is_read_inside_its_fence() -> None:
    tokens = [("```json\n", 0.0), ('{"n": ', 0.0), ("7", -0.25), ("}", 0.0), ("\n```", 0.0)]
    assert value_confidence('{"n": 7}', tokens) == {"n": round(math.exp(-0.25), 4)}


def test_tokens_that_do_not_spell_the_reply_give_no_confidence() -> None:
    assert value_confidence('{"n": 7}', [('{"n": 8}', 0.0)]) is None
