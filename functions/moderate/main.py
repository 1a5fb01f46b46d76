"""moderate: admins list file requests, move them between states, read the audit log."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import flask
import functions_framework
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared import admin, audit, clock, moderation, reingest, roles
from shared.config import Needs
from shared.db.engine import transaction
from shared.errors import Conflict, NotFound
from shared.fields import MultilineText, SingleLineText
from shared.http import Call, build_router, json_response
from shared.responses import (
    Download,
    FileRequest,
    IngestStatus,
    RequestStatus,
    Shape,
    Uploader,
    User,
    UtcDatetime,
)
from shared.storage import download_url, get_bucket

log = logging.getLogger("lectern.moderate")
router = build_router(Needs.STORAGE)

# Every route is for admins: a student is answered 403 before anything is read.
ADMIN = (403,)


class ModerationRequest(FileRequest):
    uploader: Uploader


class ModerationRequestDetail(ModerationRequest, Download):
    pass


class RequestPage(Shape):
    requests: list[ModerationRequest]
    next_cursor: str | None


class RequestOne(Shape):
    request: ModerationRequestDetail


class RequestEdited(Shape):
    request: ModerationRequest


class ActionSucceeded(Shape):
    request_id: uuid.UUID
    ok: Literal[True]
    status: RequestStatus = Field(description="The request's status after the action.")


class ActionFailed(Shape):
    request_id: uuid.UUID
    ok: Literal[False]
    status: RequestStatus | None = Field(
        description="The request's status, left as it was (null when there is no such request)."
    )
    error: str = Field(description="The item's error code (object_missing, invalid_transition...).")
    message: str


class ActionResults(Shape):
    # Told apart by ``ok`` (a plain union: an OpenAPI discriminator's keys are strings).
    results: list[ActionSucceeded | ActionFailed]


class AuditEntry(Shape):
    id: uuid.UUID
    timestamp: UtcDatetime
    actor_id: uuid.UUID | None = Field(description="Null for the CLI; actor_name says which.")
    actor_name: str
    action: str
    target_type: str
    target_ids: list[str]
    meta_data: dict[str, Any]


class AuditPage(Shape):
    entries: list[AuditEntry]
    next_cursor: str | None


class AdminUser(User):
    last_login_at: UtcDatetime | None


class UserPage(Shape):
    users: list[AdminUser]
    next_cursor: str | None


class UserOne(Shape):
    user: AdminUser


class AdminMaterial(Shape):
    id: uuid.UUID
    title: str
    course_id: uuid.UUID
    type_id: uuid.UUID
    lecturer_id: uuid.UUID
    uploader_id: uuid.UUID
    academic_year: int
    material_year: int
    page_count: int
    ingest_status: IngestStatus
    chunk_count: int
    ingest_error: str | None
    ingest_error_code: str | None
    ingest_attempts: int
    ingest_started_at: UtcDatetime | None
    ingest_finished_at: UtcDatetime | None
    created_at: UtcDatetime


class MaterialQueued(Shape):
    material: AdminMaterial


class RequestCounts(Shape):
    pending: int
    approved: int
    rejected: int
    withdrawn: int


class MaterialCounts(Shape):
    queued: int
    processing: int
    ready: int
    no_text: int
    failed: int


class UserCounts(Shape):
    STUDENT: int
    ADMIN: int


class Stats(Shape):
    requests: RequestCounts
    oldest_pending_at: UtcDatetime | None
    oldest_pending_age_seconds: int | None
    materials: MaterialCounts
    users: UserCounts
    approvals_last_7_days: int


class RequestQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["pending", "approved", "rejected", "withdrawn"] | None = "pending"
    course_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = None


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actor_id: uuid.UUID | None = None
    action: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,63}$")] | None = None
    target_id: uuid.UUID | None = None
    # Kept from the first contract: entries strictly older than this time.
    # Aware and within a sane range, so the driver never converts a time it cannot.
    before: AwareDatetime | None = Field(default=None, ge=datetime(1900, 1, 1, tzinfo=UTC))
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = None


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["approve", "reject", "undo_approve", "undo_reject", "take_down"]
    request_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)
    reason: Annotated[MultilineText, StringConstraints(max_length=1000)] | None = None

    @model_validator(mode="after")
    def _reason_to_reject(self) -> ActionBody:
        if self.action in ("reject", "take_down") and not self.reason:
            raise ValueError(f"reason: required to {self.action.replace('_', ' ')}")
        return self


@router.get("/requests", query=RequestQuery, response=RequestPage, errors=ADMIN)
def list_requests(call: Call) -> flask.Response:
    """The moderation queue, oldest first (pending by default)."""
    query = call.query(RequestQuery)
    with transaction(call.settings) as session:
        call.admin(session)
        requests, next_cursor = moderation.list_requests(
            session,
            status=query.status,
            course_id=query.course_id,
            user_id=query.user_id,
            limit=query.limit,
            cursor=query.cursor,
        )
    return json_response(RequestPage.of({"requests": requests, "next_cursor": next_cursor}))


@router.get("/requests/{request_id}", response=RequestOne, errors=ADMIN)
def get_request(call: Call) -> flask.Response:
    """One request with a download URL, so the file can be read before judging it."""
    request_id = call.path_id("request_id")
    with transaction(call.settings) as session:
        call.admin(session)
        found = moderation.get_request(session, request_id=request_id)
    if found is None:
        raise NotFound("no such request")
    url, expires_at = download_url(
        call.settings, found.pop("file_url"), page_count=found["page_count"]
    )
    found.update(download_url=url, download_url_expires_at=expires_at)
    return json_response(RequestOne.of({"request": found}))


@router.post("/actions", body=ActionBody, response=ActionResults, errors=ADMIN)
def act(call: Call) -> flask.Response:
    """Approve, reject, undo or take down up to 100 requests; one result per request.

    Each item succeeds or fails alone (``ok``); the call is audited once.
    """
    with transaction(call.settings) as session:
        admin = call.admin(session)
    body = call.json(ActionBody)
    results = moderation.run_call(
        call.settings,
        actor=admin,
        action=body.action,
        # Repeated ids are collapsed, the first occurrence kept.
        request_ids=list(dict.fromkeys(body.request_ids)),
        reason=body.reason,
    )
    return json_response(ActionResults.of({"results": results}))


@router.get("/audit", query=AuditQuery, response=AuditPage, errors=ADMIN)
def list_audit_log(call: Call) -> flask.Response:
    query = call.query(AuditQuery)
    with transaction(call.settings) as session:
        call.admin(session)
        entries, next_cursor = audit.list_entries(
            session,
            actor_id=query.actor_id,
            action=query.action,
            target_id=query.target_id,
            before=query.before,
            limit=query.limit,
            cursor=query.cursor,
        )
    return json_response(AuditPage.of({"entries": entries, "next_cursor": next_cursor}))


class UsersQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: Annotated[SingleLineText, StringConstraints(max_length=100)] | None = None
    role: Literal["STUDENT", "ADMIN"] | None = None
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = None


class RoleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["STUDENT", "ADMIN"]


class EditBody(BaseModel):
    """The fields of a pending request an admin may correct (the same rules as submit's form)."""

    model_config = ConfigDict(extra="forbid")

    title: Annotated[SingleLineText, StringConstraints(min_length=1, max_length=200)] | None = None
    course_id: uuid.UUID | None = None
    type_id: uuid.UUID | None = None
    lecturer_id: uuid.UUID | None = None
    academic_year: int | None = Field(default=None, ge=1, le=4)
    material_year: int | None = Field(default=None, ge=1950)
    # null clears the notes.
    notes: Annotated[MultilineText, StringConstraints(max_length=1000)] | None = None

    @model_validator(mode="after")
    def _check(self) -> EditBody:
        if not self.model_fields_set:
            raise ValueError(f"body: give at least one of {', '.join(admin.EDITABLE_FIELDS)}")
        for name in sorted(self.model_fields_set - {"notes"}):
            if getattr(self, name) is None:
                raise ValueError(f"{name}: may not be null")
        if self.material_year is not None and self.material_year > clock.now().year + 1:
            raise ValueError("material_year: cannot be in the future")
        return self


@router.patch("/requests/{request_id}", body=EditBody, response=RequestEdited, errors=ADMIN)
def edit_request(call: Call) -> flask.Response:
    """Correct a pending request's metadata before judging it (audited as edit_request)."""
    request_id = call.path_id("request_id")
    with transaction(call.settings) as session:
        call.admin(session)
    body = call.json(EditBody)
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    with transaction(call.settings) as session:
        actor = call.admin(session)
        admin.edit_request(session, actor=actor, request_id=request_id, changes=changes)
        found = moderation.get_request(session, request_id=request_id)
    assert found is not None
    found.pop("file_url")
    return json_response(RequestEdited.of({"request": found}))


@router.get("/users", query=UsersQuery, response=UserPage, errors=ADMIN)
def list_users(call: Call) -> flask.Response:
    """Users, newest first; ``q`` matches name or email anywhere."""
    query = call.query(UsersQuery)
    with transaction(call.settings) as session:
        call.admin(session)
        users, next_cursor = admin.list_users(
            session, q=query.q, role=query.role, limit=query.limit, cursor=query.cursor
        )
    return json_response(UserPage.of({"users": users, "next_cursor": next_cursor}))


@router.patch("/users/{user_id}", body=RoleBody, response=UserOne, errors=ADMIN)
def change_role(call: Call) -> flask.Response:
    """Make a user an admin or a student again (409 last_admin for the last admin)."""
    user_id = call.path_id("user_id")
    with transaction(call.settings) as session:
        call.admin(session)
    body = call.json(RoleBody)
    with transaction(call.settings) as session:
        # First: role changes take turns (two admins demoting each other leave one).
        admins = roles.lock_admins(session)
        actor = call.admin(session)
        user = admin.change_role(
            session, actor=actor, admins=admins, user_id=user_id, role=body.role
        )
        return json_response(UserOne.of({"user": admin.admin_user_to_json(user)}))


@router.post(
    "/materials/{material_id}/reingest",
    response=MaterialQueued,
    status=202,
    errors=(*ADMIN, 409),
)
def reingest_material(call: Call) -> flask.Response:
    """202: the material is queued again and its object announced to the pipeline.

    No transaction is open during the bucket or Pub/Sub call: the object's
    generation is read first, the row changes (with its audit row) in one short
    transaction, and the notice goes out after the commit.
    """
    material_id = call.path_id("material_id")
    with transaction(call.settings) as session:
        call.admin(session)
        object_name = admin.published_object(session, material_id)
    bucket = get_bucket(call.settings)
    generation = bucket.generation(object_name)
    metadata = bucket.metadata(object_name) if generation is not None else None
    if generation is None or metadata is None:
        raise Conflict(
            "the material's file is gone from storage; take it down instead",
            code="object_missing",
        )
    with transaction(call.settings) as session:
        actor = call.admin(session)
        material = admin.queue_reingest(
            session,
            actor=actor,
            material_id=material_id,
            object_name=object_name,
            now=clock.now(),
        )
        body = admin.material_to_json(material)
    notice = reingest.notification(
        bucket=bucket.name, name=object_name, generation=generation, metadata=metadata
    )
    reingest.announce(call.settings, notice)
    return json_response(MaterialQueued.of({"material": body}), 202)


@router.get("/stats", response=Stats, errors=ADMIN)
def get_stats(call: Call) -> flask.Response:
    """The moderation dashboard's figures (every status and role present, 0 if none)."""
    with transaction(call.settings) as session:
        call.admin(session)
        figures = admin.stats(session, now=clock.now())
    return json_response(Stats.of(figures))


@functions_framework.http
def moderate(request: flask.Request) -> flask.Response:
    return router(request)
