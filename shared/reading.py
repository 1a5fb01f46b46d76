"""Reading sessions: heartbeats, completion XP, course progress, recent files.

A heartbeat claims seconds of active reading since the previous one. The
server credits the least of: the claim, a per-beat maximum, the wall-clock
time since the previous beat plus a small grace, and whatever keeps the
session's total within the wall-clock time since it started (no grace there,
so a session cannot complete before its required time has really passed).

A beat that completes nothing is one SQL statement: the row is locked, the
credit computed and applied, and the course activity read, all in one
UPDATE ... RETURNING, joined to the user by the token's subject.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import ledger
from shared.db.models import (
    FileViewingSession,
    Material,
    MotivationalQuote,
    User,
    UserCourseActivity,
    UserRecentFile,
)
from shared.progress import refresh_course_activity

__all__ = [
    "BeatResult",
    "beat",
    "list_recent",
    "required_seconds",
    "session_to_json",
    "start_session",
]

SECONDS_PER_PAGE = 45
ACTIVE_SHARE = 0.60


def required_seconds(page_count: int) -> int:
    # 45 * 0.60 = 27 exactly; integer arithmetic avoids float round-up surprises.
    return math.ceil(page_count * SECONDS_PER_PAGE * 60 / 100)


def session_to_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "file_id": row.file_id,
        "course_id": row.course_id,
        "started_at": row.started_at,
        "active_seconds": row.active_seconds,
        "required_active_seconds": row.required_active_seconds,
        "completion_score": row.completion_score,
        "is_complete": row.is_complete,
    }


def _ensure_activity(session: Session, *, user_id: uuid.UUID, course_id: uuid.UUID) -> None:
    session.execute(
        insert(UserCourseActivity)
        .values(user_id=user_id, course_id=course_id)
        .on_conflict_do_nothing()
    )
    refresh_course_activity(session, course_id=course_id, user_id=user_id)


def start_session(
    session: Session, *, user_id: uuid.UUID, file_id: uuid.UUID, now: datetime
) -> FileViewingSession | None:
    """A new session on a published material (None if there is no such material)."""
    material = session.get(Material, file_id)
    if material is None or not material.is_published:
        return None
    viewing = FileViewingSession(
        user_id=user_id,
        file_id=material.id,
        course_id=material.course_id,
        started_at=now,
        last_beat_at=now,
        required_active_seconds=required_seconds(material.page_count),
    )
    session.add(viewing)
    session.execute(
        insert(UserRecentFile)
        .values(user_id=user_id, file_id=material.id, viewed_at=now)
        .on_conflict_do_update(index_elements=["user_id", "file_id"], set_={"viewed_at": now})
    )
    _ensure_activity(session, user_id=user_id, course_id=material.course_id)
    session.flush()
    return viewing


_BEAT = text(
    """
    WITH current AS (
        SELECT s.id, s.user_id, s.course_id, s.active_seconds, s.is_complete,
               s.started_at, s.last_beat_at
          FROM file_viewing_sessions s
          JOIN users u ON u.id = s.user_id
          -- A session on an unpublished material is kept, but not credited (404).
          JOIN materials m ON m.id = s.file_id AND m.is_published
         WHERE s.id = :session_id AND u.auth0_id = :subject
           FOR UPDATE OF s
    ), credit AS (
        SELECT id, user_id, course_id, is_complete AS was_complete,
               GREATEST(0, LEAST(
                   :claimed,
                   :max_per_beat,
                   floor(extract(epoch FROM (CAST(:now AS timestamptz) - last_beat_at)))::int
                       + :grace,
                   floor(extract(epoch FROM (CAST(:now AS timestamptz) - started_at)))::int
                       - active_seconds
               )) AS seconds
          FROM current
    )
    UPDATE file_viewing_sessions s
       SET active_seconds = s.active_seconds + credit.seconds,
           last_beat_at = GREATEST(s.last_beat_at, CAST(:now AS timestamptz)),
           completion_score = LEAST(
               1.0, (s.active_seconds + credit.seconds)::float8 / s.required_active_seconds
           ),
           is_complete = s.is_complete
               OR s.active_seconds + credit.seconds >= s.required_active_seconds,
           completed_at = CASE
               WHEN NOT s.is_complete
                    AND s.active_seconds + credit.seconds >= s.required_active_seconds
               THEN CAST(:now AS timestamptz) ELSE s.completed_at END
      FROM credit
      LEFT JOIN user_course_activities a
        ON a.user_id = credit.user_id AND a.course_id = credit.course_id
     WHERE s.id = credit.id
    RETURNING s.id, s.user_id, s.file_id, s.course_id, s.started_at, s.active_seconds,
              s.required_active_seconds, s.completion_score, s.is_complete,
              credit.seconds AS credited,
              (s.is_complete AND NOT credit.was_complete) AS just_completed,
              a.status AS course_status, a.files_completed, a.total_files
    """
)


@dataclass
class BeatResult:
    session: dict[str, Any]
    credited: int
    awarded: list[dict[str, Any]]
    course: dict[str, Any]
    celebration: dict[str, Any] | None


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
    """Credit one heartbeat; None when the caller has no such session."""
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
    course = {
        "course_id": row.course_id,
        "status": row.course_status or "not_started",
        "files_completed": row.files_completed or 0,
        "total_files": row.total_files or 0,
    }
    result = BeatResult(session_to_json(row), row.credited, [], course, None)
    if row.just_completed:
        _complete(session, row, result, file_xp=file_xp, course_xp=course_xp)
    return result


def _complete(
    session: Session, row: Any, result: BeatResult, *, file_xp: int, course_xp: int
) -> None:
    """First completion of this session: file XP once ever, course progress, maybe the bonus."""
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
        result.awarded.append(
            {"action": "file_completed", "amount": file_xp, "file_id": row.file_id}
        )
    _ensure_activity(session, user_id=row.user_id, course_id=row.course_id)
    activity = session.get(UserCourseActivity, (row.user_id, row.course_id), populate_existing=True)
    assert activity is not None
    result.course = {
        "course_id": row.course_id,
        "status": activity.status,
        "files_completed": activity.files_completed,
        "total_files": activity.total_files,
    }
    if activity.status == "completed" and ledger.award(
        session,
        user_id=row.user_id,
        amount=course_xp,
        action="course_complete",
        reason="Completed every file of a course",
        source_id=ledger.course_complete_key(row.user_id, row.course_id),
    ):
        result.awarded.append(
            {"action": "course_complete", "amount": course_xp, "course_id": row.course_id}
        )
        quote = session.scalars(
            select(MotivationalQuote).order_by(text("random()")).limit(1)
        ).first()
        result.celebration = {
            "xp": course_xp,
            "quote": {"text": quote.text, "author": quote.author} if quote else None,
        }


def list_recent(session: Session, *, user_id: uuid.UUID, limit: int) -> list[dict[str, Any]]:
    rows = session.execute(
        select(UserRecentFile.file_id, Material.title, Material.course_id, UserRecentFile.viewed_at)
        .join(Material, Material.id == UserRecentFile.file_id)
        .where(UserRecentFile.user_id == user_id, Material.is_published)
        .order_by(UserRecentFile.viewed_at.desc())
        .limit(limit)
    ).all()
    return [
        {"file_id": r.file_id, "title": r.title, "course_id": r.course_id, "viewed_at": r.viewed_at}
        for r in rows
    ]
