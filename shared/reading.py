"""Reading sessions: heartbeats, completion XP, course progress, recent files.

Reading progress is kept per user and file (``reading_progress``), across
sessions: a new session starts from the user's credited seconds so far, and a
completion (and its XP) happens once per user and file, whichever session
reaches it.

A heartbeat claims seconds of active reading since the previous one. The
server credits the least of: the claim, a per-beat maximum, the wall-clock
time since the session's previous beat plus a small grace, and the wall-clock
time not yet credited (no grace there, so a file cannot complete before its
required time has really passed). "Not yet credited" is kept on the progress
row as ``credited_through``: a beat credits seconds after
``max(credited_through, session start)`` and moves it on by what it credited.
With one session at a time this is exactly "the session's total stays within
the wall-clock time since it started"; two sessions of the same user and file
(two tabs) draw on the same clock, so together they never credit more than
the time that has passed.

A beat that completes nothing is one SQL statement: the session and progress
rows are locked, the credit computed and applied to both, and the course
activity read, all in one statement, joined to the user by the token's
subject. The same statement chooses the commit's durability: a plain beat
commits asynchronously (``synchronous_commit`` off for its transaction: a
crash may lose the last few hundred milliseconds of such beats, never XP),
a beat that completes the file commits durably, and with it its ledger rows
(see ``beat``).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import ledger
from shared.db.engine import PREPARED
from shared.db.models import (
    Course,
    FileViewingSession,
    Material,
    MaterialType,
    MotivationalQuote,
    ReadingProgress,
    User,
    UserCourseActivity,
    UserRecentFile,
)
from shared.progress import STATUS_SQL, refresh_course_activity
from shared.responses import Shape, UtcDatetime

__all__ = [
    "BeatResult",
    "Celebration",
    "CourseAward",
    "CourseProgress",
    "CourseSummary",
    "FileAward",
    "FileProgress",
    "Quote",
    "ReadingSession",
    "RecentFile",
    "beat",
    "course_progress",
    "courses_in_progress",
    "get_session",
    "list_recent",
    "required_seconds",
    "start_session",
]

SECONDS_PER_PAGE = 45
ACTIVE_SHARE = 0.60


def required_seconds(page_count: int) -> int:
    # 45 * 0.60 = 27 exactly; integer arithmetic avoids float round-up surprises.
    return math.ceil(page_count * SECONDS_PER_PAGE * 60 / 100)


def completion_score(active_seconds: int, required: int) -> float:
    return min(1.0, active_seconds / required)


class ReadingSession(Shape):
    """A reading session; its seconds are the user's on the file, all sessions together."""

    id: uuid.UUID
    file_id: uuid.UUID
    course_id: uuid.UUID
    started_at: UtcDatetime
    active_seconds: int
    required_active_seconds: int
    completion_score: float
    is_complete: bool


class CourseSummary(Shape):
    """A course's progress for the caller: ``status`` by the share of files completed."""

    course_id: uuid.UUID
    status: str
    files_completed: int
    total_files: int


class FileProgress(Shape):
    file_id: uuid.UUID
    active_seconds: int
    required_active_seconds: int
    completion_score: float
    is_complete: bool


class CourseProgress(CourseSummary):
    files: list[FileProgress]


class FileAward(Shape):
    action: Literal["file_completed"] = "file_completed"
    amount: int
    file_id: uuid.UUID


class CourseAward(Shape):
    action: Literal["course_complete"] = "course_complete"
    amount: int
    course_id: uuid.UUID


class Quote(Shape):
    text: str
    author: str


class Celebration(Shape):
    xp: int
    quote: Quote | None


class RecentFile(Shape):
    file_id: uuid.UUID
    title: str
    course_id: uuid.UUID
    course_name: str
    type_name: str
    page_count: int
    completion_score: float
    viewed_at: UtcDatetime


