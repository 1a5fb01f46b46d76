"""submit: a student uploads a PDF for moderation and lists their own requests."""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import IO, Annotated, Any, Literal

import flask
import functions_framework
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import default_stream_factory

from shared import clock, ratelimit, submissions
from shared.config import Needs
from shared.db.engine import transaction
from shared.db.models import Course, FileRequest
from shared.errors import NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from shared.fields import MultilineText, SingleLineText
from shared.http import Call, build_router, json_response, no_content, refuse_body, validate
from shared.moderation import may_delete
from shared.pdf import count_pages
from shared.storage import (
    StorageUnavailable,
    get_bucket,
    pending_object,
    request_metadata,
    safe_filename,
)

log = logging.getLogger("lectern.submit")
router = build_router(Needs.STORAGE)

# Room for the form fields and multipart boundaries around the file itself.
FORM_OVERHEAD_BYTES = 256 * 1024


class SubmitForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    course_id: uuid.UUID
    type_id: uuid.UUID
    title: Annotated[SingleLineText, StringConstraints(min_length=1, max_length=200)]
    academic_year: int = Field(ge=1, le=4)
    material_year: int = Field(ge=1950)
    lecturer_id: uuid.UUID | None = None
    lecturer_name: (
        Annotated[SingleLineText, StringConstraints(min_length=1, max_length=100)] | None
    ) = None
    notes: Annotated[MultilineText, StringConstraints(max_length=1000)] | None = None

    @model_validator(mode="after")
    def _check(self) -> SubmitForm:
        if self.material_year > datetime.now(UTC).year + 1:
            raise ValueError("material_year: cannot be in the future")
        if (self.lecturer_id is None) == (self.lecturer_name is None):
            raise ValueError("lecturer_id: give exactly one of lecturer_id or lecturer_name")
        return self


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["pending", "approved", "rejected", "withdrawn"] | None = None
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = None


def _form(call: Call) -> tuple[SubmitForm, bytes, str]:
    """The validated fields and the file's bytes, read under the size cap."""
    request = call.request
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("send the upload as multipart/form-data")
    cap = call.settings.max_upload_bytes
    too_large = PayloadTooLarge(f"the file is larger than {call.settings.MAX_UPLOAD_MB} MB")
    if (request.content_length or 0) > cap + FORM_OVERHEAD_BYTES:
        refuse_body(request)
        raise too_large
    # Werkzeug stops reading at this limit and spools file parts to disk, so
    # an oversized or endless body never sits whole in memory.
    request.max_content_length = cap + FORM_OVERHEAD_BYTES
    spooled: list[IO[bytes]] = []

    def file_stream(*args: Any, **kwargs: Any) -> IO[bytes]:
        stream: IO[bytes] = default_stream_factory(*args, **kwargs)
        spooled.append(stream)
        return stream

    # Werkzeug leaves the spool of a part it stopped parsing open; we close it.
    request._get_file_stream = file_stream  # type: ignore[method-assign]
    try:
        fields = {key: value for key, value in request.form.items() if value.strip() != ""}
        upload = request.files.get("file")
    except RequestEntityTooLarge:
        for stream in spooled:
            stream.close()
        refuse_body(request)
        raise too_large from None
    form = validate(SubmitForm, fields)
    if upload is None:
        raise ValidationFailed({"file": "required"})
    data = upload.stream.read(cap + 1)
    if len(data) > cap:
        raise too_large
    return form, data, upload.filename or ""


