"""The ingestion sweep: materials left queued or processing are re-driven.

``redrive_stale`` runs in-process here with the function's real settings,
bucket (through the fault proxy) and embedder, as the scheduled ``sweep``
function will call it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from shared import pipeline
from shared.config import Settings, load_settings
from shared.db.models import Course, Material, MaterialChunk
from shared.embeddings import get_embedder
from shared.storage import META_REQUEST_ID, get_bucket
from tests.factories import make_course, make_material
from tests.faults import FaultProxy
from tests.pdfs import make_pdf

HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def storage_host(proxy: FaultProxy) -> str:
    return proxy.url


@pytest.fixture
def settings(function_client: Callable[[str], Any], proxy: FaultProxy) -> Iterator[Settings]:
    """The ingest function's settings (function_client put its environment in place)."""
    yield load_settings()
    proxy.clear()


@pytest.fixture(scope="module")
def course_id(sessions: sessionmaker[Session]) -> uuid.UUID:
    with sessions.begin() as session:
        return make_course(session, name="Acoustics").id


@pytest.fixture(autouse=True)
def _nothing_pending(sessions: sessionmaker[Session]) -> None:
    """Each test sees only the pending materials it made."""
    with sessions.begin() as session:
        session.execute(
            update(Material)
            .where(Material.ingest_status.in_(("queued", "processing")))
            .values(ingest_status="ready")
        )


def sweep(settings: Settings, *, stale_after: timedelta = HOUR, limit: int = 10) -> list[str]:
    return pipeline.redrive_stale(
        settings,
        bucket=get_bucket(settings),
        embedder=get_embedder(settings),
        stale_after=stale_after,
        limit=limit,
    )


def place(
    bucket: Any,
    sessions: sessionmaker[Session],
    course_id: uuid.UUID,
    *,
    age: timedelta,
    upload: bool = True,
    **fields: Any,
) -> tuple[str, str]:
    """A material approved ``age`` ago that no notice reached; (id, object name)."""
    with sessions.begin() as session:
        material = make_material(
            session,
            course=session.get(Course, course_id),
            created_at=datetime.now(UTC) - age,
            **fields,
        )
        material_id, name = str(material.id), material.file_url
    if upload:
        blob = bucket.blob(name)
        blob.metadata = {META_REQUEST_ID: material_id}
        blob.upload_from_string(make_pdf([f"Sound {material_id}."]), content_type="application/pdf")
        with sessions.begin() as session:
            session.execute(
                update(Material)
                .where(Material.id == uuid.UUID(material_id))
                .values(ingest_generation=int(bucket.get_blob(name).generation))
            )
    return material_id, name


def state(sessions: sessionmaker[Session], material_id: str) -> tuple[Any, ...]:
    with sessions.begin() as session:
        material = session.get(Material, uuid.UUID(material_id))
        assert material is not None
        chunks = session.query(MaterialChunk).filter_by(material_id=material.id).count()
        return (
            material.ingest_status,
            material.ingest_attempts,
            material.ingest_error_code,
            chunks,
        )


def test_stale_queued_and_processing_materials_are_ingested_and_fresh_ones_left(
    settings: Settings, bucket: Any, sessions: sessionmaker[Session], course_id: uuid.UUID
) -> None:
    lost, _ = place(bucket, sessions, course_id, age=3 * HOUR)
    crashed, _ = place(
        bucket,
        sessions,
        course_id,
        age=5 * HOUR,
        ingest_status="processing",
        ingest_started_at=datetime.now(UTC) - 2 * HOUR,
    )
    fresh, _ = place(bucket, sessions, course_id, age=timedelta(minutes=5))
    outcomes = sweep(settings)
    # Oldest first, by the last claim (else the approval).
    assert outcomes == [f"{lost}: ready: 1 chunks", f"{crashed}: ready: 1 chunks"]
    assert state(sessions, lost) == ("ready", 0, None, 1)
    # The crashed attempt never recorded its end: its lease expiry is its failure.
    assert state(sessions, crashed) == ("ready", 1, None, 1)
    assert state(sessions, fresh) == ("queued", 0, None, 0)
    assert sweep(settings) == []


def test_a_material_under_a_live_lease_is_left_to_its_delivery(
    settings: Settings, bucket: Any, sessions: sessionmaker[Session], course_id: uuid.UUID
) -> None:
    busy, _ = place(
        bucket,
        sessions,
        course_id,
        age=3 * HOUR,
        ingest_status="processing",
        ingest_started_at=datetime.now(UTC) - timedelta(minutes=5),
    )
    outcomes = sweep(settings, stale_after=timedelta(minutes=1))
    assert outcomes == [f"{busy}: skipped: in progress under another delivery"]
    assert state(sessions, busy) == ("processing", 0, None, 0)


def test_a_failing_material_does_not_stop_the_others_and_a_gone_object_ends_failed(
    settings: Settings,
    bucket: Any,
    sessions: sessionmaker[Session],
    course_id: uuid.UUID,
    proxy: FaultProxy,
) -> None:
    gone, _ = place(bucket, sessions, course_id, age=4 * HOUR, upload=False)
    failing, failing_name = place(bucket, sessions, course_id, age=3 * HOUR)
    healthy, _ = place(bucket, sessions, course_id, age=2 * HOUR)
    proxy.fail("GET", f"/download/storage/v1/b/lectern-test/o/{quote(failing_name, safe='')}")
    outcomes = sweep(settings)
    assert outcomes == [
        f"{gone}: failed: object_missing",
        f"{failing}: error: storage_unavailable",
        f"{healthy}: ready: 1 chunks",
    ]
    assert state(sessions, gone) == ("failed", 0, "object_missing", 0)
    assert state(sessions, failing) == ("queued", 1, "storage_unavailable", 0)
    assert state(sessions, healthy) == ("ready", 0, None, 1)
    with sessions.begin() as session:
        material = session.get(Material, uuid.UUID(gone))
        assert material is not None
        assert material.ingest_error == pipeline.ERROR_MESSAGES["object_missing"]


def test_an_object_that_no_longer_names_its_material_ends_failed(
    settings: Settings, bucket: Any, sessions: sessionmaker[Session], course_id: uuid.UUID
) -> None:
    stranger, name = place(bucket, sessions, course_id, age=3 * HOUR)
    blob = bucket.get_blob(name)
    blob.metadata = {META_REQUEST_ID: str(uuid.uuid4())}
    blob.patch()
    assert sweep(settings) == [f"{stranger}: failed: object_missing"]
    assert state(sessions, stranger) == ("failed", 0, "object_missing", 0)


def test_each_run_takes_at_most_limit_materials_oldest_first(
    settings: Settings, bucket: Any, sessions: sessionmaker[Session], course_id: uuid.UUID
) -> None:
    ids = [place(bucket, sessions, course_id, age=age * HOUR)[0] for age in (2, 4, 3)]
    first = sweep(settings, limit=2)
    assert [line.split(":")[0] for line in first] == [ids[1], ids[2]]
    assert state(sessions, ids[0])[0] == "queued"
    assert [line.split(":")[0] for line in sweep(settings, limit=2)] == [ids[0]]
    assert all(state(sessions, material_id)[0] == "ready" for material_id in ids)
