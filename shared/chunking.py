"""Cutting page text into overlapping chunks of about 1000 characters.

Chunks never cross a page, so each keeps an exact ``page_number``. Inside a
page the text is cut at paragraph ends where it can, then at sentence ends,
then at word boundaries; consecutive chunks of a page share a short overlap
(whole sentences where possible) so an idea split between them is found from
either side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Chunk", "chunk_pages", "embedding_text"]

CHUNK_CHARACTERS = 1000
OVERLAP_CHARACTERS = 150

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_SPACES = re.compile(r"[ \t\r\f\v]+")


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
) -> list[Chunk]:
    """Chunks of ``pages``, numbered from ``first_page`` and ``first_index`` (for
    documents chunked a batch of pages at a time)."""
    chunks: list[Chunk] = []

    def add(page_number: int, text: str) -> None:
        chunks.append(Chunk(first_index + len(chunks), page_number, text))

    for page_number, raw in enumerate(pages, start=first_page):
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
