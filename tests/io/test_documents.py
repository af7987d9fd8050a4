"""Documents as input (issue 18): a directory, a glob or a file, each file one item, read from real
files written here (PDFs too: written by hand, byte by byte, and encrypted with pypdf)."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import sys
import time
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from corral import ConfigError, InputError
from corral.io import Documents, Skipped, count_documents, read_documents
from corral.types import Item
from tests._support.pdf import form_bomb, make_pdf


def encrypted(pdf: bytes, *, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def items(source: str | Path, **options: int) -> list[Item]:
    return list(read_documents(source, **options))


def only(source: str | Path, **options: int) -> Item:
    (item,) = items(source, **options)
    return item


# --- listing ------------------------------------------------------------------------------------------


def tree(root: Path) -> Path:
    """A folder of documents, nested, with things that are not read."""
    files = {
        "b.md": "# Bee\n\nText of b.",
        "a.txt": "Text of a.\n",
        "sub/c.txt": "Text of c.",
        "sub/deeper/d.md": "Text of d.",
        "sub/deeper/E.TXT": "Text of E.",
        "sub/notes.docx": "not read",
        "sub/README": "no extension",
        "a-b.txt": "Text of a-b.",
        ".hidden.txt": "hidden",
        ".git/config.txt": "hidden folder",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_a_directory_is_read_recursively_one_item_per_file_in_sorted_order(tmp_path: Path) -> None:
    root = tree(tmp_path / "docs")
    documents = read_documents(root)
    assert isinstance(documents, Documents)
    # sorted by path components: a folder's files together ("a-b.txt" is not between "a.txt" and
    # "sub/..." because "-" sorts before "/"; a component order puts "sub" after every file at the top)
    expected = ["a-b.txt", "a.txt", "b.md", "sub/c.txt", "sub/deeper/E.TXT", "sub/deeper/d.md"]
    assert list(documents.ids) == expected
    assert len(documents) == 6
    got = list(documents)
    assert [item.id for item in got] == expected
    assert {item.id: item.text for item in got}["b.md"] == "# Bee\n\nText of b."
    assert {item.id: item.text for item in got}["a.txt"] == "Text of a.\n"
    assert all(item.problem is None and item.fields is None for item in got)
    assert documents.skipped == (
        Skipped(".git", "hidden"),
        Skipped(".hidden.txt", "hidden"),
        Skipped("sub/README", "no extension: not a document type corral reads"),
        Skipped("sub/notes.docx", ".docx: not a document type corral reads"),
    )
    assert documents.skipped_counts() == {
        "hidden": 2,
        "no extension: not a document type corral reads": 1,
        ".docx: not a document type corral reads": 1,
    }
    assert count_documents(root) == 6
    # the same tree is the same job: the same ids in the same order every time
    assert list(read_documents(str(root)).ids) == expected


def test_a_glob_takes_ids_relative_to_its_fixed_prefix(tmp_path: Path) -> None:
    root = tree(tmp_path / "docs")
    deep = read_documents(f"{root}/**/*.md")
    assert list(deep.ids) == ["b.md", "sub/deeper/d.md"]
    assert deep.root == str(root)
    assert deep.skipped == ()  # a file the pattern does not match is not selected, not skipped
    assert [item.text for item in deep] == ["# Bee\n\nText of b.", "Text of d."]
    assert list(read_documents(f"{root}/*.txt").ids) == ["a-b.txt", "a.txt"]
    assert list(read_documents(f"{root}/sub/*/*").ids) == ["deeper/E.TXT", "deeper/d.md"]
    assert list(read_documents(f"{root}/s?b/**").ids) == [
        "sub/c.txt",
        "sub/deeper/E.TXT",
        "sub/deeper/d.md",
    ]
    matched_docx = read_documents(f"{root}/**/*[xt]")
    assert matched_docx.skipped == (Skipped("sub/notes.docx", ".docx: not a document type corral reads"),)
    assert count_documents(f"{root}/**/*.md") == 2
    with pytest.raises(InputError, match=r"\*\.pdf: matches no file of a type corral reads"):
        read_documents(f"{root}/**/*.pdf")
    with pytest.raises(InputError, match="matches no file"):
        read_documents(f"{tmp_path}/nowhere/*.txt")


def test_a_relative_glob_without_a_fixed_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    documents = read_documents("*.md")
    assert documents.root == "."
    assert [(item.id, item.text) for item in documents] == [("b.md", "# Bee\n\nText of b.")]


def test_one_file_is_one_item_named_by_its_file_name(tmp_path: Path) -> None:
    path = tmp_path / "notes" / "x.md"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbfline one\r\nline two\rline three\n")
    item = only(path)
    assert item.id == "x.md"
    assert item.text == "line one\nline two\nline three\n"  # the BOM dropped, line ends \n
    assert count_documents(path) == 1


def test_a_source_that_cannot_be_read_fails_before_anything(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.txt: does not exist"):
        read_documents(tmp_path / "nope.txt")
    assert count_documents(tmp_path / "nope.txt") is None
    other = tmp_path / "data.docx"
    other.write_text("x")
    with pytest.raises(
        InputError, match=r"data\.docx: is not a document type corral reads \(\.docx; it reads"
    ):
        read_documents(other)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: holds no file of a type corral reads"):
        read_documents(tmp_path / "empty")
    only_other = tmp_path / "other"
    only_other.mkdir()
    (only_other / "a.docx").write_text("x")
    (only_other / "b.docx").write_text("x")
    with pytest.raises(InputError, match=r"\(2 skipped: 2 \.docx: not a document type corral reads\)"):
        read_documents(only_other)
    with pytest.raises(ConfigError, match="max_chars must be at least 1"):
        read_documents(tmp_path, max_chars=0)


# --- text ---------------------------------------------------------------------------------------------


def test_invalid_utf8_is_that_items_problem_and_every_other_item_is_kept(tmp_path: Path) -> None:
    (tmp_path / "1.txt").write_text("first", encoding="utf-8")
    (tmp_path / "2.txt").write_bytes(b"fine line\nbad \xff\xfe here\n")
    (tmp_path / "3.md").write_text("third: café", encoding="utf-8")
    got = items(tmp_path)
    assert [(item.id, item.text) for item in got] == [
        ("1.txt", "first"),
        ("2.txt", ""),
        ("3.md", "third: café"),
    ]
    assert got[0].problem is None and got[2].problem is None
    assert got[1].problem == f"{tmp_path / '2.txt'}:2: is not UTF-8 text: save the file as UTF-8"


def test_a_document_without_text_is_a_problem_not_an_empty_request(tmp_path: Path) -> None:
    (tmp_path / "blank.txt").write_text("  \n\n")
    assert only(tmp_path / "blank.txt").problem == f"{tmp_path / 'blank.txt'}: has no text"
    (tmp_path / "blank.pdf").write_bytes(make_pdf([], contents=[b"0 0 m 100 100 l S"]))
    assert only(tmp_path / "blank.pdf").problem == (
        f"{tmp_path / 'blank.pdf'}: has no text on any of its 1 page, only images or drawings "
        "(scanned? it needs OCR)"
    )
    (tmp_path / "none.pdf").write_bytes(make_pdf([]))
    assert only(tmp_path / "none.pdf").problem == f"{tmp_path / 'none.pdf'}: has no pages"


# --- HTML ---------------------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html><head><title>Fish &amp; Chips</title>
<style>p { color: red }</style>
<script>document.write("not text")</script>
<link rel="stylesheet" href="http://example.invalid/x.css">
</head>
<body>
<!-- a comment -->
<h1>Menu&nbsp;of   the
 day</h1>
<p>Cod, <b>haddock</b> &amp; <i>plaice</i>: &pound;9&#46;50 &lt;fresh&gt; &#x1F41F;</p>
<noscript>Turn on JavaScript</noscript>
<template><p>never shown</p></template>
<ul><li>one</li><li>two <em>too</em></li></ul>
<table><tr><th>Dish</th><th>Price</th></tr><tr><td>Cod</td><td> 9.50 </td></tr></table>
<pre>  keep
    this</pre>
<div>a<div>b</div>c<br>d<br><br><br>e</div>
<img src="http://example.invalid/pic.png" alt="a picture">
<iframe src="http://example.invalid/"></iframe>
<script type="module">import "http://example.invalid/x.js"</script>
</body></html>"""


