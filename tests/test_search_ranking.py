"""Lexical ranking: query terms by language, BM25 (IDF, term frequency, length), the header."""

from __future__ import annotations

import math
import random
import uuid
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.orm import Session, sessionmaker

from shared import search as data
from shared.db.models import MaterialChunk
from shared.embeddings import LocalEmbedder
from shared.search_terms import Term, detect_language, query_terms
from tests.factories import make_course, make_material

EMBEDDER = LocalEmbedder()


def _material(session: Session, course: Any, title: str, pages: list[str]) -> uuid.UUID:
    material = make_material(session, course=course, title=title)
    session.execute(
        insert(MaterialChunk),
        [
            {
                "id": uuid.uuid4(),
                "material_id": material.id,
                "chunk_index": n,
                "content": content,
                "embedding": EMBEDDER.embed_documents([content])[0],
                "embedding_model": EMBEDDER.model,
                "page_number": n + 1,
            }
            for n, content in enumerate(pages)
        ],
    )
    material.chunk_count = len(pages)
    return material.id


def _lexical(session: Session, query: str, course_id: uuid.UUID) -> list[dict[str, Any]]:
    return data.search(
        session,
        query_text=query,
        query_vector=EMBEDDER.embed_query(query),
        model=EMBEDDER.model,
        filters=data.SearchFilters(course_id=course_id),
        limit=10,
        arms=frozenset({"lexical"}),
    )


@pytest.mark.parametrize(
    ("query", "language", "kept"),
    [
        (
            "Was ist der Unterschied zwischen einem Prozess und einem Thread",
            "german",
            ["unterschied", "prozess", "thread"],
        ),
        ("why do cells die", "english", ["cells", "die"]),
        ("a b c tree", "english", ["tree"]),
        ("מה זה תהליך במערכת הפעלה", "hebrew", ["תהליך", "במערכת", "הפעלה"]),
        ("ما هو نظام التشغيل", "arabic", ["نظام", "التشغيل"]),
    ],
)
def test_stop_words_are_dropped_for_the_query_language_only(
    sessions: sessionmaker[Session], query: str, language: str, kept: list[str]
) -> None:
    with sessions.begin() as session:
        found, terms = query_terms(session, query)
    assert found == language
    assert [term.word for term in terms] == kept


