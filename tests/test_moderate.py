"""moderate: the four transitions, XP and audit, under concurrency and storage failures."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import (
    AuditLog,
    FileRequest,
    Material,
    ObjectIntent,
    PointsTransaction,
    User,
    UserCourseActivity,
)
from tests.factories import make_course, make_lecturer, make_material_type, make_user
from tests.faults import FaultProxy
from tests.parallel import run_together
from tests.pdfs import make_pdf


@pytest.fixture(scope="module")
def storage_host(proxy: FaultProxy) -> str:
    """Storage through the fault proxy, so tests can make it fail mid-way."""
    return proxy.url


@pytest.fixture(scope="module")
def moderate(function_client: Callable[[str], Any]) -> Any:
    return function_client("moderate")


@pytest.fixture(scope="module")
def submit(function_client: Callable[[str], Any]) -> Any:
    return function_client("submit")


@pytest.fixture(scope="module")
def refs(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions.begin() as session:
        return {
            "type_id": make_material_type(session).id,
            "lecturer_id": make_lecturer(session).id,
        }


@pytest.fixture
def admin(user_token: Callable[..., Any]) -> dict[str, str]:
    return user_token(role="ADMIN")[1]


@pytest.fixture
def course_id(sessions: sessionmaker[Session]) -> uuid.UUID:
    with sessions.begin() as session:
        return make_course(session, name=f"Compilers {uuid.uuid4().hex[:6]}").id


def upload(
    submit: Any,
    headers: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    filename: str = "lecture.pdf",
    title: str = "Lecture",
) -> str:
    response = submit.post(
        "/",
        data={
            "course_id": str(course_id),
            "type_id": str(refs["type_id"]),
            "lecturer_id": str(refs["lecturer_id"]),
            "title": title,
            "academic_year": "1",
            "material_year": "2025",
            "file": (io.BytesIO(make_pdf(2)), filename, "application/pdf"),
        },
        headers=headers,
    )
    assert response.status_code == 201, response.json
    return str(response.json["request"]["id"])


def act(
    moderate: Any, admin: dict[str, str], action: str, *ids: str, reason: str | None = None
) -> Any:
    body: dict[str, Any] = {"action": action, "request_ids": list(ids)}
    if reason is not None:
        body["reason"] = reason
    return moderate.post("/actions", json=body, headers=admin)


def state(sessions: sessionmaker[Session], request_id: str) -> dict[str, Any]:
    with sessions.begin() as session:
        request = session.get(FileRequest, uuid.UUID(request_id))
        assert request is not None
        user = session.get(User, request.user_id)
        assert user is not None
        ledger = session.scalar(
            select(func.coalesce(func.sum(PointsTransaction.amount), 0)).where(
                PointsTransaction.user_id == user.id
            )
        )
        material = session.get(Material, request.id)
        return {
            "status": request.status,
            "file_url": request.file_url,
            "admin_note": request.admin_note,
            # A hidden (unpublished) material is no published url.
            "material_url": material.file_url if material and material.is_published else None,
            "hidden": material is not None and not material.is_published,
            "points": user.total_points,
            "ledger": int(ledger or 0),
        }


def objects_of(bucket: Any, request_id: str) -> list[str]:
    return sorted(
        blob.name
        for blob in bucket.list_blobs()
        if (blob.metadata or {}).get("lectern-request-id") == request_id
    )


def test_full_cycle_with_xp_audit_and_objects(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    _, student = user_token()
    request_id = upload(submit, student, refs, course_id, filename="Week 3 - Parsing.pdf")
    with sessions.begin() as session:
        pending_url = session.scalar(
            select(FileRequest.file_url).where(FileRequest.id == uuid.UUID(request_id))
        )
    assert pending_url == f"pending/{request_id}/Week 3 - Parsing.pdf"

    response = act(moderate, admin, "approve", request_id)
    assert response.json == {
        "results": [{"request_id": request_id, "ok": True, "status": "approved"}]
    }
    approved = state(sessions, request_id)
    assert approved["status"] == "approved"
    assert approved["material_url"] == approved["file_url"]
    assert approved["file_url"].endswith("/Week 3 - Parsing.pdf")
    assert not approved["file_url"].startswith("pending/")
    assert (approved["points"], approved["ledger"]) == (50, 50)
    assert objects_of(bucket, request_id) == [approved["file_url"]]

    act(moderate, admin, "undo_approve", request_id)
    undone = state(sessions, request_id)
    assert (undone["status"], undone["material_url"], undone["hidden"]) == ("pending", None, True)
    assert (undone["points"], undone["ledger"]) == (0, 0)
    # Unpublished in place: the object stays where it was, with its generation.
    assert undone["file_url"] == approved["file_url"]
    assert objects_of(bucket, request_id) == [approved["file_url"]]
    generation = bucket.get_blob(approved["file_url"]).generation

    act(moderate, admin, "approve", request_id)
    again = state(sessions, request_id)
    assert (again["status"], again["points"], again["ledger"]) == ("approved", 50, 50)
    assert again["material_url"] == approved["file_url"]
    assert bucket.get_blob(approved["file_url"]).generation == generation  # nothing re-ingested

    act(moderate, admin, "undo_approve", request_id)
    rejected = act(moderate, admin, "reject", request_id, reason="Blurry scans, please re-upload")
    assert rejected.json["results"][0]["ok"] is True
    final = state(sessions, request_id)
    assert final["status"] == "rejected"
    assert final["admin_note"] == "Blurry scans, please re-upload"
    assert (final["points"], final["ledger"]) == (0, 0)
    assert objects_of(bucket, request_id) == [f"rejected/{request_id}/Week 3 - Parsing.pdf"]
    mine = submit.get(f"/{request_id}", headers=student).json["request"]
    assert (mine["status"], mine["admin_note"]) == ("rejected", "Blurry scans, please re-upload")

    act(moderate, admin, "undo_reject", request_id)
    assert state(sessions, request_id)["status"] == "pending"
    assert state(sessions, request_id)["admin_note"] is None

    with sessions.begin() as session:
        ledger = session.execute(
            select(PointsTransaction.action, PointsTransaction.amount)
            .where(PointsTransaction.request_id == uuid.UUID(request_id))
            .order_by(PointsTransaction.created_at)
        ).all()
        audits = session.scalars(
            select(AuditLog.action)
            .where(AuditLog.target_ids.contains([request_id]))
            .order_by(AuditLog.timestamp)
        ).all()
    assert [tuple(row) for row in ledger] == [
        ("upload_approval", 50),
        ("upload_approval_revoked", -50),
        ("upload_approval", 50),
        ("upload_approval_revoked", -50),
    ]
    assert audits == ["approve", "undo_approve", "approve", "undo_approve", "reject", "undo_reject"]


def test_a_student_gets_403_on_every_moderate_route(
    moderate: Any, user_token: Callable[..., Any]
) -> None:
    _, student = user_token()
    assert moderate.get("/requests", headers=student).status_code == 403
    assert moderate.get("/audit", headers=student).status_code == 403
    response = moderate.post(
        "/actions", json={"action": "approve", "request_ids": [str(uuid.uuid4())]}, headers=student
    )
    assert response.status_code == 403
    assert response.json["error"]["code"] == "admin_only"
    # The role is checked before the body: a student learns nothing from a 422.
    response = moderate.post("/actions", json={"action": "explode"}, headers=student)
    assert response.status_code == 403


def test_invalid_transitions_are_per_item(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
) -> None:
    _, student = user_token()
    request_id = upload(submit, student, refs, course_id)
    for action in ("undo_approve", "undo_reject"):
        result = act(moderate, admin, action, request_id).json["results"][0]
        assert (result["ok"], result["error"], result["status"]) == (
            False,
            "invalid_transition",
            "pending",
        )
    act(moderate, admin, "approve", request_id)
    for action in ("approve", "reject", "undo_reject"):
        result = act(moderate, admin, action, request_id, reason="x").json["results"][0]
        assert (result["ok"], result["error"]) == (False, "invalid_transition")
    assert state(sessions, request_id)["points"] == 50


def test_bulk_with_bad_ids_approves_the_rest(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
) -> None:
    _, student = user_token()
    good = [upload(submit, student, refs, course_id, filename=f"part {n}.pdf") for n in range(3)]
    already = upload(submit, student, refs, course_id, filename="already.pdf")
    act(moderate, admin, "approve", already)
    unknown = str(uuid.uuid4())
    response = act(moderate, admin, "approve", good[0], unknown, good[1], already, good[2])
    assert response.status_code == 200
    results = {r["request_id"]: r for r in response.json["results"]}
    assert [r["ok"] for r in response.json["results"]] == [True, False, True, False, True]
    assert results[unknown]["error"] == "not_found"
    assert results[already]["error"] == "invalid_transition"
    assert all(state(sessions, r)["status"] == "approved" for r in good)
    with sessions.begin() as session:
        entry = session.scalars(
            select(AuditLog).where(AuditLog.target_ids.contains([unknown]))
        ).one()
    assert entry.action == "bulk_approve"
    assert entry.meta_data["count"] == 5
    assert entry.meta_data["succeeded"] == 3
    assert entry.meta_data["failures"] == {unknown: "not_found", already: "invalid_transition"}
    assert len(entry.meta_data["titles"]) == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "reject", "request_ids": ["00000000-0000-0000-0000-000000000001"]}, "reason"),
        (
            {
                "action": "reject",
                "request_ids": ["00000000-0000-0000-0000-000000000001"],
                "reason": "  ",
            },
            "reason",
        ),
        ({"action": "delete", "request_ids": ["00000000-0000-0000-0000-000000000001"]}, "action"),
        ({"action": "approve", "request_ids": []}, "request_ids"),
        (
            {"action": "approve", "request_ids": [str(uuid.uuid4()) for _ in range(101)]},
            "request_ids",
        ),
        ({"action": "approve", "request_ids": ["not-a-uuid"]}, "request_ids.0"),
    ],
)
def test_action_bodies_are_validated(
    moderate: Any,
    admin: dict[str, str],
    sessions: sessionmaker[Session],
    body: dict[str, Any],
    field: str,
) -> None:
    with sessions.begin() as session:
        before = session.scalar(select(func.count()).select_from(AuditLog))
    response = moderate.post("/actions", json=body, headers=admin)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]
    with sessions.begin() as session:
        assert session.scalar(select(func.count()).select_from(AuditLog)) == before


def test_ten_parallel_approvals_give_one_success_and_one_award(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
) -> None:
    _, student = user_token()
    request_id = upload(submit, student, refs, course_id)

    def approve(client: Any) -> bool:
        return bool(act(client, admin, "approve", request_id).json["results"][0]["ok"])

    clients = [moderate.application.test_client() for _ in range(10)]
    outcomes = run_together([partial(approve, client) for client in clients])
    assert sorted(outcomes) == [False] * 9 + [True]
    with sessions.begin() as session:
        awards = session.scalar(
            select(func.count()).where(PointsTransaction.request_id == uuid.UUID(request_id))
        )
    assert awards == 1
    assert state(sessions, request_id)["points"] == 50


def test_twenty_parallel_approve_and_undo_calls_keep_xp_consistent(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    _, student = user_token()
    request_id = upload(submit, student, refs, course_id)

    def flip(client: Any, action: str) -> None:
        act(client, admin, action, request_id)

    run_together(
        [
            partial(
                flip, moderate.application.test_client(), "approve" if n % 2 else "undo_approve"
            )
            for n in range(20)
        ]
    )
    final = state(sessions, request_id)
    assert final["points"] == final["ledger"]
    assert final["points"] == (50 if final["status"] == "approved" else 0)
    assert (final["material_url"] is not None) == (final["status"] == "approved")
    # Calls that collided on a name leave its deletion to the sweep; every
    # object beside the live one must be known to it.
    with sessions.begin() as session:
        intents = set(session.scalars(select(ObjectIntent.name)).all())
    extra = set(objects_of(bucket, request_id)) - {final["file_url"]}
    assert extra <= intents
    _sweep_now()
    assert objects_of(bucket, request_id) == [final["file_url"]]


def _sweep_now() -> None:
    """The scheduled sweep, run now, with every intent counted as abandoned."""
    from datetime import timedelta

    from shared.config import load_settings
    from shared.storage import Bucket
    from shared.sweep import sweep_objects

    settings = load_settings()
    sweep_objects(settings, Bucket(settings), older_than=timedelta(0))


def test_a_name_clash_in_the_course_gets_a_suffix(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
) -> None:
    _, student = user_token()
    first = upload(submit, student, refs, course_id, filename="exam.pdf")
    second = upload(submit, student, refs, course_id, filename="exam.pdf")
    act(moderate, admin, "approve", first, second)
    first_url = state(sessions, first)["material_url"]
    second_url = state(sessions, second)["material_url"]
    assert first_url.endswith("/exam.pdf")
    assert second_url == first_url[: -len("exam.pdf")] + "exam (2).pdf"


def test_total_files_follows_approvals_for_every_user_in_the_course(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
) -> None:
    _, student = user_token()
    with sessions.begin() as session:
        reader = make_user(session)
        session.add(UserCourseActivity(user_id=reader.id, course_id=course_id))
    ids = [upload(submit, student, refs, course_id, filename=f"f{n}.pdf") for n in range(2)]

    def total_files() -> int:
        with sessions.begin() as session:
            activity = session.get(UserCourseActivity, (reader.id, course_id))
            assert activity is not None
            return activity.total_files

    act(moderate, admin, "approve", *ids)
    assert total_files() == 2
    act(moderate, admin, "undo_approve", ids[0])
    assert total_files() == 1


def test_a_failed_copy_changes_nothing(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
    proxy: FaultProxy,
    bucket: Any,
) -> None:
    _, student = user_token()
    request_id = upload(submit, student, refs, course_id)
    before = state(sessions, request_id)
    proxy.fail("POST", r"/copyTo/")
    try:
        result = act(moderate, admin, "approve", request_id).json["results"][0]
    finally:
        proxy.clear()
    assert (result["ok"], result["error"]) == (False, "internal_error")
    assert state(sessions, request_id) == before
    assert objects_of(bucket, request_id) == [before["file_url"]]
    # The next action succeeds from the unchanged state.
    assert act(moderate, admin, "approve", request_id).json["results"][0]["ok"] is True


def test_a_failed_delete_after_commit_is_left_to_the_sweep(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
    proxy: FaultProxy,
    bucket: Any,
) -> None:
    _, student = user_token()
    request_id = upload(submit, student, refs, course_id)
    pending = state(sessions, request_id)["file_url"]
    proxy.fail("DELETE", r"/o/pending%2F")
    try:
        result = act(moderate, admin, "approve", request_id).json["results"][0]
    finally:
        proxy.clear()
    assert result["ok"] is True
    approved = state(sessions, request_id)
    assert approved["status"] == "approved"
    assert approved["points"] == 50
    # The stale pending copy is left behind, referred to by nothing but its intent.
    assert objects_of(bucket, request_id) == sorted([pending, approved["file_url"]])
    with sessions.begin() as session:
        assert pending in session.scalars(select(ObjectIntent.name)).all()
    # The cycle goes on meanwhile, and the sweep removes the leftover.
    assert act(moderate, admin, "undo_approve", request_id).json["results"][0]["ok"] is True
    assert act(moderate, admin, "approve", request_id).json["results"][0]["ok"] is True
    assert state(sessions, request_id)["points"] == 50
    _sweep_now()
    assert objects_of(bucket, request_id) == [approved["file_url"]]


def test_listing_requests_and_audit(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
) -> None:
    student_id, student = user_token(name="Listed Student")
    ids = [upload(submit, student, refs, course_id, filename=f"l{n}.pdf") for n in range(3)]
    pages: list[str] = []
    cursor = None
    while True:
        query = {
            "course_id": str(course_id),
            "limit": "2",
            **({"cursor": cursor} if cursor else {}),
        }
        body = moderate.get("/requests", query_string=query, headers=admin).json
        pages += [r["id"] for r in body["requests"]]
        assert all(r["uploader"]["id"] == str(student_id) for r in body["requests"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == ids
    act(moderate, admin, "approve", ids[0])
    approved = moderate.get(
        "/requests", query_string={"status": "approved", "course_id": str(course_id)}, headers=admin
    ).json["requests"]
    assert [r["id"] for r in approved] == [ids[0]]
    assert approved[0]["ingest_status"] == "queued"
    entries = moderate.get("/audit", query_string={"limit": "1"}, headers=admin).json["entries"]
    assert entries[0]["action"] == "approve"
    assert entries[0]["target_ids"] == [ids[0]]
    older = moderate.get(
        "/audit", query_string={"before": entries[0]["timestamp"]}, headers=admin
    ).json["entries"]
    assert all(entry["timestamp"] < entries[0]["timestamp"] for entry in older)


def test_undo_reject_of_a_file_resubmitted_meanwhile_is_a_per_item_duplicate(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    _, student = user_token()
    pdf = make_pdf(["resubmitted"])

    def send() -> str:
        response = submit.post(
            "/",
            data={
                "course_id": str(course_id),
                "type_id": str(refs["type_id"]),
                "lecturer_id": str(refs["lecturer_id"]),
                "title": "Again",
                "academic_year": "1",
                "material_year": "2025",
                "file": (io.BytesIO(pdf), "again.pdf", "application/pdf"),
            },
            headers=student,
        )
        assert response.status_code == 201, response.json
        return str(response.json["request"]["id"])

    first = send()
    act(moderate, admin, "reject", first, reason="wrong course")
    second = send()
    result = act(moderate, admin, "undo_reject", first).json["results"][0]
    assert (result["ok"], result["error"], result["status"]) == (
        False,
        "duplicate_file",
        "rejected",
    )
    assert second in result["message"]
    assert state(sessions, first)["status"] == "rejected"
    assert objects_of(bucket, first) == [f"rejected/{first}/again.pdf"]


def test_undo_reject_racing_a_resubmit_loses_with_duplicate_file_never_conflict(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
) -> None:
    """Run at the same moment, five times: exactly one of the two goes live, and
    the other gets the documented duplicate_file (409 or per item)."""
    for round_number in range(5):
        _, student = user_token()
        pdf = make_pdf([f"raced resubmission {round_number}"])

        def send(pdf: bytes = pdf, student: dict[str, str] = student) -> Any:
            return submit.post(
                "/",
                data={
                    "course_id": str(course_id),
                    "type_id": str(refs["type_id"]),
                    "lecturer_id": str(refs["lecturer_id"]),
                    "title": "Raced",
                    "academic_year": "1",
                    "material_year": "2025",
                    "file": (io.BytesIO(pdf), "raced.pdf", "application/pdf"),
                },
                headers=student,
            )

        first = str(send().json["request"]["id"])
        act(moderate, admin, "reject", first, reason="try again")
        resubmitted, undone = run_together(
            [send, lambda first=first: act(moderate, admin, "undo_reject", first)]
        )
        item = undone.json["results"][0]
        if item["ok"]:
            assert resubmitted.status_code == 409
            assert resubmitted.json["error"]["code"] == "duplicate_file"
        else:
            assert resubmitted.status_code == 201
            assert item["error"] == "duplicate_file"
            assert state(sessions, first)["status"] == "rejected"


def test_an_admin_can_download_a_pending_file_before_judging_it(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
) -> None:
    import urllib.request

    _, student = user_token()
    request_id = upload(submit, student, refs, course_id, filename="to judge.pdf")
    body = moderate.get(f"/requests/{request_id}", headers=admin).json["request"]
    assert body["status"] == "pending"
    with urllib.request.urlopen(body["download_url"], timeout=10) as response:
        assert response.read().startswith(b"%PDF-")
    from datetime import UTC, datetime, timedelta

    expires_at = datetime.fromisoformat(body["download_url_expires_at"].replace("Z", "+00:00"))
    assert expires_at - datetime.now(UTC) > timedelta(minutes=59)
    assert body["uploader"]["id"]
    assert moderate.get(f"/requests/{request_id}", headers=student).status_code == 403
    assert moderate.get(f"/requests/{uuid.uuid4()}", headers=admin).status_code == 404


def _committed_without_cleanup(
    sessions: sessionmaker[Session], request_id: str, action: str
) -> tuple[uuid.UUID, str, int | None]:
    """Steps 1-3 of a transition, then a "crash": the old object's deletion never ran."""
    from shared.config import load_settings
    from shared.moderation import commit, plan
    from shared.storage import Bucket

    settings = load_settings()
    with sessions.begin() as session:
        planned = plan(session, request_id=uuid.UUID(request_id), action=action)
    assert planned.moves
    generation, old_generation = Bucket(settings).copy(planned.old_object, planned.new_object)
    with sessions.begin() as session:
        outcome = commit(
            session,
            settings,
            planned,
            generation=generation,
            old_generation=old_generation,
            reason="for the test",
        )
    assert outcome.stale is not None
    return outcome.stale


