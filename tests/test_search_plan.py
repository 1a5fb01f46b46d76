"""The vector arm's plan: the HNSW index where it is the better plan, exact distances where
the filters leave few chunks, and full pages either way (EXPLAIN on the real planner)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import ClauseElement, Executable

from shared import search as data
from shared.db.models import HNSW_PARAMETERS

MODEL = "plan-test"
CHUNKS_PER_MATERIAL = 10
MATERIALS = 300  # 3000 chunks: 20 materials (200 chunks, 6.7%) in course A, the rest in B
QUERY = [1.0 if n % 7 == 0 else 0.0 for n in range(1536)]


class Explain(Executable, ClauseElement):
    inherit_cache = False

    def __init__(self, statement: Any, verbose: bool = False) -> None:
        self.statement = statement
        self.verbose = verbose


@compiles(Explain)
def _explain(element: Explain, compiler: Any, **kw: Any) -> str:
    prefix = "EXPLAIN (VERBOSE) " if element.verbose else "EXPLAIN "
    return prefix + str(compiler.process(element.statement, **kw))


def plan_of(session: Session, statement: Any, *, verbose: bool = False) -> str:
    return "\n".join(row[0] for row in session.execute(Explain(statement, verbose)))


@pytest.fixture(scope="module")
def corpus(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """Two majors of 3000 chunks each, random unit vectors generated in SQL, analysed."""
    statements = [
        "INSERT INTO majors (id, name, slug) VALUES "
        "(gen_random_uuid(), 'Plan A', 'plan-a'), (gen_random_uuid(), 'Plan B', 'plan-b')",
        "INSERT INTO users (id, auth0_id, email, name) VALUES "
        "(gen_random_uuid(), 'plan', 'plan@example.edu', 'Plan')",
        "INSERT INTO lecturers (id, name) VALUES (gen_random_uuid(), 'Plan')",
        "INSERT INTO material_types (id, display_name) VALUES (gen_random_uuid(), 'Plan')",
        "INSERT INTO courses (id, code, name, major_id, year_id, semester) "
        "SELECT gen_random_uuid(), 'P' || slug, 'Course ' || slug, id, 1, 1 "
        "FROM majors WHERE slug LIKE 'plan-%'",
        "CREATE TEMP TABLE plan_materials ON COMMIT DROP AS "
        "SELECT gen_random_uuid() AS id, n, (SELECT c.id FROM courses c "
        "WHERE c.code = CASE WHEN n < 20 THEN 'Pplan-a' ELSE 'Pplan-b' END) AS course_id "
        "FROM generate_series(0, :materials - 1) n",
        "INSERT INTO file_requests (id, user_id, course_id, type_id, lecturer_id, title, "
        "academic_year, material_year, file_url, original_filename, sha256, size_bytes, "
        "page_count, status) "
        "SELECT id, (SELECT id FROM users WHERE auth0_id = 'plan'), course_id, "
        "(SELECT id FROM material_types WHERE display_name = 'Plan'), "
        "(SELECT id FROM lecturers WHERE name = 'Plan'), 'Plan ' || n, 1, 2024, "
        "'plan/' || n, 'p.pdf', md5('plan' || n), 1, 10, 'approved' FROM plan_materials",
        "INSERT INTO materials (id, title, academic_year, material_year, course_id, "
        "lecturer_id, type_id, uploader_id, file_url, page_count, sha256, "
        "ingest_status, chunk_count) "
        "SELECT r.id, r.title, 1, 2024, r.course_id, r.lecturer_id, r.type_id, r.user_id, "
        "r.file_url, 10, r.sha256, 'ready', :per FROM file_requests r "
        "JOIN plan_materials p ON p.id = r.id",
        # Built after the load (as a restore would): inserting row by row into the graph
        # takes ten times longer. Same definition as the migration's.
        "DROP INDEX ix_material_chunks_embedding_hnsw",
        "INSERT INTO material_chunks (id, material_id, chunk_index, content, embedding, "
        "embedding_model, page_number) "
        "SELECT gen_random_uuid(), p.id, k, 'plan chunk ' || k, "
        "l2_normalize((SELECT array_agg(random() - 0.5) FROM generate_series(1, 1536) "
        "WHERE k >= 0 AND p.n >= 0)::vector)::halfvec, :model, k / 2 + 1 "
        "FROM plan_materials p, generate_series(0, :per - 1) k",
        "CREATE INDEX ix_material_chunks_embedding_hnsw ON material_chunks "
        "USING hnsw (embedding halfvec_cosine_ops) "
        "WITH (m = {m}, ef_construction = {ef_construction})".format(**HNSW_PARAMETERS),
    ]
    values = {"materials": MATERIALS, "per": CHUNKS_PER_MATERIAL, "model": MODEL}
    with sessions.begin() as session:
        for statement in statements:
            clause = text(statement)
            session.execute(clause, {k: v for k, v in values.items() if f":{k}" in statement})
        course = session.scalar(text("SELECT id FROM courses WHERE code = 'Pplan-a'"))
        material = session.scalar(
            text(
                "SELECT m.id FROM materials m JOIN courses c ON c.id = m.course_id "
                "WHERE c.code = 'Pplan-a' ORDER BY m.title LIMIT 1"
            )
        )
    # As autovacuum would: the planner sees the tables as they are.
    with sessions.begin() as session:
        session.execute(text("ANALYZE material_chunks, materials, courses"))
    return {"course": course, "material": material}


def test_a_course_of_a_few_percent_uses_the_index_where_the_planner_alone_scans(
    sessions: sessionmaker[Session], corpus: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A course with 6.7% of the chunks: the planner alone reads every chunk's row
    (sequential scan, hash join, sort); production walks the HNSW index.

    At 3000 chunks the course holds 200, below ``EXACT_CHUNKS``; the threshold is
    lowered to what the same share is at 40k chunks and more (over 2000 chunks).
    """
    monkeypatch.setattr(data, "EXACT_CHUNKS", 100)
    filters = data.SearchFilters(course_id=corpus["course"])
    with sessions.begin() as session:
        assert data.vector_plan(session, filters) == "index"
        statement = data.vector_statement(QUERY, MODEL, filters, 40, "index")
        alone = plan_of(session, statement)
        with data.steered(session, "index", data.EF_SEARCH):
            steered = plan_of(session, statement)
            rows = list(session.execute(statement))
        after = session.execute(
            text("SELECT current_setting('enable_seqscan'), current_setting('enable_sort')")
        ).one()
    assert "Seq Scan on material_chunks" in alone, alone
    assert "ix_material_chunks_embedding_hnsw" not in alone
    assert "Index Scan using ix_material_chunks_embedding_hnsw" in steered, steered
    assert "Seq Scan on material_chunks" not in steered
    assert tuple(after) == ("on", "on")  # the steering ended with the statement
    # Filtered, the iterative scan still fills the candidates.
    assert len(rows) == 40


