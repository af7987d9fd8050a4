"""Grounding: every value found in its document slices back to it; values found nowhere are flagged."""

from __future__ import annotations

import random

import pytest

from corral.documents import Aligner, Span, ground_record

CONTRACT = (
    "MASTER SERVICES AGREEMENT\n\nThis Agreement is made between  Acme\u00a0Corporation Ltd. (the "
    "“Supplier”) and Globex, Inc. (the “Customer”).\n\nThe Supplier shall deliver the "
    "ﬁnal report to Dr. Zoë Müller no later than 31 March 2026.\n"
)


def test_an_exact_value_slices_back_to_itself() -> None:
    aligner = Aligner(CONTRACT)
    for value in ("Globex, Inc.", "31 March 2026", "Zoë Müller", "MASTER SERVICES AGREEMENT"):
        span = aligner.find(value)
        assert span is not None
        assert span.how == "exact"
        assert CONTRACT[span.start : span.end] == value


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("acme corporation ltd.", "Acme\u00a0Corporation Ltd."),  # case, a no-break space
        ("made between Acme", "made between  Acme"),  # two spaces in the text
        ("final report", "ﬁnal report"),  # a ligature in the text
        ("ZOË MÜLLER", "Zoë Müller"),
    ],
)
def test_a_normalised_value_spans_what_the_reader_sees(value: str, shown: str) -> None:
    span = Aligner(CONTRACT).find(value)
    assert span is not None
    assert span.how == "normalised"
    assert CONTRACT[span.start : span.end] == shown


def test_a_value_with_a_typo_is_found_fuzzily_with_its_score() -> None:
    span = Aligner(CONTRACT).find("Acme Corporaton Ltd")
    assert span is not None
    assert span.how == "fuzzy"
    assert 0.85 <= span.score < 1.0
    assert "Acme" in CONTRACT[span.start : span.end]


def test_a_hallucinated_value_is_ungrounded() -> None:
    aligner = Aligner(CONTRACT)
    assert aligner.find("Initech LLC") is None
    assert aligner.find("   ") is None


def test_a_lookup_may_be_held_to_the_chunk_the_value_came_from() -> None:
    text = "Alice met Bob. " * 3 + "Carol met Bob."
    aligner = Aligner(text)
    last = aligner.find("Bob", within=(45, len(text)))
    assert last == Span(text.rindex("Bob"), text.rindex("Bob") + 3, "exact")
    assert aligner.find("Carol", within=(0, 40)) is None


def test_every_string_leaf_of_a_record_is_grounded_by_its_path() -> None:
    output = {
        "supplier": {"name": "Acme Corporation Ltd.", "country": "Ruritania"},
        "parties": ["Globex, Inc.", "acme corporation ltd."],
        "deadline": "31 March 2026",
        "pages": 3,
    }
    spans = ground_record(output, Aligner(CONTRACT))
    assert set(spans) == {"supplier.name", "supplier.country", "parties[0]", "parties[1]", "deadline"}
    assert spans["supplier.country"] is None
    for path in ("supplier.name", "parties[0]", "parties[1]", "deadline"):
        span = spans[path]
        assert span is not None, path


def test_random_values_cut_from_a_long_document_slice_back_exactly() -> None:
    rng = random.Random(7)
    words = ["alpha", "Beta", "gamma", "Δelta", "epsilon", "ζeta", "eta", "theta"]
    text = " ".join(rng.choice(words) + ("\n" if rng.random() < 0.1 else "") for _ in range(50_000))
    aligner = Aligner(text)
    for _ in range(200):
        start = rng.randrange(0, len(text) - 40)
        value = text[start : start + rng.randrange(5, 40)].strip()
        if not value:
            continue
        span = aligner.find(value, within=(start, len(text)))
        assert span is not None
        assert text[span.start : span.end] == value


@pytest.mark.parametrize(
    ("value", "meant"),
    [
        ("Pawel Achterberg", "Paweł Achterberg"),  # a letter the model could not copy
        ("Valentina Vasquex", "Valentina Vasquez"),  # one changed
        ("Valentina Vasqez", "Valentina Vasquez"),  # one dropped
        ("Valentinaa Vasquez", "Valentina Vasquez"),  # one doubled
        ("bob smithsen", "Bob Smithson"),
    ],
)
def test_a_miscopied_value_is_pointed_at_the_whole_words_it_miscopies(value: str, meant: str) -> None:
    text = "The clerk said that Paweł Achterberg, 41, and Valentina Vasquez met at noon. Bob Smithson came."
    span = Aligner(text).find(value)
    assert span is not None and span.how == "fuzzy"
    assert text[span.start : span.end] == meant
    assert 0.85 <= span.score < 1.0
