"""Sticky notes: one JSON list per user per published file, last write wins."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import Material, UserNote

__all__ = ["published_page_count", "read_notes", "write_notes"]


def read_notes(
    session: Session, *, user_id: uuid.UUID, file_id: uuid.UUID
) -> tuple[list[Any], datetime | None]:
    note = session.get(UserNote, (user_id, file_id))
    return (list(note.content), note.updated_at) if note else ([], None)


def published_page_count(session: Session, *, file_id: uuid.UUID) -> int | None:
    """The file's page count, or None when it is not a published material."""
    return session.scalar(
        select(Material.page_count).where(Material.id == file_id, Material.is_published)
    )


def write_notes(
    session: Session,
    *,
    user_id: uuid.UUID,
    file_id: uuid.UUID,
    notes: list[dict[str, Any]],
    now: datetime,
) -> datetime:
    session.execute(
        insert(UserNote)
        .values(user_id=user_id, file_id=file_id, content=notes, updated_at=now)
        .on_conflict_do_update(
            index_elements=["user_id", "file_id"], set_={"content": notes, "updated_at": now}
        )
    )
    return now
