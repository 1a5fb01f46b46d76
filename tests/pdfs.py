"""Real PDF files made in the tests, with known words on known pages."""

from __future__ import annotations

import io
import uuid

from fpdf import FPDF


def make_pdf(pages: list[str] | int = 1, *, title: str = "Test") -> bytes:
    """A text PDF: one page per string (or N pages of filler)."""
    texts = pages if isinstance(pages, list) else [f"{title} page {n + 1}" for n in range(pages)]
    document = FPDF()
    document.set_title(title)
    # Distinct bytes on every call, so two test files are never duplicates by accident.
    document.set_subject(uuid.uuid4().hex)
    document.set_font("helvetica", size=12)
    for text in texts:
        document.add_page()
        document.multi_cell(0, 8, text)
    return bytes(document.output())


def make_encrypted_pdf() -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(make_pdf(2))).pages:
        writer.add_page(page)
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
