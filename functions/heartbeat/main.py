"""heartbeat: reading sessions, active-time beats, completion XP, progress, recent files."""

from __future__ import annotations

import uuid

import flask
import functions_framework
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from shared import clock, reading
from shared.config import Needs
from shared.db.engine import transaction
from shared.errors import NotFound
from shared.http import Call, build_router, json_response

router = build_router(Needs.NONE)

# Longer than any sane gap between two beats; larger claims are a client bug.
MAX_CLAIM_SECONDS = 3600


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: uuid.UUID


class BeatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active_seconds: StrictInt = Field(ge=1, le=MAX_CLAIM_SECONDS)


class RecentQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=20, ge=1, le=50)


class ProgressQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    course_id: uuid.UUID | None = None


class SessionStarted(BaseModel):
    session: reading.ReadingSession


class BeatCredited(BaseModel):
    session: reading.ReadingSession
    # What this beat added (the claim, capped); the session's seconds are the total.
    credited_seconds: int
    awarded: list[reading.FileAward | reading.CourseAward]
    course: reading.CourseSummary
    celebration: reading.Celebration | None


class Progress(BaseModel):
    courses: list[reading.CourseProgress]


class RecentFiles(BaseModel):
    files: list[reading.RecentFile]


@router.post(
    "/sessions",
    body=StartBody,
    response=SessionStarted,
    status=201,
    errors=(404,),
    summary="Open a file: a reading session that resumes the caller's progress on it",
)
def start_session(call: Call) -> flask.Response:
    body = call.json(StartBody)
    with transaction(call.settings) as session:
        user = call.user(session)
        viewing = reading.start_session(
            session, user_id=user.id, file_id=body.file_id, now=clock.now()
        )
        if viewing is None:
            raise NotFound("no such file")
    return json_response(
        SessionStarted(session=viewing), 201, location=call.location(f"/sessions/{viewing.id}")
    )


@router.get(
    "/sessions/{session_id}",
    response=SessionStarted,
    summary="One of the caller's reading sessions",
)
def get_session(call: Call) -> flask.Response:
    session_id = call.path_id("session_id")
    with transaction(call.settings) as session:
        user = call.user(session)
        viewing = reading.get_session(session, user_id=user.id, session_id=session_id)
    if viewing is None:
        raise NotFound("no such session")
    return json_response(SessionStarted(session=viewing))


@router.post(
    "/sessions/{session_id}/beat",
    body=BeatBody,
    response=BeatCredited,
    summary="Credit seconds of active reading since the previous beat",
)
def beat(call: Call) -> flask.Response:
    session_id = call.path_id("session_id")
    body = call.json(BeatBody)
    # The token is verified here; the user lookup is folded into the beat's one statement.
    subject = call.subject()
    settings = call.settings
    with transaction(settings) as session:
        result = reading.beat(
            session,
            subject=subject,
            session_id=session_id,
            claimed=body.active_seconds,
            now=clock.now(),
            max_per_beat=settings.HEARTBEAT_MAX_SECONDS,
            grace=settings.HEARTBEAT_GRACE_SECONDS,
            file_xp=settings.XP_FILE_COMPLETED,
            course_xp=settings.XP_COURSE_COMPLETE,
        )
    if result is None:
        raise NotFound("no such session")
    return json_response(
        BeatCredited(
            session=result.session,
            credited_seconds=result.credited,
            awarded=result.awarded,
            course=result.course,
            celebration=result.celebration,
        )
    )


@router.get(
    "/progress",
    query=ProgressQuery,
    response=Progress,
    errors=(404,),
    summary="The caller's progress per course and file (one course, or every course started)",
)
def progress(call: Call) -> flask.Response:
    query = call.query(ProgressQuery)
    with transaction(call.settings) as session:
        user = call.user(session)
        courses = reading.course_progress(session, user_id=user.id, course_id=query.course_id)
    if courses is None:
        raise NotFound("no such course")
    return json_response(Progress(courses=courses))


@router.get(
    "/recent",
    query=RecentQuery,
    response=RecentFiles,
    summary="The caller's recently opened files, most recent first",
)
def recent(call: Call) -> flask.Response:
    query = call.query(RecentQuery)
    with transaction(call.settings) as session:
        user = call.user(session)
        files = reading.list_recent(session, user_id=user.id, limit=query.limit)
    return json_response(RecentFiles(files=files))


@functions_framework.http
def heartbeat(request: flask.Request) -> flask.Response:
    return router(request)
