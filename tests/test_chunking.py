"""Chunking: bounded chunks that keep every word and the page it came from."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.chunking import CHUNK_CHARACTERS, chunk_pages, embedding_text

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)
sentences = st.lists(words, min_size=1, max_size=30).map(lambda w: " ".join(w) + ".")
paragraphs = st.lists(sentences, min_size=1, max_size=12).map(" ".join)
pages = st.lists(paragraphs, min_size=0, max_size=4).map("\n\n".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(pages, min_size=1, max_size=4))
def test_chunks_are_bounded_ordered_and_lose_no_word(document: list[str]) -> None:
    chunks = chunk_pages(document)
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert all(0 < len(chunk.text) <= CHUNK_CHARACTERS for chunk in chunks)
    assert [c.page_number for c in chunks] == sorted(c.page_number for c in chunks)
    for number, page in enumerate(document, start=1):
        expected = page.split()
        on_page = [c for c in chunks if c.page_number == number]
        seen = " ".join(c.text for c in on_page).split()
        # Overlap repeats words; every word of the page appears, in order.
        position = 0
        for word in expected:
            while position < len(seen) and seen[position] != word:
                position += 1
            assert position < len(seen), word
            position += 1


def test_paragraph_and_sentence_boundaries_are_preferred() -> None:
    first = "Alpha sentence one. " * 30
    second = "Beta sentence two. " * 30
    chunks = chunk_pages([first.strip() + "\n\n" + second.strip()])
    assert len(chunks) >= 2
    assert all(chunk.text.endswith(".") for chunk in chunks)
    # Consecutive chunks share a short overlap of whole sentences.
    assert chunks[1].text.split(". ")[0] in chunks[0].text


def test_line_breaks_and_hyphenation_from_pdf_extraction_are_joined() -> None:
    (chunk,) = chunk_pages(["The sched-\nuler picks the next\nprocess to run."])
    assert chunk.text == "The scheduler picks the next process to run."


def test_embedding_text_carries_title_course_and_page() -> None:
    (chunk,) = chunk_pages(["", "Deadlock needs four conditions."])
    text = embedding_text(chunk, title="Week 5", course="Operating Systems")
    assert text.startswith("Week 5 (Operating Systems), page 2")
    assert text.endswith("Deadlock needs four conditions.")
