"""Hybrid retrieval over published materials: HNSW cosine + BM25-style full text, fused by RRF.

Two arms, each returning up to ``candidates`` chunk ids in rank order:

- vector: the query embedded by the configured provider, compared only with
  chunks embedded by the same model, nearest first by cosine distance. The
  plan is chosen here, not left to the planner, whose cost model does not see
  the vectors stored out of line (TOAST) and so picks a sequential scan long
  after the HNSW index is faster. When the filters leave at most
  ``EXACT_CHUNKS`` chunks (counted from the materials' ``chunk_count``), the
  exact distance of each is computed through the btree on ``material_id``
  (recall 1.0, and cheaper than walking the graph past thousands of rows the
  filters reject); otherwise the HNSW index is used, with pgvector 0.8's
  iterative scan (``hnsw.iterative_scan = relaxed_order``) so that filtered
  searches keep scanning until the page is full. Relaxed order may return rows
  slightly out of order; they are re-sorted by distance here.
- lexical: BM25 over the chunks' 'simple' tsvector (GIN index) and a header
  field (the material's title and course name, weighted ``HEADER_WEIGHT``
  times a word of the text). The query is read by ``shared.search_terms``
  (language guessed, that language's stop words dropped, Snowball stems
  matched as prefixes, no one-letter terms). Per term: IDF from the number of
  chunks holding it, a saturating term frequency (``ts_rank`` of the single
  term, which sums 1/n² over its n occurrences) and length normalisation by
  the chunk's lexeme count against the matched chunks' average.

Reciprocal Rank Fusion (k = 60) adds 1/(60 + rank) from each arm a chunk
appears in. Results are collapsed per page (a material's page appears once,
by its best chunk): the page is what a student opens, and a long file may
fill the results with its distinct pages when they are the best matches.
Every order has a stable tie-break (title, material, chunk index), never a
random id alone, so identical data ranks identically. Both arms keep only
published materials: an undone approval hides its material but keeps its
chunks (for when it is approved again), and they are never returned.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    String,
    cast,
    func,
    literal,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, REAL, TSQUERY
from sqlalchemy.orm import Session

from shared.db.models import Course, Material, MaterialChunk, MaterialType
from shared.search_terms import Term, normalise, query_terms

__all__ = [
    "ARMS",
    "BM25_B",
    "BM25_K1",
    "CANDIDATES",
    "EF_SEARCH",
    "EXACT_CHUNKS",
    "HEADER_WEIGHT",
    "RRF_K",
    "SearchFilters",
    "search",
    "snippet",
]

ARMS = frozenset({"lexical", "vector"})
RRF_K = 60
CANDIDATES = 40
# The HNSW beam. Measured at 100k chunks (benchmarks/search_recall.py): a query
# between two topics needs a beam wider than the dense cluster it lands in to
# see the other; 600 gave recall@10 0.95 (m=16) / 1.00 (m=32) where 100 gave
# 0.78 / 0.93, at p95 13-14 ms for the arm.
EF_SEARCH = 600
# Up to this many chunks under the filters, exact distances beat the index.
# Measured at 100k chunks (benchmarks/search_recall.py, 1 GB shared buffers):
# a major's 10k chunks take 48-52 ms p50, 51-57 ms p95 exactly (recall 1.0),
# where the HNSW iterative scan took 32-33 ms p50 but 75-84 ms p95 at
# recall@10 0.89, walking thousands of tuples past chunks the filter
# rejects. Exact grows with the filtered chunks (about 4.5 µs each), the
# scan with the share the filter rejects (docs/benchmarks.md).
EXACT_CHUNKS = 12000
BM25_K1 = 1.2
BM25_B = 0.75
HEADER_WEIGHT = 2.0
SNIPPET_WORDS = 40

# ts_rank of one term sums w/n² over its n occurrences and divides by
# pi²/6; with every weight 1, multiplying back gives 1, 1.25, 1.36, ... for
# 1, 2, 3 occurrences: a term frequency that saturates (as BM25's k1 does).
_RANK_WEIGHTS = literal([1.0, 1.0, 1.0, 1.0], ARRAY(REAL))
_RANK_SCALE = math.pi**2 / 6

# One statement for the collection statistics: each term as PostgreSQL reads
# it (sent back as tsquery text, so the scoring statement can take it as a
# constant instead of parsing it again on every row), the number of chunks
# holding it (through the GIN index), and the collection's size, exact: the
# planner's estimate (reltuples) moves with autovacuum, and ranking with it,
# so two identical runs could order results differently. The size is one row
# per material, so its sum is cheap; the pipeline keeps chunk_count equal to
# the material's chunk rows.
_TERM_STATISTICS = text(
    "SELECT CAST(query AS text) AS query, "
    "(SELECT count(*) FROM material_chunks WHERE search_vector @@ query) AS frequency, "
    "(SELECT coalesce(sum(chunk_count), 0) FROM materials) AS total "
    "FROM unnest(CAST(:terms AS text[])) WITH ORDINALITY AS t(term, position), "
    "LATERAL to_tsquery('simple', term) AS query "
    "ORDER BY position"
)


@dataclass(frozen=True)
class SearchFilters:
    course_id: uuid.UUID | None = None
    major_id: uuid.UUID | None = None
    type_id: uuid.UUID | None = None
    material_id: uuid.UUID | None = None
    academic_year: int | None = None
    material_year: int | None = None


def _material_conditions(filters: SearchFilters) -> list[ColumnElement[bool]]:
    # Chunks of a hidden (unpublished) material stay, for when it is shown again.
    conditions: list[ColumnElement[bool]] = [Material.is_published.is_(True)]
    if filters.material_id is not None:
        conditions.append(Material.id == filters.material_id)
    if filters.course_id is not None:
        conditions.append(Material.course_id == filters.course_id)
    if filters.type_id is not None:
        conditions.append(Material.type_id == filters.type_id)
    if filters.academic_year is not None:
        conditions.append(Material.academic_year == filters.academic_year)
    if filters.material_year is not None:
        conditions.append(Material.material_year == filters.material_year)
    if filters.major_id is not None:
        conditions.append(Course.major_id == filters.major_id)
    return conditions


def _filtered(statement: Select[Any], filters: SearchFilters) -> Select[Any]:
    statement = statement.join(Material, Material.id == MaterialChunk.material_id)
    if filters.major_id is not None:
        statement = statement.join(Course, Course.id == Material.course_id)
    return statement.where(*_material_conditions(filters))


def _filtered_chunks(session: Session, filters: SearchFilters) -> int:
    """How many chunks the filters leave, from the materials' own counts (cheap)."""
    statement = select(func.coalesce(func.sum(Material.chunk_count), 0)).select_from(Material)
    if filters.major_id is not None:
        statement = statement.join(Course, Course.id == Material.course_id)
    return int(session.scalar(statement.where(*_material_conditions(filters))) or 0)


