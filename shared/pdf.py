"""PDFs: what we check of an upload, and the text we extract for search.

pypdf reports font and structure oddities through the ``pypdf`` logger; they
reach Cloud Logging as structured WARNING lines through the root handler of
``shared.log`` instead of bare stderr noise.
"""

from __future__ import annotations

import io
import logging

from shared.errors import UnsupportedMediaType, ValidationFailed

__all__ = ["PdfProblem", "count_pages", "extract_pages"]

logging.getLogger("pypdf").setLevel(logging.WARNING)


class PdfProblem(Exception):
    """A PDF whose text can never be extracted; retrying will not help."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status  # the material's ingest_status: failed or no_text
        self.reason = reason


def count_pages(data: bytes) -> int:
    """The page count of a readable, unencrypted PDF with at least one page.

    Not a PDF at all (by its bytes, whatever its name or declared type) is 415;
    a PDF we cannot use is 422 naming the ``file`` field.
    """
    if not data:
        raise ValidationFailed({"file": "the file is empty"})
    # The header may follow a little junk (the spec allows it within 1024 bytes).
    if b"%PDF-" not in data[:1024]:
        raise UnsupportedMediaType("the file is not a PDF", code="not_a_pdf")
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise ValidationFailed({"file": "the PDF is encrypted; upload it without a password"})
        pages = len(reader.pages)
    except ValidationFailed:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        raise ValidationFailed({"file": "the PDF is damaged and cannot be read"}) from None
    if pages < 1:
        raise ValidationFailed({"file": "the PDF has no pages"})
    return pages


def extract_pages(data: bytes) -> list[str]:
    """The text of each page, in order; ``PdfProblem`` when there is none to have."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise PdfProblem("failed", "the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
    except PdfProblem:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise PdfProblem("failed", f"the PDF is damaged and cannot be read ({error})") from None
    if not any(text.strip() for text in pages):
        raise PdfProblem("no_text", "the PDF has no extractable text (a scan without OCR?)")
    return pages