def test_unfiltered_searches_use_the_index(
    sessions: sessionmaker[Session], corpus: dict[str, Any]
) -> None:
    filters = data.SearchFilters()
    with sessions.begin() as session:
        assert data.vector_plan(session, filters) == "index"
        with data.steered(session, "index", data.EF_SEARCH):
            plan = plan_of(session, data.vector_statement(QUERY, MODEL, filters, 40, "index"))
    assert "Index Scan using ix_material_chunks_embedding_hnsw" in plan, plan


def _brute_force(session: Session, condition: str, value: Any) -> list[Any]:
    """The true 40 nearest chunks under ``condition``: ordered by an expression no
    index serves, so no plan choice can change the answer."""
    return list(
        session.scalars(
            text(
                "SELECT c.id FROM material_chunks c JOIN materials m ON m.id = c.material_id "
                f"WHERE {condition} "
                "ORDER BY (c.embedding <=> CAST(:q AS halfvec(1536))) + 0, c.id LIMIT 40"
            ),
            {"value": value, "q": str(QUERY)},
        )
    )


def test_few_chunks_under_the_filters_are_ranked_exactly(
    sessions: sessionmaker[Session], corpus: dict[str, Any]
) -> None:
    """One material (10 chunks): exact distances through the btree, all of them in order."""
    filters = data.SearchFilters(material_id=corpus["material"])
    with sessions.begin() as session:
        assert data.vector_plan(session, filters) == "exact"
        statement = data.vector_statement(QUERY, MODEL, filters, 40, "exact")
        plan = plan_of(session, statement)
        found = [row.id for row in session.execute(statement)]
        truth = _brute_force(session, "c.material_id = :value", corpus["material"])
    assert "ix_material_chunks_embedding_hnsw" not in plan, plan
    assert found == truth


def test_the_lexical_statement_parses_each_query_and_header_once(
    sessions: sessionmaker[Session], corpus: dict[str, Any]
) -> None:
    """Queries are constants of the plan (not ``to_tsquery`` per row), the headers a
    materialized CTE (one ``to_tsvector`` per material), and the order arithmetic on
    columns computed once: no ranking function in the sort key."""
    present = [("'plan':*", 1.5), ("'chunk'", 0.5)]
    statement = data.lexical_statement(present, data.SearchFilters(), 40)
    with sessions.begin() as session:
        plan = plan_of(session, statement, verbose=True)
        found = list(session.scalars(statement))
    sort_keys = [line for line in plan.splitlines() if "Sort Key:" in line]
    assert "to_tsquery" not in plan, plan
    assert "CTE headers" in plan, plan
    assert sort_keys, plan
    assert not any("ts_rank" in line or "to_tsvector" in line for line in sort_keys), plan
    assert len(found) == 40  # every corpus chunk holds "plan"


def test_a_filter_of_thousands_of_chunks_is_ranked_exactly(
    sessions: sessionmaker[Session], corpus: dict[str, Any]
) -> None:
    """Course B holds 2800 chunks: more than the 2000 once ranked exactly, within
    ``EXACT_CHUNKS`` (a major's share at 100k, where the filtered HNSW scan found 0.89
    of the true top 10): the exact plan, equal to brute force."""
    with sessions.begin() as session:
        course = session.scalar(text("SELECT id FROM courses WHERE code = 'Pplan-b'"))
        filters = data.SearchFilters(course_id=course)
        assert data.vector_plan(session, filters) == "exact"
        statement = data.vector_statement(QUERY, MODEL, filters, 40, "exact")
        plan = plan_of(session, statement)
        found = [row.id for row in session.execute(statement)]
        truth = _brute_force(session, "m.course_id = :value", course)
    assert "ix_material_chunks_embedding_hnsw" not in plan, plan
    assert found == truth
