"""Documents as input: a directory, a glob pattern or one file, each file one :class:`~corral.types.Item`.

``read_documents("contracts/")`` yields one item per document under ``contracts/`` (every folder
below it included), ``read_documents("papers/**/*.pdf")`` one per PDF the pattern matches, and
``read_documents("note.md")`` one item. An item's ``id`` is the file's path relative to the directory
(for a glob, to its fixed prefix, the folders before its first wildcard; for one file, its name),
written with ``/``; items come in the sorted order of those paths, so a run over the same tree is the
same job every time. What a file is read as is decided by its extension (any case):

- ``.txt``, ``.md``: the text as it is, UTF-8 (a byte-order mark dropped), line ends made ``\\n``.
- ``.html``, ``.htm``: the text a reader sees, from a real HTML parser (lexbor, via selectolax):
  entities decoded; ``script``, ``style``, ``template``, ``noscript`` and ``iframe`` dropped with
  what is in them; the title and every block (paragraph, heading, list item, table row...) on lines
  of their own, a blank line around paragraph-like blocks; table cells apart by a tab; runs of
  whitespace (no-break spaces included) one space, except in ``pre`` and ``textarea``. The encoding
  is the byte-order mark's, else a ``<meta charset>`` in the first 1024 bytes, else UTF-8. Nothing is
  ever fetched: no stylesheet, image, frame or script is loaded, none is run.
- ``.pdf``: the text of each page, from pypdf, the pages joined with a form feed (``\\f``, which no
  page's text holds: one inside a page is made a line break). ``Item.fields["pages"]`` holds each
  page's ``[start, end)`` character offsets in the text, so ``text[start:end]`` is that page's text
  and a span of the text can be put on its page. A PDF encrypted with a password to open it is not
  read; one that opens without a password (many are encrypted only to restrict printing) is.

The line ends of every type are made ``\\n``. Hidden entries (names that start with ``.``) are never
read. A file of another type is *skipped*, as is anything that is not a regular file (a device, a
socket, a pipe), a symbolic link to a folder (never followed: no loops, nothing read twice), and a
symbolic link that leads out of the directory (never followed either; one that stays inside is read
under its own name). Skipping is not silent: :attr:`Documents.skipped` lists each skipped path with
its reason and :meth:`Documents.skipped_counts` counts them by reason, for the caller to report. Given
as the source itself, a file of another type is an :class:`~corral.errors.InputError`, and so is a
source that does not exist, a glob that matches nothing and a directory with no document in it: all
of these are raised by :func:`read_documents` itself, before any item is read.

A document that cannot be used does not stop the run and loses nothing before or after it: it becomes
an item that carries its own error in ``Item.problem`` (``"path: why"``), which the engine records as
that item's error. So are a text that is not UTF-8 (naming the line of the first bad byte), a PDF that
is encrypted, corrupt or not a PDF, a file that cannot be opened, a document with no text at all (a
scanned PDF without a text layer, say) and a document over one of the limits below.

**Bounded work on hostile input.** Reading is synchronous and CPU-bound (pypdf is pure Python): call
it from a worker thread (``asyncio.to_thread``, an executor), never on an event loop; there, the loop
keeps running (the interpreter switches threads every few milliseconds). The work each document may
take is bounded, and a document over a limit is a problem item that names the limit, never a hang:

- ``max_bytes`` (100 MiB): a larger file is not read at all (nor is one that grows past it while read);
- ``max_chars`` (20 million): a document's text may not be longer. A text file cannot be shorter
  than a quarter of its bytes, so a larger one is refused unread; a PDF stops at the page that passes it;
- ``max_pdf_work`` (5 million): how many content-stream tokens (operators and their operands,
  drawings included) pypdf may interpret for one PDF, counted across its pages and the forms they
  draw. Without it a PDF of a few kilobytes can make pypdf work for hours: every page can draw one
  form hundreds of times, the form a compressed stream of many thousand operators, each drawing
  parsed and interpreted anew. pypdf's own limits (75 MB per decompressed stream, 2 million tokens
  per content stream, the size of the page tree...) bound the rest; the budget is counted operator by
  operator, so it is overrun by at most the parsing of one content stream. pypdf takes 10 to 20 µs a
  token, and an ordinary PDF about one token per character of its text: the default lets through a
  PDF of some 5 million characters (a few thousand pages), and stops any PDF within a minute or two
  of CPU.
- HTML that nests elements so deep that parsing it would take time that grows with the square of its
  size (40,000 nested ``<div>`` are 200 KB that take 6 s to parse; a megabyte of them, minutes) is
  refused before it is parsed; see :func:`_check_nesting`.

A file is opened without following a symbolic link that was swapped in after the listing (the
target's real path is checked to be inside the directory again when it is opened) and without
blocking on a pipe; it must be a regular file. pypdf reports repairs it makes to damaged files as
warnings on the ``pypdf`` logger. The listing is eager (it has to be, to be sorted): a tree of a
million files is a list of a million paths; the documents are read one at a time, as they are taken.
"""