@router.post("/")
def submit_file(call: Call) -> flask.Response:
    """Check, upload, then record: no transaction is open while the bucket is called.

    1. a short transaction checks the references and looks for a duplicate
       (so a doomed upload is refused before its bytes are sent), and records
       an intent for the object name, which is derived from a new request id;
    2. the upload (no transaction);
    3. a short transaction inserts the request (checking everything again)
       and drops the intent. If it fails, the object is deleted here; if the
       process dies first, ``shared.sweep`` deletes it.
    """
    with transaction(call.settings) as session:
        user_id = call.user(session).id
        # Committed on its own: refused and failed uploads count too.
        ratelimit.check(
            session,
            user_id=user_id,
            action="upload",
            limit=call.settings.RATE_LIMIT_UPLOADS_PER_HOUR,
            window=timedelta(hours=1),
            now=clock.now(),
        )
    form, data, filename = _form(call)
    page_count = count_pages(data)
    sha256 = hashlib.sha256(data).hexdigest()
    request_id = uuid.uuid4()
    filename = safe_filename(filename)
    object_name = pending_object(request_id, filename)
    with transaction(call.settings) as session:
        _check(session, form, sha256, user_id)
        intent_id = submissions.record_intent(session, name=object_name, request_id=request_id)
    bucket = get_bucket(call.settings)
    try:
        generation = bucket.upload(
            object_name,
            data,
            request_metadata(
                request_id=request_id, sha256=sha256, uploader_id=user_id, course_id=form.course_id
            ),
        )
    except StorageUnavailable:
        # Not waiting on the bucket twice: the intent tells the sweep to look.
        raise
    except Exception:
        # A failed upload may still have written something.
        _delete_orphan(call, intent_id, object_name, None)
        raise
    try:
        with transaction(call.settings) as session:
            course = _check(session, form, sha256, user_id)
            lecturer_id = form.lecturer_id or submissions.resolve_lecturer(
                session, name=str(form.lecturer_name)
            )
            request = FileRequest(
                id=request_id,
                user_id=user_id,
                course_id=course.id,
                type_id=form.type_id,
                lecturer_id=lecturer_id,
                title=form.title,
                academic_year=form.academic_year,
                material_year=form.material_year,
                file_url=object_name,
                original_filename=filename,
                sha256=sha256,
                size_bytes=len(data),
                page_count=page_count,
                notes=form.notes,
            )
            session.add(request)
            session.flush()
            submissions.drop_intent(session, intent_id)
            body = submissions.request_to_json(request)
    except BaseException as error:
        # The row did not commit: the object must not outlive it.
        _delete_orphan(call, intent_id, object_name, generation)
        if isinstance(error, IntegrityError):
            # Two uploads of the same bytes raced; the partial unique index let one in.
            with transaction(call.settings) as session:
                _check(session, form, sha256, user_id)
        raise
    log.info("file submitted", extra={"request_id": str(request_id), "pages": page_count})
    return json_response({"request": body}, 201)


def _check(session: Session, form: SubmitForm, sha256: str, user_id: uuid.UUID) -> Course:
    course = submissions.check_references(
        session, course_id=form.course_id, type_id=form.type_id, lecturer_id=form.lecturer_id
    )
    submissions.check_academic_year(course, form.academic_year)
    existing = submissions.find_live_duplicate(session, course_id=course.id, sha256=sha256)
    if existing is not None:
        raise submissions.duplicate_error(existing, viewer_id=user_id)
    return course


def _delete_orphan(call: Call, intent_id: uuid.UUID, name: str, generation: int | None) -> None:
    try:
        get_bucket(call.settings).delete(name, generation=generation)
        with transaction(call.settings) as session:
            submissions.drop_intent(session, intent_id)
    except Exception:
        log.warning("left %s for the sweep", name, exc_info=True)


@router.get("/")
def list_requests(call: Call) -> flask.Response:
    query = call.query(ListQuery)
    with transaction(call.settings) as session:
        user = call.user(session)
        requests, next_cursor = submissions.list_user_requests(
            session, user_id=user.id, status=query.status, limit=query.limit, cursor=query.cursor
        )
    return json_response({"requests": requests, "next_cursor": next_cursor})


@router.get("/{request_id}")
def get_request(call: Call) -> flask.Response:
    request_id = call.path_id("request_id")
    with transaction(call.settings) as session:
        user = call.user(session)
        found = submissions.get_user_request(session, user_id=user.id, request_id=request_id)
        if found is None:
            raise NotFound("no such request")
        return json_response({"request": submissions.request_to_json(*found)})


@router.delete("/{request_id}")
def withdraw_request(call: Call) -> flask.Response:
    """The uploader withdraws their own pending request: 204, and its object is deleted.

    The row becomes ``withdrawn`` (and stops naming the object) in one short
    transaction that also records an intent for the object; the object is
    deleted after the commit, with no transaction open. If that delete fails
    (the bucket is down) or the process dies first, the sweep deletes it; the
    withdrawal itself is done either way.
    """
    request_id = call.path_id("request_id")
    with transaction(call.settings) as session:
        user = call.user(session)
        withdrawal = submissions.withdraw(session, user_id=user.id, request_id=request_id)
    try:
        with transaction(call.settings) as session:
            deletable = may_delete(session, intent_id=withdrawal.intent_id, name=withdrawal.name)
        if deletable:
            get_bucket(call.settings).delete(withdrawal.name)
            with transaction(call.settings) as session:
                submissions.drop_intent(session, withdrawal.intent_id)
    except Exception:
        log.warning("left %s for the sweep", withdrawal.name, exc_info=True)
    log.info("request withdrawn", extra={"request_id": str(request_id)})
    return no_content()


@functions_framework.http
def submit(request: flask.Request) -> flask.Response:
    return router(request)