def _unfiltered(filters: SearchFilters) -> bool:
    return filters == SearchFilters()


def vector_plan(session: Session, filters: SearchFilters) -> str:
    """ "exact" when few chunks pass the filters, else "index"."""
    if _unfiltered(filters):
        return "index"
    return "exact" if _filtered_chunks(session, filters) <= EXACT_CHUNKS else "index"


def vector_statement(
    vector: list[float], model: str, filters: SearchFilters, candidates: int, plan: str
) -> Select[Any]:
    """The vector arm's query, nearest first; ``plan`` is "index" or "exact"."""
    distance: ColumnElement[Any] = MaterialChunk.embedding.cosine_distance(vector)
    if plan == "exact":
        # "+ 0" makes the order an expression the HNSW index cannot serve, so
        # the filters' indexes pick the rows and every distance is exact.
        distance = distance + literal(0.0, Float)
    labelled = distance.label("distance")
    statement = _filtered(
        select(
            MaterialChunk.id,
            MaterialChunk.material_id,
            MaterialChunk.chunk_index,
            Material.title,
            labelled,
        ).where(MaterialChunk.embedding_model == model),
        filters,
    )
    # Ordered by the label: the distance is computed once per row, and the
    # query vector is sent once.
    return statement.order_by(labelled).limit(candidates)


