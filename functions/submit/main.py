"""submit: a student uploads a PDF for moderation and lists their own requests.

Two ways in: one multipart request (``POST /``) for files that fit in a
request, and direct uploads (``POST /uploads``, then ``/uploads/{id}/complete``)
where the browser sends the bytes straight to the bucket. Both make the same
checks and the same request rows.
"""

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

from shared import clock, ratelimit, submissions, uploads
from shared.config import Needs
from shared.db.engine import transaction
from shared.db.models import Course, DirectUpload, FileRequest
from shared.errors import (
    Conflict,
    LecternError,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.fields import MultilineText, SingleLineText
from shared.http import Call, build_router, json_response, no_content, refuse_body, validate
from shared.moderation import delete_unreferenced, may_delete
from shared.pdf import count_pages
from shared.responses import FileRequest as RequestShape
from shared.responses import Shape, UtcDatetime
from shared.storage import (
    META_UPLOAD_ID,
    META_UPLOADER_ID,
    StorageUnavailable,
    get_bucket,
    pending_object,
    request_metadata,
    safe_filename,
    upload_object,
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


class CompleteForm(SubmitForm):
    """The multipart form's fields (minus ``file``), as JSON, for ``complete``."""

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        # As in the multipart form: a blank field counts as absent.
        if isinstance(data, dict):
            return {
                key: value
                for key, value in data.items()
                if not (value is None or (isinstance(value, str) and value.strip() == ""))
            }
        return data


class UploadForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Any name: it is made safe as a multipart upload's filename is.
    filename: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    size_bytes: int = Field(ge=1)
    content_type: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["pending", "approved", "rejected", "withdrawn"] | None = None
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = None


class SubmittedRequest(Shape):
    request: RequestShape


class SubmittedRequestPage(Shape):
    requests: list[RequestShape]
    next_cursor: str | None


class Upload(Shape):
    """Where and how the browser sends the file's bytes, and until when."""

    id: uuid.UUID
    upload_url: str = Field(description="A resumable upload session; PUT the bytes here.")
    method: Literal["PUT"]
    headers: dict[str, str] = Field(description="Headers to send with the bytes.")
    chunk_multiple: int = Field(description="Chunks other than the last are multiples of this.")
    filename: str
    size_bytes: int
    content_type: str
    status: Literal["open", "completed", "failed"]
    created_at: UtcDatetime
    expires_at: UtcDatetime


class UploadOne(Shape):
    upload: Upload


def _created(call: Call, body: dict[str, Any]) -> flask.Response:
    """201 with the new request, and where it is read from."""
    location = call.location(f"/{body['id']}")
    return json_response(SubmittedRequest.of({"request": body}), 201, location=location)


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


@router.post(
    "/",
    form=SubmitForm,
    files=(("file", "application/pdf"),),
    response=SubmittedRequest,
    status=201,
    errors=(409, 429),
    summary="Upload a PDF for moderation (multipart/form-data: the file and its fields)",
)
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
            request = _insert_request(
                session,
                form,
                request_id=request_id,
                user_id=user_id,
                object_name=object_name,
                filename=filename,
                sha256=sha256,
                size_bytes=len(data),
                page_count=page_count,
            )
            _keep_object(session, intent_id, retry="upload the file again")
            body = submissions.request_to_json(request)
    except BaseException as error:
        # The row did not commit: the object must not outlive it.
        _delete_orphan(call, intent_id, object_name, generation)
        if isinstance(error, IntegrityError):
            # Two uploads of the same bytes raced; the partial unique index let one in.
            with transaction(call.settings) as session:
                _check(session, form, sha256, user_id)
        raise
    log.info("file submitted", extra={"file_request_id": str(request_id), "pages": page_count})
    return _created(call, body)


class _CopySwept(Conflict):
    """The sweep claimed the object this call was about to commit (``_keep_object``)."""


def _keep_object(session: Session, intent_id: uuid.UUID, *, retry: str) -> None:
    """Drop the upload's intent, so the object stays with the row about to commit.

    An intent already gone was claimed by the sweep: this call outlived
    ``ABANDONED_AFTER`` and the object is deleted (or about to be), so the row
    must not commit naming it.
    """
    if not submissions.drop_intent(session, intent_id):
        raise _CopySwept(
            f"this call took too long and its copy was cleaned up; {retry}", code="conflict"
        )


def _insert_request(
    session: Session,
    form: SubmitForm,
    *,
    request_id: uuid.UUID,
    user_id: uuid.UUID,
    object_name: str,
    filename: str,
    sha256: str,
    size_bytes: int,
    page_count: int,
) -> FileRequest:
    """The request row of a stored file, after checking everything again (both paths)."""
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
        size_bytes=size_bytes,
        page_count=page_count,
        notes=form.notes,
    )
    session.add(request)
    session.flush()
    return request


def _check_references(session: Session, form: SubmitForm) -> Course:
    """The form's ids exist and agree (422); the checks that need no file."""
    course = submissions.check_references(
        session, course_id=form.course_id, type_id=form.type_id, lecturer_id=form.lecturer_id
    )
    submissions.check_academic_year(course, form.academic_year)
    return course


def _check(session: Session, form: SubmitForm, sha256: str, user_id: uuid.UUID) -> Course:
    course = _check_references(session, form)
    existing = submissions.find_live_duplicate(session, course_id=course.id, sha256=sha256)
    if existing is not None:
        raise submissions.duplicate_error(existing, viewer_id=user_id)
    return course


def _delete_orphan(call: Call, intent_id: uuid.UUID, name: str, generation: int | None) -> None:
    """Delete an object whose row did not commit, unless a row refers to it after all
    (a commit whose answer was lost); on any failure the sweep does it later."""
    delete_unreferenced(call.settings, intent_id, name, generation)


@router.post("/uploads", body=UploadForm, response=UploadOne, status=201, errors=(429,))
def open_upload(call: Call) -> flask.Response:
    """A resumable upload session for one PDF, sent by the browser straight to the bucket.

    ``Location`` is the session's ``upload_url``, as GCS answers a new resumable session.

    Counted against the same per-user limit as a multipart upload (a direct
    upload is one upload; its complete call is not counted again). The
    session is created before the row: a row is never left naming a session
    that failed, and a session whose row failed is never handed out (nothing
    is written until a browser holds its URL).
    """
    with transaction(call.settings) as session:
        user_id = call.user(session).id
        ratelimit.check(
            session,
            user_id=user_id,
            action="upload",
            limit=call.settings.RATE_LIMIT_UPLOADS_PER_HOUR,
            window=timedelta(hours=1),
            now=clock.now(),
        )
    form = call.json(UploadForm)
    if form.content_type.lower() != uploads.CONTENT_TYPE:
        raise UnsupportedMediaType(
            f"only PDF files are accepted (content_type {uploads.CONTENT_TYPE})",
            code="not_a_pdf",
        )
    if form.size_bytes > call.settings.max_upload_bytes:
        raise uploads.too_large_error(call.settings)
    upload_id = uuid.uuid4()
    filename = safe_filename(form.filename)
    object_name = upload_object(upload_id, filename)
    upload_url = get_bucket(call.settings).create_upload_session(
        object_name,
        size=form.size_bytes,
        content_type=uploads.CONTENT_TYPE,
        origin=_allowed_origin(call),
        metadata={META_UPLOAD_ID: str(upload_id), META_UPLOADER_ID: str(user_id)},
    )
    with transaction(call.settings) as session:
        upload = uploads.new_upload(
            session,
            upload_id=upload_id,
            user_id=user_id,
            object_name=object_name,
            filename=filename,
            size_bytes=form.size_bytes,
            now=clock.now(),
            settings=call.settings,
        )
        body = uploads.upload_to_json(upload, upload_url)
    log.info("upload opened", extra={"upload_id": str(upload_id), "size_bytes": form.size_bytes})
    return json_response(UploadOne.of({"upload": body}), 201, location=upload_url)


def _allowed_origin(call: Call) -> str | None:
    """The browser origin GCS should answer with CORS headers: the caller's, if allowed."""
    origin = (call.request.headers.get("Origin") or "").rstrip("/")
    allowed = call.settings.CORS_ORIGINS
    if origin and ("*" in allowed or origin in allowed):
        return origin
    return None


class _Settled(Exception):
    """The upload was settled by another complete call meanwhile."""


@router.post(
    "/uploads/{upload_id}/complete",
    body=CompleteForm,
    response=SubmittedRequest,
    status=201,
    errors=(409,),
)
def complete_upload(call: Call) -> flask.Response:
    """Check the uploaded object as a multipart file, then make it a request.

    The order of "Storage and database, in order" (docs/architecture.md), with no
    transaction open while the bucket is called:

    1. a short transaction locks the upload: settled already → the same
       answer again; expired → settled as failed; otherwise the form's ids are
       checked (422 leaves the upload open, to be completed with a fixed form);
    2. the object is checked by streaming it (``shared.uploads.check_object``);
       a refused file settles the upload as failed and deletes the object;
    3. a short transaction looks for a duplicate and records the intent for
       ``pending/<new request id>/<file>``; then the copy there;
    4. a short transaction locks the upload again, inserts the request
       (checking everything again), settles the upload as completed and
       records the intent for the uploaded object, deleted after the commit.

    Two complete calls at once both check the file; the second to reach 4
    finds the upload settled, deletes its copy and answers as the first did.
    """
    upload_id = call.path_id("upload_id")
    form = call.json(CompleteForm)
    settings = call.settings
    with transaction(settings) as session:
        user_id = call.user(session).id
        upload = uploads.lock_own(session, user_id=user_id, upload_id=upload_id)
        if upload.status != "open":
            return _settled_answer(call, session, upload)
        expired = uploads.is_expired(upload, clock.now())
        if not expired:
            _check_references(session, form)
        name, size, filename = upload.object_name, upload.size_bytes, upload.filename
    if expired:
        return _refuse(call, upload_id, user_id, uploads.expired_error())
    bucket = get_bucket(settings)
    try:
        checked = uploads.check_object(bucket, name=name, declared_size=size, settings=settings)
    except uploads.ObjectGone:
        return _answer_again(call, upload_id, user_id)
    except (StorageUnavailable, uploads.UploadIncomplete):
        # Nothing is decided: the upload stays open for another try.
        raise
    except LecternError as error:
        return _refuse(call, upload_id, user_id, error)
    request_id = uuid.uuid4()
    object_name = pending_object(request_id, filename)
    try:
        with transaction(settings) as session:
            _check(session, form, checked.sha256, user_id)
            intent_id = submissions.record_intent(session, name=object_name, request_id=request_id)
    except Conflict as error:
        return _refuse(call, upload_id, user_id, error)
    try:
        generation = bucket.copy_as(
            name,
            generation=checked.generation,
            destination=object_name,
            metadata=request_metadata(
                request_id=request_id,
                sha256=checked.sha256,
                uploader_id=user_id,
                course_id=form.course_id,
            ),
        )
    except StorageUnavailable:
        # The intent tells the sweep to look.
        raise
    except FileNotFoundError:
        _delete_orphan(call, intent_id, object_name, None)
        return _answer_again(call, upload_id, user_id)
    except Exception:
        _delete_orphan(call, intent_id, object_name, None)
        raise
    try:
        with transaction(settings) as session:
            upload = uploads.lock_own(session, user_id=user_id, upload_id=upload_id)
            if upload.status != "open":
                raise _Settled
            request = _insert_request(
                session,
                form,
                request_id=request_id,
                user_id=user_id,
                object_name=object_name,
                filename=filename,
                sha256=checked.sha256,
                size_bytes=checked.size,
                page_count=checked.page_count,
            )
            _keep_object(session, intent_id, retry="complete the upload again")
            cleanup_id = uploads.mark_completed(session, upload, request_id, clock.now())
            body = submissions.request_to_json(request)
    except BaseException as error:
        # The row did not commit: the copy must not outlive it.
        _delete_orphan(call, intent_id, object_name, generation)
        if isinstance(error, _Settled):
            return _answer_again(call, upload_id, user_id)
        if isinstance(error, _CopySwept):
            raise  # not the upload's fault: it stays open, its own object intact
        if isinstance(error, IntegrityError):
            # A racing upload of the same bytes got in first: a duplicate, as multipart.
            try:
                with transaction(settings) as session:
                    _check(session, form, checked.sha256, user_id)
            except Conflict as duplicate:
                return _refuse(call, upload_id, user_id, duplicate)
        if isinstance(error, Conflict):
            return _refuse(call, upload_id, user_id, error)
        raise
    _delete_orphan(call, cleanup_id, name, checked.generation)
    log.info(
        "upload completed",
        extra={"file_request_id": str(request_id), "upload_id": str(upload_id)},
    )
    return _created(call, body)


def _settled_answer(call: Call, session: Session, upload: DirectUpload) -> flask.Response:
    """What the call that settled the upload answered (raised, for an error)."""
    if upload.status == "completed":
        assert upload.request_id is not None
        found = submissions.get_user_request(
            session, user_id=upload.user_id, request_id=upload.request_id
        )
        assert found is not None
        return _created(call, submissions.request_to_json(*found))
    assert upload.error is not None
    raise uploads.stored_error(upload.error)


def _answer_again(call: Call, upload_id: uuid.UUID, user_id: uuid.UUID) -> flask.Response:
    """The answer of the call that settled the upload while this one was checking it."""
    with transaction(call.settings) as session:
        upload = uploads.lock_own(session, user_id=user_id, upload_id=upload_id)
        if upload.status != "open":
            return _settled_answer(call, session, upload)
    # Still open, yet its object is gone: it must be sent again.
    raise uploads.UploadIncomplete


def _refuse(
    call: Call, upload_id: uuid.UUID, user_id: uuid.UUID, error: LecternError
) -> flask.Response:
    """Settle the upload as refused with ``error``, delete its object, answer ``error``."""
    with transaction(call.settings) as session:
        upload = uploads.lock_own(session, user_id=user_id, upload_id=upload_id)
        if upload.status != "open":
            return _settled_answer(call, session, upload)
        name = upload.object_name
        intent_id = uploads.mark_failed(session, upload, error, clock.now())
    _delete_orphan(call, intent_id, name, None)
    log.info("upload refused", extra={"upload_id": str(upload_id), "code": error.code})
    raise error


@router.get("/", query=ListQuery, response=SubmittedRequestPage)
def list_requests(call: Call) -> flask.Response:
    """The caller's own requests, newest first."""
    query = call.query(ListQuery)
    with transaction(call.settings) as session:
        user = call.user(session)
        requests, next_cursor = submissions.list_user_requests(
            session, user_id=user.id, status=query.status, limit=query.limit, cursor=query.cursor
        )
    return json_response(
        SubmittedRequestPage.of({"requests": requests, "next_cursor": next_cursor})
    )


@router.get("/{request_id}", response=SubmittedRequest)
def get_request(call: Call) -> flask.Response:
    """One of the caller's own requests (another user's is 404)."""
    request_id = call.path_id("request_id")
    with transaction(call.settings) as session:
        user = call.user(session)
        found = submissions.get_user_request(session, user_id=user.id, request_id=request_id)
        if found is None:
            raise NotFound("no such request")
        return json_response(SubmittedRequest.of({"request": submissions.request_to_json(*found)}))


@router.delete("/{request_id}", status=204, errors=(409,))
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
    log.info("request withdrawn", extra={"file_request_id": str(request_id)})
    return no_content()


@functions_framework.http
def submit(request: flask.Request) -> flask.Response:
    return router(request)
