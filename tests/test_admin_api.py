"""moderate's admin API: users and roles, request edits, re-ingestion, stats."""

from __future__ import annotations

import base64
import io
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared import admin as admin_data
from shared import reingest
from shared.db.models import AuditLog, FileRequest, Material, MaterialChunk, User
from tests.factories import make_course, make_lecturer, make_material_type, make_user
from tests.parallel import run_together
from tests.pdfs import make_pdf


@pytest.fixture(scope="module")
def submit(function_client: Callable[[str], Any]) -> Any:
    return function_client("submit")


@pytest.fixture(scope="module")
def ingest_url(function_client: Callable[[str], Any]) -> Iterator[str]:
    """The real ingest function behind a real HTTP server, as `lectern dev` mounts it."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, function_client("ingest").application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def moderate(function_client: Callable[[str], Any], ingest_url: str) -> Any:
    """moderate as `lectern dev` runs it: re-ingest notices go to the ingest server."""
    os.environ["LECTERN_INGEST_URL"] = ingest_url
    return function_client("moderate")


@pytest.fixture(scope="module")
def refs(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions.begin() as session:
        major_course = make_course(session, year_id=3)
        return {
            "course_id": major_course.id,
            "other_course_id": make_course(session, year_id=1).id,
            "type_id": make_material_type(session).id,
            "lecturer_id": make_lecturer(session).id,
        }


@pytest.fixture
def admin(user_token: Callable[..., Any]) -> tuple[uuid.UUID, dict[str, str]]:
    result: tuple[uuid.UUID, dict[str, str]] = user_token(role="ADMIN")
    return result


def upload(
    submit: Any,
    headers: dict[str, str],
    refs: dict[str, Any],
    pdf: bytes,
    *,
    course_id: uuid.UUID | None = None,
    academic_year: int = 3,
) -> Any:
    return submit.post(
        "/",
        data={
            "course_id": str(course_id or refs["course_id"]),
            "type_id": str(refs["type_id"]),
            "lecturer_id": str(refs["lecturer_id"]),
            "title": "Lecture 1",
            "academic_year": str(academic_year),
            "material_year": "2025",
            "file": (io.BytesIO(pdf), "lecture.pdf", "application/pdf"),
        },
        headers=headers,
    )


def uploaded(submit: Any, headers: dict[str, str], refs: dict[str, Any], pdf: bytes) -> str:
    response = upload(submit, headers, refs, pdf)
    assert response.status_code == 201, response.json
    return str(response.json["request"]["id"])


def act(moderate: Any, headers: dict[str, str], action: str, request_id: str) -> None:
    body = {"action": action, "request_ids": [request_id], "reason": "test"}
    result = moderate.post("/actions", json=body, headers=headers).json["results"][0]
    assert result["ok"], result


def audits(sessions: sessionmaker[Session], action: str, target: uuid.UUID | str) -> list[AuditLog]:
    with sessions.begin() as session:
        return list(
            session.scalars(
                select(AuditLog)
                .where(AuditLog.action == action, AuditLog.target_ids.contains([str(target)]))
                .order_by(AuditLog.timestamp)
            )
        )


def role_of(sessions: sessionmaker[Session], user_id: uuid.UUID) -> str:
    with sessions.begin() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.role


def leave_only_admins(sessions: sessionmaker[Session], *keep: uuid.UUID) -> None:
    with sessions.begin() as session:
        session.execute(
            update(User).where(User.role == "ADMIN", User.id.not_in(keep)).values(role="STUDENT")
        )


# -- users ---------------------------------------------------------------------


def test_users_are_searched_filtered_and_paged(
    moderate: Any,
    admin: tuple[uuid.UUID, dict[str, str]],
    sessions: sessionmaker[Session],
) -> None:
    tag = uuid.uuid4().hex[:8]
    with sessions.begin() as session:
        ids = [
            make_user(session, name=f"Ada {tag} {n}", email=f"ada{n}-{tag}@uni.example").id
            for n in range(3)
        ]
        by_email = make_user(session, name="Someone", email=f"x-{tag}@ada.example")
        teacher = make_user(session, role="ADMIN", name=f"Admin {tag}").id
        make_user(session, name="Ada_Lookalike 100%")
    _, headers = admin

    pages: list[str] = []
    cursor = None
    while True:
        query = {
            "q": f"  ADA {tag.upper()} ",
            "limit": "2",
            **({"cursor": cursor} if cursor else {}),
        }
        response = moderate.get("/users", query_string=query, headers=headers)
        assert response.status_code == 200, response.json
        pages += [user["id"] for user in response.json["users"]]
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    # Newest first (made in one transaction, they share a timestamp: then by id
    # descending), case-insensitive, each once across pages.
    assert pages == sorted((str(i) for i in ids), reverse=True)
    found = moderate.get("/users", query_string={"q": tag}, headers=headers).json["users"]
    assert {user["id"] for user in found} == {str(i) for i in [*ids, by_email.id, teacher]}
    assert set(found[0]) >= {"id", "email", "name", "role", "total_points", "last_login_at"}
    admins = moderate.get("/users", query_string={"q": tag, "role": "ADMIN"}, headers=headers).json[
        "users"
    ]
    assert [user["id"] for user in admins] == [str(teacher)]
    # LIKE wildcards in q are plain characters.
    wild = moderate.get("/users", query_string={"q": "%"}, headers=headers).json["users"]
    assert [user["name"] for user in wild] == ["Ada_Lookalike 100%"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"role": "KING"}, "role"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "nope"}, "cursor"),
        ({"q": "x" * 101}, "q"),
        ({"sort": "name"}, "sort"),
    ],
)
def test_bad_user_queries_are_422(
    moderate: Any, admin: tuple[uuid.UUID, dict[str, str]], query: dict[str, str], field: str
) -> None:
    response = moderate.get("/users", query_string=query, headers=admin[1])
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]


def test_students_get_403_on_every_admin_route(
    moderate: Any, user_token: Callable[..., Any]
) -> None:
    student_id, student = user_token()
    some = str(uuid.uuid4())
    calls = [
        moderate.get("/users", headers=student),
        moderate.patch(f"/users/{student_id}", json={"role": "ADMIN"}, headers=student),
        moderate.patch(f"/requests/{some}", json={"title": "x"}, headers=student),
        moderate.post(f"/materials/{some}/reingest", headers=student),
        moderate.get("/stats", headers=student),
    ]
    assert [call.status_code for call in calls] == [403] * 5
    assert all(call.json["error"]["code"] == "admin_only" for call in calls)


def test_an_admin_changes_a_role_with_an_audit_row(
    moderate: Any,
    admin: tuple[uuid.UUID, dict[str, str]],
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
) -> None:
    admin_id, headers = admin
    student_id, student = user_token()
    response = moderate.patch(f"/users/{student_id}", json={"role": "ADMIN"}, headers=headers)
    assert response.status_code == 200, response.json
    assert (response.json["user"]["id"], response.json["user"]["role"]) == (
        str(student_id),
        "ADMIN",
    )
    assert role_of(sessions, student_id) == "ADMIN"
    (entry,) = audits(sessions, "change_role", student_id)
    assert entry.actor_id == admin_id
    assert (entry.target_type, entry.meta_data["from"], entry.meta_data["to"]) == (
        "user",
        "STUDENT",
        "ADMIN",
    )
    # The new admin can use the admin API at once.
    assert moderate.get("/stats", headers=student).status_code == 200
    # Setting the role it already has changes nothing and records nothing.
    assert (
        moderate.patch(f"/users/{student_id}", json={"role": "ADMIN"}, headers=headers).status_code
        == 200
    )
    assert len(audits(sessions, "change_role", student_id)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [({"role": "admin"}, "role"), ({}, "role"), ({"role": "ADMIN", "name": "x"}, "name")],
)
def test_a_bad_role_body_is_422_and_changes_nothing(
    moderate: Any,
    admin: tuple[uuid.UUID, dict[str, str]],
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    student_id, _ = user_token()
    response = moderate.patch(f"/users/{student_id}", json=body, headers=admin[1])
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]
    assert role_of(sessions, student_id) == "STUDENT"
    assert audits(sessions, "change_role", student_id) == []


def test_an_unknown_user_is_404(moderate: Any, admin: tuple[uuid.UUID, dict[str, str]]) -> None:
    for path in (f"/users/{uuid.uuid4()}", "/users/not-a-uuid"):
        response = moderate.patch(path, json={"role": "ADMIN"}, headers=admin[1])
        assert response.status_code == 404


def test_the_last_admin_cannot_be_demoted(
    moderate: Any,
    admin: tuple[uuid.UUID, dict[str, str]],
    sessions: sessionmaker[Session],
) -> None:
    admin_id, headers = admin
    leave_only_admins(sessions, admin_id)
    response = moderate.patch(f"/users/{admin_id}", json={"role": "STUDENT"}, headers=headers)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "last_admin"
    assert role_of(sessions, admin_id) == "ADMIN"
    assert audits(sessions, "change_role", admin_id) == []


def test_two_admins_demoting_each_other_at_once_leave_one_admin(
    moderate: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
) -> None:
    for _ in range(5):
        first_id, first = user_token(role="ADMIN")
        second_id, second = user_token(role="ADMIN")
        leave_only_admins(sessions, first_id, second_id)

        def demote(headers: dict[str, str], target: uuid.UUID) -> int:
            client = moderate.application.test_client()
            response = client.patch(f"/users/{target}", json={"role": "STUDENT"}, headers=headers)
            return int(response.status_code)

        statuses = run_together(
            [partial(demote, first, second_id), partial(demote, second, first_id)]
        )
        # One wins; the other finds itself demoted (403) or the last admin (409).
        assert sorted(statuses)[0] == 200
        assert sorted(statuses)[1] in (403, 409)
        with sessions.begin() as session:
            remaining = session.scalars(select(User.id).where(User.role == "ADMIN")).all()
        assert len(remaining) == 1
        assert remaining[0] in (first_id, second_id)


# -- requests ------------------------------------------------------------------


def request_row(sessions: sessionmaker[Session], request_id: str) -> dict[str, Any]:
    with sessions.begin() as session:
        request = session.get(FileRequest, uuid.UUID(request_id))
        assert request is not None
        return {
            name: getattr(request, name)
            for name in (*admin_data.EDITABLE_FIELDS, "status", "updated_at")
        }


def test_an_admin_edits_a_pending_request(
    moderate: Any,
    submit: Any,
    admin: tuple[uuid.UUID, dict[str, str]],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
) -> None:
    admin_id, headers = admin
    _, student = user_token()
    request_id = uploaded(submit, student, refs, make_pdf(["edit me"]))
    with sessions.begin() as session:
        lecturer_id = make_lecturer(session).id
    body = {
        "title": "  Lecture 1: Introduction ",
        "lecturer_id": str(lecturer_id),
        "material_year": 2024,
        "notes": "Slides only",
    }
    response = moderate.patch(f"/requests/{request_id}", json=body, headers=headers)
    assert response.status_code == 200, response.json
    edited = response.json["request"]
    assert (edited["title"], edited["lecturer_id"], edited["material_year"], edited["notes"]) == (
        "Lecture 1: Introduction",
        str(lecturer_id),
        2024,
        "Slides only",
    )
    assert edited["uploader"]["id"]
    assert "file_url" not in edited
    row = request_row(sessions, request_id)
    assert (row["title"], row["lecturer_id"], row["status"]) == (
        "Lecture 1: Introduction",
        lecturer_id,
        "pending",
    )
    (entry,) = audits(sessions, "edit_request", request_id)
    assert entry.actor_id == admin_id
    assert entry.meta_data["changes"]["title"] == ["Lecture 1", "Lecture 1: Introduction"]
    assert set(entry.meta_data["changes"]) == {"title", "lecturer_id", "material_year", "notes"}
    # The student sees the corrected request; null clears the notes.
    assert submit.get(f"/{request_id}", headers=student).json["request"]["title"] == (
        "Lecture 1: Introduction"
    )
    cleared = moderate.patch(f"/requests/{request_id}", json={"notes": None}, headers=headers)
    assert cleared.json["request"]["notes"] is None
    assert len(audits(sessions, "edit_request", request_id)) == 2
    # An edit that changes nothing records nothing.
    same = moderate.patch(f"/requests/{request_id}", json={"notes": None}, headers=headers)
    assert same.status_code == 200
    assert len(audits(sessions, "edit_request", request_id)) == 2

    # Moving it to another course brings academic_year along to that course's year.
    moved = moderate.patch(
        f"/requests/{request_id}", json={"course_id": str(refs["other_course_id"])}, headers=headers
    )
    assert moved.status_code == 200, moved.json
    assert (moved.json["request"]["course_id"], moved.json["request"]["academic_year"]) == (
        str(refs["other_course_id"]),
        1,
    )
    # Approval publishes the edited metadata.
    act(moderate, headers, "approve", request_id)
    with sessions.begin() as session:
        material = session.get(Material, uuid.UUID(request_id))
        assert material is not None
        assert (material.title, material.course_id, material.academic_year) == (
            "Lecture 1: Introduction",
            refs["other_course_id"],
            1,
        )
    # No longer pending: no more edits.
    late = moderate.patch(f"/requests/{request_id}", json={"title": "Late"}, headers=headers)
    assert (late.status_code, late.json["error"]["code"]) == (409, "invalid_transition")
    assert request_row(sessions, request_id)["title"] == "Lecture 1: Introduction"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"title": None}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "two\nlines"}, "title"),
        ({"course_id": str(uuid.uuid4())}, "course_id"),
        ({"type_id": str(uuid.uuid4())}, "type_id"),
        ({"lecturer_id": str(uuid.uuid4())}, "lecturer_id"),
        ({"lecturer_id": "nope"}, "lecturer_id"),
        ({"academic_year": 5}, "academic_year"),
        # The course is a year-3 course.
        ({"academic_year": 2}, "academic_year"),
        ({"material_year": 3000}, "material_year"),
        ({"notes": "x" * 1001}, "notes"),
        ({"status": "approved"}, "status"),
    ],
)
def test_a_bad_edit_is_422_naming_the_field_and_changes_nothing(
    moderate: Any,
    submit: Any,
    admin: tuple[uuid.UUID, dict[str, str]],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    _, student = user_token()
    request_id = uploaded(submit, student, refs, make_pdf([f"bad edit {uuid.uuid4()}"]))
    before = request_row(sessions, request_id)
    response = moderate.patch(f"/requests/{request_id}", json=body, headers=admin[1])
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]
    assert request_row(sessions, request_id) == before
    assert audits(sessions, "edit_request", request_id) == []


def test_moving_a_request_onto_the_same_live_file_is_a_duplicate(
    moderate: Any,
    submit: Any,
    admin: tuple[uuid.UUID, dict[str, str]],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
) -> None:
    _, student = user_token()
    pdf = make_pdf(["the same bytes twice"])
    there = upload(submit, student, refs, pdf, course_id=refs["other_course_id"], academic_year=1)
    assert there.status_code == 201
    here = uploaded(submit, student, refs, pdf)
    before = request_row(sessions, here)
    response = moderate.patch(
        f"/requests/{here}", json={"course_id": str(refs["other_course_id"])}, headers=admin[1]
    )
    assert (response.status_code, response.json["error"]["code"]) == (409, "duplicate_file")
    assert there.json["request"]["id"] in response.json["error"]["message"]
    assert request_row(sessions, here) == before


def test_unknown_requests_are_404(moderate: Any, admin: tuple[uuid.UUID, dict[str, str]]) -> None:
    for path in (f"/requests/{uuid.uuid4()}", "/requests/nope"):
        assert moderate.patch(path, json={"title": "x"}, headers=admin[1]).status_code == 404


def test_submit_checks_academic_year_against_the_course(
    submit: Any,
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
) -> None:
    user_id, student = user_token()
    response = upload(submit, student, refs, make_pdf(["wrong year"]), academic_year=1)
    assert response.status_code == 422
    assert "academic_year" in response.json["error"]["fields"]
    assert "(3)" in response.json["error"]["fields"]["academic_year"]
    with sessions.begin() as session:
        assert (
            session.scalars(select(FileRequest).where(FileRequest.user_id == user_id)).all() == []
        )


# -- re-ingestion ----------------------------------------------------------------


def material_row(sessions: sessionmaker[Session], material_id: str) -> dict[str, Any]:
    with sessions.begin() as session:
        material = session.get(Material, uuid.UUID(material_id))
        assert material is not None
        return {
            "ingest_status": material.ingest_status,
            "ingest_attempts": material.ingest_attempts,
            "ingest_error_code": material.ingest_error_code,
            "ingest_generation": material.ingest_generation,
            "chunk_count": material.chunk_count,
            "file_url": material.file_url,
        }


def fail_for_good(sessions: sessionmaker[Session], material_id: str) -> None:
    """As the pipeline leaves a material whose attempts ran out (the embedder was down)."""
    with sessions.begin() as session:
        session.execute(
            update(Material)
            .where(Material.id == uuid.UUID(material_id))
            .values(
                ingest_status="failed",
                ingest_attempts=5,
                ingest_error_code="embedding_unavailable",
                ingest_error="The embedding service was unavailable. Processing gave up.",
                ingest_finished_at=datetime.now(UTC),
            )
        )


def test_a_failed_material_is_ingested_again_and_becomes_ready(
    moderate: Any,
    submit: Any,
    admin: tuple[uuid.UUID, dict[str, str]],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
    bucket: Any,
    ingest_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin_id, headers = admin
    _, student = user_token()
    request_id = uploaded(submit, student, refs, make_pdf(["Paging and segmentation"] * 2))
    act(moderate, headers, "approve", request_id)
    fail_for_good(sessions, request_id)
    failed = material_row(sessions, request_id)
    generation = int(bucket.get_blob(failed["file_url"]).generation)
    assert failed["ingest_generation"] == generation

    # Redelivering the same notice does nothing: that generation is finished.
    notice = reingest.notification(
        bucket=bucket.name,
        name=failed["file_url"],
        generation=generation,
        metadata=dict(bucket.get_blob(failed["file_url"]).metadata),
    )
    event_headers, body = reingest.local_event(notice)
    post = urllib.request.Request(ingest_url, data=body, method="POST", headers=event_headers)
    with urllib.request.urlopen(post, timeout=60) as answer:
        assert answer.status == 200
    assert material_row(sessions, request_id)["ingest_status"] == "failed"

    response = moderate.post(f"/materials/{request_id}/reingest", headers=headers)
    assert response.status_code == 202, response.json
    material = response.json["material"]
    assert (material["id"], material["ingest_status"], material["ingest_attempts"]) == (
        request_id,
        "queued",
        0,
    )
    assert material["ingest_error"] is None
    assert material["ingest_error_code"] is None
    (entry,) = audits(sessions, "reingest", request_id)
    assert (entry.actor_id, entry.target_type) == (admin_id, "material")
    assert entry.meta_data["previous"]["ingest_status"] == "failed"

    deadline = time.monotonic() + 30
    while material_row(sessions, request_id)["ingest_status"] != "ready":
        assert time.monotonic() < deadline, material_row(sessions, request_id)
        time.sleep(0.1)
    ready = material_row(sessions, request_id)
    # The same object generation, no undo or new upload needed.
    assert ready["ingest_generation"] == generation
    assert ready["ingest_error_code"] is None
    with sessions.begin() as session:
        chunks = session.scalars(
            select(MaterialChunk.content).where(MaterialChunk.material_id == uuid.UUID(request_id))
        ).all()
    assert ready["chunk_count"] == len(chunks) > 0
    assert "Paging and segmentation" in chunks[0]


def test_reingest_refusals_change_nothing(
    moderate: Any,
    submit: Any,
    admin: tuple[uuid.UUID, dict[str, str]],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    _, headers = admin
    _, student = user_token()
    for path in (f"/materials/{uuid.uuid4()}/reingest", "/materials/nope/reingest"):
        assert moderate.post(path, headers=headers).status_code == 404
    # A pending request has no material yet.
    pending = uploaded(submit, student, refs, make_pdf(["still pending"]))
    assert moderate.post(f"/materials/{pending}/reingest", headers=headers).status_code == 404

    hidden = uploaded(submit, student, refs, make_pdf(["unpublished"]))
    act(moderate, headers, "approve", hidden)
    act(moderate, headers, "undo_approve", hidden)
    before = material_row(sessions, hidden)
    response = moderate.post(f"/materials/{hidden}/reingest", headers=headers)
    assert (response.status_code, response.json["error"]["code"]) == (409, "not_published")
    assert material_row(sessions, hidden) == before

    busy = uploaded(submit, student, refs, make_pdf(["being ingested"]))
    act(moderate, headers, "approve", busy)
    with sessions.begin() as session:
        session.execute(
            update(Material)
            .where(Material.id == uuid.UUID(busy))
            .values(ingest_status="processing", ingest_started_at=datetime.now(UTC))
        )
    before = material_row(sessions, busy)
    response = moderate.post(f"/materials/{busy}/reingest", headers=headers)
    assert (response.status_code, response.json["error"]["code"]) == (409, "ingest_in_progress")
    assert material_row(sessions, busy) == before
    # An expired lease is no longer in the way.
    with sessions.begin() as session:
        session.execute(
            update(Material)
            .where(Material.id == uuid.UUID(busy))
            .values(ingest_started_at=datetime.now(UTC) - timedelta(hours=1))
        )
    assert moderate.post(f"/materials/{busy}/reingest", headers=headers).status_code == 202

    gone = uploaded(submit, student, refs, make_pdf(["lost file"]))
    act(moderate, headers, "approve", gone)
    fail_for_good(sessions, gone)
    before = material_row(sessions, gone)
    bucket.blob(before["file_url"]).delete()
    response = moderate.post(f"/materials/{gone}/reingest", headers=headers)
    assert (response.status_code, response.json["error"]["code"]) == (409, "object_missing")
    assert material_row(sessions, gone) == before
    for material_id in (hidden, gone):
        assert audits(sessions, "reingest", material_id) == []


def test_in_production_the_notice_is_published_as_the_bucket_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The published message, pushed to ingest, is the notice of that object generation."""
    from shared.config import Settings
    from shared.pipeline import PUBSUB_PUBLISHED, ObjectNotice, notice_from_event

    published: list[tuple[str, bytes, dict[str, str]]] = []

    class Done:
        def result(self, timeout: float) -> str:
            assert timeout > 0
            return "1"

    class Publisher:
        def publish(self, topic: str, data: bytes, **attributes: str) -> Done:
            published.append((topic, data, attributes))
            return Done()

    monkeypatch.setattr(reingest, "_publisher", Publisher())
    settings = Settings.model_validate(
        {
            "GCS_BUCKET": "b",
            "STORAGE_EMULATOR_HOST": None,
            "INGEST_TOPIC": "projects/p/topics/lectern-ingest",
        }
    )
    metadata = {"lectern-request-id": str(uuid.uuid4())}
    notice = reingest.notification(bucket="b", name="Course/a.pdf", generation=7, metadata=metadata)
    assert reingest.announce(settings, notice) is True
    ((topic, data, attributes),) = published
    assert topic == "projects/p/topics/lectern-ingest"
    # What the push subscription delivers: the data base64-encoded, the attributes as sent.
    envelope = {"message": {"data": base64.b64encode(data).decode(), "attributes": attributes}}
    assert notice_from_event(PUBSUB_PUBLISHED, envelope) == ObjectNotice(
        "b", "Course/a.pdf", 7, metadata
    )
    # No topic configured: not sent (the sweep re-drives the material later), no exception.
    no_topic = settings.model_copy(update={"INGEST_TOPIC": None})
    assert reingest.announce(no_topic, notice) is False
    assert len(published) == 1