def _ensure_activity(session: Session, *, user_id: uuid.UUID, course_id: uuid.UUID) -> None:
    session.execute(
        insert(UserCourseActivity)
        .values(user_id=user_id, course_id=course_id)
        .on_conflict_do_nothing()
    )
    refresh_course_activity(session, course_id=course_id, user_id=user_id)


def start_session(
    session: Session, *, user_id: uuid.UUID, file_id: uuid.UUID, now: datetime
) -> ReadingSession | None:
    """A new session on a published material, resuming the user's progress on it.

    None if there is no such material.
    """
    material = session.get(Material, file_id)
    if material is None or not material.is_published:
        return None
    # Opening a file counts as activity on it (the dashboard's order); the row
    # lock this takes is the one a beat takes, so the seconds read are current.
    progress = session.execute(
        insert(ReadingProgress)
        .values(user_id=user_id, file_id=material.id, credited_through=now, updated_at=now)
        .on_conflict_do_update(
            index_elements=["user_id", "file_id"],
            set_={"updated_at": func.greatest(ReadingProgress.updated_at, now)},
        )
        .returning(
            ReadingProgress.active_seconds,
            ReadingProgress.is_complete,
            ReadingProgress.completed_at,
        )
    ).one()
    required = required_seconds(material.page_count)
    viewing = FileViewingSession(
        user_id=user_id,
        file_id=material.id,
        course_id=material.course_id,
        started_at=now,
        last_beat_at=now,
        required_active_seconds=required,
        active_seconds=progress.active_seconds,
        completion_score=completion_score(progress.active_seconds, required),
        is_complete=progress.is_complete,
        completed_at=progress.completed_at,
    )
    session.add(viewing)
    session.execute(
        insert(UserRecentFile)
        .values(user_id=user_id, file_id=material.id, viewed_at=now)
        .on_conflict_do_update(index_elements=["user_id", "file_id"], set_={"viewed_at": now})
    )
    _ensure_activity(session, user_id=user_id, course_id=material.course_id)
    session.flush()
    return _reading_session(viewing)


def _reading_session(viewing: Any) -> ReadingSession:
    return ReadingSession(
        id=viewing.id,
        file_id=viewing.file_id,
        course_id=viewing.course_id,
        started_at=viewing.started_at,
        active_seconds=viewing.active_seconds,
        required_active_seconds=viewing.required_active_seconds,
        completion_score=viewing.completion_score,
        is_complete=viewing.is_complete,
    )


def get_session(
    session: Session, *, user_id: uuid.UUID, session_id: uuid.UUID
) -> ReadingSession | None:
    """The user's own session on a published file (None for anyone else's)."""
    viewing = session.scalar(
        select(FileViewingSession)
        .join(Material, Material.id == FileViewingSession.file_id)
        .where(
            FileViewingSession.id == session_id,
            FileViewingSession.user_id == user_id,
            Material.is_published,
        )
    )
    return _reading_session(viewing) if viewing is not None else None