def test_terms_are_stem_prefixes_or_whole_words(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        _, terms = query_terms(session, "scheduling memory OS Häuser ﬁle")
    assert terms == [
        Term("scheduling", "schedul", prefix=True),
        Term("memory", "memor", prefix=True),
        Term("os", "os", prefix=False),  # too short to be a prefix of anything useful
        Term("häuser", "häuser", prefix=True),
        Term("file", "file", prefix=True),  # NFKC: the ligature is two letters
    ]
    assert detect_language([]) == "english"


def test_hostile_terms_are_one_quoted_operand() -> None:
    assert Term("o'r", "o'r", prefix=True).tsquery() == "'o''r':*"
    assert Term("a\\b", "a\\b", prefix=False).tsquery() == "'a\\\\b'"


def test_bm25_term_frequency_length_and_rarity(sessions: sessionmaker[Session]) -> None:
    filler = " ".join(f"filler{n}" for n in range(60))
    with sessions.begin() as session:
        course = make_course(session)
        ids = {
            "once": _material(session, course, "Notes A", ["The kernel schedules work. " + filler]),
            "thrice": _material(
                session,
                course,
                "Notes B",
                ["The kernel, the kernel and again the kernel schedules work. " + filler],
            ),
            "short": _material(session, course, "Notes C", ["The kernel schedules work."]),
            # "work" is everywhere; "semaphore" is rare and names the topic.
            "rare": _material(
                session, course, "Notes D", ["A semaphore guards the work. " + filler]
            ),
        }
        many = _lexical(session, "kernel", course.id)
        rare = _lexical(session, "semaphore work", course.id)
    order = [r["material_id"] for r in many]
    # Equal lengths: more occurrences first; one occurrence: the shorter chunk first.
    assert order.index(ids["thrice"]) < order.index(ids["once"])
    assert order.index(ids["short"]) < order.index(ids["once"])
    assert rare[0]["material_id"] == ids["rare"]


def test_title_and_course_name_weigh_more_than_the_text(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        course = make_course(session, name="Compilers")
        plain = _material(session, course, "Chapter 4", ["Parsing turns tokens into a tree."])
        titled = _material(session, course, "Parsing", ["Parsing turns tokens into a tree."])
        results = _lexical(session, "parsing", course.id)
        by_course = _lexical(session, "compilers tokens", course.id)
    assert [r["material_id"] for r in results] == [titled, plain]
    assert {r["material_id"] for r in by_course} == {titled, plain}


def test_one_letter_words_never_match(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        course = make_course(session)
        _material(session, course, "Letters", ["b-trees balance branches by splitting."])
        assert _lexical(session, "b", course.id) == []


def test_arms_must_be_known(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session, pytest.raises(ValueError, match="arms"):
        data.search(
            session,
            query_text="x",
            query_vector=EMBEDDER.embed_query("x"),
            model=EMBEDDER.model,
            filters=data.SearchFilters(),
            limit=1,
            arms=frozenset({"bm25"}),
        )


def test_words_around_angle_brackets_are_indexed(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        course = make_course(session)
        material = _material(
            session, course, "Pointers", ["Follow node->successor while i<count, see <manual>."]
        )
        for word in ("node", "successor", "count", "manual"):
            results = _lexical(session, word, course.id)
            assert [r["material_id"] for r in results] == [material], word


def _reference_ranking(
    session: Session, terms: list[Term], course_id: uuid.UUID
) -> list[uuid.UUID]:
    """BM25 as documented (docs/architecture.md), written plainly: statistics per term,
    every matched chunk fetched with its per-term ``ts_rank``, the arithmetic in Python."""
    queries = [term.tsquery() for term in terms]
    total = float(session.scalar(text("SELECT sum(chunk_count) FROM materials")) or 0)
    frequencies = [
        int(
            session.scalar(
                text(
                    "SELECT count(*) FROM material_chunks "
                    "WHERE search_vector @@ to_tsquery('simple', :query)"
                ),
                {"query": query},
            )
            or 0
        )
        for query in queries
    ]
    total = max([total, *frequencies, 1.0])
    present = [(q, f) for q, f in zip(queries, frequencies, strict=True) if f]
    ranks = ", ".join(
        f"ts_rank('{{1,1,1,1}}', c.search_vector, to_tsquery('simple', :q{n}), 0), "
        f"ts_rank('{{1,1,1,1}}', to_tsvector('simple', m.title || ' ' || co.name), "
        f"to_tsquery('simple', :q{n}), 0)"
        for n in range(len(present))
    )
    rows = session.execute(
        text(
            f"SELECT c.id, m.title, CAST(c.material_id AS text), c.chunk_index, "
            f"length(c.search_vector), {ranks} "
            "FROM material_chunks c JOIN materials m ON m.id = c.material_id "
            "JOIN courses co ON co.id = m.course_id "
            "WHERE c.search_vector @@ to_tsquery('simple', :any) AND m.is_published "
            "AND m.course_id = :course"
        ),
        {
            "any": " | ".join(query for query, _ in present),
            "course": course_id,
            **{f"q{n}": query for n, (query, _) in enumerate(present)},
        },
    ).all()
    average = max(sum(row[4] for row in rows) / len(rows), 1.0)
    scale = math.pi**2 / 6

    def score(row: Any) -> float:
        value = 0.0
        normaliser = (1 - data.BM25_B) + data.BM25_B * row[4] / average
        for n, (_, frequency) in enumerate(present):
            idf = math.log(1 + (total - frequency + 0.5) / (frequency + 0.5))
            tf = (row[5 + 2 * n] + data.HEADER_WEIGHT * row[6 + 2 * n]) * scale
            value += idf * (data.BM25_K1 + 1) * tf / (tf + data.BM25_K1 * normaliser)
        return value

    return [row[0] for row in sorted(rows, key=lambda row: (-score(row), row[1], row[2], row[3]))]


def test_the_lexical_arm_ranks_as_plain_bm25(sessions: sessionmaker[Session]) -> None:
    """The arm's one scoring statement (each term scored once per chunk, headers once
    per material, constant queries) orders every matched chunk as the plain formula."""
    generator = random.Random(17)
    vocabulary = ["kernel", "kernels", "thread", "scheduler", "lock", "page", "memory"]
    vocabulary += [f"word{n}" for n in range(40)]
    with sessions.begin() as session:
        course = make_course(session, name="Operating Systems")
        for number in range(12):
            title = generator.choice(["Kernel notes", "Threads", "Paging", f"Sheet {number}"])
            pages = [
                " ".join(generator.choice(vocabulary) for _ in range(generator.randint(5, 80)))
                for _ in range(generator.randint(1, 6))
            ]
            _material(session, course, title, pages)
        _, terms = query_terms(session, "kernel thread scheduling memory systems")
        found = data._lexical_arm(session, terms, data.SearchFilters(course_id=course.id), 500)
        reference = _reference_ranking(session, terms, course.id)
    assert len(reference) > 20  # most chunks match: the order is what is compared
    assert found == reference
