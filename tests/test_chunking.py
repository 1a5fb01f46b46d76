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


CONTENTS = """Inhaltsverzeichnis
1 Einleitung . . . . . . . . . . . . . . 1
1.1 Prozesse . . . . . . . . . . . . . . 3
1.2 Threads . . . . . . . . . . . . . . . 9
2 Speicherverwaltung . . . . . . . . . 15
2.1 Paging . . . . . . . . . . . . . . . . 17
2.2 Segmentierung . . . . . . . . . . . . 24
"""
INDEX = """Index
Deadlock, 12, 57-59
Dining philosophers, 61
Fork, 8, 14
Mutex, 44, 47
Page fault, 71
Semaphore, 40, 43, 45
"""
UNTITLED_CONTENTS = "\n".join(
    f"{n}.{k} Section on topic {n}{k} ........ {10 * n + k}"
    for n in range(1, 4)
    for k in range(1, 4)
)
PROSE = """Index structures speed up lookups. A B-tree keeps keys sorted in pages of
size 4096 and splits a full page in two. The height grows by one level only when
the root splits, so a lookup reads about log n pages. Hash indexes answer only
equality; they cannot serve a range such as keys between 10 and 20.
Measurements on a table of 10 000 000 rows follow in section 4.
"""
MEASUREMENTS = "Run Latency ms\n" + "\n".join(f"run {n} took {n * 3}" for n in range(1, 9))


def test_contents_and_index_pages_give_no_chunks() -> None:
    from shared.chunking import is_navigation_page

    assert is_navigation_page(CONTENTS)
    assert is_navigation_page(INDEX)
    assert is_navigation_page(UNTITLED_CONTENTS)
    assert not is_navigation_page(PROSE)
    assert not is_navigation_page(MEASUREMENTS)
    chunks = chunk_pages([CONTENTS, PROSE, INDEX])
    assert {chunk.page_number for chunk in chunks} == {2}
    assert len(chunk_pages([CONTENTS], skip_navigation=False)) == 1


def test_extraction_unfolds_ligatures() -> None:
    from shared.pdf import normalise_text

    assert normalise_text("Deﬁnition des Schlüssel\u00adworts, ﬂow, \uff21\uff22\uff23, x²") == (
        "Definition des Schlüsselworts, flow, ABC, x2"
    )
