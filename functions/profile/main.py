"""profile: the signed-in user, their XP ledger."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlsplit

import flask
import functions_framework
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from shared import users
from shared.config import Needs
from shared.db.engine import transaction
from shared.fields import MultilineText, SingleLineText
from shared.http import Call, build_router, json_response
from shared.pagination import decode_cursor, encode_cursor

router = build_router(Needs.NONE)


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("must be an https:// URL")
    return value


class ProfileChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[SingleLineText, StringConstraints(min_length=1, max_length=100)] | None = None
    bio: Annotated[MultilineText, StringConstraints(max_length=500)] | None = None
    avatar_url: (
        Annotated[str, StringConstraints(max_length=2048), AfterValidator(_https_url)] | None
    ) = None
    university: Annotated[SingleLineText, StringConstraints(max_length=200)] | None = None
    major_id: uuid.UUID | None = None

    @field_validator("name")
    @classmethod
    def _name_required(cls, value: str | None) -> str:
        # The other fields may be cleared with null; a user always has a name.
        if value is None:
            raise ValueError("cannot be null")
        return value


class PointsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = None


@router.get("/me")
def get_me(call: Call) -> flask.Response:
    with transaction(call.settings) as session:
        user = call.user(session)
        return json_response({"user": users.user_to_json(user)})


@router.patch("/me")
def patch_me(call: Call) -> flask.Response:
    changes = call.json(ProfileChanges).model_dump(exclude_unset=True)
    with transaction(call.settings) as session:
        user = users.update_profile(session=session, user=call.user(session), changes=changes)
        return json_response({"user": users.user_to_json(user)})


@router.get("/me/points")
def list_points(call: Call) -> flask.Response:
    query = call.query(PointsQuery)
    after = decode_cursor(query.cursor) if query.cursor else None
    with transaction(call.settings) as session:
        user = call.user(session)
        entries, next_key = users.list_points(
            session=session, user_id=user.id, limit=query.limit, after=after
        )
    next_cursor = encode_cursor(*next_key) if next_key else None
    return json_response({"entries": entries, "next_cursor": next_cursor})


@functions_framework.http
def profile(request: flask.Request) -> flask.Response:
    return router(request)
