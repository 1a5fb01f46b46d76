"""moderate: admins list file requests, move them between states, read the audit log."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Literal

import flask
import functions_framework
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared import audit, moderation
from shared.config import Needs
from shared.db.engine import transaction
from shared.errors import NotFound
from shared.fields import MultilineText
from shared.http import Call, build_router, json_response
from shared.storage import download_url

log = logging.getLogger("lectern.moderate")
router = build_router(Needs.STORAGE)


class RequestQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["pending", "approved", "rejected"] | None = "pending"
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
    before: datetime | None = None
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


@router.get("/requests")
def list_requests(call: Call) -> flask.Response:
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
    return json_response({"requests": requests, "next_cursor": next_cursor})


@router.get("/requests/{request_id}")
def get_request(call: Call) -> flask.Response:
    """One request with a download URL, so the file can be read before judging it."""
    request_id = call.path_id("request_id")
    with transaction(call.settings) as session:
        call.admin(session)
        found = moderation.get_request(session, request_id=request_id)
    if found is None:
        raise NotFound("no such request")
    found["download_url"] = download_url(call.settings, found.pop("file_url"))
    return json_response({"request": found})


@router.post("/actions")
def act(call: Call) -> flask.Response:
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
    return json_response({"results": results})


@router.get("/audit")
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
    return json_response({"entries": entries, "next_cursor": next_cursor})


@functions_framework.http
def moderate(request: flask.Request) -> flask.Response:
    return router(request)
