"""search: hybrid retrieval over every published material, with an optional answer."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Literal

import flask
import functions_framework
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints

from shared import answers, clock, ratelimit
from shared import search as data
from shared.config import Needs
from shared.db.engine import transaction
from shared.embeddings import get_embedder
from shared.fields import MultilineText
from shared.http import Call, build_router, json_response
from shared.responses import Shape

router = build_router(Needs.EMBEDDINGS)


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Annotated[MultilineText, StringConstraints(min_length=1, max_length=1000)]
    course_id: uuid.UUID | None = None
    major_id: uuid.UUID | None = None
    type_id: uuid.UUID | None = None
    material_id: uuid.UUID | None = Field(
        default=None, description="Search inside one file (e.g. 'ask this PDF')."
    )
    academic_year: int | None = Field(default=None, ge=1, le=4)
    material_year: int | None = Field(default=None, ge=1900, le=2200)
    limit: int = Field(default=10, ge=1, le=50)
    answer: StrictBool = False


class SearchResult(Shape):
    chunk_id: uuid.UUID
    material_id: uuid.UUID
    title: str
    course_id: uuid.UUID
    course_name: str
    type_name: str
    page_number: int | None
    snippet: str = Field(description="Plain text from the page, as stored (no markup).")
    score: float = Field(description="Fused rank score; only its order is meaningful.")


class Citation(Shape):
    material_id: uuid.UUID
    page_number: int | None


class AnswerQuote(Shape):
    text: str
    citation: Citation


class Answer(Shape):
    text: str = Field(
        description=(
            "Extractive: each quoted sentence followed by [n], the n-th citation. "
            "Generative: the model's answer, citing sources as [n]."
        )
    )
    citations: list[Citation]
    kind: Literal["extractive", "generative"]
    quotes: list[AnswerQuote] | None = Field(
        description="Extractive answers: the quoted sentences, each with its own page."
    )


class SearchReply(Shape):
    results: list[SearchResult]
    answer: Answer | None = Field(
        default=None,
        description="Null unless asked for (and when no answer could be made from the results).",
    )


@router.post(
    "/",
    body=SearchBody,
    response=SearchReply,
    errors=(429, 503),
    summary="Search published materials; optionally answer from the results",
)
def run_search(call: Call) -> flask.Response:
    body = call.json(SearchBody)
    embedder = get_embedder(call.settings)
    with transaction(call.settings) as session:
        ratelimit.check(
            session,
            user_id=call.user(session).id,
            action="search",
            limit=call.settings.RATE_LIMIT_SEARCHES_PER_MINUTE,
            window=timedelta(minutes=1),
            now=clock.now(),
        )
    # Embedding may take a network round trip: no transaction is held meanwhile.
    vector = embedder.embed_query(body.query)
    with transaction(call.settings) as session:
        results = data.search(
            session,
            query_text=body.query,
            query_vector=vector,
            model=embedder.model,
            filters=data.SearchFilters(
                course_id=body.course_id,
                major_id=body.major_id,
                type_id=body.type_id,
                material_id=body.material_id,
                academic_year=body.academic_year,
                material_year=body.material_year,
            ),
            limit=body.limit,
        )
    reply = SearchReply.model_validate({"results": results})
    if body.answer:
        made = answers.answer(call.settings, embedder, body.query, results)
        reply.answer = Answer.model_validate(made) if made is not None else None
    return json_response(reply)


@functions_framework.http
def search(request: flask.Request) -> flask.Response:
    return router(request)
