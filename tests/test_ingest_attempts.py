"""ingest: attempts are counted per failure, not per delivery, and errors shown
to users are a code and a fixed sentence, never exception text.

Storage goes through the fault proxy and embeddings through the Gemini API
stub with the real google-genai client, so failures are real HTTP errors met
where production would meet them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import Course, Material, MaterialChunk, User
from shared.pipeline import ERROR_MESSAGES, LEASE
from shared.storage import META_REQUEST_ID
from tests.events import deliver, pubsub_event, resource_of, storage_event
from tests.factories import make_course, make_material
from tests.faults import FaultProxy
from tests.gemini_stub import GeminiStub
from tests.parallel import run_together
from tests.pdfs import make_pdf

MAX_ATTEMPTS = 3
API_KEY = "test-key"
# What an upstream error or a database error can carry: a key, SQL and its parameters.
SECRET = "AIzaSyD-leaked-key-0123456789 SELECT password FROM users WHERE email = 'a@b.c'"


@pytest.fixture(scope="module")
def stub() -> Iterator[GeminiStub]:
    with GeminiStub(api_key=API_KEY) as stub:
        yield stub


@pytest.fixture(autouse=True)
def _fresh_stub(stub: GeminiStub, proxy: FaultProxy) -> Iterator[None]:
    stub.reset()
    yield
    stub.reset()
    proxy.clear()


@pytest.fixture(scope="module")
def storage_host(proxy: FaultProxy) -> str:
    return proxy.url


@pytest.fixture(scope="module")
def function_env(function_env: dict[str, str], stub: GeminiStub) -> dict[str, str]:
    return {
        **function_env,
        "INGEST_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "EMBEDDINGS_PROVIDER": "gemini",
        "GEMINI_API_KEY": API_KEY,
        "GEMINI_BASE_URL": stub.url,
    }


@pytest.fixture(scope="module")
def apps(function_client: Callable[[str], Any]) -> dict[str, Any]:
    return {name: function_client(name) for name in ("ingest", "catalog", "submit")}


@pytest.fixture(scope="module")
def course_id(sessions: sessionmaker[Session]) -> uuid.UUID:
    with sessions.begin() as session:
        return make_course(session, name="Optics").id


def place(
    bucket: Any,
    sessions: sessionmaker[Session],
    course_id: uuid.UUID,
    pages: list[str],
    uploader_id: uuid.UUID | None = None,
) -> tuple[str, dict[str, Any]]:
    """A queued material whose object holds a PDF of ``pages``; (id, object resource)."""
    with sessions.begin() as session:
        uploader = session.get(User, uploader_id) if uploader_id else None
        material = make_material(session, course=session.get(Course, course_id), uploader=uploader)
        material_id, name = str(material.id), material.file_url
    blob = bucket.blob(name)
    blob.metadata = {META_REQUEST_ID: material_id}
    blob.upload_from_string(make_pdf(pages), content_type="application/pdf")
    return material_id, resource_of(bucket, name)


def state(sessions: sessionmaker[Session], material_id: str) -> dict[str, Any]:
    with sessions.begin() as session:
        material = session.get(Material, uuid.UUID(material_id))
        assert material is not None
        row = {column.key: getattr(material, column.key) for column in Material.__table__.columns}
        row["chunks"] = session.query(MaterialChunk).filter_by(material_id=material.id).count()
        return row


def set_claim(
    sessions: sessionmaker[Session], material_id: str, generation: int, **fields: Any
) -> None:
    """Put the material in the state a claim by another delivery left it in."""
    with sessions.begin() as session:
        session.execute(
            update(Material)
            .where(Material.id == uuid.UUID(material_id))
            .values(ingest_generation=generation, **fields)
        )


def test_duplicate_deliveries_of_a_healthy_material_spend_no_attempts(
    apps: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    course_id: uuid.UUID,
    stub: GeminiStub,
) -> None:
    material_id, resource = place(bucket, sessions, course_id, ["Light bends in a prism."])
    events = [pubsub_event(resource), storage_event(resource)] * 4
    clients = [{"ingest": apps["ingest"].application.test_client()} for _ in events]
    statuses = run_together(
        [
            partial(deliver, client, event, binary=n % 2 == 0)
            for n, (client, event) in enumerate(zip(clients, events, strict=True))
        ]
    )
    assert statuses == [200] * len(events)
    # Then more, one by one, as Pub/Sub's at-least-once delivery may bring.
    assert [deliver(apps, pubsub_event(resource)) for _ in range(3)] == [200] * 3
    after = state(sessions, material_id)
    assert (after["ingest_status"], after["ingest_attempts"], after["chunks"]) == ("ready", 0, 1)
    assert after["ingest_error"] is None
    # The lease kept the duplicates away: the file was embedded once.
    assert len(stub.embed_requests) == 1


def test_a_delivery_during_a_live_lease_is_acknowledged_without_counting(
    apps: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    course_id: uuid.UUID,
    stub: GeminiStub,
) -> None:
    material_id, resource = place(bucket, sessions, course_id, ["Lenses focus light."])
    started = datetime.now(UTC) - LEASE + timedelta(seconds=30)
    set_claim(
        sessions,
        material_id,
        int(resource["generation"]),
        ingest_status="processing",
        ingest_started_at=started,
        ingest_attempts=1,
    )
    assert deliver(apps, pubsub_event(resource)) == 200
    after = state(sessions, material_id)
    assert (after["ingest_status"], after["ingest_attempts"]) == ("processing", 1)
    assert after["ingest_started_at"] == started
    assert stub.embed_requests == []


def test_an_expired_lease_counts_one_failed_attempt_and_is_taken_over(
    apps: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    course_id: uuid.UUID,
) -> None:
    material_id, resource = place(bucket, sessions, course_id, ["Mirrors reflect light."])
    set_claim(
        sessions,
        material_id,
        int(resource["generation"]),
        ingest_status="processing",
        ingest_started_at=datetime.now(UTC) - LEASE - timedelta(seconds=1),
    )
    assert deliver(apps, pubsub_event(resource)) == 200
    after = state(sessions, material_id)
    assert (after["ingest_status"], after["ingest_attempts"], after["chunks"]) == ("ready", 1, 1)


def test_crashes_that_record_nothing_are_still_bounded(
    apps: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    course_id: uuid.UUID,
    stub: GeminiStub,
) -> None:
    material_id, resource = place(bucket, sessions, course_id, ["Fibres guide light."])
    set_claim(
        sessions,
        material_id,
        int(resource["generation"]),
        ingest_status="processing",
        ingest_started_at=datetime.now(UTC) - LEASE - timedelta(seconds=1),
        ingest_attempts=MAX_ATTEMPTS - 1,
    )
    assert deliver(apps, pubsub_event(resource)) == 200
    after = state(sessions, material_id)
    assert (after["ingest_status"], after["ingest_attempts"]) == ("failed", MAX_ATTEMPTS)
    assert after["ingest_error_code"] == "interrupted"
    assert after["ingest_error"] == (
        f"{ERROR_MESSAGES['interrupted']} Processing gave up after {MAX_ATTEMPTS} attempts."
    )
    assert stub.embed_requests == []


def test_transient_failures_exhaust_after_the_budget_and_never_show_their_text(
    apps: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    course_id: uuid.UUID,
    stub: GeminiStub,
    user_token: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="lectern")
    uploader_id, headers = user_token()
    material_id, resource = place(
        bucket, sessions, course_id, ["Polarised light."], uploader_id=uploader_id
    )
    # 403 is not retried by the SDK, so each delivery is one real failed call.
    stub.fail_next(times=100, status=403, message=SECRET)
    event = pubsub_event(resource)
    statuses = [deliver(apps, event)]
    retrying = state(sessions, material_id)
    statuses += [deliver(apps, event) for _ in range(MAX_ATTEMPTS + 1)]
    assert statuses == [500] * (MAX_ATTEMPTS - 1) + [200, 200, 200]
    assert len(stub.embed_requests) == MAX_ATTEMPTS

    # Between failures: back in the queue, the lease released, the sentence fixed.
    assert (retrying["ingest_status"], retrying["ingest_attempts"]) == ("queued", 1)
    assert retrying["ingest_error_code"] == "internal"
    assert retrying["ingest_error"] == (
        f"{ERROR_MESSAGES['internal']} Processing will be tried again."
    )

    after = state(sessions, material_id)
    assert (after["ingest_status"], after["ingest_attempts"]) == ("failed", MAX_ATTEMPTS)
    assert after["ingest_error_code"] == "internal"
    assert "AIza" not in str(after)
    assert "SELECT" not in str(after)

    listed = apps["catalog"].get(
        "/materials", query_string={"course_id": str(course_id)}, headers=headers
    )
    mine = next(m for m in listed.json["materials"] if m["id"] == material_id)
    assert (mine["ingest_error_code"], mine["ingest_error"]) == (
        "internal",
        f"{ERROR_MESSAGES['internal']} Processing gave up after {MAX_ATTEMPTS} attempts.",
    )
    single = apps["catalog"].get(f"/materials/{material_id}", headers=headers)
    requests = apps["submit"].get("/", headers=headers).json["requests"]
    request = next(r for r in requests if r["id"] == material_id)
    assert request["ingest_error_code"] == "internal"
    for body in (listed.get_data(as_text=True), single.get_data(as_text=True), str(requests)):
        assert "AIza" not in body
        assert "SELECT" not in body
    # The detail is for operators: it is in the log.
    assert any("AIza" in record.getMessage() for record in caplog.records)


def test_storage_failures_are_counted_as_failures_with_their_code(
    apps: dict[str, Any],
    bucket: Any,
    sessions: sessionmaker[Session],
    course_id: uuid.UUID,
    proxy: FaultProxy,
) -> None:
    material_id, resource = place(bucket, sessions, course_id, ["Diffraction gratings."])
    proxy.fail("GET", r"/download/storage/v1/b/lectern-test/o/", times=1)
    assert deliver(apps, pubsub_event(resource)) == 500
    failed_once = state(sessions, material_id)
    assert (failed_once["ingest_status"], failed_once["ingest_error_code"]) == (
        "queued",
        "storage_unavailable",
    )
    # The redelivery succeeds; the count of failures stays as it was.
    assert deliver(apps, pubsub_event(resource)) == 200
    after = state(sessions, material_id)
    assert (after["ingest_status"], after["ingest_attempts"], after["chunks"]) == ("ready", 1, 1)
    assert (after["ingest_error"], after["ingest_error_code"]) == (None, None)


def test_the_database_accepts_exactly_the_error_codes(
    sessions: sessionmaker[Session], course_id: uuid.UUID
) -> None:
    with sessions.begin() as session:
        material_id = make_material(session, course=session.get(Course, course_id)).id
    for code in ERROR_MESSAGES:
        with sessions.begin() as session:
            session.execute(
                update(Material).where(Material.id == material_id).values(ingest_error_code=code)
            )
    with (
        pytest.raises(DBAPIError, match="ck_materials_ingest_error_code"),
        sessions.begin() as session,
    ):
        session.execute(
            update(Material)
            .where(Material.id == material_id)
            .values(ingest_error_code="something went wrong: SELECT 1")
        )
    assert all(text.endswith(".") and text[0].isupper() for text in ERROR_MESSAGES.values())
