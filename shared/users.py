"""The signed-in user's profile and XP ledger."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from shared.db.models import Major, PointsTransaction, User
from shared.errors import ValidationFailed
from shared.pagination import after_key, split_page
from shared.responses import Shape, UtcDatetime
from shared.responses import User as UserShape

__all__ = [
    "PointsEntry",
    "PointsPage",
    "list_points",
    "profile_of",
    "update_profile",
    "user_to_json",
]


class PointsEntry(Shape):
    id: uuid.UUID
    # Negative for a compensation (an approval undone).
    amount: int
    action: str
    reason: str
    created_at: UtcDatetime


class PointsPage(Shape):
    entries: list[PointsEntry]
    next_cursor: str | None


PROFILE_FIELDS = ("name", "bio", "avatar_url", "university", "major_id")


def user_to_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "total_points": user.total_points,
        "major_id": user.major_id,
        "bio": user.bio,
        "avatar_url": user.avatar_url,
        "university": user.university,
        "created_at": user.created_at,
    }


def profile_of(user: User) -> UserShape:
    return UserShape.of(user_to_json(user))


def update_profile(*, session: Session, user: User, changes: dict[str, Any]) -> User:
    """Apply already-validated profile changes; an unknown major is a 422."""
    major_id = changes.get("major_id")
    if major_id is not None and session.get(Major, major_id) is None:
        raise ValidationFailed({"major_id": "no such major"})
    for name, value in changes.items():
        if name not in PROFILE_FIELDS:
            raise ValueError(f"not a profile field: {name}")
        setattr(user, name, value)
    session.flush()
    return user


def list_points(
    *,
    session: Session,
    user_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> PointsPage:
    """One page of the user's ledger, newest first, and the next page's cursor.

    Keyset on (created_at, id): rows written in the same instant keep one order.
    """
    after = after_key(cursor)
    statement = (
        select(PointsTransaction)
        .where(PointsTransaction.user_id == user_id)
        .order_by(PointsTransaction.created_at.desc(), PointsTransaction.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        statement = statement.where(
            tuple_(PointsTransaction.created_at, PointsTransaction.id) < tuple_(*after)
        )
    rows = list(session.scalars(statement))
    page, next_cursor = split_page(rows, limit, lambda row: (row.created_at, row.id))
    entries = [
        PointsEntry(
            id=row.id,
            amount=row.amount,
            action=row.action,
            reason=row.reason,
            created_at=row.created_at,
        )
        for row in page
    ]
    return PointsPage(entries=entries, next_cursor=next_cursor)