# One statement: lock the session and the user's progress on its file, credit
# the beat on both, and choose the commit's durability (the last column).
# Parallel beats of the same user and file queue on the progress row's lock;
# each then computes its credit from the row as the previous one left it
# (READ COMMITTED re-reads a locked row's newest version).
_BEAT = text(
    """
    WITH current AS (
        SELECT s.id, s.user_id, s.file_id, s.course_id, s.started_at, s.last_beat_at,
               s.required_active_seconds,
               p.is_complete AS was_complete, p.credited_through
          FROM file_viewing_sessions s
          JOIN users u ON u.id = s.user_id
          -- A session on an unpublished material is kept, but not credited (404).
          JOIN materials m ON m.id = s.file_id AND m.is_published
          JOIN reading_progress p ON p.user_id = s.user_id AND p.file_id = s.file_id
         WHERE s.id = :session_id AND u.auth0_id = :subject
           FOR UPDATE OF s, p
    ), credit AS (
        SELECT current.*,
               GREATEST(credited_through, started_at) AS credit_from,
               GREATEST(0, LEAST(
                   :claimed,
                   :max_per_beat,
                   floor(extract(epoch FROM (CAST(:now AS timestamptz) - last_beat_at)))::int
                       + :grace,
                   floor(extract(epoch FROM (
                       CAST(:now AS timestamptz) - GREATEST(credited_through, started_at)
                   )))::int
               )) AS seconds
          FROM current
    ), progress AS (
        UPDATE reading_progress p
           SET active_seconds = p.active_seconds + credit.seconds,
               credited_through = credit.credit_from + make_interval(secs => credit.seconds),
               is_complete = p.is_complete
                   OR p.active_seconds + credit.seconds >= credit.required_active_seconds,
               completed_at = CASE
                   WHEN NOT p.is_complete
                        AND p.active_seconds + credit.seconds >= credit.required_active_seconds
                   THEN CAST(:now AS timestamptz) ELSE p.completed_at END,
               updated_at = GREATEST(p.updated_at, CAST(:now AS timestamptz))
          FROM credit
         WHERE p.user_id = credit.user_id AND p.file_id = credit.file_id
        RETURNING p.active_seconds, p.is_complete
    )
    UPDATE file_viewing_sessions s
       SET active_seconds = progress.active_seconds,
           last_beat_at = GREATEST(s.last_beat_at, CAST(:now AS timestamptz)),
           completion_score = LEAST(
               1.0, progress.active_seconds::float8 / s.required_active_seconds
           ),
           is_complete = s.is_complete OR progress.is_complete,
           completed_at = CASE
               WHEN NOT s.is_complete AND progress.is_complete
               THEN CAST(:now AS timestamptz) ELSE s.completed_at END
      FROM credit
     CROSS JOIN progress
      LEFT JOIN user_course_activities a
        ON a.user_id = credit.user_id AND a.course_id = credit.course_id
     WHERE s.id = credit.id
    RETURNING s.id, s.user_id, s.file_id, s.course_id, s.started_at, s.active_seconds,
              s.required_active_seconds, s.completion_score, s.is_complete,
              credit.seconds AS credited,
              (progress.is_complete AND NOT credit.was_complete) AS just_completed,
              a.status AS course_status, a.files_completed, a.total_files,
              -- Durability per beat: a completion (and the XP it awards in this
              -- transaction) commits durably, a plain beat asynchronously.
              set_config(
                  'synchronous_commit',
                  CASE WHEN progress.is_complete AND NOT credit.was_complete
                       THEN 'on' ELSE 'off' END,
                  true
              ) AS synchronous_commit
    """
).execution_options(**PREPARED)  # parsed once per connection: the hottest statement


@dataclass
class BeatResult:
    session: ReadingSession
    credited: int
    awarded: list[FileAward | CourseAward]
    course: CourseSummary
    celebration: Celebration | None


def beat(
    session: Session,
    *,
    subject: str,
    session_id: uuid.UUID,
    claimed: int,
    now: datetime,
    max_per_beat: int,
    grace: int,
    file_xp: int,
    course_xp: int,
) -> BeatResult | None:
    """Credit one heartbeat; None when the caller has no such session.

    Durability: the statement sets ``synchronous_commit`` for the rest of the
    transaction, ``off`` for a beat that only credits seconds, ``on`` for one
    that completes the file (whose ledger rows are written below, in the same
    transaction). Postgres writes the WAL in order, so a durable commit also
    makes every earlier asynchronous one durable: a crash can lose only the
    plain beats acknowledged in the last moments before it (at most three
    ``wal_writer_delay``, 600 ms by default), never an award, and a beat and
    its ledger rows are committed or lost together.
    """
    row = session.execute(
        _BEAT,
        {
            "session_id": session_id,
            "subject": subject,
            "claimed": claimed,
            "now": now,
            "max_per_beat": max_per_beat,
            "grace": grace,
        },
    ).first()
    if row is None:
        return None
    course = CourseSummary(
        course_id=row.course_id,
        status=row.course_status or "not_started",
        files_completed=row.files_completed or 0,
        total_files=row.total_files or 0,
    )
    result = BeatResult(_reading_session(row), row.credited, [], course, None)
    if row.just_completed:
        _complete(session, row, result, file_xp=file_xp, course_xp=course_xp)
    return result


