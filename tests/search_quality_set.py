"""The search-quality set: real text, labelled questions, page-level scores.

The set lives in ``benchmarks/search_quality/`` (sources and licences in its
SOURCES.md): materials (man pages stored as paged text, two real PDFs) and
questions, each labelled with the (material, page)s that answer it. This
module turns the materials into PDF bytes, ingests them through the real
pipeline (``shared.pipeline.ingest``: bucket object, claim, extraction,
chunking, embedding, write), runs the questions through
``shared.search.search`` and scores the pages it returns. Used by
``benchmarks/search_quality.py`` and ``tests/test_search_quality.py``.

Scores are page-level: the results (chunks, in rank order) become the list
of distinct (material, page) pairs in the order they first appear; a
question is a hit at k if one of its labelled pages is among the first k,
and its reciprocal rank is 1/position of the first labelled page (0 when none
is among the results).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.embeddings import Embedder
    from shared.storage import Bucket

SET_DIRECTORY = Path(__file__).resolve().parents[1] / "benchmarks" / "search_quality"
FONT = SET_DIRECTORY / "fonts" / "DejaVuSansMono.ttf"
ARM_SETS: dict[str, frozenset[str]] = {
    "lexical": frozenset({"lexical"}),
    "vector": frozenset({"vector"}),
    "hybrid": frozenset({"lexical", "vector"}),
}
LIMIT = 10

Page = tuple[str, int]  # (material id in the set, page number)


@dataclass(frozen=True)
class Material:
    id: str
    file: str
    title: str
    course: str
    language: str

    def pdf(self) -> bytes:
        """The material as the PDF a student would upload."""
        path = SET_DIRECTORY / self.file
        if path.suffix == ".pdf":
            return path.read_bytes()
        return render_pages(path.read_text(encoding="utf-8").split("\f"), title=self.title)


@dataclass(frozen=True)
class Question:
    id: str
    split: str
    language: str
    cross_lingual: bool
    question: str
    answers: dict[str, frozenset[int]]

    def answered_by(self, page: Page) -> bool:
        return page[1] in self.answers.get(page[0], frozenset())

    @property
    def group(self) -> str:
        """en, de (question and passage in that language) or cross-lingual."""
        return "cross-lingual" if self.cross_lingual else self.language


def load_set() -> tuple[dict[str, str], list[Material], list[Question]]:
    """(course code → course name, materials, questions) as the set's files hold them."""
    listing = json.loads((SET_DIRECTORY / "materials.json").read_text(encoding="utf-8"))
    materials = [Material(**entry) for entry in listing["materials"]]
    questions = [
        Question(
            id=entry["id"],
            split=entry["split"],
            language=entry["language"],
            cross_lingual=entry["cross_lingual"],
            question=entry["question"],
            answers={name: frozenset(pages) for name, pages in entry["answers"].items()},
        )
        for entry in json.loads((SET_DIRECTORY / "questions.json").read_text(encoding="utf-8"))[
            "questions"
        ]
    ]
    return listing["courses"], materials, questions


def render_pages(pages: Sequence[str], *, title: str) -> bytes:
    """One PDF page per stored page, in a monospaced Unicode font, as the terminal showed it.

    Each page's font size is chosen so that its longest line fits the width
    (a few man pages hold 200-column tables) and its lines fit the height;
    automatic page breaks are off, so page N of the text is page N of the PDF.
    """
    from fpdf import FPDF

    document = FPDF(format="A4")
    document.set_title(title)
    document.set_auto_page_break(False)
    document.set_margins(10, 10, 10)
    document.add_font("mono", fname=str(FONT))
    width, height = 190.0, 277.0  # mm inside the margins
    for page in pages:
        lines = page.rstrip("\n").split("\n")
        longest = max((len(line) for line in lines), default=1) or 1
        # DejaVu Sans Mono advances 0.602 em; 1 pt = 0.3528 mm; lines at 1.25 em.
        size = min(9.0, width / (0.61 * longest * 0.3528), height / (1.25 * len(lines) * 0.3528))
        line_height = 1.25 * size * 0.3528
        document.add_page()
        document.set_font("mono", size=size)
        for number, line in enumerate(lines):
            if not line.strip():
                continue
            document.set_xy(10, 10 + number * line_height)
            document.cell(text=line)
    return bytes(document.output())


@dataclass
class IngestedSet:
    """Where the set's materials and courses are in the database."""

    materials: dict[uuid.UUID, str] = field(default_factory=dict)  # database id → set id
    courses: dict[str, uuid.UUID] = field(default_factory=dict)  # course code → database id
    material_courses: dict[str, uuid.UUID] = field(default_factory=dict)  # set id → course id
    chunks: int = 0


