"""Moderation: the transitions of a file request, and the audit log.

No transaction and no row lock is held while the bucket is called: a frozen
bucket must not hold a pooled connection, the request's row lock and the
uploader's ``users`` row for as long as it stays frozen. So a moderation call
(``run_call``) is short transactions around its storage calls:

1. ``plan``, per item (a short transaction each): lock the request, check
   the transition, choose the destination name and record an
   ``ObjectIntent`` for it (approvals into one folder take turns, under an
   advisory lock, and never choose a name that a material or an intent
   holds), commit;
2. copy each object to its destination (no transaction);
3. one transaction for the whole call: per item, under a savepoint,
   ``commit`` locks the request again, checks nothing moved it meanwhile
   (status and object as planned), applies the change (the material, the
   ledger, the course activity), points the row at the copy, drops the
   destination's intent and records one for the old object; then the call's
   audit row, in the same transaction, so a change and its record commit
   or fail together;
4. ``delete_unreferenced``: delete each old object, and each copy whose
   item failed, by its generation, unless a row or another intent refers to
   that name, then drop the intent.

A crash between any two steps leaves an intent naming an object no row
refers to, which ``shared.sweep`` deletes later; at no point does a committed
row point at an object that does not exist (except a rejected file past its
retention, which ``undo_reject`` reports as ``object_missing``).

Unpublishing (``undo_approve``) moves nothing: the material is hidden
(``is_published``) and its object stays in the course folder, so students'
notes, progress, recent files and the chunks are kept, and approving again
shows the same object (same generation: no re-ingestion) with all of it.
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
from shared.db.outage import sqlstate
from shared.pagination import after_key, split_page
from shared.progress import refresh_course_activity
from shared.storage import (
    StorageUnavailable,
    course_object,
    get_bucket,
    in_course_folder,
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
    "commit",
    "delete_unreferenced",
    "failure",
    "get_request",
    "list_requests",
    "may_delete",
    "plan",
    "record_audit",
    "run_call",
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
    # The course the destination was chosen for.
    course_id: uuid.UUID
    old_object: str
    new_object: str
    # None when nothing is copied (the object stays where it is).
    intent_id: uuid.UUID | None

    @property
    def moves(self) -> bool:
        return self.new_object != self.old_object


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
    if action == "undo_approve" or (
        action == "approve" and _hidden_in_its_course(session, request)
    ):
        # Unpublished in place, or published again from there: nothing moves.
        return Plan(request.id, action, request.course_id, request.file_url, request.file_url, None)
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
    return Plan(request.id, action, request.course_id, request.file_url, new_object, intent.id)


def _hidden_in_its_course(session: Session, request: FileRequest) -> bool:
    """Whether an undone approval's object still sits in the request's course folder.

    A request edited to another course while pending moves to that course's
    folder when approved again, like a first approval.
    """
    if not in_course_folder(request.file_url):
        return False
    material = session.get(Material, request.id)
    return material is not None and material.course_id == request.course_id


def commit(
    session: Session,
    settings: Settings,
    planned: Plan,
    *,
    generation: int | None,
    old_generation: int | None,
    reason: str | None,
) -> Outcome:
    """Step 3 for one item: apply the planned transition if the request is still as planned.

    ``generation`` is the copy's: None when nothing was copied (the object
    stays, or ``take_down`` found none).
    """
    request = _check_state(_locked_request(session, planned.request_id), planned.action)
    if request.file_url != planned.old_object:
        raise ItemError(
            "invalid_transition", "the request was moved meanwhile; reload", request.status
        )
    if request.course_id != planned.course_id:
        # Edited while pending (PATCH /requests/{id}): the name planned is in the old folder.
        raise ItemError(
            "invalid_transition", "the request was edited meanwhile; reload", request.status
        )
    action = planned.action
    _, target_status = ACTIONS[action]
    material = session.get(Material, request.id)
    if action == "approve":
        _publish(session, settings, request, planned.new_object, generation)
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
    if material is not None and action != "approve":
        # A hidden material follows its object (names stay taken while it exists).
        material.file_url = planned.new_object
    request.status = target_status
    request.file_url = planned.new_object
    request.updated_at = datetime.now(UTC)
    # Constraint violations surface here and roll the item back.
    session.flush()
    stale = None
    if planned.intent_id is not None and not drop_intent(session, planned.intent_id):
        # This call outlived the sweep's cut-off, which claimed (and deletes) the copy.
        raise ItemError(
            "conflict", "this call took too long and its copy was cleaned up; try again"
        )
    if planned.moves:
        intent = ObjectIntent(
            id=uuid.uuid4(),
            name=planned.old_object,
            generation=old_generation,
            request_id=request.id,
        )
        session.add(intent)
        session.flush()
        stale = (intent.id, intent.name, intent.generation)
    return Outcome(request.id, request.title, target_status, stale)


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


@dataclass
class _Staged:
    """An item planned and copied, waiting for step 3."""

    planned: Plan
    generation: int | None
    old_generation: int | None


def run_call(
    settings: Settings,
    *,
    actor: User | None,
    action: str,
    request_ids: list[uuid.UUID],
    reason: str | None,
    actor_name: str | None = None,
) -> list[dict[str, Any]]:
    """One moderation call, as the steps above: a result per request, in order.

    Owns its transactions, as the steps need (like ``shared.pipeline.ingest``).
    One item's failure is its own result. When the bucket stops answering,
    the remaining items are reported ``storage_unavailable`` without being
    tried; if no item can succeed then, ``StorageUnavailable`` is raised (503)
    after undoing what was begun. A failure of step 3 itself (the database,
    or the audit row) fails the whole call, with every copy deleted.
    """
    bucket = get_bucket(settings)
    results: dict[uuid.UUID, dict[str, Any]] = {}
    staged: list[_Staged] = []
    outage: StorageUnavailable | None = None
    for request_id in request_ids:
        if outage is not None:
            results[request_id] = failure(request_id, _not_tried())
            continue
        try:
            with transaction(settings) as session:
                planned = plan(session, request_id=request_id, action=action)
        except ItemError as error:
            results[request_id] = failure(request_id, error)
            continue
        try:
            staged.append(_copy(settings, bucket, planned))
        except ItemError as error:
            results[request_id] = failure(request_id, error)
        except StorageUnavailable as error:
            outage = error
            results[request_id] = failure(request_id, _not_tried())
    if outage is not None and not staged:
        # Nothing can change: the whole call is a 503 (and, changing nothing, not audited).
        raise outage
    leftovers = _commit_all(
        settings, actor, actor_name, action, request_ids, reason, staged, results
    )
    for intent_id, name, generation in leftovers:
        delete_unreferenced(settings, intent_id, name, generation)
    return [results[request_id] for request_id in request_ids]


def _not_tried() -> ItemError:
    return ItemError("storage_unavailable", "file storage is unavailable; try again shortly", None)


def _copy(settings: Settings, bucket: Any, planned: Plan) -> _Staged:
    """Step 2 for one item; an item error after dropping its intent."""
    try:
        if not planned.moves:
            # Nothing to copy, but the row must not be left pointing at nothing.
            if bucket.generation(planned.old_object) is None:
                raise FileNotFoundError(planned.old_object)
            return _Staged(planned, None, None)
        generation, old_generation = bucket.copy(planned.old_object, planned.new_object)
    except FileNotFoundError:
        if planned.action == "take_down":
            # Unpublish even so; there is nothing to keep under rejected/.
            return _Staged(planned, None, None)
        _forget(settings, planned.intent_id)
        raise _missing(settings, planned) from None
    except StorageUnavailable:
        # The copy may have been written before the answer was lost: the
        # intent stays, and the sweep deletes whatever is there.
        raise
    except Exception:
        log.exception("moderation copy failed", extra={"file_request_id": str(planned.request_id)})
        raise ItemError("internal_error", "try again") from None
    return _Staged(planned, generation, old_generation)


def _commit_all(
    settings: Settings,
    actor: User | None,
    actor_name: str | None,
    action: str,
    request_ids: list[uuid.UUID],
    reason: str | None,
    staged: list[_Staged],
    results: dict[uuid.UUID, dict[str, Any]],
) -> list[tuple[uuid.UUID, str, int | None]]:
    """Step 3: every staged item under its own savepoint, and the audit row, in one
    transaction. Returns the objects to delete: old ones, and copies of failed items."""
    titles: list[str] = []
    stale: list[tuple[uuid.UUID, str, int | None]] = []
    copies: list[tuple[uuid.UUID, str, int | None]] = []
    try:
        with transaction(settings) as session:
            # In id order, so two calls naming the same requests lock them alike.
            for item in sorted(staged, key=lambda item: str(item.planned.request_id)):
                request_id = item.planned.request_id
                copy = (item.planned.intent_id, item.planned.new_object, item.generation)
                savepoint = session.begin_nested()
                try:
                    outcome = commit(
                        session,
                        settings,
                        item.planned,
                        generation=item.generation,
                        old_generation=item.old_generation,
                        reason=reason,
                    )
                except (ItemError, IntegrityError) as error:
                    savepoint.rollback()
                    results[request_id] = failure(request_id, _item_error(request_id, error))
                    if copy[0] is not None and item.generation is not None:
                        copies.append(copy)  # type: ignore[arg-type]
                    continue
                savepoint.commit()
                results[request_id] = {
                    "request_id": request_id,
                    "ok": True,
                    "status": outcome.status,
                }
                titles.append(outcome.title)
                if outcome.stale is not None:
                    stale.append(outcome.stale)
            _audit(session, actor, actor_name, action, request_ids, reason, results, titles)
    except Exception:
        # Nothing of step 3 committed: no row refers to any copy.
        for item in staged:
            if item.planned.intent_id is not None and item.generation is not None:
                delete_unreferenced(
                    settings, item.planned.intent_id, item.planned.new_object, item.generation
                )
        raise
    return stale + copies


def _item_error(request_id: uuid.UUID, error: Exception) -> ItemError:
    if isinstance(error, ItemError):
        return error
    # A concurrent change won a unique key (the same bytes live again in the
    # course, a name taken): nothing of this item was changed.
    log.warning("moderation step conflicted", extra={"file_request_id": str(request_id)})
    if sqlstate(error) == _UNIQUE_VIOLATION:
        return ItemError("duplicate_file", "the same file is live again in this course")
    return ItemError(
        "conflict", "a concurrent change conflicts with this one; reload and try again"
    )


def _audit(
    session: Session,
    actor: User | None,
    actor_name: str | None,
    action: str,
    request_ids: list[uuid.UUID],
    reason: str | None,
    results: dict[uuid.UUID, dict[str, Any]],
    titles: list[str],
) -> None:
    done = [results[request_id] for request_id in request_ids if request_id in results]
    record_audit(
        session,
        actor=actor,
        actor_name=actor_name,
        action=action,
        request_ids=request_ids,
        meta={
            "count": len(request_ids),
            "succeeded": sum(1 for result in done if result["ok"]),
            "titles": titles,
            "reason": reason,
            "failures": {
                str(result["request_id"]): result["error"] for result in done if not result["ok"]
            },
        },
    )


def failure(request_id: uuid.UUID, error: ItemError) -> dict[str, Any]:
    result = {"request_id": request_id, "ok": False, "status": error.status}
    return {**result, "error": error.code, "message": error.message}


def _forget(settings: Settings, intent_id: uuid.UUID | None) -> None:
    if intent_id is None:
        return
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


def _publish(
    session: Session,
    settings: Settings,
    request: FileRequest,
    object_name: str,
    generation: int | None,
) -> None:
    """Create the material, or show a hidden one again (its rows come back as they were).

    ``generation`` is that of a new copy, which the pipeline ingests (or a
    newer one); None when the object did not move, so nothing is re-ingested.
    """
    request.approval_episode += 1
    material = session.get(Material, request.id)
    if material is None:
        material = Material(
            id=request.id,
            uploader_id=request.user_id,
            page_count=request.page_count,
            sha256=request.sha256,
        )
        session.add(material)
    # The request's metadata may have been edited while it was pending.
    material.title = request.title
    material.academic_year = request.academic_year
    material.material_year = request.material_year
    material.course_id = request.course_id
    material.lecturer_id = request.lecturer_id
    material.type_id = request.type_id
    material.notes = request.notes
    material.file_url = object_name
    material.is_published = True
    material.unpublished_at = None
    if generation is not None:
        material.ingest_generation = generation
        material.ingest_status = "queued"
        material.ingest_attempts = 0
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
    """Hide the material; students' notes, progress, recent files and chunks stay."""
    material = session.get(Material, request.id)
    if material is not None:
        material.is_published = False
        material.unpublished_at = datetime.now(UTC)
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
    actor: User | None,
    action: str,
    request_ids: list[uuid.UUID],
    meta: dict[str, Any],
    actor_name: str | None = None,
) -> AuditLog:
    """One row per moderation call, ``bulk_<action>`` when it named several requests."""
    return audit.record(
        session,
        actor=actor,
        actor_name=actor_name,
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