def test_the_reingest_lease_is_the_pipelines() -> None:
    from shared.pipeline import LEASE

    assert admin_data.LEASE == LEASE


# -- stats -----------------------------------------------------------------------


def test_stats_count_what_happened(
    moderate: Any,
    submit: Any,
    admin: tuple[uuid.UUID, dict[str, str]],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    sessions: sessionmaker[Session],
) -> None:
    _, headers = admin
    before = moderate.get("/stats", headers=headers)
    assert before.status_code == 200, before.json
    first = before.json
    assert set(first) == {
        "requests",
        "oldest_pending_at",
        "oldest_pending_age_seconds",
        "materials",
        "users",
        "approvals_last_7_days",
    }
    assert set(first["requests"]) == {"pending", "approved", "rejected", "withdrawn"}
    assert set(first["users"]) == {"STUDENT", "ADMIN"}

    _, student = user_token()
    ids = [
        uploaded(submit, student, refs, make_pdf([f"stats {n} {uuid.uuid4()}"])) for n in range(3)
    ]
    act(moderate, headers, "approve", ids[0])
    act(moderate, headers, "reject", ids[1])
    assert submit.delete(f"/{ids[2]}", headers=student).status_code == 204
    pending = uploaded(submit, student, refs, make_pdf([f"stats pending {uuid.uuid4()}"]))
    old = datetime(2001, 1, 2, 3, 4, 5, tzinfo=UTC)
    with sessions.begin() as session:
        session.execute(
            update(FileRequest).where(FileRequest.id == uuid.UUID(pending)).values(created_at=old)
        )
    after = moderate.get("/stats", headers=headers).json

    def delta(group: str, key: str) -> int:
        return int(after[group][key]) - int(first[group][key])

    assert [delta("requests", s) for s in ("pending", "approved", "rejected", "withdrawn")] == [
        1,
        1,
        1,
        1,
    ]
    assert delta("materials", "queued") == 1
    assert delta("users", "STUDENT") == 1
    assert after["approvals_last_7_days"] - first["approvals_last_7_days"] == 1
    assert after["oldest_pending_at"] == "2001-01-02T03:04:05Z"
    expected_age = (datetime.now(UTC) - old).total_seconds()
    assert abs(after["oldest_pending_age_seconds"] - expected_age) < 60


def test_each_figure_is_one_statement_that_an_index_serves(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    now = datetime.now(UTC)
    event.listen(engine, "before_cursor_execute", count)
    try:
        with sessions.begin() as session:
            admin_data.stats(session, now=now)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == len(
        admin_data.STATS_QUERIES
    )

    # With sequential scans priced out, a plan that still has one found no index.
    with sessions.begin() as session:
        session.execute(text("SET LOCAL enable_seqscan = off"))
        for name, query in admin_data.STATS_QUERIES.items():
            compiled = query(now).compile(
                dialect=engine.dialect, compile_kwargs={"literal_binds": True}
            )
            plan = "\n".join(session.scalars(text(f"EXPLAIN {compiled}")))
            assert "Seq Scan" not in plan, f"{name}:\n{plan}"
