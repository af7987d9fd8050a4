"""PDFs written by hand, byte by byte (no PDF writer to trust): pages of text, and hostile ones."""

from __future__ import annotations

import zlib

__all__ = ["FONT", "assemble", "form_bomb", "make_pdf", "page_content", "stream"]


def _literal(text: str) -> bytes:
    """A PDF string literal in WinAnsi (Latin-1 for what these tests use)."""
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1") + b")"


def page_content(lines: list[str]) -> bytes:
    shown = b" 0 -16 Td ".join(_literal(line) + b" Tj" for line in lines)
    return b"BT /F1 12 Tf 72 720 Td " + shown + b" ET"


def stream(data: bytes, extra: bytes = b"", *, compress: bool = False) -> bytes:
    if compress:
        data = zlib.compress(data, 9)
        extra += b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def assemble(objects: list[bytes]) -> bytes:
    """A PDF file of these objects (numbered from 1; the first is the catalog), with its xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"


def make_pdf(pages: list[list[str]], *, contents: list[bytes] | None = None, compress: bool = False) -> bytes:
    """A PDF of these pages, each a list of lines of text (or given content streams)."""
    streams = contents if contents is not None else [page_content(lines) for lines in pages]
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(len(streams)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(streams)),
        FONT,
    ]
    for i, content in enumerate(streams):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
            b" /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objects.append(stream(content, compress=compress))
    return assemble(objects)


def form_bomb(pages: int, draws: int, operators: int) -> bytes:
    """A few kilobytes that make pypdf work for hours: every page draws one form ``draws`` times, and
    the form (compressed) shows a letter ``operators`` times."""
    form = b"BT /F1 12 Tf " + b"(a) Tj " * operators + b"ET"
    kids = b" ".join(b"%d 0 R" % (6 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        FONT,
        stream(b"/X1 Do " * draws),
        stream(
            form,
            b" /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>",
            compress=True,
        ),
    ]
    objects += [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >>"
        b" /XObject << /X1 5 0 R >> >> /Contents 4 0 R >>"
    ] * pages
    return assemble(objects)