def ingest_set(
    settings: Settings,
    bucket: Bucket,
    embedder: Embedder,
    courses: dict[str, str],
    materials: Iterable[Material],
) -> IngestedSet:
    """Approved materials for the set, each ingested by the pipeline from its bucket object."""
    from sqlalchemy import func, select

    from shared.db.engine import transaction
    from shared.db.models import MaterialChunk
    from shared.pipeline import ObjectNotice, ingest
    from shared.storage import request_metadata
    from tests.factories import (
        make_course,
        make_lecturer,
        make_major,
        make_material,
        make_material_type,
        make_user,
    )

    ingested = IngestedSet()
    materials = list(materials)
    documents = {material.id: material.pdf() for material in materials}
    with transaction(settings) as session:
        major = make_major(session)
        uploader = make_user(session)
        lecturer = make_lecturer(session)
        material_type = make_material_type(session)
        course_rows = {
            code: make_course(session, major=major, code=code, name=name)
            for code, name in courses.items()
        }
        ingested.courses = {code: course.id for code, course in course_rows.items()}
        uploader_id = uploader.id
        rows = []
        for material in materials:
            data = documents[material.id]
            row = make_material(
                session,
                course=course_rows[material.course],
                uploader=uploader,
                lecturer=lecturer,
                material_type=material_type,
                title=material.title,
                page_count=_page_count(data),
            )
            rows.append((material, row.id, row.file_url, row.course_id))
    for material, material_id, name, course_id in rows:
        data = documents[material.id]
        metadata = request_metadata(
            request_id=material_id,
            sha256=hashlib.sha256(data).hexdigest(),
            uploader_id=uploader_id,
            course_id=course_id,
        )
        generation = bucket.upload(name, data, metadata)
        outcome = ingest(
            settings,
            ObjectNotice(bucket.name, name, generation, metadata),
            bucket=bucket,
            embedder=embedder,
        )
        if not outcome.startswith("ready"):
            raise RuntimeError(f"{material.id}: ingestion ended {outcome!r}")
        ingested.materials[material_id] = material.id
        ingested.material_courses[material.id] = course_id
    with transaction(settings) as session:
        ingested.chunks = int(session.scalar(select(func.count()).select_from(MaterialChunk)) or 0)
    return ingested


def analyze(settings: Settings) -> None:
    """Refresh the planner's statistics, as autovacuum does some time after a load.

    The ranking no longer reads them (IDF's collection size is the exact sum
    of ``materials.chunk_count``; it read ``pg_class.reltuples`` once, and
    ranked differently before and after an ANALYZE): measuring after this is
    the production state, and the benchmark reports how many rankings it
    changed (0 since).
    """
    from sqlalchemy import text

    from shared.db.engine import transaction

    with transaction(settings) as session:
        session.execute(text("ANALYZE material_chunks, materials"))


def _page_count(data: bytes) -> int:
    import io

    from pypdf import PdfReader

    return len(PdfReader(io.BytesIO(data)).pages)


@dataclass
class Run:
    """One pass of every question through one arm set: each question's ranked pages."""

    rankings: dict[str, list[Page]]
    result_counts: dict[str, int]
    snippets: dict[str, list[str]] = field(default_factory=dict)  # per ranked page, its snippet


def run_questions(
    settings: Settings,
    ingested: IngestedSet,
    questions: Sequence[Question],
    vectors: dict[str, list[float]],
    model: str,
    arms: frozenset[str],
    *,
    course_filter: bool = False,
    limit: int = LIMIT,
) -> Run:
    """Search every question (filtered to its material's course, if asked) and rank its pages."""
    from shared.db.engine import transaction
    from shared.search import SearchFilters, search

    run = Run(rankings={}, result_counts={})
    for question in questions:
        filters = SearchFilters()
        if course_filter:
            first = next(iter(question.answers))
            filters = SearchFilters(course_id=ingested.material_courses[first])
        with transaction(settings) as session:
            results = search(
                session,
                query_text=question.question,
                query_vector=vectors[question.id],
                model=model,
                filters=filters,
                limit=limit,
                arms=arms,
            )
        run.rankings[question.id] = ranked_pages(results, ingested.materials)
        run.result_counts[question.id] = len(results)
        shown: dict[Page, str] = {}
        for result in results:
            page = (ingested.materials[result["material_id"]], int(result["page_number"]))
            shown.setdefault(page, str(result.get("snippet") or ""))
        run.snippets[question.id] = [shown[page] for page in run.rankings[question.id]]
    return run


def ranked_pages(results: Iterable[dict[str, Any]], materials: dict[uuid.UUID, str]) -> list[Page]:
    pages: list[Page] = []
    for result in results:
        page = (materials[result["material_id"]], int(result["page_number"]))
        if page not in pages:
            pages.append(page)
    return pages


@dataclass(frozen=True)
class Scores:
    questions: int
    hit_at_1: float
    hit_at_5: float
    mrr: float
    material_at_1: float  # the first result is from an answering material

    def as_dict(self) -> dict[str, float]:
        return {
            "questions": self.questions,
            "hit@1": round(self.hit_at_1, 4),
            "hit@5": round(self.hit_at_5, 4),
            "mrr": round(self.mrr, 4),
            "material@1": round(self.material_at_1, 4),
        }


def reciprocal_rank(question: Question, ranking: Sequence[Page]) -> float:
    for position, page in enumerate(ranking, start=1):
        if question.answered_by(page):
            return 1.0 / position
    return 0.0


def score(questions: Sequence[Question], rankings: dict[str, list[Page]]) -> Scores:
    if not questions:
        return Scores(0, 0.0, 0.0, 0.0, 0.0)
    ranks = [reciprocal_rank(question, rankings[question.id]) for question in questions]
    first_material = [
        bool(rankings[question.id]) and rankings[question.id][0][0] in question.answers
        for question in questions
    ]
    return Scores(
        questions=len(questions),
        hit_at_1=statistics.mean(rank == 1.0 for rank in ranks),
        hit_at_5=statistics.mean(rank >= 1 / 5 for rank in ranks),
        mrr=statistics.mean(ranks),
        material_at_1=statistics.mean(first_material),
    )


def changed_rankings(runs: Sequence[Run]) -> int:
    """How many questions' ranked pages differ between any two runs."""
    if not runs:
        return 0
    first = runs[0].rankings
    return sum(any(run.rankings[key] != first[key] for run in runs[1:]) for key in first)