@contextmanager
def steered(session: Session, plan: str, ef_search: int) -> Iterator[None]:
    """Planner settings for the vector arm's one statement, reset after it.

    For the index plan, sequential scans and explicit sorts are off, which
    leaves the HNSW index's order as the only way to rank: with a filter
    holding a few percent of the chunks the planner otherwise reads every
    chunk's row (or every filtered chunk's vector) and sorts, pricing the
    heap without the vectors, which live out of line (TOAST).
    ``set_config(..., true)`` keeps every setting inside this transaction,
    and both are switched back on right after the statement, so the
    statements after it are planned as usual.
    """
    if plan != "index":
        yield
        return
    session.execute(
        text(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.ef_search', :ef_search, true), "
            "set_config('enable_seqscan', 'off', true), "
            "set_config('enable_sort', 'off', true)"
        ),
        {"ef_search": str(ef_search)},
    )
    try:
        yield
    finally:
        session.execute(
            text(
                "SELECT set_config('enable_seqscan', 'on', true), "
                "set_config('enable_sort', 'on', true)"
            )
        )


def _vector_arm(
    session: Session,
    vector: list[float],
    model: str,
    filters: SearchFilters,
    candidates: int,
    ef_search: int,
) -> list[uuid.UUID]:
    plan = vector_plan(session, filters)
    with steered(session, plan, ef_search):
        rows = list(session.execute(vector_statement(vector, model, filters, candidates, plan)))
    # Equal distances (the same text in two files) go by the stable key the
    # lexical arm uses too, so the fused order is the same on every run.
    rows.sort(key=lambda row: (row.distance, row.title, str(row.material_id), row.chunk_index))
    return [row.id for row in rows]


def _idf(total: float, frequency: int) -> float:
    """BM25's IDF, never negative (the +1 inside the log)."""
    return math.log(1 + (total - frequency + 0.5) / (frequency + 0.5))


def _lexical_arm(
    session: Session, terms: list[Term], filters: SearchFilters, candidates: int
) -> list[uuid.UUID]:
    """Chunks holding any query term, best BM25 score first.

    Without IDF a word found in every chunk ("cell", "process") would count as
    much as the rare word that names the topic; without length normalisation
    a long chunk would win by holding more of everything.
    """
    statistics = session.execute(_TERM_STATISTICS, {"terms": [t.tsquery() for t in terms]}).all()
    # Every row carries the same total; never below a term's own frequency, nor 1.
    total = max([1.0, *(max(float(row.total), float(row.frequency)) for row in statistics)])
    present = [(row.query, _idf(total, int(row.frequency))) for row in statistics if row.frequency]
    if not present:
        return []
    return list(session.scalars(lexical_statement(present, filters, candidates)))


def _tsquery(query: str) -> ColumnElement[Any]:
    # A cast of a bound value: in the plan it is a constant, parsed once, where
    # to_tsquery('simple', ...) would be called again for every row.
    return cast(literal(query), TSQUERY)


