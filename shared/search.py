"""Hybrid retrieval over published materials: HNSW cosine + full text, fused by RRF.

Two arms, each returning ``candidates`` chunk ids in rank order:

- vector: the query embedded by the configured provider (``RETRIEVAL_QUERY``),
  compared only with chunks embedded by the same model, nearest first by
  cosine distance through the HNSW index. Filters sit in the same SQL; with
  pgvector 0.8's iterative index scans (``hnsw.iterative_scan =
  relaxed_order``) the scan keeps going until enough rows pass them, so a
  course holding 1% of all chunks still fills the page. Relaxed order may
  return rows slightly out of order, so they are re-sorted by distance here.
- lexical: the query's words (English stop words dropped, stemmed, then
  matched as prefixes, e.g. ``schedul:*``) OR-ed against the chunks'
  'simple'-configuration tsvector through its GIN index, ranked by the summed
  BM25-style IDF of the terms each chunk holds.

Reciprocal Rank Fusion (k = 60) adds 1/(60 + rank) from each arm a chunk
appears in. At most ``MAX_PER_MATERIAL`` chunks of one material are kept, so
one long file cannot fill the page. Both arms join the chunk's material and
keep only published ones: an undone approval hides its material but keeps
its chunks (for when it is approved again), and they are never returned.
"""

from __future__ import annotations

import math
import operator
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, String, case, func, literal, select, text
from sqlalchemy.orm import Session

from shared.db.models import Course, Material, MaterialChunk

__all__ = [
    "ARMS",
    "CANDIDATES",
    "EF_SEARCH",
    "MAX_PER_MATERIAL",
    "RRF_K",
    "SearchFilters",
    "search",
]

ARMS = frozenset({"lexical", "vector"})
RRF_K = 60
CANDIDATES = 40
EF_SEARCH = 100
MAX_PER_MATERIAL = 2
SNIPPET_OPTIONS = 'MaxFragments=1, MaxWords=40, MinWords=15, StartSel="", StopSel=""'

# The query's English stems (stop words dropped), each to be matched as a
# prefix of the 'simple' index's words. Snowball turns a final y into i
# (memory -> memori), which no longer prefixes the word itself, so a final i
# is dropped from the prefix (memor:*).
_QUERY_TERMS = text(
    "SELECT DISTINCT CASE WHEN length(lexeme) > 4 AND lexeme LIKE '%i' "
    "THEN left(lexeme, -1) ELSE lexeme END "
    "FROM unnest(to_tsvector('english', CAST(:query_text AS text)))"
)
# How many chunks hold each term (through the GIN index), and how many chunks there are.
# Each term is quoted into one tsquery operand exactly as _prefix_query does.
_DOCUMENT_FREQUENCIES = text(
    "SELECT term, (SELECT count(*) FROM material_chunks "
    "WHERE search_vector @@ to_tsquery('simple', "
    r"'''' || replace(replace(term, '\', '\\'), '''', '''''') || ''':*')) "
    "FROM unnest(CAST(:terms AS text[])) AS term"
)
_CHUNK_ESTIMATE = text(
    "SELECT reltuples FROM pg_class WHERE oid = CAST('material_chunks' AS regclass)"
)


def _prefix_query(term: str) -> ColumnElement[Any]:
    """A tsquery matching the term as a prefix, built in SQL from a bound parameter.

    The term becomes one quoted tsquery operand, its backslashes and quotes
    escaped as tsquery input wants them, so nothing in a query can be read as
    an operator (``&``, ``|``, ``!``, ``<->``, ``:*``, parentheses).
    ``quote_literal`` is not used: around a backslash it writes ``E'...'``,
    whose ``E`` tsquery reads as one more word.
    """
    escaped = func.replace(func.replace(term, "\\", "\\\\", type_=String), "'", "''", type_=String)
    return func.to_tsquery("simple", literal("'").concat(escaped).concat("':*"))


