"""Storage outages: a frozen or dropped bucket is a fast 503, holds nothing, loses nothing.

The bucket is reached through ``FaultProxy`` (tests/faults.py) with
``STORAGE_TIMEOUT_S=1``. The time bounds asserted here are the contract's
"answered well inside the function's timeout" (60-120 s in infra/), not
performance goals: a hang would take the proxy's 60 s.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import FileRequest, ObjectIntent
from shared.log import JsonFormatter
from tests.factories import make_course, make_lecturer, make_material_type
from tests.faults import FaultProxy
from tests.pdfs import make_pdf

# STORAGE_TIMEOUT_S=1: one attempt's timeout plus the retry deadline, with slack.
ANSWER_BOUND_SECONDS = 8


@pytest.fixture(scope="module")
def storage_host(proxy: FaultProxy) -> str:
    return proxy.url


@pytest.fixture(scope="module")
def apps(function_client: Callable[[str], Any]) -> dict[str, Any]:
    os.environ["STORAGE_TIMEOUT_S"] = "1"
    return {name: function_client(name) for name in ("submit", "moderate", "profile")}


@pytest.fixture(autouse=True)
def _healthy_storage(proxy: FaultProxy) -> Iterator[None]:
    proxy.clear()
    yield
    proxy.clear()


@pytest.fixture(scope="module")
def refs(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions.begin() as session:
        return {
            "course_id": str(make_course(session, name="Networks").id),
            "type_id": str(make_material_type(session).id),
            "lecturer_id": str(make_lecturer(session, name="Dr. Outage").id),
        }


def _form(refs: dict[str, str], text: str) -> dict[str, Any]:
    import io

    return {
        **refs,
        "title": text,
        "academic_year": "1",
        "material_year": "2024",
        "file": (io.BytesIO(make_pdf([text])), "outage.pdf", "application/pdf"),
    }


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _requests_of(sessions: sessionmaker[Session], user_id: uuid.UUID) -> int:
    with sessions.begin() as session:
        return int(
            session.scalar(
                select(func.count()).select_from(FileRequest).where(FileRequest.user_id == user_id)
            )
            or 0
        )


class _JsonLines(logging.Handler):
    """Formats each record when it is emitted, on the request's own thread."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.mark.parametrize("mode", ["freeze", "drop"])
def test_an_upload_to_a_dead_bucket_is_a_fast_503_and_stores_nothing(
    mode: str,
    apps: dict[str, Any],
    proxy: FaultProxy,
    refs: dict[str, str],
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
) -> None:
    user_id, headers = user_token()
    getattr(proxy, mode)()
    captured = _JsonLines()
    logging.getLogger("lectern").addHandler(captured)
    try:
        response, elapsed = _timed(
            lambda: apps["submit"].post("/", data=_form(refs, f"{mode} upload"), headers=headers)
        )
    finally:
        logging.getLogger("lectern").removeHandler(captured)
    # The log line of the failure carries the id the caller was given, and the
    # upstream's detail stays in the log.
    failures = [line for line in captured.lines if line["severity"] == "ERROR"]
    assert failures
    assert {line.get("request_id") for line in failures} == {response.headers["X-Request-Id"]}
    assert response.status_code == 503
    assert response.json["error"]["code"] == "storage_unavailable"
    assert response.json["error"]["request_id"] == response.headers["X-Request-Id"]
    assert int(response.headers["Retry-After"]) > 0
    assert elapsed < ANSWER_BOUND_SECONDS
    assert _requests_of(sessions, user_id) == 0
    proxy.clear()
    again = apps["submit"].post("/", data=_form(refs, f"{mode} upload"), headers=headers)
    assert again.status_code == 201


def test_a_hung_upload_holds_no_connection_or_lock(
    apps: dict[str, Any],
    proxy: FaultProxy,
    refs: dict[str, str],
    user_token: Callable[..., Any],
) -> None:
    """While one upload waits on a frozen bucket, the same user and others are served.

    The pool has DB_POOL_SIZE + DB_MAX_OVERFLOW = 4 connections: four hung
    uploads holding one each (and the uploader's row) would starve the rest.
    """
    _, uploader = user_token()
    proxy.freeze()
    hung: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda n=n: hung.append(
                apps["submit"].post("/", data=_form(refs, f"hung {n}"), headers=uploader)
            )
        )
        for n in range(4)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # the uploads are now waiting on the bucket
    _, other = user_token()
    for headers in (uploader, other):
        response, elapsed = _timed(lambda h=headers: apps["submit"].get("/", headers=h))
        assert response.status_code == 200
        assert elapsed < 1.0
        response, elapsed = _timed(lambda h=headers: apps["profile"].get("/me", headers=h))
        assert response.status_code == 200
        assert elapsed < 1.0
    for thread in threads:
        thread.join(ANSWER_BOUND_SECONDS * 2)
    assert [response.status_code for response in hung] == [503] * 4


def _pending(apps: dict[str, Any], refs: dict[str, str], headers: dict[str, str]) -> str:
    response = apps["submit"].post("/", data=_form(refs, uuid.uuid4().hex), headers=headers)
    assert response.status_code == 201
    return str(response.json["request"]["id"])