def test_a_late_cleanup_never_deletes_a_file_moved_back_meanwhile(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    """Admin A rejects; before A's delete of the pending copy runs, admin B undoes
    (which writes the pending object again). A's late delete must leave it."""
    from shared.config import load_settings
    from shared.moderation import delete_unreferenced

    _, student = user_token()
    request_id = upload(submit, student, refs, course_id, filename="raced.pdf")
    intent_id, name, generation = _committed_without_cleanup(sessions, request_id, "reject")
    assert act(moderate, admin, "undo_reject", request_id).json["results"][0]["ok"] is True
    delete_unreferenced(load_settings(), intent_id, name, generation)
    pending = f"pending/{request_id}/raced.pdf"
    assert objects_of(bucket, request_id) == [pending]
    assert state(sessions, request_id)["file_url"] == pending
    assert act(moderate, admin, "approve", request_id).json["results"][0]["ok"] is True
    with sessions.begin() as session:
        left = session.scalars(
            select(ObjectIntent.name).where(ObjectIntent.request_id == uuid.UUID(request_id))
        ).all()
    assert left == []


def test_a_name_left_behind_is_not_reused_until_it_is_deleted(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    """An undo whose cleanup has not run yet keeps the course name taken, so
    another approval cannot be written onto it and then deleted by the late cleanup."""
    from shared.config import load_settings
    from shared.moderation import delete_unreferenced

    _, student = user_token()
    first = upload(submit, student, refs, course_id, filename="shared name.pdf")
    second = upload(submit, student, refs, course_id, filename="shared name.pdf")
    act(moderate, admin, "approve", first)
    course_name = state(sessions, first)["file_url"]
    intent_id, name, generation = _committed_without_cleanup(sessions, first, "take_down")
    assert name == course_name
    act(moderate, admin, "approve", second)
    second_name = state(sessions, second)["file_url"]
    assert second_name == course_name.replace("shared name.pdf", "shared name (2).pdf")
    delete_unreferenced(load_settings(), intent_id, name, generation)
    assert objects_of(bucket, second) == [second_name]
    assert objects_of(bucket, first) == [f"rejected/{first}/shared name.pdf"]
    # Once deleted, the name is free again.
    act(moderate, admin, "undo_reject", first)
    act(moderate, admin, "approve", first)
    assert state(sessions, first)["file_url"] == course_name


def test_a_vanished_object_is_object_missing_and_take_down_unpublishes_it(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    _, student = user_token()
    request_id = upload(submit, student, refs, course_id, filename="vanishing.pdf")
    assert act(moderate, admin, "approve", request_id).json["results"][0]["ok"] is True
    published = state(sessions, request_id)
    bucket.blob(published["file_url"]).delete()  # deleted by hand, or lost

    undo = act(moderate, admin, "undo_approve", request_id).json["results"][0]
    assert (undo["ok"], undo["error"], undo["status"]) == (False, "object_missing", "approved")
    assert "take_down" in undo["message"]
    assert state(sessions, request_id) == published  # the row as it was

    assert act(moderate, admin, "take_down", request_id).status_code == 422  # reason required
    down = act(moderate, admin, "take_down", request_id, reason="file lost").json["results"][0]
    assert (down["ok"], down["status"]) == (True, "rejected")
    after = state(sessions, request_id)
    assert after["status"] == "rejected"
    assert after["material_url"] is None
    assert after["points"] == after["ledger"] == 0  # the upload XP was taken back
    assert objects_of(bucket, request_id) == []
    # Nothing to bring back: undo_reject says so and leaves the row.
    back = act(moderate, admin, "undo_reject", request_id).json["results"][0]
    assert (back["ok"], back["error"], back["status"]) == (False, "object_missing", "rejected")


def test_take_down_of_a_present_file_keeps_it_under_rejected(
    moderate: Any,
    submit: Any,
    user_token: Callable[..., Any],
    admin: dict[str, str],
    refs: dict[str, Any],
    course_id: uuid.UUID,
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    _, student = user_token()
    request_id = upload(submit, student, refs, course_id, filename="complaint.pdf")
    act(moderate, admin, "approve", request_id)
    down = act(moderate, admin, "take_down", request_id, reason="copyright").json["results"][0]
    assert down["ok"] is True
    assert objects_of(bucket, request_id) == [f"rejected/{request_id}/complaint.pdf"]
    assert state(sessions, request_id)["admin_note"] == "copyright"
    assert act(moderate, admin, "undo_reject", request_id).json["results"][0]["ok"] is True