def _balanced(
    parts: list[ColumnElement[Any]],
    combine: Callable[[ColumnElement[Any], ColumnElement[Any]], ColumnElement[Any]],
) -> ColumnElement[Any]:
    """The parts combined pairwise as a balanced tree.

    A 1000-character query can hold hundreds of terms; chained one after the
    other their expression nests so deep that compiling it overflows Python's
    stack (a 500). Balanced, 500 terms nest 9 deep.
    """
    while len(parts) > 1:
        parts = [
            combine(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0]


def _any_of(terms: list[str]) -> ColumnElement[Any]:
    """A tsquery matching any of the terms as prefixes (tsquery || tsquery is OR)."""
    return _balanced([_prefix_query(term) for term in terms], lambda a, b: a.op("||")(b))


@dataclass(frozen=True)
class SearchFilters:
    course_id: uuid.UUID | None = None
    major_id: uuid.UUID | None = None
    type_id: uuid.UUID | None = None


def _filtered(statement: Select[Any], filters: SearchFilters) -> Select[Any]:
    # Chunks of a hidden (unpublished) material stay, for when it is shown again.
    statement = statement.join(Material, Material.id == MaterialChunk.material_id).where(
        Material.is_published
    )
    if filters.course_id is not None:
        statement = statement.where(Material.course_id == filters.course_id)
    if filters.type_id is not None:
        statement = statement.where(Material.type_id == filters.type_id)
    if filters.major_id is not None:
        statement = statement.join(Course, Course.id == Material.course_id).where(
            Course.major_id == filters.major_id
        )
    return statement


def _vector_arm(
    session: Session,
    vector: list[float],
    model: str,
    filters: SearchFilters,
    candidates: int,
    ef_search: int,
) -> list[uuid.UUID]:
    session.execute(
        text(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.ef_search', :ef_search, true)"
        ),
        {"ef_search": str(ef_search)},
    )
    distance = MaterialChunk.embedding.cosine_distance(vector).label("distance")
    statement = _filtered(
        select(MaterialChunk.id, distance).where(MaterialChunk.embedding_model == model),
        filters,
    )
    rows = session.execute(statement.order_by(distance).limit(candidates)).all()
    return [row.id for row in sorted(rows, key=lambda row: row.distance)]


def _lexical_arm(
    session: Session, terms: list[str], filters: SearchFilters, candidates: int
) -> list[uuid.UUID]:
    """Chunks holding any query term, ranked by the summed IDF of the terms they hold.

    Without IDF a word found in every chunk ("cell", "process") would count as
    much as the rare word that names the topic.
    """
    frequencies: dict[str, int] = {
        term: int(count) for term, count in session.execute(_DOCUMENT_FREQUENCIES, {"terms": terms})
    }
    total = max([float(session.scalar(_CHUNK_ESTIMATE) or 0), *frequencies.values(), 1.0])
    weights: list[ColumnElement[Any]] = [
        case(
            (
                MaterialChunk.search_vector.op("@@")(_prefix_query(term)),
                math.log(1 + (total - frequency + 0.5) / (frequency + 0.5)),
            ),
            else_=0.0,
        )
        for term, frequency in frequencies.items()
        if frequency
    ]
    score = _balanced([literal(0.0), *weights], operator.add).label("score")
    present = [term for term, frequency in frequencies.items() if frequency]
    if not present:
        return []
    any_term = _any_of(present)
    statement = _filtered(
        select(MaterialChunk.id, score).where(MaterialChunk.search_vector.op("@@")(any_term)),
        filters,
    )
    rows = session.execute(statement.order_by(score.desc(), MaterialChunk.id).limit(candidates))
    return [row.id for row in rows]


def _fuse(arms: list[list[uuid.UUID]]) -> dict[uuid.UUID, float]:
    scores: dict[uuid.UUID, float] = {}
    for arm in arms:
        for rank, chunk_id in enumerate(arm, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    return scores


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
    """The best ``limit`` chunks for the query, fused score first.

    ``arms`` selects which retrieval arms run ("lexical", "vector"); with one,
    its own order is the ranking (benchmarks score each arm alone).
    """
    unknown = arms - ARMS
    if unknown or not arms:
        raise ValueError(f"arms must be a non-empty subset of {sorted(ARMS)}, got {sorted(arms)}")
    candidates = max(CANDIDATES, 2 * limit)
    ef_search = max(EF_SEARCH, candidates)
    vector_ids = (
        _vector_arm(session, query_vector, model, filters, candidates, ef_search)
        if "vector" in arms
        else []
    )
    terms = [term for term in session.scalars(_QUERY_TERMS, {"query_text": query_text}) if term]
    lexical_ids = (
        _lexical_arm(session, terms, filters, candidates) if terms and "lexical" in arms else []
    )
    tsquery = _any_of(terms) if terms else func.to_tsquery("simple", "")
    scores = _fuse([vector_ids, lexical_ids])
    if not scores:
        return []
    snippet = func.ts_headline("simple", MaterialChunk.content, tsquery, SNIPPET_OPTIONS).label(
        "snippet"
    )
    rows = session.execute(
        select(
            MaterialChunk.id,
            MaterialChunk.material_id,
            MaterialChunk.page_number,
            MaterialChunk.content,
            Material.title,
            Material.course_id,
            snippet,
        )
        .join(Material, Material.id == MaterialChunk.material_id)
        .where(MaterialChunk.id.in_(list(scores)), Material.is_published)
    ).all()
    # RRF ties are common (one arm's first is the other's second). They go to
    # the lexical order: it is IDF-weighted over this very corpus, which
    # neither rank-only fusion nor a stateless embedder can see.
    lexical_rank = {chunk_id: rank for rank, chunk_id in enumerate(lexical_ids)}
    ranked = sorted(
        rows,
        key=lambda row: (-scores[row.id], lexical_rank.get(row.id, len(lexical_rank)), str(row.id)),
    )
    per_material: dict[uuid.UUID, int] = {}
    results: list[dict[str, Any]] = []
    for row in ranked:
        if per_material.get(row.material_id, 0) >= MAX_PER_MATERIAL:
            continue
        per_material[row.material_id] = per_material.get(row.material_id, 0) + 1
        results.append(
            {
                "chunk_id": row.id,
                "material_id": row.material_id,
                "title": row.title,
                "course_id": row.course_id,
                "page_number": row.page_number,
                "snippet": row.snippet,
                "score": round(scores[row.id], 6),
                "content": row.content,
            }
        )
        if len(results) == limit:
            break
    return results
