"""A frontend's day, through the HTTP API only.

Every step is a request a browser app would send, to the functions' real
apps, with real tokens from the local issuer (the student is created on first
sight by that token, as in production). The only thing that is not an API
call is the bucket's notification to the ingest function, which the cloud
sends, delivered here as a CloudEvent. Every response is also checked
against the function's OpenAPI document (the shared test client).

The day: an admin sets up a course and approves two files; a student opens
the dashboard, finds the course's files, opens one and reads it, comes back
later and resumes where they stopped, asks a question about that file, sees
their progress (per file, and on the dashboard), and plans the rest of the
course before the exam.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared import clock
from shared.db.models import Material
from shared.local.issuer import LocalIssuer
from tests.clocks import FakeClock
from tests.events import deliver, resource_of, storage_event
from tests.pdfs import make_pdf

APPS = ("catalog", "submit", "moderate", "ingest", "heartbeat", "search", "profile", "tasks")
TZ = "Europe/Berlin"

PHOTOSYNTHESIS = [
    "Photosynthesis turns light into chemical energy. The light reactions happen in the "
    "thylakoid membranes, where chlorophyll absorbs photons and splits water.",
    "The Calvin cycle fixes carbon dioxide in the stroma. The enzyme RuBisCO attaches "
    "carbon dioxide to ribulose bisphosphate, and ATP and NADPH from the light reactions "
    "drive the cycle.",
]
RESPIRATION = [
    "Cellular respiration releases energy from glucose. Glycolysis happens in the cytoplasm.",
    "The Krebs cycle and oxidative phosphorylation happen in the mitochondria.",
]


@pytest.fixture(scope="module")
def api(function_client: Callable[[str], Any]) -> dict[str, Any]:
    return {name: function_client(name) for name in APPS}


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock()  # 2026-03-01 09:00 UTC, 10:00 in Berlin
    previous = clock.use(fake)
    yield fake
    clock.use(previous)


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.get_json())
    return dict(response.get_json())


def _set_up_the_course(
    api: dict[str, Any],
    admin: dict[str, str],
    uploader: dict[str, str],
    bucket: Any,
    sessions: sessionmaker[Session],
) -> tuple[str, str, dict[str, str]]:
    """The admin's part: a course with two approved, ingested files."""
    suffix = uuid.uuid4().hex[:8]
    major = ok(
        api["catalog"].post("/majors", json={"name": f"Biology {suffix}"}, headers=admin), 201
    )
    course = ok(
        api["catalog"].post(
            "/courses",
            json={
                "code": f"BIO-{suffix}",
                "name": f"Plant Biology {suffix}",
                "major_id": major["major"]["id"],
                "year": 1,
                "semester": 2,
            },
            headers=admin,
        ),
        201,
    )["course"]
    kind = ok(
        api["catalog"].post(
            "/material-types", json={"display_name": f"Lecture notes {suffix}"}, headers=admin
        ),
        201,
    )["material_type"]
    lecturer = ok(
        api["catalog"].post("/lecturers", json={"name": f"Dr. Calvin {suffix}"}, headers=admin),
        201,
    )["lecturer"]
    titles = {}
    for title, pages in (("Photosynthesis", PHOTOSYNTHESIS), ("Respiration", RESPIRATION)):
        request = ok(
            api["submit"].post(
                "/",
                data={
                    "course_id": course["id"],
                    "type_id": kind["id"],
                    "lecturer_id": lecturer["id"],
                    "title": title,
                    "academic_year": "1",
                    "material_year": "2026",
                    "file": (io.BytesIO(make_pdf(pages)), f"{title}.pdf", "application/pdf"),
                },
                headers=uploader,
            ),
            201,
        )["request"]
        titles[title] = request["id"]
    moderated = ok(
        api["moderate"].post(
            "/actions",
            json={"action": "approve", "request_ids": list(titles.values())},
            headers=admin,
        )
    )
    assert all(result["ok"] for result in moderated["results"]), moderated
    # The bucket tells the pipeline about each approved file (the notification
    # names the object, which the API does not show: read it where it is kept).
    with sessions.begin() as session:
        names = session.scalars(
            select(Material.file_url).where(
                Material.id.in_([uuid.UUID(i) for i in titles.values()])
            )
        ).all()
    for name in names:
        assert deliver(api, storage_event(resource_of(bucket, name))) == 200
    return course["id"], course["name"], titles


