"""The XP leaderboard, read from users.total_points.

Ranks are competition ranks (1, 2, 2, 4): a user's rank is one more than the
number of users with strictly more points. Within a tie, whoever reached the
score first (``points_reached_at``) is listed first. The page is read from the
top of ``ix_users_leaderboard`` (or ``ix_users_major_leaderboard``), so it costs
the same with 100 users or 100,000; the caller's own rank is one index range count.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.models import User

__all__ = ["leaderboard"]


def leaderboard(
    session: Session, *, me: User, major_id: uuid.UUID | None, limit: int
) -> dict[str, Any]:
    statement = (
        select(User.id, User.name, User.total_points)
        .order_by(User.total_points.desc(), User.points_reached_at, User.id)
        .limit(limit)
    )
    if major_id is not None:
        statement = statement.where(User.major_id == major_id)
    entries: list[dict[str, Any]] = []
    for position, row in enumerate(session.execute(statement), start=1):
        tied = entries and entries[-1]["total_points"] == row.total_points
        rank = entries[-1]["rank"] if tied else position
        entries.append(
            {"rank": rank, "user_id": row.id, "name": row.name, "total_points": row.total_points}
        )
    ahead = select(func.count()).where(User.total_points > me.total_points)
    if major_id is not None:
        ahead = ahead.where(User.major_id == major_id)
    in_board = major_id is None or me.major_id == major_id
    mine = (
        {"rank": int(session.scalar(ahead) or 0) + 1, "total_points": me.total_points}
        if in_board
        else None
    )
    return {"entries": entries, "me": mine}
