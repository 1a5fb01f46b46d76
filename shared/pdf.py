"""PDFs: what we check of an upload, and the text we extract for search.

pypdf reports font and structure oddities through the ``pypdf`` logger; they
reach Cloud Logging as structured WARNING lines through the root handler of
``shared.log`` instead of bare stderr noise.
"""

from __future__ import annotations

import io
import logging
import unicodedata
from collections.abc import Iterator
from typing import IO

from shared.errors import UnsupportedMediaType, ValidationFailed

__all__ = [
    "HEADER_WINDOW",
    "PdfProblem",
    "TooDamaged",
    "check_header",
    "count_pages",
    "count_pages_in",
    "extract_pages",
    "iter_pages",
    "no_text",
    "normalise_text",
]

logging.getLogger("pypdf").setLevel(logging.WARNING)


class PdfProblem(Exception):
    """A PDF whose text can never be extracted; retrying will not help."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status  # the material's ingest_status: failed or no_text
        self.reason = reason


# The header may follow a little junk (the spec allows it within 1024 bytes).
HEADER_WINDOW = 1024


def check_header(head: bytes) -> None:
    """415 ``not_a_pdf`` unless ``head`` (the file's first bytes) holds ``%PDF-``.

    Judged by content, whatever the file's name or declared type.
    """
    if b"%PDF-" not in head[:HEADER_WINDOW]:
        raise UnsupportedMediaType("the file is not a PDF", code="not_a_pdf")


def count_pages(data: bytes) -> int:
    """The page count of a readable, unencrypted PDF with at least one page.

    Not a PDF at all (by its bytes, whatever its name or declared type) is 415;
    a PDF we cannot use is 422 naming the ``file`` field.
    """
    if not data:
        raise ValidationFailed({"file": "the file is empty"})
    check_header(data)
    return count_pages_in(io.BytesIO(data))


def count_pages_in(stream: IO[bytes]) -> int:
    """``count_pages`` for a seekable stream whose header was checked already.

    pypdf reads only what it needs (the trailer, the cross-reference table and
    the page tree), so a stream that fetches its bytes on demand is never read
    whole, unless the file is damaged enough that pypdf rebuilds its
    cross-reference table by scanning everything. Such a stream may refuse
    that by raising ``TooDamaged`` from ``read``: the file is then damaged.
    """
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    damaged = ValidationFailed({"file": "the PDF is damaged and cannot be read"})
    try:
        reader = PdfReader(stream, strict=False)
        if reader.is_encrypted:
            raise ValidationFailed({"file": "the PDF is encrypted; upload it without a password"})
        pages = len(reader.pages)
    except ValidationFailed:
        raise
    except TooDamaged:
        raise damaged from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        raise damaged from None
    if pages < 1:
        raise ValidationFailed({"file": "the PDF has no pages"})
    return pages


class TooDamaged(Exception):
    """Reading this PDF would need the whole file at once (see ``count_pages_in``)."""


def normalise_text(text: str) -> str:
    """NFKC, without soft hyphens.

    LaTeX PDFs set ligatures as one glyph ("ﬁ", "ﬂ", "ﬀ"), which pypdf
    extracts as one character: "deﬁnition" then matches no query for
    "definition". NFKC unfolds them (and full-width forms, superscripts,
    non-breaking spaces). Soft hyphens (U+00AD) are invisible break hints
    that split words for the index.
    """
    return unicodedata.normalize("NFKC", text).replace("\u00ad", "")


def iter_pages(data: bytes) -> Iterator[str]:
    """The text of each page, in order, extracted as it is asked for, NFKC-normalised.

    Raises ``PdfProblem`` for an encrypted or damaged file (possibly after
    some pages were yielded).
    """
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    damaged = (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError)
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        encrypted = reader.is_encrypted
        pages = reader.pages if not encrypted else []
    except damaged as error:
        raise PdfProblem("failed", f"the PDF is damaged and cannot be read ({error})") from None
    if encrypted:
        raise PdfProblem("failed", "the PDF is encrypted")
    for number in range(len(pages)):
        try:
            text = pages[number].extract_text() or ""
        except damaged as error:
            raise PdfProblem(
                "failed", f"page {number + 1} of the PDF is damaged ({error})"
            ) from None
        yield normalise_text(text)


def no_text() -> PdfProblem:
    return PdfProblem("no_text", "the PDF has no extractable text (a scan without OCR?)")


def extract_pages(data: bytes) -> list[str]:
    """The text of every page; ``PdfProblem`` when there is none to have."""
    pages = list(iter_pages(data))
    if not any(text.strip() for text in pages):
        raise no_text()
    return pages
