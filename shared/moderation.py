"""Moderation: the transitions of a file request, and the audit log.

No transaction and no row lock is held while the bucket is called: a frozen
bucket must not hold a pooled connection, the request's row lock and the
uploader's ``users`` row for as long as it stays frozen. So one transition is
three short steps around one storage call:

1. ``plan`` (transaction 1): lock the request, check the transition, choose
   the destination name and record an ``ObjectIntent`` for it (approvals
   into one folder take turns, under an advisory lock, and never choose a
   name that a material or an intent holds), commit;
2. copy the object to the destination (no transaction);
3. ``commit`` (transaction 2): lock the request again, check that nothing
   moved it meanwhile (status and object as planned), apply the change (the
   material, the ledger, the course activity), point the row at the copy,
   drop the destination's intent and record one for the old object, commit;
4. ``delete_unreferenced`` (after 2 failed, or after 3): delete the copy, or
   the old object, by its generation, unless a row or another intent refers
   to that name, then drop the intent.

A crash between any two steps leaves an intent naming an object no row
refers to, which ``shared.sweep`` deletes later; at no point does a committed
row point at an object that does not exist (except a rejected file past its
retention, which ``undo_reject`` reports as ``object_missing``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import audit, ledger
from shared.db.engine import transaction
from shared.db.models import (
    AuditLog,
    Course,
    FileRequest,
    Material,
    ObjectIntent,
    PointsTransaction,
    User,
)
from shared.db.outage import is_unavailable, sqlstate
from shared.pagination import after_key, split_page
from shared.progress import refresh_course_activity
from shared.storage import (
    StorageUnavailable,
    course_object,
    get_bucket,
    numbered,
    pending_object,
    rejected_object,
    safe_filename,
)
from shared.submissions import drop_intent, find_live_duplicate, request_to_json

if TYPE_CHECKING:
    from shared.config import Settings

__all__ = [
    "ACTIONS",
    "ItemError",
    "Outcome",
    "Plan",
    "apply_action",
    "commit",
    "delete_unreferenced",
    "failure",
    "get_request",
    "list_requests",
    "may_delete",
    "plan",
    "record_audit",
]

log = logging.getLogger("lectern.moderation")
_UNIQUE_VIOLATION = "23505"

# action -> (status it applies to, status it leaves)
ACTIONS: dict[str, tuple[str, str]] = {
    "approve": ("pending", "approved"),
    "reject": ("pending", "rejected"),
    "undo_approve": ("approved", "pending"),
    "undo_reject": ("rejected", "pending"),
    # Unpublish for good (a complaint, or a published object that vanished):
    # like undo_approve then reject, in one step that needs no object.
    "take_down": ("approved", "rejected"),
}


class ItemError(Exception):
    """One request of a bulk call could not be moved; the others go on."""

    def __init__(self, code: str, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Plan:
    """What transaction 1 decided; transaction 2 applies it if nothing moved meanwhile."""

    request_id: uuid.UUID
    action: str
    old_object: str
    new_object: str
    intent_id: uuid.UUID


@dataclass
class Outcome:
    request_id: uuid.UUID
    title: str
    status: str
    # The old object, now unreferenced: (intent id, name, generation).
    stale: tuple[uuid.UUID, str, int | None] | None = None


def _locked_request(session: Session, request_id: uuid.UUID) -> FileRequest | None:
    return session.scalar(select(FileRequest).where(FileRequest.id == request_id).with_for_update())


def _name_taken(session: Session, name: str) -> bool:
    material = session.scalar(select(Material.id).where(Material.file_url == name))
    intent = session.scalar(select(ObjectIntent.id).where(ObjectIntent.name == name).limit(1))
    return material is not None or intent is not None


def _free_course_name(session: Session, course: Course, filename: str) -> str:
    """``<Course>/<filename>``, numbered when a material or a move in flight has that name."""
    number = 1
    while True:
        candidate = course_object(course.name, numbered(filename, number))
        if not _name_taken(session, candidate):
            return candidate
        number += 1


def _lock_folder(session: Session, object_name: str) -> None:
    folder = object_name.rsplit("/", 1)[0]
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"folder:{folder}"}
    )


def _check_state(request: FileRequest | None, action: str) -> FileRequest:
    if request is None:
        raise ItemError("not_found", "no such request")
    source_status, _ = ACTIONS[action]
    if request.status != source_status:
        raise ItemError(
            "invalid_transition",
            f"cannot {action.replace('_', ' ')} a request that is {request.status}",
            request.status,
        )
    return request


def _raise_if_live_duplicate(session: Session, request: FileRequest) -> None:
    duplicate = find_live_duplicate(session, course_id=request.course_id, sha256=request.sha256)
    if duplicate is not None and duplicate.id != request.id:
        # Admins see every request, so the other one is named.
        raise ItemError(
            "duplicate_file",
            f"the same file is live again in this course (request {duplicate.id})",
            request.status,
        )


def plan(session: Session, *, request_id: uuid.UUID, action: str) -> Plan:
    """Transaction 1: check the transition and reserve its destination name."""
    request = _check_state(_locked_request(session, request_id), action)
    if action == "undo_reject":
        _raise_if_live_duplicate(session, request)
    filename = safe_filename(request.original_filename)
    if action == "approve":
        course = session.get(Course, request.course_id)
        assert course is not None
        # Keyed by the folder, not the course: two courses may share a name.
        _lock_folder(session, course_object(course.name, filename))
        new_object = _free_course_name(session, course, filename)
    elif action in ("reject", "take_down"):
        new_object = rejected_object(request.id, filename)
    else:
        new_object = pending_object(request.id, filename)
    intent = ObjectIntent(id=uuid.uuid4(), name=new_object, request_id=request.id)
    session.add(intent)
    session.flush()
    return Plan(request.id, action, request.file_url, new_object, intent.id)


def commit(
    session: Session,
    settings: Settings,
    planned: Plan,
    *,
    generation: int | None,
    old_generation: int | None,
    reason: str | None,
) -> Outcome:
    """Transaction 2: apply the planned transition if the request is still as planned.

    ``generation`` is the copy's (None when ``take_down`` found no object).
    """
    request = _check_state(_locked_request(session, planned.request_id), planned.action)
    if request.file_url != planned.old_object:
        raise ItemError(
            "invalid_transition", "the request was moved meanwhile; reload", request.status
        )
    action = planned.action
    _, target_status = ACTIONS[action]
    if action == "approve":
        _publish(session, settings, request, planned.new_object)
    elif action == "reject":
        request.admin_note = reason
    elif action == "undo_approve":
        _unpublish(session, request)
    elif action == "take_down":
        _unpublish(session, request)
        request.admin_note = reason
    else:
        # A resubmission of the same bytes may have gone live since transaction 1.
        _raise_if_live_duplicate(session, request)
        request.admin_note = None
    request.status = target_status
    request.file_url = planned.new_object
    request.updated_at = datetime.now(UTC)
    # Constraint violations surface here and roll everything back.
    session.flush()
    if action == "approve":
        # The pipeline ingests this generation of the object, or a newer one.
        material = session.get(Material, request.id)
        assert material is not None
        material.ingest_generation = generation
    drop_intent(session, planned.intent_id)
    stale = ObjectIntent(
        id=uuid.uuid4(),
        name=planned.old_object,
        generation=old_generation,
        request_id=request.id,
    )
    session.add(stale)
    session.flush()
    return Outcome(
        request.id, request.title, target_status, (stale.id, stale.name, stale.generation)
    )


def may_delete(
    session: Session,
    *,
    intent_id: uuid.UUID,
    name: str,
    abandoned_before: datetime | None = None,
) -> bool:
    """Whether the object an intent names may be deleted now (decided in one transaction).

    Not when a request or material refers to the name, nor while another
    intent holds it: whatever will refer to a name records its intent before
    writing there, and writes a newer generation than the one being deleted.
    Intents created before ``abandoned_before`` (the sweep's cut-off) belong
    to calls long dead and hold nothing. A name found referenced loses this
    intent at once.
    """
    referenced = session.scalar(
        select(FileRequest.id).where(FileRequest.file_url == name).limit(1)
    ) or session.scalar(select(Material.id).where(Material.file_url == name).limit(1))
    others = select(ObjectIntent.id).where(ObjectIntent.name == name, ObjectIntent.id != intent_id)
    if abandoned_before is not None:
        others = others.where(ObjectIntent.created_at >= abandoned_before)
    other = session.scalar(others.limit(1))
    if referenced is not None:
        drop_intent(session, intent_id)
        return False
    return other is None


def current_state(session: Session, request_id: uuid.UUID) -> FileRequest | None:
    return session.get(FileRequest, request_id)


def apply_action(
    settings: Settings, *, request_id: uuid.UUID, action: str, reason: str | None
) -> tuple[dict[str, Any], str]:
    """One item of a moderation call, as the steps above; its failure is its own result.

    Owns its transactions, as the steps need (like ``shared.pipeline.ingest``).

    Raises ``StorageUnavailable`` (after undoing what it began) so the caller
    stops instead of waiting on the bucket once per remaining item.
    """
    bucket = get_bucket(settings)
    try:
        with transaction(settings) as session:
            planned = plan(session, request_id=request_id, action=action)
    except ItemError as error:
        return failure(request_id, error), ""
    try:
        generation, old_generation = bucket.copy(planned.old_object, planned.new_object)
    except FileNotFoundError:
        if action != "take_down":
            _forget(settings, planned.intent_id)
            return failure(request_id, _missing(settings, planned)), ""
        generation, old_generation = None, None
    except Exception as error:
        _forget(settings, planned.intent_id)
        if isinstance(error, StorageUnavailable):
            raise
        log.exception("moderation copy failed", extra={"request_id": str(request_id)})
        return failure(request_id, ItemError("internal_error", "try again")), ""
    try:
        with transaction(settings) as session:
            outcome = commit(
                session,
                settings,
                planned,
                generation=generation,
                old_generation=old_generation,
                reason=reason,
            )
    except BaseException as error:
        # The copy is nobody's: delete it, unless a concurrent action made it theirs.
        if generation is not None:
            delete_unreferenced(settings, planned.intent_id, planned.new_object, generation)
        if isinstance(error, ItemError):
            return failure(request_id, error), ""
        if isinstance(error, IntegrityError):
            # A concurrent change won a unique key (the same bytes live again in
            # the course): nothing was changed.
            log.warning("moderation step conflicted", extra={"request_id": str(request_id)})
            conflict = ItemError(
                "duplicate_file" if sqlstate(error) == _UNIQUE_VIOLATION else "conflict",
                "the same file is live again in this course"
                if sqlstate(error) == _UNIQUE_VIOLATION
                else "a concurrent change conflicts with this one; reload and try again",
            )
            return failure(request_id, conflict), ""
        if not isinstance(error, Exception) or is_unavailable(error):
            raise
        log.exception("moderation step failed", extra={"request_id": str(request_id)})
        return failure(request_id, ItemError("internal_error", "try again")), ""
    if outcome.stale is not None:
        intent_id, name, stale_generation = outcome.stale
        delete_unreferenced(settings, intent_id, name, stale_generation)
    return {"request_id": request_id, "ok": True, "status": outcome.status}, outcome.title


def failure(request_id: uuid.UUID, error: ItemError) -> dict[str, Any]:
    result = {"request_id": request_id, "ok": False, "status": error.status}
    return {**result, "error": error.code, "message": error.message}


def _forget(settings: Settings, intent_id: uuid.UUID) -> None:
    with transaction(settings) as session:
        drop_intent(session, intent_id)


def _missing(settings: Settings, planned: Plan) -> ItemError:
    """The object to move is gone: moved by a concurrent action, or truly missing."""
    with transaction(settings) as session:
        request = current_state(session, planned.request_id)
    if request is None:
        return ItemError("not_found", "no such request")
    if request.file_url != planned.old_object or request.status != ACTIONS[planned.action][0]:
        return ItemError(
            "invalid_transition", "the request was moved meanwhile; reload", request.status
        )
    hint = " (take_down unpublishes it)" if request.status == "approved" else ""
    return ItemError("object_missing", f"the file is gone from storage{hint}", request.status)


def delete_unreferenced(
    settings: Settings, intent_id: uuid.UUID, name: str, generation: int | None
) -> None:
    """Delete an object nothing refers to; on any failure the sweep does it later."""
    try:
        with transaction(settings) as session:
            if not may_delete(session, intent_id=intent_id, name=name):
                return
        get_bucket(settings).delete(name, generation=generation)
        with transaction(settings) as session:
            drop_intent(session, intent_id)
    except Exception:
        log.warning("left %s for the sweep", name, exc_info=True)


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
    """One row per moderation call, ``bulk_<action>`` when it named several requests."""
    return audit.record(
        session,
        actor=actor,
        action=f"bulk_{action}" if len(request_ids) > 1 else action,
        target_type="file_request",
        target_ids=request_ids,
        meta=meta,
    )


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
