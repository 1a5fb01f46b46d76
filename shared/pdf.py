"""What we check of an uploaded PDF, by its content alone."""

from __future__ import annotations

import io
import logging

from shared.errors import UnsupportedMediaType, ValidationFailed

__all__ = ["count_pages"]

# pypdf logs every font oddity at WARNING; those are noise for an upload check.
logging.getLogger("pypdf").setLevel(logging.ERROR)


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
