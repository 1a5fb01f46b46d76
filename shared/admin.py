"""Admin data functions: users and roles, request edits, re-ingestion, the stats.

Handlers (``functions/moderate/main.py``) own the transaction; these only use
the session they are given, and each write records its audit row in that same
session (``shared.audit.record``), so a change and its record commit or fail
together.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Select, func, or_, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import audit, clock
from shared.catalog import contains_pattern
from shared.db.models import AuditLog, FileRequest, Material, User
from shared.errors import Conflict, Forbidden, NotFound
from shared.pagination import after_key, split_page
from shared.roles import refuse_last_admin
from shared.submissions import check_academic_year, check_references, find_live_duplicate
from shared.users import user_to_json

__all__ = [
    "EDITABLE_FIELDS",
    "STATS_QUERIES",
    "admin_user_to_json",
    "change_role",
    "edit_request",
    "list_users",
    "material_to_json",
    "queue_reingest",
    "stats",
]

# shared.pipeline.LEASE, which is not imported: it would bring pypdf and the
# embedders into the moderate function's package (a test keeps the two equal).
LEASE = timedelta(seconds=500)

EDITABLE_FIELDS = (
    "title",
    "course_id",
    "type_id",
    "lecturer_id",
    "academic_year",
    "material_year",
    "notes",
)


# -- users ---------------------------------------------------------------------


def admin_user_to_json(user: User) -> dict[str, Any]:
    return {**user_to_json(user), "last_login_at": user.last_login_at}


def list_users(
    session: Session,
    *,
    q: str | None,
    role: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset pages; ``q`` matches name or email anywhere, in any case."""
    after = after_key(cursor)
    statement = select(User).order_by(User.created_at.desc(), User.id.desc()).limit(limit + 1)
    if role is not None:
        statement = statement.where(User.role == role)
    if q:
        pattern = contains_pattern(q)
        statement = statement.where(
            or_(User.name.ilike(pattern, escape="\\"), User.email.ilike(pattern, escape="\\"))
        )
    if after is not None:
        statement = statement.where(tuple_(User.created_at, User.id) < tuple_(*after))
    rows = session.scalars(statement).all()
    page, next_cursor = split_page(rows, limit, lambda user: (user.created_at, user.id))
    return [admin_user_to_json(user) for user in page], next_cursor


def change_role(
    session: Session, *, actor: User, admins: list[uuid.UUID], user_id: uuid.UUID, role: str
) -> User:
    """Set a user's role; the last admin cannot be demoted (409 ``last_admin``).

    ``admins`` comes from ``shared.roles.lock_admins``, which the handler calls
    first in the transaction: role changes (here and in ``lectern admin
    revoke``) take turns, and the admins counted cannot change until this
    transaction ends.
    """
    if actor.id not in admins:
        # Demoted meanwhile by a change that committed while this one waited.
        raise Forbidden("this action needs an admin", code="admin_only")
    user = session.scalar(select(User).where(User.id == user_id).with_for_update())
    if user is None:
        raise NotFound("no such user")
    previous = user.role
    if previous == role:
        return user
    refuse_last_admin(admins, user)
    user.role = role
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="change_role",
        target_type="user",
        target_ids=[user.id],
        meta={"email": user.email, "from": previous, "to": role},
    )
    return user


# -- requests ------------------------------------------------------------------


def _jsonable(value: object) -> object:
    return str(value) if isinstance(value, uuid.UUID) else value