def _complete(
    session: Session, row: Any, result: BeatResult, *, file_xp: int, course_xp: int
) -> None:
    """The user's first completion of this file: its XP, course progress, maybe the bonus."""
    # One completion per user at a time: the progress count below must see a
    # concurrent completion of the course's other files, so the later one
    # waits here and then counts with a fresh snapshot. (The ledger trigger
    # takes the same row lock, but not when an award is configured to 0.)
    session.execute(select(User.id).where(User.id == row.user_id).with_for_update(key_share=True))
    material_title = session.scalar(select(Material.title).where(Material.id == row.file_id))
    if ledger.award(
        session,
        user_id=row.user_id,
        amount=file_xp,
        action="file_completed",
        reason=f"Completed: {material_title}",
        source_id=ledger.file_completed_key(row.user_id, row.file_id),
    ):
        result.awarded.append(FileAward(amount=file_xp, file_id=row.file_id))
    _ensure_activity(session, user_id=row.user_id, course_id=row.course_id)
    activity = session.get(UserCourseActivity, (row.user_id, row.course_id), populate_existing=True)
    assert activity is not None
    result.course = CourseSummary(
        course_id=row.course_id,
        status=activity.status,
        files_completed=activity.files_completed,
        total_files=activity.total_files,
    )
    if activity.status == "completed" and ledger.award(
        session,
        user_id=row.user_id,
        amount=course_xp,
        action="course_complete",
        reason="Completed every file of a course",
        source_id=ledger.course_complete_key(row.user_id, row.course_id),
    ):
        result.awarded.append(CourseAward(amount=course_xp, course_id=row.course_id))
        quote = session.scalars(
            select(MotivationalQuote).order_by(text("random()")).limit(1)
        ).first()
        result.celebration = Celebration(
            xp=course_xp, quote=Quote(text=quote.text, author=quote.author) if quote else None
        )


def list_recent(session: Session, *, user_id: uuid.UUID, limit: int) -> list[RecentFile]:
    """The user's recently opened published files, most recent first, with their progress."""
    rows = session.execute(
        select(
            UserRecentFile.file_id,
            Material.title,
            Material.course_id,
            Course.name.label("course_name"),
            MaterialType.display_name.label("type_name"),
            Material.page_count,
            func.coalesce(ReadingProgress.active_seconds, 0).label("active_seconds"),
            UserRecentFile.viewed_at,
        )
        .join(Material, Material.id == UserRecentFile.file_id)
        .join(Course, Course.id == Material.course_id)
        .join(MaterialType, MaterialType.id == Material.type_id)
        .outerjoin(
            ReadingProgress,
            (ReadingProgress.user_id == UserRecentFile.user_id)
            & (ReadingProgress.file_id == UserRecentFile.file_id),
        )
        .where(UserRecentFile.user_id == user_id, Material.is_published)
        .order_by(UserRecentFile.viewed_at.desc(), UserRecentFile.file_id)
        .limit(limit)
    ).all()
    return [
        RecentFile(
            file_id=r.file_id,
            title=r.title,
            course_id=r.course_id,
            course_name=r.course_name,
            type_name=r.type_name,
            page_count=r.page_count,
            completion_score=completion_score(r.active_seconds, required_seconds(r.page_count)),
            viewed_at=r.viewed_at,
        )
        for r in rows
    ]


