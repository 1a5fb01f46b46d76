"""HNSW recall and latency at 100k chunks, unfiltered and filtered to a 1% course.

    .venv/bin/python -m benchmarks.search_recall [--chunks 100000] [--queries 100]

Synthetic 1536-dimension unit vectors clustered around topics (real embeddings
cluster; uniform noise would be a worst case no corpus has) are generated
inside PostgreSQL, the HNSW index (m=16, ef_construction=64, cosine) is built
after the load, and each query's exact top 10 (a sequential scan) is compared
with the index's answer at several ``hnsw.ef_search`` values. Filtered queries
use the production shape: chunks joined to materials, ``course_id`` = one of 100
courses, pgvector 0.8 iterative scans (relaxed order, re-sorted). Latency is
measured from the client over the Unix socket, the query vector pre-formatted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

TOPICS = 200
COURSES = 100
MATERIALS = 2000


def load(connection: Any, chunks: int) -> None:
    statements = [
        "SET maintenance_work_mem = '3GB'",
        "SET max_parallel_maintenance_workers = 1",
        "DROP INDEX ix_material_chunks_embedding_hnsw",
        "INSERT INTO majors (id, name, slug) VALUES (gen_random_uuid(), 'Bench', 'bench')",
        "INSERT INTO users (id, auth0_id, email, name) "
        "VALUES (gen_random_uuid(), 'bench', 'bench@example.edu', 'Bench')",
        "INSERT INTO lecturers (id, name) VALUES (gen_random_uuid(), 'Bench')",
        "INSERT INTO material_types (id, display_name) VALUES (gen_random_uuid(), 'Bench')",
        f"INSERT INTO courses (id, code, name, major_id, year_id, semester) "
        f"SELECT gen_random_uuid(), 'B' || n, 'Course ' || n, "
        f"(SELECT id FROM majors LIMIT 1), 1, 1 "
        f"FROM generate_series(1, {COURSES}) n",
        f"""
        CREATE TEMP TABLE bench_materials AS
        SELECT gen_random_uuid() AS id, n,
               (SELECT id FROM courses ORDER BY code OFFSET (n % {COURSES}) LIMIT 1) AS course_id
          FROM generate_series(0, {MATERIALS - 1}) n
        """,
        """
        INSERT INTO file_requests (id, user_id, course_id, type_id, lecturer_id, title,
            academic_year, material_year, file_url, original_filename, sha256, size_bytes,
            page_count, status)
        SELECT id, (SELECT id FROM users LIMIT 1), course_id,
               (SELECT id FROM material_types LIMIT 1), (SELECT id FROM lecturers LIMIT 1),
               'M' || n, 1, 2024, 'bench/' || n, 'm.pdf',
               md5(n::text), 1, 10, 'approved'
          FROM bench_materials
        """,
        """
        INSERT INTO materials (id, title, academic_year, material_year, course_id, lecturer_id,
            type_id, uploader_id, file_url, page_count, sha256, ingest_status)
        SELECT id, 'M' || n, 1, 2024, course_id, (SELECT id FROM lecturers LIMIT 1),
               (SELECT id FROM material_types LIMIT 1), (SELECT id FROM users LIMIT 1),
               'bench/' || n, 10,
               md5(n::text), 'ready'
          FROM bench_materials
        """,
        f"""
        CREATE TEMP TABLE topics AS
        SELECT t, (SELECT array_agg(random() - 0.5) FROM generate_series(1, 1536) WHERE t >= 0)
                   AS centre
          FROM generate_series(0, {TOPICS - 1}) t
        """,
        f"""
        INSERT INTO material_chunks (id, material_id, chunk_index, content, embedding,
            embedding_model, page_number)
        SELECT gen_random_uuid(), m.id, g.k / {MATERIALS}, 'chunk ' || g.k,
               l2_normalize((SELECT array_agg(c + (random() - 0.5) * 0.6)
                               FROM unnest(t.centre) c)::vector),
               'bench', 1
          FROM generate_series(0, {chunks - 1}) AS g(k)
          JOIN bench_materials m ON m.n = g.k % {MATERIALS}
          JOIN topics t ON t.t = (g.k * 7919) % {TOPICS}
        """,
    ]
    for statement in statements:
        connection.execute(text(statement))


def build_index(connection: Any) -> float:
    start = time.perf_counter()
    connection.execute(
        text(
            "CREATE INDEX ix_material_chunks_embedding_hnsw ON material_chunks "
            "USING hnsw (embedding halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
    )
    connection.execute(text("VACUUM ANALYZE material_chunks"))
    return time.perf_counter() - start


VECTOR_SQL = (
    "SELECT c.id FROM material_chunks c {join} WHERE c.embedding_model = 'bench' {where} "
    "ORDER BY c.embedding <=> CAST(:q AS halfvec(1536)) LIMIT 10"
)


def run(
    connection: Any, queries: list[tuple[str, Any]], *, filtered: bool, exact: bool, ef_search: int
) -> tuple[list[set[Any]], list[float]]:
    join = "JOIN materials m ON m.id = c.material_id" if filtered else ""
    where = "AND m.course_id = :course" if filtered else ""
    sql = text(VECTOR_SQL.format(join=join, where=where))
    connection.execute(text(f"SET hnsw.ef_search = {ef_search}"))
    connection.execute(text("SET hnsw.iterative_scan = relaxed_order"))
    connection.execute(text(f"SET enable_indexscan = {'off' if exact else 'on'}"))
    results, times = [], []
    for vector, course in queries:
        start = time.perf_counter()
        rows = connection.execute(sql, {"q": vector, "course": course}).scalars().all()
        times.append((time.perf_counter() - start) * 1000)
        results.append(set(rows))
    return results, times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--ef", default="40,80,160,320")
    args = parser.parse_args()

    from shared.local.postgres import create_database, start_postgres
    from shared.migrate import upgrade

    with tempfile.TemporaryDirectory() as directory:
        server = start_postgres(Path(directory) / "pg", delete_on_exit=True)
        engine = create_engine(create_database(server, "bench"))
        try:
            with engine.begin() as connection:
                upgrade(connection)
            started = time.perf_counter()
            with engine.begin() as connection:
                load(connection, args.chunks)
            print(f"loaded {args.chunks} chunks in {time.perf_counter() - started:.0f} s")
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("SET maintenance_work_mem = '3GB'"))
                connection.execute(text("SET max_parallel_maintenance_workers = 1"))
                print(f"HNSW index built in {build_index(connection):.0f} s")
                queries = [
                    tuple(row)
                    for row in connection.execute(
                        text(
                            "SELECT l2_normalize((SELECT array_agg(c + (random() - 0.5) * 0.6) "
                            "FROM unnest(t.centre) c)::vector)::text, "
                            "(SELECT id FROM courses WHERE q > 0 ORDER BY random() LIMIT 1) "
                            "FROM generate_series(1, :n) q "
                            "JOIN topics t ON t.t = mod(q * 31, :topics)"
                        ),
                        {"n": args.queries, "topics": TOPICS},
                    )
                ]
                report(connection, queries, [int(ef) for ef in args.ef.split(",")])
        finally:
            engine.dispose()
            server.cleanup()


def report(connection: Any, queries: list[Any], ef_values: list[int]) -> None:
    print("| query | ef_search | recall@10 | results/10 | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    for filtered in (False, True):
        truth, exact_times = run(connection, queries, filtered=filtered, exact=True, ef_search=40)
        label = "filtered to a 1% course" if filtered else "unfiltered"
        print(
            f"| {label} | exact scan | 1.000 | 10.0 | "
            f"{statistics.median(exact_times):.1f} | {percentile(exact_times, 95):.1f} |"
        )
        for ef in ef_values:
            found, times = run(connection, queries, filtered=filtered, exact=False, ef_search=ef)
            recall = statistics.mean(
                len(f & t) / max(len(t), 1) for f, t in zip(found, truth, strict=True)
            )
            counts = statistics.mean(len(f) for f in found)
            print(
                f"| {label} | {ef} | {recall:.3f} | {counts:.1f} | "
                f"{statistics.median(times):.1f} | {percentile(times, 95):.1f} |"
            )


def percentile(values: list[float], share: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share / 100 * (len(ordered) - 1)))]


if __name__ == "__main__":
    main()
