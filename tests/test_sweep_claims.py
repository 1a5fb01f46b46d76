"""A moderation or upload call that outlives the sweep's cut-off, and a request edited mid-call.

Cloud Run may resume a request's code after its timeout answered the client;
such a call finds its copy's intent claimed by the sweep and must not commit a
row naming an object the sweep is deleting. An approval planned for one course
must not commit after an admin moved the request to another course.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared import moderation
from shared.config import load_settings
from shared.db.engine import transaction
from shared.db.models import Course, FileRequest, Material
from shared.storage import Bucket
from shared.sweep import sweep_objects
from tests.factories import make_course, make_lecturer, make_material_type
from tests.pdfs import make_pdf


@pytest.fixture(scope="module")
def submit(function_client: Callable[[str], Any]) -> Any:
    return function_client("submit")


@pytest.fixture(scope="module")
def moderate(function_client: Callable[[str], Any]) -> Any:
    return function_client("moderate")


@pytest.fixture
def admin(user_token: Callable[..., Any]) -> dict[str, str]:
    return user_token(role="ADMIN")[1]


@pytest.fixture
def courses(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions.begin() as session:
        return {
            "first": make_course(session, name=f"Logic {uuid.uuid4().hex[:6]}").id,
            "second": make_course(session, name=f"Algebra {uuid.uuid4().hex[:6]}").id,
            "type_id": make_material_type(session).id,
            "lecturer_id": make_lecturer(session).id,
        }


def _submit(
    submit: Any, headers: dict[str, str], courses: dict[str, Any], title: str = "Week 3"
) -> Any:
    return submit.post(
        "/",
        data={
            "course_id": str(courses["first"]),
            "type_id": str(courses["type_id"]),
            "lecturer_id": str(courses["lecturer_id"]),
            "title": title,
            "academic_year": "1",
            "material_year": "2025",
            "file": (io.BytesIO(make_pdf(2)), "week3.pdf", "application/pdf"),
        },
        headers=headers,
    )


def _pending(submit: Any, headers: dict[str, str], courses: dict[str, Any]) -> uuid.UUID:
    response = _submit(submit, headers, courses)
    assert response.status_code == 201, response.json
    return uuid.UUID(response.json["request"]["id"])


def _names(bucket: Any, request_id: uuid.UUID) -> list[str]:
    return sorted(
        blob.name
        for blob in bucket.list_blobs()
        if (blob.metadata or {}).get("lectern-request-id") == str(request_id)
    )


def _plan_and_copy(request_id: uuid.UUID) -> tuple[Any, Any]:
    settings = load_settings()
    with transaction(settings) as session:
        planned = moderation.plan(session, request_id=request_id, action="approve")
    return planned, moderation._copy(settings, Bucket(settings), planned)


def _commit(staged: Any) -> dict[str, Any]:
    settings = load_settings()
    request_id = staged.planned.request_id
    results: dict[uuid.UUID, dict[str, Any]] = {}
    leftovers = moderation._commit_all(
        settings, None, "test", "approve", [request_id], None, [staged], results
    )
    for intent_id, name, generation in leftovers:
        moderation.delete_unreferenced(settings, intent_id, name, generation)
    return results[request_id]


def test_an_approval_that_outlived_the_sweep_cut_off_commits_nothing(
    submit: Any,
    user_token: Callable[..., Any],
    courses: dict[str, Any],
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    request_id = _pending(submit, user_token()[1], courses)
    planned, staged = _plan_and_copy(request_id)
    assert planned.new_object in _names(bucket, request_id)

    # The call stalls; the sweep counts its intent as abandoned and claims the copy.
    settings = load_settings()
    report = sweep_objects(settings, Bucket(settings), older_than=timedelta(0))
    assert planned.new_object in report.deleted

    result = _commit(staged)

    assert result["ok"] is False
    assert result["error"] == "conflict"
    with sessions.begin() as session:
        request = session.get(FileRequest, request_id)
        assert request is not None
        assert request.status == "pending"
        assert request.file_url == planned.old_object
        assert session.get(Material, request_id) is None
    assert _names(bucket, request_id) == [planned.old_object]


def test_a_sweep_after_the_commit_leaves_the_published_object(
    submit: Any,
    user_token: Callable[..., Any],
    courses: dict[str, Any],
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    request_id = _pending(submit, user_token()[1], courses)
    planned, staged = _plan_and_copy(request_id)
    assert _commit(staged)["ok"] is True

    settings = load_settings()
    sweep_objects(settings, Bucket(settings), older_than=timedelta(0))

    with sessions.begin() as session:
        material = session.get(Material, request_id)
        assert material is not None
        assert material.file_url == planned.new_object
    assert _names(bucket, request_id) == [planned.new_object]


def test_an_approval_refuses_a_request_moved_to_another_course_meanwhile(
    submit: Any,
    moderate: Any,
    admin: dict[str, str],
    user_token: Callable[..., Any],
    courses: dict[str, Any],
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    request_id = _pending(submit, user_token()[1], courses)
    planned, staged = _plan_and_copy(request_id)
    edited = moderate.patch(
        f"/requests/{request_id}", json={"course_id": str(courses["second"])}, headers=admin
    )
    assert edited.status_code == 200, edited.json

    result = _commit(staged)

    assert result["ok"] is False
    assert result["error"] == "invalid_transition"
    with sessions.begin() as session:
        request = session.get(FileRequest, request_id)
        assert request is not None
        assert request.status == "pending"
        assert request.course_id == courses["second"]
        assert session.get(Material, request_id) is None
    # The copy into the first course's folder was deleted with the refusal.
    assert _names(bucket, request_id) == [planned.old_object]

    # Approved again, it lands in the course it now belongs to.
    again = moderate.post(
        "/actions", json={"action": "approve", "request_ids": [str(request_id)]}, headers=admin
    )
    assert again.json["results"][0]["ok"] is True, again.json
    with sessions.begin() as session:
        second = session.get(Course, courses["second"])
        material = session.get(Material, request_id)
        assert second is not None
        assert material is not None
        assert material.course_id == courses["second"]
        assert material.file_url.startswith(f"{second.name}/")


def test_reapproval_after_a_course_edit_moves_the_hidden_object(
    submit: Any,
    moderate: Any,
    admin: dict[str, str],
    user_token: Callable[..., Any],
    courses: dict[str, Any],
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    request_id = _pending(submit, user_token()[1], courses)

    def act(action: str) -> None:
        response = moderate.post(
            "/actions", json={"action": action, "request_ids": [str(request_id)]}, headers=admin
        )
        assert response.json["results"][0]["ok"] is True, response.json

    act("approve")
    with sessions.begin() as session:
        material = session.get(Material, request_id)
        assert material is not None
        first_name = material.file_url
    act("undo_approve")
    edited = moderate.patch(
        f"/requests/{request_id}", json={"course_id": str(courses["second"])}, headers=admin
    )
    assert edited.status_code == 200, edited.json
    act("approve")

    with sessions.begin() as session:
        second = session.get(Course, courses["second"])
        material = session.get(Material, request_id)
        assert second is not None
        assert material is not None
        assert material.is_published
        assert material.course_id == courses["second"]
        assert material.file_url.startswith(f"{second.name}/")
        assert material.file_url != first_name
    assert _names(bucket, request_id) == [material.file_url]


def test_an_upload_that_outlived_the_sweep_cut_off_commits_nothing(
    submit: Any,
    user_token: Callable[..., Any],
    courses: dict[str, Any],
    sessions: sessionmaker[Session],
    bucket: Any,
    sweep_at_commit: list[list[str]],
) -> None:
    """The sweep claims the upload's intent while its row is about to commit."""
    title = f"Stalled {uuid.uuid4().hex[:6]}"
    response = _submit(submit, user_token()[1], courses, title)

    assert response.status_code == 409, response.json
    assert response.json["error"]["code"] == "conflict"
    (deleted,) = sweep_at_commit
    assert deleted  # the upload's object, at least
    with sessions.begin() as session:
        assert session.scalar(select(FileRequest).where(FileRequest.title == title)) is None
    assert not set(deleted) & {blob.name for blob in bucket.list_blobs()}