def lexical_statement(
    present: list[tuple[str, float]], filters: SearchFilters, candidates: int
) -> Select[Any]:
    """The lexical arm's scoring query for terms with their IDF, best first.

    Each per-row quantity is computed once, on narrow rows: the term
    frequencies in the chunk (``ts_rank`` of the single term), its length,
    and, per material rather than per chunk, the frequencies in the header
    (title and course name). The average length is taken over the matched
    chunks, and then each chunk's score is arithmetic on those columns.
    """
    queries = [_tsquery(query) for query, _ in present]
    matched = (
        select(
            MaterialChunk.id,
            MaterialChunk.material_id,
            MaterialChunk.chunk_index,
            func.length(MaterialChunk.search_vector).label("length"),
            *(
                func.ts_rank(_RANK_WEIGHTS, MaterialChunk.search_vector, query, 0).label(
                    f"text_{number}"
                )
                for number, query in enumerate(queries)
            ),
        )
        .join(Material, Material.id == MaterialChunk.material_id)
        .where(
            MaterialChunk.search_vector.op("@@")(
                _tsquery(" | ".join(f"({query})" for query, _ in present))
            ),
            *_material_conditions(filters),
        )
    )
    if filters.major_id is not None:
        matched = matched.join(Course, Course.id == Material.course_id)
    matched_rows = matched.cte("matched")
    header = func.to_tsvector(
        literal_column("'simple'::regconfig"), Material.title.concat(" ").concat(Course.name)
    )
    headers = (
        select(
            Material.id,
            Material.title,
            *(
                func.ts_rank(_RANK_WEIGHTS, header, query, 0).label(f"header_{number}")
                for number, query in enumerate(queries)
            ),
        )
        .join(Course, Course.id == Material.course_id)
        .where(Material.id.in_(select(matched_rows.c.material_id)))
        .cte("headers")
        # Once per material: inlined, the header would be parsed again for
        # every matched chunk.
        .prefix_with("MATERIALIZED")
    )
    average = select(
        cast(func.greatest(func.avg(matched_rows.c.length), 1), Float).label("length")
    ).cte("average")
    normaliser = literal(1 - BM25_B) + literal(BM25_B) * matched_rows.c.length / average.c.length
    score: ColumnElement[Any] = literal(0.0)
    for number, (_, idf) in enumerate(present):
        frequency = (
            matched_rows.c[f"text_{number}"]
            + literal(HEADER_WEIGHT) * headers.c[f"header_{number}"]
        ) * literal(_RANK_SCALE)
        score = score + literal(idf * (BM25_K1 + 1)) * frequency / (
            frequency + literal(BM25_K1) * normaliser
        )
    return (
        select(matched_rows.c.id)
        .join(headers, headers.c.id == matched_rows.c.material_id)
        .join(average, literal(True))
        .order_by(
            score.desc(),
            headers.c.title,
            func.cast(matched_rows.c.material_id, String),
            matched_rows.c.chunk_index,
        )
        .limit(candidates)
    )


