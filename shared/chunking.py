"""Cutting page text into overlapping chunks of about 1000 characters.

Chunks never cross a page, so each keeps an exact ``page_number``. Inside a
page the text is cut at paragraph ends where it can, then at sentence ends,
then at word boundaries; consecutive chunks of a page share a short overlap
(whole sentences where possible) so an idea split between them is found from
either side.

Tables of contents and back-of-book indexes are skipped
(``is_navigation_page``): they name every topic of the book next to a page
number, so they matched every question (often first, being dense in terms)
while answering none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Chunk", "chunk_pages", "embedding_text", "is_navigation_page"]

CHUNK_CHARACTERS = 1000
OVERLAP_CHARACTERS = 150

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_SPACES = re.compile(r"[ \t\r\f\v]+")


# Headings of contents and index pages in the corpus's languages.
_NAVIGATION_HEADING = re.compile(
    r"^\W*(table of contents|contents|index|subject index|inhaltsverzeichnis|inhalt|"
    r"stichwortverzeichnis|sachverzeichnis|register|index des matières|table des matières|"
    r"sommaire|índice|תוכן העניינים|תוכן|מפתח|אינדקס|فهرس|المحتويات|الفهرس)\W*$",
    re.IGNORECASE,
)
# A line that ends in a page reference: "2.3 Paging ....... 41", "Deadlock, 12, 57-59",
# "Vorwort  vii".
_PAGE_REFERENCE = re.compile(
    r"[^\W\d_].*?(?:\.\s*\.|\s|,)\s*(?:\d{1,4}(?:\s*[-\u2013]\s*\d{1,4})?|[ivxlc]{1,7})\s*$",
    re.IGNORECASE,
)
_LEADER_OR_LIST = re.compile(r"(?:\.\s*){3,}|(?:\s\.){3,}|,\s*\d{1,4}\s*(?:,|$)")
NAVIGATION_MIN_LINES = 5


def is_navigation_page(text: str) -> bool:
    """Whether the page is a table of contents or an index, not content.

    Most of its lines end in a page number, and either it is headed as one or
    its lines carry dot leaders or comma-separated page lists (which a table
    of measurements, also ending in numbers, does not).
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < NAVIGATION_MIN_LINES:
        return False
    references = sum(1 for line in lines if _PAGE_REFERENCE.search(line))
    share = references / len(lines)
    headed = any(_NAVIGATION_HEADING.match(line) for line in lines[:3])
    if headed and share >= 0.4:
        return True
    leaders = sum(1 for line in lines if _LEADER_OR_LIST.search(line))
    return share >= 0.6 and leaders / len(lines) >= 0.3


@dataclass(frozen=True)
class Chunk:
    index: int
    page_number: int
    text: str


def _clean(text: str) -> str:
    text = text.replace("\x00", "")
    # PDF extraction breaks lines mid-sentence; a hyphen at a line end joins a word.
    text = re.sub(r"-\n(?=\w)", "", text)
    return _SPACES.sub(" ", text).strip()


def _units(page: str, size: int) -> list[str]:
    """Paragraphs, split into sentences and then words until each fits ``size``."""
    units: list[str] = []
    for paragraph in _PARAGRAPH.split(page):
        paragraph = " ".join(line.strip() for line in paragraph.splitlines() if line.strip())
        if not paragraph:
            continue
        if len(paragraph) <= size:
            units.append(paragraph)
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            while len(sentence) > size:
                cut = sentence.rfind(" ", 0, size)
                cut = cut if cut > size // 2 else size
                units.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            if sentence:
                units.append(sentence)
    return units


def _tail(text: str, length: int) -> str:
    """The last ``length`` characters of a chunk, starting at a sentence or word boundary."""
    if len(text) <= length:
        return text
    tail = text[-length:]
    sentence = _SENTENCE_END.search(tail)
    if sentence:
        return tail[sentence.end() :]
    space = tail.find(" ")
    return tail[space + 1 :] if space >= 0 else tail


def chunk_pages(
    pages: list[str],
    size: int = CHUNK_CHARACTERS,
    overlap: int = OVERLAP_CHARACTERS,
    *,
    first_page: int = 1,
    first_index: int = 0,
    skip_navigation: bool = True,
) -> list[Chunk]:
    """Chunks of ``pages``, numbered from ``first_page`` and ``first_index`` (for
    documents chunked a batch of pages at a time). Contents and index pages
    give no chunks (``skip_navigation``)."""
    chunks: list[Chunk] = []

    def add(page_number: int, text: str) -> None:
        chunks.append(Chunk(first_index + len(chunks), page_number, text))

    for page_number, raw in enumerate(pages, start=first_page):
        if skip_navigation and is_navigation_page(raw):
            continue
        units = _units(_clean_page(raw), size)
        current = ""
        fresh = False  # whether current holds anything beyond the carried overlap
        for unit in units:
            candidate = f"{current} {unit}".strip() if current else unit
            if len(candidate) <= size or not fresh:
                if len(candidate) > size:
                    # The overlap plus this unit do not fit: drop the overlap.
                    candidate = unit
                current, fresh = candidate, True
                continue
            add(page_number, current)
            carried = _tail(current, overlap)
            current = f"{carried} {unit}".strip() if carried else unit
            if len(current) > size:
                current = unit
        if current and fresh:
            add(page_number, current)
    return chunks


def _clean_page(text: str) -> str:
    # Keep paragraph breaks (blank lines) for _units; tidy everything else.
    paragraphs = _PARAGRAPH.split(text.replace("\r\n", "\n"))
    return "\n\n".join(_clean(paragraph).replace(" \n", "\n") for paragraph in paragraphs)


def embedding_text(chunk: Chunk, *, title: str, course: str) -> str:
    """What is embedded: the chunk with its material's title and course, for context."""
    return f"{title} ({course}), page {chunk.page_number}\n\n{chunk.text}"