from __future__ import annotations

import codecs
import fnmatch
import importlib
import io
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Literal

from corral.errors import ConfigError, InputError
from corral.types import Item

if TYPE_CHECKING:
    from selectolax.lexbor import LexborNode

__all__ = [
    "DOCUMENT_TYPES",
    "MAX_BYTES",
    "MAX_CHARS",
    "MAX_PDF_WORK",
    "DocumentType",
    "Documents",
    "Skipped",
    "count_documents",
    "read_documents",
]

DocumentType = Literal["text", "html", "pdf"]
#: what each extension (lower case) is read as; any other is skipped
DOCUMENT_TYPES: dict[str, DocumentType] = {
    ".txt": "text",
    ".md": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}
#: the most bytes a document's file may have
MAX_BYTES = 100 * 2**20
#: the most characters a document's text may have
MAX_CHARS = 20_000_000
#: the most content-stream tokens pypdf may interpret for one PDF
MAX_PDF_WORK = 5_000_000

_MAGIC = re.compile(r"[*?[]")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file (or folder) of the source that is not read, and why."""

    #: relative to the source's root, as an item's id is
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Entry:
    #: the item's id: the path relative to the root, with "/"
    id: str
    #: the path to open, and to name in problems (the root as the caller wrote it, joined)
    path: str
    kind: DocumentType
    #: check, when it is opened, that the file's real path is still inside the root
    confined: bool


class Documents(Iterator[Item]):
    """The documents of a source, read one at a time as they are taken (see the module's doc).

    The listing is done when this is made: ``len()`` is the number of items it yields, :attr:`ids`
    their ids in order, :attr:`skipped` what was left out and why.
    """

    def __init__(
        self,
        source: str,
        root: str,
        entries: Sequence[_Entry],
        skipped: Sequence[Skipped],
        *,
        max_chars: int,
        max_bytes: int,
        max_pdf_work: int,
    ) -> None:
        #: the source as given
        self.source = source
        #: the folder the ids are relative to
        self.root = root
        #: the ids of the items, in the order they come
        self.ids: tuple[str, ...] = tuple(entry.id for entry in entries)
        #: what is not read, and why, sorted by path
        self.skipped: tuple[Skipped, ...] = tuple(skipped)
        self._entries = iter(entries)
        self._count = len(entries)
        self._real_root = os.path.realpath(root)
        self._max_chars = max_chars
        self._max_bytes = max_bytes
        self._max_pdf_work = max_pdf_work

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        """Stop: no file is held open between items, so nothing else is to release."""
        self._entries = iter(())

    def __next__(self) -> Item:
        entry = next(self._entries)
        try:
            return self._read(entry)
        except _Problem as problem:
            return Item(id=entry.id, text="", problem=f"{problem.where or entry.path}: {problem}")

    def skipped_counts(self) -> dict[str, int]:
        """How many entries were skipped for each reason, most first."""
        return dict(Counter(skip.reason for skip in self.skipped).most_common())

    def _read(self, entry: _Entry) -> Item:
        limit = self._max_bytes
        if entry.kind == "text":
            # UTF-8 takes at most 4 bytes a character: a larger file has too many characters.
            limit = min(limit, 4 * self._max_chars + 3)
        data = _read_file(entry, self._real_root, limit)
        if data is None:
            if limit < self._max_bytes:
                raise _Problem(f"has more than {self._max_chars:,} characters (max_chars)")
            raise _Problem(f"is larger than {self._max_bytes:,} bytes (max_bytes)")
        fields: dict[str, Any] | None = None
        if entry.kind == "pdf":
            text, pages = _pdf_text(data, self._max_chars, self._max_pdf_work)
            fields = {"pages": pages}
        else:
            text = _decode(data, entry.path, html=entry.kind == "html")
            if entry.kind == "html":
                _check_nesting(text)
            text = _html_text(text) if entry.kind == "html" else _newlines(text)
            if len(text) > self._max_chars:
                raise _Problem(f"has {len(text):,} characters, more than {self._max_chars:,} (max_chars)")
        if not text.strip():
            if fields is None:
                raise _Problem("has no text")
            count = len(fields["pages"])
            on_pages = f"{count} page{'s' if count != 1 else ''}"
            raise _Problem(
                f"has no text on any of its {on_pages}, only images or drawings (scanned? it needs OCR)"
                if count
                else "has no pages"
            )
        return Item(id=entry.id, text=text, fields=fields)


def read_documents(
    source: str | Path,
    *,
    max_chars: int = MAX_CHARS,
    max_bytes: int = MAX_BYTES,
    max_pdf_work: int = MAX_PDF_WORK,
) -> Documents:
    """The documents of ``source`` (a directory, a glob pattern or one file), each one item.

    The source is listed here, eagerly: a source that does not exist, matches nothing or holds no
    document, a single file of a type that is not read, and a missing optional extra (pypdf for
    PDFs, selectolax for HTML: ``pip install 'corral[documents]'``) raise here, before any item is
    read. The documents themselves are read as the items are taken, each in bounded work (see the
    module's doc); run this in a thread, not on an event loop.
    """
    limits = {"max_chars": max_chars, "max_bytes": max_bytes, "max_pdf_work": max_pdf_work}
    for option, value in limits.items():
        if value < 1:
            raise ConfigError(f"{option} must be at least 1, not {value}")
    name = os.fspath(source)
    root, entries, skipped = _list(name)
    kinds = {entry.kind for entry in entries}
    if "pdf" in kinds:
        _require("pypdf", "PDFs")
    if "html" in kinds:
        _require("selectolax", "HTML")
    return Documents(
        name, root, entries, skipped, max_chars=max_chars, max_bytes=max_bytes, max_pdf_work=max_pdf_work
    )


def count_documents(source: str | Path) -> int | None:
    """How many items :func:`read_documents` yields for ``source`` (for progress): the listing only,
    nothing read. None when the source cannot be listed (it is :func:`read_documents` that says why)."""
    try:
        return len(_list(os.fspath(source))[1])
    except (InputError, OSError):
        return None


# --- listing ------------------------------------------------------------------------------------------


def _list(source: str) -> tuple[str, list[_Entry], list[Skipped]]:
    """The root the ids are relative to, the documents sorted by path, and what is skipped."""
    if os.path.isdir(source):
        root, pattern = source, None
    elif os.path.exists(source):
        return _single(source)
    elif os.path.lexists(source):
        raise InputError("is a broken symbolic link", path=source)
    elif _MAGIC.search(source):
        root, pattern = _split_glob(source)
    else:
        raise InputError("does not exist", path=source)
    found: list[tuple[tuple[str, ...], _Entry]] = []
    skipped: list[tuple[tuple[str, ...], Skipped]] = []
    if pattern is None or os.path.isdir(root):
        _walk(root, pattern, found, skipped)
    found.sort(key=lambda pair: pair[0])
    skipped.sort(key=lambda pair: pair[0])
    if not found:
        what = "matches no file" if pattern is not None else "holds no file"
        kinds = ", ".join(DOCUMENT_TYPES)
        also = f" ({len(skipped)} skipped: {_reasons(skipped)})" if skipped else ""
        raise InputError(f"{what} of a type corral reads as a document ({kinds}){also}", path=source)
    return root, [entry for _, entry in found], [skip for _, skip in skipped]


def _single(source: str) -> tuple[str, list[_Entry], list[Skipped]]:
    """One file, named by the caller: a symbolic link is followed (the caller chose it)."""
    if not os.path.isfile(source):
        raise InputError("is not a regular file or a directory", path=source)
    suffix = PurePath(source).suffix.lower()
    kind = DOCUMENT_TYPES.get(suffix)
    if kind is None:
        kinds = ", ".join(DOCUMENT_TYPES)
        raise InputError(
            f"is not a document type corral reads ({suffix or 'no extension'}; it reads {kinds}; a "
            ".jsonl, .csv or .txt file of one text per row or line is read by read_items)",
            path=source,
        )
    root = os.path.dirname(source) or "."
    entry = _Entry(id=_safe(os.path.basename(source)), path=source, kind=kind, confined=False)
    return root, [entry], []


def _split_glob(pattern: str) -> tuple[str, tuple[str, ...]]:
    """A glob's fixed prefix (the folders before the first component with a wildcard) and the rest."""
    parts = PurePath(pattern).parts
    fixed = 0
    while fixed < len(parts) - 1 and not _MAGIC.search(parts[fixed]):
        fixed += 1
    root = os.path.join(*parts[:fixed]) if fixed else "."
    return root, tuple(parts[fixed:])


def _walk(
    root: str,
    pattern: tuple[str, ...] | None,
    found: list[tuple[tuple[str, ...], _Entry]],
    skipped: list[tuple[tuple[str, ...], Skipped]],
) -> None:
    """Every file under ``root`` (that ``pattern`` matches), without following links to folders."""
    real_root = os.path.realpath(root)
    folders: list[tuple[str, ...]] = [()]
    while folders:
        parts = folders.pop()
        try:
            with os.scandir(os.path.join(root, *parts)) as scan:
                listed = list(scan)
        except OSError as exc:
            if not parts:
                raise InputError(f"cannot be listed: {exc.strerror}", path=root) from None
            skipped.append((parts, Skipped(_safe("/".join(parts)), f"cannot be listed: {exc.strerror}")))
            continue
        for entry in listed:
            rel = (*parts, entry.name)
            hidden = entry.name.startswith(".")
            if _is_folder(entry):
                if pattern is None and hidden:
                    skipped.append((rel, Skipped(_safe("/".join(rel)), "hidden")))
                elif not hidden and (pattern is None or _matches(pattern, rel, prefix=True)):
                    folders.append(rel)
            elif pattern is None or (not hidden and _matches(pattern, rel)):
                kind = DOCUMENT_TYPES.get(PurePath(entry.name).suffix.lower())
                reason = "hidden" if hidden else _why_not(entry, real_root, kind)
                rel_id = _safe("/".join(rel))
                if reason is not None:
                    skipped.append((rel, Skipped(rel_id, reason)))
                elif kind is not None:
                    found.append((rel, _Entry(id=rel_id, path=entry.path, kind=kind, confined=True)))


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:  # pragma: no cover - gone between the listing and the look
        return False


def _why_not(entry: os.DirEntry[str], real_root: str, kind: DocumentType | None) -> str | None:
    """Why a listed entry (not a folder) is not read, or None."""
    reason: str | None = None
    try:
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if not _inside(target, real_root):
                reason = "a symbolic link out of the directory (not followed)"
            elif os.path.isdir(target):
                reason = "a symbolic link to a folder (not followed)"
            elif not os.path.exists(target):
                reason = "a broken symbolic link"
            elif not os.path.isfile(target):
                reason = "not a regular file"
        elif not entry.is_file(follow_symlinks=False):
            reason = "not a regular file"
    except OSError as exc:  # pragma: no cover - gone between the listing and the look
        reason = f"cannot be read: {exc.strerror}"
    if reason is None and kind is None:
        suffix = PurePath(entry.name).suffix.lower()
        reason = f"{suffix or 'no extension'}: not a document type corral reads"
    return reason


def _matches(pattern: tuple[str, ...], parts: tuple[str, ...], *, prefix: bool = False) -> bool:
    """Whether a relative path matches a glob's components (``**``: any number of folders); with
    ``prefix``, whether a folder's path can lead to a match (to descend only where one can be)."""
    # states: the pattern positions the path so far can be at
    states = {0}
    for part in parts:
        following: set[int] = set()
        for at in _closure(pattern, states):
            if at == len(pattern):
                continue
            if pattern[at] == "**":
                following.add(at)  # ** takes this folder and stays
            elif fnmatch.fnmatchcase(part, pattern[at]):
                following.add(at + 1)
        if not following:
            return False
        states = following
    ends = _closure(pattern, states)
    return bool(ends) if prefix else len(pattern) in ends


def _closure(pattern: tuple[str, ...], states: set[int]) -> set[int]:
    """The states plus those a ``**`` (matching no folder) skips to."""
    out = set(states)
    stack = list(states)
    while stack:
        at = stack.pop()
        if at < len(pattern) and pattern[at] == "**" and at + 1 not in out:
            out.add(at + 1)
            stack.append(at + 1)
    return out


def _inside(path: str, real_root: str) -> bool:
    return path == real_root or path.startswith(real_root.rstrip(os.sep) + os.sep)


def _safe(path: str) -> str:
    """A path as an id: a name that is not UTF-8 (a byte kept as a lone surrogate) escaped, so the id
    can be written as JSON; the file is still opened by its real name."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return path


def _reasons(skipped: list[tuple[tuple[str, ...], Skipped]]) -> str:
    counts = Counter(skip.reason for _, skip in skipped).most_common()
    return "; ".join(f"{count} {reason}" for reason, count in counts)


def _require(module: str, what: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"reading {what} needs {module}: pip install 'corral[documents]'") from None


# --- reading ------------------------------------------------------------------------------------------


class _Problem(Exception):
    """Why one document cannot be used: it ends as an item with this problem."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        #: what to name instead of the file's path ("path:line")
        self.where = where


_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    # a pipe swapped in after the listing is not waited on
    | getattr(os, "O_NONBLOCK", 0)
)


def _read_file(entry: _Entry, real_root: str, limit: int) -> bytes | None:
    """The file's bytes, or None if it has more than ``limit``."""
    path, flags = entry.path, _OPEN_FLAGS
    if entry.confined:
        # The entry was inside the root when listed; what is opened is its real path, checked again
        # now, and opened without following a link swapped in since.
        path = os.path.realpath(entry.path)
        if not _inside(path, real_root):
            raise _Problem("now leads out of the directory (a symbolic link): not read")
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise _Problem(f"cannot be opened: {exc.strerror}") from None
    with open(descriptor, "rb", closefd=True) as stream:
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise _Problem("is not a regular file")
            if os.fstat(descriptor).st_size > limit:
                return None
            data = stream.read(limit + 1)  # it may have grown since
        except OSError as exc:
            raise _Problem(f"cannot be read: {exc.strerror}") from None
    return data if len(data) <= limit else None


_NOT_UTF8 = "is not UTF-8 text: save the file as UTF-8"


def _decode(data: bytes, path: str, *, html: bool) -> str:
    """The file's text: UTF-8 (a BOM dropped); for HTML, the BOM's or the declared encoding first."""
    encoding = "utf-8"
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif html and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif html:
        encoding = _declared_encoding(data[:1024]) or "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        why = _NOT_UTF8 if encoding == "utf-8" else f"is not {encoding} text, as it declares"
        raise _Problem(why, where=f"{path}:{line}") from None


_META_CHARSET = re.compile(rb"<meta[^>]*?charset\s*=\s*[\"']?\s*([-\w.:]+)", re.IGNORECASE)


def _declared_encoding(head: bytes) -> str | None:
    """The encoding a ``<meta>`` declares, as browsers take it (latin-1 and ASCII are windows-1252;
    a UTF-16 declaration in bytes that could be read is wrong: UTF-8), or None (unknown, none)."""
    match = _META_CHARSET.search(head)
    if match is None:
        return None
    try:
        name = codecs.lookup(match.group(1).decode("ascii")).name
    except (LookupError, UnicodeDecodeError):
        return None
    if name in ("iso8859-1", "ascii"):
        return "cp1252"
    if name.startswith(("utf-16", "utf-32")):
        return "utf-8"
    return name


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- HTML ---------------------------------------------------------------------------------------------

#: dropped with everything in them: not text a reader sees (``template`` content is not in the tree)
_DROPPED = frozenset({"script", "style", "template", "noscript", "iframe"})
#: blocks with a blank line around them
_PARAGRAPHS = frozenset(
    {
        "address", "article", "aside", "blockquote", "details", "dialog", "dl", "fieldset", "figure",
        "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "main", "nav",
        "ol", "p", "pre", "section", "table", "title", "ul",
    }
)  # fmt: skip
#: blocks on lines of their own
_LINES = frozenset(
    {
        "body", "caption", "dd", "div", "dt", "figcaption", "legend", "li", "listing", "menu", "option",
        "optgroup", "plaintext", "search", "summary", "textarea", "tr", "xmp",
    }
)  # fmt: skip
#: their whitespace is kept as it is
_PREFORMATTED = frozenset({"pre", "textarea", "listing", "plaintext", "xmp"})
_CELLS = frozenset({"td", "th"})
#: whitespace collapsed outside preformatted text: HTML's own, and the no-break space
_SPACES = re.compile("[ \t\n\f\r\u00a0]+")


def _html_text(html: str) -> str:
    """The text of an HTML document as a reader sees it (see the module's doc)."""
    from selectolax.lexbor import LexborHTMLParser

    root = LexborHTMLParser(html).root
    if root is None:
        return ""
    writer = _TextWriter()
    root_id = root.mem_id
    node: LexborNode = root
    # Depth first without recursion (a page can nest elements deeper than Python's stack).
    while True:
        if writer.enter(node) and (child := node.child) is not None:
            node = child
            continue
        while True:
            writer.leave(node)
            if node.mem_id == root_id:
                return writer.text()
            following = node.next
            if following is not None:
                node = following
                break
            parent = node.parent
            if parent is None:  # pragma: no cover - the root is reached first
                return writer.text()
            node = parent


#: void elements, and elements the parser closes by itself (``<p>``, ``<li>``... with no end tag)
_NOT_NESTED = frozenset(
    {
        "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image", "img",
        "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
        "body", "caption", "colgroup", "dd", "dt", "head", "html", "li", "optgroup", "option", "p",
        "rb", "rp", "rt", "rtc", "tbody", "td", "tfoot", "th", "thead", "tr",
    }
)  # fmt: skip
#: start tags on which the parser looks through the stack of open elements (to close a ``<p>``)
_SCANNING = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "details", "dialog", "dir", "div",
        "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hgroup", "hr", "li", "listing", "main", "menu", "nav", "ol", "p", "plaintext",
        "pre", "search", "section", "summary", "table", "ul", "xmp",
    }
)  # fmt: skip
#: comments, and the text of scripts and styles: not markup (and often full of "<div>" in strings)
_NOT_MARKUP = re.compile(
    r"<!--.*?(?:-->|\Z)|<script\b.*?(?:</script|\Z)|<style\b.*?(?:</style|\Z)", re.DOTALL | re.IGNORECASE
)
_TAG = re.compile(r"<(/?)([a-z][^\s/>]*)")
#: parsing steps (open elements looked through) allowed: a base, and so many per scanning tag
_NESTING_BASE = 100_000_000
_NESTING_PER_TAG = 100