def test_a_students_day(
    api: dict[str, Any],
    user_token: Callable[..., Any],
    issuer: LocalIssuer,
    bucket: Any,
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    _, admin = user_token(role="ADMIN")
    _, uploader = user_token()
    course_id, course_name, titles = _set_up_the_course(api, admin, uploader, bucket, sessions)
    photosynthesis, respiration = titles["Photosynthesis"], titles["Respiration"]

    # A new student signs in: the first request with their token creates them.
    subject = f"auth0|{uuid.uuid4().hex}"
    token = issuer.token(
        subject=subject,
        email=f"{subject[6:14]}@student.example.edu",
        name="Ada",
        email_verified=True,
    )
    student = {"Authorization": f"Bearer {token}"}

    # Morning: the dashboard of someone who has read nothing yet.
    home = ok(api["profile"].get("/me/dashboard", query_string={"tz": TZ}, headers=student))
    assert home["user"]["name"] == "Ada"
    assert (home["courses"], home["recent"], home["today"]) == ([], [], [])
    assert home["date"] == "2026-03-01"

    # The course's files, with what the reader needs to show them.
    listed = ok(
        api["catalog"].get("/materials", query_string={"course_id": course_id}, headers=student)
    )["materials"]
    assert {m["id"] for m in listed} == {photosynthesis, respiration}
    assert all(m["ingest_status"] == "ready" and m["page_count"] == 2 for m in listed)
    detail = ok(api["catalog"].get(f"/materials/{photosynthesis}", headers=student))["material"]
    assert detail["download_url"]

    # Open Photosynthesis (2 pages: 54 s of reading) and read for 40 s.
    opened = api["heartbeat"].post("/sessions", json={"file_id": photosynthesis}, headers=student)
    first = ok(opened, 201)["session"]
    assert opened.headers["Location"].endswith(f"/sessions/{first['id']}")
    assert (first["active_seconds"], first["required_active_seconds"]) == (0, 54)
    for _ in range(4):
        fake_clock.advance(10)
        beat = ok(
            api["heartbeat"].post(
                f"/sessions/{first['id']}/beat", json={"active_seconds": 10}, headers=student
            )
        )
    assert beat["session"]["active_seconds"] == 40
    assert beat["session"]["is_complete"] is False

    # After lunch the file is opened again: it resumes at 40 s, not at zero.
    fake_clock.advance(3 * 3600)
    second = ok(
        api["heartbeat"].post("/sessions", json={"file_id": photosynthesis}, headers=student), 201
    )["session"]
    assert second["id"] != first["id"]
    assert second["active_seconds"] == 40
    assert second["completion_score"] == pytest.approx(40 / 54)
    fake_clock.advance(10)
    beat = ok(
        api["heartbeat"].post(
            f"/sessions/{second['id']}/beat", json={"active_seconds": 10}, headers=student
        )
    )
    assert (beat["credited_seconds"], beat["session"]["active_seconds"]) == (10, 50)

    # A question about this file: results and the answer come from it alone.
    asked = ok(
        api["search"].post(
            "/",
            json={
                "query": "Which enzyme fixes carbon dioxide in the Calvin cycle?",
                "material_id": photosynthesis,
                "answer": True,
            },
            headers=student,
        )
    )
    assert asked["results"]
    assert {r["material_id"] for r in asked["results"]} == {photosynthesis}
    assert asked["results"][0]["course_name"] == course_name
    assert asked["answer"] is not None
    assert "RuBisCO" in asked["answer"]["text"]
    assert {c["material_id"] for c in asked["answer"]["citations"]} == {photosynthesis}

    # Finish the file: its XP, once.
    fake_clock.advance(10)
    beat = ok(
        api["heartbeat"].post(
            f"/sessions/{second['id']}/beat", json={"active_seconds": 10}, headers=student
        )
    )
    assert beat["session"]["is_complete"] is True
    assert beat["awarded"] == [
        {"action": "file_completed", "amount": 10, "file_id": photosynthesis}
    ]
    assert beat["course"] == {
        "course_id": course_id,
        "status": "engaged",
        "files_completed": 1,
        "total_files": 2,
    }

    # Progress: per file on the course screen, per course on the dashboard.
    progress = ok(
        api["heartbeat"].get("/progress", query_string={"course_id": course_id}, headers=student)
    )
    (course,) = progress["courses"]
    assert (course["status"], course["files_completed"], course["total_files"]) == (
        "engaged",
        1,
        2,
    )
    files = {f["file_id"]: f for f in course["files"]}
    assert files[photosynthesis]["is_complete"] is True
    assert files[photosynthesis]["active_seconds"] == 60
    assert (files[respiration]["active_seconds"], files[respiration]["is_complete"]) == (0, False)
    home = ok(api["profile"].get("/me/dashboard", query_string={"tz": TZ}, headers=student))
    assert home["courses"] == [
        {"course_id": course_id, "status": "engaged", "files_completed": 1, "total_files": 2}
    ]
    assert [f["file_id"] for f in home["recent"]] == [photosynthesis]
    assert home["recent"][0]["completion_score"] == 1.0
    assert home["recent"][0]["course_name"] == course_name
    assert home["user"]["total_points"] == home["rank"]["total_points"] == 10

    # Plan the rest before the exam: only Respiration is left to read.
    plan = ok(
        api["tasks"].post(
            "/plan",
            json={"course_id": course_id, "exam_date": "2026-03-06", "tz": TZ},
            headers=student,
        ),
        201,
    )
    planned_files = {t["file_id"] for t in plan["tasks"] if t["file_id"]}
    assert planned_files == {respiration}
    # Whatever the plan put on today shows on the dashboard's today, and nothing else does.
    home = ok(api["profile"].get("/me/dashboard", query_string={"tz": TZ}, headers=student))
    assert [t["id"] for t in home["today"]] == [
        t["id"] for t in plan["tasks"] if t["date"] == home["date"]
    ]