# The caller's progress on every published file of the chosen courses, with
# each course's counts and status beside each file (window aggregates), in
# the courses' order then the course's natural file order.
_COURSE_FILES = """
    WITH chosen AS ({chosen}),
    files AS (
        SELECT chosen.course_id, chosen.position, m.id AS file_id, m.page_count,
               m.academic_year, m.material_year, m.title,
               coalesce(p.active_seconds, 0) AS active_seconds,
               coalesce(p.is_complete, false) AS is_complete,
               count(m.id) OVER course AS total_files,
               count(m.id) FILTER (WHERE p.is_complete) OVER course AS files_completed
          FROM chosen
          LEFT JOIN materials m ON m.course_id = chosen.course_id AND m.is_published
          LEFT JOIN reading_progress p ON p.file_id = m.id AND p.user_id = :user_id
        WINDOW course AS (PARTITION BY chosen.course_id)
    )
    SELECT files.*, {status} AS status
      FROM files
     ORDER BY position, course_id, academic_year, material_year, title, file_id
"""

# Courses the user has opened a published file of, most recently read first.
_STARTED = """
    SELECT m.course_id,
           row_number() OVER (ORDER BY max(p.updated_at) DESC, m.course_id) AS position
      FROM reading_progress p
      JOIN materials m ON m.id = p.file_id AND m.is_published
     WHERE p.user_id = :user_id
     GROUP BY m.course_id
"""

_ONE_COURSE = "SELECT id AS course_id, 1 AS position FROM courses WHERE id = :course_id"

_STATUS = STATUS_SQL.format(done="files_completed", total="total_files")

# The same, one row per course without its files: the dashboard's in-progress courses.
_IN_PROGRESS = text(
    """
    WITH started AS ("""
    + _STARTED
    + """), counts AS (
        SELECT started.course_id, started.position,
               count(m.id) AS total_files,
               count(m.id) FILTER (WHERE p.is_complete) AS files_completed
          FROM started
          JOIN materials m ON m.course_id = started.course_id AND m.is_published
          LEFT JOIN reading_progress p ON p.file_id = m.id AND p.user_id = :user_id
         GROUP BY started.course_id, started.position
    )
    SELECT course_id, files_completed, total_files, """
    + _STATUS
    + """ AS status
      FROM counts
     WHERE files_completed < total_files
     ORDER BY position
     LIMIT :limit
    """
)


def course_progress(
    session: Session, *, user_id: uuid.UUID, course_id: uuid.UUID | None
) -> list[CourseProgress] | None:
    """The user's progress per course and file: one course, or every course they started.

    One statement. None when ``course_id`` names no course; a course with no
    published file is listed with no files.
    """
    chosen = _STARTED if course_id is None else _ONE_COURSE
    statement = text(_COURSE_FILES.format(chosen=chosen, status=_STATUS))
    rows = session.execute(statement, {"user_id": user_id, "course_id": course_id}).all()
    if course_id is not None and not rows:
        return None
    courses: dict[uuid.UUID, CourseProgress] = {}
    for row in rows:
        course = courses.get(row.course_id)
        if course is None:
            course = courses[row.course_id] = CourseProgress(
                course_id=row.course_id,
                status=row.status,
                files_completed=row.files_completed,
                total_files=row.total_files,
                files=[],
            )
        if row.file_id is not None:
            required = required_seconds(row.page_count)
            course.files.append(
                FileProgress(
                    file_id=row.file_id,
                    active_seconds=row.active_seconds,
                    required_active_seconds=required,
                    completion_score=completion_score(row.active_seconds, required),
                    is_complete=row.is_complete,
                )
            )
    return list(courses.values())


def courses_in_progress(session: Session, *, user_id: uuid.UUID, limit: int) -> list[CourseSummary]:
    """Courses the user started and has not completed, most recently read first (one statement)."""
    rows = session.execute(_IN_PROGRESS, {"user_id": user_id, "limit": limit}).all()
    return [
        CourseSummary(
            course_id=row.course_id,
            status=row.status,
            files_completed=row.files_completed,
            total_files=row.total_files,
        )
        for row in rows
    ]
