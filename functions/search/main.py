"""search: hybrid retrieval over every published material, with an optional answer."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

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

router = build_router(Needs.EMBEDDINGS)


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Annotated[MultilineText, StringConstraints(min_length=1, max_length=1000)]
    course_id: uuid.UUID | None = None
    major_id: uuid.UUID | None = None
    type_id: uuid.UUID | None = None
    limit: int = Field(default=10, ge=1, le=50)
    answer: StrictBool = False


@router.post("/")
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
            filters=data.SearchFilters(body.course_id, body.major_id, body.type_id),
            limit=body.limit,
        )
    reply: dict[str, object] = {}
    if body.answer:
        reply["answer"] = answers.answer(call.settings, embedder, body.query, results)
    for result in results:
        del result["content"]
    reply["results"] = results
    return json_response(reply)


@functions_framework.http
def search(request: flask.Request) -> flask.Response:
    return router(request)