def test_html_is_the_text_a_reader_sees(tmp_path: Path) -> None:
    (tmp_path / "menu.html").write_text(PAGE, encoding="utf-8")
    item = only(tmp_path / "menu.html")
    assert item.problem is None and item.id == "menu.html"
    assert item.text == (
        "Fish & Chips\n\n"
        "Menu of the day\n\n"
        "Cod, haddock & plaice: £9.50 <fresh> 🐟\n\n"
        "one\ntwo too\n\n"
        "Dish\tPrice\nCod\t9.50\n\n"
        "  keep\n    this\n\n"
        "a\nb\nc\nd\n\ne"
    )
    for gone in ("color", "document.write", "JavaScript", "never shown", "comment", "example.invalid"):
        assert gone not in item.text


def test_html_in_a_declared_encoding_and_htm(tmp_path: Path) -> None:
    latin = '<html><head><meta charset="iso-8859-1"></head><body><p>Caf\xe9 \u20ac na\xefve</p></body></html>'
    (tmp_path / "old.htm").write_bytes(latin.encode("cp1252"))
    (tmp_path / "bom.HTML").write_bytes("<p>Zoë</p>".encode("utf-16"))  # with its byte-order mark
    (tmp_path / "broken.html").write_bytes(b"<p>ok</p>\n<p>\xff</p>")
    got = {item.id: item for item in items(tmp_path)}
    assert got["old.htm"].text == "Café € naïve"  # latin-1 is read as browsers do: windows-1252
    assert got["bom.HTML"].text == "Zoë"
    assert (
        got["broken.html"].problem
        == f"{tmp_path / 'broken.html'}:2: is not UTF-8 text: save the file as UTF-8"
    )


