"""Chunking: chunks slice back, cover the text in order, never exceed the budget, and cut where a reader
would (paragraphs, sentences, lines, words; characters only inside a word longer than a chunk)."""

from __future__ import annotations

import itertools
import random
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.documents import DEFAULT_OVERLAP, Chunk, chunk, estimate_tokens, sentence_spans

Counter = Callable[[str], int]


def _words(text: str) -> int:
    """A tokenizer-like count: words and punctuation marks, one token each (at least one)."""
    return max(1, len(re.findall(r"\w+|[^\w\s]", text)))


def _superadditive(text: str) -> int:
    """A count under which a text costs more than its parts: packing by sums must not overflow."""
    return len(text) // 5 + len(text) ** 2 // 4000


def _o200k() -> Counter:
    pytest.importorskip("bpe_openai")
    from corral.engine._tokens import _openai_counter

    counter = _openai_counter("gpt-4o")
    assert counter is not None
    return counter


def _sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def _check(text: str, chunks: list[Chunk], budget: int, count: Counter = estimate_tokens) -> None:
    """The invariants every chunking keeps."""
    if not text:
        assert chunks == []
        return
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start == 0
    assert chunks[-1].end == len(text)
    for c in chunks:
        assert 0 <= c.start < c.end <= len(text)
        assert c.tokens == count(text[c.start : c.end])
        assert c.tokens <= budget
    for before, after in itertools.pairwise(chunks):
        assert before.start < after.start <= before.end < after.end  # in order, no gap, advancing


# --- the chunks ----------------------------------------------------------------------------------


def test_an_empty_text_is_no_chunks() -> None:
    assert chunk("", budget=10) == []


def test_a_text_that_fits_is_one_chunk_covering_all_of_it() -> None:
    text = "  Dr. Smith met Mr. Jones.\n\nThey signed.  \n"
    assert chunk(text, budget=estimate_tokens(text)) == [Chunk(0, 0, len(text), estimate_tokens(text))]
    assert chunk("   ", budget=1) == [Chunk(0, 0, 3, 1)]


def test_chunks_slice_back_cover_the_text_in_order_and_fit() -> None:
    paragraphs = [" ".join(f"Clause {p}.{i} binds the parties." for i in range(p % 7 + 1)) for p in range(40)]
    text = "\n\n".join(paragraphs)
    for budget in (8, 20, 60, 200):
        chunks = chunk(text, budget=budget)
        _check(text, chunks, budget)
        assert len(chunks) > 1
        assert "".join(text[c.start : c.end] for c in chunk(text, budget=budget, overlap=0)) == text


