"""Moderation: the four transitions of a file request, and the audit log.

Each transition runs in the caller's transaction with the request row locked
(SELECT ... FOR UPDATE), so two admins acting on one request at once are
serialised and the second sees the state the first left.

Storage and database steps are ordered so a crash between any two leaves a
state the next action repairs:

1. change and flush the rows (constraint violations surface before the
   bucket is touched);
2. copy the object to its new name (still inside the transaction);
3. commit (the caller);
4. delete the old object (the caller, after commit, through ``delete_stale``
   in a new short transaction): under the request's row lock and the folder's
   lock, and only if no row refers to that name any more. Another action may
   have moved the request (or another request) back onto that name in the
   meantime; the object there is then a live file and stays. The deletion is
   also conditioned on the copied generation, which GCS enforces.

A failure before 3 rolls the rows back; a crash after 2 leaves an extra copy
that the retried action overwrites; a crash after 3 leaves a stale old copy
that nothing refers to. At no point does
a committed row point at an object that does not exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text, tuple_
from sqlalchemy.orm import Session

from shared import ledger
from shared.db.models import AuditLog, Course, FileRequest, Material, PointsTransaction, User
from shared.pagination import after_key, split_page
from shared.progress import refresh_course_activity
from shared.storage import course_object, numbered, pending_object, rejected_object, safe_filename
from shared.submissions import find_live_duplicate, request_to_json

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.storage import Bucket

__all__ = [
    "ACTIONS",
    "ItemError",
    "Outcome",
    "audit_to_json",
    "delete_stale",
    "get_request",
    "list_audit",
    "list_requests",
    "record_audit",
    "transition",
]

# action -> (status it applies to, status it leaves)
ACTIONS: dict[str, tuple[str, str]] = {
    "approve": ("pending", "approved"),
    "reject": ("pending", "rejected"),
    "undo_approve": ("approved", "pending"),
    "undo_reject": ("rejected", "pending"),
}


class ItemError(Exception):
    """One request of a bulk call could not be moved; the others go on."""

    def __init__(self, code: str, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class Outcome:
    request_id: uuid.UUID
    title: str
    status: str
    # (name, generation) of objects to delete once the change is committed.
    stale_objects: list[tuple[str, int]] = field(default_factory=list)


def _free_course_name(session: Session, course: Course, filename: str) -> str:
    """``<Course>/<filename>``, numbered when another material already has that name."""
    number = 1
    while True:
        candidate = course_object(course.name, numbered(filename, number))
        taken = session.scalar(select(Material.id).where(Material.file_url == candidate))
        if taken is None:
            return candidate
        number += 1


def transition(
    session: Session,
    bucket: Bucket,
    settings: Settings,
    *,
    request_id: uuid.UUID,
    action: str,
    reason: str | None,
) -> Outcome:
    request = session.scalar(
        select(FileRequest).where(FileRequest.id == request_id).with_for_update()
    )
    if request is None:
        raise ItemError("not_found", "no such request")
    source_status, target_status = ACTIONS[action]
    if request.status != source_status:
        raise ItemError(
            "invalid_transition",
            f"cannot {action.replace('_', ' ')} a request that is {request.status}",
            request.status,
        )
    filename = safe_filename(request.original_filename)
    old_object = request.file_url
    if action == "approve":
        course = session.get(Course, request.course_id)
        assert course is not None
        # Approvals into one folder take turns choosing a free name; otherwise
        # two files named alike could be copied onto the same object. Keyed by
        # the folder, not the course: two courses may share a name.
        _lock_folder(session, course_object(course.name, filename))
        new_object = _free_course_name(session, course, filename)
        _publish(session, settings, request, new_object)
    elif action == "reject":
        new_object = rejected_object(request.id, filename)
        request.admin_note = reason
    elif action == "undo_approve":
        new_object = pending_object(request.id, filename)
        _unpublish(session, request)
    else:
        duplicate = find_live_duplicate(session, course_id=request.course_id, sha256=request.sha256)
        if duplicate is not None:
            raise ItemError(
                "duplicate_file",
                f"the same file is live again in this course (request {duplicate.id})",
                request.status,
            )
        new_object = pending_object(request.id, filename)
        request.admin_note = None
    request.status = target_status
    request.file_url = new_object
    request.updated_at = datetime.now(UTC)
    # Constraint violations surface here, before the bucket is touched.
    session.flush()
    generation, old_generation = bucket.copy(old_object, new_object)
    if action == "approve":
        # The pipeline ingests this generation of the object, or a newer one.
        material = session.get(Material, request.id)
        assert material is not None
        material.ingest_generation = generation
        session.flush()
    return Outcome(request.id, request.title, target_status, [(old_object, old_generation)])


def _lock_folder(session: Session, object_name: str) -> None:
    folder = object_name.rsplit("/", 1)[0]
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"folder:{folder}"}
    )


def delete_stale(
    session: Session, bucket: Bucket, *, request_id: uuid.UUID, name: str, generation: int
) -> bool:
    """Delete an object a committed transition left behind, unless it is live again.

    Holds the request's row lock and the folder's lock, which every transition
    that writes this name also holds, so nothing can move onto the name
    between the check and the deletion. True if it was deleted.
    """
    request = session.scalar(
        select(FileRequest).where(FileRequest.id == request_id).with_for_update()
    )
    _lock_folder(session, name)
    live = session.scalar(select(Material.id).where(Material.file_url == name))
    if (request is not None and request.file_url == name) or live is not None:
        return False
    return bucket.delete(name, generation=generation)


def _publish(session: Session, settings: Settings, request: FileRequest, object_name: str) -> None:
    request.approval_episode += 1
    session.add(
        Material(
            id=request.id,
            title=request.title,
            academic_year=request.academic_year,
            material_year=request.material_year,
            course_id=request.course_id,
            lecturer_id=request.lecturer_id,
            type_id=request.type_id,
            uploader_id=request.user_id,
            notes=request.notes,
            file_url=object_name,
            page_count=request.page_count,
            sha256=request.sha256,
        )
    )
    session.flush()
    ledger.award(
        session,
        user_id=request.user_id,
        amount=settings.XP_UPLOAD_APPROVAL,
        action="upload_approval",
        reason=f"Upload approved: {request.title}",
        source_id=ledger.upload_approval_key(request.id, request.approval_episode),
        request_id=request.id,
    )
    refresh_course_activity(session, course_id=request.course_id)


def _unpublish(session: Session, request: FileRequest) -> None:
    material = session.get(Material, request.id)
    if material is not None:
        # Chunks, sessions, notes and recent-file rows go with it (ON DELETE CASCADE).
        session.delete(material)
        session.flush()
    awarded = session.scalar(
        select(PointsTransaction.amount).where(
            PointsTransaction.source_id
            == ledger.upload_approval_key(request.id, request.approval_episode)
        )
    )
    if awarded:
        # Take back exactly what this approval gave, even if the XP setting changed since.
        ledger.award(
            session,
            user_id=request.user_id,
            amount=-awarded,
            action="upload_approval_revoked",
            reason=f"Upload approval undone: {request.title}",
            source_id=ledger.upload_revoked_key(request.id, request.approval_episode),
            request_id=request.id,
        )
    refresh_course_activity(session, course_id=request.course_id)


def record_audit(
    session: Session,
    *,
    actor: User,
    action: str,
    request_ids: list[uuid.UUID],
    meta: dict[str, Any],
) -> AuditLog:
    entry = AuditLog(
        actor_id=actor.id,
        actor_name=actor.name or actor.email,
        action=f"bulk_{action}" if len(request_ids) > 1 else action,
        target_type="file_request",
        target_ids=[str(request_id) for request_id in request_ids],
        meta_data=meta,
    )
    session.add(entry)
    session.flush()
    return entry


def audit_to_json(entry: AuditLog) -> dict[str, Any]:
    return {
        "id": entry.id,
        "timestamp": entry.timestamp,
        "actor_id": entry.actor_id,
        "actor_name": entry.actor_name,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_ids": entry.target_ids,
        "meta_data": entry.meta_data,
    }


def list_audit(session: Session, *, limit: int, before: datetime | None) -> list[dict[str, Any]]:
    statement = select(AuditLog).order_by(AuditLog.timestamp.desc(), AuditLog.id.desc())
    if before is not None:
        statement = statement.where(AuditLog.timestamp < before)
    return [audit_to_json(entry) for entry in session.scalars(statement.limit(limit))]


def get_request(session: Session, *, request_id: uuid.UUID) -> dict[str, Any] | None:
    row = session.execute(
        select(FileRequest, Material, User)
        .outerjoin(Material, Material.id == FileRequest.id)
        .join(User, User.id == FileRequest.user_id)
        .where(FileRequest.id == request_id)
    ).first()
    if row is None:
        return None
    request, material, uploader = row
    body = request_to_json(request, material)
    body["uploader"] = {"id": uploader.id, "name": uploader.name, "email": uploader.email}
    body["file_url"] = request.file_url
    return body


def list_requests(
    session: Session,
    *,
    status: str | None,
    course_id: uuid.UUID | None,
    user_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The moderation queue, oldest first (first come, first served), and the next cursor."""
    after = after_key(cursor)
    statement = (
        select(FileRequest, Material, User)
        .outerjoin(Material, Material.id == FileRequest.id)
        .join(User, User.id == FileRequest.user_id)
        .order_by(FileRequest.created_at, FileRequest.id)
        .limit(limit + 1)
    )
    if status is not None:
        statement = statement.where(FileRequest.status == status)
    if course_id is not None:
        statement = statement.where(FileRequest.course_id == course_id)
    if user_id is not None:
        statement = statement.where(FileRequest.user_id == user_id)
    if after is not None:
        statement = statement.where(tuple_(FileRequest.created_at, FileRequest.id) > tuple_(*after))
    rows = session.execute(statement).all()
    page, next_cursor = split_page(rows, limit, lambda row: (row[0].created_at, row[0].id))
    entries = []
    for request, material, uploader in page:
        body = request_to_json(request, material)
        body["uploader"] = {"id": uploader.id, "name": uploader.name, "email": uploader.email}
        entries.append(body)
    return entries, next_cursor
