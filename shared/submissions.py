"""File requests: a student's submissions and what they may see of them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import clock
from shared.db.models import (
    Course,
    FileRequest,
    Lecturer,
    Material,
    MaterialType,
    ObjectIntent,
)
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.pagination import after_key, split_page

__all__ = [
    "WITHDRAWN_PREFIX",
    "Withdrawal",
    "check_academic_year",
    "check_references",
    "drop_intent",
    "duplicate_error",
    "find_live_duplicate",
    "get_user_request",
    "list_user_requests",
    "record_intent",
    "request_to_json",
    "resolve_lecturer",
    "withdraw",
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


def check_academic_year(course: Course, academic_year: int) -> None:
    """A course belongs to one program year: a request's ``academic_year`` must be it (422)."""
    if course.year_id is not None and academic_year != course.year_id:
        raise ValidationFailed({"academic_year": f"must be the course's year ({course.year_id})"})


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


def record_intent(session: Session, *, name: str, request_id: uuid.UUID | None) -> uuid.UUID:
    """Record, before uploading, that an object may exist at ``name`` (see ObjectIntent).

    ``request_id`` is None for an object no request will ever name (a refused
    direct upload's, see ``shared.uploads``).
    """
    intent = ObjectIntent(id=uuid.uuid4(), name=name, request_id=request_id)
    session.add(intent)
    session.flush()
    return intent.id


def drop_intent(session: Session, intent_id: uuid.UUID) -> bool:
    """Remove an intent; False when it was already gone.

    A call that finds its own intent gone at commit ran so long that the sweep
    claimed its object (``shared.sweep``): it must not commit a row naming it.
    """
    result = session.execute(delete(ObjectIntent).where(ObjectIntent.id == intent_id))
    return bool(getattr(result, "rowcount", 0))


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


# A withdrawn request's file_url: a name under which no object is ever written,
# so nothing refers to its deleted pending object any more (the sweep's
# ``may_delete`` then lets that object go, even after a crash).
WITHDRAWN_PREFIX = "withdrawn/"


@dataclass(frozen=True)
class Withdrawal:
    """What is left to do after the withdrawal committed: delete ``name``."""

    intent_id: uuid.UUID
    name: str


def withdraw(session: Session, *, user_id: uuid.UUID, request_id: uuid.UUID) -> Withdrawal:
    """Mark the uploader's own pending request ``withdrawn`` and announce its object's deletion.

    Another user's request, or none, is 404; one that is not pending is 409
    ``invalid_transition``, and so is a pending request that was published
    before (an undone approval keeps a hidden material, with readers' notes and
    progress, on the same object: an admin decides its fate). The row stops
    referring to the object and an intent for the object is recorded, in this
    transaction; the caller deletes the object after the commit.
    """
    request = session.scalar(
        select(FileRequest)
        .where(FileRequest.id == request_id, FileRequest.user_id == user_id)
        .with_for_update()
    )
    if request is None:
        raise NotFound("no such request")
    if request.status != "pending":
        raise Conflict(
            f"only a pending request can be withdrawn; this one is {request.status}",
            code="invalid_transition",
        )
    if session.get(Material, request.id) is not None:
        raise Conflict(
            "this file was published before; ask an admin to reject it",
            code="invalid_transition",
        )
    name = request.file_url
    request.status = "withdrawn"
    request.file_url = f"{WITHDRAWN_PREFIX}{request.id}/{request.original_filename}"
    request.updated_at = clock.now()
    session.flush()
    return Withdrawal(record_intent(session, name=name, request_id=request.id), name)
