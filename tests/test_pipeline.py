"""ingest: bucket notifications become one chunk set per material, whatever the delivery."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import Material, MaterialChunk
from shared.pipeline import ERROR_MESSAGES
from shared.storage import META_REQUEST_ID
from tests.events import deliver, pubsub_event, resource_of, storage_event
from tests.factories import make_course, make_lecturer, make_material, make_material_type
from tests.faults import FaultProxy
from tests.parallel import run_together
from tests.pdfs import make_encrypted_pdf, make_pdf

MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def storage_host(proxy: FaultProxy) -> str:
    """Storage through the fault proxy, so tests can make it fail mid-way."""
    return proxy.url


@pytest.fixture(scope="module")
def function_env(function_env: dict[str, str]) -> dict[str, str]:
    return {**function_env, "INGEST_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}


@pytest.fixture(scope="module")
def apps(function_client: Callable[[str], Any]) -> dict[str, Any]:
    return {name: function_client(name) for name in ("ingest", "submit", "moderate", "catalog")}


@pytest.fixture(scope="module")
def refs(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions.begin() as session:
        return {
            "course_id": make_course(session, name="Cell Biology").id,
            "type_id": make_material_type(session).id,
            "lecturer_id": make_lecturer(session).id,
        }


def approved_material(
    apps: dict[str, Any],
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    refs: dict[str, Any],
    pages: list[str],
    title: str = "Cells",
) -> tuple[str, str]:
    """Submit and approve a PDF through the real functions; (material id, object name)."""
    _, student = user_token()
    _, admin = user_token(role="ADMIN")
    response = apps["submit"].post(
        "/",
        data={
            "course_id": str(refs["course_id"]),
            "type_id": str(refs["type_id"]),
            "lecturer_id": str(refs["lecturer_id"]),
            "title": title,
            "academic_year": "1",
            "material_year": "2025",
            "file": (io.BytesIO(make_pdf(pages)), f"{title}.pdf", "application/pdf"),
        },
        headers=student,
    )
    assert response.status_code == 201, response.json
    material_id = response.json["request"]["id"]
    result = (
        apps["moderate"]
        .post("/actions", json={"action": "approve", "request_ids": [material_id]}, headers=admin)
        .json["results"][0]
    )
    assert result["ok"], result
    return material_id, material_state(sessions, material_id)["file_url"]


def material_state(sessions: sessionmaker[Session], material_id: str) -> dict[str, Any]:
    with sessions.begin() as session:
        material = session.get(Material, uuid.UUID(material_id))
        assert material is not None
        return {column.key: getattr(material, column.key) for column in Material.__table__.columns}


def chunks_of(sessions: sessionmaker[Session], material_id: str) -> list[MaterialChunk]:
    with sessions.begin() as session:
        return list(
            session.scalars(
                select(MaterialChunk)
                .where(MaterialChunk.material_id == uuid.UUID(material_id))
                .order_by(MaterialChunk.chunk_index)
            )
        )


def test_an_approval_event_gives_chunks_with_their_page_numbers(
    apps: dict[str, Any],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    pages = [
        "Photosynthesis turns light into chemical energy inside the chloroplast.",
        "Mitochondria run cellular respiration and make ATP for the cell.",
        "Ribosomes translate messenger RNA into proteins.",
    ]
    material_id, name = approved_material(apps, user_token, sessions, refs, pages)
    assert deliver(apps, pubsub_event(resource_of(bucket, name))) == 200
    chunks = chunks_of(sessions, material_id)
    assert [(c.chunk_index, c.page_number) for c in chunks] == [(0, 1), (1, 2), (2, 3)]
    assert "chloroplast" in chunks[0].content
    assert "Mitochondria" in chunks[1].content
    assert "Ribosomes" in chunks[2].content
    assert all(len(c.embedding) == 1536 for c in chunks)
    assert all(c.embedding_model.startswith("local") for c in chunks)
    state = material_state(sessions, material_id)
    assert (state["ingest_status"], state["chunk_count"], state["ingest_error"]) == (
        "ready",
        3,
        None,
    )
    assert state["ingest_finished_at"] is not None
    _, headers = user_token()
    listed = (
        apps["catalog"]
        .get("/materials", query_string={"course_id": str(refs["course_id"])}, headers=headers)
        .json["materials"]
    )
    mine = next(m for m in listed if m["id"] == material_id)
    assert (mine["ingest_status"], mine["chunk_count"]) == ("ready", 3)
    assert mine["ingest_started_at"] <= mine["ingest_finished_at"]
    _, admin = user_token(role="ADMIN")
    moderated = apps["moderate"].get(f"/requests/{material_id}", headers=admin).json["request"]
    assert (moderated["ingest_status"], moderated["chunk_count"]) == ("ready", 3)
    assert moderated["ingest_finished_at"] == mine["ingest_finished_at"]


def test_three_deliveries_and_both_wirings_leave_one_chunk_set(
    apps: dict[str, Any],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    material_id, name = approved_material(
        apps, user_token, sessions, refs, ["Osmosis moves water.", "Diffusion moves solutes."]
    )
    resource = resource_of(bucket, name)
    assert deliver(apps, pubsub_event(resource)) == 200
    first = [c.id for c in chunks_of(sessions, material_id)]
    assert deliver(apps, pubsub_event(resource), binary=False) == 200
    assert deliver(apps, storage_event(resource), binary=False) == 200
    assert [c.id for c in chunks_of(sessions, material_id)] == first
    assert len(first) == 2


def test_objects_that_are_not_published_materials_are_skipped(
    apps: dict[str, Any],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    _, student = user_token()
    response = apps["submit"].post(
        "/",
        data={
            "course_id": str(refs["course_id"]),
            "type_id": str(refs["type_id"]),
            "lecturer_id": str(refs["lecturer_id"]),
            "title": "Pending",
            "academic_year": "1",
            "material_year": "2025",
            "file": (io.BytesIO(make_pdf(["still pending"])), "p.pdf", "application/pdf"),
        },
        headers=student,
    )
    request_id = response.json["request"]["id"]
    pending = resource_of(bucket, f"pending/{request_id}/p.pdf")
    assert deliver(apps, pubsub_event(pending)) == 200
    assert chunks_of(sessions, request_id) == []
    stranger = {**pending, "metadata": {}}
    assert deliver(apps, pubsub_event(stranger)) == 200
    assert deliver(apps, pubsub_event(pending, event_type="OBJECT_DELETE")) == 200


def _place(
    bucket: Any, sessions: sessionmaker[Session], refs: dict[str, Any], data: bytes
) -> tuple[str, str]:
    """A published material whose object holds ``data`` (bytes submit would refuse)."""
    with sessions.begin() as session:
        from shared.db.models import Course

        course = session.get(Course, refs["course_id"])
        material = make_material(session, course=course)
        material_id, name = str(material.id), material.file_url
    blob = bucket.blob(name)
    blob.metadata = {META_REQUEST_ID: material_id}
    blob.upload_from_string(data, content_type="application/pdf")
    return material_id, name


@pytest.mark.parametrize(
    ("kind", "status", "reason", "code"),
    [
        ("encrypted", "failed", "encrypted", "pdf_encrypted"),
        ("blank", "no_text", "no extractable text", "no_text"),
        ("corrupt", "failed", "damaged", "pdf_damaged"),
    ],
)
def test_permanent_problems_are_recorded_and_acknowledged(
    apps: dict[str, Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    kind: str,
    status: str,
    reason: str,
    code: str,
) -> None:
    data = {
        "encrypted": make_encrypted_pdf(),
        "blank": make_pdf([""] * 2),
        "corrupt": b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\ntrailer<<>>",
    }[kind]
    material_id, name = _place(bucket, sessions, refs, data)
    assert deliver(apps, pubsub_event(resource_of(bucket, name))) == 200
    state = material_state(sessions, material_id)
    assert state["ingest_status"] == status
    assert reason in state["ingest_error"]
    assert state["ingest_error_code"] == code
    # A fixed sentence per code: pypdf's own message (in the log) never reaches users.
    assert state["ingest_error"] == ERROR_MESSAGES[code]
    assert chunks_of(sessions, material_id) == []


def test_a_poison_message_stops_after_the_configured_attempts(
    apps: dict[str, Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    proxy: FaultProxy,
) -> None:
    material_id, name = _place(bucket, sessions, refs, make_pdf(["never readable"]))
    event = pubsub_event(resource_of(bucket, name))
    proxy.fail("GET", r"/download/storage/v1/b/lectern-test/o/", times=100)
    try:
        statuses = [deliver(apps, event) for _ in range(MAX_ATTEMPTS + 2)]
    finally:
        proxy.clear()
    # The failure that reaches the budget ends the material and is acknowledged.
    assert statuses == [500] * (MAX_ATTEMPTS - 1) + [200, 200, 200]
    state = material_state(sessions, material_id)
    assert (state["ingest_status"], state["ingest_attempts"]) == ("failed", MAX_ATTEMPTS)
    assert state["ingest_error_code"] == "storage_unavailable"
    assert state["ingest_error"] == (
        f"The file storage was unavailable. Processing gave up after {MAX_ATTEMPTS} attempts."
    )


def test_a_newer_generation_wins_and_a_late_older_event_does_nothing(
    apps: dict[str, Any],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    material_id, name = approved_material(
        apps, user_token, sessions, refs, ["Old words about lipids."]
    )
    old = resource_of(bucket, name)
    blob = bucket.blob(name)
    blob.metadata = old["metadata"]
    blob.upload_from_string(make_pdf(["New words about enzymes."]), content_type="application/pdf")
    new = resource_of(bucket, name)
    assert int(new["generation"]) > int(old["generation"])
    assert deliver(apps, pubsub_event(new)) == 200
    assert deliver(apps, pubsub_event(old)) == 200
    chunks = chunks_of(sessions, material_id)
    assert len(chunks) == 1
    assert "enzymes" in chunks[0].content
    assert material_state(sessions, material_id)["ingest_generation"] == int(new["generation"])


def test_undoing_an_approval_hides_the_chunks_and_approving_again_needs_no_ingestion(
    apps: dict[str, Any],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    material_id, name = approved_material(
        apps, user_token, sessions, refs, ["Meiosis halves chromosomes."]
    )
    resource = resource_of(bucket, name)
    assert deliver(apps, pubsub_event(resource)) == 200
    before = [chunk.id for chunk in chunks_of(sessions, material_id)]
    assert len(before) == 1
    _, admin = user_token(role="ADMIN")
    _, student = user_token()

    def act(action: str) -> None:
        body = {"action": action, "request_ids": [material_id]}
        result = apps["moderate"].post("/actions", json=body, headers=admin).json["results"][0]
        assert result["ok"] is True, result

    act("undo_approve")
    # Hidden, not deleted: the chunks stay, and a late event changes nothing.
    assert [chunk.id for chunk in chunks_of(sessions, material_id)] == before
    assert apps["catalog"].get(f"/materials/{material_id}", headers=student).status_code == 404
    assert deliver(apps, pubsub_event(resource)) == 200
    assert [chunk.id for chunk in chunks_of(sessions, material_id)] == before
    act("approve")
    # The same object generation: the same chunks, still ready, nothing to re-ingest.
    assert resource_of(bucket, name)["generation"] == resource["generation"]
    assert [chunk.id for chunk in chunks_of(sessions, material_id)] == before
    shown = apps["catalog"].get(f"/materials/{material_id}", headers=student).json["material"]
    assert (shown["ingest_status"], shown["chunk_count"]) == ("ready", 1)


def test_parallel_duplicate_deliveries_leave_one_chunk_set(
    apps: dict[str, Any],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    pages = [f"Page {n} about lysosomes and vesicles." for n in range(1, 6)]
    material_id, name = approved_material(apps, user_token, sessions, refs, pages)
    event = pubsub_event(resource_of(bucket, name))
    clients = [{"ingest": apps["ingest"].application.test_client()} for _ in range(4)]
    statuses = run_together([partial(deliver, own, event) for own in clients])
    assert statuses == [200] * 4
    chunks = chunks_of(sessions, material_id)
    assert [c.page_number for c in chunks] == [1, 2, 3, 4, 5]
    assert [c.chunk_index for c in chunks] == [0, 1, 2, 3, 4]
    state = material_state(sessions, material_id)
    assert (state["ingest_status"], state["chunk_count"]) == ("ready", 5)
    # Duplicates are not failures: they spend none of the attempts budget.
    assert state["ingest_attempts"] == 0


def test_an_object_gone_before_it_is_read_ends_failed_not_processing(
    apps: dict[str, Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    proxy: FaultProxy,
) -> None:
    material_id, name = _place(bucket, sessions, refs, make_pdf(["soon gone"]))
    proxy.fail("GET", r"/download/storage/v1/b/lectern-test/o/", status=404)
    try:
        assert deliver(apps, pubsub_event(resource_of(bucket, name))) == 200
    finally:
        proxy.clear()
    state = material_state(sessions, material_id)
    assert (state["ingest_status"], state["ingest_error_code"]) == ("failed", "object_missing")
    assert "no longer exists" in state["ingest_error"]


def test_the_chunk_set_is_written_in_one_insert_statement(
    apps: dict[str, Any],
    user_token: Callable[..., Any],
    refs: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> None:
    from sqlalchemy import event

    from shared.config import load_settings
    from shared.db.engine import get_engine

    pages = [f"Page {n}: the Golgi apparatus packages proteins." for n in range(1, 8)]
    material_id, name = approved_material(apps, user_token, sessions, refs, pages)
    inserts: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO MATERIAL_CHUNKS"):
            inserts.append(statement)

    engine = get_engine(load_settings())
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert deliver(apps, pubsub_event(resource_of(bucket, name))) == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(chunks_of(sessions, material_id)) == 7
    assert len(inserts) == 1