def _check_nesting(html: str) -> None:
    """Refuse HTML whose nesting would make parsing take time that grows with its square.

    On the start tag of a block (``<div>``, ``<ul>``, ``<li>``...), the HTML parser (any parser that
    follows the standard) looks through the open elements for a ``<p>`` to close: 40,000 nested
    ``<div>`` (200 KB) take lexbor 6 s, a megabyte of them minutes. The open elements are counted
    from the tags (void elements and those the parser closes itself left out, an end tag counted only
    for an element of its name that is open), and their number summed over the block start tags: past
    100 million steps plus 100 per block tag (an average depth of 100, far above real pages), the
    document is a problem, not parsed."""
    depth = steps = blocks = deepest = 0
    open_names: Counter[str] = Counter()
    for closing, name in _TAG.findall(_NOT_MARKUP.sub(" ", html).lower()):
        if closing:
            if open_names[name] > 0:
                open_names[name] -= 1
                depth -= 1
            continue
        if name in _SCANNING:
            steps += depth
            blocks += 1
        if name not in _NOT_NESTED:
            open_names[name] += 1
            depth += 1
            deepest = max(deepest, depth)
    if steps > _NESTING_BASE + _NESTING_PER_TAG * blocks:
        raise _Problem(
            f"nests its elements too deep to be parsed in bounded time ({deepest:,} levels, "
            f"{blocks:,} block tags): not read"
        )