def edit_request(
    session: Session,
    *,
    actor: User,
    request_id: uuid.UUID,
    changes: dict[str, Any],
) -> FileRequest:
    """Edit a pending request's metadata (already-validated ``changes``).

    404 unknown; 409 ``invalid_transition`` unless pending; 422 naming each id
    that refers to nothing and an ``academic_year`` that is not the course's
    year (changing ``course_id`` alone moves ``academic_year`` to the new
    course's year); 409 ``duplicate_file`` when the same bytes are pending or
    approved in the new course. Audited as ``edit_request`` with the changed
    fields' old and new values; an edit that changes nothing records nothing.
    """
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    request = session.scalar(
        select(FileRequest).where(FileRequest.id == request_id).with_for_update()
    )
    if request is None:
        raise NotFound("no such request")
    if request.status != "pending":
        raise Conflict(
            f"only a pending request can be edited; this one is {request.status}",
            code="invalid_transition",
        )
    wanted = {**changes}
    course = check_references(
        session,
        course_id=wanted.get("course_id", request.course_id),
        type_id=wanted.get("type_id", request.type_id),
        lecturer_id=wanted.get("lecturer_id"),
    )
    course_moves = "course_id" in wanted and wanted["course_id"] != request.course_id
    if course_moves and "academic_year" not in wanted and course.year_id is not None:
        wanted["academic_year"] = course.year_id
    if "academic_year" in wanted or course_moves:
        check_academic_year(course, wanted.get("academic_year", request.academic_year))
    if course_moves:
        existing = find_live_duplicate(session, course_id=course.id, sha256=request.sha256)
        if existing is not None and existing.id != request.id:
            # Admins see every request, so the other one is named.
            raise Conflict(
                f"the same file is pending or approved in that course (request {existing.id})",
                code="duplicate_file",
            )
    changed = {
        name: [_jsonable(getattr(request, name)), _jsonable(value)]
        for name, value in wanted.items()
        if getattr(request, name) != value
    }
    for name, value in wanted.items():
        setattr(request, name, value)
    if not changed:
        # Nothing to change, nothing to record.
        return request
    request.updated_at = clock.now()
    try:
        session.flush()
    except IntegrityError:
        # The same bytes went live in that course meanwhile (the partial unique index).
        raise Conflict(
            "the same file is pending or approved in that course", code="duplicate_file"
        ) from None
    audit.record(
        session,
        actor=actor,
        action="edit_request",
        target_type="file_request",
        target_ids=[request.id],
        meta={"title": request.title, "changes": changed},
    )
    return request


# -- re-ingestion --------------------------------------------------------------


def material_to_json(material: Material) -> dict[str, Any]:
    return {
        "id": material.id,
        "title": material.title,
        "course_id": material.course_id,
        "type_id": material.type_id,
        "lecturer_id": material.lecturer_id,
        "uploader_id": material.uploader_id,
        "academic_year": material.academic_year,
        "material_year": material.material_year,
        "page_count": material.page_count,
        "ingest_status": material.ingest_status,
        "chunk_count": material.chunk_count,
        "ingest_error": material.ingest_error,
        "ingest_error_code": material.ingest_error_code,
        "ingest_attempts": material.ingest_attempts,
        "ingest_started_at": material.ingest_started_at,
        "ingest_finished_at": material.ingest_finished_at,
        "created_at": material.created_at,
    }


def published_object(session: Session, material_id: uuid.UUID) -> str:
    """The object of a published material; 404 unknown, 409 ``not_published``."""
    row = session.execute(
        select(Material.file_url, FileRequest.status)
        .join(FileRequest, FileRequest.id == Material.id)
        .where(Material.id == material_id)
    ).first()
    if row is None:
        raise NotFound("no such material")
    if row.status != "approved":
        raise Conflict(
            f"the material is not published (its request is {row.status})",
            code="not_published",
        )
    return str(row.file_url)