def test_paragraphs_that_fit_are_never_cut() -> None:
    paragraphs = [f"Paragraph {p}. " + "It has a few sentences. " * (p % 4 + 1) for p in range(30)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    starts = {m.end() for m in re.finditer(r"\n\n", text)} | {0}
    chunks = chunk(text, budget=60, overlap=0)
    _check(text, chunks, 60)
    assert all(c.start in starts for c in chunks)


def test_no_chunk_exceeds_the_budget_over_random_texts() -> None:
    rng = random.Random(18)
    vocabulary = [
        *"the a contract between parties shall deliver report no later than".split(),  # noqa: SIM905
        *"Dr. Mr. e.g. i.e. U.S. etc. Inc. Fig. 3.14 42 1,000.50".split(),  # noqa: SIM905
        *"... … ! ? ; , — (see) “quoted.”".split(),  # noqa: SIM905
        "今天天气很好。",
        "你来吗？",
        "Zoë",
        "naïve",
        "e\u0301te\u0301",
        "x" * 300,
        "\n",
        "\n\n",
        "\n \n\t\n",
        "   ",
    ]
    counters: list[Counter] = [estimate_tokens, _words, _superadditive]
    for trial in range(300):
        pieces = rng.choices(vocabulary, k=rng.randint(0, 400))
        text = "".join(p + rng.choice(("", " ", " ", "  ", "\n")) for p in pieces)
        count = counters[trial % len(counters)]
        budget = rng.choice((1, 2, 5, 17, 64, 300)) if count is not _superadditive else rng.randint(30, 300)
        overlap = rng.choice((0, 3, DEFAULT_OVERLAP, 1000))
        _check(text, chunk(text, budget=budget, overlap=overlap, count=count), budget, count)


def test_no_chunk_exceeds_the_budget_in_real_tokens() -> None:
    count = _o200k()
    rng = random.Random(7)
    sentences = [
        "The Supplier shall deliver the final report to Dr. Zoë Müller no later than 31 March 2026.",
        "Payment of USD 1,250.75 is due within 30 days (e.g. by wire transfer).",
        "本合同自双方签字之日起生效。",
        "Les parties conviennent de ce qui suit :",
        "def f(x):\n    return x ** 2",
    ]
    for _ in range(30):
        text = "".join(rng.choice(sentences) + rng.choice((" ", "\n", "\n\n")) for _ in range(200))
        budget = rng.choice((16, 50, 128, 512))
        _check(text, chunk(text, budget=budget, count=count), budget, count)


def test_cuts_fall_between_words() -> None:
    rng = random.Random(3)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()  # noqa: SIM905
    for _ in range(100):
        text = " ".join(rng.choice(words) + rng.choice(("", "", ",", ".", "\n")) for _ in range(300))
        budget = rng.randint(4, 80)
        for c in chunk(text, budget=budget, overlap=rng.choice((0, 10))):
            assert c.start == 0 or text[c.start - 1].isspace()
            assert c.end == len(text) or text[c.end - 1].isspace()


# --- overlap -------------------------------------------------------------------------------------


def test_overlap_is_whole_sentences_of_the_previous_chunk_and_chunks_advance() -> None:
    text = " ".join(f"Invoice {i} was paid by Acme Corporation Ltd. on day {i}." for i in range(120))
    starts = {s for s, _ in sentence_spans(text)}
    ends = {e for _, e in sentence_spans(text)}
    budget, overlap = 80, 25
    chunks = chunk(text, budget=budget, overlap=overlap)
    _check(text, chunks, budget)
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end  # there is an overlap
        assert after.start in starts and before.end in ends  # of whole sentences
        assert estimate_tokens(text[after.start : before.end]) <= overlap
    # every sentence is seen whole by some chunk, and the boundary sentences by two
    for s, e in sentence_spans(text):
        assert any(c.start <= s and e <= c.end for c in chunks)


def test_without_overlap_chunks_are_contiguous() -> None:
    text = "A sentence of seven words, here it is. " * 200
    chunks = chunk(text, budget=40, overlap=0)
    _check(text, chunks, 40)
    assert all(a.end == b.start for a, b in itertools.pairwise(chunks))


def test_a_huge_overlap_still_fits_and_advances() -> None:
    text = " ".join(f"Sentence {i} is short." for i in range(300))
    for overlap in (39, 40, 10_000):
        chunks = chunk(text, budget=40, overlap=overlap)
        _check(text, chunks, 40)
        # at most half the budget is repeated
        for before, after in itertools.pairwise(chunks):
            assert estimate_tokens(text[after.start : before.end]) <= 20


def test_overlap_inside_a_sentence_too_long_is_whole_words() -> None:
    text = "Parties: " + ", ".join(f"Company number {i} Limited" for i in range(200)) + "."
    chunks = chunk(text, budget=50, overlap=10)
    _check(text, chunks, 50)
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end
        assert text[after.start - 1] == " "


# --- where sentences end -------------------------------------------------------------------------


def test_abbreviations_and_decimals_do_not_end_sentences() -> None:
    text = (
        "Dr. Smith paid $3.14 to Mr. J. R. Jones of Acme Inc. (a U.S. firm) on Jan. 5, e.g. for apples. "
        "See Fig. 3 and No. 12, i.e. the annex, vs. the draft etc. for details. "
        "Version 2.0.1 of example.com costs 1,000.50 EUR in internationalization. "
        "He paused... and went on. "
        "Prof. Dr. Müller, Ph.D., arrived at 9 a.m. sharp."
    )
    assert _sentences(text) == [
        "Dr. Smith paid $3.14 to Mr. J. R. Jones of Acme Inc. (a U.S. firm) on Jan. 5, e.g. for apples. ",
        "See Fig. 3 and No. 12, i.e. the annex, vs. the draft etc. for details. ",
        "Version 2.0.1 of example.com costs 1,000.50 EUR in internationalization. ",
        "He paused... and went on. ",
        "Prof. Dr. Müller, Ph.D., arrived at 9 a.m. sharp.",
    ]


def test_sentences_end_at_terminators_with_their_quotes_and_brackets() -> None:
    text = 'He said "Stop." Then he left! Really?! (It rained.) Wait… They ran. “Go.” «Non.» Fin.'
    assert _sentences(text) == [
        'He said "Stop." ',
        "Then he left! ",
        "Really?! ",
        "(It rained.) ",
        "Wait… ",
        "They ran. ",
        "“Go.” ",
        "«Non.» ",
        "Fin.",
    ]


def test_a_period_before_a_lower_case_word_or_a_final_abbreviation_before_a_capital() -> None:
    text = '"Yes." she said. Apples, pears etc. The end. Smith Jr. Went home. Item 1. Next'
    assert _sentences(text) == [
        '"Yes." she said. ',
        "Apples, pears etc. ",
        "The end. ",
        "Smith Jr. ",
        "Went home. ",
        "Item 1. ",
        "Next",
    ]


def test_a_list_number_at_the_start_of_a_line_is_not_a_sentence() -> None:
    text = "Terms\n1. Scope of work.\n2. Payment."
    assert _sentences(text) == ["Terms\n1. Scope of work.\n", "2. Payment."]


def test_cjk_and_other_scripts_end_sentences_at_their_own_punctuation() -> None:
    text = "今天天气很好。我们去公园吧！你来吗？「好的。」他说。円周率は３．１４です。"
    assert _sentences(text) == [
        "今天天气很好。",
        "我们去公园吧！",
        "你来吗？",
        "「好的。」",
        "他说。",
        "円周率は３．１４です。",
    ]
    assert _sentences("यह पहला वाक्य है। यह दूसरा है।") == ["यह पहला वाक्य है। ", "यह दूसरा है।"]
    assert _sentences("هل أنت هنا؟ نعم.") == ["هل أنت هنا؟ ", "نعم."]


def test_cjk_text_is_chunked_at_its_sentences() -> None:
    text = "".join(f"第{i}条合同自双方签字之日起生效。" for i in range(100))
    ends = {e for _, e in sentence_spans(text)}
    chunks = chunk(text, budget=40, overlap=0)
    _check(text, chunks, 40)
    assert len(chunks) > 10
    assert all(c.end in ends for c in chunks)
    # one token per CJK character by default: a chunk is never four times too long
    assert all(c.end - c.start <= 40 for c in chunks)


def test_paragraphs_always_end_sentences_and_sentences_cover_the_text() -> None:
    text = "\n\n  Heading without a period\n\nA sentence. Another one\n \n\t\nLast line  \n\n  "
    spans = sentence_spans(text)
    assert "".join(text[s:e] for s, e in spans) == text
    assert _sentences(text) == [
        "\n\n  Heading without a period\n\n",
        "A sentence. ",
        "Another one\n \n\t\n",
        "Last line  \n\n  ",
    ]


# --- longer than a sentence ----------------------------------------------------------------------


def test_a_sentence_too_long_is_cut_at_line_breaks_first() -> None:
    text = "Items:\n" + "\n".join(f"- item {i} of the list, with words" for i in range(100))
    chunks = chunk(text, budget=50, overlap=0)
    _check(text, chunks, 50)
    assert all(c.end == len(text) or text[c.end - 1] == "\n" for c in chunks)


def test_a_single_giant_word_is_cut_at_characters() -> None:
    text = "x" * 10_000
    chunks = chunk(text, budget=100, overlap=20)
    _check(text, chunks, 100)
    full = max(n for n in range(1000) if estimate_tokens("x" * n) <= 100)
    # every chunk as full as it can be, and no overlap inside a word
    assert [c.end - c.start for c in chunks] == [full] * (10_000 // full) + [10_000 % full]


def test_only_the_giant_word_is_cut_inside() -> None:
    text = "Before the word. hello " + "y" * 5_000 + " world after it. And then more text."
    chunks = chunk(text, budget=100, overlap=10)
    _check(text, chunks, 100)
    word = range(text.index("y"), text.index("y") + 5_000)
    for c in chunks:
        for cut in (c.start, c.end):
            assert cut in word or cut in (0, len(text)) or text[cut - 1].isspace()


def test_a_giant_word_keeps_combining_marks_and_joined_emoji_with_their_letters() -> None:
    text = "e\u0301" * 3_000 + "👩\u200d💻" * 500
    chunks = chunk(text, budget=64, overlap=0)
    _check(text, chunks, 64)
    for c in chunks[1:]:
        assert not unicodedata.category(text[c.start]).startswith("M")
        assert text[c.start] != "\u200d" and text[c.start - 1] != "\u200d"


def test_long_runs_of_punctuation_and_whitespace_chunk_in_linear_time() -> None:
    # each of these is quadratic for a naive regular expression; at this size that would take minutes
    for text in ("." * 200_000 + "x", "a. " * 70_000, "?" * 100_000 + " " * 100_000 + "z", "\n \n" * 70_000):
        _check(text, chunk(text, budget=500), 500)


# --- counting and arguments ----------------------------------------------------------------------


def test_the_default_estimate_counts_letters_digits_and_other_scripts() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abc") == 1
    assert estimate_tokens("abcd") == 2  # 4.4 quarters
    assert estimate_tokens("abcdefghijklmnopqrst") == 6  # 20 letters: 5 tokens, plus 10%
    assert estimate_tokens("2026") == 3  # four digits: 2.9
    assert estimate_tokens("合同") == 2
    assert estimate_tokens("Zoë, ok") == 4  # five letters and spaces, a comma: 2.1, so 3; ë: 1


def test_the_default_estimate_does_not_undercount_a_real_tokenizer() -> None:
    count = _o200k()
    texts = [
        "The Supplier shall deliver the final report to Dr. Zoë Müller no later than 31 March 2026. " * 50,
        "Payment of USD 1,250.75 (invoice INV-2026-0042) is due within 30 days of 2026-03-31. " * 50,
        "本合同自双方签字之日起生效，有效期为三年。" * 50,
        "def total(xs: list[float]) -> float:\n    return sum(x * 1.2 for x in xs)\n" * 50,
        '{"id": 42, "name": "Acme Corp.", "amount": 1250.75, "tags": ["a", "b"]}\n' * 50,
        "\n".join(f"{i},{i * 3.14159:.4f},2026-01-{i % 28 + 1:02d},ACME-{i:05d}" for i in range(500)),
        Path(__file__).read_text(encoding="utf-8"),
    ]
    for text in texts:
        assert estimate_tokens(text) >= count(text)


def test_the_budget_and_overlap_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        chunk("text", budget=0)
    with pytest.raises(ValueError, match="negative"):
        chunk("text", budget=5, overlap=-1)
    with pytest.raises(ValueError, match="single character"):
        chunk("a word", budget=1, count=lambda s: 2 * len(s))