class _TextWriter:
    """Text put together from the walk of an HTML tree: runs of whitespace one space, block breaks
    as line breaks (the strongest of those met between two pieces of text wins), none at the ends."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        #: line breaks at the end of what is written; -1 while nothing is
        self._newlines = -1
        #: line breaks wanted before the next text
        self._breaks = 0
        #: "", " " or "\t": wanted before the next text if it goes on the same line
        self._gap = ""
        #: depth in preformatted elements
        self._pre = 0

    def enter(self, node: LexborNode) -> bool:
        """Take a node's start; whether to walk into its children."""
        tag = node.tag or ""
        if tag == "-text":
            self._write_text(node.text_content or "")
            return False
        if tag.startswith(("-", "!")) or tag in _DROPPED:  # comments, doctype; what is dropped
            return False
        if tag == "br":
            self._line_break()
        elif tag in _CELLS:
            self._gap = "\t"
        self._block(tag)
        if tag in _PREFORMATTED:
            self._pre += 1
        return True

    def leave(self, node: LexborNode) -> None:
        tag = node.tag or ""
        if tag.startswith(("-", "!")) or tag in _DROPPED:
            return
        if tag in _PREFORMATTED:
            self._pre -= 1
        elif tag in _CELLS:
            self._gap = "\t"
        self._block(tag)

    def text(self) -> str:
        return "".join(self._parts).rstrip()

    def _block(self, tag: str) -> None:
        if tag in _PARAGRAPHS:
            self._breaks = 2
        elif tag in _LINES:
            self._breaks = max(self._breaks, 1)

    def _line_break(self) -> None:
        if self._newlines < 0:
            return
        self._flush()
        if self._newlines < 2:
            self._append("\n")

    def _write_text(self, text: str) -> None:
        text = text.replace("\u00ad", "")  # a soft hyphen is not seen (but where a line breaks)
        if not text:
            return
        if self._pre:
            self._flush()
            self._append(text.replace("\r\n", "\n").replace("\r", "\n"))
            return
        text = _SPACES.sub(" ", text)
        if text.startswith(" "):
            self._gap = self._gap or " "
        trailing = text.endswith(" ")
        text = text.strip(" ")
        if text:
            self._flush()
            self._append(text)
            self._gap = " " if trailing else ""

    def _flush(self) -> None:
        """Write the breaks or the gap wanted before the next text."""
        if self._newlines >= 0:
            if self._breaks > self._newlines:
                self._append("\n" * (self._breaks - self._newlines))
            elif self._gap and self._newlines == 0:
                self._append(self._gap)
        self._breaks = 0
        self._gap = ""

    def _append(self, text: str) -> None:
        self._parts.append(text)
        trailing = len(text) - len(text.rstrip("\n"))
        if trailing == len(text):
            self._newlines = max(self._newlines, 0) + trailing
        else:
            self._newlines = trailing