def test_deeply_nested_html_is_walked_without_recursion(tmp_path: Path) -> None:
    depth = 5000  # deeper than Python's stack
    (tmp_path / "deep.html").write_text("<div>" * depth + "bottom" + "</div>" * depth)
    assert only(tmp_path / "deep.html").text == "bottom"


def test_html_nested_so_deep_that_parsing_is_quadratic_is_refused(tmp_path: Path) -> None:
    # 40,000 nested <div> are 200 KB that take the parser 6 s, a megabyte of them minutes
    (tmp_path / "a.html").write_text("<div>x" * 40_000)
    (tmp_path / "b.html").write_text("<ul><li>x" * 20_000)  # <li> is closed by the parser, <ul> not
    # 2,000 scripts and comments full of tags are text, not markup: not counted
    (tmp_path / "c.html").write_text("<script>'<div>'</script><!-- <div> --><p>x</p>" * 20_000)
    started = time.monotonic()
    a, b, c = items(tmp_path)
    assert time.monotonic() - started < 10
    assert a.problem == (
        f"{tmp_path / 'a.html'}: nests its elements too deep to be parsed in bounded time "
        "(40,000 levels, 40,000 block tags): not read"
    )
    assert b.problem is not None and "too deep" in b.problem
    assert c.problem is None and c.text == "\n\n".join(["x"] * 20_000)


# --- PDF ----------------------------------------------------------------------------------------------


def test_pdf_text_keeps_its_pages(tmp_path: Path) -> None:
    pages = [["Hello page one", "Second line (with parentheses)"], ["Page two: caf\xe9"], ["Three"]]
    (tmp_path / "report.pdf").write_bytes(make_pdf(pages, compress=True))
    item = only(tmp_path / "report.pdf")
    assert item.problem is None and item.id == "report.pdf" and item.fields is not None
    spans = item.fields["pages"]
    assert len(spans) == 3
    page_texts = [item.text[start:end] for start, end in spans]
    assert page_texts == ["Hello page one\nSecond line (with parentheses)", "Page two: café", "Three"]
    # the pages are joined with a form feed, and the offsets are where each page is in the text
    assert item.text == "\f".join(page_texts) and item.text.split("\f") == page_texts
    assert spans[0][0] == 0 and spans[-1][1] == len(item.text)
    assert all(end + 1 == start for (_, end), (start, _) in itertools.pairwise(spans))
    # a span found in the text can be put on its page
    at = item.text.index("café")
    assert [number for number, (start, end) in enumerate(spans, start=1) if start <= at < end] == [2]


