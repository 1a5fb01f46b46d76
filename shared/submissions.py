"""File requests: a student's submissions and what they may see of them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import (
    Course,
    FileRequest,
    Lecturer,
    Material,
    MaterialType,
    ObjectIntent,
)
from shared.errors import Conflict, ValidationFailed
from shared.pagination import after_key, split_page

__all__ = [
    "check_references",
    "drop_intent",
    "duplicate_error",
    "find_live_duplicate",
    "get_user_request",
    "list_user_requests",
    "record_intent",
    "request_to_json",
    "resolve_lecturer",
]


def request_to_json(request: FileRequest, material: Material | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": request.id,
        "user_id": request.user_id,
        "course_id": request.course_id,
        "type_id": request.type_id,
        "lecturer_id": request.lecturer_id,
        "title": request.title,
        "academic_year": request.academic_year,
        "material_year": request.material_year,
        "status": request.status,
        "notes": request.notes,
        "admin_note": request.admin_note,
        "page_count": request.page_count,
        "size_bytes": request.size_bytes,
        "original_filename": request.original_filename,
        "created_at": request.created_at,
        "updated_at": request.updated_at,
    }
    if material is not None:
        body["ingest_status"] = material.ingest_status
        body["chunk_count"] = material.chunk_count
        body["ingest_error"] = material.ingest_error
        body["ingest_error_code"] = material.ingest_error_code
        body["ingest_started_at"] = material.ingest_started_at
        body["ingest_finished_at"] = material.ingest_finished_at
    return body


def check_references(
    session: Session,
    *,
    course_id: uuid.UUID,
    type_id: uuid.UUID,
    lecturer_id: uuid.UUID | None,
) -> Course:
    """The course; 422 naming each id that refers to nothing."""
    fields: dict[str, str] = {}
    course = session.get(Course, course_id)
    if course is None:
        fields["course_id"] = "no such course"
    if session.get(MaterialType, type_id) is None:
        fields["type_id"] = "no such material type"
    if lecturer_id is not None and session.get(Lecturer, lecturer_id) is None:
        fields["lecturer_id"] = "no such lecturer"
    if fields:
        raise ValidationFailed(fields)
    assert course is not None
    return course


def resolve_lecturer(session: Session, *, name: str) -> uuid.UUID:
    """The lecturer of that name in any letter case, created when new."""
    session.execute(insert(Lecturer).values(name=name).on_conflict_do_nothing())
    lecturer_id = session.scalar(
        select(Lecturer.id).where(func.lower(Lecturer.name) == name.lower())
    )
    assert lecturer_id is not None
    return lecturer_id


def find_live_duplicate(
    session: Session, *, course_id: uuid.UUID, sha256: str
) -> FileRequest | None:
    """A pending or approved request of the same bytes in the same course."""
    return session.scalar(
        select(FileRequest).where(
            FileRequest.course_id == course_id,
            FileRequest.sha256 == sha256,
            FileRequest.status.in_(("pending", "approved")),
        )
    )


def duplicate_error(existing: FileRequest, *, viewer_id: uuid.UUID) -> Conflict:
    """409 duplicate_file; the other request is named only to its own uploader."""
    if existing.user_id == viewer_id:
        message = f"you already submitted this file for this course (request {existing.id})"
    else:
        message = "the same file was already submitted for this course"
    return Conflict(message, code="duplicate_file")


def record_intent(session: Session, *, name: str, request_id: uuid.UUID) -> uuid.UUID:
    """Record, before uploading, that an object may exist at ``name`` (see ObjectIntent)."""
    intent = ObjectIntent(id=uuid.uuid4(), name=name, request_id=request_id)
    session.add(intent)
    session.flush()
    return intent.id


def drop_intent(session: Session, intent_id: uuid.UUID) -> None:
    session.execute(delete(ObjectIntent).where(ObjectIntent.id == intent_id))


def get_user_request(
    session: Session, *, user_id: uuid.UUID, request_id: uuid.UUID
) -> tuple[FileRequest, Material | None] | None:
    """The user's own request; another user's is indistinguishable from none."""
    row = session.execute(
        select(FileRequest, Material)
        .outerjoin(Material, Material.id == FileRequest.id)
        .where(FileRequest.id == request_id, FileRequest.user_id == user_id)
    ).first()
    return None if row is None else (row[0], row[1])


def list_user_requests(
    session: Session,
    *,
    user_id: uuid.UUID,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the user's own requests, newest first, and the next page's cursor."""
    after = after_key(cursor)
    statement = (
        select(FileRequest, Material)
        .outerjoin(Material, Material.id == FileRequest.id)
        .where(FileRequest.user_id == user_id)
        .order_by(FileRequest.created_at.desc(), FileRequest.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        statement = statement.where(FileRequest.status == status)
    if after is not None:
        statement = statement.where(tuple_(FileRequest.created_at, FileRequest.id) < tuple_(*after))
    rows = session.execute(statement).all()
    page, next_cursor = split_page(rows, limit, lambda row: (row[0].created_at, row[0].id))
    return [request_to_json(request, material) for request, material in page], next_cursor