# --- PDF ----------------------------------------------------------------------------------------------


class _TooMuchWork(BaseException):
    """The PDF's content streams ask for more work than ``max_pdf_work``. A BaseException: pypdf
    catches every Exception raised while it reads a form (to log it and go on with the page), and this
    must stop the whole document at once."""


class _WorkBudget:
    """Content-stream tokens interpreted so far, checked on every operator (a pypdf visitor)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0

    def spend(self, operator: Any, operands: Any, *_matrices: Any) -> None:
        cost = 1
        if isinstance(operands, list | tuple | dict):
            cost += len(operands)
            for operand in operands:
                if isinstance(operand, list | tuple | dict):
                    cost += len(operand)
        self.spent += cost
        if self.spent > self.limit:
            raise _TooMuchWork


def _pdf_text(data: bytes, max_chars: int, max_work: int) -> tuple[str, list[list[int]]]:
    """A PDF's text, its pages joined with a form feed, and each page's ``[start, end)`` in it."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    budget = _WorkBudget(max_work)
    pages: list[list[int]] = []
    parts: list[str] = []
    length = 0
    total = 0
    try:
        reader = PdfReader(io.BytesIO(data))
        total = len(reader.pages)
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text(visitor_operand_before=budget.spend)
            text = _newlines(text).replace("\f", "\n")
            start = length + 1 if pages else 0
            end = start + len(text)
            if end > max_chars:
                raise _Problem(
                    f"has more than {max_chars:,} characters of text (max_chars), passed on page "
                    f"{number} of {total}"
                )
            parts.append(text)
            pages.append([start, end])
            length = end
    except _Problem:
        raise
    except _TooMuchWork:
        raise _Problem(
            f"asks for more work than max_pdf_work ({max_work:,} content-stream tokens), reached on "
            f"page {len(pages) + 1} of {total}: not read"
        ) from None
    except FileNotDecryptedError:
        raise _Problem("is encrypted: it needs a password to be opened") from None
    except DependencyError as exc:
        raise _Problem(f"cannot be read: {exc}") from None
    except Exception as exc:
        # pypdf raises its own errors on a damaged file, and now and then a KeyError, a TypeError, a
        # RecursionError... on a hostile one: whatever it is, this one document cannot be read.
        where = f" (page {len(pages) + 1} of {total})" if total else ""
        raise _Problem(f"is not a readable PDF{where}: {_describe(exc)}") from None
    return "\f".join(parts), pages


def _describe(exc: Exception) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