def test_an_encrypted_pdf_is_a_problem_unless_it_opens_without_a_password(tmp_path: Path) -> None:
    pdf = make_pdf([["Secret page"], ["More"]])
    (tmp_path / "locked.pdf").write_bytes(encrypted(pdf, user_password="open sesame"))
    (tmp_path / "open.pdf").write_bytes(encrypted(pdf, user_password=""))
    locked, opened = items(tmp_path)
    assert locked.id == "locked.pdf" and locked.text == ""
    assert locked.problem == f"{tmp_path / 'locked.pdf'}: is encrypted: it needs a password to be opened"
    assert opened.problem is None and opened.text == "Secret page\fMore"


def test_a_corrupt_pdf_is_a_problem_naming_the_file_and_why(tmp_path: Path) -> None:
    good = make_pdf([["Fine"]])
    (tmp_path / "a-empty.pdf").write_bytes(b"")
    (tmp_path / "b-not.pdf").write_text("this is not a PDF")
    (tmp_path / "c-cut.pdf").write_bytes(good[: len(good) // 2])
    (tmp_path / "d-good.pdf").write_bytes(good)
    got = items(tmp_path)
    assert [item.problem is None for item in got] == [False, False, False, True]
    for item in got[:3]:
        assert item.problem is not None
        assert item.problem.startswith(f"{tmp_path / item.id}: is not a readable PDF")
    assert "EmptyFileError" in str(got[0].problem)
    assert got[3].text == "Fine"


def test_a_pdf_bomb_ends_as_a_problem_in_bounded_work(tmp_path: Path) -> None:
    # 170 KB (150 of them the thousand pages' dictionaries) that keep pypdf busy for hours: each page
    # shows a form 200 times, the form is 50,000 operators, and pypdf interprets it anew each time
    (tmp_path / "bomb.pdf").write_bytes(form_bomb(pages=1000, draws=200, operators=50_000))
    assert (tmp_path / "bomb.pdf").stat().st_size < 200_000
    started = time.monotonic()
    item = only(tmp_path / "bomb.pdf", max_pdf_work=200_000)
    assert time.monotonic() - started < 60  # about 3 s
    assert item.problem == (
        f"{tmp_path / 'bomb.pdf'}: asks for more work than max_pdf_work (200,000 content-stream tokens), "
        "reached on page 1 of 1000: not read"
    )
    # the same form drawn twice on each of three pages is a PDF like any other
    (tmp_path / "bomb.pdf").write_bytes(form_bomb(pages=3, draws=2, operators=5))
    assert only(tmp_path / "bomb.pdf").text == "\f".join(["aaaaa\naaaaa"] * 3)


def test_a_decompression_bomb_is_a_problem(tmp_path: Path) -> None:
    # 200 MB of spaces in a stream of 200 KB: pypdf stops decompressing at its own limit
    (tmp_path / "zip.pdf").write_bytes(make_pdf([], contents=[b" " * 200_000_000], compress=True))
    item = only(tmp_path / "zip.pdf")
    assert item.problem is not None and "is not a readable PDF" in item.problem and "Limit" in item.problem


# --- limits -------------------------------------------------------------------------------------------


def test_text_over_max_chars_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("é" * 100)  # 100 characters in 200 bytes
    (tmp_path / "b.txt").write_text("x" * 1000)  # more bytes than 4 × max_chars: refused unread
    (tmp_path / "c.html").write_text("<p>" + "word " * 40 + "</p>")
    (tmp_path / "d.pdf").write_bytes(make_pdf([["x" * 60], ["y" * 60], ["z" * 60]]))
    a, b, c, d = items(tmp_path, max_chars=100)
    assert a.problem is None and a.text == "é" * 100
    assert b.problem == f"{tmp_path / 'b.txt'}: has more than 100 characters (max_chars)"
    assert c.problem == f"{tmp_path / 'c.html'}: has 199 characters, more than 100 (max_chars)"
    assert d.problem == (
        f"{tmp_path / 'd.pdf'}: has more than 100 characters of text (max_chars), passed on page 2 of 3"
    )
    over = items(tmp_path, max_chars=99)[0]
    assert over.problem == f"{tmp_path / 'a.txt'}: has 100 characters, more than 99 (max_chars)"


def test_a_file_over_max_bytes_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "big.pdf").write_bytes(make_pdf([["x"]]) + b"\n" * 10_000)
    (tmp_path / "small.txt").write_text("ok")
    big, small = items(tmp_path, max_bytes=5000)
    assert big.problem == f"{tmp_path / 'big.pdf'}: is larger than 5,000 bytes (max_bytes)"
    assert small.text == "ok"


# --- links and other files ----------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links and pipes")
def test_symbolic_links_never_lead_out_of_the_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not to be read")
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "real.txt").write_text("real")
    (root / "out.txt").symlink_to(outside / "secret.txt")
    (root / "out-folder").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "sub" / "alias.txt").symlink_to(root / "real.txt")
    (root / "gone.txt").symlink_to(root / "missing.txt")
    os.mkfifo(root / "pipe.txt")
    documents = read_documents(root)
    assert [(item.id, item.text) for item in documents] == [("real.txt", "real"), ("sub/alias.txt", "real")]
    assert documents.skipped == (
        Skipped("gone.txt", "a broken symbolic link"),
        Skipped("loop", "a symbolic link to a folder (not followed)"),
        Skipped("out-folder", "a symbolic link out of the directory (not followed)"),
        Skipped("out.txt", "a symbolic link out of the directory (not followed)"),
        Skipped("pipe.txt", "not a regular file"),
    )
    assert list(read_documents(f"{root}/**/*.txt").ids) == ["real.txt", "sub/alias.txt"]
    # a file named as the source itself is the caller's choice: its link is followed
    assert only(root / "out.txt").text == "not to be read"


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links")
def test_a_link_swapped_in_after_the_listing_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("not to be read")
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.txt").write_text("a")
    (root / "b.txt").write_text("b")
    documents = read_documents(root)
    (root / "b.txt").unlink()
    (root / "b.txt").symlink_to(tmp_path / "secret.txt")
    a, b = documents
    assert a.text == "a"
    assert (
        b.text == ""
        and b.problem == f"{root / 'b.txt'}: now leads out of the directory (a symbolic link): not read"
    )


