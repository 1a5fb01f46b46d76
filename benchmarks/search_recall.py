"""Vector recall and whole-request latency of POST /search/ at 100k chunks, over several seeds.

    .venv/bin/python -m benchmarks.search_recall [--chunks 100000] [--queries 60]
        [--seeds 1,2,3] [--ef 40,100,200,400] [--quick] [--data-dir DIR]
        [--shared-buffers SIZE]

Data (per seed, in a fresh embedded PostgreSQL): ``--chunks`` chunks in 2000
materials of 100 courses in 10 majors; 1536-dimension unit vectors clustered
around 200 topics (real embeddings cluster; uniform noise is a worst case no
corpus has), and ~120 words of text per chunk drawn from its topic's
vocabulary and a common one, so the lexical arm has real work. Materials
carry their ``chunk_count`` as ingestion leaves it.

Queries are held out (never inserted): half near one topic, half *between*
two topics (an equal mix of two centres plus noise: the hard case, where
recall was 0.63), each with words of its topics. Each is run unfiltered,
filtered to one course (1% of the chunks) and to one major (10%). Every
material holds one topic, and a topic's materials all sit in one major
(material m: topic 119m mod 200, major m mod 10), so a major drawn apart from
the query leaves out the query's topic nine times in ten: its nearest chunks
are then far from the query, the hardest case for a filtered HNSW scan.

Measured:

- recall@10 of the vector arm exactly as production runs it
  (``shared.search._vector_arm``: the production statement, plan choice and
  planner settings), against the exact top 10 of the same filters, at each
  ``hnsw.ef_search`` in ``--ef`` (production: ``EF_SEARCH``);
- the latency of the whole request through the real search function
  (functions-framework app, JWT verification, user lookup, rate limit, both
  arms, fusion, snippets, JSON), p50 and p95, sequential, from the client;
- the vector arm's plan when the planner is left alone and when steered.

The query embedder is a table of the held-out vectors (model ``bench``): what
is measured is retrieval, not a model. The machine's load is printed beside
the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

TOPICS = 200
COURSES = 100
MAJORS = 10
MATERIALS = 2000
WORDS_PER_CHUNK = 120
TOPIC_WORDS = 40
COMMON_WORDS = 400
DIMENSIONS = 1536
MODEL = "bench"
SPREAD = 0.6  # noise amplitude around a topic centre (per dimension, uniform)


def vocabulary(generator: random.Random) -> list[str]:
    """Pronounceable made-up words: topic words first (TOPICS x TOPIC_WORDS), then common ones."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    seen: set[str] = set()
    words: list[str] = []
    while len(words) < TOPICS * TOPIC_WORDS + COMMON_WORDS:
        word = "".join(generator.choice(syllables) for _ in range(generator.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def load(connection: Any, chunks: int, seed: int, words: list[str]) -> None:
    connection.execute(text("SELECT setseed(:s)"), {"s": (seed % 1000) / 1000})
    statements = [
        "SET maintenance_work_mem = '2GB'",
        "DROP INDEX ix_material_chunks_embedding_hnsw",
        f"INSERT INTO majors (id, name, slug) SELECT gen_random_uuid(), 'Major ' || n, "
        f"'major-' || n FROM generate_series(1, {MAJORS}) n",
        "INSERT INTO users (id, auth0_id, email, name) "
        "VALUES (gen_random_uuid(), 'bench', 'bench@example.edu', 'Bench')",
        "INSERT INTO lecturers (id, name) VALUES (gen_random_uuid(), 'Bench')",
        "INSERT INTO material_types (id, display_name) VALUES (gen_random_uuid(), 'Bench')",
        f"""
        INSERT INTO courses (id, code, name, major_id, year_id, semester)
        SELECT gen_random_uuid(), 'B' || lpad(n::text, 3, '0'), 'Course ' || n,
               (SELECT id FROM majors ORDER BY slug OFFSET (n % {MAJORS}) LIMIT 1), 1, 1
          FROM generate_series(0, {COURSES - 1}) n
        """,
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
               'Material ' || n, 1, 2024, 'bench/' || n, 'm.pdf',
               md5(n::text), 1, 10, 'approved'
          FROM bench_materials
        """,
        """
        INSERT INTO materials (id, title, academic_year, material_year, course_id, lecturer_id,
            type_id, uploader_id, file_url, page_count, sha256, ingest_status)
        SELECT id, 'Material ' || n, 1, 2024, course_id, (SELECT id FROM lecturers LIMIT 1),
               (SELECT id FROM material_types LIMIT 1), (SELECT id FROM users LIMIT 1),
               'bench/' || n, 10, md5(n::text), 'ready'
          FROM bench_materials
        """,
        f"""
        CREATE TABLE bench_topics AS
        SELECT t, (SELECT array_agg(random() - 0.5) FROM generate_series(1, {DIMENSIONS})
                    WHERE t >= 0) AS centre
          FROM generate_series(0, {TOPICS - 1}) t
        """,
    ]
    for statement in statements:
        connection.execute(text(statement))
    # Topic t's chunks draw their words from words[t*TOPIC_WORDS ...] (skewed to the
    # first ones, as real vocabularies are) 60% of the time, else from the common words.
    connection.execute(
        text(
            f"""
            INSERT INTO material_chunks (id, material_id, chunk_index, content, embedding,
                embedding_model, page_number)
            SELECT gen_random_uuid(), m.id, g.k / {MATERIALS},
                   (SELECT string_agg(CASE WHEN random() < 0.6
                        THEN (CAST(:words AS text[]))[1 + t.t * {TOPIC_WORDS}
                              + floor(power(random(), 2) * {TOPIC_WORDS})::int + 0 * w.i]
                        ELSE (CAST(:words AS text[]))[1 + {TOPICS * TOPIC_WORDS}
                              + floor(power(random(), 3) * {COMMON_WORDS})::int] END, ' ')
                      FROM generate_series(1, {WORDS_PER_CHUNK}) AS w(i) WHERE g.k >= 0),
                   l2_normalize((SELECT array_agg(c + (random() - 0.5) * {SPREAD})
                                   FROM unnest(t.centre) c)::vector)::halfvec,
                   '{MODEL}', g.k / {MATERIALS} / 2 + 1
              FROM generate_series(0, :chunks - 1) AS g(k)
              JOIN bench_materials m ON m.n = mod(g.k, {MATERIALS})
              JOIN bench_topics t ON t.t = mod(g.k * 7919, {TOPICS})
            """
        ),
        {"words": words, "chunks": chunks},
    )
    connection.execute(
        text(
            "UPDATE materials m SET chunk_count = "
            "(SELECT count(*) FROM material_chunks c WHERE c.material_id = m.id)"
        )
    )


def build_index(engine: Engine, m: int | None = None, ef_construction: int | None = None) -> float:
    """(Re)build the HNSW index, by default with production's parameters; seconds taken."""
    from shared.db.models import HNSW_PARAMETERS

    m = HNSW_PARAMETERS["m"] if m is None else m
    if ef_construction is None:
        ef_construction = HNSW_PARAMETERS["ef_construction"]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("SET maintenance_work_mem = '2GB'"))
        connection.execute(text("SET max_parallel_maintenance_workers = 1"))
        connection.execute(text("DROP INDEX IF EXISTS ix_material_chunks_embedding_hnsw"))
        start = time.perf_counter()
        connection.execute(
            text(
                "CREATE INDEX ix_material_chunks_embedding_hnsw ON material_chunks "
                f"USING hnsw (embedding halfvec_cosine_ops) "
                f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
            )
        )
        elapsed = time.perf_counter() - start
        connection.execute(text("VACUUM ANALYZE"))
    return elapsed


def held_out_queries(
    connection: Any, count: int, seed: int, words: list[str]
) -> list[dict[str, Any]]:
    """Half near one topic, half between two; each with a course and a major to filter by."""
    generator = random.Random(seed * 7 + 1)
    # The noise is drawn by random() in PostgreSQL: seeded, so that a kept
    # database gives the same held-out queries on every run.
    connection.execute(text("SELECT setseed(:s)"), {"s": ((seed * 7 + 1) % 1000) / 1000})
    courses = [
        str(row[0]) for row in connection.execute(text("SELECT id FROM courses ORDER BY code"))
    ]
    majors = [
        str(row[0]) for row in connection.execute(text("SELECT id FROM majors ORDER BY slug"))
    ]
    queries = []
    for number in range(count):
        first = generator.randrange(TOPICS)
        between = number % 2 == 1
        second = (first + 1 + generator.randrange(TOPICS - 1)) % TOPICS if between else first
        mix = 0.5 if between else 1.0
        vector = connection.execute(
            text(
                "SELECT l2_normalize((SELECT array_agg(CAST(:mix AS float8) * a "
                "+ (1 - CAST(:mix AS float8)) * b + (random() - 0.5) * CAST(:spread AS float8)) "
                "FROM unnest(x.centre, y.centre) AS u(a, b))"
                "::vector)::text FROM bench_topics x, bench_topics y "
                "WHERE x.t = :first AND y.t = :second"
            ),
            {"mix": mix, "first": first, "second": second, "spread": SPREAD},
        ).scalar_one()
        topic_words = [
            words[topic * TOPIC_WORDS + generator.randrange(TOPIC_WORDS // 2)]
            for topic in (first, second, first)
        ]
        queries.append(
            {
                "text": f"q{number} " + " ".join(topic_words),
                "vector": json.loads(vector),
                "kind": "between topics" if between else "near a topic",
                "course_id": generator.choice(courses),
                "major_id": generator.choice(majors),
            }
        )
    return queries


FILTERS = ("unfiltered", "course (1%)", "major (10%)")


def _filters(query: dict[str, Any], name: str) -> Any:
    from shared.search import SearchFilters

    if name == "course (1%)":
        return SearchFilters(course_id=uuid.UUID(query["course_id"]))
    if name == "major (10%)":
        return SearchFilters(major_id=uuid.UUID(query["major_id"]))
    return SearchFilters()


def recall_table(
    engine: Engine, queries: list[dict[str, Any]], ef_values: Sequence[int]
) -> list[dict[str, Any]]:
    from shared import search as data

    rows = []
    candidates = data.CANDIDATES
    with Session(engine) as session:
        for name in FILTERS:
            truth: list[list[Any]] = []
            with session.begin():
                for query in queries:
                    statement = data.vector_statement(
                        query["vector"], MODEL, _filters(query, name), 10, "exact"
                    )
                    truth.append([row.id for row in session.execute(statement)])
            for ef_search in ef_values:
                found, times, full = [], [], 0
                for query in queries:
                    with session.begin():
                        start = time.perf_counter()
                        ids = data._vector_arm(
                            session,
                            query["vector"],
                            MODEL,
                            _filters(query, name),
                            candidates,
                            ef_search,
                        )
                        times.append((time.perf_counter() - start) * 1000)
                    found.append(ids[:10])
                    full += len(ids) >= candidates
                recall_by_kind: dict[str, list[float]] = {}
                for query, got, want in zip(queries, found, truth, strict=True):
                    share = len(set(got) & set(want)) / max(len(want), 1)
                    recall_by_kind.setdefault(query["kind"], []).append(share)
                rows.append(
                    {
                        "filter": name,
                        "ef_search": ef_search,
                        "recall": statistics.mean(v for vs in recall_by_kind.values() for v in vs),
                        "recall_between": statistics.mean(recall_by_kind["between topics"]),
                        "full": full / len(queries),
                        "p50": statistics.median(times),
                        "p95": percentile(times, 95),
                    }
                )
    return rows


def plans(engine: Engine, query: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The vector arm's access path per filter: left to the planner, and as production runs it."""
    from sqlalchemy.ext.compiler import compiles
    from sqlalchemy.sql.expression import ClauseElement, Executable

    from shared import search as data

    class Explain(Executable, ClauseElement):
        inherit_cache = False

        def __init__(self, statement: Any) -> None:
            self.statement = statement

    @compiles(Explain)
    def _explain(element: Explain, compiler: Any, **kw: Any) -> str:
        return "EXPLAIN " + str(compiler.process(element.statement, **kw))

    def access(session: Session, statement: Any) -> str:
        lines = [row[0] for row in session.execute(Explain(statement))]
        if any("embedding_hnsw" in line for line in lines):
            return "HNSW index"
        return (
            "exact (filters' indexes + sort)"
            if any("Index" in line for line in lines)
            else "sequential scan + sort"
        )

    found = {}
    with Session(engine) as session:
        for name in FILTERS:
            filters = _filters(query, name)
            with session.begin():
                plan = data.vector_plan(session, filters)
                planner = access(
                    session, data.vector_statement(query["vector"], MODEL, filters, 40, "index")
                )
                with data.steered(session, plan, data.EF_SEARCH):
                    steered = access(
                        session, data.vector_statement(query["vector"], MODEL, filters, 40, plan)
                    )
            found[name] = (planner, steered)
    return found


class _TableEmbedder:
    """The held-out query vectors by query text (model ``bench``)."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.model = MODEL
        self.dimensions = DIMENSIONS
        self._vectors = vectors

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._vectors[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vectors[text]


@contextmanager
def jwks_server(body: bytes) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def request_latency(
    database_url: str, queries: list[dict[str, Any]], directory: Path
) -> list[dict[str, Any]]:
    """p50/p95 of the whole POST /search/ through the real app, per filter."""
    from functions_framework import create_app

    from shared import embeddings
    from shared.db.engine import dispose_engine
    from shared.local.issuer import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalIssuer

    issuer = LocalIssuer(directory / "key.pem")
    token = issuer.token(subject="bench", email="bench@example.edu", name="Bench")
    headers = {"Authorization": f"Bearer {token}"}
    saved = dict(os.environ)
    rows = []
    with jwks_server(json.dumps(issuer.jwks()).encode()) as jwks_url:
        os.environ.update(
            {
                "DATABASE_URL": database_url,
                "AUTH_ISSUER": LOCAL_ISSUER,
                "AUTH_AUDIENCE": LOCAL_AUDIENCE,
                "AUTH_JWKS_URL": jwks_url,
                "GCS_BUCKET": "bench",
                "EMBEDDINGS_PROVIDER": "local",
                "RATE_LIMIT_SEARCHES_PER_MINUTE": "100000",
                "LOG_LEVEL": "WARNING",
            }
        )
        try:
            dispose_engine()
            embeddings.reset_embedder()
            embeddings._embedder = _TableEmbedder({q["text"]: q["vector"] for q in queries})
            main = Path(__file__).resolve().parents[1] / "functions" / "search" / "main.py"
            client = create_app("search", str(main)).test_client()  # type: ignore[no-untyped-call]
            for name in FILTERS:
                times, sizes = [], []
                for warm_up in (True, False):
                    for query in queries[: 5 if warm_up else None]:
                        body: dict[str, Any] = {"query": query["text"], "limit": 10}
                        filters = _filters(query, name)
                        for key in ("course_id", "major_id"):
                            if getattr(filters, key) is not None:
                                body[key] = str(getattr(filters, key))
                        start = time.perf_counter()
                        response = client.post("/", json=body, headers=headers)
                        elapsed = (time.perf_counter() - start) * 1000
                        if response.status_code != 200:
                            raise RuntimeError(f"{response.status_code}: {response.data[:300]!r}")
                        if not warm_up:
                            times.append(elapsed)
                            sizes.append(len(response.get_json()["results"]))
                rows.append(
                    {
                        "filter": name,
                        "p50": statistics.median(times),
                        "p95": percentile(times, 95),
                        "results": statistics.mean(sizes),
                    }
                )
        finally:
            embeddings._embedder = None
            dispose_engine()
            os.environ.clear()
            os.environ.update(saved)
    return rows


def percentile(values: list[float], share: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share / 100 * (len(ordered) - 1)))]


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_seed(args: argparse.Namespace, seed: int) -> tuple[list[Any], list[Any], dict[str, Any]]:
    from shared.local.postgres import create_database, start_postgres
    from shared.migrate import upgrade

    with tempfile.TemporaryDirectory() as directory:
        # --data-dir keeps each seed's database between runs (a 100k build takes
        # 10-20 min); later migrations are applied to a kept one on reuse.
        kept = args.data_dir is not None
        pgdata = (
            Path(args.data_dir) / f"chunks-{args.chunks}-seed-{seed}"
            if kept
            else Path(directory) / "pg"
        )
        server = start_postgres(pgdata, delete_on_exit=not kept)
        if kept and args.shared_buffers:
            server = with_shared_buffers(server, pgdata, args.shared_buffers)
        url = create_database(server, "bench")
        engine = create_engine(url)
        try:
            with engine.begin() as connection:
                upgrade(connection)
                loaded_before = connection.scalar(
                    text("SELECT count(*) FROM materials WHERE chunk_count > 0")
                )
                buffers = connection.scalar(text("SHOW shared_buffers"))
            words = vocabulary(random.Random(seed))
            print(f"seed {seed}: shared_buffers {buffers}", flush=True)
            if loaded_before:
                print(f"seed {seed}: reusing the database in {pgdata}", flush=True)
                with engine.connect() as connection:
                    graph = connection.scalar(
                        text("SELECT to_regclass('ix_material_chunks_embedding_hnsw')")
                    )
                if graph is None:  # a run stopped between the load and the build
                    print(f"  HNSW built in {build_index(engine):.0f} s", flush=True)
            else:
                started = time.perf_counter()
                with engine.begin() as connection:
                    load(connection, args.chunks, seed, words)
                loaded = time.perf_counter() - started
                built = build_index(engine)
                print(
                    f"seed {seed}: {args.chunks} chunks loaded in {loaded:.0f} s, "
                    f"HNSW built in {built:.0f} s (load {load_average()})",
                    flush=True,
                )
            with engine.begin() as connection:
                queries = held_out_queries(connection, args.queries, seed, words)
            recall = recall_table(engine, queries, args.ef)
            for row in recall:  # as measured: a later failure does not lose them
                rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
                print(f"  {json.dumps(rounded)}", flush=True)
            latency = request_latency(url, queries, Path(directory))
            found_plans = plans(engine, queries[0])
            if args.alternative_index and kept:
                raise SystemExit("--alternative-index rebuilds the graph: not with --data-dir")
            if args.alternative_index:
                m, ef_construction = (int(v) for v in args.alternative_index.split(","))
                built = build_index(engine, m, ef_construction)
                print(
                    f"  alternative index m={m}, ef_construction={ef_construction}: {built:.0f} s"
                )
                recall += [
                    {**row, "filter": f"{row['filter']}, m={m}"}
                    for row in recall_table(engine, queries, args.ef)
                ]
            return recall, latency, found_plans
        finally:
            engine.dispose()
            server.cleanup()


def with_shared_buffers(server: Any, pgdata: Path, size: str) -> Any:
    """The server for ``pgdata`` restarted with ``shared_buffers = size`` (kept in its
    postgresql.auto.conf). The embedded default is 128MB, where the 100k database
    (about 1 GB with its indexes) is mostly read from the OS cache; Cloud SQL's
    default is a third of the instance's memory, about 1.2 GB on the tier
    docs/scaling.md gives that size (db-custom-1-3840)."""
    from shared.local.postgres import database_url, start_postgres

    engine = create_engine(database_url(server, "postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            current = connection.scalar(text("SHOW shared_buffers"))
            if current == size:
                return server
            connection.execute(text(f"ALTER SYSTEM SET shared_buffers = '{size}'"))
    finally:
        engine.dispose()
    server.cleanup()  # stops it (a kept directory is never deleted)
    return start_postgres(pgdata)


def data_ef_search() -> int:
    from shared.search import EF_SEARCH

    return EF_SEARCH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--ef", default="40,100,200,400")
    parser.add_argument(
        "--alternative-index",
        metavar="M,EF_CONSTRUCTION",
        help="after measuring the production index (shared.db.models.HNSW_PARAMETERS), rebuild it "
        "with these and measure recall again",
    )
    parser.add_argument(
        "--quick", action="store_true", help="10k chunks, 30 queries, one seed (under 2 min)"
    )
    parser.add_argument(
        "--shared-buffers",
        metavar="SIZE",
        help="with --data-dir: restart the kept server with this shared_buffers (e.g. 1GB)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="keep each seed's database under DIR and reuse it on the next run "
        "(same --chunks and seed)",
    )
    args = parser.parse_args()
    if args.quick:
        args.chunks, args.queries, args.seeds = 10_000, 30, "1"
        args.ef = str(data_ef_search())
    args.ef = [int(value) for value in str(args.ef).split(",")]
    seeds = [int(value) for value in args.seeds.split(",")]

    from shared import search as data

    recall_rows: list[dict[str, Any]] = []
    latency_rows: list[dict[str, Any]] = []
    for seed in seeds:
        recall, latency, plan = run_seed(args, seed)
        recall_rows += [{**row, "seed": seed} for row in recall]
        latency_rows += [{**row, "seed": seed} for row in latency]
        for name, (planner, steered) in plan.items():
            print(f"  plan, {name}: planner alone -> {planner}; production -> {steered}")
    print(
        f"\nVector arm (production code; EF_SEARCH={data.EF_SEARCH}, "
        f"EXACT_CHUNKS={data.EXACT_CHUNKS}), {args.chunks} chunks, {args.queries} held-out "
        f"queries per seed, seeds {args.seeds} (load {load_average()}):\n"
    )
    print(
        "| filter | ef_search | recall@10 mean (min-max over seeds) "
        "| between topics | full pages | p50 ms | p95 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in dict.fromkeys(row["filter"] for row in recall_rows):
        for ef_search in args.ef:
            rows = [r for r in recall_rows if r["filter"] == name and r["ef_search"] == ef_search]
            recalls = [r["recall"] for r in rows]
            print(
                f"| {name} | {ef_search} | {statistics.mean(recalls):.3f} "
                f"({min(recalls):.3f}-{max(recalls):.3f}) | "
                f"{statistics.mean(r['recall_between'] for r in rows):.3f} | "
                f"{statistics.mean(r['full'] for r in rows):.2f} | "
                f"{statistics.mean(r['p50'] for r in rows):.1f} | "
                f"{max(r['p95'] for r in rows):.1f} |"
            )
    print(f"\nWhole POST /search/ request (limit 10), sequential (load {load_average()}):\n")
    print("| filter | p50 ms | p95 ms (worst seed) | results per page |")
    print("|---|---|---|---|")
    for name in FILTERS:
        rows = [r for r in latency_rows if r["filter"] == name]
        print(
            f"| {name} | {statistics.mean(r['p50'] for r in rows):.1f} | "
            f"{max(r['p95'] for r in rows):.1f} | "
            f"{statistics.mean(r['results'] for r in rows):.1f} |"
        )


if __name__ == "__main__":
    main()