def queue_reingest(
    session: Session, *, actor: User, material_id: uuid.UUID, object_name: str, now: datetime
) -> Material:
    """Put a published material back to ``queued`` for another ingestion.

    Locks the request then the material, as the pipeline's claim does. The
    attempts and the error are reset, so the claim takes the same generation
    again (a queued material is not "already ingested") with a full budget.
    ``ingest_started_at`` becomes now: the sweep re-drives the material if the
    notice is lost, after ``INGEST_STALE_AFTER``. Refused (409) while another
    delivery holds a live lease on it (``ingest_in_progress``), or when the
    material was unpublished or moved since ``object_name`` was read. The old
    chunks stay searchable until the new set replaces them in one transaction.
    """
    request = session.scalar(
        select(FileRequest).where(FileRequest.id == material_id).with_for_update()
    )
    material = session.scalar(
        select(Material).where(Material.id == material_id).with_for_update(key_share=True)
    )
    if request is None or material is None:
        raise NotFound("no such material")
    if request.status != "approved":
        raise Conflict(
            f"the material is not published (its request is {request.status})",
            code="not_published",
        )
    if material.file_url != object_name:
        raise Conflict("the material was moved meanwhile; try again", code="conflict")
    started = material.ingest_started_at
    if material.ingest_status == "processing" and started is not None and now < started + LEASE:
        raise Conflict(
            "the material is being ingested right now; try again when it has finished",
            code="ingest_in_progress",
        )
    previous = {
        "ingest_status": material.ingest_status,
        "ingest_error_code": material.ingest_error_code,
        "ingest_attempts": material.ingest_attempts,
    }
    material.ingest_status = "queued"
    material.ingest_attempts = 0
    material.ingest_error = None
    material.ingest_error_code = None
    material.ingest_started_at = now
    material.ingest_finished_at = None
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="reingest",
        target_type="material",
        target_ids=[material.id],
        meta={"title": material.title, "object": object_name, "previous": previous},
    )
    return material


# -- stats ---------------------------------------------------------------------


def _requests_by_status(now: datetime) -> Select[*tuple[Any, ...]]:
    # An index-only scan of ix_file_requests_status_created.
    return select(FileRequest.status, func.count()).group_by(FileRequest.status)


def _oldest_pending(now: datetime) -> Select[*tuple[Any, ...]]:
    # The first entry of ix_file_requests_status_created under 'pending'.
    return select(func.min(FileRequest.created_at)).where(FileRequest.status == "pending")


def _materials_by_ingest_status(now: datetime) -> Select[*tuple[Any, ...]]:
    # ix_materials_ingest_status. Every material row, hidden (unpublished) ones included.
    return select(Material.ingest_status, func.count()).group_by(Material.ingest_status)


def _users_by_role(now: datetime) -> Select[*tuple[Any, ...]]:
    # ix_users_role_created_id.
    return select(User.role, func.count()).group_by(User.role)


def _approvals_since(now: datetime) -> Select[*tuple[Any, ...]]:
    # Approve transitions that succeeded, from the audit rows of approve calls
    # (ix_audit_logs_action_timestamp): a re-approval after an undo counts again.
    succeeded = func.coalesce(AuditLog.meta_data["succeeded"].astext.cast(Integer), 0)
    return select(func.coalesce(func.sum(succeeded), 0)).where(
        AuditLog.action.in_(("approve", "bulk_approve")),
        AuditLog.timestamp >= now - timedelta(days=7),
    )


# Each figure of GET /moderate/stats is one statement (a test EXPLAINs each).
STATS_QUERIES = {
    "requests": _requests_by_status,
    "oldest_pending": _oldest_pending,
    "materials": _materials_by_ingest_status,
    "users": _users_by_role,
    "approvals_last_7_days": _approvals_since,
}


def stats(session: Session, *, now: datetime) -> dict[str, Any]:
    """The moderation dashboard's figures; every known status, role is present (0 if none)."""
    from shared.db.models import INGEST_STATUSES, REQUEST_STATUSES, ROLES

    requests = dict.fromkeys(REQUEST_STATUSES, 0)
    requests.update({status: count for status, count in session.execute(_requests_by_status(now))})
    oldest = session.scalar(_oldest_pending(now))
    materials = dict.fromkeys(INGEST_STATUSES, 0)
    materials.update(
        {status: count for status, count in session.execute(_materials_by_ingest_status(now))}
    )
    users = dict.fromkeys(ROLES, 0)
    users.update({role: count for role, count in session.execute(_users_by_role(now))})
    approvals = session.scalar(_approvals_since(now))
    return {
        "requests": requests,
        "oldest_pending_at": oldest,
        "oldest_pending_age_seconds": (
            None if oldest is None else max(0, int((now - oldest).total_seconds()))
        ),
        "materials": materials,
        "users": users,
        "approvals_last_7_days": int(approvals or 0),
    }
