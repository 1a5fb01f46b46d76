"""Undo without loss: an undone approval hides the material, keeps students' work,
and a second approval brings it back unchanged.

Through the real submit, moderate, heartbeat, profile, catalog, search and ingest apps.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from shared import clock
from shared.db.models import FileRequest, Material, PointsTransaction, User
from tests.clocks import FakeClock
from tests.events import deliver, resource_of, storage_event
from tests.factories import make_course, make_lecturer, make_material_type
from tests.parallel import run_together
from tests.pdfs import make_pdf

APPS = ("submit", "moderate", "heartbeat", "profile", "catalog", "search", "ingest")


@pytest.fixture(scope="module")
def apps(function_client: Callable[[str], Any]) -> dict[str, Any]:
    return {name: function_client(name) for name in APPS}


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    previous = clock.use(fake)
    yield fake
    clock.use(previous)


@pytest.fixture(scope="module")
def refs(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions.begin() as session:
        return {
            "course_id": str(make_course(session, name="Genetics").id),
            "type_id": str(make_material_type(session).id),
            "lecturer_id": str(make_lecturer(session, name="Dr. Mendel").id),
        }


def _published(
    apps: dict[str, Any], refs: dict[str, str], user_token: Callable[..., Any]
) -> tuple[str, dict[str, str]]:
    _, uploader = user_token()
    _, admin = user_token(role="ADMIN")
    response = apps["submit"].post(
        "/",
        data={
            **refs,
            "title": "Mendelian inheritance",
            "academic_year": "1",
            "material_year": "2025",
            "file": (
                io.BytesIO(make_pdf([f"Dominant and recessive alleles {uuid.uuid4()}"])),
                "mendel.pdf",
                "application/pdf",
            ),
        },
        headers=uploader,
    )
    assert response.status_code == 201, response.json
    material_id = str(response.json["request"]["id"])
    _act(apps, admin, "approve", material_id)
    return material_id, admin


def _act(apps: dict[str, Any], admin: dict[str, str], action: str, material_id: str) -> None:
    body = {"action": action, "request_ids": [material_id]}
    result = apps["moderate"].post("/actions", json=body, headers=admin).json["results"][0]
    assert result["ok"] is True, result


def test_notes_progress_recent_files_and_xp_survive_approve_undo_approve(
    apps: dict[str, Any],
    refs: dict[str, str],
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
    bucket: Any,
) -> None:
    material_id, admin = _published(apps, refs, user_token)
    reader_id, reader = user_token()
    # Ingested, as the bucket's notification would have it, so search finds it first.
    with sessions.begin() as session:
        material = session.get(Material, uuid.UUID(material_id))
        assert material is not None
        object_name = material.file_url
    assert deliver(apps, storage_event(resource_of(bucket, object_name))) == 200
    found = apps["search"].post("/", json={"query": "dominant recessive alleles"}, headers=reader)
    assert material_id in {r["material_id"] for r in found.json["results"]}
    notes = {"notes": [{"id": "n1", "text": "alleles come in pairs", "page": 1}]}
    assert (
        apps["profile"].put(f"/me/notes/{material_id}", json=notes, headers=reader).status_code
        == 200
    )
    opened = apps["heartbeat"].post("/sessions", json={"file_id": material_id}, headers=reader)
    assert opened.status_code == 201
    session_id = opened.json["session"]["id"]
    while True:  # read the whole file: completion XP
        fake_clock.advance(30)
        beat = apps["heartbeat"].post(
            f"/sessions/{session_id}/beat", json={"active_seconds": 30}, headers=reader
        )
        assert beat.status_code == 200
        if beat.json["session"]["is_complete"]:
            break
    points = apps["profile"].get("/me", headers=reader).json["user"]["total_points"]
    assert points > 0

    _act(apps, admin, "undo_approve", material_id)
    # Hidden from students everywhere, as if it did not exist: 404s.
    assert apps["catalog"].get(f"/materials/{material_id}", headers=reader).status_code == 404
    listed = apps["catalog"].get(
        "/materials", query_string={"course_id": refs["course_id"]}, headers=reader
    )
    assert material_id not in {m["id"] for m in listed.json["materials"]}
    assert (
        apps["heartbeat"]
        .post("/sessions", json={"file_id": material_id}, headers=reader)
        .status_code
        == 404
    )
    assert (
        apps["heartbeat"]
        .post(f"/sessions/{session_id}/beat", json={"active_seconds": 5}, headers=reader)
        .status_code
        == 404
    )
    assert (
        apps["profile"]
        .put(f"/me/notes/{material_id}", json={"notes": []}, headers=reader)
        .status_code
        == 404
    )
    assert apps["profile"].get(f"/me/notes/{material_id}", headers=reader).status_code == 404
    recent = apps["heartbeat"].get("/recent", headers=reader).json["files"]
    assert material_id not in {f["file_id"] for f in recent}
    found = apps["search"].post("/", json={"query": "dominant recessive alleles"}, headers=reader)
    assert material_id not in {r["material_id"] for r in found.json["results"]}
    # Reading XP already earned stays.
    assert apps["profile"].get("/me", headers=reader).json["user"]["total_points"] == points

    _act(apps, admin, "approve", material_id)
    # Everything is back, unchanged.
    assert (
        apps["profile"].get(f"/me/notes/{material_id}", headers=reader).json["notes"]
        == notes["notes"]
    )
    recent = apps["heartbeat"].get("/recent", headers=reader).json["files"]
    assert material_id in {f["file_id"] for f in recent}
    beat = apps["heartbeat"].post(
        f"/sessions/{session_id}/beat", json={"active_seconds": 5}, headers=reader
    )
    assert beat.status_code == 200
    assert beat.json["session"]["is_complete"] is True
    assert beat.json["course"]["files_completed"] >= 1
    with sessions.begin() as session:
        reader_row = session.get(User, reader_id)
        assert reader_row is not None
        assert reader_row.total_points == points  # file XP once ever
        ledger = session.scalars(
            select(PointsTransaction.action).where(
                PointsTransaction.request_id == uuid.UUID(material_id)
            )
        ).all()
    assert sorted(ledger) == ["upload_approval", "upload_approval", "upload_approval_revoked"]


def test_readers_racing_an_undo_get_404s_never_500s(
    apps: dict[str, Any],
    refs: dict[str, str],
    user_token: Callable[..., Any],
) -> None:
    for _ in range(3):
        material_id, admin = _published(apps, refs, user_token)
        readers = [user_token()[1] for _ in range(6)]

        def read(headers: dict[str, str], material_id: str = material_id) -> list[int]:
            own = {
                name: apps[name].application.test_client()
                for name in ("heartbeat", "profile", "catalog")
            }
            return [
                own["heartbeat"]
                .post("/sessions", json={"file_id": material_id}, headers=headers)
                .status_code,
                own["profile"]
                .put(f"/me/notes/{material_id}", json={"notes": []}, headers=headers)
                .status_code,
                own["catalog"].get(f"/materials/{material_id}", headers=headers).status_code,
            ]

        def undo(material_id: str = material_id, admin: dict[str, str] = admin) -> list[int]:
            client = apps["moderate"].application.test_client()
            body = {"action": "undo_approve", "request_ids": [material_id]}
            return [client.post("/actions", json=body, headers=admin).status_code]

        statuses = run_together([undo, *[lambda h=h: read(h) for h in readers]])
        every = [status for group in statuses for status in group]
        assert all(status in (200, 201, 404) for status in every), every


def test_a_failed_audit_write_fails_the_call_and_changes_nothing(
    apps: dict[str, Any],
    refs: dict[str, str],
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    engine: Any,
) -> None:
    """The audit row is written in the transaction of the change it records."""
    material_id, admin = _published(apps, refs, user_token)
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'audit refused'; END $$"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_logs "
                "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
            )
        )
    try:
        body = {"action": "undo_approve", "request_ids": [material_id]}
        response = apps["moderate"].post("/actions", json=body, headers=admin)
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER refuse_audit ON audit_logs"))
            connection.execute(text("DROP FUNCTION refuse_audit()"))
    assert response.status_code == 500
    with sessions.begin() as session:
        request = session.get(FileRequest, uuid.UUID(material_id))
        material = session.get(Material, uuid.UUID(material_id))
        assert request is not None
        assert material is not None
        assert (request.status, material.is_published) == ("approved", True)
        revoked = session.scalars(
            select(PointsTransaction.id).where(
                PointsTransaction.request_id == uuid.UUID(material_id),
                PointsTransaction.action == "upload_approval_revoked",
            )
        ).all()
        assert revoked == []
