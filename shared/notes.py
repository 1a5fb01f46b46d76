"""Sticky notes: one JSON list per user per published file, last write wins.

The list of files a user has notes on (``list_note_files``) pages newest
first by keyset on (updated_at, file_id); a file with an empty list, or one
no longer published, is not listed (its notes are kept and come back with it).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import SerializerFunctionWrapHandler, model_serializer
from sqlalchemy import func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import Material, UserNote
from shared.pagination import after_key, split_page
from shared.responses import Shape, UtcDatetime

__all__ = [
    "NoteFile",
    "NoteFiles",
    "StoredNote",
    "list_note_files",
    "published_page_count",
    "read_notes",
    "write_notes",
]


class StoredNote(Shape):
    """A sticky note as stored: what ``PUT`` accepted, optional fields only when set."""

    id: str
    text: str
    page: int | None = None
    color: str | None = None

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Sent back exactly as written, so a client can PUT what it read.
        return {key: value for key, value in handler(self).items() if value is not None}


class NoteFile(Shape):
    file_id: uuid.UUID
    title: str
    # How many notes the file has.
    count: int
    updated_at: UtcDatetime


class NoteFiles(Shape):
    files: list[NoteFile]
    next_cursor: str | None


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


def list_note_files(
    session: Session, *, user_id: uuid.UUID, limit: int, cursor: str | None
) -> NoteFiles:
    """The published files the user has notes on, most recently written first."""
    count = func.jsonb_array_length(UserNote.content)
    statement = (
        select(UserNote.file_id, Material.title, count.label("count"), UserNote.updated_at)
        .join(Material, Material.id == UserNote.file_id)
        .where(UserNote.user_id == user_id, Material.is_published, count > 0)
        .order_by(UserNote.updated_at.desc(), UserNote.file_id.desc())
        .limit(limit + 1)
    )
    after = after_key(cursor)
    if after is not None:
        statement = statement.where(tuple_(UserNote.updated_at, UserNote.file_id) < tuple_(*after))
    rows = session.execute(statement).all()
    page, next_cursor = split_page(rows, limit, lambda row: (row.updated_at, row.file_id))
    return NoteFiles(
        files=[
            NoteFile(file_id=r.file_id, title=r.title, count=r.count, updated_at=r.updated_at)
            for r in page
        ],
        next_cursor=next_cursor,
    )
