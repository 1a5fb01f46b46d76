"""submit: uploads are checked by content, stored with their row, or not at all."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import EnvironBuilder

from shared.db.models import FileRequest, Lecturer
from shared.storage import META_REQUEST_ID, META_SHA256, META_UPLOADER_ID
from tests.factories import make_course, make_lecturer, make_material_type
from tests.faults import FaultProxy
from tests.parallel import run_together
from tests.pdfs import make_encrypted_pdf, make_pdf


@pytest.fixture(scope="module")
def storage_host(proxy: FaultProxy) -> str:
    """Storage through the fault proxy, so tests can make it fail mid-way."""
    return proxy.url


@pytest.fixture(scope="module")
def client(function_client: Callable[[str], Any]) -> Any:
    return function_client("submit")


@pytest.fixture(scope="module")
def refs(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions.begin() as session:
        course = make_course(session, name="Operating Systems")
        return {
            "course_id": course.id,
            "type_id": make_material_type(session).id,
            "lecturer_id": make_lecturer(session, name="Dr. Ada Lovelace").id,
        }


def form(
    refs: dict[str, Any], data: bytes | None, filename: str = "week 1.pdf", **fields: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "course_id": str(refs["course_id"]),
        "type_id": str(refs["type_id"]),
        "title": "Week 1: processes",
        "academic_year": "1",
        "material_year": "2024",
        "lecturer_id": str(refs["lecturer_id"]),
    }
    body.update(fields)
    body = {key: value for key, value in body.items() if value is not None}
    if data is not None:
        body["file"] = (io.BytesIO(data), filename, "application/pdf")
    return body


def _count_requests(sessions: sessionmaker[Session], user_id: uuid.UUID) -> int:
    with sessions.begin() as session:
        return int(session.scalar(select(func.count()).where(FileRequest.user_id == user_id)) or 0)


def _objects(bucket: Any, user_id: uuid.UUID) -> list[Any]:
    return [
        blob
        for blob in bucket.list_blobs()
        if (blob.metadata or {}).get(META_UPLOADER_ID) == str(user_id)
    ]


def test_a_valid_upload_is_stored_with_its_row(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    user_id, headers = user_token()
    data = make_pdf(3)
    response = client.post(
        "/", data=form(refs, data, filename="../../etc/Week\x001 notes.pdf"), headers=headers
    )
    assert response.status_code == 201, response.json
    request = response.json["request"]
    assert request["status"] == "pending"
    assert request["page_count"] == 3
    assert request["user_id"] == str(user_id)
    with sessions.begin() as session:
        row = session.get(FileRequest, uuid.UUID(request["id"]))
        assert row is not None
        object_name = row.file_url
    assert object_name == f"pending/{request['id']}/Week 1 notes.pdf"
    blob = bucket.get_blob(object_name)
    assert blob is not None
    assert blob.download_as_bytes() == data
    import hashlib

    assert blob.metadata[META_REQUEST_ID] == request["id"]
    assert blob.metadata[META_SHA256] == hashlib.sha256(data).hexdigest()
    assert blob.metadata[META_UPLOADER_ID] == str(user_id)


def test_lecturer_by_name_is_matched_case_insensitively_or_created(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
) -> None:
    _, headers = user_token()
    known = client.post(
        "/",
        data=form(refs, make_pdf(1), lecturer_id=None, lecturer_name="  dr. ADA lovelace "),
        headers=headers,
    )
    assert known.status_code == 201, known.json
    assert known.json["request"]["lecturer_id"] == str(refs["lecturer_id"])
    new = client.post(
        "/",
        data=form(refs, make_pdf(2), lecturer_id=None, lecturer_name="Prof. Grace Hopper"),
        headers=headers,
    )
    assert new.status_code == 201
    with sessions.begin() as session:
        lecturer = session.get(Lecturer, uuid.UUID(new.json["request"]["lecturer_id"]))
        assert lecturer is not None
        assert lecturer.name == "Prof. Grace Hopper"


@pytest.mark.parametrize(
    ("data", "status", "field"),
    [
        (b"", 422, "file"),
        (b"This is a plain text file pretending to be a PDF.", 415, None),
        (b"\x89PNG\r\n\x1a\n" + b"0" * 100, 415, None),
        (b"%PDF-1.7\n% truncated and broken\n", 422, "file"),
        ("encrypted", 422, "file"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_stored(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    data: Any,
    status: int,
    field: str | None,
) -> None:
    user_id, headers = user_token()
    payload = make_encrypted_pdf() if data == "encrypted" else data
    response = client.post("/", data=form(refs, payload), headers=headers)
    assert response.status_code == status, response.json
    if field:
        assert field in response.json["error"]["fields"]
    assert _count_requests(sessions, user_id) == 0
    assert _objects(bucket, user_id) == []


# MAX_UPLOAD_MB defaults to 25: one body refused by its declared length, one
# whose length passes the first check but whose file part is over the cap.
@pytest.mark.parametrize("size", [26 * 1024 * 1024, 25 * 1024 * 1024 + 100 * 1024])
def test_an_oversized_upload_is_413_and_nothing_is_stored(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    size: int,
) -> None:
    user_id, headers = user_token()
    big = make_pdf(1) + b"%" + b"x" * size
    # Built by hand so the test client's spooled body file is closed afterwards.
    builder = EnvironBuilder(path="/", method="POST", data=form(refs, big), headers=headers)
    environ = builder.get_environ()
    try:
        response = client.open(environ)
    finally:
        environ["wsgi.input"].close()
        builder.close()
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"
    assert _count_requests(sessions, user_id) == 0
    assert _objects(bucket, user_id) == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"course_id": str(uuid.uuid4())}, "course_id"),
        ({"course_id": "nope"}, "course_id"),
        ({"type_id": str(uuid.uuid4())}, "type_id"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"academic_year": "5"}, "academic_year"),
        ({"academic_year": "two"}, "academic_year"),
        ({"material_year": "3024"}, "material_year"),
        ({"lecturer_id": None}, "lecturer_id"),
        ({"lecturer_name": "Dr. Both"}, "lecturer_id"),
        ({"lecturer_id": str(uuid.uuid4())}, "lecturer_id"),
        ({"notes": "x" * 1001}, "notes"),
        ({"surprise": "field"}, "surprise"),
    ],
)
def test_bad_fields_are_422_naming_the_field(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    fields: dict[str, Any],
    field: str,
) -> None:
    user_id, headers = user_token()
    response = client.post("/", data=form(refs, make_pdf(1), **fields), headers=headers)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]
    assert _count_requests(sessions, user_id) == 0
    assert _objects(bucket, user_id) == []


def test_missing_file_and_wrong_media_type(
    client: Any, user_token: Callable[..., Any], refs: dict[str, Any]
) -> None:
    _, headers = user_token()
    response = client.post(
        "/", data=form(refs, None), headers=headers, content_type="multipart/form-data"
    )
    assert response.status_code == 422
    assert "file" in response.json["error"]["fields"]
    response = client.post("/", json={"title": "x"}, headers=headers)
    assert response.status_code == 415


def test_the_same_bytes_in_the_same_course_are_a_duplicate(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
) -> None:
    _, headers = user_token()
    _, other_headers = user_token()
    data = make_pdf(["duplicate me"])
    first = client.post("/", data=form(refs, data), headers=headers)
    assert first.status_code == 201
    again = client.post("/", data=form(refs, data, filename="renamed.pdf"), headers=other_headers)
    assert again.status_code == 409
    assert again.json["error"]["code"] == "duplicate_file"
    # Another user's request is never named (nor confirmed to be theirs).
    assert first.json["request"]["id"] not in again.data.decode()
    mine = client.post("/", data=form(refs, data, filename="again.pdf"), headers=headers)
    assert mine.status_code == 409
    assert first.json["request"]["id"] in mine.json["error"]["message"]
    with sessions.begin() as session:
        other_course = make_course(session).id
    elsewhere = client.post(
        "/", data=form(refs, data, course_id=str(other_course)), headers=headers
    )
    assert elsewhere.status_code == 201


def test_parallel_duplicate_uploads_store_one(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    user_id, headers = user_token()
    data = make_pdf(["raced upload"])

    def upload(own: Any) -> int:
        return int(own.post("/", data=form(refs, data), headers=headers).status_code)

    clients = [client.application.test_client() for _ in range(5)]
    statuses = run_together([partial(upload, own) for own in clients])
    assert sorted(statuses) == [201, 409, 409, 409, 409]
    assert _count_requests(sessions, user_id) == 1
    assert len(_objects(bucket, user_id)) == 1


def test_a_failed_upload_leaves_no_row(
    client: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    proxy: FaultProxy,
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    user_id, headers = user_token()
    proxy.fail("POST", r"^/upload/storage/v1/b/lectern-test/o")
    try:
        response = client.post("/", data=form(refs, make_pdf(1)), headers=headers)
    finally:
        proxy.clear()
    assert response.status_code == 500
    assert response.json["error"]["code"] == "internal_error"
    assert _count_requests(sessions, user_id) == 0
    assert _objects(bucket, user_id) == []


def test_students_list_and_read_only_their_own_requests(
    client: Any, user_token: Callable[..., Any], refs: dict[str, Any]
) -> None:
    _, owner = user_token()
    _, stranger = user_token()
    ids = []
    for n in range(3):
        response = client.post("/", data=form(refs, make_pdf([f"own {n}"])), headers=owner)
        ids.append(response.json["request"]["id"])
    listed = client.get("/", headers=owner).json["requests"]
    assert [r["id"] for r in listed] == ids[::-1]
    assert (
        client.get("/", query_string={"status": "rejected"}, headers=owner).json["requests"] == []
    )
    assert client.get(f"/{ids[0]}", headers=owner).status_code == 200
    hidden = client.get(f"/{ids[0]}", headers=stranger)
    assert hidden.status_code == 404
    assert client.get("/", headers=stranger).json["requests"] == []
    assert client.get("/", query_string={"status": "lost"}, headers=owner).status_code == 422