@pytest.mark.skipif(sys.platform != "linux", reason="file names that are not UTF-8")
def test_a_file_name_that_is_not_utf8_gets_an_id_that_can_be_written(tmp_path: Path) -> None:
    (Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.txt"))).write_text("read all the same")
    item = only(tmp_path)
    assert item.id == "caf\\xe9.txt" and item.text == "read all the same"
    item.id.encode("utf-8")


# --- use ----------------------------------------------------------------------------------------------


def test_missing_extra_is_a_config_error_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.pdf").write_bytes(make_pdf([["x"]]))
    (tmp_path / "b.html").write_text("<p>x</p>")
    monkeypatch.setitem(sys.modules, "pypdf", None)
    with pytest.raises(ConfigError, match=r"reading PDFs needs pypdf: pip install 'corral\[documents\]'"):
        read_documents(tmp_path)
    monkeypatch.setitem(sys.modules, "selectolax", None)
    with pytest.raises(ConfigError, match="reading HTML needs selectolax"):
        read_documents(tmp_path / "b.html")


async def test_documents_are_read_in_a_thread_not_on_the_loop(tmp_path: Path) -> None:
    tree(tmp_path)
    (tmp_path / "r.pdf").write_bytes(make_pdf([["one"], ["two"]]))
    documents = await asyncio.to_thread(read_documents, tmp_path)
    got = await asyncio.to_thread(list, documents)
    assert [item.id for item in got][-1] == "sub/deeper/d.md"
    assert {item.id: item.text for item in got}["r.pdf"] == "one\ftwo"
