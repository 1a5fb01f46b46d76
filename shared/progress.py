"""Per-user course activity (the seed's user_course_activities).

``total_files`` is the course's number of published materials and
``files_completed`` the number of them the user has completed
(``reading_progress.is_complete``, which never goes back; hidden materials
count for neither, and count again once shown);
both are recomputed from their sources rather than incremented, so a retry or
a material that comes and goes can never leave them wrong.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

__all__ = ["STATUS_SQL", "refresh_course_activity"]

# The seed's thresholds: not_started 0, exploring 1 to <50%, engaged >=50%, completed 100%.
STATUS_SQL = """
    CASE
        WHEN {done} = 0 THEN 'not_started'
        WHEN {total} > 0 AND {done} >= {total} THEN 'completed'
        WHEN {done} * 2 >= {total} THEN 'engaged'
        ELSE 'exploring'
    END
"""

_REFRESH = text(
    """
    WITH totals AS (
        SELECT count(*) AS total FROM materials
         WHERE course_id = :course_id AND is_published
    ), done AS (
        SELECT activity.user_id,
               (SELECT count(*)
                  FROM reading_progress p
                  JOIN materials m ON m.id = p.file_id AND m.is_published
                 WHERE p.user_id = activity.user_id
                   AND m.course_id = :course_id
                   AND p.is_complete) AS completed
          FROM user_course_activities activity
         WHERE activity.course_id = :course_id
           AND (CAST(:user_id AS uuid) IS NULL OR activity.user_id = :user_id)
    )
    UPDATE user_course_activities activity
       SET total_files = totals.total,
           files_completed = done.completed,
           status = """
    + STATUS_SQL.format(done="done.completed", total="totals.total")
    + """,
           updated_at = now()
      FROM totals, done
     WHERE activity.course_id = :course_id
       AND activity.user_id = done.user_id
    """
)


def refresh_course_activity(
    session: Session, *, course_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> None:
    """Recompute totals and status for one course: every user's, or one user's."""
    session.execute(_REFRESH, {"course_id": course_id, "user_id": user_id})
