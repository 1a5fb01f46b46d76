"""Writing the XP ledger.

Every award names the event that earned it (``source_id``, unique). A retry
of the same event hits the unique key and writes nothing. ``users.total_points``
follows the ledger through a database trigger, in the same transaction, and
only when a row was really written.
"""

from __future__ import annotations

import uuid

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import PointsTransaction

__all__ = [
    "award",
    "course_complete_key",
    "file_completed_key",
    "upload_approval_key",
    "upload_revoked_key",
]


def upload_approval_key(request_id: uuid.UUID, episode: int) -> str:
    return f"upload_approval:{request_id}:{episode}"


def upload_revoked_key(request_id: uuid.UUID, episode: int) -> str:
    return f"upload_approval_revoked:{request_id}:{episode}"


def file_completed_key(user_id: uuid.UUID, file_id: uuid.UUID) -> str:
    return f"file_completed:{user_id}:{file_id}"


def course_complete_key(user_id: uuid.UUID, course_id: uuid.UUID) -> str:
    return f"course_complete:{user_id}:{course_id}"


def award(
    session: Session,
    *,
    user_id: uuid.UUID,
    amount: int,
    action: str,
    reason: str,
    source_id: str,
    request_id: uuid.UUID | None = None,
) -> bool:
    """Append one ledger row unless ``source_id`` was already used; True if written.

    An amount of 0 (an award configured off) writes nothing.
    """
    if amount == 0:
        return False
    written = session.execute(
        insert(PointsTransaction)
        .values(
            user_id=user_id,
            amount=amount,
            action=action,
            reason=reason,
            source_id=source_id,
            request_id=request_id,
        )
        .on_conflict_do_nothing(index_elements=["source_id"])
        .returning(PointsTransaction.id)
    ).first()
    return written is not None
