"""submit DELETE /{id}: an uploader withdraws a pending request; its object goes."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import FileRequest, ObjectIntent
from tests.factories import make_course, make_lecturer, make_material_type
from tests.faults import FaultProxy
from tests.pdfs import make_pdf


@pytest.fixture(scope="module")
def storage_host(proxy: FaultProxy) -> str:
    return proxy.url


@pytest.fixture(scope="module")
def submit(function_client: Callable[[str], Any]) -> Any:
    return function_client("submit")


@pytest.fixture(scope="module")
def moderate(function_client: Callable[[str], Any]) -> Any:
    return function_client("moderate")


@pytest.fixture(scope="module")
def refs(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions.begin() as session:
        return {
            "course_id": make_course(session, year_id=2).id,
            "type_id": make_material_type(session).id,
            "lecturer_id": make_lecturer(session).id,
        }


def upload(submit: Any, headers: dict[str, str], refs: dict[str, Any], pdf: bytes) -> str:
    response = submit.post(
        "/",
        data={
            "course_id": str(refs["course_id"]),
            "type_id": str(refs["type_id"]),
            "lecturer_id": str(refs["lecturer_id"]),
            "title": "To withdraw",
            "academic_year": "2",
            "material_year": "2025",
            "file": (io.BytesIO(pdf), "mine.pdf", "application/pdf"),
        },
        headers=headers,
    )
    assert response.status_code == 201, response.json
    return str(response.json["request"]["id"])


def row(sessions: sessionmaker[Session], request_id: str) -> tuple[str, str]:
    with sessions.begin() as session:
        request = session.get(FileRequest, uuid.UUID(request_id))
        assert request is not None
        return request.status, request.file_url


def objects_of(bucket: Any, request_id: str) -> list[str]:
    return sorted(
        blob.name
        for blob in bucket.list_blobs()
        if (blob.metadata or {}).get("lectern-request-id") == request_id
    )


def intents_of(sessions: sessionmaker[Session], request_id: str) -> list[str]:
    with sessions.begin() as session:
        return list(
            session.scalars(
                select(ObjectIntent.name).where(ObjectIntent.request_id == uuid.UUID(request_id))
            )
        )


def test_the_uploader_withdraws_a_pending_request_and_its_object_is_deleted(
    submit: Any,
    moderate: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    _, student = user_token()
    _, admin = user_token(role="ADMIN")
    pdf = make_pdf(["withdraw me"])
    request_id = upload(submit, student, refs, pdf)
    assert objects_of(bucket, request_id) == [f"pending/{request_id}/mine.pdf"]

    response = submit.delete(f"/{request_id}", headers=student)
    assert response.status_code == 204, response.json
    assert response.data == b""
    status, file_url = row(sessions, request_id)
    assert status == "withdrawn"
    # The row no longer names the deleted object; nothing is left for the sweep.
    assert file_url == f"withdrawn/{request_id}/mine.pdf"
    assert objects_of(bucket, request_id) == []
    assert intents_of(sessions, request_id) == []

    # The uploader still sees it, and can filter on it.
    mine = submit.get("/", headers=student).json["requests"]
    assert [(r["id"], r["status"]) for r in mine] == [(request_id, "withdrawn")]
    only = submit.get("/", query_string={"status": "withdrawn"}, headers=student).json
    assert [r["id"] for r in only["requests"]] == [request_id]
    assert submit.get(f"/{request_id}", headers=student).json["request"]["status"] == "withdrawn"
    # The moderation queue's filter accepts it; the pending queue no longer lists it.
    query = {"course_id": str(refs["course_id"])}
    queue = moderate.get("/requests", query_string={**query, "status": "withdrawn"}, headers=admin)
    assert request_id in [r["id"] for r in queue.json["requests"]]
    pending = moderate.get("/requests", query_string=query, headers=admin).json["requests"]
    assert request_id not in [r["id"] for r in pending]

    # Withdrawn is final: a second withdrawal and every moderation action are refused.
    again = submit.delete(f"/{request_id}", headers=student)
    assert (again.status_code, again.json["error"]["code"]) == (409, "invalid_transition")
    result = moderate.post(
        "/actions", json={"action": "approve", "request_ids": [request_id]}, headers=admin
    ).json["results"][0]
    assert (result["ok"], result["error"]) == (False, "invalid_transition")
    assert row(sessions, request_id)[0] == "withdrawn"

    # The live-duplicate rule covers pending and approved only: the same bytes may come again.
    upload(submit, student, refs, pdf)


def test_another_users_or_an_unknown_request_is_404_and_nothing_changes(
    submit: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    _, owner = user_token()
    _, stranger = user_token()
    request_id = upload(submit, owner, refs, make_pdf(["not yours"]))
    before = row(sessions, request_id)
    for path in (f"/{request_id}", f"/{uuid.uuid4()}", "/not-a-uuid"):
        response = submit.delete(path, headers=stranger if path.endswith(request_id) else owner)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "not_found"
    assert row(sessions, request_id) == before
    assert objects_of(bucket, request_id) == [before[1]]
    assert submit.delete(f"/{request_id}").status_code == 401


@pytest.mark.parametrize(("action", "status"), [("approve", "approved"), ("reject", "rejected")])
def test_a_judged_request_cannot_be_withdrawn(
    submit: Any,
    moderate: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
    bucket: Any,
    action: str,
    status: str,
) -> None:
    _, student = user_token()
    _, admin = user_token(role="ADMIN")
    request_id = upload(submit, student, refs, make_pdf([f"judged {action}"]))
    body = {"action": action, "request_ids": [request_id], "reason": "no"}
    assert moderate.post("/actions", json=body, headers=admin).json["results"][0]["ok"]
    before = row(sessions, request_id)
    response = submit.delete(f"/{request_id}", headers=student)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "invalid_transition"
    assert status in response.json["error"]["message"]
    assert row(sessions, request_id) == before == (status, before[1])
    assert objects_of(bucket, request_id) == [before[1]]


def test_a_request_published_before_is_left_to_an_admin(
    submit: Any,
    moderate: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    """Approved then undone: pending again, but its hidden material (readers' notes,
    progress) lives on the same object, so the uploader cannot delete it."""
    _, student = user_token()
    _, admin = user_token(role="ADMIN")
    request_id = upload(submit, student, refs, make_pdf(["published once"]))
    for action in ("approve", "undo_approve"):
        body = {"action": action, "request_ids": [request_id]}
        assert moderate.post("/actions", json=body, headers=admin).json["results"][0]["ok"]
    before = row(sessions, request_id)
    assert before[0] == "pending"
    response = submit.delete(f"/{request_id}", headers=student)
    assert (response.status_code, response.json["error"]["code"]) == (409, "invalid_transition")
    assert row(sessions, request_id) == before
    assert objects_of(bucket, request_id) == [before[1]]


def test_a_failed_delete_still_withdraws_and_the_sweep_deletes_the_object(
    submit: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
    bucket: Any,
    proxy: FaultProxy,
) -> None:
    from shared.config import load_settings
    from shared.storage import Bucket
    from shared.sweep import sweep_objects

    _, student = user_token()
    request_id = upload(submit, student, refs, make_pdf(["stuck in the bucket"]))
    pending = f"pending/{request_id}/mine.pdf"
    proxy.fail("DELETE", r"/o/pending%2F")
    try:
        response = submit.delete(f"/{request_id}", headers=student)
    finally:
        proxy.clear()
    assert response.status_code == 204
    assert row(sessions, request_id)[0] == "withdrawn"
    # Left behind, but announced: the intent names it.
    assert objects_of(bucket, request_id) == [pending]
    assert intents_of(sessions, request_id) == [pending]
    settings = load_settings()
    report = sweep_objects(settings, Bucket(settings), older_than=timedelta(0))
    assert pending in report.deleted
    assert objects_of(bucket, request_id) == []
    assert intents_of(sessions, request_id) == []