def test_an_approval_against_a_dead_bucket_is_a_fast_503_and_changes_nothing(
    apps: dict[str, Any],
    proxy: FaultProxy,
    refs: dict[str, str],
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
) -> None:
    _, student = user_token()
    _, admin = user_token(role="ADMIN")
    request_id = _pending(apps, refs, student)
    proxy.freeze()
    body = {"action": "approve", "request_ids": [request_id]}
    response, elapsed = _timed(lambda: apps["moderate"].post("/actions", json=body, headers=admin))
    assert response.status_code == 503
    assert response.json["error"]["code"] == "storage_unavailable"
    assert elapsed < ANSWER_BOUND_SECONDS
    with sessions.begin() as session:
        request = session.get(FileRequest, uuid.UUID(request_id))
        assert request is not None
        assert request.status == "pending"
        left = session.scalars(
            select(ObjectIntent.name).where(ObjectIntent.request_id == uuid.UUID(request_id))
        ).all()
        # The copy may have landed before the answer was lost: its intent stays
        # for the sweep, naming a course object no row refers to.
        assert all(name != request.file_url for name in left)
    proxy.clear()
    done = apps["moderate"].post("/actions", json=body, headers=admin)
    assert done.json["results"][0]["ok"] is True


def test_a_bulk_call_reports_what_it_did_before_the_bucket_died(
    apps: dict[str, Any],
    proxy: FaultProxy,
    refs: dict[str, str],
    user_token: Callable[..., Any],
) -> None:
    _, student = user_token()
    _, admin = user_token(role="ADMIN")
    first, second, third = (_pending(apps, refs, student) for _ in range(3))
    # The first approval's copy passes; everything after it hangs.
    original = proxy._should_fail
    calls = {"copies": 0}

    def freeze_after_first_copy(method: str, path: str) -> int:
        if "copyTo" in path or "rewriteTo" in path:
            calls["copies"] += 1
            if calls["copies"] > 1:
                proxy.freeze()
                proxy._thawed.wait(60)  # this very request hangs too
        return original(method, path)

    proxy._should_fail = freeze_after_first_copy  # type: ignore[method-assign]
    try:
        body = {"action": "approve", "request_ids": [first, second, third]}
        response, elapsed = _timed(
            lambda: apps["moderate"].post("/actions", json=body, headers=admin)
        )
    finally:
        proxy._should_fail = original  # type: ignore[method-assign]
        proxy.clear()
    assert response.status_code == 200
    results = response.json["results"]
    assert [result["ok"] for result in results] == [True, False, False]
    assert [result.get("error") for result in results[1:]] == ["storage_unavailable"] * 2
    assert elapsed < ANSWER_BOUND_SECONDS * 2


def test_the_sweep_deletes_what_a_crash_left_and_keeps_what_rows_refer_to(
    apps: dict[str, Any],
    refs: dict[str, str],
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    from shared import clock
    from shared.config import load_settings
    from shared.storage import Bucket, pending_object, request_metadata
    from shared.submissions import record_intent
    from shared.sweep import ABANDONED_AFTER, sweep_objects

    settings = load_settings()
    storage = Bucket(settings)
    user_id, student = user_token()
    # A crash after the upload, before the row: an intent and an object, no row.
    orphan_id = uuid.uuid4()
    orphan = pending_object(orphan_id, "crashed.pdf")
    with sessions.begin() as session:
        record_intent(session, name=orphan, request_id=orphan_id)
    storage.upload(
        orphan,
        make_pdf(["crashed"]),
        request_metadata(
            request_id=orphan_id,
            sha256="0" * 64,
            uploader_id=user_id,
            course_id=uuid.UUID(refs["course_id"]),
        ),
    )
    # A live request whose intent was somehow left behind: its object must stay.
    live_id = _pending(apps, refs, student)
    with sessions.begin() as session:
        live = session.get(FileRequest, uuid.UUID(live_id))
        assert live is not None
        record_intent(session, name=live.file_url, request_id=live.id)
        live_name = live.file_url
    # A young intent (a call in flight) is left alone.
    young = pending_object(uuid.uuid4(), "in flight.pdf")
    with sessions.begin() as session:
        record_intent(session, name=young, request_id=None)  # type: ignore[arg-type]
        session.execute(
            update(ObjectIntent)
            .where(ObjectIntent.name.in_([orphan, live_name]))
            .values(created_at=clock.now() - ABANDONED_AFTER - timedelta(minutes=1))
        )
    report = sweep_objects(settings, storage)
    assert orphan in report.deleted
    assert live_name in report.kept
    assert young not in report.deleted + report.kept
    assert bucket.get_blob(orphan) is None
    assert bucket.get_blob(live_name) is not None
    with sessions.begin() as session:
        names = set(session.scalars(select(ObjectIntent.name)).all())
    assert orphan not in names
    assert live_name not in names
    assert young in names


def test_the_sweep_function_runs_on_the_schedulers_cloudevent(
    function_client: Callable[[str], Any],
    refs: dict[str, str],
    sessions: sessionmaker[Session],
    bucket: Any,
) -> None:
    """As Cloud Scheduler calls it (infra/sweep.tf): a binary-mode CloudEvent."""
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    from shared import clock
    from shared.sweep import ABANDONED_AFTER

    name = f"pending/{uuid.uuid4()}/left behind.pdf"
    bucket.blob(name).upload_from_string(make_pdf(["left"]), content_type="application/pdf")
    with sessions.begin() as session:
        session.add(
            ObjectIntent(name=name, created_at=clock.now() - ABANDONED_AFTER - timedelta(1))
        )
    event = CloudEvent(
        {"type": "dev.lectern.sweep.tick", "source": "//cloudscheduler.googleapis.com/sweep"},
        {},
    )
    headers, body = to_binary(event)
    response = function_client("sweep").post("/", data=body, headers=headers)
    assert response.status_code == 200
    assert bucket.get_blob(name) is None