def _fuse(arms: list[list[uuid.UUID]]) -> dict[uuid.UUID, float]:
    scores: dict[uuid.UUID, float] = {}
    for arm in arms:
        for rank, chunk_id in enumerate(arm, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    return scores


_SNIPPET_WORD = re.compile(r"\S+")
_LETTERS = re.compile(r"[^\W_]+")


def snippet(content: str, terms: list[Term], *, size: int = SNIPPET_WORDS) -> str:
    """The ``size`` consecutive words of ``content`` holding the most distinct query terms.

    Built here, not by ``ts_headline``, whose parser reads ``<...>`` as an
    HTML tag and drops it ("a<b" and "x -> y" came back mangled). The text is
    returned exactly as stored (no markup): the client highlights.
    """
    spans = [match.span() for match in _SNIPPET_WORD.finditer(content)]
    if len(spans) <= size:
        return content
    hits: list[frozenset[int]] = []
    for start, end in spans:
        found: set[int] = set()
        for token in _LETTERS.findall(normalise(content[start:end])):
            for number, term in enumerate(terms):
                if token.startswith(term.match) if term.prefix else token == term.match:
                    found.add(number)
        hits.append(frozenset(found))
    # A sliding window: each word enters and leaves the counts once.
    counts: dict[int, int] = {}
    words_hit = 0

    def move(word: frozenset[int], step: int) -> None:
        nonlocal words_hit
        words_hit += step if word else 0
        for number in word:
            counts[number] = counts.get(number, 0) + step
            if not counts[number]:
                del counts[number]

    for word in hits[:size]:
        move(word, 1)
    best, best_score = 0, -1
    for first in range(0, len(spans) - size + 1):
        if first:
            move(hits[first - 1], -1)
            move(hits[first + size - 1], 1)
        # Distinct terms first, then words holding a term; the earliest window on a tie.
        window_score = len(counts) * 1000 + words_hit
        if window_score > best_score:
            best, best_score = first, window_score
    text_ = content[spans[best][0] : spans[best + size - 1][1]]
    return ("… " if best > 0 else "") + text_ + (" …" if best + size < len(spans) else "")


def search(
    session: Session,
    *,
    query_text: str,
    query_vector: list[float],
    model: str,
    filters: SearchFilters,
    limit: int,
    arms: frozenset[str] = ARMS,
) -> list[dict[str, Any]]:
    """The best ``limit`` pages for the query, fused score first.

    ``arms`` selects which retrieval arms run ("lexical", "vector"); with one,
    its own order is the ranking (benchmarks score each arm alone).
    """
    unknown = arms - ARMS
    if unknown or not arms:
        raise ValueError(f"arms must be a non-empty subset of {sorted(ARMS)}, got {sorted(arms)}")
    # A page can hold several matching chunks, collapsed into one result.
    candidates = max(CANDIDATES, 4 * limit)
    ef_search = min(max(EF_SEARCH, candidates), 1000)  # 1000: pgvector's maximum
    vector_ids = (
        _vector_arm(session, query_vector, model, filters, candidates, ef_search)
        if "vector" in arms
        else []
    )
    _, terms = query_terms(session, query_text)
    lexical_ids = (
        _lexical_arm(session, terms, filters, candidates) if terms and "lexical" in arms else []
    )
    scores = _fuse([vector_ids, lexical_ids])
    if not scores:
        return []
    rows = session.execute(
        select(
            MaterialChunk.id,
            MaterialChunk.material_id,
            MaterialChunk.chunk_index,
            MaterialChunk.page_number,
            MaterialChunk.content,
            Material.title,
            Material.course_id,
            Course.name.label("course_name"),
            MaterialType.display_name.label("type_name"),
        )
        .join(Material, Material.id == MaterialChunk.material_id)
        .join(Course, Course.id == Material.course_id)
        .join(MaterialType, MaterialType.id == Material.type_id)
        .where(MaterialChunk.id.in_(list(scores)), Material.is_published)
    ).all()
    # RRF ties are common (one arm's first is the other's second). They go to
    # the lexical order (IDF-weighted over this very corpus), then the vector
    # order, then a stable key.
    lexical_rank = {chunk_id: rank for rank, chunk_id in enumerate(lexical_ids)}
    vector_rank = {chunk_id: rank for rank, chunk_id in enumerate(vector_ids)}
    ranked = sorted(
        rows,
        key=lambda row: (
            -scores[row.id],
            lexical_rank.get(row.id, len(lexical_rank)),
            vector_rank.get(row.id, len(vector_rank)),
            row.title,
            str(row.material_id),
            row.chunk_index,
        ),
    )
    seen: set[tuple[uuid.UUID, int]] = set()
    results: list[dict[str, Any]] = []
    for row in ranked:
        page = (
            row.material_id,
            row.page_number if row.page_number is not None else -row.chunk_index,
        )
        if page in seen:
            continue
        seen.add(page)
        results.append(
            {
                "chunk_id": row.id,
                "material_id": row.material_id,
                "title": row.title,
                "course_id": row.course_id,
                "course_name": row.course_name,
                "type_name": row.type_name,
                "page_number": row.page_number,
                "snippet": snippet(row.content, terms),
                "score": round(scores[row.id], 6),
                "content": row.content,
            }
        )
        if len(results) == limit:
            break
    return results
