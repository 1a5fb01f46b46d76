"""Direct uploads: the browser sends the bytes to the bucket, complete checks and records them.

The browser's side is the real google-cloud-storage resumable upload client
(``ResumableUpload``), sending chunks to the session URL that ``POST
/submit/uploads`` handed out, with no credentials, as a browser would; the
bucket is gcp-storage-emulator; the function is functions-framework's app.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from google.cloud.storage._media.requests import ResumableUpload
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared import clock
from shared.config import load_settings
from shared.db.models import DirectUpload, FileRequest, ObjectIntent
from shared.storage import META_REQUEST_ID, META_SHA256, META_UPLOADER_ID
from tests.clocks import FakeClock
from tests.factories import make_course, make_lecturer, make_material_type
from tests.faults import FaultProxy
from tests.parallel import run_together
from tests.pdfs import make_encrypted_pdf, make_pdf

CHUNK = 256 * 1024


@pytest.fixture(scope="module")
def storage_host(proxy: FaultProxy) -> str:
    return proxy.url


@pytest.fixture(scope="module")
def function_env(function_env: dict[str, str]) -> dict[str, str]:
    # A 1 MB cap keeps the over-the-cap files small; 4 uploads an hour per user.
    return {
        **function_env,
        "MAX_UPLOAD_MB": "1",
        "RATE_LIMIT_UPLOADS_PER_HOUR": "4",
        "STORAGE_TIMEOUT_S": "1",
    }


@pytest.fixture(scope="module")
def client(function_client: Callable[[str], Any]) -> Any:
    return function_client("submit")


@pytest.fixture(scope="module")
def refs(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions.begin() as session:
        return {
            "course_id": make_course(session, name="Signals").id,
            "type_id": make_material_type(session).id,
            "lecturer_id": make_lecturer(session, name="Dr. Grace Hopper").id,
        }


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    previous = clock.use(fake)
    yield fake
    clock.use(previous)


def padded_pdf(pages: int, size: int) -> bytes:
    """A real PDF of about ``size`` bytes: pages plus an incompressible attachment."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(make_pdf(pages))).pages:
        writer.add_page(page)
    writer.add_attachment("scan.bin", os.urandom(size))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def fields(refs: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "course_id": str(refs["course_id"]),
        "type_id": str(refs["type_id"]),
        "title": "Week 3: sampling",
        "academic_year": 1,
        "material_year": 2024,
        "lecturer_id": str(refs["lecturer_id"]),
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


def open_upload(
    client: Any, headers: dict[str, str], size: int, filename: str = "scan.pdf", **extra: Any
) -> Any:
    body = {"filename": filename, "size_bytes": size, "content_type": "application/pdf", **extra}
    return client.post("/uploads", json=body, headers=headers)


class Browser:
    """The browser's side: the real resumable upload client on the session URL."""

    def __init__(self, upload: dict[str, Any], data: bytes, checksum: str | None = "auto") -> None:
        self.transport = requests.Session()
        self.upload = ResumableUpload(upload["upload_url"], CHUNK, checksum=checksum)
        # The session was created by the server: adopt it instead of initiating one.
        self.upload._resumable_url = upload["upload_url"]
        self.upload._stream = io.BytesIO(data)
        self.upload._total_bytes = len(data)
        self.upload._content_type = upload["headers"]["Content-Type"]

    def send(self, chunks: int | None = None) -> None:
        sent = 0
        while not self.upload.finished and (chunks is None or sent < chunks):
            self.upload.transmit_next_chunk(self.transport)
            sent += 1

    def recover(self) -> int:
        """A reloaded page asks the session how much arrived, and goes on from there."""
        self.upload._invalid = True
        self.upload.recover(self.transport)
        return int(self.upload.bytes_uploaded)


def upload_file(
    client: Any, headers: dict[str, str], data: bytes, filename: str = "scan.pdf"
) -> dict[str, Any]:
    opened = open_upload(client, headers, len(data), filename)
    assert opened.status_code == 201, opened.json
    upload: dict[str, Any] = opened.json["upload"]
    Browser(upload, data).send()
    return upload


def complete(client: Any, headers: dict[str, str], upload_id: str, body: dict[str, Any]) -> Any:
    return client.post(f"/uploads/{upload_id}/complete", json=body, headers=headers)


def object_name(sessions: sessionmaker[Session], upload_id: str) -> str:
    with sessions.begin() as session:
        upload = session.get(DirectUpload, uuid.UUID(upload_id))
        assert upload is not None
        return upload.object_name


def count_requests(sessions: sessionmaker[Session], user_id: uuid.UUID) -> int:
    with sessions.begin() as session:
        return int(session.scalar(select(func.count()).where(FileRequest.user_id == user_id)) or 0)


def upload_status(sessions: sessionmaker[Session], upload_id: str) -> str:
    with sessions.begin() as session:
        upload = session.get(DirectUpload, uuid.UUID(upload_id))
        assert upload is not None
        return upload.status


def test_a_chunked_upload_becomes_a_pending_request(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    user_id, headers = user_token()
    data = padded_pdf(3, 3 * CHUNK)
    opened = open_upload(client, headers, len(data), filename="../Week\t3 scan.pdf")
    assert opened.status_code == 201, opened.json
    upload = opened.json["upload"]
    assert upload["method"] == "PUT"
    assert upload["headers"] == {"Content-Type": "application/pdf"}
    assert upload["size_bytes"] == len(data)
    assert upload["filename"] == "Week 3 scan.pdf"
    assert upload["expires_at"].endswith("Z")
    browser = Browser(upload, data)
    browser.send()
    assert browser.upload.bytes_uploaded == len(data)

    response = complete(client, headers, upload["id"], fields(refs))
    assert response.status_code == 201, response.json
    request = response.json["request"]
    assert request["status"] == "pending"
    assert request["page_count"] == 3
    assert request["size_bytes"] == len(data)
    assert request["original_filename"] == "Week 3 scan.pdf"
    with sessions.begin() as session:
        row = session.get(FileRequest, uuid.UUID(request["id"]))
        assert row is not None
        assert row.file_url == f"pending/{request['id']}/Week 3 scan.pdf"
        assert row.sha256 == hashlib.sha256(data).hexdigest()
        stored = session.get(DirectUpload, uuid.UUID(upload["id"]))
        assert stored is not None
        assert stored.status == "completed"
        assert stored.request_id == row.id
        # Every intent of the call was resolved: the copy's and the uploaded object's.
        assert session.scalar(select(func.count()).select_from(ObjectIntent)) == 0
    pending = bucket.get_blob(f"pending/{request['id']}/Week 3 scan.pdf")
    assert pending is not None
    assert pending.download_as_bytes() == data
    assert pending.metadata[META_REQUEST_ID] == request["id"]
    assert pending.metadata[META_SHA256] == hashlib.sha256(data).hexdigest()
    assert pending.metadata[META_UPLOADER_ID] == str(user_id)
    # The uploaded object is gone: the request's copy is the only one.
    assert bucket.get_blob(f"uploads/{upload['id']}/Week 3 scan.pdf") is None


def test_an_interrupted_upload_resumes_where_it_stopped(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    proxy: FaultProxy,
) -> None:
    _, headers = user_token()
    data = padded_pdf(2, 3 * CHUNK)
    upload = open_upload(client, headers, len(data)).json["upload"]
    # The connection drops on the third chunk: route it through the fault proxy.
    parts = urlsplit(upload["upload_url"])
    broken = {**upload, "upload_url": urlunsplit(parts._replace(netloc=urlsplit(proxy.url).netloc))}
    first = Browser(broken, data)
    first.send(chunks=2)
    proxy.fail("PUT", r"upload_id=", times=1)
    try:
        with pytest.raises(Exception, match="403"):
            first.send(chunks=1)
    finally:
        proxy.clear()
    # Complete before the rest arrived: nothing decided, the upload stays open.
    early = complete(client, headers, upload["id"], fields(refs))
    assert early.status_code == 409
    assert early.json["error"]["code"] == "upload_incomplete"

    # The client checks its CRC32C of what it sent itself: a resumed one sent only the rest.
    second = Browser(upload, data, checksum=None)
    assert second.recover() == 2 * CHUNK
    second.send()
    response = complete(client, headers, upload["id"], fields(refs))
    assert response.status_code == 201, response.json
    request = response.json["request"]
    stored = bucket.get_blob(f"pending/{request['id']}/scan.pdf")
    assert stored.download_as_bytes() == data


def test_double_complete_gives_the_same_answer_and_one_request(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
) -> None:
    user_id, headers = user_token()
    first_upload = upload_file(client, headers, padded_pdf(2, CHUNK))
    first = complete(client, headers, first_upload["id"], fields(refs))
    again = complete(client, headers, first_upload["id"], fields(refs, title="Other"))
    assert first.status_code == again.status_code == 201
    assert again.json["request"]["id"] == first.json["request"]["id"]
    assert again.json["request"]["title"] == "Week 3: sampling"

    # Two at once (a retry while the first is still checking): one request too.
    second_upload = upload_file(client, headers, padded_pdf(2, CHUNK))
    together = run_together(
        [lambda: complete(client, headers, second_upload["id"], fields(refs))] * 2
    )
    assert [response.status_code for response in together] == [201, 201]
    ids = {response.json["request"]["id"] for response in together}
    assert len(ids) == 1
    assert count_requests(sessions, user_id) == 2


def test_another_users_upload_is_404_and_stays_theirs(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    owner_id, owner = user_token()
    other_id, other = user_token()
    upload = upload_file(client, owner, make_pdf(2))
    stranger = complete(client, other, upload["id"], fields(refs))
    assert stranger.status_code == 404
    unknown = complete(client, other, str(uuid.uuid4()), fields(refs))
    assert unknown.status_code == 404
    assert stranger.json["error"]["code"] == unknown.json["error"]["code"] == "not_found"
    assert count_requests(sessions, other_id) == 0
    assert upload_status(sessions, upload["id"]) == "open"
    assert bucket.get_blob(object_name(sessions, upload["id"])) is not None
    assert complete(client, owner, upload["id"], fields(refs)).status_code == 201
    assert count_requests(sessions, owner_id) == 1


def _refused_and_deleted(
    client: Any,
    headers: dict[str, str],
    upload: dict[str, Any],
    body: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    user_id: uuid.UUID,
) -> Any:
    """Complete twice: the same error both times, the object gone, no request."""
    name = object_name(sessions, upload["id"])
    first = complete(client, headers, upload["id"], body)
    again = complete(client, headers, upload["id"], body)
    assert first.status_code == again.status_code
    assert first.json["error"] | {"request_id": None} == again.json["error"] | {"request_id": None}
    assert bucket.get_blob(name) is None
    assert count_requests(sessions, user_id) == 0
    assert upload_status(sessions, upload["id"]) == "failed"
    with sessions.begin() as session:
        assert session.scalar(select(func.count()).where(ObjectIntent.name == name)) == 0
    return first


@pytest.mark.parametrize(
    ("data", "status", "code", "file_error"),
    [
        (b"just some text, no PDF here\n" * 100, 415, "not_a_pdf", None),
        (make_encrypted_pdf(), 422, "validation_failed", "the PDF is encrypted"),
        (b"%PDF-1.7\n" + b"garbage " * 4000, 422, "validation_failed", "damaged"),
    ],
    ids=["not-a-pdf", "encrypted", "damaged"],
)
def test_bad_files_get_the_multipart_errors_and_are_deleted(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    data: bytes,
    status: int,
    code: str,
    file_error: str | None,
) -> None:
    user_id, headers = user_token()
    # The multipart path's answer to the same bytes, for comparison.
    multipart = client.post(
        "/",
        data={**fields(refs), "file": (io.BytesIO(data), "x.pdf", "application/pdf")},
        headers=headers,
    )
    assert multipart.status_code == status
    upload = upload_file(client, headers, data)
    answer = _refused_and_deleted(client, headers, upload, fields(refs), bucket, sessions, user_id)
    assert answer.status_code == status
    assert answer.json["error"]["code"] == code
    assert answer.json["error"].get("fields") == multipart.json["error"].get("fields")
    if file_error:
        assert file_error in answer.json["error"]["fields"]["file"]


def test_a_size_lie_is_refused_and_deleted(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    user_id, headers = user_token()
    data = padded_pdf(1, CHUNK)
    # Declared 1000 bytes fewer than the browser then sends.
    upload = open_upload(client, headers, len(data) - 1000).json["upload"]
    Browser(upload, data).send()
    answer = _refused_and_deleted(client, headers, upload, fields(refs), bucket, sessions, user_id)
    assert answer.status_code == 422
    assert answer.json["error"]["fields"]["file"] == (
        f"the upload has {len(data)} bytes, not the {len(data) - 1000} declared"
    )

    # Declared under the cap, sent over it: the multipart path's 413.
    big = padded_pdf(1, 1024 * 1024 + CHUNK)
    upload = open_upload(client, headers, 1000).json["upload"]
    Browser(upload, big).send()
    answer = _refused_and_deleted(client, headers, upload, fields(refs), bucket, sessions, user_id)
    assert answer.status_code == 413
    assert answer.json["error"] == {
        "code": "payload_too_large",
        "message": "the file is larger than 1 MB",
        "request_id": answer.json["error"]["request_id"],
    }


def test_a_duplicate_is_409_and_deleted(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    user_id, headers = user_token()
    data = padded_pdf(2, CHUNK)
    first = complete(client, headers, upload_file(client, headers, data)["id"], fields(refs))
    assert first.status_code == 201
    upload = upload_file(client, headers, data)
    name = object_name(sessions, upload["id"])
    answer = complete(client, headers, upload["id"], fields(refs))
    assert answer.status_code == 409
    assert answer.json["error"]["code"] == "duplicate_file"
    assert first.json["request"]["id"] in answer.json["error"]["message"]
    assert bucket.get_blob(name) is None
    assert count_requests(sessions, user_id) == 1
    again = complete(client, headers, upload["id"], fields(refs))
    assert again.status_code == 409
    assert again.json["error"]["code"] == "duplicate_file"


def test_bad_fields_are_422_and_leave_the_upload_open(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    user_id, headers = user_token()
    upload = upload_file(client, headers, make_pdf(1))
    name = object_name(sessions, upload["id"])
    for body, field in [
        (fields(refs, title="two\nlines"), "title"),
        (fields(refs, course_id=str(uuid.uuid4())), "course_id"),
        (fields(refs, academic_year=3), "academic_year"),
        (fields(refs, lecturer_name="Someone"), "lecturer_id"),
        (fields(refs, file="x"), "file"),
    ]:
        response = complete(client, headers, upload["id"], body)
        assert response.status_code == 422, (field, response.json)
        assert field in response.json["error"]["fields"], field
    # A blank field counts as absent, as in the multipart form.
    blank = complete(client, headers, upload["id"], fields(refs, lecturer_id="", notes=" "))
    assert blank.status_code == 422
    assert "lecturer_id" in blank.json["error"]["fields"]
    assert upload_status(sessions, upload["id"]) == "open"
    assert bucket.get_blob(name) is not None
    assert count_requests(sessions, user_id) == 0
    still = complete(client, headers, upload["id"], fields(refs, lecturer_id="", notes=""))
    assert still.status_code == 422
    ok = complete(client, headers, upload["id"], fields(refs, notes=""))
    assert ok.status_code == 201, ok.json
    assert ok.json["request"]["notes"] is None


def test_an_expired_upload_is_refused_and_deleted(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    upload = upload_file(client, headers, make_pdf(1))
    assert upload["expires_at"] == "2026-03-01T15:00:00Z"  # six hours by default
    fake_clock.advance(6 * 3600)
    answer = _refused_and_deleted(client, headers, upload, fields(refs), bucket, sessions, user_id)
    assert answer.status_code == 409
    assert answer.json["error"]["code"] == "upload_expired"


def test_creation_refuses_what_multipart_refuses_and_stores_nothing(
    client: Any,
    user_token: Callable[..., Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    user_id, headers = user_token()
    too_big = open_upload(client, headers, 1024 * 1024 + 1)
    assert too_big.status_code == 413
    assert too_big.json["error"]["message"] == "the file is larger than 1 MB"
    not_pdf = client.post(
        "/uploads",
        json={"filename": "a.txt", "size_bytes": 10, "content_type": "text/plain"},
        headers=headers,
    )
    assert not_pdf.status_code == 415
    assert not_pdf.json["error"]["code"] == "not_a_pdf"
    # Another user: refused calls count against the rate limit too.
    other_id, other = user_token()
    for body, field in [
        ({"filename": "a.pdf", "size_bytes": 0, "content_type": "application/pdf"}, "size_bytes"),
        ({"size_bytes": 10, "content_type": "application/pdf"}, "filename"),
        ({"filename": "a.pdf", "size_bytes": 1, "content_type": "x", "acl": "public"}, "acl"),
    ]:
        response = client.post("/uploads", json=body, headers=other)
        assert response.status_code == 422, body
        assert field in response.json["error"]["fields"]
    with sessions.begin() as session:
        rows = session.scalar(
            select(func.count()).where(DirectUpload.user_id.in_([user_id, other_id]))
        )
        assert rows == 0
    uploaders = {(blob.metadata or {}).get(META_UPLOADER_ID) for blob in bucket.list_blobs()}
    assert not uploaders & {str(user_id), str(other_id)}


def test_direct_and_multipart_uploads_share_the_rate_limit(
    client: Any, user_token: Callable[..., Any], refs: dict[str, Any]
) -> None:
    _, headers = user_token()
    multipart = client.post(
        "/",
        data={**fields(refs), "file": (io.BytesIO(make_pdf(1)), "a.pdf", "application/pdf")},
        headers=headers,
    )
    assert multipart.status_code == 201
    for _ in range(3):
        assert open_upload(client, headers, 1000).status_code == 201
    limited = open_upload(client, headers, 1000)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0


def test_a_storage_outage_during_complete_is_503_and_the_upload_stays_open(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
    proxy: FaultProxy,
) -> None:
    user_id, headers = user_token()
    upload = upload_file(client, headers, make_pdf(2))
    proxy.drop()
    try:
        down = complete(client, headers, upload["id"], fields(refs))
    finally:
        proxy.clear()
    assert down.status_code == 503
    assert down.json["error"]["code"] == "storage_unavailable"
    assert "Retry-After" in down.headers
    assert upload_status(sessions, upload["id"]) == "open"
    assert count_requests(sessions, user_id) == 0
    assert complete(client, headers, upload["id"], fields(refs)).status_code == 201


def test_the_session_answers_its_browser_origin_through_the_local_stack(
    storage_emulator: str, function_env: dict[str, str]
) -> None:
    """``lectern dev``'s proxy lets a browser on an allowed origin use the session URL."""
    from shared.local.devserver import BrowserStorageProxy

    origin = function_env["CORS_ORIGINS"]
    local = BrowserStorageProxy(storage_emulator, host="127.0.0.1", origins=lambda: origin)
    try:
        preflight = requests.options(
            f"{local.url}/upload/storage/v1/b/lectern-test/o?uploadType=resumable&upload_id=x",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-range,content-type",
            },
            timeout=10,
        )
        assert preflight.status_code == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == origin
        assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
        assert preflight.headers["Access-Control-Allow-Headers"] == "content-range,content-type"
        stranger = requests.options(local.url, headers={"Origin": "https://evil.test"}, timeout=10)
        assert "Access-Control-Allow-Origin" not in stranger.headers

        # A session created through the proxy points back at it.
        started = requests.post(
            f"{local.url}/upload/storage/v1/b/lectern-test/o?uploadType=resumable",
            json={"name": "uploads/cors/probe.pdf"},
            headers={"X-Upload-Content-Type": "application/pdf"},
            timeout=10,
        )
        session_url = started.headers["Location"]
        assert session_url.startswith(local.url)
        data = make_pdf(1)
        sent = requests.put(
            session_url,
            data=data,
            headers={"Origin": origin, "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"},
            timeout=10,
        )
        assert sent.status_code == 200
        assert sent.headers["Access-Control-Allow-Origin"] == origin
        assert "Range" in sent.headers["Access-Control-Expose-Headers"]
    finally:
        local.close()


def test_page_counting_fetches_only_what_pypdf_asks_for(
    function_client: Callable[[str], Any], bucket: Any
) -> None:
    """The page count of a file much larger than the cache reads a few blocks, and a
    parser asking for more than ``max_read`` at once gets a damaged-file verdict."""
    from shared.errors import ValidationFailed
    from shared.pdf import TooDamaged, count_pages_in
    from shared.storage import RangeReader, get_bucket

    data = padded_pdf(5, 4 * 1024 * 1024)
    blob = bucket.blob(f"uploads/{uuid.uuid4()}/big.pdf")
    blob.upload_from_string(data, content_type="application/pdf")
    storage = get_bucket(load_settings())

    def reader(content: bytes, max_read: int) -> RangeReader:
        blob.upload_from_string(content, content_type="application/pdf")
        return RangeReader(
            storage,
            blob.name,
            generation=int(blob.generation),
            size=len(content),
            block_size=64 * 1024,
            cached_blocks=4,
            max_read=max_read,
            too_large=TooDamaged,
        )

    lean = reader(data, max_read=1024 * 1024)
    assert count_pages_in(lean) == 5  # type: ignore[arg-type]
    assert lean.fetches < len(data) // (64 * 1024) // 4
    assert len(lean._blocks) <= 4

    # Its startxref pointer broken: pypdf rebuilds the table by reading the whole file,
    # which a reader allowing that does (as the multipart path's bytes in memory) ...
    broken = data[: data.rindex(b"startxref")] + b"startxref\n0\n%%EOF\n"
    assert count_pages_in(reader(broken, max_read=len(broken))) == 5  # type: ignore[arg-type]
    # ... and a bounded one refuses as damaged.
    with pytest.raises(ValidationFailed) as refused:
        count_pages_in(reader(broken, max_read=1024 * 1024))  # type: ignore[arg-type]
    assert refused.value.fields == {"file": "the PDF is damaged and cannot be read"}


def test_a_complete_whose_copy_the_sweep_claimed_is_409_and_the_upload_stays_open(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    sweep_at_commit: list[list[str]],
) -> None:
    """The call stalls past the sweep's cut-off just before its row commits."""
    user_id, headers = user_token()
    upload = upload_file(client, headers, make_pdf(2))  # no row commits here
    name = object_name(sessions, upload["id"])
    late = complete(client, headers, upload["id"], fields(refs))
    monkeypatch.undo()  # the retry below does not stall

    assert late.status_code == 409, late.json
    assert late.json["error"]["code"] == "conflict"
    assert "complete the upload again" in late.json["error"]["message"]
    (deleted,) = sweep_at_commit
    assert deleted  # the pending copy
    assert name not in deleted  # the browser's upload is the upload's, not the sweep's
    assert upload_status(sessions, upload["id"]) == "open"
    assert count_requests(sessions, user_id) == 0
    # Not the student's fault: completing again needs no second upload.
    assert complete(client, headers, upload["id"], fields(refs)).status_code == 201
    assert count_requests(sessions, user_id) == 1
