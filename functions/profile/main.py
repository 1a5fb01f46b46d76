"""profile: the signed-in user, their dashboard, XP ledger, sticky notes and the leaderboard."""

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
    StrictInt,
    StringConstraints,
    field_validator,
)

from shared import clock, dashboard, leaderboard, notes, users
from shared.config import Needs
from shared.db.engine import transaction
from shared.errors import NotFound, ValidationFailed
from shared.fields import MultilineText, SingleLineText
from shared.http import Call, build_router, json_response
from shared.responses import Shape, User, UtcDatetime

router = build_router(Needs.NONE)

MAX_NOTES = 100
MAX_NOTE_CHARACTERS = 2000
# A named sticky-note colour or #rrggbb.
_COLOR = r"^(yellow|pink|blue|green|orange|purple|#[0-9A-Fa-f]{6})$"


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


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    text: Annotated[MultilineText, StringConstraints(max_length=MAX_NOTE_CHARACTERS)]
    page: Annotated[StrictInt, Field(ge=1)] | None = None
    color: Annotated[str, StringConstraints(pattern=_COLOR)] | None = None


class NotesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notes: list[Note] = Field(max_length=MAX_NOTES)

    @field_validator("notes")
    @classmethod
    def _unique_ids(cls, notes: list[Note]) -> list[Note]:
        seen: set[str] = set()
        for note in notes:
            if note.id in seen:
                raise ValueError(f"note id {note.id!r} appears twice")
            seen.add(note.id)
        return notes


class LeaderboardQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    major_id: uuid.UUID | None = None
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")


class PointsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")


class NoteFilesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")


class Me(Shape):
    user: User


class Notes(Shape):
    notes: list[notes.StoredNote]
    # Null until the caller first saves notes on the file.
    updated_at: UtcDatetime | None


@router.get("/me", response=Me, summary="The signed-in user")
def get_me(call: Call) -> flask.Response:
    with transaction(call.settings) as session:
        user = call.user(session)
        return json_response(Me(user=users.profile_of(user)))


@router.patch(
    "/me", body=ProfileChanges, response=Me, summary="Change the signed-in user's profile"
)
def patch_me(call: Call) -> flask.Response:
    changes = call.json(ProfileChanges).model_dump(exclude_unset=True)
    with transaction(call.settings) as session:
        user = users.update_profile(session=session, user=call.user(session), changes=changes)
        return json_response(Me(user=users.profile_of(user)))


@router.get(
    "/me/dashboard",
    query=dashboard.DashboardQuery,
    response=dashboard.Dashboard,
    summary="The home screen in one read: user, rank, courses in progress, recent files, "
    "today's tasks",
)
def get_dashboard(call: Call) -> flask.Response:
    query = call.query(dashboard.DashboardQuery)
    with transaction(call.settings) as session:
        user = call.user(session)
        screen = dashboard.dashboard(session, user=user, tz=query.tz, now=clock.now())
    return json_response(screen)


@router.get(
    "/me/points",
    query=PointsQuery,
    response=users.PointsPage,
    summary="The caller's XP ledger, newest first",
)
def list_points(call: Call) -> flask.Response:
    query = call.query(PointsQuery)
    with transaction(call.settings) as session:
        user = call.user(session)
        page = users.list_points(
            session=session, user_id=user.id, limit=query.limit, cursor=query.cursor
        )
    return json_response(page)


@router.get(
    "/me/notes",
    query=NoteFilesQuery,
    response=notes.NoteFiles,
    summary="The files the caller has notes on, most recently written first",
)
def list_note_files(call: Call) -> flask.Response:
    query = call.query(NoteFilesQuery)
    with transaction(call.settings) as session:
        user = call.user(session)
        files = notes.list_note_files(
            session, user_id=user.id, limit=query.limit, cursor=query.cursor
        )
    return json_response(files)


@router.get("/me/notes/{file_id}", response=Notes, summary="The caller's sticky notes on a file")
def get_notes(call: Call) -> flask.Response:
    file_id = call.path_id("file_id")
    with transaction(call.settings) as session:
        user = call.user(session)
        if notes.published_page_count(session, file_id=file_id) is None:
            raise NotFound("no such file")
        content, updated_at = notes.read_notes(session, user_id=user.id, file_id=file_id)
    return json_response(Notes(notes=content, updated_at=updated_at))


@router.put(
    "/me/notes/{file_id}",
    body=NotesBody,
    response=Notes,
    summary="Replace the caller's sticky notes on a file",
)
def put_notes(call: Call) -> flask.Response:
    file_id = call.path_id("file_id")
    body = call.json(NotesBody)
    with transaction(call.settings) as session:
        user = call.user(session)
        pages = notes.published_page_count(session, file_id=file_id)
        if pages is None:
            raise NotFound("no such file")
        beyond = {
            f"notes.{index}.page": f"the file has {pages} pages"
            for index, note in enumerate(body.notes)
            if note.page is not None and note.page > pages
        }
        if beyond:
            raise ValidationFailed(beyond)
        content = [note.model_dump(exclude_none=True) for note in body.notes]
        updated_at = notes.write_notes(
            session, user_id=user.id, file_id=file_id, notes=content, now=clock.now()
        )
    return json_response(Notes(notes=content, updated_at=updated_at))


@router.get(
    "/leaderboard",
    query=LeaderboardQuery,
    response=leaderboard.Leaderboard,
    summary="Users by XP (ties share a rank), and the caller's own rank",
)
def get_leaderboard(call: Call) -> flask.Response:
    query = call.query(LeaderboardQuery)
    with transaction(call.settings) as session:
        user = call.user(session)
        board = leaderboard.leaderboard(
            session, me=user, major_id=query.major_id, limit=query.limit, cursor=query.cursor
        )
    return json_response(board)


@functions_framework.http
def profile(request: flask.Request) -> flask.Response:
    return router(request)
