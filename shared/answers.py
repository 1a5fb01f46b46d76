"""Answers grounded on search results.

``gemini``: ``generate_content`` with the top results as numbered sources and
an instruction to answer only from them and cite them as [n]; citations are
read back from the answer and kept only when they name a returned result.

``local``: no language model; the best-matching sentences of the top results,
each quoted on its own with its own citation, labelled ``extractive``.

Answering never fails a search: any error gives ``None`` and the results
are returned without an answer.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from shared.embeddings import GeminiEmbedder
from shared.search_terms import STOP_WORDS, detect_language, words

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.embeddings import Embedder

__all__ = ["answer", "extractive_answer", "generative_answer"]

log = logging.getLogger("lectern.answers")

SOURCES = 6
EXTRACTIVE_SENTENCES = 3
INSTRUCTION = (
    "You answer students' questions about their course materials. Use only the numbered "
    "sources below; if they do not contain the answer, say so. Cite every claim with the "
    "source number in square brackets, like [2]. Answer in the language of the question, "
    "in at most 150 words."
)
_CITATION = re.compile(r"\[(\d{1,2})\]")
# A sentence ends at . ! or ? before a space and a capital, digit or quote
# (so "e.g. the" and "Fig. 3.2" do not end one); a line break between two
# paragraphs ends one too.
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'“„(\[]?[^\W_a-z])|\n\s*\n")
MIN_SENTENCE_WORDS = 4
MAX_SENTENCE_CHARACTERS = 400


def _stems(text: str, stop: frozenset[str]) -> set[str]:
    """Words cut to five letters: a poor man's stem, enough to match "process" and "processes"."""
    return {word[:5] for word in words(text) if word not in stop and len(word) > 2}


def _citation(result: dict[str, Any]) -> dict[str, Any]:
    return {"material_id": result["material_id"], "page_number": result["page_number"]}


def extractive_answer(query: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The sentences of the top results that share the most words with the question.

    Each sentence is quoted on its own and followed by its own citation
    (``[n]``, the n-th entry of ``citations``): sentences from different
    pages are never run together as if they were one passage.
    """
    tokens = words(query)
    stop = STOP_WORDS[detect_language(tokens)] | STOP_WORDS["english"]
    wanted = _stems(query, stop)
    scored: list[tuple[int, int, int, str]] = []
    for rank, result in enumerate(results[:SOURCES]):
        for position, sentence in enumerate(_SENTENCE.split(result["content"])):
            sentence = " ".join(sentence.split())
            if (
                len(sentence.split()) < MIN_SENTENCE_WORDS
                or len(sentence) > MAX_SENTENCE_CHARACTERS
            ):
                continue  # headings, page furniture, run-on extraction garbage
            overlap = len(wanted & _stems(sentence, stop))
            if overlap:
                scored.append((-overlap, rank, position, sentence))
    chosen = sorted(scored)[:EXTRACTIVE_SENTENCES]
    # Quote them in reading order: by result rank, then position in the chunk.
    chosen.sort(key=lambda item: (item[1], item[2]))
    citations: list[dict[str, Any]] = []
    quotes: list[dict[str, Any]] = []
    parts: list[str] = []
    for _, rank, _, sentence in chosen:
        citation = _citation(results[rank])
        if citation not in citations:
            citations.append(citation)
        quotes.append({"text": sentence, "citation": citation})
        parts.append(f"“{sentence}” [{citations.index(citation) + 1}]")
    return {
        "text": " ".join(parts) or "No passage in the results answers this directly.",
        "citations": citations,
        "kind": "extractive",
        "quotes": quotes,
    }


def generative_answer(
    settings: Settings, embedder: GeminiEmbedder, query: str, results: list[dict[str, Any]]
) -> dict[str, Any]:
    from google.genai import types

    sources = results[:SOURCES]
    numbered = "\n\n".join(
        f"[{n}] {r['title']}, page {r['page_number']}:\n{r['content']}"
        for n, r in enumerate(sources, start=1)
    )
    response = embedder.client.models.generate_content(
        model=settings.GEMINI_ANSWER_MODEL,
        contents=f"Sources:\n\n{numbered}\n\nQuestion: {query}",
        config=types.GenerateContentConfig(
            system_instruction=INSTRUCTION, temperature=0.2, max_output_tokens=600
        ),
    )
    text = (response.text or "").strip()
    citations: list[dict[str, Any]] = []
    for match in _CITATION.finditer(text):
        number = int(match.group(1))
        if 1 <= number <= len(sources):
            citation = _citation(sources[number - 1])
            if citation not in citations:
                citations.append(citation)
    return {"text": text, "citations": citations, "kind": "generative", "quotes": None}


def answer(
    settings: Settings, embedder: Embedder, query: str, results: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """An answer from the results, or None if none could be made."""
    if not results:
        return None
    try:
        if isinstance(embedder, GeminiEmbedder):
            return generative_answer(settings, embedder, query, results)
        return extractive_answer(query, results)
    except Exception:
        log.warning("answering failed; returning results only", exc_info=True)
        return None
