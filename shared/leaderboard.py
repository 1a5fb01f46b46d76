"""The XP leaderboard, read from users.total_points.

Ranks are competition ranks (1, 2, 2, 4): a user's rank is one more than the
number of users with strictly more points. Within a tie, whoever reached the
score first (``points_reached_at``) is listed first, then by id, so the order
is total and a page boundary inside a tie neither repeats nor skips anyone.
Pages are keyset pages (cursor: the last row's points, reached_at and id),
read from ``ix_users_leaderboard`` (or ``ix_users_major_leaderboard``), so a
page costs the same with 100 users or 100,000, however deep; the first rank of
a later page and the caller's own rank are one index range count each.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.orm import Session

from shared.db.models import User
from shared.pagination import decode_key, encode_key
from shared.responses import Shape

__all__ = ["Leaderboard", "LeaderboardEntry", "Rank", "leaderboard", "rank_of"]


class LeaderboardEntry(Shape):
    rank: int
    user_id: uuid.UUID
    name: str
    total_points: int


class Rank(Shape):
    """The caller's place: one more than the number of users with more points."""

    rank: int
    total_points: int


class Leaderboard(Shape):
    entries: list[LeaderboardEntry]
    # Null when the board is another major's than the caller's.
    me: Rank | None
    next_cursor: str | None


def _count_ahead(session: Session, points: int, major_id: uuid.UUID | None) -> int:
    ahead = select(func.count()).where(User.total_points > points)
    if major_id is not None:
        ahead = ahead.where(User.major_id == major_id)
    return int(session.scalar(ahead) or 0)


def _page_start(
    session: Session,
    key: tuple[object, ...],
    first_points: int,
    major_id: uuid.UUID | None,
) -> tuple[int, int]:
    """A later page's first rank, and how many users come before the page (one count)."""
    points, reached_at, last_id = key
    at_or_before_cursor = or_(
        User.total_points > points,
        and_(
            User.total_points == points,
            tuple_(User.points_reached_at, User.id) <= tuple_(reached_at, last_id),
        ),
    )
    statement = select(
        func.count().filter(User.total_points > first_points),
        func.count().filter(at_or_before_cursor),
    ).where(User.total_points >= first_points)
    if major_id is not None:
        statement = statement.where(User.major_id == major_id)
    ahead, before = session.execute(statement).one()
    return int(ahead) + 1, int(before)


def rank_of(session: Session, me: User, *, major_id: uuid.UUID | None = None) -> Rank:
    return Rank(
        rank=_count_ahead(session, me.total_points, major_id) + 1, total_points=me.total_points
    )


def leaderboard(
    session: Session,
    *,
    me: User,
    major_id: uuid.UUID | None,
    limit: int,
    cursor: str | None = None,
) -> Leaderboard:
    statement = (
        select(User.id, User.name, User.total_points, User.points_reached_at)
        .order_by(User.total_points.desc(), User.points_reached_at, User.id)
        .limit(limit + 1)
    )
    if major_id is not None:
        statement = statement.where(User.major_id == major_id)
    key = decode_key(cursor, (int, datetime, uuid.UUID)) if cursor else None
    if key is not None:
        points, reached_at, last_id = key
        # The first conjunct is the index range; the second orders within the tie.
        statement = statement.where(
            User.total_points <= points,
            or_(
                User.total_points < points,
                and_(
                    User.total_points == points,
                    tuple_(User.points_reached_at, User.id) > tuple_(reached_at, last_id),
                ),
            ),
        )
    rows = session.execute(statement).all()
    page, more = rows[:limit], len(rows) > limit
    first_rank, before = 1, 0
    if key is not None and page:
        first_rank, before = _page_start(session, key, page[0].total_points, major_id)
    entries: list[LeaderboardEntry] = []
    for position, row in enumerate(page):
        if position == 0:
            rank = first_rank
        elif entries[-1].total_points == row.total_points:
            rank = entries[-1].rank
        else:
            # Fewer points than the row before: everyone ahead in the order has more.
            rank = before + position + 1
        entries.append(
            LeaderboardEntry(
                rank=rank, user_id=row.id, name=row.name, total_points=row.total_points
            )
        )
    last = page[-1] if more else None
    next_cursor = encode_key(last.total_points, last.points_reached_at, last.id) if last else None
    in_board = major_id is None or me.major_id == major_id
    mine = rank_of(session, me, major_id=major_id) if in_board else None
    return Leaderboard(entries=entries, me=mine, next_cursor=next_cursor)
